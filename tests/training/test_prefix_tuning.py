"""Prefix tuning (Li & Liang 2021; P-Tuning v2) on the tiny BERT: the prefix reaches every attention
layer (it shapes the logits, padding stays invisible), only the prefix and the head train, the
reparameterisation MLP trains but does not ship, and bases it cannot serve are refused."""
from __future__ import annotations

import json

import pytest
import torch

from app.training.artifacts import load_classifier, predict
from app.training.base import TrainingError
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from tests.training.test_prompt_tuning import (HEAD, HIDDEN, assert_ships_only_prompt_and_head, on_base,
                                               reload_matches_job, tiny_distilbert, trained_tensors)

LAYERS = 2
PREFIX = LAYERS * 2 * HIDDEN  # a key and a value per layer for each virtual token


def _logits(model, tokenizer, rows, batch_size: int) -> torch.Tensor:
    return torch.tensor([p["logits"] for p in predict(model, tokenizer, rows, batch_size=batch_size)])


def test_only_the_prefix_and_head_train_and_ship(make_ctx, tiny_model_dir, tmp_path):
    from tests.tiny_models import make_tiny_bert

    ctx = make_ctx("prefix_tuning", {"num_virtual_tokens": 5})
    run_strategy(ctx)
    assert_ships_only_prompt_and_head(ctx, (5, PREFIX), tiny_model_dir)  # the prefix: a key and value per layer
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, make_tiny_bert(tmp_path / "other-bert", seed=1))
    assert info.value.code == "base_model_mismatch"


def test_the_prefix_shapes_the_logits_and_padding_stays_invisible(make_ctx, tiny_model_dir):
    ctx = make_ctx("prefix_tuning", {"num_virtual_tokens": 4}, learning_rate=1e-2)
    run_strategy(ctx)
    model, tokenizer, _ = load_classifier(ctx.output_dir, tiny_model_dir)
    rows = ["good", "bad day", "the film was very good and the food was great", "a table"]
    batched, alone = _logits(model, tokenizer, rows, 4), _logits(model, tokenizer, rows, 1)
    assert (batched - alone).abs().max() < 1e-5  # the padding mask covers the prefix's columns too
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.zero_()
    assert (_logits(model, tokenizer, rows, 4) - batched).abs().max() > 1e-4


def test_projection_trains_an_mlp_but_ships_only_the_prefix(make_ctx, tiny_model_dir):
    ctx = make_ctx("prefix_tuning", {"num_virtual_tokens": 3, "prefix_projection": True, "encoder_hidden_size": 16})
    run_strategy(ctx)
    tensors, trainable = trained_tensors(ctx)
    assert tensors["prompt_embeddings"].shape == (3, PREFIX) and len(tensors) == 3
    assert {k for k in trainable if "transform" in k} == {
        f"prompt_encoder.default.transform.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")}
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    mlp = (HIDDEN * 16 + 16) + (16 * PREFIX + PREFIX)
    assert manifest["parameters"]["trainable"] == 3 * HIDDEN + mlp + HEAD
    config = json.loads((ctx.output_dir / "adapter" / "adapter_config.json").read_text())
    assert config["prefix_projection"] is True and config["encoder_hidden_size"] == 16
    reload_matches_job(ctx, tiny_model_dir)


def test_bases_without_prefix_attention_are_refused(make_ctx, tiny_model_dir, tmp_path):
    base = tiny_distilbert(tmp_path / "distil", tiny_model_dir)
    ctx = on_base(make_ctx("prefix_tuning"), base, "tiny-distil")
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    err = info.value
    assert err.code == "invalid_base_model" and err.param == "model"
    assert "'distilbert'" in err.message and "bert, roberta" in err.message and "prompt_tuning" in err.message


def test_virtual_tokens_must_fit_the_position_embeddings(make_ctx):
    # the encoder counts the prefix as tokens already seen: the input's positions start after it
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("prefix_tuning", {"num_virtual_tokens": 30}, max_length=100))
    assert info.value.param == "method.prefix_tuning.num_virtual_tokens"
    assert "num_virtual_tokens 30 + max_length 100 = 130 exceeds the 128 positions" in info.value.message


@pytest.mark.parametrize("settings, field", [
    ({"num_virtual_tokens": 0}, "num_virtual_tokens"),
    ({"encoder_hidden_size": 64}, "encoder_hidden_size"),
    ({"prefix_projection": True, "encoder_hidden_size": 0}, "encoder_hidden_size"),
    ({"aux_mlm_weight": 1.0}, "aux_mlm_weight"),
])
def test_impossible_settings_are_refused_naming_the_field(settings, field):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "prefix_tuning", "prefix_tuning": settings})
    assert info.value.param == f"method.prefix_tuning.{field}"
