"""Creating `tlm` jobs: the corpus must be the tenant's (or shared), indexed and ready; every bad spec is a
4xx naming the field and saying what to change, with nothing stored."""
from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.models import Corpus
from app.tenants.service import create_api_key
from tests.api.helpers import assert_error, auth
from tests.api.test_jobs import _jobs, create, train_file  # noqa: F401  (train_file is a fixture)
from tests.conftest import new_tenant
from tests.corpora.helpers import create_corpus, documents, text_file


@pytest.fixture(autouse=True)
def _isolated(quiet_queue):
    """The test queue starts empty."""


@pytest.fixture
def corpus(client, tenant) -> str:
    return create_corpus(client, tenant[1], text_file(documents(30)))["id"]


def tlm(corpus_id: str, **settings) -> dict:
    return {"type": "tlm", "tlm": {"corpus": corpus_id, "preset": "tiny", **settings}}


def test_tlm_job_is_queued_with_its_settings_resolved(client, tenant, train_file, corpus, registered_tiny_model):
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method=tlm(corpus, top_k=5, retrieval="random", rho1=2, rho2=10, stage2=False,
                                 mlm={"mask_rate": 0.4, "replacement": "mask_only"},
                                 preset={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                         "intermediate_size": 128}))
    assert response.status_code == 200, response.text
    settings = response.json()["method"]["tlm"]
    assert settings["corpus"] == corpus and settings["retrieval"] == "random" and settings["rho1"] == 2
    assert settings["preset"]["hidden_size"] == 64 and settings["mlm"]["mask_rate"] == 0.4
    assert isinstance(settings["hyperparameters"]["n_epochs"], int)
    assert settings["hyperparameters"]["learning_rate"] == 5e-4  # TLM's auto rule, not fine-tuning's


@pytest.mark.parametrize("settings, fragment, param", [
    ({"top_k": 0}, "greater than or equal to 1", "top_k"),
    ({"top_k": -5}, "greater than or equal to 1", "top_k"),
    ({"rho1": -1}, "greater than or equal to 0", "rho1"),
    ({"rho2": -0.5}, "greater than or equal to 0", "rho2"),
    ({"preset": "huge"}, "unknown preset 'huge'; choose one of tiny, small, medium, base", "preset"),
    ({"preset": {"hidden_size": 30, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}},
     "hidden_size 30 must be a multiple of num_attention_heads 4", "preset"),
    ({"preset": {"hidden_size": 32}}, "num_hidden_layers", "preset"),
    ({"retrieval": "dense"}, "'bm25' or 'random'", "retrieval"),
    ({"tokenizer": "gpt2"}, "'base' or 'train'", "tokenizer"),
    ({"mlm": {"mask_rate": 0}}, "mask_rate", "mlm.mask_rate"),
    ({"stage2_epochs": 0}, "stage2_epochs", "stage2_epochs"),
    ({"unknown": 1}, "Extra inputs", "unknown"),
])
def test_bad_tlm_settings_are_400s(client, tenant, train_file, corpus, registered_tiny_model, settings, fragment,
                                   param):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(corpus, **settings))
    assert_error(response, 400, fragment, param=f"method.tlm.{param}")
    assert _jobs(tenant_id) == 0


def test_without_a_corpus_rho1_must_be_0_and_a_file_id_is_no_corpus(client, tenant, train_file,
                                                                      registered_tiny_model):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": "tlm", "tlm": {"preset": "tiny", "rho1": 2}})
    assert_error(response, 400, "rho1=2 asks for external batches", "give corpus", param="method.tlm")
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(train_file))
    assert_error(response, 400, "corpus-", param="method.tlm.corpus")
    assert _jobs(tenant_id) == 0
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": "tlm", "tlm": {"preset": "tiny"}})  # the paper's "no external data" row
    assert response.status_code == 200, response.text
    assert response.json()["method"]["tlm"]["rho1"] == 0 and response.json()["method"]["tlm"]["corpus"] is None


def test_another_tenants_corpus_is_404_until_an_admin_shares_it(client, tenant, train_file, registered_tiny_model):
    tenant_id, key = tenant
    _, owner = new_tenant()
    theirs = create_corpus(client, owner, text_file(documents(20)))["id"]
    for corpus_id in (theirs, "corpus-doesnotexist"):
        response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(corpus_id))
        assert_error(response, 404, corpus_id, param="method.tlm.corpus")
    assert _jobs(tenant_id) == 0
    with session_scope() as db:
        admin = create_api_key(db, None, role="admin")
    shared = client.post(f"/v1/admin/corpora/{theirs}/share", headers=auth(admin), json={"shared": True})
    assert shared.status_code == 200, shared.text
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(theirs))
    assert response.status_code == 200, response.text


def test_a_corpus_still_indexing_is_409_and_a_failed_one_400(client, tenant, train_file, registered_tiny_model):
    tenant_id, key = tenant
    indexing = create_corpus(client, key, text_file(documents(10)), index=False)["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(indexing))
    error = assert_error(response, 409, "still indexing", f"GET /v1/corpora/{indexing}", param="method.tlm.corpus")
    assert error["code"] == "corpus_not_ready"
    with session_scope() as db:  # indexing failed (tests/corpora/test_api.py shows how it gets there)
        corpus = db.get(Corpus, indexing)
        corpus.status, corpus.error = "failed", {"code": "file_deleted", "message": "the file was deleted"}
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method=tlm(indexing))
    assert_error(response, 400, "failed to index", "the file was deleted", param="method.tlm.corpus")
    assert _jobs(tenant_id) == 0


def test_the_worker_resolves_the_corpus_again_and_fails_a_job_whose_corpus_went(client, tenant, train_file,
                                                                                registered_tiny_model):
    """Through the real worker path (execute, in process): a ready corpus trains; one deleted after submission
    fails the job naming method.tlm.corpus, not an internal error."""
    from workers.tasks.run_job import execute

    _, key = tenant
    schedule = {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}
    related = ["good great happy item", "bad awful sad item", "fine item news"]  # the training texts' words
    kept, gone = (create_corpus(client, key, text_file(documents(20, seed=s) + related))["id"] for s in (1, 2))
    jobs = [create(client, key, model=registered_tiny_model, training_file=train_file, seed=2,
                   method=tlm(corpus_id, top_k=2, stage2=False, **schedule)).json()["id"] for corpus_id in (kept, gone)]
    assert client.delete(f"/v1/corpora/{gone}", headers=auth(key)).status_code == 200
    assert execute(jobs[1]) == "failed"
    assert execute(jobs[0]) == "succeeded", client.get(f"/v1/fine_tuning/jobs/{jobs[0]}", headers=auth(key)).json()["error"]
    failed = client.get(f"/v1/fine_tuning/jobs/{jobs[1]}", headers=auth(key)).json()
    assert failed["error"]["param"] == "method.tlm.corpus" and gone in failed["error"]["message"], failed["error"]
    done = client.get(f"/v1/fine_tuning/jobs/{jobs[0]}", headers=auth(key)).json()
    assert done["status"] == "succeeded" and done["trained_tokens"] > 0
