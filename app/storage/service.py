"""Storage report: bytes in base models (one shared copy each) against bytes in each tenant's
per-task artifacts, merged exports and uploads, so "100 jobs = one base + 100 small files" is
something an operator or a tenant can read off, not take on trust."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.exports.service import MERGED
from app.models import Artifact, BaseModel, Corpus, ExportStatus, File, Job, JobExport, Tenant
from app.models.job import JobStatus


def _zero() -> dict[str, dict[str, int]]:
    return {"artifacts": {"bytes": 0, "files": 0, "jobs": 0, "bytes_per_job": 0},
            "merged_exports": {"bytes": 0, "files": 0, "exports": 0},
            "files": {"bytes": 0, "count": 0}, "corpus_indexes": {"bytes": 0, "count": 0},
            "jobs": {"count": 0, "succeeded": 0}}


def usage(session: Session, tenant_id: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """Per tenant (one, or every tenant with anything stored): artifact bytes apart from merged
    exports, merged export bytes, upload bytes, BM25 corpus index bytes and job counts, each from one
    grouped query."""
    def only(query, column):
        return query if tenant_id is None else query.where(column == tenant_id)

    out: dict[str, dict[str, dict[str, int]]] = defaultdict(_zero)
    merged = Artifact.name.startswith(f"{MERGED}/")
    rows = session.execute(only(select(Job.tenant_id, merged, func.sum(Artifact.bytes), func.count(),
                                       func.count(distinct(Artifact.job_id)))
                                .join(Job, Job.id == Artifact.job_id), Job.tenant_id)
                           .group_by(Job.tenant_id, merged))
    for tenant, is_merged, size, files, jobs in rows:
        if is_merged:
            out[tenant]["merged_exports"].update(bytes=int(size), files=files)
        else:
            out[tenant]["artifacts"].update(bytes=int(size), files=files, jobs=jobs, bytes_per_job=int(size) // jobs)
    exports = only(select(JobExport.tenant_id, func.count()).where(JobExport.status == ExportStatus.succeeded),
                   JobExport.tenant_id).group_by(JobExport.tenant_id)
    for tenant, count in session.execute(exports):
        out[tenant]["merged_exports"]["exports"] = count
    for tenant, size, count in session.execute(only(select(File.tenant_id, func.sum(File.bytes), func.count()),
                                                    File.tenant_id).group_by(File.tenant_id)):
        out[tenant]["files"].update(bytes=int(size), count=count)
    indexes = select(Corpus.tenant_id, func.sum(func.coalesce(Corpus.index_bytes, 0)), func.count())
    for tenant, size, count in session.execute(only(indexes, Corpus.tenant_id).group_by(Corpus.tenant_id)):
        out[tenant]["corpus_indexes"].update(bytes=int(size), count=count)
    jobs = select(Job.tenant_id, func.count(), func.count().filter(Job.status == JobStatus.succeeded))
    for tenant, count, succeeded in session.execute(only(jobs, Job.tenant_id).group_by(Job.tenant_id)):
        out[tenant]["jobs"].update(count=count, succeeded=succeeded)
    return out


def base_models(session: Session, tenant_id: str | None = None) -> dict[str, Any]:
    """Base models, each counted once however many jobs use it: for a tenant, those its jobs use and
    its own; for the operator, all. A model whose files are a job's artifact (an adapted encoder)
    is listed but counted under artifacts, where its bytes already are."""
    on = Job.model == BaseModel.id if tenant_id is None else and_(Job.model == BaseModel.id, Job.tenant_id == tenant_id)
    query = select(BaseModel, func.count(Job.id)).outerjoin(Job, on).group_by(BaseModel.id).order_by(BaseModel.id)
    if tenant_id is not None:
        query = query.having(or_(BaseModel.tenant_id == tenant_id, func.count(Job.id) > 0))
    artifacts_dir = get_settings().artifacts_dir.resolve()
    data = [{"id": model.id, "bytes": model.bytes, "shared": model.tenant_id is None, "jobs": jobs,
             "counted_in": "artifacts" if Path(model.path).resolve().is_relative_to(artifacts_dir) else "base_models"}
            for model, jobs in session.execute(query)]
    counted = [m for m in data if m["counted_in"] == "base_models"]
    return {"bytes": sum(m["bytes"] for m in counted), "count": len(counted), "data": data}


def tenant_report(session: Session, tenant_id: str) -> dict[str, Any]:
    return {"object": "storage.report", "tenant_id": tenant_id, "base_models": base_models(session, tenant_id),
            **usage(session, tenant_id).get(tenant_id, _zero())}


def admin_report(session: Session) -> dict[str, Any]:
    """Every base model once, and every tenant's totals (tenants with nothing stored included)."""
    per_tenant = usage(session)
    tenants = [{"tenant_id": t.id, "name": t.name, **per_tenant.get(t.id, _zero())}
               for t in session.scalars(select(Tenant).order_by(Tenant.name))]
    totals = _zero()
    for tenant in tenants:
        for section, values in totals.items():
            for key in values:
                values[key] += tenant[section][key]
    totals["artifacts"]["bytes_per_job"] = totals["artifacts"]["bytes"] // max(totals["artifacts"]["jobs"], 1)
    return {"object": "storage.report", "base_models": base_models(session), **totals, "tenants": tenants}
