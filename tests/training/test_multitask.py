"""The `multitask` strategy (Muppet): a shared encoder, one head per task, heterogeneous batches, then a task."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier, predict, read_manifest
from app.training.base import TrainingError
from app.training.registry import run_strategy
from app.training.strategies.multitask.mixture import sampling_probabilities
from tests.tiny_models import NEGATIVE, NEUTRAL, POSITIVE, make_classification_rows, write_jsonl
from tests.training.conftest import ListSink

THEN_LORA = {"type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 2, "batch_size": 8,
                                                                  "learning_rate": 1e-3, "max_length": 16}}}


def _topic_rows(n: int, seed: int) -> list[dict]:
    """A second task over other words: which word list a text draws from (3 labels, 'pos' never a label)."""
    import random

    rng, names = random.Random(seed), {"a": POSITIVE, "b": NEGATIVE, "c": NEUTRAL}
    return [{"text": " ".join(rng.sample(words, 3)), "label": label}
            for i in range(n) for label, words in [list(names.items())[i % 3]]]


def _ctx(make_ctx, tmp_path, settings: dict | None = None, output: str = "out", sink=None, **kw):
    tasks = [{"name": "sentiment", "training_file": "file-s", "validation_file": "file-sv"},
             {"name": "topic", "training_file": "file-t", "validation_file": "file-tv"}]
    ctx = make_ctx("multitask", settings={"tasks": tasks, **(settings or {})}, n_train=24, output=output, sink=sink,
                   batch_size=8, learning_rate=5e-3, **{"n_epochs": 2, **kw})
    ctx.input_files.update({
        "tasks.0.training_file": write_jsonl(tmp_path / "s.jsonl", make_classification_rows(40, seed=7)),
        "tasks.0.validation_file": write_jsonl(tmp_path / "sv.jsonl", make_classification_rows(10, seed=8)),
        "tasks.1.training_file": write_jsonl(tmp_path / "t.jsonl", _topic_rows(20, seed=9)),
        "tasks.1.validation_file": write_jsonl(tmp_path / "tv.jsonl", _topic_rows(9, seed=10))})
    return ctx


def test_sampling_rules():
    assert sampling_probabilities([300, 100], "proportional", 2.0) == pytest.approx([0.75, 0.25])
    assert sampling_probabilities([400, 100], "temperature", 2.0) == pytest.approx([2 / 3, 1 / 3])  # 20 : 10
    assert sampling_probabilities([400, 100], "temperature", 1.0) == pytest.approx([0.8, 0.2])


def test_shared_encoder_and_one_head_per_task(make_ctx, tmp_path):
    """Without then, the job's own training file (24 rows of make_ctx's) joins the two tasks as a third."""
    ctx = _ctx(make_ctx, tmp_path, n_epochs=4)
    result = run_strategy(ctx)
    assert result.status == "succeeded"
    assert result.produced_model.id == "multitask:ftjob-test" and result.produced_model.path == "encoder"
    manifest = read_manifest(ctx.output_dir)
    assert manifest["task"] == "multitask" and "labels" not in manifest  # no single classifier to serve
    tasks = {t["name"]: t for t in manifest["multitask"]["tasks"]}
    assert list(tasks) == ["sentiment", "topic", "training_file"] and tasks["topic"]["labels"] == ["a", "b", "c"]
    assert tasks["sentiment"]["probability"] == pytest.approx(40 / 84)
    assert tasks["topic"]["accuracy"] > 0.5, "both heads learn their task (chance: 1/3)"
    assert tasks["sentiment"]["accuracy"] > 0.5
    heads = load_file(ctx.output_dir / "heads" / "heads.safetensors")
    assert heads["topic.weight"].shape == (3, 32) and heads["sentiment.weight"].shape == (2, 32)
    assert {"encoder/model.safetensors", "heads/tasks.json"} <= set(manifest["files"])
    metrics = [m for m in ctx.sink.of("metrics")]
    assert any("train_topic_loss" in m and "train_sentiment_loss" in m for m in metrics)
    assert any("eval_topic_accuracy" in m and "eval_sentiment_accuracy" in m for m in metrics)
    assert manifest["steps"] == result.steps == 4 * 11  # ceil(84 rows / 8) per epoch
    from transformers import AutoModel
    AutoModel.from_pretrained(ctx.output_dir / "encoder")  # a plain encoder later jobs start from


def test_then_fine_tunes_the_target_on_the_multitask_encoder(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path, {"sampling": "temperature", "temperature": 3.0, "then": THEN_LORA})
    result = run_strategy(ctx)
    assert result.status == "succeeded"
    manifest = read_manifest(ctx.output_dir)
    assert manifest["method"] == "multitask" and manifest["task_method"] == "lora"
    assert manifest["base_model"]["id"] == "multitask:ftjob-test"
    assert [t["name"] for t in manifest["multitask"]["tasks"]] == ["sentiment", "topic"]
    assert manifest["steps"] == result.steps == 16 + 6  # the mixture's steps, then LoRA's 2 × ceil(24 / 8)
    assert "multitask_eval_topic_accuracy" in result.metrics and "eval_accuracy" in result.metrics
    steps = [m["step"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert steps == sorted(steps), "step numbers continue from the mixture into the task"
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.output_dir / "encoder")
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    logits = [p["logits"] for p in predict(model, tokenizer, rows, labels)]
    stored = [json.loads(line)["logits"] for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert torch.allclose(torch.tensor(logits), torch.tensor(stored), atol=1e-5)


@pytest.mark.parametrize("pause_after", [3, 19])  # in the mixture (steps 1-16), in the task (17-22)
def test_pause_anywhere_resumes_to_the_same_result(pause_after, make_ctx, tmp_path):
    settings = {"then": THEN_LORA}
    straight = _ctx(make_ctx, tmp_path, settings, output="straight")
    assert run_strategy(straight).status == "succeeded"
    paused = _ctx(make_ctx, tmp_path, settings, output="resumed", sink=ListSink(stop_at_step=pause_after,
                                                                               stop_reason="pause"))
    assert run_strategy(paused).status == "paused"
    resumed = _ctx(make_ctx, tmp_path, settings, output="resumed")
    assert run_strategy(resumed).status == "succeeded"
    for name in ("encoder/model.safetensors", "heads/heads.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(straight.output_dir / name), load_file(resumed.output_dir / name)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, name


def test_a_validation_label_the_task_lacks_fails_the_job_naming_the_file(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path)
    write_jsonl(ctx.input_files["tasks.1.validation_file"], [{"text": "good", "label": "zzz"}])
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.param == "method.multitask.tasks.1.validation_file" and "zzz" in info.value.message


def _score_rows(n: int, seed: int) -> list[dict]:
    """Regression: the share of positive words among three (0, 1/3, 2/3 or 1, given as floats)."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % 4
        words = rng.sample(POSITIVE, k) + rng.sample(NEGATIVE, 3 - k)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": k / 3 + 0.001})  # a fraction: regression, not a class
    return rows


def _tag_rows(n: int, seed: int) -> list[dict]:
    """Multi-label: which of the word lists a text draws from (one or two of them)."""
    import random

    rng, names = random.Random(seed), {"pos": POSITIVE, "neg": NEGATIVE, "obj": NEUTRAL}
    rows = []
    for i in range(n):
        chosen = sorted(rng.sample(list(names), 1 + i % 2))
        rows.append({"text": " ".join(w for name in chosen for w in rng.sample(names[name], 2)), "labels": chosen})
    return rows


def test_a_mixture_of_classification_regression_and_multi_label_heads(make_ctx, tmp_path):
    """Each task type keeps its head width, loss and metrics in one mixture; eval_score (their mean primary
    figure) picks the checkpoint; the regression head starts at its labels' mean."""
    tasks = [{"name": "sentiment", "training_file": "f1", "validation_file": "f1v"},
             {"name": "score", "training_file": "f2", "validation_file": "f2v"},
             {"name": "tags", "training_file": "f3", "validation_file": "f3v"}]
    ctx = make_ctx("multitask", settings={"tasks": tasks, "then": THEN_LORA}, n_train=24, batch_size=8,
                   learning_rate=5e-3, n_epochs=6)
    ctx.input_files.update({
        "tasks.0.training_file": write_jsonl(tmp_path / "s.jsonl", make_classification_rows(40, seed=7)),
        "tasks.0.validation_file": write_jsonl(tmp_path / "sv.jsonl", make_classification_rows(12, seed=8)),
        "tasks.1.training_file": write_jsonl(tmp_path / "r.jsonl", _score_rows(40, seed=9)),
        "tasks.1.validation_file": write_jsonl(tmp_path / "rv.jsonl", _score_rows(12, seed=10)),
        "tasks.2.training_file": write_jsonl(tmp_path / "m.jsonl", _tag_rows(40, seed=11)),
        "tasks.2.validation_file": write_jsonl(tmp_path / "mv.jsonl", _tag_rows(12, seed=12))})
    assert run_strategy(ctx).status == "succeeded"
    manifest = read_manifest(ctx.output_dir)
    by_name = {t["name"]: t for t in manifest["multitask"]["tasks"]}
    assert [by_name[n]["type"] for n in ("sentiment", "score", "tags")] == [
        "sequence_classification", "regression", "multi_label_classification"]
    assert by_name["tags"]["labels"] == ["neg", "obj", "pos"] and by_name["score"]["labels"] == []
    heads = load_file(ctx.output_dir / "heads" / "heads.safetensors")
    assert heads["score.weight"].shape == (1, 32) and heads["tags.weight"].shape == (3, 32)
    assert {"pearson", "spearman", "mse"} <= set(by_name["score"]) and by_name["score"]["pearson"] > 0.5
    assert {"micro_f1", "macro_f1"} <= set(by_name["tags"]) and by_name["tags"]["micro_f1"] > 0.5
    assert by_name["sentiment"]["accuracy"] > 0.5
    evals = [m for m in ctx.sink.of("metrics") if "eval_score" in m]
    assert evals and all("eval_accuracy" not in m for m in evals)  # a mixed mixture has no single accuracy
    first = [m for m in ctx.sink.of("message") if m.startswith("Multitask: sentiment")][0]
    assert "score 40 rows of regression" in first and "tags 40 rows of multi_label_classification, 3 labels" in first
    assert any("validation pearson" in m for m in ctx.sink.of("message"))


def test_a_token_classification_task_fails_the_job_saying_to_use_then(make_ctx, tmp_path):
    ctx = _ctx(make_ctx, tmp_path)
    write_jsonl(ctx.input_files["tasks.1.training_file"], [{"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]}] * 4)
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.code == "unsupported_task_type" and info.value.param == "method.multitask.tasks.1.training_file"
    assert "then" in info.value.message and "token_classification" in info.value.message
