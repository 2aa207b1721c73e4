"""MLM-head warm-up (LP-FT, Kumar et al. 2022) on a tiny BERT saved without its head, like minilm-l6:
only the head trains, "auto" tells a missing head from a shipped one, a pause mid-warm-up resumes
exactly, and the encoder can train at a fraction of the head's rate."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from app.training.checkpoints import latest_complete_checkpoint
from app.training.mlm import run_mlm
from app.training.head_warmup import AUTO_MIN_STEPS
from app.training.mlm_head_warmup import WARMUP_DIR, encoder_lr_groups, head_parameters, plan
from tests.training.conftest import ListSink
from tests.training.test_mlm import assert_same_phase_result, phase

HEAD = ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.bias")


@pytest.fixture(scope="module")
def headless(tiny_model_dir, tmp_path_factory):
    """The tiny BERT's encoder saved alone (BertModel): its checkpoint has no cls.predictions.* tensors."""
    from transformers import AutoTokenizer, BertModel

    path = tmp_path_factory.mktemp("headless")
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def warmed(base, tmp_path, name: str, steps, sink=None, resume_from=None, ratio: float = 1.0):
    return dataclasses.replace(phase(base, tmp_path, name, sink=sink, resume_from=resume_from),
                               head_warmup=steps, encoder_lr_ratio=ratio)


def loaded(path):
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)


def test_auto_warms_up_a_missing_head_and_skips_a_shipped_one(headless, tiny_model_dir):
    model, info = loaded(headless)
    missing = plan("auto", model, info["missing_keys"], phase_steps=50, trains_adapter=False)
    assert missing.steps == AUTO_MIN_STEPS and set(missing.missing_head_keys) >= set(HEAD)
    assert plan("auto", model, info["missing_keys"], phase_steps=5000, trains_adapter=False).steps == 500
    assert plan(0, model, info["missing_keys"], 50, trains_adapter=False).steps == 0
    assert plan("auto", model, info["missing_keys"], 50, trains_adapter=True).steps == 0
    model, info = loaded(tiny_model_dir)
    shipped = plan("auto", model, info["missing_keys"], phase_steps=50, trains_adapter=False)
    assert shipped.steps == 0 and "ships its MLM head" in shipped.reason
    assert plan(7, model, info["missing_keys"], 50, trains_adapter=False).steps == 7
    # the head's own weights: the transform and the bias, not the decoder tied to the word embeddings
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in head_parameters(model, model.cls)) == sorted(HEAD)


def test_warm_up_trains_only_the_head(headless, tmp_path):
    """Paused as the encoder phase starts (after the 4 warm-up steps): the encoder is the base's, bit for bit."""
    sink = ListSink(stop_at_step=4, stop_reason="pause")
    done = run_mlm(warmed(headless, tmp_path, "out", 4, sink=sink))
    assert done.run.status == "paused" and done.run.step == 4
    assert any("head warm-up: 4 steps" in m for m in sink.of("message"))
    warm = load_file(latest_complete_checkpoint(tmp_path / "out-ckpt" / WARMUP_DIR) / "trainable.safetensors")
    assert sorted(warm) == sorted(f"model.{k}" for k in HEAD)
    state = load_file(latest_complete_checkpoint(tmp_path / "out-ckpt") / "trainable.safetensors")
    base = load_file(headless / "model.safetensors")
    encoder = {k: v for k, v in state.items() if k.startswith("model.bert.")}
    assert len(encoder) == len(base) - 2  # all but the pooler, which the MLM model has not
    for key, value in encoder.items():
        assert torch.equal(value, base[key.removeprefix("model.bert.")]), key
    for key in HEAD:  # the warmed head is what the encoder phase starts from
        assert torch.equal(state[f"model.{key}"], warm[f"model.{key}"]), key


def test_auto_on_a_shipped_head_says_why_it_skips(tiny_model_dir, tmp_path):
    sink = ListSink()
    done = run_mlm(warmed(tiny_model_dir, tmp_path, "out", "auto", sink=sink))
    assert done.run.status == "succeeded" and done.run.step == 12
    assert any("No MLM head warm-up: auto: the base ships its MLM head" in m for m in sink.of("message"))


@pytest.mark.parametrize("pause_after", [3, 8])  # mid-warm-up; in the encoder phase
def test_pause_resumes_to_the_same_weights(pause_after, headless, tmp_path):
    """5 warm-up steps, then 2 epochs × 6 steps: a pause anywhere resumes to the uninterrupted weights."""
    straight = run_mlm(warmed(headless, tmp_path, "straight", 5))
    paused = run_mlm(warmed(headless, tmp_path, "resumed", 5, sink=ListSink(stop_at_step=pause_after,
                                                                            stop_reason="pause")))
    assert paused.run.status == "paused" and paused.run.step == pause_after
    resume_from = latest_complete_checkpoint(tmp_path / "resumed-ckpt")  # as the strategy finds it
    resumed = run_mlm(warmed(headless, tmp_path, "resumed", 5, resume_from=resume_from))
    assert resumed.run.status == "succeeded" and resumed.run.step == straight.run.step == 17
    assert resumed.run.trained_tokens == straight.run.trained_tokens
    assert_same_phase_result(tmp_path / "straight", tmp_path / "resumed", straight, resumed)


def test_encoder_lr_ratio_puts_the_encoder_in_its_own_group(tiny_model_dir, tmp_path):
    model, _ = loaded(tiny_model_dir)
    head = head_parameters(model, model.cls)
    assert encoder_lr_groups(model, head, 1e-3, 1.0) is None
    groups = encoder_lr_groups(model, head, 1e-3, 0.25)
    assert [g["lr"] for g in groups] == [1e-3, 2.5e-4] and len(groups[0]["params"]) == len(HEAD)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    slow = run_mlm(warmed(tiny_model_dir, tmp_path, "slow", 0, ratio=0.25))
    same = run_mlm(warmed(tiny_model_dir, tmp_path, "same", 0))
    assert slow.run.status == same.run.status == "succeeded"
    a, b = load_file(tmp_path / "slow" / "model.safetensors"), load_file(tmp_path / "same" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert (a[key] - base[key]).abs().sum() < (b[key] - base[key]).abs().sum()
