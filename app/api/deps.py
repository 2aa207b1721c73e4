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


def get_current_tenant(request: Request) -> CurrentTenant:
    """Set by AuthMiddleware; every /v1 route depends on it."""
    return CurrentTenant(request.state.tenant_id, request.state.tenant_name)


SessionDep = Annotated[Session, Depends(get_session)]
TenantDep = Annotated[CurrentTenant, Depends(get_current_tenant)]
