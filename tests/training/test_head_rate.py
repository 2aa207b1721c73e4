"""`head_learning_rate`: the weights the base lacks (head, a trained pooler) at their own rate."""
from __future__ import annotations

import pytest
import torch

from app.training.auto_rule import AutoRule
from app.training.config import HyperparameterSettings
from app.training.registry import run_strategy

@pytest.mark.parametrize(("given", "head"), [({}, None), ({"head_learning_rate": 2e-4}, 2e-4),
                                             ({"head_learning_rate": None}, None)])
def test_head_rate_is_given_or_follows_learning_rate(given, head):
    assert HyperparameterSettings(**given).resolve(1000, AutoRule(learning_rate=1e-2), seed=0).head_learning_rate == head


@pytest.mark.parametrize("bad", [0, -1e-3, 2.0, float("nan")])
def test_head_rate_out_of_range_names_the_field(bad):
    with pytest.raises(ValueError, match="head_learning_rate must be 'auto' or within"):
        HyperparameterSettings(head_learning_rate=bad)


@pytest.mark.parametrize(("method", "settings", "head_names"), [
    ("bitfit", {}, {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}),
    ("ia3", {}, {"base_model.model.classifier.modules_to_save.default.weight",
                 "base_model.model.classifier.modules_to_save.default.bias"}),
])
def test_head_trains_at_its_rate(make_ctx, method, settings, head_names):
    ctx = make_ctx(method, settings, n_train=16, learning_rate=1e-2, head_learning_rate=1e-4, warmup_ratio=0.0,
                   lr_scheduler="constant")
    from app.training.classification import build_classifier, head_rate_groups, load_task
    from importlib import import_module

    prepare = import_module(f"app.training.strategies.{method}.strategy")._prepare
    classifier = build_classifier(ctx, load_task(ctx), prepare)
    groups = head_rate_groups(classifier.trained, classifier.model, classifier.new_parameters, ctx.hyperparameters)
    names = {id(p): n for n, p in classifier.trained.named_parameters()}
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-4), ("rest", 1e-2)]
    assert {names[id(p)] for p in groups[0]["params"]} == head_names
    assert all(".bias" in names[id(p)] or "ia3" in names[id(p)] for p in groups[1]["params"])

    run_strategy(ctx)
    assert any("Learning rates: head 0.0001, rest 0.01" in m for m in ctx.sink.of("message"))
    checkpoint = sorted(ctx.checkpoint_dir.glob("step-*"))[-1]
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr"] for g in saved] == [1e-4, 1e-2]


def test_one_rate_builds_no_groups(make_ctx):
    from app.training.classification import head_rate_groups, load_task, build_classifier
    from app.training.strategies.bitfit.strategy import _prepare

    ctx = make_ctx("bitfit", {}, learning_rate=1e-3, head_learning_rate=1e-3)
    classifier = build_classifier(ctx, load_task(ctx), _prepare)
    assert head_rate_groups(classifier.trained, classifier.model, classifier.new_parameters,
                            ctx.hyperparameters) is None
