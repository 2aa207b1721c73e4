"""Every complete checkpoint of a job also goes to the shared object store (app.jobs.checkpoint_store), so a
worker on another host resumes the job when this host is lost, not from step 0.

The training loop only hard-links the job's checkpoint dir into a staging sibling (cheap: files, not bytes);
a background thread hashes and uploads it. At most `depth` snapshots wait; a further checkpoint blocks the
loop until one is stored. The worker calls `flush` before it reports the job paused or succeeded.
"""
from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from pathlib import Path

from app.core.object_store import ObjectStore, get_store
from app.jobs import checkpoint_store as stored
from app.training.base import ProgressSink, TrainingError

log = logging.getLogger(__name__)
ATTEMPTS = 3  # per snapshot, with 1 s, 2 s backoff: a store that blips does not cost the checkpoint


class CheckpointMirror:
    def __init__(self, store: ObjectStore, job_id: str, root: Path, depth: int = 2):
        self.store, self.job_id, self.root = store, job_id, root
        self.seq = self.stored_seq = stored.local_seq(root)
        self.step, self.error = 0, ""
        self._queue: queue.Queue[tuple[int, int, Path] | None] = queue.Queue(maxsize=depth)
        self._hashes: dict[tuple[int, ...], str] = {}
        self._known: set[str] = set()
        self._thread: threading.Thread | None = None
        for left in root.parent.glob(f".{root.name}.upload-*"):  # a killed attempt's staging links
            shutil.rmtree(left, ignore_errors=True)

    def restore(self, sink: ProgressSink) -> stored.Snapshot | None:
        """Fetch the store's newest complete snapshot when this host's dir is older (or empty); says so."""
        snapshot = stored.restore_newer(self.store, self.job_id, self.root)
        if snapshot is not None:
            self.seq = self.stored_seq = snapshot.seq
            self._known.update(sha for _, _, sha in snapshot.files)
            sink.message(f"Checkpoint at step {snapshot.step} restored from the object store (this host had none "
                         "as new)", data={"step": snapshot.step, "restored_from": "object_store"})
        return snapshot

    def snapshot(self, step: int) -> None:
        """Called once a checkpoint is complete on disk: queue the job's checkpoint dir as it is now."""
        self.seq += 1
        self.step = step
        staging = self.root.with_name(f".{self.root.name}.upload-{self.seq:08d}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        stored.link_tree(self.root, staging)
        stored.mark_local(self.root, self.seq, step)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"checkpoints-{self.job_id}", daemon=True)
            self._thread.start()
        self._queue.put((self.seq, step, staging))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            seq, step, staging = item
            try:
                self._upload(seq, step, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                self._queue.task_done()
        self._queue.task_done()

    def _upload(self, seq: int, step: int, staging: Path) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                files = stored.local_files(staging, self._hashes)
                stored.upload(self.store, self.job_id, stored.Snapshot(seq, step, files), staging, self._known)
                self.stored_seq, self.error = seq, ""
                return
            except Exception as exc:  # noqa: BLE001 - kept for flush, which fails the job if it was the last
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("job %s: checkpoint at step %d not stored (attempt %d/%d): %s", self.job_id, step,
                            attempt, ATTEMPTS, self.error)
                if attempt < ATTEMPTS:
                    time.sleep(2 ** (attempt - 1))

    def flush(self) -> None:
        """Wait until every queued checkpoint is stored; the newest one missing fails the job, saying why."""
        self._queue.join()
        if self.stored_seq < self.seq:
            raise TrainingError(f"The checkpoint at step {self.step} could not be stored in the object store "
                                f"{self.store.url} ({self.error}), so no other host could resume this job. Check "
                                "TUNEFORGE_ARTIFACT_URL, its credentials and that the store is up, then create the "
                                "job again.", code="storage_unavailable")

    def close(self, drop: bool = False) -> None:
        """Stop the uploader after what is queued (`flush` first where it must have succeeded); `drop`: what
        waits is dropped instead (the lease was lost: another worker's snapshots are the job's now)."""
        while drop:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                shutil.rmtree(item[2], ignore_errors=True)
            self._queue.task_done()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def discard(self) -> None:
        """The job succeeded or was cancelled: nothing will resume it, so its stored checkpoints go."""
        self.close(drop=True)
        stored.delete(self.store, self.job_id)


def mirror_for(job_id: str, root: Path) -> CheckpointMirror | None:
    """The job's mirror with a remote store configured; None with the local data directory only."""
    store = get_store()
    return CheckpointMirror(store, job_id, root) if store.remote else None
