"""Corpora recover with no request, in the maintenance pass (`run_once`) that recovers jobs and exports:
real PostgreSQL and Redis; indexing runs in process (`execute_index`), as a worker runs it."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import CORPUS_ID, held_by_broker
from app.jobs.maintenance import run_once
from app.models import Corpus
from app.models.base import utcnow
from tests.conftest import REDIS_URL
from tests.corpora.helpers import create_corpus, documents, text_file
from workers.tasks.index_corpus import execute_index


@pytest.fixture(autouse=True)
def _isolated(quiet_queue):
    """Only this test's corpora are waiting, and the test queue starts empty."""


def _set(corpus_id: str, **values) -> None:
    with session_scope() as db:
        for name, value in values.items():
            setattr(db.get(Corpus, corpus_id), name, value)


def _row(corpus_id: str) -> Corpus:
    with session_scope() as db:
        corpus = db.get(Corpus, corpus_id)
        db.expunge(corpus)
        return corpus


def _stale(worker: str = "dead:1", beat_age: float | None = None) -> dict:
    beat = utcnow() - timedelta(seconds=beat_age if beat_age is not None else get_settings().heartbeat_timeout + 30)
    return {"status": "running", "worker_id": worker, "heartbeat_at": beat, "started_at": beat, "enqueued_at": beat,
            "attempt": 1}


def test_corpus_whose_worker_stopped_beating_is_requeued_sent_and_indexed(client, tenant):
    _, key = tenant
    dead = create_corpus(client, key, text_file(documents(40)), index=False)["id"]
    alive = create_corpus(client, key, text_file(documents(40)), index=False)["id"]
    _set(dead, **_stale())
    _set(alive, **_stale("alive:1", beat_age=0))
    done = run_once()
    assert dead in done["corpora_reaped"] and alive not in done["corpora_reaped"]
    assert dead in done["corpora_sent"] and dead in held_by_broker(CORPUS_ID)
    corpus = _row(dead)
    assert corpus.status == "queued" and corpus.worker_id is None and corpus.enqueued_at is not None
    assert _row(alive).status == "running"
    assert dead not in run_once()["corpora_sent"]  # sent once
    assert execute_index(dead) == "ready"
    corpus = _row(dead)
    assert corpus.attempt == 2 and corpus.documents == 40 and corpus.index_bytes > 0


def test_corpus_that_keeps_dying_fails_after_max_attempts(client, tenant):
    corpus_id = create_corpus(client, tenant[1], text_file(documents(5)), index=False)["id"]
    _set(corpus_id, **{**_stale(), "attempt": get_settings().max_attempts})
    assert corpus_id in run_once()["corpora_reaped"]
    corpus = _row(corpus_id)
    assert corpus.status == "failed" and corpus.finished_at and corpus.error["code"] == "worker_lost"
    assert "this indexing stopped responding" in corpus.error["message"]


def test_corpus_whose_message_the_broker_lost_is_sent_again(client, tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "resend_after", 0.0)
    corpus_id = create_corpus(client, tenant[1], text_file(documents(5)), index=False)["id"]
    assert corpus_id in held_by_broker(CORPUS_ID)  # the request sent it
    assert corpus_id not in run_once()["corpora_lost"]  # still held: nothing to do
    redis.Redis.from_url(REDIS_URL).delete(get_settings().queue_name)  # what FLUSHALL does
    done = run_once()
    assert corpus_id in done["corpora_lost"] and corpus_id in done["corpora_sent"]
    assert corpus_id in held_by_broker(CORPUS_ID) and _row(corpus_id).status == "queued"
    assert execute_index(corpus_id) == "ready" and _row(corpus_id).attempt == 1


def test_worker_that_lost_its_lease_publishes_nothing(client, tenant):
    """A deleted corpus (or one reaped and taken by another worker) is not completed by a late worker,
    and a deleted one's index does not stay on disk."""
    from app.corpora.service import claim, index_dir
    from workers.tasks.index_corpus import _publish
    from app.files.service import storage_path
    from app.models import File

    _, key = tenant
    corpus_id = create_corpus(client, key, text_file(documents(30)), index=False)["id"]
    with session_scope() as db:
        corpus = claim(db, corpus_id, "late:1")
        dest, source = index_dir(corpus), storage_path(db.get(File, corpus.file_id).storage_key)
    client.delete(f"/v1/corpora/{corpus_id}", headers={"Authorization": f"Bearer {key}"})
    assert _publish(corpus_id, "late:1", source, dest) == "lease_lost"
    assert not dest.exists()
