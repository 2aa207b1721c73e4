"""Pause, crash, checkpoint, resume: the result matches an uninterrupted run bit for bit (1e-6)."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from app.training.base import TrainingError
from app.training.checkpoints import COMPLETE, latest_complete_checkpoint
from app.training.registry import get_strategy, run_strategy
from tests.training.conftest import MATRIX_SETTINGS, ListSink, WorkerDied, task_methods


def _assert_same_weights(a_ctx, b_ctx, method: str) -> None:
    weights = get_strategy(method).artifact_files[0]  # the spec lists the weights file first
    a, b = load_file(a_ctx.output_dir / weights), load_file(b_ctx.output_dir / weights)
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-6, key


@pytest.mark.parametrize("method", task_methods())
def test_pause_then_resume_matches_uninterrupted_run(method, make_ctx):
    # 24 rows / batch 8 = 3 steps per epoch; pausing after step 4 stops mid-epoch 2 (dropout on)
    common = dict(settings=MATRIX_SETTINGS.get(method, {}), n_train=24, n_epochs=2)
    straight = make_ctx(method, output="straight", **common)
    assert run_strategy(straight).status == "succeeded"

    paused_ctx = make_ctx(method, output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    paused = run_strategy(paused_ctx)
    assert paused.status == "paused" and paused.steps == 4
    assert list(paused_ctx.output_dir.iterdir()) == []
    checkpoint = latest_complete_checkpoint(paused_ctx.checkpoint_dir)
    assert checkpoint is not None and checkpoint.name == "step-00000004"
    assert json.loads((checkpoint / "state.json").read_text())["batch_in_epoch"] == 1

    resumed_ctx = make_ctx(method, output="resumed", resume_from=checkpoint, **common)
    result = run_strategy(resumed_ctx)
    assert result.status == "succeeded" and result.steps == 6
    assert any(m.startswith("Resumed from checkpoint at step 4") for m in resumed_ctx.sink.of("message"))
    assert [m["step"] for m in resumed_ctx.sink.of("metrics")][0] >= 5
    _assert_same_weights(straight, resumed_ctx, method)
    straight_manifest = json.loads((straight.output_dir / "manifest.json").read_text())
    resumed_manifest = json.loads((resumed_ctx.output_dir / "manifest.json").read_text())
    for key in ("trained_tokens", "flops", "steps"):
        assert resumed_manifest[key] == straight_manifest[key], key
    assert resumed_manifest["metrics"]["eval_loss"] == pytest.approx(straight_manifest["metrics"]["eval_loss"], abs=1e-6)


def test_worker_death_resumes_from_the_last_periodic_checkpoint(make_ctx):
    common = dict(settings=MATRIX_SETTINGS["lora"], n_train=24, n_epochs=2, checkpoint_every=2)
    straight = make_ctx("lora", output="straight", **common)
    run_strategy(straight)
    dying = make_ctx("lora", output="crashed", sink=ListSink(stop_at_step=5, stop_reason="die"), **common)
    with pytest.raises(WorkerDied):
        run_strategy(dying)
    assert list(dying.output_dir.iterdir()) == []
    checkpoint = latest_complete_checkpoint(dying.checkpoint_dir)
    assert checkpoint.name == "step-00000004"
    resumed = make_ctx("lora", output="crashed", resume_from=checkpoint, **common)
    assert run_strategy(resumed).steps == 6
    _assert_same_weights(straight, resumed, "lora")


def test_checkpoint_layout_and_retention(make_ctx):
    ctx = make_ctx("bitfit", n_train=24, checkpoint_every=1)
    run_strategy(ctx)
    assert ctx.sink.of("checkpoint") == [1, 2, 3]
    kept = sorted(p.name for p in ctx.checkpoint_dir.iterdir() if p.name != "best")  # best: select_best
    assert kept == ["step-00000002", "step-00000003"]  # the newest 2; no .tmp left behind
    newest = ctx.checkpoint_dir / "step-00000003"
    assert {p.name for p in newest.iterdir()} == {"trainable.safetensors", "optimizer.pt", "rng.pt", "rng.json",
                                                 "state.json", COMPLETE}
    state = json.loads((newest / "state.json").read_text())
    assert state["step"] == 3 and state["epoch"] == 1 and state["batch_in_epoch"] == 0
    assert state["trained_tokens"] > 0 and state["flops"] > 0
    trainable = load_file(newest / "trainable.safetensors")
    trained = (".bias", "pooler.dense.weight")  # BitFit's biases and (train_pooler, its default) the pooler
    assert trainable and all(k.endswith(trained) or k.startswith("classifier.") for k in trainable)


def test_incomplete_checkpoint_is_ignored(make_ctx):
    ctx = make_ctx("bitfit", n_epochs=2)
    run_strategy(ctx)
    ckpts = sorted(ctx.checkpoint_dir.glob("step-*"))
    assert [p.name for p in ckpts] == ["step-00000002", "step-00000004"]
    (ckpts[-1] / COMPLETE).unlink()
    assert latest_complete_checkpoint(ctx.checkpoint_dir).name == "step-00000002"
    shutil.copytree(ckpts[0], ctx.checkpoint_dir / ".step-00000009.tmp")  # a crash mid-write
    assert latest_complete_checkpoint(ctx.checkpoint_dir).name == "step-00000002"
    assert latest_complete_checkpoint(ctx.checkpoint_dir / "missing") is None
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("bitfit", n_epochs=2, output="again", resume_from=ckpts[-1]))
    assert info.value.code == "invalid_checkpoint"


def test_checkpoint_of_another_method_is_refused(make_ctx):
    ctx = make_ctx("bitfit", n_epochs=1)
    run_strategy(ctx)
    checkpoint = latest_complete_checkpoint(ctx.checkpoint_dir)
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("lora", {"r": 2}, output="lora", resume_from=checkpoint))
    assert info.value.code == "invalid_checkpoint" and "trainable parameters" in info.value.message
