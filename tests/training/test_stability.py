"""The `stability` block on the tiny BERT: layer-wise learning rates, early stopping, LP-FT, R3F/R4F/SMART,
several seeds with early discarding, the Mosbach recipe, and exact resume through all of them."""
from __future__ import annotations

import importlib
import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.config import Hyperparameters
from app.training.methods import MethodError, parse_method, resolve_method
from app.training.registry import get_strategy, list_strategies, run_strategy
from app.training.stability.regularizers import R3F, is_head
from app.training.stability.settings import RegularizerSettings
from tests.tiny_models import make_classification_rows
from tests.training.conftest import ListSink, WorkerDied
from tests.training.test_resume import _assert_same_weights

LEARNS = dict(n_train=48, n_valid=20, n_epochs=8, learning_rate=3e-3, warmup_ratio=0.0)  # reaches 100% plain


def _messages(ctx, fragment: str) -> list[str]:
    return [m for m in ctx.sink.of("message") if fragment in m]


def _built(make_ctx, method: str, settings: dict, **hyper):
    """The classifier a job of `method` trains, as it starts."""
    from app.training.classification import build_classifier, load_task

    ctx = make_ctx(method, settings, **hyper)
    prepare = importlib.import_module(f"app.training.strategies.{method}.strategy")._prepare
    return build_classifier(ctx, load_task(ctx), prepare)


def test_an_empty_block_trains_exactly_as_no_block(make_ctx):
    plain = make_ctx("lora", {"r": 4}, output="plain", n_train=24, n_epochs=2)
    empty = make_ctx("lora", {"r": 4, "stability": {}}, output="empty", n_train=24, n_epochs=2)
    run_strategy(plain), run_strategy(empty)
    _assert_same_weights(plain, empty, "lora")
    assert sorted(p.name for p in plain.checkpoint_dir.iterdir()) == sorted(p.name for p in empty.checkpoint_dir.iterdir())


def test_layerwise_decay_gives_each_layer_its_rate(make_ctx):
    from app.training.stability.layerwise import layerwise_groups

    classifier = _built(make_ctx, "supervised", {})
    groups = layerwise_groups(classifier.trained, classifier.model, 1e-3, 0.5)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-3), ("layer 1", 5e-4), ("layer 0", 2.5e-4),
                                                      ("embeddings", 1.25e-4)]
    by_group = {g["name"]: {id(p) for p in g["params"]} for g in groups}
    names = {id(p): n for n, p in classifier.trained.named_parameters()}
    assert all(names[i].startswith("bert.encoder.layer.1.") for i in by_group["layer 1"])
    assert all(".embeddings." in f".{names[i]}" for i in by_group["embeddings"])
    assert {names[i] for i in by_group["head"]} >= {"classifier.weight", "bert.pooler.dense.weight"}
    assert sum(len(g) for g in by_group.values()) == sum(1 for p in classifier.trained.parameters() if p.requires_grad)

    lora = _built(make_ctx, "lora", {"r": 4})  # only what trains is grouped: LoRA's matrices and the head
    groups = layerwise_groups(lora.trained, lora.model, 1e-3, 0.5)
    assert [g["name"] for g in groups] == ["head", "layer 1", "layer 0"]
    assert all(p.requires_grad for g in groups for p in g["params"])


def test_layerwise_decay_reaches_the_optimizer(make_ctx):
    ctx = make_ctx("supervised", {"stability": {"layerwise_lr_decay": 0.5}}, n_train=24, warmup_ratio=0.0,
                   lr_scheduler="constant")
    run_strategy(ctx)
    [said] = _messages(ctx, "Layer-wise learning-rate decay 0.5")
    assert "head 0.001, layer 1 0.0005, layer 0 0.00025, embeddings 0.000125" in said
    checkpoint = sorted(ctx.checkpoint_dir.glob("step-*"))[-1]
    groups = torch.load(checkpoint / "optimizer.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]


def test_early_stopping_stops_and_keeps_the_best(make_ctx):
    flipped = [{**row, "label": {"pos": "neg", "neg": "pos"}[row["label"]]} for row in make_classification_rows(12, seed=2)]
    settings = {"stability": {"early_stopping": {"patience": 2, "metric": "loss"}}}
    ctx = make_ctx("supervised", settings, valid_rows=flipped, eval_every=2, **{**LEARNS, "n_valid": 0})
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.steps < 48
    [said] = _messages(ctx, "Early stopping at step")
    best = json.loads((ctx.checkpoint_dir / "best" / "best.json").read_text())
    assert f"step {result.steps}:" in said and f"checkpoint of step {best['step']}" in said
    assert result.metrics["selected_step"] == best["step"] == result.steps - 4  # two evaluations, 2 steps apart
    evals = {m["step"]: m["eval_loss"] for m in ctx.sink.of("metrics") if "eval_loss" in m}
    assert evals[best["step"]] == min(evals.values())
    kept = load_file(ctx.checkpoint_dir / "best" / "trainable.safetensors")
    shipped = load_file(ctx.output_dir / "model" / "model.safetensors")
    assert all(torch.equal(kept[k], shipped[k]) for k in kept if k in shipped)


def test_lp_ft_probes_the_head_then_fine_tunes_everything(make_ctx):
    ctx = make_ctx("supervised", {"stability": {"lp_ft": True}}, n_train=24, n_epochs=2)
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.steps == 3 + 6  # a 1-epoch probe, then 2 epochs
    phase1, phase2 = _messages(ctx, "phase 1 of 2"), _messages(ctx, "phase 2 of 2")
    assert len(phase1) == len(phase2) == 1 and "encoder frozen" in phase1[0]
    probe = sorted((ctx.checkpoint_dir / "linear_probe").glob("step-*"))[-1]
    head = load_file(probe / "trainable.safetensors")
    assert set(head) == {"classifier.weight", "classifier.bias"}  # phase 1: the encoder was frozen
    assert json.loads((probe / "state.json").read_text())["phase"] == "linear_probe"
    fine = sorted((ctx.checkpoint_dir / "fine_tune").glob("step-*"))[-1]
    assert json.loads((fine / "state.json").read_text())["phase"] == "fine_tune"

    start = dict(_built(make_ctx, "supervised", {}, n_train=24, n_epochs=2).model.named_parameters())
    assert not torch.equal(head["classifier.weight"], start["classifier.weight"].detach())  # the head moved
    final = load_file(ctx.output_dir / "model" / "model.safetensors")
    assert not torch.equal(final["classifier.weight"], head["classifier.weight"])  # and then moved again
    moved = [k for k in final if k in start and not k.startswith("classifier")
             and not torch.equal(final[k], start[k].detach())]
    assert any(".encoder.layer." in k for k in moved)  # phase 2 trained the encoder too
    assert [m["step"] for m in ctx.sink.of("metrics") if "train_loss" in m][-1] == 9  # steps count job-wide


@pytest.mark.parametrize("stop, reason", [(2, "pause"), (3, "die"), (5, "pause")])
def test_lp_ft_resumes_exactly_across_its_phases(make_ctx, stop, reason):
    """Paused inside the probe, killed at the boundary (probe done, fine-tuning not begun), paused in phase 2."""
    common = dict(settings={"stability": {"lp_ft": True}}, n_train=24, n_epochs=2)
    straight = make_ctx("supervised", output="straight", **common)
    run_strategy(straight)
    interrupted = make_ctx("supervised", output="resumed", sink=ListSink(stop_at_step=stop, stop_reason=reason),
                           **common)
    if reason == "die":
        with pytest.raises(WorkerDied):
            run_strategy(interrupted)
        assert (interrupted.checkpoint_dir / "linear_probe" / "phase.json").is_file()
        assert not list((interrupted.checkpoint_dir / "fine_tune").glob("step-*"))  # exactly at the boundary
    else:
        assert run_strategy(interrupted).status == "paused"
    resumed = make_ctx("supervised", output="resumed", **common)  # the worker finds no top-level checkpoint
    assert resumed.resume_from is None and run_strategy(resumed).steps == 9
    _assert_same_weights(straight, resumed, "supervised")


def test_regularizer_term_is_positive_and_only_adds_gradient(make_ctx):
    classifier = _built(make_ctx, "supervised", {})
    objective = R3F(classifier.model, RegularizerSettings.model_validate({"type": "r3f", "eps": 1e-3}))
    batch = classifier.batch(0, 0)
    torch.manual_seed(0)
    task = classifier.trained(**batch).loss
    torch.manual_seed(0)  # the same dropout for the clean pass
    loss = objective.loss(classifier.trained, batch)
    assert loss.item() == pytest.approx(task.item(), abs=1e-6)
    assert objective.metrics()["regularizer_loss"] > 0 and objective.metrics() == {}


@pytest.mark.parametrize("kind", ["r3f", "r4f", "smart"])
def test_regularized_training_still_learns_the_toy_task(make_ctx, kind):
    ctx = make_ctx("supervised", {"stability": {"regularizer": {"type": kind}}}, **LEARNS)
    result = run_strategy(ctx)
    assert result.metrics["eval_accuracy"] == 1.0
    terms = [m["regularizer_loss"] for m in ctx.sink.of("metrics") if "regularizer_loss" in m]
    assert terms and all(t > 0 for t in terms)
    losses = [m["train_loss"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert losses[-1] < losses[0] - 0.2
    shipped = load_file(ctx.output_dir / "model" / "model.safetensors")
    assert "classifier.weight" in shipped and not any("parametrizations" in k for k in shipped)
    if kind == "r4f":  # the shipped head is the normalised one: spectral norm 1
        assert torch.linalg.matrix_norm(shipped["classifier.weight"], ord=2).item() == pytest.approx(1.0, abs=1e-5)
    if kind == "smart":
        assert all(m.get("bregman_loss", 1) >= 0 for m in ctx.sink.of("metrics"))


@pytest.mark.parametrize("kind", ["r4f", "smart"])
def test_regularized_lora_resumes_exactly(make_ctx, kind):
    """SMART's momentum teacher rides in the checkpoints; R4F's normalised head resumes as it trained."""
    common = dict(settings={"r": 4, "stability": {"regularizer": {"type": kind}}}, n_train=24, n_epochs=2)
    straight = make_ctx("lora", output="straight", **common)
    run_strategy(straight)
    paused = make_ctx("lora", output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    run_strategy(paused)
    checkpoint = sorted(paused.checkpoint_dir.glob("step-*"))[-1]
    assert (checkpoint / "extra.safetensors").is_file() == (kind == "smart")
    resumed = make_ctx("lora", output="resumed", resume_from=checkpoint, **common)
    assert run_strategy(resumed).steps == 6
    _assert_same_weights(straight, resumed, "lora")


def test_seeds_discard_early_and_keep_the_best(make_ctx):
    settings = {"stability": {"n_seeds": 3, "keep": 1, "discard_after": 0.25}}
    ctx = make_ctx("bitfit", settings, n_train=24, n_epochs=4)  # 12 steps a seed, discarded after 3
    result = run_strategy(ctx)
    ledger = json.loads((ctx.checkpoint_dir / "seeds.json").read_text())
    scores = {int(s): r["score"] for s, r in ledger["first"].items()}
    kept = max(scores, key=scores.get)
    assert result.metrics["selected_seed"] == kept and sorted(ledger["discarded"]) == sorted(set(scores) - {kept})
    assert result.metrics["saved_steps"] == 2 * 9 and result.metrics["saved_seconds"] > 0
    assert result.steps == 3 * 3 + 9
    tagged = {m["seed"] for m in ctx.sink.of("metrics") if "train_loss" in m}
    assert tagged == set(scores)  # every seed's curve, tagged with its seed
    steps = [m["step"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert steps == sorted(steps) and steps[-1] == 18  # job-wide step numbers
    [discard] = _messages(ctx, "discarded")
    assert "saved 18 steps" in discard
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["stability"]["outcome"]["selected_seed"] == kept

    alone = make_ctx("bitfit", output="alone", n_train=24, n_epochs=4, seed=kept)  # the winner, trained by itself
    run_strategy(alone)
    _assert_same_weights(alone, ctx, "bitfit")


@pytest.mark.parametrize("stop", [7, 17])  # in the second seed's probe (5 steps a seed); in the survivors' stage
def test_seeds_resume_exactly_mid_way(make_ctx, stop):
    common = dict(settings={"stability": {"n_seeds": 3, "keep": 2, "lp_ft": True}}, n_train=24, n_epochs=2)
    straight = make_ctx("bitfit", output="straight", **common)
    run_strategy(straight)
    paused = make_ctx("bitfit", output="resumed", sink=ListSink(stop_at_step=stop, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    resumed = make_ctx("bitfit", output="resumed", **common)
    result = run_strategy(resumed)
    assert result.metrics["selected_seed"] == json.loads((straight.output_dir / "manifest.json").read_text())[
        "stability"]["outcome"]["selected_seed"]
    _assert_same_weights(straight, resumed, "bitfit")
    assert _messages(resumed, "Resumed from checkpoint")


def test_mosbach_recipe_on_request_and_for_few_shot_full_fine_tuning(make_ctx):
    def resolved(method: str, stability: dict | None, n_train: int = 500, **given) -> Hyperparameters:
        settings = {"hyperparameters": given, **({"stability": stability} if stability is not None else {})}
        return resolve_method(parse_method({"type": method, method: settings}), n_train, 1).hyperparameters

    for spec in list_strategies():
        if spec.trains_task:  # no block, or one without the recipe: auto is what it was
            plain = resolved(spec.name, None)
            assert plain.learning_rate == spec.auto.learning_rate
            assert plain.n_epochs == spec.auto.n_epochs(500, plain.batch_size)
            try:
                assert plain == resolved(spec.name, {"lp_ft": False}) == resolved(spec.name, {"recipe": "default"})
            except MethodError:  # a method that takes no stability block
                continue
    mosbach = resolved("supervised", {"recipe": "mosbach"})
    supervised = get_strategy("supervised").auto.learning_rate
    assert (mosbach.learning_rate, mosbach.warmup_ratio, mosbach.n_epochs, mosbach.lr_scheduler) == (
        pytest.approx(0.4 * supervised), 0.1, 20, "linear")
    lora = get_strategy("lora").auto.learning_rate  # each method's own rate, scaled as 5e-5 → 2e-5
    assert resolved("lora", {"recipe": "mosbach"}).learning_rate == pytest.approx(0.4 * lora)
    assert resolved("supervised", {"recipe": "mosbach"}, n_train=50_000).n_epochs == 3
    assert resolved("supervised", {"recipe": "mosbach"}, learning_rate=1e-4, n_epochs=2).learning_rate == 1e-4
    # recipe "auto" (the default): the recipe for full fine-tuning under 500 examples, nothing else changes
    few = resolved("supervised", None, n_train=32)
    assert (few.learning_rate, few.warmup_ratio, few.n_epochs) == (pytest.approx(0.4 * supervised), 0.1, 20)
    assert few == resolved("supervised", {"recipe": "auto"}, n_train=32) == resolved("supervised", {"recipe": "mosbach"},
                                                                                      n_train=32)
    own = resolved("supervised", {"recipe": "default"}, n_train=32)
    assert (own.learning_rate, own.n_epochs) == (supervised, get_strategy("supervised").auto.n_epochs(32, own.batch_size))
    assert resolved("lora", None, n_train=32).learning_rate == lora  # PEFT methods keep their rules
    assert resolved("supervised", None, n_train=499).n_epochs == 20 and resolved("supervised", None).n_epochs != 20


def test_bad_blocks_are_refused_naming_the_field():
    for stability, field in (({"n_seeds": 0}, "n_seeds"), ({"discard_after": 1}, "discard_after"),
                             ({"n_seeds": 2, "keep": 3}, "keep"), ({"layerwise_lr_decay": 0}, "layerwise_lr_decay"),
                             ({"regularizer": {"type": "r3f", "eps": 0}}, "regularizer.eps"),
                             ({"regularizer": {"type": "smart", "lambda": -1}}, "regularizer.lambda"),
                             ({"early_stopping": {"patience": 0}}, "early_stopping.patience")):
        with pytest.raises(MethodError) as info:
            parse_method({"type": "lora", "lora": {"stability": stability}})
        assert info.value.param == f"method.lora.stability.{field}"
    with pytest.raises(MethodError) as info:
        parse_method({"type": "diff_pruning", "diff_pruning": {"stability": {"regularizer": {"type": "r3f"}}}})
    assert "stability.regularizer is not available" in info.value.message


def test_a_block_that_needs_validation_data_is_refused_without_it(make_ctx):
    from app.training.base import TrainingError

    ctx = make_ctx("bitfit", {"stability": {"early_stopping": {"patience": 1}}}, n_valid=0)
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.param == "method.bitfit.stability.early_stopping"


def test_head_names():
    assert is_head("classifier.weight") and is_head("base_model.model.classifier.modules_to_save.default.bias")
    assert is_head("task_model.pre_classifier.weight") and not is_head("bert.encoder.layer.0.output.dense.weight")
