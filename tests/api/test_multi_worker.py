"""`tuneforge api --workers 2`: two uvicorn processes behind one port, with connections held open on each,
and what must hold across them: one request rate per tenant (Redis), one resource per Idempotency-Key
(PostgreSQL advisory locks and rows), and a key revoked or a limit changed by a `tuneforge` command in force
in both processes on the very next request (each process's credential cache hears of it through Redis)."""
from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from tests.api.helpers import auth, classification_rows, jsonl
from tests.conftest import new_tenant
from tests.harness import Service

PER_WORKER = 4
RATE = 5
MISSING_JOB = "/v1/fine_tuning/jobs/ftjob-not-there"  # any authenticated read: 404 once authenticated


@pytest.fixture(scope="module")
def api(database, tmp_path_factory) -> Iterator[Service]:
    service = Service(dict(os.environ), log_path=tmp_path_factory.mktemp("multi-worker") / "service.log")
    service.start_api("--workers", "2", "--no-maintenance")
    yield service
    service.stop()


def _owner(children: list[psutil.Process], client_port: int) -> int | None:
    """The pid of the API process holding the server end of the connection from `client_port`."""
    for child in children:
        try:
            if any(c.raddr and c.raddr.port == client_port for c in child.net_connections("tcp")):
                return child.pid
        except psutil.Error:
            continue
    return None


@pytest.fixture(scope="module")
def connections(api) -> Iterator[dict[int, list[httpx.Client]]]:
    """PER_WORKER keep-alive connections held open on each of the two API processes, by pid."""
    children = psutil.Process(api.processes["api"].pid).children()
    held: dict[int, list[httpx.Client]] = defaultdict(list)
    deadline = time.monotonic() + 120
    while len(held) < 2 or min(len(v) for v in held.values()) < PER_WORKER:
        assert time.monotonic() < deadline, f"connections never reached both workers: {dict(held)}"
        client = httpx.Client(base_url=api.url, timeout=60, limits=httpx.Limits(max_connections=1))
        response = client.get("/healthz")
        pid = _owner(children, response.extensions["network_stream"].get_extra_info("client_addr")[1])
        if pid is not None and len(held[pid]) < PER_WORKER:
            held[pid].append(client)
        else:
            client.close()
    assert len(held) == 2
    yield held
    for clients in held.values():
        for client in clients:
            client.close()


def _everywhere(connections, request) -> list[tuple[int, float, float, httpx.Response]]:
    """`request(client)` on every held connection at once: (pid, start, end, response) each."""
    jobs = [(pid, client) for pid, clients in connections.items() for client in clients]

    def one(job):
        start = time.time()
        response = request(job[1])
        return job[0], start, time.time(), response

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def _key_id(tenant_id: str) -> str:
    from app.core.db import session_scope
    from app.tenants.service import list_api_keys

    with session_scope() as db:
        return list_api_keys(db, tenant_id)[0].id


def _tenant_name(tenant_id: str) -> str:
    from app.core.db import session_scope
    from app.models import Tenant

    with session_scope() as db:
        return db.get(Tenant, tenant_id).name


def test_rate_limit_is_one_budget_across_workers(api, connections):
    tenant_id, key = new_tenant()
    warm = _everywhere(connections, lambda c: c.get(MISSING_JOB, headers=auth(key)))
    assert {r.status_code for *_, r in warm} == {404}  # cached in both processes, no limit yet
    api.cli("tenants", "limits", _tenant_name(tenant_id), "--requests-per-second", str(RATE))
    per_second: Counter[int] = Counter()
    refused = 0
    for _ in range(3):
        for pid, start, end, response in _everywhere(connections, lambda c: c.get(MISSING_JOB, headers=auth(key))):
            assert response.status_code in (404, 429), response.text
            refused += response.status_code == 429
            if response.status_code == 404 and int(start) == int(end):  # the second it was counted in is known
                per_second[int(start)] += 1
        time.sleep(1.1)
    assert refused, "a limit set by the command never reached the API processes"
    assert max(per_second.values()) <= RATE, per_second  # per process it would allow 2 x RATE


def test_idempotency_key_creates_once_across_workers(api, connections, registered_tiny_model):
    _, key = new_tenant()
    headers = {**auth(key), "Idempotency-Key": "multi-worker-upload"}
    content = jsonl(classification_rows(12))
    uploads = _everywhere(connections, lambda c: c.post(
        "/v1/files", headers=headers, files={"file": ("train.jsonl", content)}, data={"purpose": "fine-tune"}))
    assert {r.status_code for *_, r in uploads} == {200}, [r.text for *_, r in uploads]
    assert len({r.json()["id"] for *_, r in uploads}) == 1
    assert {pid for pid, *_ in uploads} == set(connections)
    file_id = uploads[0][3].json()["id"]
    listed = httpx.get(f"{api.url}/v1/files", headers=auth(key)).json()["data"]
    assert [f["id"] for f in listed] == [file_id]

    body = {"model": registered_tiny_model, "training_file": file_id, "seed": 7}
    jobs = _everywhere(connections, lambda c: c.post(
        "/v1/fine_tuning/jobs", json=body, headers={**auth(key), "Idempotency-Key": "multi-worker-job"}))
    assert {r.status_code for *_, r in jobs} == {200}, [r.text for *_, r in jobs]
    job_ids = {r.json()["id"] for *_, r in jobs}
    assert len(job_ids) == 1
    listed = httpx.get(f"{api.url}/v1/fine_tuning/jobs", headers=auth(key)).json()["data"]
    assert [j["id"] for j in listed] == list(job_ids)
    httpx.post(f"{api.url}/v1/fine_tuning/jobs/{job_ids.pop()}/cancel", headers=auth(key)).raise_for_status()


def test_key_revoked_by_the_command_fails_in_both_workers_at_once(api, connections):
    tenant_id, key = new_tenant()
    warm = _everywhere(connections, lambda c: c.get(MISSING_JOB, headers=auth(key)))
    assert {r.status_code for *_, r in warm} == {404}
    api.cli("tenants", "revoke-key", _key_id(tenant_id))
    after = _everywhere(connections, lambda c: c.get(MISSING_JOB, headers=auth(key)))
    assert {r.status_code for *_, r in after} == {401}, [(pid, r.status_code) for pid, _, _, r in after]


def test_metrics_are_the_sum_over_workers(api, connections):
    """`tuneforge api --workers 2` gives its processes one PROMETHEUS_MULTIPROC_DIR: each answers the sum."""
    from prometheus_client.parser import text_string_to_metric_families

    _, key = new_tenant()
    _everywhere(connections, lambda c: c.get(MISSING_JOB, headers=auth(key)))

    def served(client: httpx.Client) -> float:
        return sum(s.value for fam in text_string_to_metric_families(client.get("/metrics").text)
                   for s in fam.samples if s.name == "tuneforge_http_requests_total"
                   and s.labels.get("route") == "/v1/fine_tuning/jobs/{job_id}")

    totals = {pid: served(clients[0]) for pid, clients in connections.items()}
    assert len(set(totals.values())) == 1 and min(totals.values()) >= 2 * PER_WORKER, totals
