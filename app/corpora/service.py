"""Corpora: a tenant's uploaded corpus file indexed for BM25 search (issue 19), the index built by a
worker (workers/tasks/index_corpus.py) and recovered like an export when a worker or message is lost
(app/corpora/recovery.py). Services never commit; the request or task does.

Visibility: a tenant sees its own corpora and those an admin shared; any other id is a 404.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import AppError, BadRequest, Conflict, NotFound, shown
from app.core.ids import new_id
from app.core.text import storable
from app.files import service as files
from app.files.schemas import CORPUS_PURPOSE
from app.models import Corpus, CorpusStatus
from app.models.base import utcnow
from app.tenants import limits

log = logging.getLogger(__name__)
INDEXING = (CorpusStatus.queued, CorpusStatus.running)
CORPUS_PURPOSES = (CORPUS_PURPOSE, "fine-tune")  # a fine-tune JSONL file's "text" fields index too


def index_dir(corpus: Corpus) -> Path:
    """Where the corpus's index lives (app.corpora.index.open_index reads it)."""
    return get_settings().data_dir / "corpora" / corpus.tenant_id / corpus.id


def create_corpus(session: Session, tenant_id: str, file_id: str, name: str | None) -> Corpus:
    """A queued corpus over one of the tenant's files; the caller commits, then sends it (enqueue_corpus)."""
    file = files.get_file(session, tenant_id, file_id, param="file")
    if file.purpose not in CORPUS_PURPOSES:
        raise BadRequest(f"File {file.id} has purpose {file.purpose!r}; upload the corpus with purpose "
                         f"{CORPUS_PURPOSE!r} (plain text, one document per line, or JSONL {{\"text\": ...}}, "
                         "gzip accepted).", param="file")
    limits.check_storage(session, tenant_id, file.bytes, param="file")  # the index's room, estimated as its text's
    corpus = Corpus(id=new_id("corpus-"), tenant_id=tenant_id, file_id=file.id, name=name or file.filename,
                    status=CorpusStatus.queued, shared=False, bytes=file.bytes, indexed_documents=0, attempt=0,
                    enqueued_at=utcnow())
    session.add(corpus)
    session.flush()
    return corpus


def mark_unsent(session: Session, corpus_id: str) -> None:
    """The broker refused the message: the maintenance pass sends it (app/corpora/recovery.py)."""
    session.execute(update(Corpus).where(Corpus.id == corpus_id, Corpus.status == CorpusStatus.queued)
                    .values(enqueued_at=None))


def visible(tenant_id: str):
    return select(Corpus).where(or_(Corpus.tenant_id == tenant_id, Corpus.shared.is_(True)))


def get_corpus(session: Session, tenant_id: str, corpus_id: str, param: str | None = None) -> Corpus:
    """The tenant's corpus or a shared one; another tenant's id is indistinguishable from a missing one."""
    corpus = session.scalar(visible(tenant_id).where(Corpus.id == corpus_id)) if storable(corpus_id) else None
    if corpus is None:
        raise NotFound(f"No such corpus: {shown(corpus_id)}.", param=param)
    return corpus


def usable_corpus(session: Session, tenant_id: str, corpus_id: str, param: str) -> Corpus:
    """A corpus a job may retrieve from: 404 if missing or another tenant's (shared ones allowed), 400 if
    its indexing failed. One still indexing is returned: the caller waits for it (status in INDEXING)."""
    corpus = get_corpus(session, tenant_id, corpus_id, param=param)
    if corpus.status == CorpusStatus.failed:
        reason = (corpus.error or {}).get("message", "unknown error")
        raise BadRequest(f"Corpus {corpus.id} failed to index ({reason}); upload a fixed file and create a new "
                         "corpus (POST /v1/corpora).", param=param, code="corpus_failed")
    return corpus


def ready_corpus(session: Session, tenant_id: str, corpus_id: str) -> Corpus:
    """A corpus that can be searched now: 409 while indexing, 400 if indexing failed."""
    corpus = usable_corpus(session, tenant_id, corpus_id, param="corpus_id")
    if corpus.status != CorpusStatus.ready:
        done = f"{corpus.indexed_documents} documents so far"
        raise Conflict(f"Corpus {corpus.id} is still indexing ({done}); poll GET /v1/corpora/{corpus.id} until "
                       "its status is 'ready', then search again.", param="corpus_id", code="corpus_not_ready")
    return corpus


def list_corpora(tenant_id: str):
    return visible(tenant_id)


def delete_corpus(session: Session, tenant_id: str, corpus_id: str) -> Path:
    """Delete the row; returns the index dir for the caller to remove once the commit succeeded.
    A worker still indexing it finds no row to complete and removes what it built."""
    corpus = get_corpus(session, tenant_id, corpus_id)
    if corpus.tenant_id != tenant_id:
        raise AppError(f"Corpus {corpus.id} is shared with you by an administrator; only its owner can delete it.",
                       status_code=403, code="forbidden", param="corpus_id")
    session.delete(corpus)
    session.flush()
    return index_dir(corpus)


def remove_index(path: Path) -> None:
    """The index (on disk, or its cluster index) and any staging dir a killed worker left beside it."""
    from app.corpora.index import read_stats
    from app.corpora.remote import RemoteSearchError, drop_remote

    try:
        stats = read_stats(path)
        if stats.get("backend") == "opensearch":
            drop_remote(stats)
    except (OSError, ValueError, RemoteSearchError, httpx.HTTPError) as exc:
        log.warning("corpus index %s: %s", path, exc)
    for leftover in path.parent.glob(f".{path.name}.*.building"):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def set_shared(session: Session, corpus_id: str, shared: bool) -> Corpus:
    """Admin: make a corpus readable by every tenant (or stop that)."""
    corpus = session.get(Corpus, corpus_id) if storable(corpus_id) else None
    if corpus is None:
        raise NotFound(f"No such corpus: {shown(corpus_id)}.", param="corpus_id")
    corpus.shared = shared
    session.flush()
    return corpus


def corpus_object(corpus: Corpus) -> dict[str, Any]:
    ts = lambda v: int(v.timestamp()) if v else None  # noqa: E731
    return {"id": corpus.id, "object": "corpus", "name": corpus.name, "file": corpus.file_id,
            "status": "indexing" if corpus.status in INDEXING else corpus.status,
            "documents": corpus.documents, "indexed_documents": corpus.indexed_documents,
            "bytes": corpus.bytes, "index_bytes": corpus.index_bytes, "error": corpus.error,
            "shared": corpus.shared, "created_at": ts(corpus.created_at),
            "finished_at": ts(corpus.finished_at)}


# --- the worker ----------------------------------------------------------------------------------

def claim(session: Session, corpus_id: str, worker: str) -> Corpus | None:
    """queued → running for this worker; None if it is not queued (a duplicate or stale message)."""
    now = utcnow()
    return session.scalar(update(Corpus).where(Corpus.id == corpus_id, Corpus.status == CorpusStatus.queued)
                          .values(status=CorpusStatus.running, worker_id=worker, heartbeat_at=now, started_at=now,
                                  indexed_documents=0, attempt=Corpus.attempt + 1).returning(Corpus))


def _held(corpus_id: str, worker: str):
    return update(Corpus).where(Corpus.id == corpus_id, Corpus.status == CorpusStatus.running,
                                Corpus.worker_id == worker)


def progress(session: Session, corpus_id: str, worker: str, documents: int) -> None:
    session.execute(_held(corpus_id, worker).values(indexed_documents=documents, heartbeat_at=utcnow()))


def complete(session: Session, corpus_id: str, worker: str, documents: int, index_bytes: int) -> bool:
    """running → ready; False if this worker lost the corpus (reaped, or deleted meanwhile)."""
    done = session.scalar(_held(corpus_id, worker).values(
        status=CorpusStatus.ready, finished_at=utcnow(), documents=documents, indexed_documents=documents,
        index_bytes=index_bytes).returning(Corpus.id))
    return done is not None


def fail(session: Session, corpus_id: str, worker: str, code: str, message: str, param: str | None = None) -> None:
    session.execute(_held(corpus_id, worker).values(status=CorpusStatus.failed, finished_at=utcnow(),
                                                    error={"code": code, "message": message, "param": param}))
