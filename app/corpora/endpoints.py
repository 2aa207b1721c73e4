"""/v1/corpora: corpus files indexed for BM25 search (issue 19), and the admin's share switch."""
from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from app.admin.endpoints import AdminDep
from app.api.deps import SessionDep, TenantDep
from app.api.pagination import Limit, Order, list_body, paginate
from app.core.queue import enqueue_corpus
from app.corpora import search, service
from app.corpora.schemas import CreateCorpus, SearchCorpus, ShareCorpus
from app.idempotency import service as idempotency
from app.models import Corpus
from app.tenants import service as tenants

router = APIRouter(prefix="/v1/corpora", tags=["corpora"])
admin_router = APIRouter(prefix="/v1/admin/corpora", tags=["admin"])
log = logging.getLogger(__name__)


def _send(session, corpus: Corpus) -> None:
    try:
        enqueue_corpus(corpus.id)
    except Exception as exc:  # broker down: it stays queued, unsent; the maintenance pass sends it
        log.warning("corpus %s not sent to the broker: %s", corpus.id, exc)
        service.mark_unsent(session, corpus.id)
        session.commit()


@router.post("")
def create_corpus(body: CreateCorpus, request: Request, session: SessionDep, tenant: TenantDep) -> dict:
    """Index an uploaded file (purpose 'corpus') for BM25 search; answers at once with status 'indexing'.
    Honours `Idempotency-Key` (a replay returns the same corpus)."""
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    fingerprint = idempotency.fingerprint("corpora.create", body.model_dump())
    if key is not None and (stored := idempotency.replay(session, tenant.id, key, fingerprint)) is not None:
        return stored
    corpus = service.create_corpus(session, tenant.id, body.file, body.name)
    response = service.corpus_object(corpus)
    if key is not None:
        idempotency.remember(session, tenant.id, key, fingerprint, response)
    session.commit()
    _send(session, corpus)
    return response


@router.get("")
def list_corpora(session: SessionDep, tenant: TenantDep, after: str | None = None, limit: Limit = 20,
                 order: Annotated[Order, Query(description="By creation time.")] = "desc") -> dict:
    """The tenant's corpora and those an administrator shared with every tenant."""
    rows, has_more = paginate(session, service.list_corpora(tenant.id), Corpus, after, limit, order)
    return list_body([service.corpus_object(c) for c in rows], has_more)


@router.get("/{corpus_id}")
def retrieve_corpus(corpus_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    return service.corpus_object(service.get_corpus(session, tenant.id, corpus_id, param="corpus_id"))


@router.delete("/{corpus_id}")
def delete_corpus(corpus_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    """Delete the corpus and its index (the file it was built from stays; DELETE /v1/files removes it)."""
    path = service.delete_corpus(session, tenant.id, corpus_id)
    session.commit()
    search.forget(path)
    service.remove_index(path)
    return {"id": corpus_id, "object": "corpus", "deleted": True}


@router.post("/{corpus_id}/search")
async def search_corpus(corpus_id: str, body: SearchCorpus, session: SessionDep, tenant: TenantDep) -> dict:
    """BM25 top-k documents for a free-text query, best first."""
    corpus = service.ready_corpus(session, tenant.id, corpus_id)
    hits = await run_in_threadpool(search.search, service.index_dir(corpus), body.query, body.top_k)
    return {"object": "list", "data": [{"document": doc, "score": score, "text": text} for doc, score, text in hits]}


@admin_router.post("/{corpus_id}/share")
def share_corpus(corpus_id: str, body: ShareCorpus, session: SessionDep, actor: AdminDep) -> dict:
    """Make a corpus readable (GET, search, TLM retrieval) by every tenant, or only its owner again."""
    corpus = service.set_shared(session, corpus_id, body.shared)
    tenants.audit(session, actor, "corpus.shared" if body.shared else "corpus.unshared", corpus.id)
    session.commit()
    return service.corpus_object(corpus)
