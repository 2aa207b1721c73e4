"""/v1/fine_tuning/jobs: creation rules and every bad input, against the real app and database."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import Job
from app.training.registry import list_strategies
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.conftest import new_tenant


@pytest.fixture
def train_file(client, tenant) -> str:
    return upload(client, tenant[1], jsonl(classification_rows())).json()["id"]


def _jobs(tenant_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id))


def create(client, key, **body):
    return client.post("/v1/fine_tuning/jobs", headers=auth(key), json=body)


def test_create_lora_job_resolves_auto_and_records_events(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file, suffix="demo",
                      metadata={"team": "nlp"}, seed=7,
                      method={"type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 2}}})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["object"] == "fine_tuning.job" and job["status"] == "queued" and job["seed"] == 7
    assert job["method"]["type"] == "lora" and job["method"]["lora"]["r"] == 4
    assert job["hyperparameters"]["n_epochs"] == 2
    assert isinstance(job["hyperparameters"]["batch_size"], int)
    assert job["hyperparameters"]["learning_rate_multiplier"] == pytest.approx(1.0)
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=auth(key)).json()["data"]
    messages = [e["message"] for e in events]
    assert any("Validating training file" in m for m in messages) and "Job queued" in messages
    listed = client.get('/v1/fine_tuning/jobs?metadata={"team": "nlp"}', headers=auth(key)).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]


def test_auto_resolution_is_shown_and_said(client, tenant, train_file, registered_tiny_model):
    """Everything left on auto: the job shows concrete values and an event names the rule they came from."""
    _, key = tenant
    job = create(client, key, model=registered_tiny_model, training_file=train_file,
                 method={"type": "bitfit"}).json()
    shown = job["method"]["bitfit"]["hyperparameters"]
    assert shown["learning_rate"] == pytest.approx(1e-2) and shown["lr_scheduler"] == "linear"
    assert shown["max_grad_norm"] == 1.0 and shown["select_best"] is True and shown["n_epochs"] == 10
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=auth(key)).json()["data"]
    [said] = [e for e in events if "hyper-parameters:" in e["message"]]
    assert "n_epochs=10" in said["message"] and "bench/peft.py grid" in said["message"]
    assert said["data"]["auto"] == ["n_epochs", "batch_size", "learning_rate", "warmup_ratio", "lr_scheduler"]


def test_legacy_hyperparameters_and_multiplier(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    job = create(client, key, model=registered_tiny_model, training_file=train_file,
                 hyperparameters={"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2}).json()
    assert job["method"]["type"] == "supervised"
    assert job["hyperparameters"] == {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": pytest.approx(2.0)}


@pytest.mark.parametrize("body, status, fragment, param", [
    ({"model": "no-such-model"}, 404, "unknown base model", "model"),
    ({"training_file": "file-doesnotexist"}, 404, "no such file", "training_file"),
    ({"method": {"type": "telepathy"}}, 400, "telepathy", "method.type"),
    ({"method": {"type": "lora", "lora": {"r": 0}}}, 400, "method.lora.r", "method.lora.r"),
    ({"method": {"type": "lora", "lora": {"rank_typo": 8}}}, 400, "rank_typo", None),
    ({"method": {"type": "lora", "lora": {"aux_mlm_weight": -1}}}, 400, "aux_mlm_weight", "method.lora.aux_mlm_weight"),
    ({"method": {"type": "bitfit", "bitfit": {"aux_mlm": {"unit": "span"}}}}, 400, "aux_mlm_weight", "method.bitfit"),
    ({"method": {"type": "supervised", "supervised": {"aux_mlm_weight": 1, "aux_mlm": {"mask_rate": 2}}}}, 400,
     "mask_rate", "method.supervised.aux_mlm.mask_rate"),
    ({"hyperparameters": {"n_epochs": 0}}, 400, "n_epochs", None),
    ({"hyperparameters": {"n_epochs": 100000}}, 400, "n_epochs", None),
    ({"hyperparameters": {"batch_size": -3}}, 400, "batch_size", None),
    ({"hyperparameters": {"learning_rate_multiplier": 1e9}}, 400, "learning_rate_multiplier", None),
    ({"hyperparameters": {"learning_rate": 0}}, 400, "learning_rate", None),
    ({"hyperparameters": {"n_epochs": "many"}}, 400, "n_epochs", None),
    ({"seed": -1}, 400, "seed", "seed"),
    ({"suffix": "x" * 65}, 400, "suffix", "suffix"),
    ({"unknown_field": 1}, 400, "unknown_field", "unknown_field"),
    ({"metadata": {"k": 1}}, 400, "metadata", None),
])
def test_bad_job_specs_are_4xx_and_store_nothing(client, tenant, train_file, registered_tiny_model,
                                                 body, status, fragment, param):
    tenant_id, key = tenant
    full = {"model": registered_tiny_model, "training_file": train_file, **body}
    error = assert_error(create(client, key, **full), status, fragment)
    if param:
        assert error["param"] == param
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("method", [spec.name for spec in list_strategies()])
def test_every_registered_method_refuses_bad_settings(client, tenant, train_file, registered_tiny_model, method):
    """The matrix's API row: an unknown setting and an impossible schedule, each a 400 naming the field."""
    tenant_id, key = tenant
    for settings, param in (({"no_such_setting": 1}, f"method.{method}.no_such_setting"),
                            ({"hyperparameters": {"n_epochs": 0}}, f"method.{method}.hyperparameters.n_epochs")):
        error = assert_error(create(client, key, model=registered_tiny_model, training_file=train_file,
                                    method={"type": method, method: settings}), 400, param.rsplit(".", 1)[-1])
        assert error["param"] == param
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("rows, fragment", [
    ([{"text": "a", "label": "x"}] * 5, "label"),  # a single class
    ([{"label": "x"}, {"text": "b", "label": "y"}], "line 1"),  # missing text
    ([{"text": "a", "label": "x"}, {"text": "b"}], "line 2"),  # missing label
    ([{"text": "a", "label": "x"}, {"text": "b", "label": [1]}], "line 2"),
])
def test_bad_training_files_fail_validation(client, tenant, registered_tiny_model, rows, fragment):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(rows)).json()["id"]
    error = assert_error(create(client, key, model=registered_tiny_model, training_file=file_id), 400, fragment,
                         param="training_file")
    assert error["code"] == "invalid_training_file"
    assert _jobs(tenant_id) == 0


def test_validation_file_with_unseen_labels(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    valid = upload(client, key, jsonl(classification_rows(6, labels=("pos", "neu")))).json()["id"]
    assert_error(create(client, key, model=registered_tiny_model, training_file=train_file, validation_file=valid),
                 400, "neu", param="validation_file")


def test_malformed_json_body(client, tenant):
    _, key = tenant
    response = client.post("/v1/fine_tuning/jobs", headers={**auth(key), "Content-Type": "application/json"},
                           content=b'{"model": ')
    assert_error(response, 400, "not valid json")
    assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json=[1, 2]), 400, "json object")


def test_other_tenants_job_is_404_everywhere(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    job_id = create(client, key, model=registered_tiny_model, training_file=train_file).json()["id"]
    _, other = new_tenant()
    for method, path in [("get", ""), ("post", "/cancel"), ("get", "/events"), ("get", "/checkpoints"),
                         ("get", "/artifacts"), ("get", "/artifacts/manifest.json")]:
        response = getattr(client, method)(f"/v1/fine_tuning/jobs/{job_id}{path}", headers=auth(other))
        assert_error(response, 404, job_id)
    assert client.get("/v1/fine_tuning/jobs", headers=auth(other)).json()["data"] == []
    other_file = upload(client, other, jsonl(classification_rows())).json()["id"]
    assert_error(create(client, key, model=registered_tiny_model, training_file=other_file), 404, other_file)


def test_cancel_queued_job_then_cancel_again(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    job_id = create(client, key, model=registered_tiny_model, training_file=train_file).json()["id"]
    cancelled = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth(key)).json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert_error(client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth(key)), 409, "already cancelled")


def test_models_list_and_unknown_path(client, tenant, registered_tiny_model):
    _, key = tenant
    ids = [m["id"] for m in client.get("/v1/models", headers=auth(key)).json()["data"]]
    assert registered_tiny_model in ids
    assert_error(client.get("/v1/nothing-here", headers=auth(key)), 404, "unknown path")


def test_huge_header_and_body(client, tenant):
    _, key = tenant
    assert_error(client.get("/v1/files", headers={**auth(key), "X-Big": "a" * 200_000}), 431, "headers")
    big = json.dumps({"model": "x" * (2 * 1024 * 1024)})
    response = client.post("/v1/fine_tuning/jobs", headers={**auth(key), "Content-Type": "application/json"},
                           content=big)
    assert_error(response, 413, "limit")


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["database"] is True and body["broker"] is True


def test_nul_bytes_are_rejected_not_500(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    assert_error(create(client, key, model=registered_tiny_model, training_file=train_file,
                        metadata={"k": "a\u0000b"}), 400, "NUL")
    body = ('{"model": "%s", "training_file": "%s", "metadata": {"k": "a\\ud800b"}}'
            % (registered_tiny_model, train_file)).encode()
    response = client.post("/v1/fine_tuning/jobs", content=body,
                           headers={**auth(key), "Content-Type": "application/json"})
    assert_error(response, 400, "surrogates")
    assert_error(client.get("/v1/files/file-%00x", headers=auth(key)), 400, "NUL")
    assert_error(client.get("/v1/files?after=%00", headers=auth(key)), 400, "NUL")


def test_pause_and_resume_a_queued_job(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    job_id = create(client, key, model=registered_tiny_model, training_file=train_file).json()["id"]
    base = f"/v1/fine_tuning/jobs/{job_id}"
    assert_error(client.post(f"{base}/resume", headers=auth(key)), 409, "only paused jobs")
    assert client.post(f"{base}/pause", headers=auth(key)).json()["status"] == "paused"
    assert_error(client.post(f"{base}/pause", headers=auth(key)), 409, "paused")
    assert client.post(f"{base}/resume", headers=auth(key)).json()["status"] == "queued"
    client.post(f"{base}/cancel", headers=auth(key))
    assert_error(client.post(f"{base}/pause", headers=auth(key)), 409, "cancelled")
