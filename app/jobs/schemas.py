"""Request body and wire objects of /v1/fine_tuning/jobs (OpenAI's shapes plus `method.<type>`)."""
from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Row
from starlette.datastructures import QueryParams

from app.core.errors import BadRequest
from app.jobs.events import wire_level
from app.jobs.resources import Resources
from app.jobs.results import result_files
from app.models import Job, JobCheckpoint, JobEvent

MetadataKey = Annotated[str, Field(max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]


class CreateJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128, description="Base model id, e.g. minilm-l6.")
    training_file: str = Field(min_length=1, max_length=64, description="id of a purpose=fine-tune file.")
    validation_file: str | None = Field(None, max_length=64, description="Optional held-out file.")
    hyperparameters: dict[str, Any] | None = Field(
        None, description="OpenAI's legacy top-level hyper-parameters; merged into the method's."
    )
    method: dict[str, Any] | None = Field(None, description='{"type": "lora", "lora": {...}}; default supervised.')
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed for data order, init and masking.")
    resources: Resources | None = Field(None, description=(
        'What the job trains on, e.g. {"gpus": 2, "gpu_type": "h100"} or {"processes": 2} on CPU; default: '
        "estimated from the model size, method and batch (app/jobs/resources.py)."))
    suffix: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$",
                               description="Up to 64 characters added to the fine-tuned model name.")
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None, max_length=16, description="Up to 16 string pairs kept with the job (keys ≤ 64, values ≤ 512 characters).")
    integrations: list[Any] | None = Field(None, description="Not supported; must be empty.",
                                           json_schema_extra={"maxItems": 0})

    @field_validator("integrations")
    @classmethod
    def _no_integrations(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("integrations are not supported")
        return value


METADATA_FILTER: dict[str, Any] = {  # GET /v1/fine_tuning/jobs, as the official client sends it
    "name": "metadata", "in": "query", "style": "deepObject", "explode": True, "required": False,
    "description": "Only jobs whose metadata has these pairs: metadata[team]=nlp (the official client's form; "
                   '`metadata={"team": "nlp"}`, JSON, is accepted too).',
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
}


def metadata_filter(params: QueryParams) -> dict[str, str] | None:
    """The jobs list's metadata filter from `metadata[k]=v` pairs and/or a JSON `metadata={...}`."""
    filters: dict[str, str] = {}
    for name, value in params.multi_items():
        if name == "metadata":
            try:
                given = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                given = None
            if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
                raise BadRequest("metadata filter must be metadata[key]=value pairs or a JSON object of strings, "
                                 'e.g. metadata[team]=nlp or metadata={"team": "nlp"}.', param="metadata")
            filters.update(given)
        elif name.startswith("metadata[") and name.endswith("]"):
            filters[name[len("metadata["):-1]] = value
    return filters or None


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def job_object(job: Job | Row, estimated_finish: int | None = None) -> dict[str, Any]:
    """OpenAI's FineTuningJob; `status` adds `pausing`/`paused`, and `attempt`, `training_flops` and
    `metrics` are our extensions (see README "OpenAI compatibility"). `job` may be a row of
    app.jobs.service.VIEW_COLUMNS (GET job)."""
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": _ts(job.created_at),
        "finished_at": _ts(job.finished_at),
        "model": job.model,
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": job.tenant_id,
        "status": job.status,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "hyperparameters": {k: job.method[job.method["type"]]["hyperparameters"][k]
                            for k in ("n_epochs", "batch_size", "learning_rate_multiplier")},
        "method": {key: value for key, value in job.method.items() if key != "resources"},  # own field below
        "result_files": result_files(job),
        "trained_tokens": job.trained_tokens,
        "error": job.error,
        "seed": job.seed,
        "suffix": job.suffix,
        "metadata": job.metadata_,
        "integrations": [],
        "estimated_finish": estimated_finish,
        "attempt": job.attempt,
        "training_flops": job.flops,
        "metrics": job.result_metrics,
        "resources": (job.method or {}).get("resources"),
    }


def event_object(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "fine_tuning.job.event",
        "created_at": _ts(event.created_at),
        "level": wire_level(event.level),
        "message": event.message,
        "type": event.type,
        "data": event.data,
    }


def checkpoint_object(ckpt: JobCheckpoint, job: Job) -> dict[str, Any]:
    return {
        "id": ckpt.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": _ts(ckpt.created_at),
        "fine_tuning_job_id": job.id,
        "fine_tuned_model_checkpoint": f"{job.id}:ckpt-step-{ckpt.step_number}",
        "step_number": ckpt.step_number,
        "metrics": checkpoint_metrics(ckpt),
    }


def checkpoint_metrics(ckpt: JobCheckpoint) -> dict[str, Any]:
    """OpenAI's names where we measure the same thing (`valid_loss`, `full_valid_loss`: the whole validation
    file is evaluated), then ours (`train_loss`, `eval_*`)."""
    metrics: dict[str, Any] = {"step": ckpt.step_number, **ckpt.metrics}
    if "eval_loss" in metrics:
        metrics["valid_loss"] = metrics["full_valid_loss"] = metrics["eval_loss"]
    return metrics
