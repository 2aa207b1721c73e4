"""Every line a Celery task logs names its job and tenant (app/observability/context.py), and with
`TUNEFORGE_LOG_FORMAT=json` the worker logs JSON instead of Celery's own format."""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun
from sqlalchemy import select

from app.core.config import get_settings
from app.core.queue import EXPORT_TASK, RUN_JOB_TASK, WEBHOOK_TASK
from app.core.retry import with_db
from app.models import Job, JobExport, WebhookDelivery
from app.observability.context import bound
from app.observability.logging import configure_logging

# each task's one argument is the id of a row that names its job and tenant
_ROWS = {RUN_JOB_TASK: (Job, Job.id), EXPORT_TASK: (JobExport, JobExport.job_id),
         WEBHOOK_TASK: (WebhookDelivery, WebhookDelivery.job_id)}
_open: dict[str, ExitStack] = {}


def ids_for(task_name: str, row_id: str) -> tuple[str | None, str | None]:
    """(job id, tenant id) of a task's row; (None, None) for an unknown task or a row that is gone."""
    if task_name not in _ROWS:
        return None, None
    model, job_column = _ROWS[task_name]
    found = with_db(lambda s: s.execute(select(job_column, model.tenant_id).where(model.id == row_id)).first(),
                    attempts=2)
    return (found[0], found[1]) if found else (None, None)


@task_prerun.connect
def _bind(task_id: str, task: Any, args: tuple = (), **_: Any) -> None:
    try:
        job_id, tenant_id = ids_for(task.name, args[0]) if args else (None, None)
    except Exception:  # the log context is a convenience: the task itself reports a database problem
        job_id, tenant_id = None, None
    stack = ExitStack()
    stack.enter_context(bound(job_id=job_id, tenant_id=tenant_id))
    _open[task_id] = stack


@task_postrun.connect
def _unbind(task_id: str, **_: Any) -> None:
    if (stack := _open.pop(task_id, None)) is not None:
        stack.close()


if get_settings().log_format == "json":
    @setup_logging.connect
    def _json_logging(loglevel: Any = "INFO", **_: Any) -> None:
        """Connected, this replaces Celery's logging set-up with ours."""
        configure_logging("json", loglevel or "INFO")
