"""What "auto" resolves to (per method, per data size), the schedule, gradient clipping, and the
validation file choosing the artifact's checkpoint."""
from __future__ import annotations

import json
import math

import pytest

from app.training.config import AutoRule, HyperparameterSettings
from app.training.engine import _schedule
from app.training.methods import describe_resolution, parse_method, resolve_method
from app.training.registry import list_strategies, run_strategy


def test_every_method_states_its_auto_rule_and_source():
    for spec in list_strategies():
        rule = spec.auto
        assert rule.learning_rate > 0 and rule.source, spec.name
        assert 1 <= rule.min_epochs <= rule.max_epochs <= 50, spec.name


@pytest.mark.parametrize("n_train, batch, epochs", [(40, 4, 10), (1000, 20, 10), (5000, 32, 4), (100_000, 32, 3)])
def test_auto_epochs_follow_the_data_size(n_train, batch, epochs):
    """Small files get more passes (about 500 optimizer steps), large ones the minimum."""
    rule = AutoRule(learning_rate=1e-3, max_epochs=10, min_epochs=3, target_steps=500)
    hp = HyperparameterSettings().resolve(n_train, rule, seed=0)
    assert (hp.batch_size, hp.n_epochs) == (batch, epochs)
    assert HyperparameterSettings(preset="fast").resolve(n_train, rule, seed=0).n_epochs == 3


def test_peft_methods_train_longer_and_hotter_than_full_fine_tuning_on_small_files():
    resolved = {spec.name: resolve_method(parse_method({"type": spec.name, spec.name: {}}), 1000, 0).hyperparameters
                for spec in list_strategies() if spec.name in ("supervised", "lora", "bitfit")}
    assert resolved["lora"].n_epochs == resolved["bitfit"].n_epochs == 10
    assert resolved["supervised"].learning_rate < resolved["lora"].learning_rate < resolved["bitfit"].learning_rate
    assert all(hp.max_grad_norm == 1.0 and hp.select_best for hp in resolved.values())


def test_explicit_values_win_and_the_resolution_is_described():
    method = resolve_method(parse_method({"type": "lora", "lora": {"hyperparameters": {
        "n_epochs": 2, "lr_scheduler": "cosine", "warmup_ratio": 0.1}}}), 1000, 0)
    hp = method.hyperparameters
    assert (hp.n_epochs, hp.lr_scheduler, hp.warmup_ratio, hp.learning_rate) == (2, "cosine", 0.1, 2e-3)
    [(message, data)] = describe_resolution(method)
    assert "n_epochs=2" in message and "lr_scheduler=cosine" in message and "learning_rate=0.002" in message
    assert data["auto"] == ["batch_size", "learning_rate"] and method.spec.auto.source in message


@pytest.mark.parametrize("kind, expected", [
    ("linear", [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]),
    ("cosine", [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]),
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
])
def test_schedules_warm_up_then_decay(kind, expected):
    factor = _schedule(kind, warmup=2, total=6)
    assert [factor(s) for s in range(6)] == pytest.approx(expected)


def test_gradient_clipping_bounds_each_update(make_ctx):
    """One step of plain AdamW moves a weight by about lr whatever the gradient; clipping to a tiny norm
    keeps the step's first moment tiny too, so the two runs must differ — and clipping is on by default."""
    from safetensors.torch import load_file

    runs = {}
    for name, clip in (("clipped", 1e-8), ("free", None)):
        ctx = make_ctx("bitfit", output=name, n_valid=0, max_grad_norm=clip, learning_rate=1e-2, warmup_ratio=0.0)
        run_strategy(ctx)
        runs[name] = load_file(ctx.output_dir / "delta" / "delta.safetensors")
    assert any((runs["clipped"][k] - runs["free"][k]).abs().max() > 1e-6 for k in runs["free"])
    assert HyperparameterSettings().max_grad_norm == 1.0


def test_validation_chooses_the_artifacts_checkpoint(make_ctx):
    """A learning rate that makes later steps worse: the artifact is the best evaluated step's, the
    events say which, and its predictions are that step's."""
    from app.training.artifacts import load_classifier, predict

    ctx = make_ctx("supervised", n_train=32, n_valid=20, n_epochs=6, batch_size=8, learning_rate=3e-3,
                   eval_every=1, warmup_ratio=0.0, lr_scheduler="constant")
    result = run_strategy(ctx)
    evals = [m for m in ctx.sink.of("metrics") if "eval_accuracy" in m]
    best = max(evals, key=lambda m: (m["eval_accuracy"], -m["eval_loss"]))
    ties = [m for m in evals if (m["eval_accuracy"], m["eval_loss"]) == (best["eval_accuracy"], best["eval_loss"])]
    chosen = result.metrics.get("selected_step", result.steps)
    assert chosen == ties[0]["step"] and chosen != result.steps  # deterministic: step 23 of 24 wins
    assert result.metrics["eval_accuracy"] == best["eval_accuracy"]
    assert result.metrics["eval_loss"] == pytest.approx(best["eval_loss"], abs=1e-6)
    if chosen != result.steps:
        assert any(m.startswith(f"Selected the checkpoint of step {chosen}") for m in ctx.sink.of("message"))
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.base_model.path)
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    again = [p["predicted"] for p in predict(model, tokenizer, rows, labels)]
    assert sum(a == r["label"] for a, r in zip(again, rows)) / len(rows) == pytest.approx(best["eval_accuracy"])


def test_select_best_off_keeps_the_last_step(make_ctx):
    ctx = make_ctx("supervised", n_train=32, n_valid=20, n_epochs=3, learning_rate=3e-3, eval_every=1,
                   select_best=False)
    result = run_strategy(ctx)
    assert "selected_step" not in result.metrics
    assert not (ctx.checkpoint_dir / "best").exists()


def test_lora_options_all_linear_pooler_dora_reload(make_ctx):
    from app.training.artifacts import load_classifier, predict

    ctx = make_ctx("lora", {"target_modules": "all-linear", "train_pooler": True, "use_dora": True,
                            "use_rslora": True}, n_valid=6)
    run_strategy(ctx)
    config = json.loads((ctx.output_dir / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] and config["use_rslora"] and "pooler.dense" in config["modules_to_save"]
    assert any("intermediate.dense" in t for t in config["target_modules"])
    assert not any("pooler" in t for t in config["target_modules"])  # the pooler trains whole instead
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.base_model.path)
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    saved = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    for mine, theirs in zip(predict(model, tokenizer, rows, labels), saved, strict=True):
        assert max(abs(a - b) for a, b in zip(mine["logits"], theirs["logits"])) < 1e-5


def test_lora_refuses_unknown_modules_to_save(make_ctx):
    from app.training.base import TrainingError

    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("lora", {"modules_to_save": ["nope"]}))
    assert info.value.param == "method.lora.modules_to_save" and "nope" in info.value.message



@pytest.mark.parametrize("method", ["bitfit", "ia3", "adapter"])
@pytest.mark.parametrize("train_pooler", [True, False])
def test_train_pooler_ships_the_pooler_in_any_methods_artifact(make_ctx, method, train_pooler):
    """train_pooler (every task method) puts the pooler among the weights trained and shipped whole;
    off, the artifact holds no pooler weight (the base's is used)."""
    from safetensors import safe_open

    from app.training.registry import get_strategy

    ctx = make_ctx(method, {"train_pooler": train_pooler})
    run_strategy(ctx)
    with safe_open(ctx.output_dir / get_strategy(method).artifact_files[0], "pt") as weights:
        shipped = [k for k in weights.keys() if "pooler" in k and k.endswith("weight")]  # BitFit ships its bias anyway
    assert bool(shipped) == train_pooler, shipped
