"""Pause, checkpoint, resume: the result matches an uninterrupted run."""
from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file

from app.training.checkpoints import latest_complete_checkpoint
from app.training.registry import run_strategy
from tests.training.conftest import ListSink


def _weights(ctx, method: str):
    name = {"lora": "adapter/adapter_model.safetensors", "bitfit": "delta/delta.safetensors"}[method]
    return load_file(ctx.output_dir / name)


@pytest.mark.parametrize("method", ["lora", "bitfit"])
def test_pause_then_resume_matches_uninterrupted_run(method, make_ctx):
    settings = {"r": 4, "lora_dropout": 0.2} if method == "lora" else {}
    straight = make_ctx(method, settings, n_train=24, output="straight", n_epochs=2)
    assert run_strategy(straight).status == "succeeded"

    paused_ctx = make_ctx(method, settings, n_train=24, output="resumed", n_epochs=2,
                          sink=ListSink(stop_at_step=4, stop_reason="pause"))
    paused = run_strategy(paused_ctx)
    assert paused.status == "paused" and paused.steps == 4
    checkpoint = latest_complete_checkpoint(paused_ctx.checkpoint_dir)
    assert checkpoint is not None and checkpoint.name == "step-00000004"

    resumed_ctx = make_ctx(method, settings, n_train=24, output="resumed", n_epochs=2, resume_from=checkpoint)
    result = run_strategy(resumed_ctx)
    assert result.status == "succeeded" and result.steps == 6
    assert any("Resumed from checkpoint at step 4" in m for m in resumed_ctx.sink.of("message"))
    a, b = _weights(straight, method), _weights(resumed_ctx, method)
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-6, key
    assert result.trained_tokens == run_strategy(make_ctx(method, settings, n_train=24, output="again",
                                                          n_epochs=2)).trained_tokens


def test_incomplete_checkpoint_is_ignored(make_ctx):
    ctx = make_ctx("bitfit", n_epochs=2)
    run_strategy(ctx)
    ckpts = sorted(ctx.checkpoint_dir.glob("step-*"))
    assert [p.name for p in ckpts] == ["step-00000002", "step-00000004"]
    newest = ckpts[-1]
    (newest / "COMPLETE").unlink()
    assert latest_complete_checkpoint(ctx.checkpoint_dir).name == "step-00000002"
    shutil.copytree(ckpts[0], ctx.checkpoint_dir / ".step-00000009.tmp")
    assert latest_complete_checkpoint(ctx.checkpoint_dir).name == "step-00000002"
