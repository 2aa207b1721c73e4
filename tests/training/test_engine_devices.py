"""Gradient accumulation, precision and gradient checkpointing in the engine (CPU; a GPU resolves the same way)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from app.training.base import TrainingError
from app.training.config import Hyperparameters
from app.training.engine import Run, optimize
from app.training.methods import MethodError, parse_method, resolve_method
from app.training.registry import run_strategy
from tests.training.conftest import ListSink
from tests.training.test_resume import _assert_same_weights


def _model(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        num_labels=2)
    return BertForSequenceClassification(config)


def _train(tmp_path, name: str, batches: list[dict], **hyper) -> tuple[torch.nn.Module, ListSink]:
    model, sink = _model(), ListSink()
    hp = Hyperparameters(**{"n_epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "seed": 0, **hyper})
    result = optimize(Run(model=model, hyperparameters=hp, steps_per_epoch=len(batches),
                          batch=lambda epoch, b: batches[b], sink=sink, checkpoint_dir=tmp_path / name))
    assert result.status == "succeeded"
    return model, sink


def _batches(n: int = 3, rows: int = 8, width: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 50, (rows, width), generator=g)
        mask = torch.ones_like(ids)
        mask[: rows // 2, width // 2:] = 0  # half the rows padded: micro-batches see different padding
        out.append({"input_ids": ids * mask, "attention_mask": mask,
                    "labels": torch.randint(0, 2, (rows,), generator=g)})
    return out


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_accumulating_micro_batches_matches_the_whole_batch(tmp_path):
    batches = _batches()
    whole, _ = _train(tmp_path, "whole", batches)
    accumulated, sink = _train(tmp_path, "micro", batches, gradient_accumulation_steps=3)  # 3 + 3 + 2 rows
    assert _max_difference(whole, accumulated) < 1e-5
    start = sink.of("message")[0]
    assert "3 micro-batches per step" in start and "precision fp32 (auto)" in start
    assert [m["step"] for m in sink.of("metrics")][-1] == 6  # optimizer steps, not micro-batches


def test_gradient_checkpointing_and_bf16_autocast(tmp_path):
    batches = _batches()
    plain, _ = _train(tmp_path, "plain", batches)
    recomputed, sink = _train(tmp_path, "ckpt", batches, gradient_checkpointing=True)
    assert _max_difference(plain, recomputed) < 1e-5
    assert "gradient checkpointing in BertForSequenceClassification" in sink.of("message")[0]
    bf16, sink = _train(tmp_path, "bf16", batches, precision="bf16")
    assert "precision bf16" in sink.of("message")[0]
    assert 0 < _max_difference(plain, bf16) < 0.05  # bf16 arithmetic: close, not equal
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # master weights stay fp32


def test_fp16_needs_a_gpu(tmp_path):
    with pytest.raises(TrainingError) as caught:
        _train(tmp_path, "fp16", _batches(), precision="fp16")
    assert caught.value.param == "hyperparameters.precision" and "GPU" in caught.value.message


def test_pause_and_resume_with_accumulation_and_checkpointing_stay_exact(make_ctx):
    common = dict(settings={"r": 4, "lora_dropout": 0.2}, n_train=24, n_epochs=2, gradient_accumulation_steps=3,
                  gradient_checkpointing=True)
    straight = make_ctx("lora", output="straight", **common)
    assert run_strategy(straight).status == "succeeded"
    paused = make_ctx("lora", output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    from app.training.checkpoints import latest_complete_checkpoint

    resumed = make_ctx("lora", output="resumed", resume_from=latest_complete_checkpoint(paused.checkpoint_dir), **common)
    assert run_strategy(resumed).steps == 6
    _assert_same_weights(straight, resumed, "lora")


def _hyper(**given):
    method = parse_method({"type": "lora", "lora": {"hyperparameters": given}})
    return resolve_method(method, 100, 0).hyperparameters


def test_hyperparameters_resolve_and_bad_values_name_the_field():
    hp = _hyper(batch_size=32, micro_batch_size=8)
    assert (hp.gradient_accumulation_steps, hp.precision, hp.gradient_checkpointing, hp.group_by_length) == \
        (4, "auto", False, "auto")
    assert _hyper(batch_size=30, micro_batch_size=8).gradient_accumulation_steps == 4
    assert _hyper().gradient_accumulation_steps == 1
    assert _hyper(gradient_accumulation_steps=2, group_by_length=False).group_by_length is False
    bad = {"precision": "fp8", "gradient_accumulation_steps": 0, "micro_batch_size": 0,
           "gradient_checkpointing": "sometimes"}
    for field, value in bad.items():
        with pytest.raises(MethodError) as caught:
            _hyper(**{field: value})
        assert caught.value.param == f"method.lora.hyperparameters.{field}", caught.value.param
    for given, words in [({"batch_size": 4, "gradient_accumulation_steps": 8}, "at most batch_size"),
                         ({"gradient_accumulation_steps": 2, "micro_batch_size": 4}, "not both")]:
        with pytest.raises(MethodError) as caught:
            _hyper(**given)
        assert words in caught.value.message and caught.value.param.startswith("method.lora.hyperparameters")


def test_resolved_hyperparameters_round_trip_through_the_stored_method():
    from app.training.methods import method_wire

    method = resolve_method(parse_method({"type": "lora", "lora": {"hyperparameters": {
        "batch_size": 16, "micro_batch_size": 4, "precision": "bf16", "gradient_checkpointing": True}}}), 100, 0)
    stored = method_wire(method)
    assert stored["lora"]["hyperparameters"]["gradient_accumulation_steps"] == 4
    again = resolve_method(parse_method(stored, resolved=True), None, 0).hyperparameters
    assert dataclasses.asdict(again) == dataclasses.asdict(method.hyperparameters)


def test_a_rate_far_from_the_methods_own_survives_the_stored_method():
    """learning_rate 1e-2 on supervised (own rate 5e-5) stores a multiplier of 200, beyond the range a user
    may give it; the worker re-reading the stored method must not refuse the job it accepted."""
    from app.training.methods import method_wire

    method = resolve_method(parse_method({"type": "supervised", "supervised": {"hyperparameters": {
        "learning_rate": 1e-2}}}), 100, 0)
    stored = method_wire(method)
    assert stored["supervised"]["hyperparameters"]["learning_rate_multiplier"] == pytest.approx(200)
    again = resolve_method(parse_method(stored, resolved=True), None, 0).hyperparameters
    assert again.learning_rate == 1e-2
    with pytest.raises(MethodError, match="learning_rate_multiplier"):
        parse_method({"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 200}}})
