"""/v1/storage (the caller's tenant) and /v1/admin/storage (every tenant, operator keys only)."""
from __future__ import annotations

from fastapi import APIRouter

from app.admin.endpoints import AdminDep
from app.api.deps import SessionDep, TenantDep
from app.storage import service

router = APIRouter(prefix="/v1/storage", tags=["storage"])
admin_router = APIRouter(prefix="/v1/admin/storage", tags=["admin"])


@router.get("")
def tenant_storage(session: SessionDep, tenant: TenantDep) -> dict:
    """Bytes in the base models this tenant's jobs share vs in its own artifacts, exports and uploads."""
    return service.tenant_report(session, tenant.id)


@admin_router.get("")
def admin_storage(session: SessionDep, actor: AdminDep) -> dict:
    """Every base model once and every tenant's totals."""
    return service.admin_report(session)
