"""The `adaptive` strategy: DAPT → TAPT → task method in one job, resumable across phases."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.registry import run_strategy
from tests.tiny_models import write_jsonl
from tests.training.conftest import ListSink
from tests.training.test_mlm import corpus

THEN_LORA = {"type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 2, "batch_size": 8,
                                                                  "learning_rate": 1e-3, "max_length": 16}}}


def _ctx(make_ctx, tmp_path, output: str, settings: dict, sink=None):
    ctx = make_ctx("adaptive", settings=settings, n_train=24, output=output, sink=sink, batch_size=16,
                   learning_rate=5e-3, n_epochs=2)
    ctx.input_files["corpus_file"] = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in corpus(48)])
    return ctx


def test_dapt_tapt_then_lora_in_one_job(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path, "out", {"corpus_file": "file-x", "tapt": True, "mlm": {"mask_rate": 0.3},
                                            "then": THEN_LORA})
    result = run_strategy(ctx)
    assert result.status == "succeeded"
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["method"] == "adaptive" and manifest["task_method"] == "lora"
    assert [p["phase"] for p in manifest["adaptive"]["phases"]] == ["dapt", "tapt"]
    dapt = manifest["adaptive"]["phases"][0]
    assert dapt["after"]["mlm_loss"] < dapt["before"]["mlm_loss"]
    assert {"encoder/model.safetensors", "adapter/adapter_model.safetensors"} <= set(manifest["files"])
    assert manifest["base_model"]["id"] == "adapted:ftjob-test"  # the adapter's base: the registered encoder
    assert manifest["steps"] == result.steps == sum(p["steps"] for p in manifest["adaptive"]["phases"]) + 6
    assert "eval_accuracy" in result.metrics and "dapt_mlm_loss" in result.metrics
    steps = [m["step"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert steps == sorted(steps), "step numbers continue across phases"
    messages = ctx.sink.of("message")
    assert any(m.startswith("DAPT: held-out MLM loss") for m in messages)
    assert any(m.startswith("TAPT: Training") for m in messages)


def test_tapt_alone_yields_an_encoder(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path, "out", {"tapt": True})
    assert run_strategy(ctx).status == "succeeded"
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["task"] == "masked_lm" and "encoder/config.json" in manifest["files"]
    assert not (ctx.output_dir / "adapter").exists()


# in DAPT (steps 1-6, streamed), TAPT (7-10), the task (11-16); with peft lora, in TAPT continuing DAPT's adapter
@pytest.mark.parametrize(("pause_after", "peft"), [(2, None), (7, None), (12, None), (8, "lora")])
def test_pause_anywhere_resumes_to_the_same_result(pause_after, peft, make_ctx, tmp_path):
    settings = {"corpus_file": "file-x", "tapt": True, "then": THEN_LORA, **({"peft": peft} if peft else {})}
    straight = _ctx(make_ctx, tmp_path, "straight", settings)
    assert run_strategy(straight).status == "succeeded"
    paused = _ctx(make_ctx, tmp_path, "resumed", settings, sink=ListSink(stop_at_step=pause_after, stop_reason="pause"))
    assert run_strategy(paused).status == "paused"
    assert latest_complete_checkpoint(paused.checkpoint_dir) is None  # phases keep their own checkpoint dirs
    resumed = _ctx(make_ctx, tmp_path, "resumed", settings)
    assert run_strategy(resumed).status == "succeeded"
    encoder = "encoder/adapter/adapter_model.safetensors" if peft else "encoder/model.safetensors"
    for name in (encoder, "adapter/adapter_model.safetensors"):
        a, b = load_file(straight.output_dir / name), load_file(resumed.output_dir / name)
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, name


def test_unusable_corpus_fails_the_job_clearly(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path, "out", {"corpus_file": "file-x"})
    write_jsonl(ctx.input_files["corpus_file"], [{"body": "no text field"}])
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.code == "invalid_corpus" and '"text"' in info.value.message


def test_lora_dapt_tapt_ships_an_adapter_not_an_encoder_copy(make_ctx, tmp_path, tiny_model_dir):
    """peft: "lora": DAPT and TAPT train one LoRA adapter over the frozen base; encoder/ is the base's id
    plus that adapter (no weights file of its own), the task phase runs over base + adapter merged, and
    loading encoder/ anywhere gives exactly that merged model."""
    from transformers import AutoModelForSequenceClassification

    from app.training.adapted_base import load_pretrained
    from app.training.artifacts import load_classifier

    ctx = _ctx(make_ctx, tmp_path, "out", {"corpus_file": "file-x", "tapt": True, "peft": "lora",
                                            "lora": {"r": 4, "target_modules": "all-linear"}, "then": THEN_LORA})
    assert run_strategy(ctx).status == "succeeded"
    encoder = ctx.output_dir / "encoder"
    assert not (encoder / "model.safetensors").exists()
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    adapter = load_file(encoder / "adapter" / "adapter_model.safetensors")
    assert (encoder / "adapter" / "adapter_model.safetensors").stat().st_size < base_bytes / 2
    assert adapter and all("lora_" in k and ".cls." not in k for k in adapter)  # the MLM head is never adapted
    head = load_file(encoder / "mlm_head.safetensors")
    assert "cls.predictions.transform.dense.weight" in head and not any(k.startswith("bert.") for k in head)
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    dapt = manifest["adaptive"]["phases"][0]
    assert dapt["after"]["mlm_loss"] < dapt["before"]["mlm_loss"]
    assert any("Training" in m and "Streaming" not in m for m in ctx.sink.of("message"))

    merged = load_pretrained(AutoModelForSequenceClassification, encoder, num_labels=2)
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    moved = {k for k, v in plain.bert.state_dict().items() if not torch.equal(v, merged.bert.state_dict()[k])}
    assert moved and all(k.endswith("weight") and k.startswith("encoder.layer.") for k in moved)  # adapted linears
    # the task adapter names its base by id (transformers alone cannot load base + LoRA); the card says how
    task_adapter = json.loads((ctx.output_dir / "adapter" / "adapter_config.json").read_text())
    assert task_adapter["base_model_name_or_path"] == "adapted:ftjob-test"
    assert 'load_classifier("ftjob-test", "ftjob-test/encoder")' in (ctx.output_dir / "README.md").read_text()
    model, tokenizer, _ = load_classifier(ctx.output_dir, encoder)  # the task artifact over its adapted base
    rows = [json.loads(line) for line in ctx.validation_file.read_text().splitlines()]
    preds = [json.loads(line) for line in (ctx.output_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    with torch.no_grad():
        for row, pred in zip(rows, preds, strict=True):
            logits = model(**tokenizer(row["text"], return_tensors="pt", truncation=True)).logits[0]
            assert torch.allclose(logits, torch.tensor(pred["logits"]), atol=1e-5)


def test_lora_adaptation_over_a_lora_adapted_base_merges_both(make_ctx, tmp_path):
    """An adaptive job on `adapted:<job>` (itself base + LoRA) trains its own adapter over base + the first
    adapter merged; its encoder/ names the first as base and loads as base + both updates."""
    from dataclasses import replace

    from transformers import AutoModelForMaskedLM

    from app.fsio import directory_sha256
    from app.training.adapted_base import ADAPTED_BASE, load_pretrained
    from app.training.base import BaseModelRef
    from tests.training.conftest import context_factory

    first = _ctx(make_ctx, tmp_path, "first", {"tapt": True, "peft": "lora"})
    assert run_strategy(first).status == "succeeded"
    encoder = first.output_dir / "encoder"
    ref = BaseModelRef(id="adapted:ftjob-test", path=encoder, sha256=directory_sha256(encoder))
    second = context_factory(ref, tmp_path / "second")("adaptive", settings={"tapt": True, "peft": "lora"},
                                                         n_train=24, batch_size=16, learning_rate=5e-3, n_epochs=2)
    second = replace(second, job_id="ftjob-second")
    assert run_strategy(second).status == "succeeded"
    stacked = second.output_dir / "encoder"
    assert json.loads((stacked / ADAPTED_BASE).read_text())["id"] == "adapted:ftjob-test"
    once = load_pretrained(AutoModelForMaskedLM, encoder).bert.encoder.layer[0].attention.self.query.weight
    twice = load_pretrained(AutoModelForMaskedLM, stacked).bert.encoder.layer[0].attention.self.query.weight
    assert not torch.allclose(once, twice)
