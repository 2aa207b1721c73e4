"""A table of hostile requests: every one a 4xx in OpenAI's error shape, none a 5xx, nothing stored."""
from __future__ import annotations

import gzip
import json

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import File, IdempotencyKey, Job
from tests.api.helpers import auth, classification_rows, jsonl

GOOD = jsonl(classification_rows())
JOBS = "/v1/fine_tuning/jobs"


def job(**body):
    return ("post", JOBS, {"json": {"model": "tiny-bert", "training_file": "{file}", **body}})


def raw_job(content: bytes, content_type: str = "application/json"):
    return ("post", JOBS, {"content": content, "headers": {"Content-Type": content_type}})


def upload(content: bytes, filename: str = "t.jsonl", purpose: str = "fine-tune"):
    return ("post", "/v1/files", {"files": {"file": (filename, content)}, "data": {"purpose": purpose}})


CASES = {
    "malformed json": raw_job(b'{"model": "tiny-bert",'),
    "json array body": raw_job(b"[]"),
    "json string body": raw_job(b'"hello"'),
    "empty body": raw_job(b""),
    "form body to json endpoint": raw_job(b"model=tiny-bert", "application/x-www-form-urlencoded"),
    "model wrong type": job(model=123),
    "model empty": job(model=""),
    "model huge": job(model="m" * 10_000),
    "model path traversal": job(model="../../../../etc/passwd"),
    "training_file wrong type": job(training_file=["file-1"]),
    "training_file sql injection": job(training_file="file-1' OR '1'='1"),
    "n_epochs float": job(hyperparameters={"n_epochs": 2.5}),
    "n_epochs huge": job(hyperparameters={"n_epochs": 10**30}),
    "n_epochs negative": job(hyperparameters={"n_epochs": -1}),
    "batch_size zero": job(hyperparameters={"batch_size": 0}),
    "learning_rate nan string": job(hyperparameters={"learning_rate": "NaN"}),
    "learning_rate infinity": ("post", JOBS, {"content": b'{"model": "tiny-bert", "training_file": "{file}", '
                                                           b'"hyperparameters": {"learning_rate": Infinity}}',
                                              "headers": {"Content-Type": "application/json"}}),
    "unknown hyperparameter": job(hyperparameters={"momentum": 0.9}),
    "method not object": job(method="lora"),
    "method type missing": job(method={"lora": {}}),
    "method type unknown": job(method={"type": "rm -rf /"}),
    "method settings wrong type": job(method={"type": "lora", "lora": {"r": "eight"}}),
    "method settings for another type": job(method={"type": "lora", "bitfit": {}}),
    "lora rank absurd": job(method={"type": "lora", "lora": {"r": 10**9}}),
    "lora dropout > 1": job(method={"type": "lora", "lora": {"lora_dropout": 2}}),
    "trust_remote_code in settings": job(method={"type": "supervised", "supervised": {"trust_remote_code": True}}),
    "seed too big": job(seed=2**80),
    "seed string": job(seed="seven"),
    "suffix with slash": job(suffix="../x"),
    "metadata not object": job(metadata=["a"]),
    "metadata sql injection value too long": job(metadata={"k": "'; DROP TABLE jobs; --" * 40}),
    "metadata 17 pairs": job(metadata={f"k{i}": "v" for i in range(17)}),
    "metadata nested json": job(metadata={"k": {"$ne": 1}}),
    "metadata NUL": job(metadata={"k": "\u0000"}),
    "integrations given": job(integrations=[{"type": "wandb"}]),
    "unknown top-level field": job(training_files="x"),
    "deeply nested body": raw_job(b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "upload empty": upload(b""),
    "upload not json": upload(b"hello world\n"),
    "upload bom + garbage": upload(b"\xef\xbb\xbf{\n"),
    "upload latin-1": upload(b'{"text": "\xe9", "label": 1}\n'),
    "upload utf-16": upload('{"text": "a", "label": 1}\n'.encode("utf-16")),
    "upload gzip bomb": upload(gzip.compress(b"{}\n" * 2_000_000), filename="bomb.jsonl.gz"),
    "upload wrong purpose": upload(GOOD, purpose="batch"),
    "upload purpose injection": upload(GOOD, purpose="fine-tune' --"),
    "upload without file field": ("post", "/v1/files", {"data": {"purpose": "fine-tune"}}),
    "upload without purpose": ("post", "/v1/files", {"files": {"file": ("t.jsonl", GOOD)}}),
    "list limit negative": ("get", "/v1/files?limit=-1", {}),
    "list limit huge": ("get", f"{JOBS}?limit=1000000000000", {}),
    "list bad cursor": ("get", f"{JOBS}?after=ftjob-nope", {}),
    "metadata filter not json": ("get", f"{JOBS}?metadata=nope", {}),
    "path traversal artifact": ("get", f"{JOBS}/ftjob-x/artifacts/../../../../etc/passwd", {}),
    "encoded traversal file": ("get", "/v1/files/..%2F..%2Fetc%2Fpasswd", {}),
    "NUL in path": ("get", "/v1/files/file-%00", {}),
    "unicode id": ("get", f"{JOBS}/ftjob-\u202e\u0301\U0001f600", {}),
    "very long id": ("get", f"/v1/files/{'f' * 5000}", {}),
    "method not allowed": ("put", "/v1/files", {}),
    "unknown path": ("get", "/v1/../admin", {}),
    "huge header": ("get", "/v1/files", {"headers": {"X-Fill": "a" * 100_000}}),
    "huge json body": raw_job(b'{"model": "' + b"a" * (2 * 1024 * 1024) + b'"}'),
    "idempotency key too long": ("post", JOBS, {"json": {}, "headers": {"Idempotency-Key": "k" * 1000}}),
}


def _counts(tenant_id: str) -> tuple[int, int, int]:
    with session_scope() as db:
        return tuple(db.scalar(select(func.count()).select_from(m).where(m.tenant_id == tenant_id))
                     for m in (File, Job, IdempotencyKey))


def _fill(value, file_id: str):
    if isinstance(value, str):
        return value.replace("{file}", file_id)
    if isinstance(value, bytes):
        return value.replace(b"{file}", file_id.encode())
    if isinstance(value, dict):
        return {k: _fill(v, file_id) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def hostile_tenant(client_module, registered_tiny_model):
    from tests.conftest import new_tenant

    tenant_id, key = new_tenant()
    response = client_module.post("/v1/files", headers=auth(key), files={"file": ("t.jsonl", GOOD)},
                                  data={"purpose": "fine-tune"})
    return tenant_id, key, response.json()["id"]


@pytest.fixture(scope="module")
def client_module(database):
    from fastapi.testclient import TestClient

    from app.main import app

    with TestClient(app) as test_client:
        yield test_client


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_request_is_a_clean_4xx(name, client_module, hostile_tenant):
    tenant_id, key, file_id = hostile_tenant
    method, path, kwargs = CASES[name]
    kwargs = _fill(kwargs, file_id)
    kwargs["headers"] = {**auth(key), **kwargs.get("headers", {})}
    before = _counts(tenant_id)
    response = getattr(client_module, method)(path, **kwargs) if method != "put" else client_module.put(path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = json.loads(response.text)["error"]
    assert error["message"] and len(error["message"]) < 2000
    assert _counts(tenant_id) == before
