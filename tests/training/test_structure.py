"""Structural options of every task method on the tiny 2-layer BERT: `drop_top_layers` (Sajjad et al.
2023) and `reinit_top_layers` (Zhang et al. 2021). Re-initialised weights are not in the base, so every
artifact kind must carry them; a dropped depth must be rebuilt when an artifact is applied."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import read_manifest
from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.registry import run_strategy
from app.training.structure import drop_top_layers, encoder_layers, reinit_top_layers
from tests.training.conftest import ListSink
from tests.training.test_resume import _assert_same_weights

LAYER1 = "bert.encoder.layer.1."


def _classifier(base_dir):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2)


def test_reinit_is_seeded_leaves_the_rest_and_the_global_rng_alone(tiny_model_dir):
    base, a, b, c = (_classifier(tiny_model_dir) for _ in range(4))
    rng = torch.get_rng_state()
    names = reinit_top_layers(a, 1, seed=5)
    assert torch.equal(torch.get_rng_state(), rng)  # the job's own random stream is untouched
    reinit_top_layers(b, 1, seed=5)
    reinit_top_layers(c, 1, seed=6)
    base_state, a_state, b_state, c_state = (m.state_dict() for m in (base, a, b, c))
    assert names == {k for k in a_state if k.startswith((LAYER1, "bert.pooler."))}
    for key in a_state:
        if key.startswith("classifier."):
            continue
        assert torch.equal(a_state[key], b_state[key]), key  # same seed, same weights
        if key not in names:
            assert torch.equal(a_state[key], base_state[key]), key  # the rest stays the base's
        elif key.endswith("dense.weight"):  # (the tiny base's biases and norms already hold init values)
            assert not torch.equal(a_state[key], base_state[key]), key
    query = a_state[LAYER1 + "attention.self.query.weight"]
    assert not torch.equal(query, c_state[LAYER1 + "attention.self.query.weight"])
    assert abs(query.std().item() - a.config.initializer_range) < 0.005  # BERT's N(0, 0.02²)
    assert torch.equal(a_state[LAYER1 + "output.LayerNorm.weight"], torch.ones(32))
    assert not a_state[LAYER1 + "output.dense.bias"].any()


def test_dropped_model_computes_the_lower_layers_of_the_base(tiny_model_dir):
    full, dropped = _classifier(tiny_model_dir).eval(), drop_top_layers(_classifier(tiny_model_dir), 1).eval()
    assert dropped.config.num_hidden_layers == 1 and len(encoder_layers(dropped)[1]) == 1
    assert not any(k.startswith(LAYER1) for k in dropped.state_dict())
    ids = torch.tensor([[2, 10, 20, 30, 3]])
    with torch.no_grad():
        hidden = full.bert(ids, output_hidden_states=True).hidden_states
        assert torch.allclose(dropped.bert(ids).last_hidden_state, hidden[1], atol=1e-6)


@pytest.mark.parametrize("settings, param, fragment", [
    ({"drop_top_layers": 2}, "drop_top_layers", "none of the 2 encoder layers"),
    ({"reinit_top_layers": 2}, "reinit_top_layers", "every one of the 2 encoder layers"),  # nothing pretrained left
    ({"drop_top_layers": 1, "reinit_top_layers": 1}, "reinit_top_layers", "the 1 left after drop_top_layers=1"),
])
def test_counts_beyond_the_depth_are_refused(make_ctx, settings, param, fragment):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("bitfit", settings, n_valid=0))
    err = info.value
    assert (err.code, err.param) == ("invalid_method_settings", f"method.bitfit.{param}")
    assert fragment in err.message and "tiny-bert" in err.message


# (method, settings) trained once each on a 3-layer base; every artifact must reproduce its predictions
# in a fresh process, the re-initialised top layer (layer 2, or layer 1 after a drop) coming from the artifact
CASES = {
    "supervised-reinit": ("supervised", {"reinit_top_layers": 1}),
    "supervised-drop": ("supervised", {"drop_top_layers": 1}),
    "lora-reinit": ("lora", {"r": 2, "reinit_top_layers": 1}),
    "lora-drop-reinit": ("lora", {"r": 2, "drop_top_layers": 1, "reinit_top_layers": 1}),
    "bitfit-reinit": ("bitfit", {"reinit_top_layers": 1}),
    "bitfit-frozen-reinit": ("bitfit", {"reinit_top_layers": 1, "train_head": False}),
    "partial-drop-reinit": ("partial", {"top_layers": 0, "drop_top_layers": 1, "reinit_top_layers": 1}),
}
DEPTH = 3
TOP = "bert.encoder.layer.2."
RELOAD = """
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict
base, worst = Path(sys.argv[1]), {}
for art, valid in zip(map(Path, sys.argv[2::2]), sys.argv[3::2]):
    model, tokenizer, labels = load_classifier(art, base)
    expected = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
    got = predict(model, tokenizer, [json.loads(line) for line in open(valid)], labels)
    worst[art.name] = max(abs(x - y) for g, e in zip(got, expected, strict=True)
                          for x, y in zip(g["logits"], e["logits"], strict=True))
    worst[art.name + ":layers"] = model.config.num_hidden_layers
print(json.dumps(worst))
"""


@pytest.fixture(scope="module")
def deep_model_dir(tmp_path_factory):
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("deep-bert"), layers=DEPTH)


@pytest.fixture(scope="module")
def trained(deep_model_dir, tmp_path_factory):
    from app.fsio import directory_sha256
    from app.training.base import BaseModelRef
    from tests.training.conftest import context_factory

    base = BaseModelRef(id="deep-bert", path=deep_model_dir, sha256=directory_sha256(deep_model_dir))
    make = context_factory(base, tmp_path_factory.mktemp("structure"))
    runs = {}
    for name, (method, settings) in CASES.items():
        ctx = make(method, settings, output=name, learning_rate=1e-2)
        assert run_strategy(ctx).status == "succeeded"
        runs[name] = ctx
    return runs


def test_artifacts_reproduce_predictions_in_a_fresh_process(trained, deep_model_dir):
    args = [str(deep_model_dir)]
    for ctx in trained.values():
        args += [str(ctx.output_dir), str(ctx.validation_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, *args], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    worst = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (_, settings) in CASES.items():
        assert worst[name] < 1e-5, (name, worst[name])
        assert worst[name + ":layers"] == DEPTH - settings.get("drop_top_layers", 0), name


def test_artifacts_carry_the_reinitialised_weights_and_the_depth(trained, deep_model_dir):
    top = {k for k in _classifier(deep_model_dir).state_dict() if k.startswith(TOP)}
    for name in ("bitfit-reinit", "bitfit-frozen-reinit"):  # the whole layer, weights and all, not just biases
        assert top <= set(load_file(trained[name].output_dir / "delta" / "delta.safetensors")), name
    adapter = load_file(trained["lora-reinit"].output_dir / "adapter" / "adapter_model.safetensors")
    shipped = {k.removeprefix("base_model.model.") for k in adapter}
    assert top <= shipped  # peft's modules_to_save: the layer trains and ships whole, never LoRA-adapted
    assert not any(k.startswith(TOP) and "lora_" in k for k in shipped)
    assert any(k.startswith("bert.encoder.layer.1.") and "lora_" in k for k in shipped)
    delta = load_file(trained["partial-drop-reinit"].output_dir / "delta" / "delta.safetensors")
    assert {k.split(".")[3] for k in delta if k.startswith("bert.encoder.layer.")} == {"1"}  # 2 was dropped
    config = json.loads((trained["supervised-drop"].output_dir / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == DEPTH - 1  # plain transformers rebuilds the shallower model
    manifest = read_manifest(trained["lora-drop-reinit"].output_dir)
    assert manifest["settings"]["drop_top_layers"] == 1 and manifest["parameters"]["total"] < read_manifest(
        trained["lora-reinit"].output_dir)["parameters"]["total"]


@pytest.mark.parametrize("method, settings", [("bitfit", {"reinit_top_layers": 1, "train_head": False}),
                                              ("lora", {"r": 2, "reinit_top_layers": 1})])
def test_pause_then_resume_rebuilds_the_same_structure(method, settings, make_ctx):
    """The re-initialised layer is rebuilt from the job seed on resume (frozen for bitfit here)."""
    common = dict(settings=settings, n_train=24, n_epochs=2)
    straight = make_ctx(method, output="straight", **common)
    run_strategy(straight)
    paused = make_ctx(method, output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    resumed = make_ctx(method, output="resumed", resume_from=latest_complete_checkpoint(paused.checkpoint_dir),
                       **common)
    assert run_strategy(resumed).steps == 6
    _assert_same_weights(straight, resumed, method)
