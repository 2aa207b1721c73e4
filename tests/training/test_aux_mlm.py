"""Auxiliary MLM during task fine-tuning: loss = task + λ·MLM, resumable, absent from the artifact."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from app.training.checkpoints import latest_complete_checkpoint
from app.training.registry import run_strategy
from tests.training.conftest import ListSink


def test_aux_loss_is_task_plus_weighted_mlm(tiny_model_dir):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    from app.training.aux_mlm import attach_aux_mlm
    from app.training.masking import MaskingSettings, MlmCollator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).eval()
    wrapped = attach_aux_mlm(task, tiny_model_dir, 0.5, ListSink()).eval()
    batch = MlmCollator(tokenizer, MaskingSettings(mask_rate=0.3), generator=torch.Generator().manual_seed(1))(
        ["good great fine nice day", "bad awful sad poor night"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    clean = tokenizer(["good great fine nice day", "bad awful sad poor night"], return_tensors="pt", padding=True)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        total = wrapped(**clean, labels=labels, mlm_input_ids=inputs["input_ids"], mlm_labels=batch["labels"]).loss
        task_only = task(**clean, labels=labels).loss
        mlm_head = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
        mlm_head.bert = task.bert
        mlm_head.tie_weights()
        mlm = mlm_head(**inputs, labels=batch["labels"]).loss
    assert total.item() == pytest.approx(task_only.item() + 0.5 * mlm.item(), abs=1e-5)
    assert wrapped(**clean, labels=labels).loss.item() == pytest.approx(task_only.item(), abs=1e-6)  # eval batches


@pytest.mark.parametrize("method", ["lora", "bitfit"])
def test_aux_mlm_trains_resumes_exactly_and_stays_out_of_the_artifact(method, make_ctx):
    settings = {"aux_mlm_weight": 0.5, "aux_mlm": {"mask_rate": 0.3, "unit": "whole_word"}}
    if method == "lora":
        settings["r"] = 4
    common = dict(settings=settings, n_train=24, n_epochs=2)
    straight = make_ctx(method, output="straight", **common)
    assert run_strategy(straight).status == "succeeded"
    plain = make_ctx(method, output="plain", settings={"r": 4} if method == "lora" else {}, n_train=24, n_epochs=2)
    assert run_strategy(plain).status == "succeeded"
    paused = make_ctx(method, output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    resumed = make_ctx(method, output="resumed", resume_from=latest_complete_checkpoint(paused.checkpoint_dir), **common)
    assert run_strategy(resumed).status == "succeeded"
    weights = {"lora": "adapter/adapter_model.safetensors", "bitfit": "delta/delta.safetensors"}[method]
    a, b, c = (load_file(ctx.output_dir / weights) for ctx in (straight, resumed, plain))
    assert a.keys() == b.keys() == c.keys()  # the MLM head is a training aid, not part of the artifact
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-4  # the auxiliary loss changed training
