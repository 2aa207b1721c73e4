"""The shared strategy matrix on a tiny random BERT: every method trains, writes its artifact
layout, and the artifact reproduces the job's predictions in a fresh process."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from app.training.artifacts import read_manifest, sha256_file
from app.training.base import TrainingError
from app.training.registry import run_strategy

METHODS = {
    "supervised": ("model/model.safetensors", {}),
    "lora": ("adapter/adapter_model.safetensors", {"r": 4}),
    "bitfit": ("delta/delta.safetensors", {}),
}

RELOAD = """
import json, sys, torch
from pathlib import Path
from app.training.artifacts import load_classifier
from app.training.data import load_classification_examples
art, base, valid = map(Path, sys.argv[1:4])
model, tok, labels = load_classifier(art, base)
examples = load_classification_examples(valid)
preds = [json.loads(l) for l in open(art / "eval" / "predictions.jsonl")]
worst = 0.0
for ex, pred in zip(examples, preds):
    with torch.no_grad():
        logits = model(**tok(ex.text, return_tensors="pt", truncation=True, max_length=16)).logits[0]
    worst = max(worst, (logits - torch.tensor(pred["logits"])).abs().max().item())
print(worst)
"""


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_and_artifact_reloads(method, make_ctx, tiny_model_dir):
    weights, settings = METHODS[method]
    ctx = make_ctx(method, settings, n_epochs=2)
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.steps == 4
    assert result.trained_tokens > 0 and result.flops > 0
    manifest = read_manifest(ctx.output_dir)
    assert manifest["base_model"] == {"id": "tiny-bert", "sha256": ctx.base_model.sha256}
    assert manifest["labels"] == ["neg", "pos"] and manifest["method"] == method
    assert weights in manifest["files"] and "eval/predictions.jsonl" in manifest["files"]
    for name, entry in manifest["files"].items():
        assert sha256_file(ctx.output_dir / name) == entry["sha256"]
    metrics = ctx.sink.of("metrics")
    assert metrics[0]["step"] == 1 and any("eval_macro_f1" in m for m in metrics)
    assert [s for s in ctx.sink.of("checkpoint")] == [2, 4]
    out = subprocess.run([sys.executable, "-c", RELOAD, str(ctx.output_dir), str(tiny_model_dir), str(ctx.validation_file)],
                         capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4


def test_bitfit_delta_holds_only_biases_and_new_weights(make_ctx, tiny_model_dir):
    ctx = make_ctx("bitfit")
    run_strategy(ctx)
    delta = load_file(ctx.output_dir / "delta" / "delta.safetensors")
    assert delta and all(k.endswith(".bias") or k.startswith(("classifier.", "bert.pooler.")) for k in delta)
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    assert sum(t.numel() * t.element_size() for t in delta.values()) < 0.5 * base_bytes


def test_lora_rejects_unknown_target_module(make_ctx):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("lora", {"target_modules": ["nope"]}))
    assert info.value.code == "invalid_method_settings" and "query" in info.value.message


def test_cancel_writes_no_artifact(make_ctx):
    from tests.training.conftest import ListSink

    ctx = make_ctx("lora", sink=ListSink(stop_at_step=1, stop_reason="cancel"), n_epochs=2)
    result = run_strategy(ctx)
    assert result.status == "cancelled" and result.steps == 1
    assert list(ctx.output_dir.iterdir()) == []


def test_nan_loss_fails_with_clear_error(make_ctx, tiny_model_dir, tmp_path):
    import dataclasses

    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    broken = tmp_path / "broken-base"
    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.fill_(float("inf"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    ctx = make_ctx("supervised")
    ctx.base_model = dataclasses.replace(ctx.base_model, path=broken)
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.code == "nan_loss" and "step 1" in info.value.message
    assert "learning_rate" in info.value.message


def test_artifact_refuses_a_different_base_model(make_ctx, tmp_path):
    from app.training.artifacts import load_classifier
    from tests.tiny_models import make_tiny_bert

    ctx = make_ctx("lora", {"r": 2})
    run_strategy(ctx)
    other = make_tiny_bert(tmp_path / "other-base", hidden=48)
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
