"""Job rules: validate a spec completely before anything is stored, then queue it."""
from __future__ import annotations

import dataclasses
import secrets
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.base_models import service as base_models
from app.core.errors import BadRequest, Conflict, NotFound, shown
from app.core.ids import new_id
from app.files import service as files
from app.idempotency import service as idempotency
from app.jobs.schemas import CreateJobRequest
from app.models import Job, JobCheckpoint, JobEvent
from app.tenants import limits
from app.models.base import utcnow
from app.training.data import DatasetError, DatasetSummary, validate_classification_file, validate_texts
from app.training.registry import UnknownStrategyError, get_strategy

CANCELLABLE = ("validating_files", "queued", "running", "pausing", "paused")


def record_event(session: Session, job_id: str, message: str, *, type: str = "message",
                 level: str = "info", data: dict[str, Any] | None = None) -> JobEvent:
    event = JobEvent(id=new_id("ftevent-"), job_id=job_id, message=message, type=type, level=level, data=data)
    session.add(event)
    return event


def _pydantic_error(exc: ValidationError, prefix: str) -> BadRequest:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    param = ".".join(part for part in (prefix, loc) if part) or None
    extra = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return BadRequest(f"Invalid {param or 'request body'}: {first['msg']}{extra}.", param=param)


def _check_file(session: Session, tenant_id: str, file_id: str, param: str) -> DatasetSummary:
    file = files.get_file(session, tenant_id, file_id, param=param)
    if file.purpose != "fine-tune":
        raise BadRequest(f"{param} {file_id} has purpose {file.purpose!r}; upload it with purpose 'fine-tune'.",
                         param=param)
    try:
        return validate_classification_file(files.verified_path(file))
    except DatasetError as exc:
        raise BadRequest(f"{param} {file_id} is not a valid classification file: {exc}", param=param,
                         code="invalid_training_file" if param == "training_file" else "invalid_validation_file") from exc


def _check_input_files(session: Session, tenant_id: str, method_type: str, settings: Any) -> None:
    """Files a method's settings name (e.g. adaptive's corpus_file): the tenant's, and readable text."""
    for name in settings.file_fields():
        file_id = getattr(settings, name)
        if file_id is None:
            continue
        param = f"method.{method_type}.{name}"
        file = files.get_file(session, tenant_id, file_id, param=param)
        try:
            validate_texts(files.verified_path(file))
        except DatasetError as exc:
            raise BadRequest(f"{param} {file_id} is not a usable text corpus: {exc}", param=param,
                             code="invalid_corpus") from exc


def _method(request: CreateJobRequest) -> tuple[str, Any, Any]:
    method = dict(request.method or {"type": "supervised"})
    method_type = method.pop("type", None)
    if not isinstance(method_type, str) or len(method_type) > 64:
        raise BadRequest("method.type must name a strategy, e.g. 'supervised', 'lora' or 'bitfit'.", param="method.type")
    try:
        spec = get_strategy(method_type)
    except UnknownStrategyError as exc:
        raise BadRequest(str(exc), param="method.type", code="unknown_method") from exc
    unknown = set(method) - {method_type}
    if unknown:
        raise BadRequest(f"Unknown key(s) in method: {sorted(unknown)}; settings go in method.{method_type}.",
                         param="method")
    raw = dict(method.get(method_type) or {})
    if request.hyperparameters:
        inner = dict(raw.get("hyperparameters") or {})
        for key, value in request.hyperparameters.items():
            if key in inner and inner[key] != value:
                raise BadRequest(f"hyperparameters.{key} conflicts with method.{method_type}.hyperparameters.{key}.",
                                 param=f"hyperparameters.{key}")
            inner[key] = value
        raw["hyperparameters"] = inner
    try:
        settings = spec.settings_model.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(exc, f"method.{method_type}") from exc
    return method_type, spec, settings


RETRY_WINDOW = timedelta(minutes=2)


def recent_duplicate(session: Session, tenant_id: str, request_fingerprint: str) -> Job | None:
    """A job created from the identical body moments ago: a client retry, not a new request."""
    idempotency.lock(session, tenant_id, request_fingerprint)
    return session.scalar(select(Job).where(
        Job.tenant_id == tenant_id, Job.request_fingerprint == request_fingerprint,
        Job.created_at > utcnow() - RETRY_WINDOW).order_by(Job.seq.desc()).limit(1))


def create_job(session: Session, tenant_id: str, body: dict[str, Any], request_fingerprint: str | None = None) -> Job:
    """Validate everything (spec, model, files) first; only then insert the job as queued."""
    try:
        request = CreateJobRequest.model_validate(body)
    except ValidationError as exc:
        raise _pydantic_error(exc, "") from exc
    limits.check_queued(session, tenant_id)
    method_type, spec, settings = _method(request)
    base_models.get_visible(session, tenant_id, request.model)
    train = _check_file(session, tenant_id, request.training_file, "training_file")
    if request.validation_file:
        valid = _check_file(session, tenant_id, request.validation_file, "validation_file")
        unseen = set(valid.labels) - set(train.labels)
        if unseen:
            raise BadRequest(f"validation_file has labels the training file lacks: {sorted(map(str, unseen))[:10]}.",
                             param="validation_file")
    _check_input_files(session, tenant_id, method_type, settings)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    try:
        resolved = settings.hyperparameters.resolve(train.n_examples, spec.default_learning_rate, seed)
    except ValueError as exc:
        raise BadRequest(f"Invalid hyperparameters: {exc}", param=f"method.{method_type}.hyperparameters") from exc
    hyper = dataclasses.asdict(resolved)
    hyper["learning_rate_multiplier"] = resolved.learning_rate / spec.default_learning_rate
    settings_dump = settings.model_dump(mode="json")
    settings_dump["hyperparameters"] = {
        k: hyper[k] for k in ("n_epochs", "batch_size", "learning_rate", "learning_rate_multiplier")
    }
    job = Job(
        id=new_id("ftjob-"), tenant_id=tenant_id, model=request.model, status="validating_files",
        training_file=request.training_file, validation_file=request.validation_file,
        method={"type": method_type, method_type: settings_dump}, hyperparameters=hyper, seed=seed,
        suffix=request.suffix, metadata_=request.metadata, attempt=0, request_fingerprint=request_fingerprint,
    )
    session.add(job)
    session.flush()
    record_event(session, job.id, f"Validating training file: {request.training_file}")
    labels = ", ".join(map(str, train.labels[:20]))
    record_event(session, job.id, f"Files validated: {train.n_examples} examples, {len(train.labels)} labels ({labels})",
                 data={"n_examples": train.n_examples, "labels": train.labels})
    job.status = "queued"
    record_event(session, job.id, "Job queued")
    session.flush()
    return job


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"No such fine-tuning job: {shown(job_id)}.", param="fine_tuning_job_id")
    return job


def list_jobs(tenant_id: str, metadata: dict[str, str] | None = None):
    query = select(Job).where(Job.tenant_id == tenant_id)
    for key, value in (metadata or {}).items():
        query = query.where(Job.metadata_[key].astext == value)
    return query


def cancel_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Cancelled at once in the database; a running worker sees it within a step and stops."""
    job = get_job(session, tenant_id, job_id)
    result = session.execute(
        update(Job).where(Job.id == job.id, Job.status.in_(CANCELLABLE))
        .values(status="cancelled", finished_at=utcnow()).returning(Job.id)
    ).first()
    if result is None:
        raise Conflict(f"Job {job.id} is already {job.status}; only unfinished jobs can be cancelled.",
                       param="fine_tuning_job_id")
    record_event(session, job.id, "Job cancelled by user")
    session.flush()
    session.refresh(job)
    return job


def pause_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """A running job checkpoints and frees its worker (`pausing` → `paused`); a waiting one just stops."""
    job = get_job(session, tenant_id, job_id)
    target = {"running": "pausing", "queued": "paused", "validating_files": "paused"}.get(job.status)
    if target is None:
        raise Conflict(f"Job {job.id} is {job.status}; only queued or running jobs can be paused.",
                       param="fine_tuning_job_id")
    _transition(session, job, job.status, target)
    record_event(session, job.id, "Pause requested; the job will checkpoint and stop" if target == "pausing"
                 else "Job paused before it started")
    return job


def resume_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Queue a paused job again; the worker continues from its last complete checkpoint."""
    job = get_job(session, tenant_id, job_id)
    if job.status != "paused":
        hint = " It is still saving its checkpoint; try again in a few seconds." if job.status == "pausing" else ""
        raise Conflict(f"Job {job.id} is {job.status}; only paused jobs can be resumed.{hint}",
                       param="fine_tuning_job_id")
    _transition(session, job, "paused", "queued", enqueued_at=None, worker_id=None)
    record_event(session, job.id, "Job resumed; queued to continue from its last checkpoint")
    return job


def _transition(session: Session, job: Job, source: str, target: str, **values: Any) -> None:
    """Compare-and-set on status, so a concurrent worker update is never overwritten."""
    done = session.execute(update(Job).where(Job.id == job.id, Job.status == source)
                           .values(status=target, **values).returning(Job.id)).first()
    if done is None:
        raise Conflict(f"Job {job.id} changed state concurrently; retrieve it and try again.",
                       param="fine_tuning_job_id")
    session.flush()
    session.refresh(job)


def events_query(job: Job):
    return select(JobEvent).where(JobEvent.job_id == job.id)


def checkpoints_query(job: Job):
    return select(JobCheckpoint).where(JobCheckpoint.job_id == job.id)
