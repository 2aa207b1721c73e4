"""BitFit (Ben-Zaken et al. 2021, "BitFit: Simple Parameter-efficient Fine-tuning").

Artifact: `delta/delta.safetensors` with only the tensors that changed (biases and the head),
applied over the shared base model by `app.training.artifacts.load_classifier`.
"""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from app.training.base import TrainContext, TrainResult
from app.training.checkpoints import trainable_state
from app.training.classification import run_classification
from app.training.strategies.bitfit.config import BitFitSettings

HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.")


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    train_head = ctx.settings_as(BitFitSettings).train_head
    for name, param in model.named_parameters():
        is_new = name in new_parameters or name.startswith(HEAD_PREFIXES)
        param.requires_grad_(name.endswith(".bias") or (train_head and is_new))
    return model


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    (output_dir / "delta").mkdir(parents=True, exist_ok=True)
    # weights the base lacked (head, pooler) are new either way, so they always ship with the delta
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if n in new_parameters or n.startswith(HEAD_PREFIXES)}
    save_file({**trainable_state(model), **head}, output_dir / "delta" / "delta.safetensors",
              metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
