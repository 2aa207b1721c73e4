"""The mixture of a multitask job (Aghajanyan et al. 2021, Muppet): tasks, sampling, shared encoder + heads.

Every optimizer step sees one heterogeneous batch: each row picks its task with the sampling
probabilities, then one of that task's training rows uniformly. The draw is seeded by (seed, epoch,
batch), so a resumed job sees exactly the batches an uninterrupted one would. The batch's mean loss is
minimised; each row's loss is its task type's (app.training.tasks): cross-entropy divided by log(the task's
label count) for single-label classification (Muppet's loss scaling), mean squared error for regression
(its head starts at the training labels' mean), binary cross-entropy averaged over the labels for
multi-label classification. Muppet's heads sit on the pooled sequence, so token classification (NER) is
not a mixture task: train it with `then` on the multitask encoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.training.base import TrainingError
from app.training.data import (CLASSIFICATION, MULTI_LABEL, REGRESSION, DatasetError, Example,
                               load_classification_examples, validate_classification_file)
from app.training.classification import label_set
from app.training.engine import batch_seed
from app.training.strategies.multitask.config import mixture_type_problem
from app.training.tasks import Rows, get_task

Batch = dict[str, torch.Tensor]
# the validation figure each task type contributes to the mixture's eval_score (what selects the checkpoint)
PRIMARY = {CLASSIFICATION: "accuracy", REGRESSION: "pearson", MULTI_LABEL: "micro_f1"}


@dataclass
class Task:
    """One task's type, sorted labels (none for regression) and tokenized rows with their targets: a class
    id, a float, or a 0/1 per label."""

    name: str
    type: str
    labels: list
    train: list[dict[str, list[int]]]
    train_labels: list
    valid: list[dict[str, list[int]]] = field(default_factory=list)
    valid_labels: list = field(default_factory=list)
    label_mean: float = 0.0  # regression: where the head starts

    @property
    def width(self) -> int:
        return 1 if self.type == REGRESSION else len(self.labels)

    def row_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per row: cross-entropy, squared error, or binary cross-entropy averaged over the labels."""
        functional = torch.nn.functional
        if self.type == REGRESSION:
            return functional.mse_loss(logits[:, 0].float(), targets[:, 0], reduction="none")
        if self.type == MULTI_LABEL:
            return functional.binary_cross_entropy_with_logits(
                logits.float(), targets[:, :self.width], reduction="none").mean(-1)
        return functional.cross_entropy(logits.float(), targets[:, 0].long(), reduction="none")

    def scale(self, loss_scaling: bool) -> float:
        """Muppet's loss scaling: a classification task's cross-entropy over log(its label count)."""
        return math.log(len(self.labels)) if loss_scaling and self.type == CLASSIFICATION and len(self.labels) > 1 else 1.0


def _examples(path: Path, param: str) -> tuple[list[Example], str, list]:
    try:
        summary = validate_classification_file(path)
        examples = load_classification_examples(path, summary.task)
    except DatasetError as exc:
        raise TrainingError(f"{param}: {exc}", code="invalid_training_file", param=param) from exc
    if not examples:
        raise TrainingError(f"{param} has no rows.", code="invalid_training_file", param=param)
    if problem := mixture_type_problem(summary.task):
        raise TrainingError(f"{param} {problem}", code="unsupported_task_type", param=param)
    return examples, summary.task, [] if summary.task == REGRESSION else summary.labels


def _encode(tokenizer, examples: list[Example], max_length: int) -> list[dict[str, list[int]]]:
    pairs = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
    encoded = tokenizer([e.text for e in examples], pairs, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(examples))]


def _targets(kind: str, examples: list[Example], labels: list) -> list:
    encode, index = get_task(kind).target, {label: i for i, label in enumerate(labels)}
    return [encode(e.label, index) for e in examples]


def load_task(name: str, train: tuple[Path, str], valid: tuple[Path, str] | None, tokenizer, max_length: int) -> Task:
    """A task from its (path, param) files; a validation file of another type, or with a label the training
    file lacks, fails the job."""
    rows, kind, labels = _examples(*train)
    task = Task(name, kind, labels, _encode(tokenizer, rows, max_length), _targets(kind, rows, labels),
                label_mean=sum(e.label for e in rows) / len(rows) if kind == REGRESSION else 0.0)
    if valid is not None:
        valid_rows, valid_kind, _ = _examples(*valid)
        if valid_kind != kind:
            raise TrainingError(f"{valid[1]} holds {valid_kind} rows but the task's training file {kind} rows.",
                                code="invalid_validation_file", param=valid[1])
        if unseen := label_set(valid_rows, kind) - set(labels):
            raise TrainingError(f"{valid[1]} has labels the task's training file lacks: {sorted(map(str, unseen))[:10]}.",
                                code="invalid_validation_file", param=valid[1])
        task.valid, task.valid_labels = _encode(tokenizer, valid_rows, max_length), _targets(kind, valid_rows, labels)
    return task


def target_tensor(targets: list, device: torch.device) -> torch.Tensor:
    """Rows of different task types in one float tensor: a class id or a value in column 0, or a 0/1 per
    label, padded with zeros to the widest row."""
    rows = [t if isinstance(t, list) else [float(t)] for t in targets]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0.0] * (width - len(r)) for r in rows], dtype=torch.float32, device=device)


def sampling_probabilities(sizes: list[int], sampling: str, temperature: float) -> list[float]:
    """Proportional to the sizes (Muppet), or to size^(1/T) (temperature sampling)."""
    weights = [n ** (1.0 / temperature) if sampling == "temperature" else float(n) for n in sizes]
    return [w / sum(weights) for w in weights]


def collate(rows: list[dict[str, list[int]]], pad_id: int, device: torch.device) -> Batch:
    width = max(len(r["input_ids"]) for r in rows)
    return {key: torch.tensor([r[key] + [pad_id if key == "input_ids" else 0] * (width - len(r[key])) for r in rows],
                              device=device) for key in rows[0]}


def mixture_batches(tasks: list[Task], probabilities: list[float], batch_size: int, seed: int, pad_id: int,
                    device: torch.device):
    """(epoch, b) -> a heterogeneous batch with `task_ids` and per-task `labels`, the same for the same (epoch, b)."""
    p = torch.tensor(probabilities)

    def batch(epoch: int, b: int) -> Batch:
        generator = torch.Generator().manual_seed(batch_seed(seed, epoch, b))
        task_ids = torch.multinomial(p, batch_size, replacement=True, generator=generator).tolist()
        picks = [(t, int(torch.randint(len(tasks[t].train), (1,), generator=generator))) for t in task_ids]
        out = collate([tasks[t].train[i] for t, i in picks], pad_id, device)
        out["task_ids"] = torch.tensor(task_ids, device=device)
        out["labels"] = target_tensor([tasks[t].train_labels[i] for t, i in picks], device)
        return out
    return batch


class MultitaskModel(torch.nn.Module):
    """A shared encoder (the base's, pooler included) and one linear head per task over its pooled output."""

    def __init__(self, encoder: torch.nn.Module, tasks: list[Task]):
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.names = [t.name for t in tasks]
        self.dropout = torch.nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1))
        self.heads = torch.nn.ModuleDict({t.name: torch.nn.Linear(config.hidden_size, t.width) for t in tasks})
        for task in tasks:  # BERT's head initialisation; a regression head starts at its labels' mean
            torch.nn.init.normal_(self.heads[task.name].weight, std=getattr(config, "initializer_range", 0.02))
            torch.nn.init.constant_(self.heads[task.name].bias, task.label_mean)

    def pooled(self, batch: Batch) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.encoder(**inputs)
        pooled = getattr(out, "pooler_output", None)
        return self.dropout(pooled if pooled is not None else out.last_hidden_state[:, 0])

    def logits(self, batch: Batch, task: int) -> torch.Tensor:
        return self.heads[self.names[task]](self.pooled(batch))


@dataclass
class MixtureObjective:
    """The engine's objective: each task type's loss (Muppet's scaled cross-entropy for classification) over a
    heterogeneous batch; per-task train losses."""

    tasks: list[Task]
    loss_scaling: bool
    flops_factor: float = 1.0
    _sums: dict[str, list[float]] = field(default_factory=dict)

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        hidden = model.pooled(batch)
        total = hidden.new_zeros(())
        for t, task in enumerate(self.tasks):
            rows = (batch["task_ids"] == t).nonzero(as_tuple=True)[0]
            if len(rows) == 0:
                continue
            loss = task.row_loss(model.heads[task.name](hidden[rows]), batch["labels"][rows]).sum()
            total = total + loss / task.scale(self.loss_scaling)
            running = self._sums.setdefault(task.name, [0.0, 0])
            running[0], running[1] = running[0] + loss.item(), running[1] + len(rows)
        return total / len(batch["task_ids"])

    def after_step(self, step: int, total_steps: int) -> None: ...

    def metrics(self) -> dict[str, float]:
        values = {f"train_{name}_loss": s / n for name, (s, n) in self._sums.items() if n}
        self._sums.clear()
        return values

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


def evaluate(model: MultitaskModel, tasks: list[Task], pad_id: int, device: torch.device,
             batch_size: int = 64) -> dict[str, float]:
    """Per task with validation rows: eval_<name>_loss and its task type's metrics (accuracy/macro-F1, MSE/
    Pearson/Spearman, micro-/macro-F1/subset accuracy). eval_loss is their losses' mean and eval_score the mean
    of each task's PRIMARY figure (what selects the best checkpoint); eval_accuracy, the mean accuracy, when
    every scored task is single-label classification."""
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for t, task in enumerate(tasks):
            if not task.valid:
                continue
            logits = torch.cat([model.logits(collate(task.valid[s:s + batch_size], pad_id, device), t).float().cpu()
                                for s in range(0, len(task.valid), batch_size)])
            metrics[f"eval_{task.name}_loss"] = task.row_loss(logits, target_tensor(task.valid_labels, logits.device)).mean().item()
            rows = Rows(task.valid, task.valid_labels, pad_id, labels=task.labels)
            for key, value in get_task(task.type).metrics(list(logits), rows).items():
                metrics[f"eval_{task.name}_{key.removeprefix('eval_')}"] = value
    model.train()
    scored = [t for t in tasks if t.valid]
    metrics["eval_loss"] = sum(metrics[f"eval_{t.name}_loss"] for t in scored) / len(scored)
    metrics["eval_score"] = sum(metrics[f"eval_{t.name}_{PRIMARY[t.type]}"] for t in scored) / len(scored)
    if all(t.type == CLASSIFICATION for t in scored):
        metrics["eval_accuracy"] = metrics["eval_score"]
    return metrics
