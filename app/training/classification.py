"""The labelled task every task method (supervised, LoRA, BitFit, …) shares, of any task type the
training file holds (single-label, regression, multi-label, token classification: app.training.tasks).

A strategy only decides which parameters train (`prepare`) and how the result is saved (`save`);
data, the per-epoch shuffle (seeded with seed + epoch, so a resumed run sees exactly the batches
an uninterrupted one would), evaluation, predictions and the manifest live here; the optimisation
loop itself is app.training.engine.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from app.training.adapted_base import load_pretrained
from app.training.artifacts import write_manifest
from app.training.aux_mlm import attach_aux_mlm
from app.training.batching import length_grouping
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.config import Hyperparameters, TaskMethodSettings
from app.training.data import (CLASSIFICATION, MULTI_LABEL, REGRESSION, DatasetError, DatasetSummary, Example, load_classification_examples,
                               validate_classification_file)
from app.training.engine import Run, RunResult, batch_seed, epoch_batches, finite, seed_everything
from app.training.masking import MaskingSettings, MlmMasker
from app.training.mlm import pmi_vocabulary
from app.training.structure import restructure
from app.training.tasks import Rows, Task, get_task
from app.training.tasks.sequence import DEFAULT_THRESHOLD

# prepare(model, ctx, new_parameters): `new_parameters` names weights the base checkpoint lacked
# (the head, sometimes a pooler); they start random, so every artifact must carry them.
Prepare = Callable[[torch.nn.Module, TrainContext, set[str]], torch.nn.Module]
# save(model, tokenizer, output_dir, ctx, new_parameters)
Save = Callable[[torch.nn.Module, Any, Path, TrainContext, set[str]], None]

__all__ = ["Build", "build_classifier", "builder", "evaluate_classifier", "finish_classification", "finish_classifier", "load_task",
           "load_task_data"]


class LabelledRows(Protocol):
    """What evaluation reads: padded batches of rows with their label ids (Rows, or a method's own rows)."""

    label_ids: list[int]

    def __len__(self) -> int: ...

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]: ...


def evaluate_classifier(model, data: LabelledRows, device,
                        batch_size: int = 64) -> tuple[dict[str, float], list[torch.Tensor]]:
    """eval_loss and the task type's metrics (`data.task`; none: single-label classification), and
    the scored outputs of every row of `data`, in order (logits; token tasks: per scored word)."""
    task = getattr(data, "task", None) or get_task(CLASSIFICATION)
    model.eval()
    outputs, losses = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.batch(list(range(start, min(start + batch_size, len(data)))), device)
            out = model(**batch)
            outputs += task.outputs(out.logits, batch)
            losses.append(out.loss.item() * out.logits.shape[0])
    model.train()
    # eval_samples: the rows behind the figures (model selection's standard error, app.training.best)
    return {"eval_loss": sum(losses) / len(data), **task.metrics(outputs, data), "eval_samples": len(data)}, outputs


def _aux_masker(ctx: TrainContext, tokenizer: Any, examples: list[Example]) -> MlmMasker:
    settings = ctx.settings_as(TaskMethodSettings).aux_mlm or MaskingSettings()
    vocab = pmi_vocabulary(settings, [e.text for e in examples], tokenizer,
                           param=f"method.{ctx.method}.aux_mlm.pmi_min_count")
    return MlmMasker.from_tokenizer(tokenizer, settings, vocab, generator=torch.Generator())


def _padded_word_ids(data: Rows, indices: list[int], width: int) -> list[list[int | None]] | None:
    if data.word_ids is None:
        return None
    return [data.word_ids[i] + [None] * (width - len(data.word_ids[i])) for i in indices]


@dataclass
class TaskData:
    """A job's examples, labels, tokenizer and device: what every model built for it shares (one per seed)."""

    train_examples: list[Example]
    valid_examples: list[Example]
    labels: list
    tokenizer: Any
    device: torch.device
    task: Task = dataclasses.field(default_factory=lambda: get_task(CLASSIFICATION))
    _rows: dict[int, tuple[Rows, Rows | None]] = dataclasses.field(default_factory=dict)

    def rows(self, max_length: int) -> tuple[Rows, Rows | None]:
        """Training and validation rows tokenized to `max_length` (once per length)."""
        if max_length not in self._rows:
            encode = self.task.encode
            valid = encode(self.tokenizer, self.valid_examples, self.labels, max_length) if self.valid_examples else None
            self._rows[max_length] = encode(self.tokenizer, self.train_examples, self.labels, max_length), valid
        return self._rows[max_length]


def load_task(ctx: TrainContext) -> TaskData:
    from transformers import AutoTokenizer

    train_examples, valid_examples, summary = read_task_files(ctx)
    setting = ctx.settings_as(TaskMethodSettings).multi_label_threshold
    auto = setting == "auto"  # None: chosen on the validation rows, which a job without them lacks
    task = get_task(summary.task, (None if valid_examples else DEFAULT_THRESHOLD) if auto else setting)
    ctx.sink.message(f"Task: {describe_task(summary)}", data={"task": summary.task, "labels": summary.labels,
                                                             "n_examples": summary.n_examples})
    if summary.task == MULTI_LABEL and auto and not valid_examples:
        ctx.sink.message(f"Multi-label threshold {DEFAULT_THRESHOLD:g}: auto chooses one on a validation file, "
                         "and this job has none", data={"multi_label_threshold": DEFAULT_THRESHOLD})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return TaskData(train_examples, valid_examples, summary.labels, AutoTokenizer.from_pretrained(ctx.base_model.path),
                    device, task)


@dataclass
class Classifier:
    """A classifier built for a job and ready to train: `model` is the prepared classifier (what evaluation
    scores and `save` writes), `trained` what the optimiser sees (the model, or it with an auxiliary MLM
    head), `hyperparameters` the job's with max_length capped to the base."""

    model: torch.nn.Module
    trained: torch.nn.Module
    new_parameters: set[str]
    hyperparameters: Hyperparameters
    train: Rows
    valid: Rows | None
    batch: Callable[[int, int], dict[str, torch.Tensor]]
    device: torch.device

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.hyperparameters.batch_size)

    def evaluate(self) -> dict[str, float]:
        return evaluate_classifier(self.model, self.valid, self.device)[0]

    def run(self, ctx: TrainContext, **fields: Any) -> Run:
        """The engine's Run over ctx's sink and checkpoints; `fields` replace or add Run fields."""
        groups = head_rate_groups(self.trained, self.model, self.new_parameters, self.hyperparameters)
        if groups is not None:
            rates = {group["name"]: group["lr"] for group in groups}
            ctx.sink.message("Learning rates: " + ", ".join(f"{name} {lr:g}" for name, lr in rates.items()),
                             data={"learning_rates": rates})
        return Run(**{"model": self.trained, "hyperparameters": self.hyperparameters, "parameter_groups": groups,
                      "steps_per_epoch": self.steps_per_epoch, "batch": self.batch, "sink": ctx.sink,
                      "checkpoint_dir": ctx.checkpoint_dir, "resume_from": ctx.resume_from,
                      "evaluate": self.evaluate if self.valid is not None else None,
                      "sharding": ctx.sharding, **fields})


def head_rate_groups(trained: torch.nn.Module, model: torch.nn.Module, new_parameters: set[str],
                     hp: Hyperparameters) -> list[dict[str, Any]] | None:
    """AdamW groups in which the weights the base lacked (the head, a trained pooler) train at
    `hp.head_learning_rate` and the rest at `hp.learning_rate`; None when one rate serves all.

    Methods that move few base weights at a high rate (BitFit, IA3: 1e-2) would otherwise move a fresh
    dense head at that rate too. Names are matched on `model` (a PEFT wrapper adds prefixes, and keeps
    a trained head under `modules_to_save.default`)."""
    if hp.head_learning_rate is None or hp.head_learning_rate == hp.learning_rate:
        return None
    suffixes = tuple("." + name for name in new_parameters)
    names = {id(param): _plain_name(name) for name, param in model.named_parameters() if param.requires_grad}
    head = {key for key, name in names.items() if name in new_parameters or name.endswith(suffixes)}
    trainable = [param for param in trained.parameters() if param.requires_grad]
    groups = [{"name": "head", "params": [p for p in trainable if id(p) in head], "lr": hp.head_learning_rate},
              {"name": "rest", "params": [p for p in trainable if id(p) not in head], "lr": hp.learning_rate}]
    return [group for group in groups if group["params"]]


def _plain_name(name: str) -> str:
    return name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")


def build_classifier(ctx: TrainContext, task: TaskData, prepare: Prepare) -> Classifier:
    """Load the base with a new head under ctx's seed, restructure and prepare it as the method says."""
    hp, tokenizer, device = ctx.hyperparameters, task.tokenizer, task.device
    seed_everything(hp.seed)
    model, info = load_pretrained(
        task.task.model_class(), ctx.base_model.path, output_loading_info=True, **task.task.model_kwargs(task.labels))
    if note := task.task.init_head(model, task.train_examples):
        ctx.sink.message(note)
    limit = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None) or 10**9)
    if hp.max_length > limit:  # longer inputs would index past the position embeddings
        ctx.sink.message(f"max_length {hp.max_length} exceeds what {ctx.base_model.id} accepts; using {limit}",
                         level="warn")
        hp = dataclasses.replace(hp, max_length=limit)
    new_parameters = set(info["missing_keys"])
    model = restructure(model, ctx, new_parameters)  # drop / re-initialise top layers
    model = prepare(model, ctx, new_parameters).to(device)
    aux_weight = ctx.settings_as(TaskMethodSettings).aux_mlm_weight
    trained = attach_aux_mlm(model, ctx.base_model.path, aux_weight, ctx.sink) if aux_weight else model
    train, valid = task.rows(hp.max_length)
    lengths = [len(row["input_ids"]) for row in train.features]
    grouped, why = length_grouping(hp.group_by_length, lengths, hp.batch_size, hp.seed)
    ctx.sink.message(f"Length-grouped batches {'on' if grouped else 'off'} ({why})", data={"group_by_length": grouped})
    rows_of = epoch_batches(len(train), hp, lengths if grouped else None)
    masker = _aux_masker(ctx, tokenizer, task.train_examples) if aux_weight else None

    def batch(epoch: int, b: int) -> dict[str, torch.Tensor]:
        indices = rows_of(epoch, b)
        out = train.batch(indices, device)
        if masker is not None:
            masker.generator.manual_seed(batch_seed(masker.settings.seed_or(hp.seed), epoch, b))
            word_ids = _padded_word_ids(train, indices, out["input_ids"].shape[1])
            out["mlm_input_ids"], out["mlm_labels"] = masker(out["input_ids"].cpu(), out["attention_mask"].cpu(),
                                                             word_ids=word_ids)
            out["mlm_input_ids"], out["mlm_labels"] = out["mlm_input_ids"].to(device), out["mlm_labels"].to(device)
        return out

    return Classifier(model, trained, new_parameters, hp, train, valid, batch, device)


# build(ctx, task): the classifier a job trains, built under ctx's seed (a method with its own model, e.g.
# cloze's masked-LM read through a verbalizer, builds its own; the others are `builder(prepare)`)
Build = Callable[[TrainContext, TaskData], Classifier]


def builder(prepare: Prepare) -> Build:
    """build_classifier with a method's `prepare`."""
    return lambda ctx, task: build_classifier(ctx, task, prepare)


def finish_classifier(ctx: TrainContext, task: TaskData, classifier: Classifier, run: RunResult,
                      save: Save, **extra: Any) -> TrainResult:
    """finish_classification for a classifier built here; `extra`: its keyword arguments."""
    model = classifier.model
    return finish_classification(
        ctx, run, model, classifier.valid, (task.train_examples, task.valid_examples), task.labels,
        classifier.hyperparameters, task=task.task, **extra,
        save_artifact=lambda: save(model, task.tokenizer, ctx.output_dir, ctx, classifier.new_parameters))


def finish_classification(ctx: TrainContext, run: RunResult, model: torch.nn.Module, valid: LabelledRows | None,
                          examples: tuple[list[Example], list[Example]], labels: list, hp: Hyperparameters,
                          save_artifact: Callable[[], None], metrics: dict[str, float] | None = None,
                          manifest: dict[str, Any] | None = None, task: Task | None = None) -> TrainResult:
    """The end every task method shares: after a succeeded run, the final evaluation and its predictions
    file, the method's own files (`save_artifact`), the ready folder and the manifest (naming the task
    type, `task`; None: single-label classification). `metrics` join the final metrics, `manifest` the
    manifest's fields (e.g. what stability options did)."""
    task = task or get_task(CLASSIFICATION)
    if run.status != "succeeded":
        return TrainResult(run.status, run.step, run.trained_tokens, run.flops, run.eval_metrics)
    train_examples, valid_examples = examples
    final_metrics = finite({"train_loss": run.last_loss})
    if valid is not None:
        eval_metrics, outputs = evaluate_classifier(model, valid, next(model.parameters()).device)
        final_metrics.update(eval_metrics)
        if run.selected_step is not None:  # its scores reached the metrics stream at that step
            final_metrics["selected_step"] = run.selected_step
        elif run.eval_step != run.step:  # the final model's scores always reach the metrics stream
            ctx.sink.metrics(run.step, dict(eval_metrics))
        task = _settle_threshold(ctx, task, eval_metrics)
        _write_predictions(ctx.output_dir, valid_examples, labels, outputs, task)
    final_metrics.update(metrics or {})
    if task.name == MULTI_LABEL:  # config.json (and a whole saved model) carry the threshold the manifest records
        getattr(model, "get_base_model", lambda: model)().config.multi_label_threshold = task.threshold
    save_artifact()
    _write_ready_folder(ctx, model, labels, len(train_examples), len(valid_examples), final_metrics, run)
    threshold = {"multi_label_threshold": task.threshold} if task.name == MULTI_LABEL else {}
    write_manifest(ctx.output_dir, job_id=ctx.job_id, method=ctx.method, task=task.name,
                   base_model={"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}, labels=labels,
                   metrics=final_metrics, trained_tokens=run.trained_tokens, flops=run.flops, steps=run.step,
                   hyperparameters=dataclasses.asdict(hp), settings=ctx.settings_record(),
                   parameters={"total": run.total_parameters, "trainable": run.trainable_parameters},
                   created_at=datetime.now(UTC).isoformat(), **threshold, **(manifest or {}))
    return TrainResult("succeeded", run.step, run.trained_tokens, run.flops, final_metrics)


def _settle_threshold(ctx: TrainContext, task: Task, eval_metrics: dict[str, float]) -> Task:
    """A multi-label threshold left on "auto": the one the final model's validation scores chose (the
    artifact and its predictions use it), said in an event with the micro-F1 it gives."""
    if task.name != MULTI_LABEL or task.threshold is not None:
        return task
    chosen = eval_metrics.get("eval_threshold", DEFAULT_THRESHOLD)
    ctx.sink.message(f"Multi-label threshold {chosen:g}, chosen on validation micro-F1 "
                     f"({eval_metrics.get('eval_micro_f1', 0.0):.4f}) among 0.05-0.95",
                     data={"multi_label_threshold": chosen})
    return dataclasses.replace(task, threshold=chosen)


def _write_ready_folder(ctx: TrainContext, model, labels: list, n_train: int, n_valid: int,
                        metrics: dict[str, float], run) -> None:
    """config.json (labels) and README.md (the model card) beside the method's files."""
    from app.training.model_card import write_config, write_model_card
    from app.training.registry import get_strategy

    spec = get_strategy(ctx.method)
    write_config(ctx.output_dir, model)
    write_model_card(ctx, reload=spec.reload, paper=spec.paper, labels=labels, train_examples=n_train,
                     valid_examples=n_valid, metrics=metrics, steps=run.step,
                     parameters={"total": run.total_parameters, "trainable": run.trainable_parameters})


def describe_task(summary: DatasetSummary) -> str:
    """What the job trains, in words, for its events."""
    n = summary.n_examples
    pair = " (text pairs)" if summary.has_pair else ""
    return {
        "sequence_classification": f"single-label classification{pair}, {len(summary.labels)} labels, {n} examples",
        "regression": f"regression{pair} (float labels; MSE loss, Pearson/Spearman reported), {n} examples",
        "multi_label_classification": f"multi-label classification{pair} (a sigmoid per label), "
                                      f"{len(summary.labels)} labels, {n} examples",
        "token_classification": f"token classification (BIO tags, entity-level F1), {len(summary.labels)} tags, "
                                f"{n} sentences",
    }[summary.task]


def label_set(examples: list[Example], task: str) -> set:
    """Every label the examples use (a multi-label row's each); none for regression."""
    if task == REGRESSION:
        return set()
    return {label for e in examples for label in (e.label if isinstance(e.label, list) else [e.label])}


def read_task_files(ctx: TrainContext) -> tuple[list[Example], list[Example], DatasetSummary]:
    """Training and validation examples plus the training file's summary (task type, sorted labels).

    The API validated both files at submission; this re-checks because a worker may run a job
    whose files changed meaning (e.g. a validation label the training file lacks), and refuses a task
    type the method cannot train (StrategySpec.task_kinds)."""
    from app.training.registry import get_strategy

    try:
        summary = validate_classification_file(ctx.train_file)
        train = load_classification_examples(ctx.train_file, summary.task)
    except DatasetError as exc:
        raise TrainingError(f"training_file: {exc}", code="invalid_training_file", param="training_file") from exc
    spec = get_strategy(ctx.method)
    if summary.task not in spec.task_kinds:
        raise TrainingError(f"method {ctx.method} cannot train {summary.task} ({spec.task_reason}); "
                            "choose another method or file.", code="unsupported_task_type", param="training_file")
    if ctx.validation_file is None:
        return train, [], summary
    try:
        valid_task = validate_classification_file(ctx.validation_file).task
        valid = load_classification_examples(ctx.validation_file, summary.task) if valid_task == summary.task else []
    except DatasetError as exc:
        raise TrainingError(f"validation_file: {exc}", code="invalid_validation_file",
                            param="validation_file") from exc
    problem = None
    if valid_task != summary.task:
        problem = f"holds {valid_task} rows but the training file {summary.task} rows"
    elif unseen := label_set(valid, summary.task) - set(summary.labels):
        problem = (f"has labels the training file lacks: {sorted(map(str, unseen))[:10]}; the model can only "
                   f"predict {[str(label) for label in summary.labels][:10]}")
    elif any((e.text_pair is not None) != summary.has_pair for e in valid):
        problem = ("has text pairs but the training file does not" if not summary.has_pair
                   else 'lacks "text_pair" on some rows but the training file uses text pairs')
    if problem:
        raise TrainingError(f"validation_file {problem}.", code="invalid_validation_file", param="validation_file")
    return train, valid, summary


def load_task_data(ctx: TrainContext) -> tuple[list[Example], list[Example], list]:
    """read_task_files' examples and the sorted label list (the id2label order)."""
    train, valid, summary = read_task_files(ctx)
    return train, valid, summary.labels


def _write_predictions(output_dir: Path, examples: list[Example], labels: list, outputs: list[torch.Tensor],
                       task: Task) -> None:
    """eval/predictions.jsonl: per validation row its index, gold label and the task's prediction."""
    import json

    path = output_dir / "eval" / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, (example, output) in enumerate(zip(examples, outputs, strict=True)):
            f.write(json.dumps({"index": i, "label": example.label, **task.prediction(output, labels)}) + "\n")
