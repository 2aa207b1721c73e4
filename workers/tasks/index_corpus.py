"""The indexing task: stream a corpus file into a BM25 index on disk (app/corpora/index.py), reporting
progress on the corpus row, published atomically (built in a staging dir, renamed into place)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import httpx
from celery import shared_task

from app.core.config import get_settings
from app.core.errors import AppError
from app.core.queue import INDEX_CORPUS_TASK
from app.core.retry import with_db
from app.corpora import service
from app.corpora.index import build_configured
from app.corpora.remote import RemoteSearchError
from app.files import service as files
from app.models import Corpus, File
from app.training.data import DatasetError
from workers.progress import Heartbeat
from workers.tasks.run_job import out_of_space, worker_id

log = logging.getLogger(__name__)


def _claim(corpus_id: str, me: str) -> tuple[Path, Path | None] | None:
    """Claim the corpus; (its index dir, its file's verified bytes or None if the file is gone)."""
    def run(session) -> tuple[Path, Path | None] | None:
        corpus = service.claim(session, corpus_id, me)
        if corpus is None:
            return None
        file = session.get(File, corpus.file_id)
        return service.index_dir(corpus), files.verified_path(file) if file is not None else None
    return with_db(run)


def _fail(corpus_id: str, me: str, code: str, message: str, param: str | None = None) -> str:
    with_db(lambda session: service.fail(session, corpus_id, me, code, message, param))
    return "failed"


def _publish(corpus_id: str, me: str, source: Path, dest: Path) -> str:
    def progress(documents: int) -> None:
        with_db(lambda session: service.progress(session, corpus_id, me, documents))

    for leftover in dest.parent.glob(f".{dest.name}.*.building"):  # an earlier attempt's worker was killed
        shutil.rmtree(leftover, ignore_errors=True)
    stats = build_configured(source, dest, corpus_id, progress=progress)
    if with_db(lambda session: service.complete(session, corpus_id, me, stats.documents, stats.index_bytes)):
        log.info("corpus %s: %d documents indexed, %d index bytes", corpus_id, stats.documents, stats.index_bytes)
        return "ready"
    row = with_db(lambda session: session.get(Corpus, corpus_id))
    if row is None:  # deleted while indexing: nothing may stay on disk
        service.remove_index(dest)
    return "lease_lost"


def execute_index(corpus_id: str) -> str:
    """Index one corpus to a final state; returns it ("skipped" for a duplicate or stale message)."""
    me = worker_id()
    try:
        claimed = _claim(corpus_id, me)
    except AppError as exc:  # the file's bytes no longer match their checksum
        return _fail(corpus_id, me, exc.code or "file_corrupted", exc.message, "file")
    if claimed is None:
        log.info("corpus %s is not queued (duplicate or stale message); skipping", corpus_id)
        return "skipped"
    dest, source = claimed
    if source is None:
        return _fail(corpus_id, me, "file_deleted", "The corpus file was deleted before it was indexed; upload it "
                     "again and create a new corpus.", "file")
    try:
        with Heartbeat(corpus_id, me, get_settings().heartbeat_interval, table=Corpus):
            return _publish(corpus_id, me, source, dest)
    except DatasetError as exc:
        return _fail(corpus_id, me, "invalid_file", f"The corpus file is not usable: {exc}", "file")
    except (RemoteSearchError, httpx.HTTPError) as exc:
        return _fail(corpus_id, me, "search_cluster_error", f"The search cluster (TUNEFORGE_SEARCH_URL) failed: "
                     f"{type(exc).__name__}: {exc}"[:2000] + "; check the cluster, then create the corpus again.")
    except Exception as exc:  # noqa: BLE001 - the worker must survive any one corpus's failure
        log.exception("indexing corpus %s crashed", corpus_id)
        if out_of_space(exc):
            return _fail(corpus_id, me, "disk_full", "The worker ran out of disk space writing the index; nothing "
                         "partial was published. Free space and create the corpus again.")
        return _fail(corpus_id, me, "internal_error", f"Indexing crashed: {type(exc).__name__}: {exc}"[:2000])


@shared_task(name=INDEX_CORPUS_TASK, ignore_result=True, acks_late=True)
def index_corpus(corpus_id: str) -> str:
    return execute_index(corpus_id)
