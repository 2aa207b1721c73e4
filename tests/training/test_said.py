"""SAID / DID (Aghajanyan et al. 2021) on the tiny 2-layer BERT: the Fastfood projection is the matrix it
claims to be and rebuilds from its seed, only θ', λ and the head train, every projected tensor moves by
exactly λ_i·P_i·θ', the artifact is ≈ 4·d bytes + head, and it reproduces the job in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier, read_manifest
from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from app.training.strategies.said.apply import apply_said
from app.training.strategies.said.config import SaidSettings
from app.training.strategies.said.fastfood import _hadamard, block_size, draw_parts, fastfood, walsh_hadamard
from app.training.strategies.said.projection import select_targets
from app.training.strategies.said.strategy import CONFIG, WEIGHTS, projection_seed

HEAD = {"classifier.weight", "classifier.bias"}
HEAD_NUMEL = 32 * 2 + 2  # tiny BERT: hidden 32, two labels


def _base(base_dir):
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2, output_loading_info=True)
    return model, set(info["missing_keys"])


def _train(make_ctx, settings: dict, output: str, **hyper):
    ctx = make_ctx("said", settings, output=output, **hyper)
    assert run_strategy(ctx).status == "succeeded"
    return ctx, load_file(ctx.output_dir / WEIGHTS), json.loads((ctx.output_dir / CONFIG).read_text())


def _dense(parts, n: int) -> torch.Tensor:
    """The Fastfood matrix written out: per block H·diag(G)·Π·H·diag(B), stacked, first D_i rows."""
    h = _hadamard(n, torch.device("cpu"), torch.float64)
    blocks = []
    for j in range(parts.signs.shape[0]):
        perm = parts.permutation[j * n:(j + 1) * n].long() - j * n
        pi = torch.eye(n, dtype=torch.float64)[perm]  # (Π x)[r] = x[perm[r]]
        blocks.append(h @ torch.diag(parts.gauss[j].double()) @ pi @ h @ torch.diag(parts.signs[j].double()))
    return torch.cat(blocks)[:parts.numel] * parts.scale


def test_walsh_hadamard_and_fastfood_are_the_matrices_they_claim():
    for n in (1, 2, 16, 64, 256, 2048):
        x = torch.randn(3, n, dtype=torch.float64)
        assert torch.allclose(walsh_hadamard(x), x @ _hadamard(n, x.device, x.dtype), atol=1e-9)
    d, numel = 40, 150
    n = block_size(d)
    parts = draw_parts(numel, n, torch.Generator().manual_seed(3))
    assert n == 64 and parts.signs.shape == (3, 64)  # ⌈150 / 64⌉ stacked blocks
    theta = torch.randn(d)
    dense = _dense(parts, n)[:, :d]
    assert torch.allclose(fastfood(theta, *parts.tensors().values(), parts.scale, numel).double(),
                          dense @ theta.double(), atol=1e-5)
    # columns of P are unit-norm in expectation (the reference implementation's normalisation)
    big = draw_parts(20_000, n, torch.Generator().manual_seed(4))
    columns = torch.stack([fastfood(torch.eye(d)[c], *big.tensors().values(), big.scale, big.numel) for c in range(d)])
    assert columns.norm(dim=1).sub(1).abs().max() < 0.05


def test_projection_rebuilds_bit_exactly_from_its_seed():
    def parts(seed):
        return draw_parts(5000, 1024, torch.Generator().manual_seed(seed))

    a, b, c = parts(11), parts(11), parts(12)
    assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors()) and a.scale == b.scale
    assert not torch.equal(a.gauss, c.gauss) and not torch.equal(a.permutation, c.permutation)
    assert sorted(a.permutation[:1024].tolist()) == list(range(1024))  # Π is a permutation per block


def test_only_theta_scales_and_head_train_and_each_tensor_moves_by_its_projection(make_ctx, tiny_model_dir):
    ctx, weights, config = _train(make_ctx, {"d": 300}, "said", learning_rate=3e-2)
    targets = config["tensors"]
    m = len(targets)
    assert set(weights) == {"said.theta", "said.scales"} | HEAD
    assert weights["said.theta"].numel() == 300 - m and weights["said.scales"].numel() == m  # d = d' + m
    assert weights["said.theta"].abs().max() > 0 and (weights["said.scales"] != 1).any()  # both trained
    checkpoint = load_file(latest_complete_checkpoint(ctx.checkpoint_dir) / "trainable.safetensors")
    assert set(checkpoint) == set(weights)
    assert read_manifest(ctx.output_dir)["parameters"]["trainable"] == 300 + HEAD_NUMEL
    assert config["projection_seed"] == projection_seed(SaidSettings(), ctx.hyperparameters.seed)
    assert not any("embeddings" in t["name"] and "LayerNorm" not in t["name"] for t in targets)

    base, _ = _base(tiny_model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    after = apply_said(base, ctx.output_dir).state_dict()
    assert set(after) == set(before)  # a plain model again: no parametrization, no `said` left
    generator, n = torch.Generator().manual_seed(config["projection_seed"]), config["block_size"]
    for i, target in enumerate(targets):
        parts = draw_parts(before[target["name"]].numel(), n, generator)
        expected = fastfood(weights["said.theta"], *parts.tensors().values(),
                            weights["said.scales"][i] * parts.scale, parts.numel)
        moved = (after[target["name"]] - before[target["name"]]).reshape(-1)
        assert moved.abs().max() > 0 and torch.allclose(moved, expected, atol=1e-6), target["name"]
    untouched = set(before) - {t["name"] for t in targets} - HEAD
    assert {k for k in untouched if "embeddings" in k} and all(torch.equal(after[k], before[k]) for k in untouched)
    assert all(torch.equal(after[k], weights[k]) for k in HEAD)


def test_did_trains_d_shared_numbers_without_scales(make_ctx):
    _, weights, config = _train(make_ctx, {"d": 64, "said": False}, "did", n_valid=0)
    assert set(weights) == {"said.theta"} | HEAD and weights["said.theta"].numel() == 64
    assert config["said"] is False and config["d_shared"] == 64


def test_artifact_is_four_bytes_per_dimension_plus_head(make_ctx, tiny_model_dir):
    sizes = {}
    for d in (100, 1100):
        ctx, _, _ = _train(make_ctx, {"d": d}, f"size-{d}", n_valid=0)
        sizes[d] = (ctx.output_dir / WEIGHTS).stat().st_size
        assert 4 * (d + HEAD_NUMEL) < sizes[d] < 4 * (d + HEAD_NUMEL) + 512  # + the safetensors header
    assert abs(sizes[1100] - sizes[100] - 4 * 1000) <= 16
    assert sizes[1100] < 0.05 * (tiny_model_dir / "model.safetensors").stat().st_size


def test_d_is_checked_against_the_projected_parameter_count(make_ctx, tiny_model_dir):
    model, new = _base(tiny_model_dir)
    targets = select_targets(model, new, include_embeddings=False)
    total = sum(t.numel for t in targets)
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("said", {"d": total + 1}, output="too-big"))
    assert info.value.code == "invalid_method_settings" and info.value.param == "method.said.d"
    assert f"{total:,}" in info.value.message and "embeddings" in info.value.message
    with pytest.raises(TrainingError) as info:  # SAID needs a shared coordinate beyond the m scales
        run_strategy(make_ctx("said", {"d": len(targets)}, output="no-room"))
    assert info.value.param == "method.said.d" and f"{len(targets)} projected tensors" in info.value.message
    # the embeddings widen the projected space; DID needs no room for scales
    assert run_strategy(make_ctx("said", {"d": total + 1, "include_embeddings": True}, output="emb",
                                 n_valid=0)).status == "succeeded"
    assert run_strategy(make_ctx("said", {"d": len(targets), "said": False}, output="did", n_valid=0)).steps == 2


@pytest.mark.parametrize("settings, param, fragment", [
    ({"d": 0}, "method.said.d", "greater than or equal to 1"),
    ({"d": 1}, "method.said", "d must be at least 2"),
    ({"projection_seed": -1}, "method.said.projection_seed", "greater than or equal to 0"),
    ({"include_embeddings": True, "aux_mlm_weight": 0.5}, "method.said", "ties its output layer"),
])
def test_impossible_settings_are_refused(settings, param, fragment):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "said", "said": settings})
    assert info.value.param == param and fragment in info.value.message
    assert parse_method({"type": "said", "said": {"d": 1, "said": False}}).settings.d == 1


def test_fresh_process_reproduces_predictions_and_other_bases_are_refused(make_ctx, tiny_model_dir, tmp_path):
    from tests.tiny_models import make_tiny_bert

    ctx, _, config = _train(make_ctx, {"d": 500, "projection_seed": 77}, "fresh", learning_rate=3e-2)
    assert config["projection_seed"] == 77
    script = ("import json, sys\nfrom pathlib import Path\n"
              "from app.training.artifacts import load_classifier, predict\n"
              "art, base, valid = map(Path, sys.argv[1:])\n"
              "model, tok, labels = load_classifier(art, base)\n"
              "rows = [json.loads(line) for line in open(valid)]\n"
              "print(json.dumps([p['logits'] for p in predict(model, tok, rows, labels)]))\n")
    out = subprocess.run([sys.executable, "-c", script, str(ctx.output_dir), str(tiny_model_dir),
                          str(ctx.validation_file)], capture_output=True, text=True, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    job = [json.loads(line)["logits"] for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert len(fresh) == len(job) == 6
    assert max(abs(a - b) for f, j in zip(fresh, job, strict=True) for a, b in zip(f, j, strict=True)) < 1e-5

    other = make_tiny_bert(tmp_path / "other-base", seed=1)  # same shapes, other weights: the manifest's hash
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
    narrow, _ = _base(make_tiny_bert(tmp_path / "narrow-base", hidden=16))  # other shapes: apply itself refuses
    with pytest.raises(TrainingError) as info:
        apply_said(narrow, ctx.output_dir)
    assert info.value.code == "base_model_mismatch"
