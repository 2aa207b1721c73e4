"""POST /v1/predictions on the real app and PostgreSQL, over real tiny artifacts: answers equal the
artifact loaded alone, tenants see only their own models, and every refusal is a 4xx naming the field."""
from __future__ import annotations

import math
import threading

import httpx
import pytest

from app.predictions.limits import MAX_INPUT_CHARS, MAX_INPUTS
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.predictions.conftest import TEXTS, named_job

URL = "/v1/predictions"


def probabilities(logits: list[float]) -> list[float]:
    exps = [math.exp(x - max(logits)) for x in logits]
    return [e / sum(exps) for e in exps]


def assert_matches(body: dict, model: str, labels: list[str], logits: list[list[float]]) -> None:
    assert body["object"] == "list" and body["model"] == model and len(body["data"]) == len(logits)
    for index, (row, want) in enumerate(zip(body["data"], logits, strict=True)):
        assert row["object"] == "prediction" and row["index"] == index
        assert list(row["probabilities"]) == labels
        assert max(abs(a - b) for a, b in zip(row["probabilities"].values(), probabilities(want))) < 1e-5
        assert row["label"] == labels[max(range(len(want)), key=want.__getitem__)]


@pytest.fixture
def owner(tenant, registered_tiny_model):
    return tenant


@pytest.mark.parametrize("name", ["lora", "bitfit", "supervised"])
def test_predictions_equal_the_artifact_loaded_alone(client, owner, artifacts, served, references, name):
    tenant_id, key = owner
    job = named_job(tenant_id, artifacts[name])
    for model in (job.fine_tuned_model, job.job_id):  # named by fine_tuned_model or by job id
        response = client.post(URL, headers=auth(key), json={"model": model, "input": TEXTS})
        assert response.status_code == 200, response.text
        assert_matches(response.json(), job.fine_tuned_model, list(served[name].labels), references[name])


def test_pairs_as_objects_and_odd_text(client, owner, artifacts, base_ref):
    from tests.predictions.conftest import reference

    tenant_id, key = owner
    job = named_job(tenant_id, artifacts["lora"])
    pairs = [{"text": text, "text_pair": "door window"} for text in TEXTS]
    response = client.post(URL, headers=auth(key), json={"model": job.job_id, "input": pairs})
    assert response.status_code == 200, response.text
    assert_matches(response.json(), job.fine_tuned_model, ["neg", "pos"], reference(artifacts["lora"], base_ref, pairs))
    odd = client.post(URL, headers=auth(key), json={"model": job.job_id, "input": ["nul\x00char", "é ü 漢字 🙂", " "]})
    assert odd.status_code == 200 and len(odd.json()["data"]) == 3, odd.text


def test_another_tenants_model_is_not_found(client, owner, artifacts):
    tenant_id, _ = owner
    job = named_job(tenant_id, artifacts["lora"])
    _, stranger = new_tenant()
    for model in (job.fine_tuned_model, job.job_id):
        error = assert_error(client.post(URL, headers=auth(stranger), json={"model": model, "input": ["hi"]}),
                             404, "no such model", param="model")
        assert error["code"] == "model_not_found"
    assert_error(client.post(URL, json={"model": job.job_id, "input": ["hi"]}), 401)


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"model": "m", "input": []}, "input", "at least 1 item"),
    ({"model": "m", "input": ["x"] * (MAX_INPUTS + 1)}, "input", f"at most {MAX_INPUTS} items"),
    ({"model": "m", "input": ["ok", "x" * (MAX_INPUT_CHARS + 1)]}, "input.1.text", f"at most {MAX_INPUT_CHARS}"),
    ({"model": "m", "input": [{"text": "a", "text_pair": "x" * (MAX_INPUT_CHARS + 1)}]}, "input.0.text_pair", "at most"),
    ({"model": "m", "input": [{"text_pair": "a"}]}, "input.0.text", "required"),
    ({"model": "m", "input": "just a string"}, "input", "valid list"),
    ({"model": "", "input": ["a"]}, "model", "at least 1 character"),
    ({"input": ["a"]}, "model", "required"),
    ({"model": "m", "input": ["a"], "temperature": 1}, "temperature", "extra"),
])
def test_bad_bodies_are_400s_naming_the_field(client, owner, body, param, fragment):
    assert_error(client.post(URL, headers=auth(owner[1]), json=body), 400, fragment, param=param)


def test_lone_surrogates_and_bad_json_are_400s(client, owner):
    key = owner[1]
    raw = b'{"model": "m", "input": ["\\ud800"]}'
    assert_error(client.post(URL, headers={**auth(key), "Content-Type": "application/json"}, content=raw), 400,
                 "unicode", param="input.0.text")
    assert_error(client.post(URL, headers={**auth(key), "Content-Type": "application/json"}, content=b"{"), 400)
    assert_error(client.post(URL, headers=auth(key)), 400)


def test_models_that_cannot_predict_say_why(client, owner, artifacts, registered_tiny_model):
    tenant_id, key = owner

    def ask(model: str):
        return client.post(URL, headers=auth(key), json={"model": model, "input": ["good"]})

    running = named_job(tenant_id, None, status="running")
    error = assert_error(ask(running.job_id), 409, "is running", "only a succeeded job predicts", "wait until",
                         param="model")
    assert error["code"] == "model_not_ready"
    failed = named_job(tenant_id, None, status="failed")
    assert assert_error(ask(failed.fine_tuned_model), 409, "is failed", "train it again")["code"] == "model_not_ready"
    encoder = named_job(tenant_id, {"method": "adaptive", "task": "masked_lm", "labels": [],
                                    "base_model": {"id": "tiny-bert", "sha256": "x"}, "files": {}})
    error = assert_error(ask(encoder.fine_tuned_model), 400, "trained no classifier", "fine-tune a task method")
    assert error["code"] == "model_not_servable"
    error = assert_error(ask(registered_tiny_model), 400, "is a base model", "fine-tune it")
    assert error["code"] == "model_not_servable"
    lost = named_job(tenant_id, None)
    assert assert_error(ask(lost.job_id), 409, "missing or unreadable")["code"] == "artifact_missing"
    assert_error(ask("ftjob-nope"), 404, "no such model", "GET /v1/models")
    assert_error(ask("bad\x00name"), 404, "no such model")


def test_a_model_whose_base_changed_is_refused(client, owner, artifacts, tmp_path):
    import json
    import shutil

    tenant_id, key = owner
    moved = tmp_path / "art"
    shutil.copytree(artifacts["lora"], moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["base_model"]["sha256"] = "0" * 64
    (moved / "manifest.json").write_text(json.dumps(manifest))
    job = named_job(tenant_id, moved)
    error = assert_error(client.post(URL, headers=auth(key), json={"model": job.job_id, "input": ["good"]}), 409,
                         "trained on base model 'tiny-bert'", param="model")
    assert error["code"] == "base_model_mismatch"


def test_concurrent_clients_over_a_socket_get_their_own_models(live_url, owner, artifacts, served, references):
    tenant_id, key = owner
    jobs = {name: named_job(tenant_id, artifacts[name]) for name in ("lora", "lora_other", "lora_pooler", "bitfit")}
    failures: list[str] = []

    def client(offset: int) -> None:
        with httpx.Client(base_url=live_url, headers=auth(key), timeout=120) as http:
            for i in range(4):
                name = list(jobs)[(offset + i) % len(jobs)]
                response = http.post(URL, json={"model": jobs[name].job_id, "input": TEXTS})
                try:
                    assert response.status_code == 200, response.text
                    assert_matches(response.json(), jobs[name].fine_tuned_model, list(served[name].labels),
                                   references[name])
                except AssertionError as exc:
                    failures.append(f"{name}: {exc}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
