"""The worker's ProgressSink: events, metrics and checkpoints written to PostgreSQL."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from app.core.ids import new_id
from app.core.retry import with_db
from app.jobs.events import record_event
from app.models import Job, JobCheckpoint
from app.models.base import utcnow
from app.models.job import JobStatus
from app.training.base import StopReason

if TYPE_CHECKING:
    from workers.checkpoint_mirror import CheckpointMirror


STOP_REASONS: dict[str, StopReason | None] = {JobStatus.running: None, JobStatus.pausing: "pause",
                                             JobStatus.cancelled: "cancel"}


class LeaseLost(Exception):
    """Another worker owns the job now (it was reaped and re-queued): stop without writing."""


class DatabaseSink:
    """Implements app.training.base.ProgressSink for one claimed attempt of a job."""

    def __init__(self, job_id: str, worker_id: str, poll_interval: float, mirror: CheckpointMirror | None = None):
        """`mirror`: with a remote object store, where each complete checkpoint is also copied."""
        self.job_id, self.worker_id, self.poll_interval, self.mirror = job_id, worker_id, poll_interval, mirror
        self._last_poll = 0.0
        self._last_answer: StopReason | None = None

    def message(self, text: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        with_db(lambda s: record_event(s, self.job_id, text, level=level, data=data))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        data = {"step": step, **values}
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items())
        with_db(lambda s: record_event(s, self.job_id, f"Step {step}: {summary}", type="metrics", data=data))

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        if self.mirror is not None:
            self.mirror.snapshot(step)

        def write(session) -> None:
            session.execute(insert(JobCheckpoint).values(
                id=new_id("ftckpt-"), job_id=self.job_id, step_number=step, metrics=metrics, path=str(path),
            ).on_conflict_do_nothing(index_elements=["job_id", "step_number"]))
            record_event(session, self.job_id, f"Checkpoint saved at step {step}", data={"step": step})
        with_db(write)

    def should_stop(self) -> StopReason | None:
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval:
            return self._last_answer
        self._last_poll = now
        status, owner = with_db(lambda s: s.execute(
            select(Job.status, Job.worker_id).where(Job.id == self.job_id)).one())
        if owner != self.worker_id:
            raise LeaseLost(f"job {self.job_id} is now owned by {owner}")
        # running: go on; pausing: checkpoint and stop; anything else (cancelled, or moved on): stop
        self._last_answer = STOP_REASONS.get(status, "cancel")
        return self._last_answer


class Heartbeat:
    """Refreshes `heartbeat_at` of a job (or of another row a worker holds, e.g. a JobExport: `table`
    needs id, worker_id and heartbeat_at) from a thread, so model loading and eval count as alive."""

    def __init__(self, job_id: str, worker_id: str, interval: float, table: type = Job):
        self.job_id, self.worker_id, self.interval, self.table = job_id, worker_id, interval, table
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        row = self.table
        with_db(lambda s: s.execute(update(row).where(row.id == self.job_id, row.worker_id == self.worker_id)
                                    .values(heartbeat_at=utcnow())), attempts=3)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # a missed beat is retried next interval; the reaper tolerates a few
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
