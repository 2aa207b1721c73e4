"""Diff pruning's own behaviour on the tiny BERT (real training, no mocks): the artifact holds exactly
the kept entries and grows with target_sparsity, only those entries (and the head) change, the L0
penalty closes gates, the second stage trains only the kept entries, resume is exact inside it, and
foreign bases are refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier
from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from app.training.strategies.diff_pruning.apply import INDICES, SUMMARY, VALUES, WEIGHTS, apply_sparse_delta
from tests.training.conftest import ListSink
from tests.training.test_strategies import RELOAD

TARGETED = 18_144  # the tiny BERT's encoder + pooler weights (embeddings excluded)


def _train(make_ctx, settings: dict | None = None, output: str = "out", **hyper):
    ctx = make_ctx("diff_pruning", settings or {}, output=output, n_train=24, **hyper)
    assert run_strategy(ctx).status == "succeeded"
    return ctx, load_file(ctx.output_dir / WEIGHTS), json.loads((ctx.output_dir / SUMMARY).read_text())


def _sparse_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for k, t in tensors.items() if k.endswith((INDICES, VALUES)))


def _base_classifier(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


def test_artifact_reproduces_the_jobs_predictions_in_a_fresh_process(make_ctx, tiny_model_dir):
    ctx, _, _ = _train(make_ctx)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, str(tiny_model_dir), "diff_pruning", "tuneforge",
                          str(ctx.output_dir), str(ctx.validation_file)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["diff_pruning"] < 1e-5


@pytest.mark.parametrize("variant", ["l0", "magnitude"])
def test_artifact_size_scales_with_target_sparsity(make_ctx, tiny_model_dir, variant):
    _, small, small_summary = _train(make_ctx, {"variant": variant, "target_sparsity": 0.01}, output="small")
    _, large, large_summary = _train(make_ctx, {"variant": variant, "target_sparsity": 0.02}, output="large")
    assert small_summary["targeted_parameters"] == TARGETED and small_summary["variant"] == variant
    assert small_summary["kept"] == round(0.01 * TARGETED) and large_summary["kept"] == round(0.02 * TARGETED)
    assert large_summary["kept_fraction"] == pytest.approx(0.02, rel=0.01)
    assert sum(small_summary["tensors"].values()) == small_summary["kept"]
    assert 1.9 < _sparse_bytes(large) / _sparse_bytes(small) < 2.1
    assert _sparse_bytes(small) == 8 * small_summary["kept"]  # int32 index + float32 value per entry
    assert all(t.dtype == torch.int32 for k, t in small.items() if k.endswith(INDICES))
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    assert _sparse_bytes(large) < 0.02 * base_bytes


def test_only_the_kept_entries_and_the_head_change(make_ctx, tiny_model_dir):
    ctx, tensors, summary = _train(make_ctx, {"target_sparsity": 0.01})
    base = dict(_base_classifier(tiny_model_dir).named_parameters())
    model, _, _ = load_classifier(ctx.output_dir, tiny_model_dir)
    changed = {}
    for name, param in model.named_parameters():
        differs = (param != base[name]).flatten().nonzero().flatten()
        if differs.numel():
            changed[name] = differs
    head = {"classifier.weight", "classifier.bias"}
    assert head <= set(changed) and not any("embeddings" in name for name in changed)
    for name in set(changed) - head:
        assert torch.equal(changed[name], tensors[name + INDICES].long().sort().values), name
        flat = base[name].detach().flatten()[changed[name]]
        assert torch.equal(dict(model.named_parameters())[name].detach().flatten()[changed[name]],
                           flat + tensors[name + VALUES])
    assert sum(changed[name].numel() for name in set(changed) - head) == summary["kept"] == round(0.01 * TARGETED)


def test_foreign_base_is_refused(make_ctx, tmp_path):
    from tests.tiny_models import make_tiny_bert

    ctx, _, _ = _train(make_ctx)
    other = make_tiny_bert(tmp_path / "other", hidden=16)
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)  # the manifest's hash check
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
    with pytest.raises(TrainingError) as info:  # the artifact itself refuses tensors that do not fit
        apply_sparse_delta(_base_classifier(other), ctx.output_dir)
    assert info.value.code == "base_model_mismatch"


def _final_trainable(ctx) -> dict[str, torch.Tensor]:
    return load_file(latest_complete_checkpoint(ctx.checkpoint_dir) / "trainable.safetensors")


def test_l0_penalty_closes_gates(make_ctx):
    """Same run with and without λ: the penalty pushes log α down (Guo et al.'s expected-L0 term)."""
    runs = {}
    for l0_lambda in (0.0, 1e-3):
        settings = {"l0_lambda": l0_lambda, "finetune_fraction": 0.0, "alpha_learning_rate": 0.5}
        ctx, _, summary = _train(make_ctx, settings, output=f"lambda{l0_lambda}", n_epochs=3)
        alphas = torch.cat([t.flatten() for k, t in _final_trainable(ctx).items() if k.endswith("log_alpha")])
        runs[l0_lambda] = alphas.mean().item() * 0.5 / 1e-3  # stored as log α / (alpha_lr / lr)
        assert summary["kept"] == round(0.005 * TARGETED)
    assert runs[1e-3] < runs[0.0] - 1.0 and runs[1e-3] < 5.0


def test_second_stage_trains_only_the_kept_entries(make_ctx):
    """finetune_fraction 0.5 of 6 steps: from step 4 the first stage's w and log α stay as they were
    at step 3 and only the kept corrections train, at the artifact's entries alone."""
    settings = {"finetune_fraction": 0.5}
    paused = make_ctx("diff_pruning", settings, output="run", n_train=24, n_epochs=2,
                      sink=ListSink(stop_at_step=3, stop_reason="pause"))
    assert run_strategy(paused).status == "paused"
    at_switch = _final_trainable(paused)
    ctx, tensors, summary = _train(make_ctx, settings, output="run", n_epochs=2,
                                   resume_from=latest_complete_checkpoint(paused.checkpoint_dir))
    assert any("from step 4 on" in m for m in ctx.sink.of("message"))
    final = _final_trainable(ctx)
    for key, tensor in at_switch.items():
        if key.endswith((".delta", ".log_alpha")):
            assert torch.equal(final[key], tensor), key
        elif key.endswith(".kept"):
            assert not tensor.any(), key
    kept = {k.split(".parametrizations.")[0].removeprefix("model.") + "." + k.split(".parametrizations.")[1]
            .split(".")[0]: t for k, t in final.items() if k.endswith(".kept")}
    assert any(t.any() for t in kept.values())
    for name, correction in kept.items():
        changed = set(correction.flatten().nonzero().flatten().tolist())
        assert changed <= set(tensors[name + INDICES].tolist() if name + INDICES in tensors else []), name
    assert summary["kept"] == round(0.005 * TARGETED)


def test_magnitude_variant_trains_a_dense_delta_and_resumes_in_the_fixed_phase(make_ctx):
    settings = {"variant": "magnitude", "finetune_fraction": 0.5}
    straight, tensors, summary = _train(make_ctx, settings, output="straight", n_epochs=2)
    trainable = _final_trainable(straight)
    assert not any(k.endswith("log_alpha") for k in trainable)
    assert sum(t.numel() for k, t in trainable.items() if k.endswith(".delta")) == TARGETED
    assert summary["kept"] == round(0.005 * TARGETED)

    paused_ctx = make_ctx("diff_pruning", settings, output="resumed", n_train=24, n_epochs=2,
                          sink=ListSink(stop_at_step=5, stop_reason="pause"))
    assert run_strategy(paused_ctx).status == "paused"  # after step 5: inside the fixed-mask phase
    resumed, again, _ = _train(make_ctx, settings, output="resumed", n_epochs=2,
                               resume_from=latest_complete_checkpoint(paused_ctx.checkpoint_dir))
    assert again.keys() == tensors.keys()
    for key in tensors:
        assert (again[key].double() - tensors[key].double()).abs().max().item() <= 1e-6, key


@pytest.mark.parametrize("settings, field", [
    ({"target_sparsity": 0}, "target_sparsity"), ({"target_sparsity": 1}, "target_sparsity"),
    ({"target_sparsity": 1.5}, "target_sparsity"), ({"l": 0.5}, "l"), ({"r": 1.0}, "r"),
    ({"finetune_fraction": 1.0}, "finetune_fraction"), ({"variant": "topk"}, "variant"),
])
def test_impossible_settings_are_refused(settings, field):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "diff_pruning", "diff_pruning": settings})
    assert info.value.param == f"method.diff_pruning.{field}"


@pytest.mark.parametrize("settings, fragment", [
    ({"variant": "magnitude", "l0_lambda": 1e-6}, "l0_lambda only apply to variant 'l0'"),
    ({"include_embeddings": True, "aux_mlm_weight": 0.5}, "include_embeddings"),
])
def test_contradictory_settings_are_refused(settings, fragment):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "diff_pruning", "diff_pruning": settings})
    assert fragment in info.value.message


def test_target_sparsity_message_says_what_it_means():
    with pytest.raises(MethodError) as info:
        parse_method({"type": "diff_pruning", "diff_pruning": {"target_sparsity": 5}})
    assert "fraction of base parameters kept" in info.value.message and "0.005" in info.value.message


def test_ties_keep_exactly_the_target_count(make_ctx):
    """After one Adam step every |w| is about the learning rate: the projection still keeps exactly `keep`."""
    ctx, _, summary = _train(make_ctx, {"variant": "magnitude", "finetune_fraction": 0.67}, n_epochs=1)
    assert any("from step 2 on" in m for m in ctx.sink.of("message"))
    assert summary["kept"] == round(0.005 * TARGETED)


def test_include_embeddings_diffs_them_too_and_reloads_exactly(make_ctx, tiny_model_dir):
    from app.training.artifacts import predict

    ctx, tensors, summary = _train(make_ctx, {"include_embeddings": True, "target_sparsity": 0.05})
    embeddings = sum(p.numel() for n, p in _base_classifier(tiny_model_dir).named_parameters() if ".embeddings." in n)
    assert summary["targeted_parameters"] == TARGETED + embeddings and summary["include_embeddings"] is True
    assert any(".embeddings." in k for k in tensors)
    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    expected = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    for mine, theirs in zip(predict(model, tokenizer, rows, labels), expected, strict=True):
        assert max(abs(a - b) for a, b in zip(mine["logits"], theirs["logits"])) < 1e-5
