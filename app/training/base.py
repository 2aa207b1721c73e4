"""The contract between the service and a training strategy.

A strategy is handed a `TrainContext` (resolved spec, data paths, base-model directory, output and
checkpoint directories, a progress sink) and returns a `TrainResult`. It knows nothing of HTTP,
SQLAlchemy or Celery, so tests, benchmarks and `torchrun` can call it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from app.training.config import Hyperparameters, MethodSettings
from app.training.errors import TrainingError  # noqa: F401 (the contract's error, re-exported)

S = TypeVar("S", bound=MethodSettings)
StopReason = Literal["cancel", "pause"]


class ProgressSink(Protocol):
    """Where a strategy reports progress. The worker's sink writes to PostgreSQL."""

    def message(self, text: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """A human-readable event; `level` is OpenAI's: "info", "warn" or "error"."""

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """A metrics event at a global optimizer step (train_loss, eval_loss, eval_accuracy, …)."""

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        """A complete checkpoint was written (and renamed into place) at `path`."""

    def should_stop(self) -> StopReason | None:
        """Polled every step; also refreshes the worker heartbeat. Cheap: the sink throttles."""


@dataclass
class OffsetSink:
    """A phase's sink (a pretraining phase, a seed, LP-FT's probe): its step numbers continue after the
    phases before it. `tags` join every event's data (a multi-seed job's `seed`); `total_steps`, when
    given, is the whole job's and replaces the run's own in the "Training … for N steps" event (kept as
    `run_total_steps`), so progress counts the whole job."""

    inner: ProgressSink
    offset: int
    tags: dict[str, Any] = field(default_factory=dict)
    total_steps: int | None = None

    def message(self, text: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        if self.tags or (self.total_steps is not None and data and "total_steps" in data):
            data = {**(data or {}), **self.tags}
            if self.total_steps is not None and "total_steps" in data:
                data["run_total_steps"], data["total_steps"] = data["total_steps"], self.total_steps
        self.inner.message(text, level, data)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.inner.metrics(step + self.offset, {**values, **self.tags} if self.tags else values)

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.inner.checkpoint(step + self.offset, path, metrics)

    def should_stop(self) -> StopReason | None:
        return self.inner.should_stop()


@dataclass
class BaseModelRef:
    """One shared copy of a base model on disk, identified by id and content hash."""

    id: str
    path: Path
    sha256: str


@dataclass
class TrainContext:
    job_id: str
    method: str  # registry name, e.g. "lora"
    settings: MethodSettings  # the validated `method.<type>` object (its schedule is `hyperparameters`)
    hyperparameters: Hyperparameters  # resolved: no "auto" left
    base_model: BaseModelRef
    train_file: Path  # JSONL, already validated by app.training.data
    validation_file: Path | None
    output_dir: Path  # empty temp dir; everything written here becomes the job's artifacts
    checkpoint_dir: Path  # persistent across attempts of the same job
    sink: ProgressSink
    resume_from: Path | None = None  # a complete checkpoint dir to continue from
    input_files: dict[str, Path] = field(default_factory=dict)  # further files named in settings, by field
    corpora: dict[str, Path] = field(default_factory=dict)  # index dirs of corpora named in settings (TLM), by field
    extra: dict[str, Any] = field(default_factory=dict)
    sharding: str = "none"  # resources.sharding: "fsdp" shards the model over torchrun's ranks (app.training.sharding)

    def settings_as(self, model: type[S]) -> S:
        """The settings, typed as the strategy's own model (a wrong type is a programming error)."""
        if not isinstance(self.settings, model):
            raise TypeError(f"{self.method} got {type(self.settings).__name__}, expected {model.__name__}")
        return self.settings

    def settings_record(self) -> dict[str, Any]:
        """The settings as given (hyper-parameters apart), for manifests."""
        return self.settings.model_dump(mode="json", exclude_unset=True, exclude={"hyperparameters"})


@dataclass(frozen=True)
class ProducedModel:
    """A base model a job produced (e.g. an adapted encoder): the worker registers `path` (relative to
    the published artifact directory) as the tenant's model `id`, usable in later jobs."""

    id: str
    path: str


@dataclass
class TrainResult:
    status: Literal["succeeded", "cancelled", "paused"]
    steps: int
    trained_tokens: int
    flops: float
    metrics: dict[str, float] = field(default_factory=dict)
    produced_model: ProducedModel | None = None
