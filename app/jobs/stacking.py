"""Submission checks of an adapter stack (MAD-X, Pfeiffer et al. 2020, "MAD-X: An Adapter-Based
Framework for Multi-Task Cross-Lingual Transfer"): each stacked job is the tenant's own, succeeded,
left a bottleneck adapter, and that adapter was trained on this job's base model.

The method's settings check the list itself (empty, duplicates); these checks need the database and
the artifact store, so they live in the job domain. Another tenant's job reads exactly like a job
that does not exist.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.artifacts.service import job_artifact_dir
from app.core.errors import BadRequest, shown
from app.base_models.service import get_visible
from app.models import Artifact, Job
from app.models.job import JobStatus
from app.training.methods import Method

ADAPTER_CONFIG = "bottleneck/adapter_config.json"  # app/training/strategies/adapter/apply.py's CONFIG
HOW = ("a language adapter (method adaptive with \"adapter\": {...}) or an adapter job, trained on the same "
       "base model")


def check_stack(session: Session, tenant_id: str, method: Method, model_id: str) -> None:
    """Refuse (400, naming `method.<type>.stack`) a stack the worker could not load under this job."""
    stack = getattr(method.settings, "stack", None) or []
    if not stack:
        return
    param, base = f"method.{method.type}.stack", get_visible(session, tenant_id, model_id)
    jobs = {job.id: job for job in session.scalars(select(Job).where(Job.tenant_id == tenant_id,
                                                                      Job.id.in_(stack)))}
    for i, job_id in enumerate(stack):
        where, job = f"{param}[{i}]", jobs.get(job_id)
        if job is None:
            raise BadRequest(f"{where}: no fine-tuning job {shown(job_id)}; stack the id of one of your own "
                             f"succeeded jobs whose artifact is {HOW}.", param=param, code="stack_job_not_found")
        if job.status != JobStatus.succeeded:
            raise BadRequest(f"{where}: job {job_id} is {job.status}; only a succeeded job's adapter can be "
                             "stacked. Wait until it succeeds, or stack another job.", param=param)
        config = _adapter_config(session, job)
        if config is None:
            raise BadRequest(f"{where}: job {job_id} ({job.method.get('type')}) left no bottleneck adapter; "
                             f"stack {HOW}.", param=param, code="not_an_adapter")
        trained_on = config["base_model"]
        if trained_on["sha256"] != base.sha256:
            raise BadRequest(f"{where}: job {job_id}'s adapter was trained on base model {trained_on['id']!r}, "
                             f"but this job's model is {base.id!r}; stack adapters trained on {base.id!r}, or set "
                             f"model to {trained_on['id']!r}.", param=param, code="base_model_mismatch")
        if config.get("stack"):
            raise BadRequest(f"{where}: job {job_id}'s adapter is itself stacked over "
                             f"{[e['job_id'] for e in config['stack']]}; stack those jobs instead.", param=param)
        if config.get("train_layer_norm"):
            raise BadRequest(f"{where}: job {job_id} also trained the base's LayerNorms (train_layer_norm), which "
                             "a stack cannot carry; stack an adapter trained without them.", param=param)


def _adapter_config(session: Session, job: Job) -> dict[str, Any] | None:
    """The job's published adapter_config.json, or None when its artifact holds none."""
    listed = session.scalar(select(Artifact.name).where(Artifact.job_id == job.id, Artifact.name == ADAPTER_CONFIG))
    path = job_artifact_dir(job) / ADAPTER_CONFIG
    if listed is None or not path.is_file():
        return None
    return json.loads(path.read_text())
