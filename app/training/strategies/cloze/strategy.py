"""Cloze fine-tuning with the masked-LM head (PET, Schick & Schütze 2021, "Exploiting Cloze Questions for
Few Shot Text Classification and Natural Language Inference").

The base loads as a masked-LM: an adapted encoder (`adaptive`) brings its trained MLM head, a bare
sentence encoder (minilm-l6) gets the transform initialised and learned (an event says so). Every
example is written into every pattern (encoding.py); the loss and the logits are model.py's. The
optimisation loop, evaluation, predictions file, ready folder and manifest are the ones every task
method shares (app.training.engine, app.training.classification).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.training.adapted_base import load_pretrained
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.classification import Build, Classifier, Save, TaskData, load_task
from app.training.data import DatasetSummary, Example
from app.training.engine import epoch_batches, seed_everything
from app.training.structure import restructure
from app.training.strategies.cloze.apply import CONFIG, WHOLE
from app.training.strategies.cloze.config import ClozeSettings
from app.training.strategies.cloze.encoding import ClozeEncoder, Row, verbalizer_tokens
from app.training.strategies.cloze.model import ClozeModel
from app.training.strategies.cloze.trainable import prepare_parameters, save_weights
from app.training.task_run import run_task
from app.training.tasks.base import label_kwargs


@dataclass
class ClozeRows:
    """Examples under every pattern, with their label ids (what evaluate_classifier reads)."""

    rows: list[Row]
    label_ids: list[int]
    encoder: ClozeEncoder

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        out = self.encoder.pad([self.rows[i] for i in indices])
        out["labels"] = torch.tensor([self.label_ids[i] for i in indices])
        return {k: v.to(device) for k, v in out.items()}


def _rows(encoder: ClozeEncoder, examples: list[Example], labels: list, max_length: int) -> ClozeRows:
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    index = {label: i for i, label in enumerate(labels)}
    return ClozeRows(encoder.encode([e.text for e in examples], pairs, max_length),
                     [index[e.label] for e in examples], encoder)


def _check_data(ctx: TrainContext, settings: ClozeSettings, examples: list[Example], labels: list) -> None:
    """The submission's check_data again, on the files as the worker reads them."""
    summary = DatasetSummary(len(examples), labels, examples[0].text_pair is not None, 0)
    for field, message in settings.check_data(summary):
        raise TrainingError(f"method.{ctx.method}.{field} {message}", code="invalid_method_settings",
                            param=f"method.{ctx.method}.{field}")


def _load_masked_lm(ctx: TrainContext) -> tuple[torch.nn.Module, set[str]]:
    """The base as a masked-LM and the names of the weights it lacked (they start from initialisation)."""
    from transformers import AutoModelForMaskedLM

    try:
        mlm, info = load_pretrained(AutoModelForMaskedLM, ctx.base_model.path, output_loading_info=True)
    except ValueError as exc:  # a model type transformers has no masked-LM class for
        raise TrainingError(f"{ctx.base_model.id} cannot load as a masked-LM ({exc}); cloze needs an encoder with "
                            "an MLM head, such as BERT or RoBERTa", code="invalid_base_model", param="model") from exc
    missing = set(info["missing_keys"])
    if missing:
        ctx.sink.message(f"{ctx.base_model.id} has no trained MLM head: its {len(missing)} missing weights "
                         f"({', '.join(sorted(missing)[:4])}…) are initialised and learned with the task (the MLM "
                         "decoder stays tied to the word embeddings); an encoder adapted by an adaptive job has one",
                         level="warn", data={"missing_keys": sorted(missing)})
    return mlm, missing


def _say_multi_token_words(ctx: TrainContext, words: dict[str, str], labels: list, tokens: list[list[int]]) -> None:
    several = {str(label): words[str(label)] for label, ids in zip(labels, tokens, strict=True) if len(ids) > 1}
    if several:
        ctx.sink.message(f"Verbalizer words of several tokens score the mean of their tokens' log-probabilities at "
                         f"the mask: {several}", data={"multi_token_words": several})


def cloze_method(ctx: TrainContext, task: TaskData, settings: ClozeSettings) -> tuple[Build, Save]:
    """How a cloze model is built (under ctx's seed, once per seed of a stability block: the base as a
    masked-LM, restructured, prepared as cloze.peft says, read through the verbalizer) and saved."""
    tokenizer, labels, device = task.tokenizer, task.labels, task.device
    label_tokens = verbalizer_tokens(tokenizer, labels, settings.words(labels), f"method.{ctx.method}.verbalizer")
    _say_multi_token_words(ctx, settings.words(labels), labels, label_tokens)
    encoder, rows = ClozeEncoder(tokenizer, settings.patterns), {}

    def build(ctx: TrainContext, task: TaskData) -> Classifier:
        hp = ctx.hyperparameters
        seed_everything(hp.seed)
        mlm, new_parameters = _load_masked_lm(ctx)
        limit = min(tokenizer.model_max_length, getattr(mlm.config, "max_position_embeddings", None) or 10**9)
        if hp.max_length > limit:  # longer inputs would index past the position embeddings
            ctx.sink.message(f"max_length {hp.max_length} exceeds what {ctx.base_model.id} accepts; using {limit}",
                             level="warn")
            hp = dataclasses.replace(hp, max_length=limit)
        mlm.config.update(label_kwargs(labels))  # config.json of the ready folder names the labels
        mlm = restructure(mlm, ctx, new_parameters)  # drop / re-initialise top layers
        cloze = ClozeModel(prepare_parameters(mlm, ctx, settings, new_parameters), label_tokens).to(device)
        if hp.max_length not in rows:
            valid = _rows(encoder, task.valid_examples, labels, hp.max_length) if task.valid_examples else None
            rows[hp.max_length] = _rows(encoder, task.train_examples, labels, hp.max_length), valid
        train_rows, valid_rows = rows[hp.max_length]
        rows_of = epoch_batches(len(train_rows), hp)
        return Classifier(cloze, cloze, new_parameters, hp, train_rows, valid_rows,
                          lambda epoch, b: train_rows.batch(rows_of(epoch, b), device), device)

    def save(model: ClozeModel, tokenizer: Any, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
        save_weights(model.mlm, tokenizer, output_dir, ctx, settings, new_parameters)
        _write_config(ctx, settings, labels, label_tokens, task.train_examples)
    return build, save


def train(ctx: TrainContext) -> TrainResult:
    """A cloze job through the shared task machinery (app.training.task_run): a stability block's seeds,
    layer-wise rates, regularisers and early stopping reach the cloze model as they reach any classifier."""
    settings = ctx.settings_as(ClozeSettings)
    task = load_task(ctx)
    _check_data(ctx, settings, task.train_examples, task.labels)
    return run_task(ctx, task, *cloze_method(ctx, task, settings))


def _write_config(ctx: TrainContext, settings: ClozeSettings, labels: list, label_tokens: list[list[int]],
                  examples: list[Example]) -> None:
    """`cloze/cloze.json`: what turns the weights back into this classifier (app/training/strategies/cloze/apply.py)."""
    config: dict[str, Any] = {
        "patterns": settings.patterns, "verbalizer": settings.words(labels), "labels": labels,
        "label_tokens": label_tokens, "uses_pairs": examples[0].text_pair is not None,
        "peft": settings.peft.type if settings.peft else None, "weights": _weights_dir(ctx.output_dir),
        "base_model": {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}}
    path = ctx.output_dir / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))


def _weights_dir(output_dir: Path) -> str:
    return next(name for name in (WHOLE, "adapter", "delta") if (output_dir / name).is_dir())
