"""Real artifacts of the tiny random BERT, trained once for the predictions tests, and the reference
each prediction must equal: the artifact loaded alone (`load_classifier` + `predict`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.models import Job
from app.predictions.served import ServedModel, describe
from app.training.base import BaseModelRef
from tests.api.conftest import live_url  # noqa: F401 - fixture
from tests.exports.helpers import finished_job
from tests.tiny_models import make_classification_rows
from tests.training.conftest import base_ref, context_factory, one_torch_thread  # noqa: F401 - fixtures

TEXTS = ["good great happy", "bad awful sad night", "table chair the movie", "excellent lovely superb day", ""]
# name: (method, settings, number of labels); each LoRA row with other modules_to_save, labels or layers
# forms another pool over the one shared base
ARTIFACTS: dict[str, tuple[str, dict, int]] = {
    "lora": ("lora", {"r": 4}, 2),
    "lora_other": ("lora", {"r": 8, "target_modules": ["query", "key", "value"]}, 2),
    "lora_pooler": ("lora", {"r": 4, "train_pooler": True}, 2),
    "lora_three": ("lora", {"r": 4}, 3),
    "lora_dropped": ("lora", {"r": 4, "drop_top_layers": 1}, 2),
    "lora_reinit": ("lora", {"r": 4, "reinit_top_layers": 1}, 2),
    "lora_reinit_other": ("lora", {"r": 2, "reinit_top_layers": 1}, 2),
    "lora_mean": ("lora", {"r": 4, "pooling": "mean"}, 2),
    "bitfit": ("bitfit", {}, 2),
    "bitfit_mean": ("bitfit", {"pooling": "mean"}, 2),
    "partial": ("partial", {"top_layers": 1}, 2),
    "ia3": ("ia3", {}, 2),
    "supervised": ("supervised", {}, 2),
}
KINDS = {"bitfit": "delta", "bitfit_mean": "delta", "partial": "delta", "ia3": "whole", "supervised": "whole"}  # the others: "lora"


@pytest.fixture(scope="session")
def artifacts(base_ref, tmp_path_factory) -> dict[str, Path]:  # noqa: F811 - the imported fixture
    """Each of ARTIFACTS trained on its own seeded toy data (a few steps at a high learning rate)."""
    from app.training.registry import run_strategy

    make = context_factory(base_ref, tmp_path_factory.mktemp("served"))
    trained = {}
    for seed, (name, (method, settings, labels)) in enumerate(ARTIFACTS.items()):
        rows = make_classification_rows(16, n_labels=labels, seed=seed)
        ctx = make(method, settings, output=name, train_rows=rows, valid_rows=rows[:4], learning_rate=3e-2,
                   seed=seed)
        assert run_strategy(ctx).status == "succeeded", name
        trained[name] = ctx.output_dir
    return trained


@pytest.fixture(scope="session")
def served(artifacts, base_ref) -> dict[str, ServedModel]:  # noqa: F811
    return {name: describe(name, path, base_ref) for name, path in artifacts.items()}


def reference(artifact: Path, base: BaseModelRef, inputs: list) -> list[list[float]]:
    """Logits of the artifact loaded alone, as a user loads a download."""
    from app.training.artifacts import load_classifier, predict

    model, tokenizer, labels = load_classifier(artifact, base.path)
    return [row["logits"] for row in predict(model, tokenizer, inputs, labels)]


@pytest.fixture(scope="session")
def references(artifacts, base_ref) -> dict[str, list[list[float]]]:  # noqa: F811
    return {name: reference(path, base_ref, TEXTS) for name, path in artifacts.items()}


def close(got: list[list[float]], want: list[list[float]], tolerance: float = 1e-5) -> bool:
    return len(got) == len(want) and all(
        len(g) == len(w) and max(abs(a - b) for a, b in zip(g, w)) < tolerance for g, w in zip(got, want))


@dataclass(frozen=True)
class NamedJob:
    job_id: str
    fine_tuned_model: str


def named_job(tenant_id: str, artifact: Path | dict | None, status: str = "succeeded") -> NamedJob:
    """A committed job of the tenant with `artifact` as its artifact dir and a fine_tuned_model, as the worker
    publishes one (tests/exports/helpers.finished_job, plus the name)."""
    job_id = finished_job(tenant_id, artifact, status=status)
    name = f"ft:tiny-bert:{tenant_id}::{job_id}"
    with session_scope() as db:
        db.execute(update(Job).where(Job.id == job_id).values(fine_tuned_model=name))
    return NamedJob(job_id, name)
