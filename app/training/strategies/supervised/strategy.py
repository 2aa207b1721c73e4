"""Full fine-tuning with a randomly initialised task head (Devlin et al. 2019, BERT).

Artifact: `model/`, a plain `save_pretrained` directory with the tokenizer.
"""
from __future__ import annotations

from pathlib import Path

from app.training.base import TrainContext, TrainResult
from app.training.sharding import save_pretrained
from app.training.task_run import run_classification


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    save_pretrained(model, output_dir / "model")  # a sharded model's whole weights, written by rank 0
    tokenizer.save_pretrained(output_dir / "model")


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
