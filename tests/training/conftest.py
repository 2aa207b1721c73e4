"""Strategy tests run pure ML code directly: no service, a list as the progress sink."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.training.artifacts import directory_sha256
from app.training.base import BaseModelRef, Hyperparameters, TrainContext
from tests.tiny_models import make_classification_rows, write_jsonl


@dataclass
class ListSink:
    """ProgressSink test double (a true edge: the real one writes to PostgreSQL)."""

    stop_at_step: int | None = None
    stop_reason: str = "cancel"
    events: list[tuple[str, Any]] = field(default_factory=list)
    steps_seen: int = 0

    def message(self, text: str, level: str = "info", data: dict | None = None) -> None:
        self.events.append(("message", text))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.events.append(("metrics", {"step": step, **values}))

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.events.append(("checkpoint", step))

    def should_stop(self):
        if self.stop_at_step is not None and self.steps_seen >= self.stop_at_step:
            return self.stop_reason
        self.steps_seen += 1
        return None

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]


@pytest.fixture(scope="session")
def base_ref(tiny_model_dir) -> BaseModelRef:
    return BaseModelRef(id="tiny-bert", path=tiny_model_dir, sha256=directory_sha256(tiny_model_dir))


@pytest.fixture
def make_ctx(base_ref, tmp_path):
    def make(method: str, settings: dict | None = None, n_train: int = 16, n_valid: int = 6, sink=None,
             resume_from=None, output: str = "out", **hyper) -> TrainContext:
        train = write_jsonl(tmp_path / "train.jsonl", make_classification_rows(n_train, seed=1))
        valid = write_jsonl(tmp_path / "valid.jsonl", make_classification_rows(n_valid, seed=2)) if n_valid else None
        (tmp_path / output).mkdir(exist_ok=True)
        params = {"n_epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 5, "max_length": 16, **hyper}
        return TrainContext(job_id="ftjob-test", method=method, settings=settings or {},
                            hyperparameters=Hyperparameters(**params), base_model=base_ref, train_file=train,
                            validation_file=valid, output_dir=tmp_path / output,
                            checkpoint_dir=tmp_path / f"{output}-ckpt", sink=sink or ListSink(), resume_from=resume_from)
    return make
