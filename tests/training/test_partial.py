"""Partial fine-tuning (Lee et al. 2019) on the tiny 2-layer BERT: only the top k layers, the pooler and
the head change; the delta holds exactly those tensors and grows by one layer per k."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier
from app.training.base import TrainingError
from app.training.delta import DELTA
from app.training.registry import run_strategy

LAYER = "bert.encoder.layer."
POOLER = {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
HEAD = {"classifier.weight", "classifier.bias"}


def _train(make_ctx, settings: dict, output: str, **hyper):
    ctx = make_ctx("partial", settings, output=output, n_valid=0, **hyper)
    assert run_strategy(ctx).status == "succeeded"
    return ctx, load_file(ctx.output_dir / DELTA)


def _base_state(base_dir) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2).state_dict()


def test_only_the_top_layer_pooler_and_head_change(make_ctx, tiny_model_dir):
    ctx, delta = _train(make_ctx, {"top_layers": 1}, "top1", learning_rate=1e-2)
    assert {k for k in delta if k.startswith(LAYER)} == {k for k in _base_state(tiny_model_dir)
                                                        if k.startswith(LAYER + "1.")}
    assert set(delta) - {k for k in delta if k.startswith(LAYER)} == POOLER | HEAD
    model, _, _ = load_classifier(ctx.output_dir, tiny_model_dir)
    base, trained = _base_state(tiny_model_dir), model.state_dict()
    for name, tensor in trained.items():
        changed = not torch.equal(tensor, base[name])
        if name.startswith(("bert.embeddings.", LAYER + "0.")):
            assert not changed, name  # frozen: the bottom layer and embeddings stay the base's
        elif name in delta and not name.startswith("classifier."):  # the head starts random either way
            assert changed, name  # the top layer and the pooler trained


@pytest.mark.parametrize("train_pooler, expected", [(False, HEAD), (True, HEAD | POOLER)])
def test_top_layers_zero_is_a_linear_probe(make_ctx, train_pooler, expected):
    ctx, delta = _train(make_ctx, {"top_layers": 0, "train_pooler": train_pooler}, f"probe-{train_pooler}")
    assert set(delta) == expected
    parameters = json.loads((ctx.output_dir / "manifest.json").read_text())["parameters"]
    assert parameters["trainable"] == sum(t.numel() for t in delta.values())


def test_artifact_grows_by_one_layer_per_top_layer(make_ctx, tiny_model_dir):
    sizes, layer_bytes = [], sum(t.numel() * t.element_size() for k, t in _base_state(tiny_model_dir).items()
                                 if k.startswith(LAYER + "1."))
    for k in (0, 1, 2):
        ctx, _ = _train(make_ctx, {"top_layers": k}, f"k{k}")
        sizes.append((ctx.output_dir / DELTA).stat().st_size)
    for smaller, larger in zip(sizes, sizes[1:]):
        assert layer_bytes <= larger - smaller < 1.1 * layer_bytes  # tensor bytes plus a little header
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    assert sizes[0] < 0.05 * base_bytes and sizes[2] < base_bytes  # never the embeddings


def test_more_top_layers_than_the_model_has_are_refused(make_ctx):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("partial", {"top_layers": 3}, n_valid=0))
    err = info.value
    assert (err.code, err.param) == ("invalid_method_settings", "method.partial.top_layers")
    assert "2 encoder layers" in err.message and "at most 2" in err.message
    with pytest.raises(TrainingError) as info:  # the depth counts after dropping
        run_strategy(make_ctx("partial", {"top_layers": 2, "drop_top_layers": 1}, output="dropped", n_valid=0))
    assert info.value.param == "method.partial.top_layers" and "drop_top_layers=1" in info.value.message


def test_reinitialised_layers_train_even_below_top_layers(make_ctx):
    """Re-initialised weights are not in the base: they train and ship whatever top_layers says."""
    _, delta = _train(make_ctx, {"top_layers": 0, "train_pooler": False, "reinit_top_layers": 1}, "reinit")
    assert {k for k in delta if k.startswith(LAYER)} and all(k.startswith(LAYER + "1.") for k in delta
                                                            if k.startswith(LAYER))
    assert POOLER <= set(delta)  # Zhang et al. re-initialise the pooler too


def test_partial_artifact_refuses_a_different_base(make_ctx, tmp_path):
    from tests.tiny_models import make_tiny_bert

    ctx, _ = _train(make_ctx, {"top_layers": 1}, "mismatch")
    other = make_tiny_bert(tmp_path / "other-base", seed=1)
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
