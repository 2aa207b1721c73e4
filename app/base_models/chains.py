"""Chains of jobs (STILTs, Phang et al. 2018): a job's `model` may name an earlier succeeded job of the tenant.

At submission (no torch) the name resolves to the source job and is checked: the tenant's (another
tenant's is a 404 like any unknown model), succeeded (otherwise a 400 saying why and what to do), and
with an encoder that can be merged (app.training.lineage.merge_problem). The job stores the source's
job id as its `model`. A source that only produced an encoder (adaptive or multitask without `then`)
resolves to that registered model instead.

In the worker the source's encoder is materialized once into the base-models directory and registered
as the tenant's private base model `encoder:<source job>` with `register` (the mechanism `adapted:<job>`
uses): later jobs from the same source reuse it, predictions find it through the manifest, and the
manifest records the lineage. See app.training.lineage for how and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.artifacts.service import job_artifact_dir
from app.base_models.service import get_visible, local_model_dir, register
from app.core.config import get_settings
from app.core.errors import BadRequest, NotFound, shown
from app.core.retry import with_db
from app.core.text import storable
from app.models import BaseModel, Job
from app.models.job import JobStatus
from app.training.artifacts import read_manifest
from app.training.adapted_base import check_loadable
from app.training.base import BaseModelRef, ProgressSink, TrainingError
from app.training.lineage import (ENCODER_PREFIX, chained_model_id, describe_lineage, is_classifier, lineage_step,
                                  materialize_encoder, merge_problem, source_method)


def find_source(session: Session, tenant_id: str, name: str) -> Job | None:
    """The tenant's job `name` names: its id, its fine_tuned_model, or `encoder:<its id>`."""
    if not storable(name):
        return None
    job_id = name.removeprefix(ENCODER_PREFIX)
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, or_(Job.id == job_id,
                                                                              Job.fine_tuned_model == name))
                          .order_by(Job.seq.desc()).limit(1))


def _not_succeeded(job: Job) -> BadRequest:
    if job.status == JobStatus.failed:
        why = (job.error or {}).get("message") or "no reason recorded"
        then = f"it failed ({why[:300]}); fix what it says and train it again, then name the new job"
    elif job.status == JobStatus.cancelled:
        then = "it was cancelled before it finished; train it again, then name the new job"
    else:
        then = f"it is {job.status}; wait until it succeeds (GET /v1/fine_tuning/jobs/{job.id}), then submit this job"
    return BadRequest(f"model {job.id} names a job that did not succeed, so it has no trained encoder to start from: "
                      f"{then}.", param="model", code="model_not_ready")


def _produced_model(session: Session, job: Job) -> BaseModel | None:
    """The model an encoder-only job (adaptive/multitask without then) registered from its artifact: by the
    `<kind>:<job id>` convention of ProducedModel ids (adapted:, multitask:), never a chain's encoder:."""
    return session.scalar(select(BaseModel).where(
        BaseModel.tenant_id == job.tenant_id, BaseModel.id.endswith(f":{job.id}"),
        BaseModel.id != chained_model_id(job.id)).limit(1))


def _manifest(job: Job) -> dict[str, Any]:
    try:
        return read_manifest(job_artifact_dir(job))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"model {job.id}: the job's artifact is missing or unreadable ({type(exc).__name__}), so no "
                         "job can start from it; train it again.", param="model", code="artifact_missing") from exc


def resolve_model(session: Session, tenant_id: str, name: str) -> tuple[BaseModel, str]:
    """(the base model the job's settings are checked against, the `model` the job stores) for `name`:
    a base model the tenant may use, or an earlier job of the tenant (a chain)."""
    try:
        return get_visible(session, tenant_id, name), name
    except NotFound as missing:
        source = find_source(session, tenant_id, name)
        if source is None:
            raise missing from None
    if source.status != JobStatus.succeeded:
        raise _not_succeeded(source)
    manifest = _manifest(source)
    if not is_classifier(manifest):
        if (produced := _produced_model(session, source)) is not None:
            return produced, produced.id
        raise BadRequest(f"model {source.id} produced no encoder to start from (method {manifest.get('method')!r}); "
                         "name a job that trained a classifier or an encoder.", param="model", code="invalid_chain")
    if problem := merge_problem(job_artifact_dir(source)):
        raise BadRequest(f"model {source.id} cannot start a chain: {problem}.", param="model", code="invalid_chain")
    root = session.get(BaseModel, manifest["base_model"]["id"])
    if root is None:
        raise BadRequest(f"model {source.id} was trained on base model {shown(manifest['base_model']['id'])}, which is "
                         "no longer registered, so its encoder cannot be rebuilt.", param="model",
                         code="model_not_found")
    return root, source.id


@dataclass(frozen=True)
class _Source:
    job_id: str
    fine_tuned_model: str | None
    manifest: dict[str, Any]
    artifact_dir: Path
    base_path: Path | None  # this host's copy of the base the source trained on (None: unregistered since)
    encoder: BaseModelRef | None  # materialized by an earlier chain


def _source(job: Job) -> _Source | None:
    """What the worker needs of the job `job.model` names (None: a plain base model); the artifact and the
    models come to this host from a remote store outside any transaction (local_model_dir)."""
    def find(session: Session) -> Job | None:
        source = find_source(session, job.tenant_id, job.model)
        if source is None or (not job.model.startswith(ENCODER_PREFIX) and session.get(BaseModel, job.model)):
            return None
        if source.status != JobStatus.succeeded:
            raise TrainingError(_not_succeeded(source).message, code="model_not_ready", param="model")
        return source
    if (source := with_db(find)) is None:
        return None
    try:
        artifact_dir = job_artifact_dir(source)
        manifest = read_manifest(artifact_dir)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"The artifact of job {source.id}, which this job starts from, is missing or unreadable "
                            f"({type(exc).__name__}); train that job again.", code="artifact_missing",
                            param="model") from exc
    base, done = with_db(lambda session: (session.get(BaseModel, manifest["base_model"]["id"]),
                                          session.get(BaseModel, chained_model_id(source.id))))
    done_dir = local_model_dir(done) if done is not None else None
    encoder = BaseModelRef(done.id, done_dir, done.sha256) if done_dir is not None and done_dir.is_dir() else None
    return _Source(source.id, source.fine_tuned_model, manifest, artifact_dir,
                   local_model_dir(base) if base is not None else None, encoder)


def chained_base(job: Job, sink: ProgressSink) -> tuple[BaseModelRef, list[dict[str, Any]]] | None:
    """The encoder a chained job starts from, materialized and registered on first use, and its lineage;
    None when `job.model` names no job of its tenant (a plain base model)."""
    if (source := _source(job)) is None:
        return None
    encoder = source.encoder or _materialize(job, source)
    lineage = lineage_step(source.manifest, source.job_id, source.fine_tuned_model, encoder.id, encoder.sha256)
    sink.message(f"Starting from job {source.job_id}'s encoder ({source_method(source.manifest)}; its head dropped, a "
                 f"new one trains): {describe_lineage(lineage)}", data={"model": encoder.id, "lineage": lineage})
    return encoder, lineage


def _materialize(job: Job, source: _Source) -> BaseModelRef:
    if source.base_path is None:
        raise TrainingError(f"Job {source.job_id} was trained on base model {source.manifest['base_model']['id']!r}, "
                            "which is no longer registered, so its encoder cannot be rebuilt.", code="model_not_found",
                            param="model")
    check_loadable(source.manifest["base_model"]["id"], source.base_path)
    out = get_settings().base_models_dir / job.tenant_id / f"encoder-{source.job_id}"
    out.parent.mkdir(parents=True, exist_ok=True)
    materialize_encoder(source.artifact_dir, source.base_path, out)
    row = with_db(lambda session: register(session, chained_model_id(source.job_id), out, tenant_id=job.tenant_id,
                                           owned_by=job.tenant_id))
    return BaseModelRef(row.id, Path(row.path), row.sha256)
