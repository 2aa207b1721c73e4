"""Request body and wire objects of /v1/fine_tuning/jobs (OpenAI's shapes plus `method.<type>`)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models import Job, JobCheckpoint, JobEvent


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
    suffix: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$",
                               description="Up to 64 characters added to the fine-tuned model name.")
    metadata: dict[str, str] | None = Field(None, description="Up to 16 string pairs kept with the job.")
    integrations: list[Any] | None = Field(None, description="Not supported; must be empty.")

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > 16:
            raise ValueError("metadata holds at most 16 pairs")
        for key, item in value.items():
            if len(key) > 64 or len(item) > 512:
                raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return value

    @field_validator("integrations")
    @classmethod
    def _no_integrations(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("integrations are not supported")
        return value


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def job_object(job: Job) -> dict[str, Any]:
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
        "method": job.method,
        "result_files": [],
        "trained_tokens": job.trained_tokens,
        "error": job.error,
        "seed": job.seed,
        "suffix": job.suffix,
        "metadata": job.metadata_,
        "integrations": [],
        "estimated_finish": None,
        "attempt": job.attempt,
        "training_flops": job.flops,
        "metrics": job.result_metrics,
    }


def event_object(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "fine_tuning.job.event",
        "created_at": _ts(event.created_at),
        "level": event.level,
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
        "metrics": {"step": ckpt.step_number, **ckpt.metrics},
    }
