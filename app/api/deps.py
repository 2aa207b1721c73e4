"""Annotated dependency aliases shared by every endpoint."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@dataclass(frozen=True)
class CurrentTenant:
    id: str
    name: str


async def get_current_tenant(request: Request) -> CurrentTenant:
    """Set by AuthMiddleware; every /v1 route depends on it. Async because it does no I/O: FastAPI runs a
    plain `def` dependency in the thread pool, a hop that costs more CPU than the function."""
    return CurrentTenant(request.state.tenant_id, request.state.tenant_name)


SessionDep = Annotated[Session, Depends(get_session)]
TenantDep = Annotated[CurrentTenant, Depends(get_current_tenant)]
