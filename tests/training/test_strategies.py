"""The shared strategy matrix on a tiny random BERT: every method trains, writes its artifact
layout, and the artifact reproduces the job's predictions in a fresh process with plain
transformers / peft (BitFit, which has no native format, through `load_classifier`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from app.fsio import sha256_file
from app.training.artifacts import read_manifest
from app.training.base import TrainingError
from app.training.registry import get_strategy, run_strategy
from tests.training.conftest import MATRIX_SETTINGS, task_methods

METHODS = task_methods()

@pytest.fixture(scope="module")
def trained(base_ref, tmp_path_factory):
    """Each method trained once (2 epochs × 2 steps); the tests below inspect the results."""
    from tests.training.conftest import context_factory

    make = context_factory(base_ref, tmp_path_factory.mktemp("matrix"))
    runs = {}
    for method in METHODS:
        ctx = make(method, MATRIX_SETTINGS.get(method, {}), output=method, n_epochs=2)
        runs[method] = (ctx, run_strategy(ctx))
    return runs


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_writes_its_artifact(method, trained):
    files, settings = set(get_strategy(method).artifact_files), MATRIX_SETTINGS.get(method, {})
    ctx, result = trained[method]
    assert result.status == "succeeded" and result.steps == 4
    assert result.trained_tokens > 0 and result.flops > 0
    manifest = read_manifest(ctx.output_dir)
    assert manifest["format_version"] == 1 and manifest["job_id"] == "ftjob-test"
    assert manifest["task"] == "sequence_classification" and manifest["method"] == method
    assert manifest["base_model"] == {"id": "tiny-bert", "sha256": ctx.base_model.sha256}
    assert manifest["labels"] == ["neg", "pos"] and manifest["steps"] == 4
    assert (manifest["trained_tokens"], manifest["flops"]) == (result.trained_tokens, result.flops)
    assert manifest["hyperparameters"]["batch_size"] == 8 and manifest["settings"] == settings
    assert set(manifest["metrics"]) >= {"eval_loss", "eval_accuracy", "eval_macro_f1"}
    assert files | {"eval/predictions.jsonl"} <= set(manifest["files"])
    on_disk = {p.relative_to(ctx.output_dir).as_posix() for p in ctx.output_dir.rglob("*") if p.is_file()}
    assert on_disk == set(manifest["files"]) | {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert sha256_file(ctx.output_dir / name) == entry["sha256"]
        assert (ctx.output_dir / name).stat().st_size == entry["bytes"]
    predictions = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert [p["index"] for p in predictions] == list(range(6))
    assert all(set(p) == {"index", "label", "predicted", "logits"} and len(p["logits"]) == 2 for p in predictions)
    metrics = ctx.sink.of("metrics")
    assert metrics[0]["step"] == 1 and {"train_loss", "learning_rate", "epoch", "samples_per_second",
                                        "tokens_per_second", "trained_tokens", "flops"} <= set(metrics[0])
    assert [m["step"] for m in metrics if "eval_macro_f1" in m] == [2, 4]
    assert ctx.sink.of("checkpoint") == [2, 4]
    kept = sorted(p.name for p in ctx.checkpoint_dir.iterdir())
    assert [name for name in kept if name != "best"] == ["step-00000002", "step-00000004"]  # best: select_best


# One fresh interpreter checks every artifact (importing transformers costs seconds): the native
# formats with plain transformers / peft only, the others (no native format) via load_classifier;
# each method's spec says which (`reload`).
RELOAD = """
import json, sys, torch
from pathlib import Path
base = Path(sys.argv[1])
worst, native_checked = {}, False
for method, reload, art, valid in zip(sys.argv[2::4], sys.argv[3::4], map(Path, sys.argv[4::4]), sys.argv[5::4]):
    labels = json.loads((art / "manifest.json").read_text())["labels"]
    if reload == "transformers":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained(art / "model")
        tok = AutoTokenizer.from_pretrained(art / "model")
    elif reload == "peft":
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        base_model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label={i: str(l) for i, l in enumerate(labels)})
        model, tok = PeftModel.from_pretrained(base_model, art / "adapter"), AutoTokenizer.from_pretrained(base)
    else:  # "tuneforge"; the native formats, checked first, needed none of our code
        assert "app.training" not in sys.modules or native_checked
        from app.training.artifacts import load_classifier
        native_checked = True
        model, tok, labels = load_classifier(art, base)
    model.eval()
    rows = [json.loads(line) for line in open(valid) if line.strip()]
    preds = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
    worst[method] = 0.0
    for row, pred in zip(rows, preds, strict=True):
        with torch.no_grad():
            enc = tok(row["text"], row.get("text_pair"), return_tensors="pt", truncation=True, max_length=16)
            logits = model(**enc).logits[0]
        worst[method] = max(worst[method], (logits - torch.tensor(pred["logits"])).abs().max().item())
        assert labels[int(logits.argmax())] == pred["predicted"], (method, pred)
print(json.dumps(worst))
"""


def test_artifacts_reproduce_predictions_in_a_fresh_process(trained, tiny_model_dir):
    args = [str(tiny_model_dir)]
    for method in sorted(METHODS, key=lambda m: get_strategy(m).reload == "tuneforge"):
        ctx = trained[method][0]
        args += [method, get_strategy(method).reload, str(ctx.output_dir), str(ctx.validation_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, *args], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    worst = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(worst) == set(METHODS) and max(worst.values()) < 1e-5, worst


def test_text_pairs_integer_labels_and_eval_every(make_ctx):
    from app.training.artifacts import load_classifier, predict
    from tests.tiny_models import make_classification_rows

    rows = [{**r, "label": 7 if r["label"] == "pos" else 3} for r in make_classification_rows(12, seed=3, pair=True)]
    ctx = make_ctx("bitfit", train_rows=rows, valid_rows=rows[:5], batch_size=4, eval_every=2)
    assert run_strategy(ctx).steps == 3
    assert [m["step"] for m in ctx.sink.of("metrics") if "eval_loss" in m] == [2, 3]
    manifest = read_manifest(ctx.output_dir)
    assert manifest["labels"] == [3, 7]
    predictions = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert [p["label"] for p in predictions] == [r["label"] for r in rows[:5]]
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.base_model.path)
    again = predict(model, tokenizer, [{"text": r["text"], "text_pair": r["text_pair"]} for r in rows[:5]], labels)
    for mine, theirs in zip(again, predictions, strict=True):
        assert mine["predicted"] == theirs["predicted"] and type(mine["predicted"]) is int
        assert max(abs(a - b) for a, b in zip(mine["logits"], theirs["logits"])) < 1e-5


@pytest.mark.parametrize("train_pooler", [True, False])
def test_bitfit_delta_holds_only_biases_and_head(make_ctx, tiny_model_dir, train_pooler):
    """Biases and the head, plus the pooler's weight when train_pooler (BitFit's default) is on."""
    ctx = make_ctx("bitfit", {"train_pooler": train_pooler})
    run_strategy(ctx)
    delta = load_file(ctx.output_dir / "delta" / "delta.safetensors")
    pooler = {"bert.pooler.dense.weight"} if train_pooler else set()
    assert delta and all(k.endswith(".bias") or k.startswith("classifier.") or k in pooler for k in delta)
    assert pooler <= set(delta)
    assert {"classifier.weight", "classifier.bias", "bert.encoder.layer.0.attention.self.query.bias"} <= set(delta)
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    share = 0.10 if train_pooler else 0.05  # the tiny model's pooler is 2.5% of it (0.65% of minilm-l6)
    assert (ctx.output_dir / "delta" / "delta.safetensors").stat().st_size < share * base_bytes


def test_lora_rejects_unknown_target_module(make_ctx):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("lora", {"target_modules": ["query", "nope"]}))
    err = info.value
    assert err.code == "invalid_method_settings" and err.param == "method.lora.target_modules"
    assert "nope" in err.message and "'key'" in err.message and "'query'" in err.message


def test_ia3_takes_path_suffixes_as_peft_does(make_ctx):
    """'intermediate.dense' names the FFN's first layer alone (a bare 'dense' would match every dense layer)."""
    from safetensors.torch import load_file

    ctx = make_ctx("ia3", {"target_modules": ["key", "intermediate.dense"]})
    run_strategy(ctx)
    adapted = load_file(ctx.output_dir / "adapter" / "adapter_model.safetensors")
    scaled = {k.split(".ia3_l")[0].split("layer.0.")[-1] for k in adapted if "ia3_l" in k and "layer.0." in k}
    assert scaled == {"attention.self.key", "intermediate.dense"}


def test_ia3_rescales_every_linear_layer_by_default(make_ctx):
    """target_modules "all-linear": each encoder linear layer's output and the pooler's, never the new head."""
    from safetensors.torch import load_file

    ctx = make_ctx("ia3")
    run_strategy(ctx)
    adapted = load_file(ctx.output_dir / "adapter" / "adapter_model.safetensors")
    scaled = {k.split(".ia3_l")[0].split("bert.")[-1] for k in adapted if "ia3_l" in k}
    per_layer = {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense"}
    assert scaled == {f"encoder.layer.{i}.{m}" for i in (0, 1) for m in per_layer} | {"pooler.dense"}
    assert all(adapted[k].shape[1] == 1 for k in adapted if "ia3_l" in k)  # output scaling: (out, 1) vectors


def test_ia3_feedforward_modules_need_named_targets():
    from pydantic import ValidationError

    from app.training.methods import MethodError, parse_method
    from app.training.strategies.ia3.config import IA3Settings

    with pytest.raises(ValidationError, match="feedforward_modules needs target_modules named as a list"):
        IA3Settings(feedforward_modules=["output.dense"])
    with pytest.raises(MethodError) as refused:  # what the API answers with a 400
        parse_method({"type": "ia3", "ia3": {"target_modules": "all-linear", "feedforward_modules": ["dense"]}})
    assert "feedforward_modules needs target_modules named as a list" in refused.value.message


def test_cancel_writes_no_artifact(make_ctx):
    from tests.training.conftest import ListSink

    ctx = make_ctx("lora", sink=ListSink(stop_at_step=1, stop_reason="cancel"), n_epochs=2)
    result = run_strategy(ctx)
    assert result.status == "cancelled" and result.steps == 1
    assert list(ctx.output_dir.iterdir()) == []


def test_nan_loss_fails_with_clear_error(make_ctx, tiny_model_dir, tmp_path):
    """A base whose embeddings overflowed (a real failure mode of fp16 checkpoints) gives NaN loss."""
    import dataclasses

    import torch
    from transformers import AutoModelForPreTraining, AutoTokenizer

    broken = tmp_path / "broken-base"
    model = AutoModelForPreTraining.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[5:].fill_(float("inf"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    ctx = make_ctx("supervised")
    ctx.base_model = dataclasses.replace(ctx.base_model, path=broken)
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.code == "nan_loss" and "step 1" in info.value.message
    assert "learning_rate" in info.value.message
    assert list(ctx.output_dir.iterdir()) == []


def test_validation_labels_unknown_to_training_file_fail(make_ctx):
    rows = [{"text": "good day", "label": "pos"}, {"text": "a table", "label": "neutral"}]
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("bitfit", valid_rows=rows))
    assert info.value.code == "invalid_validation_file" and info.value.param == "validation_file"
    assert "neutral" in info.value.message


def test_out_of_memory_is_recognised():
    """The CPU allocator's real failure (not torch.OutOfMemoryError) maps to code out_of_memory."""
    import torch

    from app.training.engine import is_out_of_memory

    with pytest.raises(RuntimeError) as info:
        torch.empty(2**62, dtype=torch.uint8)
    assert is_out_of_memory(info.value)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("method", ["lora", "bitfit"])
def test_artifact_refuses_a_different_base_model(method, make_ctx, tmp_path):
    from app.training.artifacts import load_classifier
    from tests.tiny_models import make_tiny_bert

    ctx = make_ctx(method, {"r": 2} if method == "lora" else {}, n_valid=0)
    run_strategy(ctx)
    other = make_tiny_bert(tmp_path / "other-base", seed=1)  # same shapes, other weights
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message


def test_corrupted_artifact_is_refused(make_ctx):
    from app.training.artifacts import load_classifier

    ctx = make_ctx("bitfit", n_valid=0)
    run_strategy(ctx)
    delta = ctx.output_dir / "delta" / "delta.safetensors"
    delta.write_bytes(delta.read_bytes()[:-8])
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, ctx.base_model.path)
    assert info.value.code == "artifact_corrupted"


def test_supervised_actually_learns_the_toy_task(make_ctx):
    """Guards the whole input path (tokenizer, labels, batching): a broken one cannot reach 100%."""
    ctx = make_ctx("supervised", n_train=48, n_valid=20, n_epochs=8, learning_rate=3e-3, warmup_ratio=0.0)
    result = run_strategy(ctx)
    assert result.metrics["eval_accuracy"] == 1.0 and result.metrics["eval_macro_f1"] == 1.0
    losses = [m["train_loss"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert losses[0] > 0.65 and losses[-1] < 0.5


def test_ia3_rescales_chosen_layers_and_refuses_unknown_ones(make_ctx):
    from app.training.methods import MethodError, parse_method

    ctx = make_ctx("ia3", {"target_modules": ["key", "value", "dense"], "feedforward_modules": ["dense"]}, n_valid=0)
    assert run_strategy(ctx).status == "succeeded"
    config = json.loads((ctx.output_dir / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and set(config["target_modules"]) == {"key", "value", "dense"}
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("ia3", {"target_modules": ["nope"]}, output="bad"))
    assert info.value.param == "method.ia3.target_modules" and "'query'" in info.value.message
    with pytest.raises(MethodError) as refused:
        parse_method({"type": "ia3", "ia3": {"target_modules": ["key"], "feedforward_modules": ["dense"]}})
    assert "not among target_modules" in refused.value.message
