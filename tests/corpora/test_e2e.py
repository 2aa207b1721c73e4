"""Corpora end to end: real `tuneforge api` + `tuneforge worker` processes index an uploaded gzip corpus
in the background and search it; a worker SIGKILLed mid-indexing loses nothing (the maintenance pass
re-queues the corpus once its heartbeat goes stale, and another worker indexes it)."""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RUN_ID, new_tenant
from tests.corpora.helpers import documents, text_file
from tests.e2e.conftest import wait_for
from tests.harness import Service, start_service


@pytest.fixture(scope="module")
def svc(database, data_dir) -> Iterator[Service]:
    from tests.conftest import quiesce_jobs

    quiesce_jobs()
    service = start_service(dict(os.environ, TUNEFORGE_QUEUE_NAME=f"tuneforge.corpora.{RUN_ID}",
                                 TUNEFORGE_HEARTBEAT_INTERVAL="1", TUNEFORGE_HEARTBEAT_TIMEOUT="8",
                                 TUNEFORGE_DISPATCHER_INTERVAL="1", TUNEFORGE_RESEND_AFTER="2"))
    yield service
    service.stop()


def _create(svc: Service, key: str, content: bytes) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    file = httpx.post(f"{svc.url}/v1/files", headers=headers, data={"purpose": "corpus"},
                      files={"file": ("corpus.txt.gz", content)}, timeout=120)
    assert file.status_code == 200, file.text
    corpus = httpx.post(f"{svc.url}/v1/corpora", headers=headers, json={"file": file.json()["id"], "name": "wiki"})
    assert corpus.status_code == 200 and corpus.json()["status"] == "indexing", corpus.text
    return corpus.json()


def _get(svc: Service, key: str, corpus_id: str) -> dict:
    return httpx.get(f"{svc.url}/v1/corpora/{corpus_id}", headers={"Authorization": f"Bearer {key}"}).json()


def test_worker_indexes_in_the_background_and_search_finds_rare_words(svc):
    _, key = new_tenant()
    docs = documents(20_000, seed=3)
    docs[12_345] = "the okapi is a giraffid native to the congo"
    content = gzip.compress(text_file(docs))
    corpus = _create(svc, key, content)
    ready = wait_for(lambda: _get(svc, key, corpus["id"]), lambda c: c["status"] != "indexing", timeout=180)
    assert ready["status"] == "ready", ready["error"]
    assert ready["documents"] == 20_000 == ready["indexed_documents"] and ready["bytes"] == len(content)
    found = httpx.post(f"{svc.url}/v1/corpora/{corpus['id']}/search", headers={"Authorization": f"Bearer {key}"},
                       json={"query": "Where do okapis live? (Congo)", "top_k": 5}).json()["data"]
    assert found[0] == {"document": 12_345, "score": found[0]["score"], "text": docs[12_345]}


def test_worker_killed_mid_indexing_loses_nothing(svc):
    _, key = new_tenant()
    content = gzip.compress(text_file(documents(200_000, seed=4)))
    corpus = _create(svc, key, content)
    wait_for(lambda: _get(svc, key, corpus["id"]), lambda c: c["indexed_documents"] >= 10_000, timeout=180,
             interval=0.1)  # running, and past its first progress report
    svc.processes["worker"].kill()  # SIGKILL: no cleanup, no final write
    svc.processes["worker"].wait()
    svc.start_worker("worker-2")
    done = wait_for(lambda: _get(svc, key, corpus["id"]), lambda c: c["status"] != "indexing", timeout=400)
    assert done["status"] == "ready", done["error"]
    assert done["documents"] == 200_000
    from app.core.db import session_scope
    from app.corpora.service import index_dir
    from app.models import Corpus

    with session_scope() as db:
        row = db.get(Corpus, corpus["id"])
        assert row.attempt == 2
        path = index_dir(row)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the killed attempt's staging is gone
