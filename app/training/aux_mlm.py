"""Auxiliary MLM during task fine-tuning (Chronopoulou et al. 2019, "An Embarrassingly Simple
Approach for Transfer Learning from Pretrained Language Models"): the loss is task + λ·MLM on the
same batch's texts, so the encoder keeps modelling the language while it learns the task.

The MLM head is the base model's own (loaded with AutoModelForMaskedLM, initialised if missing) on
the task model's encoder, shared as one module, so LoRA layers and BitFit's frozen weights apply
to both losses alike. Only the task model is saved: the head is a training aid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.training.adapted_base import load_pretrained
from app.training.base import ProgressSink
from app.training.mlm import PredictedPositionsOnly


class AuxMlmModel(torch.nn.Module):
    """Adds λ·MLM to the task loss when the batch carries `mlm_input_ids`/`mlm_labels` (training
    batches); evaluation batches, without them, score the task alone. The MLM head runs on the
    predicted positions only; a batch with none adds 0."""

    def __init__(self, task_model: torch.nn.Module, mlm_model: torch.nn.Module, weight: float):
        super().__init__()
        self.task_model, self.mlm_model, self.weight = task_model, mlm_model, weight

    def forward(self, mlm_input_ids: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                **batch: torch.Tensor) -> Any:
        out = self.task_model(**batch)
        if mlm_input_ids is None:
            return out
        extra = {k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}
        out.loss = out.loss + self.weight * self.mlm_model(labels=mlm_labels, input_ids=mlm_input_ids, **extra).loss
        return out


def attach_aux_mlm(task_model: torch.nn.Module, base_path: Path, weight: float, sink: ProgressSink) -> AuxMlmModel:
    """Wrap the (prepared) task model with an MLM head on its encoder; the head trains, the shared
    encoder keeps whatever trainability the strategy gave it."""
    from transformers import AutoModelForMaskedLM

    mlm, info = load_pretrained(AutoModelForMaskedLM, base_path, output_loading_info=True)
    inner = task_model.get_base_model() if hasattr(task_model, "get_base_model") else task_model  # PEFT
    encoder = getattr(inner, inner.base_model_prefix)
    setattr(mlm, mlm.base_model_prefix, encoder)
    mlm.tie_weights()  # the output embedding is the shared encoder's input embedding again
    shared = {id(p) for p in encoder.parameters()}
    for param in mlm.parameters():
        if id(param) not in shared:
            param.requires_grad_(True)
    if info["missing_keys"]:
        sink.message(f"Auxiliary MLM: the base model lacks {len(info['missing_keys'])} MLM-head weights; they start "
                     "random and are learned", level="warn")
    return AuxMlmModel(task_model, PredictedPositionsOnly(mlm.to(next(task_model.parameters()).device)), weight)
