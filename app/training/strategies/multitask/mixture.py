"""The mixture of a multitask job (Aghajanyan et al. 2021, Muppet): tasks, sampling, shared encoder + heads.

Every optimizer step sees one heterogeneous batch: each row picks its task with the sampling
probabilities, then one of that task's training rows uniformly. The draw is seeded by (seed, epoch,
batch), so a resumed job sees exactly the batches an uninterrupted one would. Each row's cross-entropy
is divided by log(its task's label count) (Muppet's loss scaling) and the batch's mean is minimised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.training.base import TrainingError
from app.training.data import DatasetError, Example, load_classification_examples
from app.training.engine import batch_seed
from app.training.metrics import classification_metrics

Batch = dict[str, torch.Tensor]


@dataclass
class Task:
    """One task's tokenized rows (training and validation) and its sorted labels."""

    name: str
    labels: list
    train: list[dict[str, list[int]]]
    train_labels: list[int]
    valid: list[dict[str, list[int]]] = field(default_factory=list)
    valid_labels: list[int] = field(default_factory=list)


def _examples(path: Path, param: str) -> list[Example]:
    try:
        examples = load_classification_examples(path)
    except DatasetError as exc:
        raise TrainingError(f"{param}: {exc}", code="invalid_training_file", param=param) from exc
    if not examples:
        raise TrainingError(f"{param} has no rows.", code="invalid_training_file", param=param)
    if any(isinstance(e.label, list | float | dict) or e.label is None for e in examples):
        raise TrainingError(f"{param}: multitask trains single-label classification tasks (a class per row).",
                            code="invalid_training_file", param=param)
    return examples


def _encode(tokenizer, examples: list[Example], max_length: int) -> list[dict[str, list[int]]]:
    pairs = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
    encoded = tokenizer([e.text for e in examples], pairs, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(examples))]


def load_task(name: str, train: tuple[Path, str], valid: tuple[Path, str] | None, tokenizer, max_length: int) -> Task:
    """A task from its (path, param) files; a validation label the training file lacks fails the job."""
    rows = _examples(*train)
    labels = sorted({e.label for e in rows}, key=lambda label: (str(type(label)), label))
    index = {label: i for i, label in enumerate(labels)}
    task = Task(name, labels, _encode(tokenizer, rows, max_length), [index[e.label] for e in rows])
    if valid is not None:
        valid_rows = _examples(*valid)
        if unseen := {e.label for e in valid_rows} - set(labels):
            raise TrainingError(f"{valid[1]} has labels the task's training file lacks: {sorted(map(str, unseen))[:10]}.",
                                code="invalid_validation_file", param=valid[1])
        task.valid, task.valid_labels = _encode(tokenizer, valid_rows, max_length), [index[e.label] for e in valid_rows]
    return task


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
        out["labels"] = torch.tensor([tasks[t].train_labels[i] for t, i in picks], device=device)
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
        self.heads = torch.nn.ModuleDict({t.name: torch.nn.Linear(config.hidden_size, len(t.labels)) for t in tasks})
        for head in self.heads.values():  # BERT's head initialisation
            torch.nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
            torch.nn.init.zeros_(head.bias)

    def pooled(self, batch: Batch) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.encoder(**inputs)
        pooled = getattr(out, "pooler_output", None)
        return self.dropout(pooled if pooled is not None else out.last_hidden_state[:, 0])

    def logits(self, batch: Batch, task: int) -> torch.Tensor:
        return self.heads[self.names[task]](self.pooled(batch))


@dataclass
class MixtureObjective:
    """The engine's objective: Muppet's scaled cross-entropy over a heterogeneous batch; per-task train losses."""

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
            ce = torch.nn.functional.cross_entropy(model.heads[task.name](hidden[rows]), batch["labels"][rows],
                                                   reduction="sum")
            total = total + ce / (math.log(len(task.labels)) if self.loss_scaling and len(task.labels) > 1 else 1.0)
            running = self._sums.setdefault(task.name, [0.0, 0])
            running[0], running[1] = running[0] + ce.item(), running[1] + len(rows)
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
    """Per task with validation rows: eval_<name>_loss/_accuracy/_macro_f1; eval_loss/eval_accuracy are their
    means (what selects the best checkpoint)."""
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for t, task in enumerate(tasks):
            if not task.valid:
                continue
            logits = torch.cat([model.logits(collate(task.valid[s:s + batch_size], pad_id, device), t).float().cpu()
                                for s in range(0, len(task.valid), batch_size)])
            gold = torch.tensor(task.valid_labels)
            scores = classification_metrics(logits.argmax(-1).tolist(), task.valid_labels, len(task.labels))
            metrics[f"eval_{task.name}_loss"] = torch.nn.functional.cross_entropy(logits, gold).item()
            metrics[f"eval_{task.name}_accuracy"] = scores["eval_accuracy"]
            metrics[f"eval_{task.name}_macro_f1"] = scores["eval_macro_f1"]
    model.train()
    scored = [t.name for t in tasks if t.valid]
    metrics["eval_loss"] = sum(metrics[f"eval_{n}_loss"] for n in scored) / len(scored)
    metrics["eval_accuracy"] = sum(metrics[f"eval_{n}_accuracy"] for n in scored) / len(scored)
    return metrics
