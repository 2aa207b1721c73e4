"""Prediction rules: which of the tenant's jobs a request names, whether it can be served, the answer.

The lookup is the tenant's own (another tenant's model is a 404 like a missing one); the forward
passes run on the process's inference thread (app/predictions/registry.py), awaited, never blocking
the event loop.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.artifacts.service import job_artifact_dir
from app.base_models.service import local_model_dir, visible
from app.core.config import get_settings
from app.core.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, shown
from app.core.text import storable
from app.models import BaseModel, Job
from app.models.job import FINAL_STATUSES, JobStatus
from app.predictions.registry import get_runtime
from app.predictions.schemas import PredictionInput
from app.predictions.served import NotServable, ServedModel, describe
from app.training.artifacts import read_manifest
from app.training.base import BaseModelRef, TrainingError
from app.training.data import CHAT


class PredictionsBusy(ServiceUnavailable):
    code = "predictions_busy"


def find_job(session: Session, tenant_id: str, model: str) -> Job:
    """The tenant's job named by its fine_tuned_model or its id; a base model's name says what to do instead."""
    job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, or_(Job.id == model, Job.fine_tuned_model == model))
                         .order_by(Job.seq.desc()).limit(1)) if storable(model) else None
    if job is not None:
        return job
    if storable(model) and session.scalar(visible(tenant_id).where(BaseModel.id == model)) is not None:
        raise BadRequest(f"{shown(model)} is a base model: it has no classifier trained for your labels. Fine-tune "
                         "it (POST /v1/fine_tuning/jobs) and predict with the job's fine_tuned_model.",
                         param="model", code="model_not_servable")
    raise NotFound(f"No such model: {shown(model)}. Name a succeeded fine-tuning job's fine_tuned_model or its id "
                   "(GET /v1/models lists them).", param="model", code="model_not_found")


def resolve(session: Session, tenant_id: str, model: str) -> ServedModel:
    """What serves `model`, decided from the database and the artifact's manifest (no torch)."""
    job = find_job(session, tenant_id, model)
    if job.status != JobStatus.succeeded:
        then = ("train it again" if job.status in FINAL_STATUSES else
                f"wait until it succeeds (GET /v1/fine_tuning/jobs/{job.id})")
        raise Conflict(f"Job {job.id} is {job.status}; only a succeeded job predicts: {then}, or predict with "
                       "another job.", param="model", code="model_not_ready")
    artifact_dir = job_artifact_dir(job)
    try:
        manifest = read_manifest(artifact_dir)
        row = session.get(BaseModel, manifest["base_model"]["id"])
        base = BaseModelRef(id=row.id, path=local_model_dir(row), sha256=row.sha256) if row is not None else None
        return describe(job.fine_tuned_model or job.id, artifact_dir, base, manifest)
    except NotServable as exc:
        raise BadRequest(str(exc), param="model", code="model_not_servable") from exc
    except TrainingError as exc:
        raise Conflict(exc.message, param="model", code=exc.code) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Conflict(f"Job {job.id}'s artifact is missing or unreadable ({type(exc).__name__}), so it cannot "
                       "predict; train the job again.", param="model", code="artifact_missing") from exc


def check_conversations(served: ServedModel, inputs: list[PredictionInput]) -> None:
    """Conversations are for decoders trained on chat rows only: a 400 naming the first other use."""
    index = next((i for i, item in enumerate(inputs) if item.messages is not None), None)
    if index is None or served.task == CHAT:
        return
    why = ("is a classifier" if served.kind != "text" else
           f"is a {served.model_kind} model trained on text-to-text rows" if served.model_kind != "decoder" else
           "was trained on text-to-text rows, not chat rows")
    raise BadRequest(f"input.{index} is a conversation, but {served.name} {why}; only a decoder fine-tuned on chat "
                     "rows ({\"messages\": [...]}) answers messages. Send plain texts instead.",
                     param=f"input.{index}.messages")


async def predict(served: ServedModel, inputs: list[PredictionInput]) -> list[Any]:
    """Logits per input (single-label), or the task's answer per input (other task types: see
    app.training.tasks.predict), from the inference thread; a 503 when it cannot answer within
    predictions_timeout."""
    future = get_runtime().submit(served, [(item.conversation or item.text, item.text_pair) for item in inputs])
    timeout = get_settings().predictions_timeout
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except TimeoutError as exc:
        raise PredictionsBusy(f"Predictions did not finish within {timeout:g} s (this process is busy); retry, or "
                              "send fewer inputs.", retry_after=5) from exc
    except TrainingError as exc:  # the artifact or its base changed on disk since the job succeeded
        raise Conflict(exc.message, param="model", code=exc.code) from exc


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _answer(served: ServedModel, row: Any) -> dict[str, Any]:
    """One input's fields of the Prediction shape, for the served model's task type."""
    if served.task == "sequence_classification":
        best = max(range(len(row)), key=row.__getitem__)
        return {"label": served.labels[best], "probabilities": dict(zip(served.labels, softmax(row), strict=True))}
    if served.kind == "text":
        return row  # {"text"} (+ "label", "matched": classification rows generated as label names)
    if served.task == "regression":
        return {"value": row["predicted"]}
    if served.task == "multi_label_classification":
        return {"labels": [str(label) for label in row["predicted"]], "probabilities": row["probabilities"]}
    return {"tags": row["predicted"], "entities": row["entities"]}


def prediction_list(served: ServedModel, rows: list[Any]) -> dict[str, Any]:
    """OpenAI-style list: per input the task type's answer (single-label: the most probable label and
    every label's probability)."""
    data = [{"object": "prediction", "index": index, **_answer(served, row)} for index, row in enumerate(rows)]
    return {"object": "list", "model": served.name, "data": data}
