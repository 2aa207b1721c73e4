"""/v1/models: the base models a tenant may use (with their kind: encoder, seq2seq or decoder) and its own
fine-tuned models (with their base's kind; null for a chain from an earlier job)."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.api.deps import SessionDep, TenantDep
from app.base_models.service import visible
from app.core.errors import NotFound, shown
from app.models import Job
from app.models.job import JobStatus

router = APIRouter(prefix="/v1/models", tags=["models"])


def _models(session, tenant_id: str) -> list[dict]:
    bases = list(session.scalars(visible(tenant_id).order_by("created_at")))
    kinds = {m.id: m.kind for m in bases}
    data = [{"id": m.id, "object": "model", "created": int(m.created_at.timestamp()), "owned_by": m.owned_by,
             "shutdown_date": None, "kind": m.kind, "architecture": m.architecture} for m in bases]
    jobs = session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.status == JobStatus.succeeded,
                                             Job.fine_tuned_model.is_not(None)).order_by(Job.seq))
    data += [{"id": j.fine_tuned_model, "object": "model", "created": int(j.finished_at.timestamp()),
              "owned_by": j.tenant_id, "shutdown_date": None, "kind": kinds.get(j.model)} for j in jobs]
    return data


@router.get("")
def list_models(session: SessionDep, tenant: TenantDep) -> dict:
    return {"object": "list", "data": _models(session, tenant.id)}


@router.get("/{model_id:path}")
def retrieve_model(model_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    for model in _models(session, tenant.id):
        if model["id"] == model_id:
            return model
    raise NotFound(f"No such model: {shown(model_id)}.", param="model")
