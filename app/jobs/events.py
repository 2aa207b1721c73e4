"""A job's history lines. Its own module so that app.jobs.state (which records an event with
every transition) and app.jobs.service can both use it without importing each other."""
from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session

from app.core.ids import new_id
from app.models import JobEvent

# OpenAI's FineTuningJobEvent.level values
Level = Literal["info", "warn", "error"]
_LEGACY = {"warning": "warn"}  # rows written before levels followed OpenAI's names


def wire_level(level: str) -> str:
    """The level as OpenAI's types spell it (older stored rows said "warning")."""
    return _LEGACY.get(level, level)


def record_event(session: Session, job_id: str, message: str, *, type: str = "message",
                 level: Level = "info", data: dict[str, Any] | None = None) -> JobEvent:
    event = JobEvent(id=new_id("ftevent-"), job_id=job_id, message=message, type=type, level=wire_level(level),
                     data=data)
    session.add(event)
    return event
