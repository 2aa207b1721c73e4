"""A `stability` block on cloze (PET) on the tiny BERT: cloze builds its masked-LM model as a Classifier,
so several seeds with early discarding, layer-wise rates, R3F and early stopping run through the same
machinery as every task method; LP-FT and R4F (which need a new head) are refused naming the field."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from tests.training.test_cloze import RELOAD, VERBALIZER

CLOZE = {"verbalizer": VERBALIZER, "patterns": ["{text} It was [MASK].", "[MASK] : {text}"]}


def test_multi_seed_cloze_keeps_the_best_seed_by_validation_and_its_artifact_reloads(make_ctx, base_ref):
    settings = {**CLOZE, "stability": {"n_seeds": 3, "keep": 1, "discard_after": 0.5}}
    ctx = make_ctx("cloze", settings, n_train=16, n_epochs=2, learning_rate=3e-3)  # 4 steps a seed, discard after 2
    result = run_strategy(ctx)
    ledger = json.loads((ctx.checkpoint_dir / "seeds.json").read_text())
    scores = {int(s): r["score"] for s, r in ledger["first"].items()}
    kept = max(scores, key=scores.get)
    assert result.status == "succeeded" and result.metrics["selected_seed"] == kept
    assert sorted(ledger["discarded"]) == sorted(set(scores) - {kept}) and result.steps == 3 * 2 + 2
    assert {m["seed"] for m in ctx.sink.of("metrics") if "train_loss" in m} == set(scores)
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["stability"]["outcome"]["selected_seed"] == kept and manifest["method"] == "cloze"

    alone = make_ctx("cloze", CLOZE, output="alone", n_train=16, n_epochs=2, learning_rate=3e-3, seed=kept)
    run_strategy(alone)  # the winner trained by itself reaches the same weights
    a, b = (load_file(c.output_dir / "mlm" / "model.safetensors") for c in (alone, ctx))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, str(base_ref.path), str(ctx.output_dir),
                          str(ctx.validation_file)], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5  # a fresh process predicts as the job did


def test_cloze_takes_layerwise_rates_r3f_and_early_stopping(make_ctx):
    stability = {"layerwise_lr_decay": 0.8, "regularizer": {"type": "r3f", "eps": 1e-3},
                 "early_stopping": {"patience": 1, "metric": "loss"}}
    ctx = make_ctx("cloze", {**CLOZE, "stability": stability}, n_train=16, n_epochs=4, learning_rate=3e-3)
    result = run_strategy(ctx)
    assert result.status == "succeeded" and "eval_accuracy" in result.metrics
    messages = ctx.sink.of("message")
    # the MLM head (transform, decoder bias) is the top group; the tied decoder weight is the word embeddings
    assert any(m.startswith("Layer-wise learning-rate decay 0.8: head") and "embeddings" in m for m in messages)
    terms = [m["regularizer_loss"] for m in ctx.sink.of("metrics") if "regularizer_loss" in m]
    assert terms and all(t > 0 for t in terms)  # the MLM head's verbalizer log-probs move under embedding noise
    assert (ctx.output_dir / "mlm" / "model.safetensors").is_file()


@pytest.mark.parametrize("stability, fragment", [
    ({"lp_ft": True}, "stability.lp_ft is not available"),
    ({"regularizer": {"type": "r4f"}}, "stability.regularizer r4f"),
])
def test_cloze_refuses_what_needs_a_new_head_naming_the_field(stability, fragment):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "cloze", "cloze": {**CLOZE, "stability": stability}})
    assert info.value.param == "method.cloze.stability" and fragment in info.value.message
    assert "leave lp_ft out" in info.value.message or "use r3f" in info.value.message


def test_the_mosbach_recipe_applies_to_clozes_own_rule():
    from app.training.methods import resolve_method
    from app.training.registry import get_strategy

    def resolved(settings: dict):
        return resolve_method(parse_method({"type": "cloze", "cloze": {**CLOZE, **settings}}), 32, 1).hyperparameters

    own, lora = get_strategy("cloze").auto.learning_rate, get_strategy("lora").auto.learning_rate
    assert resolved({}).learning_rate == own == resolved({"stability": {"recipe": "auto"}}).learning_rate
    mosbach = resolved({"stability": {"recipe": "mosbach"}})
    assert (mosbach.learning_rate, mosbach.warmup_ratio, mosbach.n_epochs) == (pytest.approx(0.4 * own), 0.1, 20)
    with_lora = resolved({"peft": {"type": "lora"}, "stability": {"recipe": "mosbach"}})
    assert with_lora.learning_rate == pytest.approx(0.4 * lora)  # cloze.peft's rate, then the recipe's scale
