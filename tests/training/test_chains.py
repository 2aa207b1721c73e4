"""Intermediate-task chains (STILTs): a task job's encoder, materialized, starts the next job."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from app.fsio import directory_sha256
from app.training.artifacts import load_classifier, predict, read_manifest
from app.training.base import BaseModelRef, TrainingError
from app.training.lineage import (chained_model_id, describe_lineage, lineage_step, materialize_encoder,
                                  merge_problem, record_lineage)
from app.training.registry import run_strategy
from tests.tiny_models import make_classification_rows

MERGEABLE = {"supervised": {}, "lora": {"r": 4}, "ia3": {}, "bitfit": {}}


def _train(make_ctx, method: str, output: str, base: BaseModelRef | None = None, n_labels: int = 2, **kw):
    rows = make_classification_rows(24, n_labels=n_labels, seed=3)
    ctx = make_ctx(method, settings=MERGEABLE.get(method, {}), output=output, train_rows=rows,
                   valid_rows=make_classification_rows(9, n_labels=n_labels, seed=4), n_epochs=2, **kw)
    if base is not None:
        ctx = dataclasses.replace(ctx, base_model=base)
    assert run_strategy(ctx).status == "succeeded"
    return ctx


@pytest.mark.parametrize("method", sorted(MERGEABLE))
def test_materialized_encoder_is_the_jobs_encoder_without_its_head(method, make_ctx, base_ref, tmp_path):
    source = _train(make_ctx, method, "a", n_labels=3)
    out = tmp_path / "encoder-a"
    sha = materialize_encoder(source.output_dir, base_ref.path, out)
    assert sha == directory_sha256(out)
    weights = load_file(out / "model.safetensors")
    assert not any(k.startswith("classifier") for k in weights), "the old head is dropped"
    assert not any("lora" in k or "ia3" in k for k in weights), "adapters are merged into plain weights"
    # the encoder computes what the job's classifier computed below its head
    model, tokenizer, _ = load_classifier(source.output_dir, base_ref.path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    from transformers import AutoModel
    plain = AutoModel.from_pretrained(out).eval()
    encoded = tokenizer(["good fine happy day", "awful bad night"], padding=True, return_tensors="pt")
    import torch
    with torch.no_grad():
        expected = model.base_model(**encoded).pooler_output
        assert torch.allclose(plain(**encoded).pooler_output, expected, atol=1e-5)
    base_weights = load_file(base_ref.path / "model.safetensors")  # the encoder moved from the base's weights
    assert any(not torch.equal(t, base_weights[f"bert.{k}"]) for k, t in weights.items() if f"bert.{k}" in base_weights)


def test_chain_of_three_records_lineage_and_reloads(make_ctx, base_ref, tmp_path):
    """base → supervised A → LoRA B → BitFit C: each starts from the one before, the manifest says so."""
    a = _train(make_ctx, "supervised", "a", n_labels=3)
    enc_a = tmp_path / "enc-a"
    ref_a = BaseModelRef(chained_model_id("ftjob-a"), enc_a, materialize_encoder(a.output_dir, base_ref.path, enc_a))
    b = _train(make_ctx, "lora", "b", base=ref_a)
    lineage_b = lineage_step(read_manifest(a.output_dir), "ftjob-a", "ft:a", ref_a.id, ref_a.sha256)
    record_lineage(b.output_dir, lineage_b)
    enc_b = tmp_path / "enc-b"
    ref_b = BaseModelRef(chained_model_id("ftjob-b"), enc_b, materialize_encoder(b.output_dir, enc_a, enc_b))
    c = _train(make_ctx, "bitfit", "c", base=ref_b)
    lineage_c = lineage_step(read_manifest(b.output_dir), "ftjob-b", "ft:b", ref_b.id, ref_b.sha256)
    record_lineage(c.output_dir, lineage_c)
    manifest = read_manifest(c.output_dir)
    assert [s.get("job") for s in manifest["lineage"]] == [None, "ftjob-a", "ftjob-b"]
    assert manifest["lineage"][0] == {"model": "tiny-bert", "sha256": base_ref.sha256}
    assert manifest["base_model"] == {"id": "encoder:ftjob-b", "sha256": ref_b.sha256}
    assert describe_lineage(manifest["lineage"]) == "tiny-bert → ftjob-a (supervised) → ftjob-b (lora)"
    assert manifest["labels"] == ["neg", "pos"], "a new head with the target's labels"
    with pytest.raises(TrainingError) as info:  # C's delta is relative to B's encoder, not the root base
        load_classifier(c.output_dir, base_ref.path)
    assert info.value.code == "base_model_mismatch"
    model, tokenizer, labels = load_classifier(c.output_dir, enc_b)
    logits = [p["logits"] for p in predict(model, tokenizer, ["good fine", "bad awful"], labels)]
    stored = [json.loads(line)["logits"] for line in open(c.output_dir / "eval" / "predictions.jsonl")]
    assert len(stored) == 9 and len(logits[0]) == 2


def test_a_fresh_process_replays_the_lineage_to_the_same_encoder(make_ctx, base_ref, tmp_path):
    """Materializing is deterministic: from A's artifact and the root base alone, another process rebuilds
    the encoder B was trained on (same sha256) and B's artifact reproduces its validation logits."""
    a = _train(make_ctx, "lora", "a")
    enc = tmp_path / "enc-a"
    ref = BaseModelRef(chained_model_id("ftjob-a"), enc, materialize_encoder(a.output_dir, base_ref.path, enc))
    b = _train(make_ctx, "lora", "b", base=ref)
    script = f"""
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict
from app.training.lineage import materialize_encoder
sha = materialize_encoder(Path({str(a.output_dir)!r}), Path({str(base_ref.path)!r}), Path({str(tmp_path / 'rebuilt')!r}))
model, tokenizer, labels = load_classifier(Path({str(b.output_dir)!r}), Path({str(tmp_path / 'rebuilt')!r}))
rows = [json.loads(l) for l in open({str(b.validation_file)!r})]
print(json.dumps({{"sha": sha, "logits": [p["logits"] for p in predict(model, tokenizer, rows, labels)]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert fresh["sha"] == ref.sha256 == read_manifest(b.output_dir)["base_model"]["sha256"]
    stored = [json.loads(line)["logits"] for line in open(b.output_dir / "eval" / "predictions.jsonl")]
    assert max(abs(x - y) for r, s in zip(fresh["logits"], stored) for x, y in zip(r, s)) < 1e-5


@pytest.mark.parametrize("method", ["prompt_tuning", "adapter"])
def test_unmergeable_methods_are_refused_with_the_reason(method, make_ctx, base_ref, tmp_path):
    source = _train(make_ctx, method, "a")
    problem = merge_problem(source.output_dir)
    assert problem and ("virtual tokens" in problem or "bottleneck" in problem)
    with pytest.raises(TrainingError) as info:
        materialize_encoder(source.output_dir, base_ref.path, tmp_path / "enc")
    assert info.value.code == "invalid_chain" and not (tmp_path / "enc").exists()


def test_a_regression_job_starts_a_classification_chain(make_ctx, base_ref, tmp_path):
    """Any task type's encoder chains: the regression head is dropped like a classifier's."""
    rows = [{"text": r["text"], "label": 1.0 if r["label"] == "pos" else 0.0} for r in make_classification_rows(24, seed=3)]
    source = make_ctx("supervised", output="a", train_rows=rows, n_valid=0, n_epochs=2)
    assert run_strategy(source).status == "succeeded"
    assert merge_problem(source.output_dir) is None
    enc = tmp_path / "enc"
    ref = BaseModelRef(chained_model_id("ftjob-a"), enc, materialize_encoder(source.output_dir, base_ref.path, enc))
    target = _train(make_ctx, "lora", "b", base=ref, n_labels=3)
    assert read_manifest(target.output_dir)["labels"] == ["neg", "neu", "pos"]
