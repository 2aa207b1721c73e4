"""Strategy tests run pure ML code directly: no service, a list as the progress sink."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.fsio import directory_sha256
from app.training.base import BaseModelRef, TrainContext
from app.training.config import Hyperparameters
from app.training.methods import parse_method, resolve_method
from app.training.registry import list_strategies
from tests.tiny_models import make_classification_rows, write_jsonl


# The strategy matrix: every registered task method trains, pauses/resumes and reloads on the tiny
# model. A method runs with its default settings unless it has a row here (its one test row).
MATRIX_SETTINGS: dict[str, dict] = {"lora": {"r": 4, "lora_dropout": 0.2},
                                   "cloze": {"verbalizer": {"pos": "good", "neg": "bad"}}}


# Task methods the shared matrix leaves out, and why (each has its own tests).
OUTSIDE_MATRIX = {"tlm": "trains a random encoder in two stages (tests/training/test_tlm.py), so the matrix's step, "
                         "checkpoint and base-model assertions do not apply"}


def task_methods() -> list[str]:
    return [spec.name for spec in list_strategies() if spec.trains_task and spec.name not in OUTSIDE_MATRIX]


class WorkerDied(Exception):
    """Raised by ListSink to stand in for a worker process dying mid-step."""


@dataclass
class ListSink:
    """ProgressSink test double (a true edge: the real one writes to PostgreSQL).

    `stop_at_step=k` answers `stop_reason` from the (k+1)-th poll on, i.e. after k optimizer
    steps; `stop_reason="die"` raises WorkerDied there instead, like a killed worker.
    """

    stop_at_step: int | None = None
    stop_reason: str = "cancel"
    events: list[tuple[str, Any]] = field(default_factory=list)
    polls: int = 0

    def message(self, text: str, level: str = "info", data: dict | None = None) -> None:
        self.events.append(("message", text))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.events.append(("metrics", {"step": step, **values}))

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.events.append(("checkpoint", step))

    def should_stop(self):
        if self.stop_at_step is not None and self.polls >= self.stop_at_step:
            if self.stop_reason == "die":
                raise WorkerDied(f"worker died before step {self.polls + 1}")
            return self.stop_reason
        self.polls += 1
        return None

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run ~10x faster on one intra-op thread than on oversubscribed shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def base_ref(tiny_model_dir) -> BaseModelRef:
    return BaseModelRef(id="tiny-bert", path=tiny_model_dir, sha256=directory_sha256(tiny_model_dir))


def context_factory(base: BaseModelRef, root: Path):
    """A function building TrainContexts over fresh toy data under `root`; `output` names the
    output/checkpoint dirs, keyword arguments beyond the named ones are hyperparameters."""

    def make(method: str, settings: dict | None = None, n_train: int = 16, n_valid: int = 6, sink=None,
             resume_from=None, output: str = "out", pair: bool = False, train_rows: list | None = None,
             valid_rows: list | None = None, **hyper) -> TrainContext:
        rows = train_rows if train_rows is not None else make_classification_rows(n_train, seed=1, pair=pair)
        train = write_jsonl(root / f"{output}-train.jsonl", rows)
        if valid_rows is None and n_valid:
            valid_rows = make_classification_rows(n_valid, seed=2, pair=pair)
        valid = write_jsonl(root / f"{output}-valid.jsonl", valid_rows) if valid_rows else None
        (root / output).mkdir(exist_ok=True)
        params = {"n_epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 5, "max_length": 16, **hyper}
        # the job API's path: parsed and resolved (nested methods included) before anything trains
        parsed = resolve_method(parse_method({"type": method, method: settings or {}}), len(rows), params["seed"])
        return TrainContext(job_id="ftjob-test", method=method, settings=parsed.settings,
                            hyperparameters=Hyperparameters(**params), base_model=base, train_file=train,
                            validation_file=valid, output_dir=root / output,
                            checkpoint_dir=root / f"{output}-ckpt", sink=sink or ListSink(), resume_from=resume_from)
    return make


@pytest.fixture
def make_ctx(base_ref, tmp_path):
    return context_factory(base_ref, tmp_path)
