"""MAD-X on the tiny BERT (Pfeiffer et al. 2020, "MAD-X: An Adapter-Based Framework for Multi-Task
Cross-Lingual Transfer"): a language adapter trained with MLM by `adaptive`, a task adapter stacked
over it, the stack reloaded in a fresh process, and the language adapter swapped at load time."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.fsio import directory_sha256, sha256_file
from app.training.artifacts import load_classifier, predict
from app.training.base import BaseModelRef, TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from app.training.strategies.adapter.apply import CONFIG, WEIGHTS
from tests.tiny_models import make_tiny_bert, write_jsonl
from tests.training.conftest import ListSink, context_factory
from tests.training.test_mlm import corpus

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = {"reduction_factor": 2, "init_scale": 1e-2}
MLM_SCHEDULE = {"n_epochs": 8, "batch_size": 16, "learning_rate": 1e-2}


def language_adapter(make_ctx, root: Path, output: str, corpus_seed: int = 0, tapt: bool = False, sink=None):
    """An `adaptive` job training a language adapter on a corpus (DAPT, and TAPT when asked)."""
    ctx = make_ctx("adaptive", {"corpus_file": "file-x", "tapt": tapt, "adapter": LANGUAGE}, output=output,
                   sink=sink, n_train=24, **MLM_SCHEDULE)
    ctx.job_id = f"ftjob-{output}"
    rows = [{"text": text} for text in corpus(96, seed=corpus_seed)]
    ctx.input_files["corpus_file"] = write_jsonl(root / f"{output}-corpus.jsonl", rows)
    return ctx


def stacked_task_adapter(make_ctx, languages: list, output: str = "task", **settings):
    ctx = make_ctx("adapter", {"stack": [lang.job_id for lang in languages], **settings}, output=output, n_epochs=3,
                   learning_rate=1e-2)
    ctx.extra["stack"] = {lang.job_id: lang.output_dir for lang in languages}
    return ctx


def _rows(ctx) -> list[dict]:
    return [json.loads(line) for line in open(ctx.validation_file)]


def _worst(a: list[dict], b: list[dict]) -> float:
    return max(abs(x - y) for p, q in zip(a, b, strict=True) for x, y in zip(p["logits"], q["logits"], strict=True))


def test_language_adapter_trains_only_a_bottleneck_over_the_frozen_base(make_ctx, tmp_path):
    ctx = language_adapter(make_ctx, tmp_path, "lang")
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.produced_model is None  # no new encoder to register
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {CONFIG.as_posix(), WEIGHTS.as_posix()}
    assert manifest["base_model"] == {"id": "tiny-bert", "sha256": ctx.base_model.sha256}
    dapt = manifest["adaptive"]["phases"][0]
    assert dapt["after"]["mlm_loss"] < dapt["before"]["mlm_loss"]
    # the phase ends on its last step (select_best ranks task accuracy, which an MLM phase has not)
    assert not any("Selected the checkpoint" in message for message in ctx.sink.of("message"))
    tensors = load_file(ctx.output_dir / WEIGHTS)
    assert tensors and all(".adapters.language." in name for name in tensors)
    assert tensors["bert.encoder.layer.0.output.adapters.language.down.weight"].shape == (16, 32)
    config = json.loads((ctx.output_dir / CONFIG).read_text())
    assert (config["name"], config["objective"], config["reduction_factor"]) == ("language", "masked_lm", 2)
    assert config["base_model"] == manifest["base_model"]


def test_dapt_then_tapt_continue_one_adapter_and_resume_to_the_same_weights(make_ctx, tmp_path):
    straight = language_adapter(make_ctx, tmp_path, "straight", tapt=True)
    assert run_strategy(straight).status == "succeeded"
    paused = language_adapter(make_ctx, tmp_path, "resumed", tapt=True, sink=ListSink(stop_at_step=52,
                                                                                      stop_reason="pause"))
    assert run_strategy(paused).status == "paused"  # in TAPT (DAPT is 48 steps)
    assert latest_complete_checkpoint(paused.checkpoint_dir / "tapt") is not None
    resumed = language_adapter(make_ctx, tmp_path, "resumed", tapt=True)
    assert run_strategy(resumed).status == "succeeded"
    a, b = load_file(straight.output_dir / WEIGHTS), load_file(resumed.output_dir / WEIGHTS)
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    dapt_only = load_file(straight.checkpoint_dir / "dapt-encoder" / WEIGHTS)
    assert max((a[k] - dapt_only[k]).abs().max().item() for k in a) > 0  # TAPT trained the DAPT adapter further


def test_stacked_task_adapter_keeps_the_language_adapter_frozen_and_ships_a_copy(make_ctx, tmp_path, tiny_model_dir):
    lang = language_adapter(make_ctx, tmp_path, "lang")
    run_strategy(lang)
    ctx = stacked_task_adapter(make_ctx, [lang])
    assert run_strategy(ctx).status == "succeeded"
    tensors = load_file(ctx.output_dir / WEIGHTS)
    assert {k for k in tensors if ".adapters." in k} == {
        f"bert.encoder.layer.{i}.output.adapters.task.{p}.{w}" for i in range(2) for p in ("down", "up")
        for w in ("weight", "bias")}
    checkpoint = load_file(latest_complete_checkpoint(ctx.checkpoint_dir) / "trainable.safetensors")
    assert not any("stack_0" in k for k in checkpoint)  # nothing of the language adapter trained
    source = lang.output_dir / WEIGHTS
    copy = ctx.output_dir / CONFIG.parent / "stack" / "0" / WEIGHTS.name
    assert copy.read_bytes() == source.read_bytes()
    stack = json.loads((ctx.output_dir / CONFIG).read_text())["stack"]
    assert stack == [{"job_id": "ftjob-lang", "slot": "stack_0", "dir": "stack/0", "name": "language",
                      "sha256": sha256_file(source)}]
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["files"][copy.relative_to(ctx.output_dir).as_posix()]["sha256"] == sha256_file(source)

    model, _, _ = load_classifier(ctx.output_dir, tiny_model_dir)
    site = model.bert.encoder.layer[1].output.adapters
    assert list(site) == ["stack_0", "task"]  # MAD-X order: the language adapter, then the task adapter
    trained = load_file(source)["bert.encoder.layer.1.output.adapters.language.up.weight"]
    assert torch.equal(site["stack_0"].up.weight, trained)


def test_stacked_task_adapter_pauses_and_resumes_to_the_same_weights(make_ctx, tmp_path):
    """Checkpoints hold only the task adapter and head; a resumed job loads the stack again first."""
    lang = language_adapter(make_ctx, tmp_path, "lang")
    run_strategy(lang)
    straight = stacked_task_adapter(make_ctx, [lang], output="straight")
    run_strategy(straight)
    paused = stacked_task_adapter(make_ctx, [lang], output="resumed")
    paused.sink = ListSink(stop_at_step=3, stop_reason="pause")
    assert run_strategy(paused).status == "paused"
    resumed = stacked_task_adapter(make_ctx, [lang], output="resumed")
    resumed.resume_from = latest_complete_checkpoint(resumed.checkpoint_dir)
    assert resumed.resume_from is not None and run_strategy(resumed).status == "succeeded"
    a, b = load_file(straight.output_dir / WEIGHTS), load_file(resumed.output_dir / WEIGHTS)
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from app.training.artifacts import load_classifier, predict
    torch.set_num_threads(1)  # as this test's process runs (tests/training/conftest.py): the same sums, bit for bit
    model, tokenizer, labels = load_classifier(Path(sys.argv[1]), Path(sys.argv[2]))
    rows = [json.loads(line) for line in open(sys.argv[3])]
    print(json.dumps(predict(model, tokenizer, rows, labels)))
""")


def test_stack_reloads_in_a_fresh_process_with_identical_predictions(make_ctx, tmp_path, tiny_model_dir):
    lang = language_adapter(make_ctx, tmp_path, "lang")
    run_strategy(lang)
    ctx = stacked_task_adapter(make_ctx, [lang])
    run_strategy(ctx)
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(ctx.output_dir), str(tiny_model_dir),
                          str(ctx.validation_file)], cwd=ROOT, capture_output=True, text=True, check=True)
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    job = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    here = predict(model, tokenizer, _rows(ctx), labels)
    assert _worst(fresh, here) == 0.0 and _worst(fresh, job) < 1e-5
    assert [r["predicted"] for r in fresh] == [r["predicted"] for r in job]


def test_swapping_the_language_adapter_changes_outputs(make_ctx, tmp_path, tiny_model_dir):
    """Zero-shot transfer: the task adapter trained over language A runs over language B instead."""
    lang_a, lang_b = language_adapter(make_ctx, tmp_path, "lang-a"), language_adapter(make_ctx, tmp_path, "lang-b", 7)
    run_strategy(lang_a)
    run_strategy(lang_b)
    ctx = stacked_task_adapter(make_ctx, [lang_a])
    run_strategy(ctx)
    rows = _rows(ctx)
    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    as_trained = predict(model, tokenizer, rows, labels)
    for target in (lang_b.output_dir, lang_b.output_dir / CONFIG.parent):  # a job artifact or its bottleneck/
        swapped, _, _ = load_classifier(ctx.output_dir, tiny_model_dir, swap={"ftjob-lang-a": target})
        assert _worst(predict(swapped, tokenizer, rows, labels), as_trained) > 1e-6
        b_up = load_file(lang_b.output_dir / WEIGHTS)["bert.encoder.layer.0.output.adapters.language.up.weight"]
        assert torch.equal(swapped.bert.encoder.layer[0].output.adapters["stack_0"].up.weight, b_up)
    back, _, _ = load_classifier(ctx.output_dir, tiny_model_dir, swap={"ftjob-lang-a": lang_a.output_dir})
    assert _worst(predict(back, tokenizer, rows, labels), as_trained) == 0.0


def _other_base(tmp_path) -> BaseModelRef:
    path = make_tiny_bert(tmp_path / "other-base", seed=1)  # same shape, other weights
    return BaseModelRef(id="other-bert", path=path, sha256=directory_sha256(path))


def test_swap_and_stack_refuse_foreign_adapters(make_ctx, tmp_path, tiny_model_dir):
    lang = language_adapter(make_ctx, tmp_path, "lang")
    run_strategy(lang)
    foreign = language_adapter(context_factory(_other_base(tmp_path), tmp_path), tmp_path, "foreign")
    run_strategy(foreign)
    ctx = stacked_task_adapter(make_ctx, [lang])
    run_strategy(ctx)
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, tiny_model_dir, swap={"ftjob-lang": foreign.output_dir})
    assert info.value.code == "base_model_mismatch" and "other-bert" in info.value.message
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, tiny_model_dir, swap={"ftjob-nope": lang.output_dir})
    assert info.value.code == "invalid_swap" and "ftjob-lang" in info.value.message
    with pytest.raises(TrainingError) as info:  # a training job stacking it fails naming the field
        run_strategy(stacked_task_adapter(make_ctx, [foreign], output="bad"))
    assert (info.value.code, info.value.param) == ("base_model_mismatch", "method.adapter.stack")
    bitfit = make_ctx("bitfit", output="bitfit")
    run_strategy(bitfit)
    with pytest.raises(TrainingError) as info:  # nothing stacked to swap
        load_classifier(bitfit.output_dir, tiny_model_dir, swap={"ftjob-lang": lang.output_dir})
    assert info.value.code == "invalid_swap"


@pytest.mark.parametrize("method, settings, param, fragment", [
    ("adapter", {"stack": []}, "method.adapter.stack", "empty"),
    ("adapter", {"stack": ["ftjob-a", "ftjob-a"]}, "method.adapter.stack", "more than once"),
    ("adapter", {"stack": ["file-a"]}, "method.adapter.stack", "ftjob-"),
    ("adapter", {"stack": ["ftjob-a"], "drop_top_layers": 1}, "method.adapter.stack", "drop_top_layers"),
    ("adaptive", {"tapt": True, "adapter": {}, "then": {"type": "lora"}}, "method.adaptive", "stack"),
    ("adaptive", {"tapt": True, "then": {"type": "adapter", "adapter": {"stack": ["ftjob-a"]}}}, "method.adaptive",
     "then cannot stack"),
    ("adaptive", {"tapt": True, "adapter": {"reduction_factor": 0}}, "method.adaptive.adapter.reduction_factor",
     "greater than"),
])
def test_impossible_stacks_are_refused_before_training(method, settings, param, fragment):
    with pytest.raises(MethodError) as info:
        parse_method({"type": method, method: settings})
    assert info.value.param == param and fragment in info.value.message
