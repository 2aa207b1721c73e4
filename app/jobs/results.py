"""A job's result file: its metrics as CSV (OpenAI's `result_files`), registered as a file of the tenant
when the job succeeds, in the transaction that records the success, and downloadable via /v1/files.

Its id follows from the job's (`ftjob-X` → `file-X`), so a job shows its result file without a lookup.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from app.files.schemas import RESULTS_PURPOSE
from app.files.service import store_bytes
from app.models import File, Job, JobEvent

FILENAME = "step_metrics.csv"
# CSV column <- metrics event key (app.training.engine's names)
COLUMNS: dict[str, str] = {"step": "step", "train_loss": "train_loss", "valid_loss": "eval_loss",
                           "valid_accuracy": "eval_accuracy"}


def result_file_id(job_id: str) -> str:
    return "file-" + job_id.removeprefix("ftjob-")


def result_files(job: Job | Row) -> list[str]:
    """What `result_files` shows: the metrics file of a succeeded job."""
    return [result_file_id(job.id)] if job.status == "succeeded" else []


def metrics_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step, in the order training reported them (a later phase may count steps anew): a
    training event and the evaluation at the same step share a row; a value not measured stays empty."""
    rows: list[dict[str, Any]] = []
    for data in events:
        values = {column: data[key] for column, key in COLUMNS.items() if key != "step" and key in data}
        if "step" not in data or not values:
            continue
        if not rows or rows[-1]["step"] != data["step"]:
            rows.append({"step": data["step"]})
        rows[-1].update(values)
    return rows


def metrics_events(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The `data` of the job's metrics events, in the order training reported them."""
    events = session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
                             .order_by(JobEvent.seq))
    return [data for data in events if isinstance(data, dict)]


def metrics_csv(session: Session, job_id: str) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics_rows(metrics_events(session, job_id)))
    return out.getvalue().encode()


def register_result_file(session: Session, job: Job) -> File:
    """Write the metrics CSV into the file store and add its row (the caller commits; run again, it
    rewrites the same file and row)."""
    file_id = result_file_id(job.id)
    key = f"{job.tenant_id}/{file_id}"
    size, digest = store_bytes(key, metrics_csv(session, job.id))
    file = session.get(File, file_id) or File(id=file_id, tenant_id=job.tenant_id)
    file.filename, file.purpose, file.bytes, file.sha256, file.storage_key = FILENAME, RESULTS_PURPOSE, size, digest, key
    session.add(file)
    session.flush()
    return file
