"""Faults below the service, on infrastructure of its own: a private PostgreSQL and Redis (the
embedded servers `tuneforge up` uses) that these tests crash, flush and restart, a real api and
worker process, and a real tmpfs that fills up. Whatever dies, every accepted job reaches a final
state once, and nothing partial becomes visible."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from app.core.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.api.helpers import jsonl, multipart_upload
from tests.e2e.conftest import wait_for
from tests.e2e.test_service import FINAL
from tests.harness import Service, cli, start_service
from tests.tiny_models import make_classification_rows

LONG_ROWS = make_classification_rows(3000, seed=5)  # 3 epochs of 750 steps (LONG): faults land mid-training
SHORT_ROWS = make_classification_rows(48, seed=6)
LORA = {"type": "lora", "lora": {"r": 4, "hyperparameters": {
    "n_epochs": 1, "batch_size": 4, "checkpoint_every": 100, "learning_rate": 1e-3, "max_length": 16}}}
# the long job: 2,250 steps, so a fault of 2-3 s lands mid-training even where 750 steps take 3 s
LONG = {"type": "lora", "lora": {**LORA["lora"], "hyperparameters": {**LORA["lora"]["hyperparameters"], "n_epochs": 3}}}


@dataclass
class Private:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    service: Service
    client: object  # openai.OpenAI
    data_dir: Path

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.service.env["TUNEFORGE_REDIS_URL"])


@pytest.fixture(scope="module")
def private(tmp_path_factory, tiny_model_dir) -> Iterator[Private]:
    root = tmp_path_factory.mktemp("faults")
    postgres, broker = EmbeddedPostgres(root / "postgres"), EmbeddedRedis(root / "redis")
    env = dict(os.environ, TUNEFORGE_DATABASE_URL=postgres.start(), TUNEFORGE_REDIS_URL=broker.start(),
               TUNEFORGE_DATA_DIR=str(root / "data"), TUNEFORGE_QUEUE_NAME="tuneforge.faults",
               TUNEFORGE_RESEND_AFTER="2", TUNEFORGE_ORPHAN_GRACE="1",
               # outages here are seconds long; on a loaded machine a 5 s timeout would let the reaper
               # re-queue the job mid-outage, and this module tests the retry path, not the reaper's
               TUNEFORGE_HEARTBEAT_TIMEOUT="60")
    Path(env["TUNEFORGE_DATA_DIR"]).mkdir()
    try:
        cli(env, "migrate")
        cli(env, "models", "add", "tiny-bert", str(tiny_model_dir))
        key = cli(env, "tenants", "create", "faults").split()[-1]
        service = start_service(env)
    except BaseException:
        postgres.stop()
        broker.stop()
        raise
    from openai import OpenAI

    client = OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=60)
    yield Private(postgres, broker, service, client, Path(env["TUNEFORGE_DATA_DIR"]))
    service.stop()
    postgres.stop()
    broker.stop()


def _submit(client, rows, method: dict | None = None) -> str:
    method = method or (LONG if rows is LONG_ROWS else LORA)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(model="tiny-bert", training_file=file_id, seed=1,
                                          extra_body={"method": method}).id


def _final(client, job_id: str, timeout: float = 240):
    return wait_for(lambda: client.fine_tuning.jobs.retrieve(job_id), lambda j: j.status in FINAL, timeout)


def _wait_training(client, job_id: str) -> None:
    wait_for(lambda: client.fine_tuning.jobs.list_events(job_id, limit=50).data,
             lambda events: any(e.type == "metrics" for e in events), timeout=120, interval=0.1)


def _messages(client, job_id: str) -> list[str]:
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=100).data]


def _starts(client, job_id: str) -> int:
    return sum(m.startswith("Fine-tuning job started") for m in _messages(client, job_id))


def test_postgres_crash_mid_run(private):
    """PostgreSQL SIGKILLed mid-training and back 3 s later: the worker retries its writes, the job
    finishes, and meanwhile the API answers 503 (which clients retry), never 500."""
    job_id = _submit(private.client, LONG_ROWS)
    _wait_training(private.client, job_id)
    private.postgres.crash()
    crashed_at = time.time()
    try:
        time.sleep(1)
        during = httpx.get(f"{private.service.url}/v1/fine_tuning/jobs/{job_id}",
                           headers={"Authorization": f"Bearer {private.client.api_key}"}, timeout=30)
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "database_unavailable" and during.headers["retry-after"]
        time.sleep(2)
    finally:
        private.postgres.start()
    done = _final(private.client, job_id)
    assert done.status == "succeeded", done.error
    assert done.finished_at >= int(crashed_at + 3)  # still training through the outage (whole seconds on the wire)
    assert done.trained_tokens and _starts(private.client, job_id) == 1
    assert private.service.processes["worker"].poll() is None


def test_redis_flushed_with_running_and_queued_jobs(private):
    """FLUSHALL drops the running job's delivery record and the queued jobs' messages: the
    reconciler re-sends what the database says is queued, and each job runs exactly once."""
    jobs = [_submit(private.client, LONG_ROWS if i == 0 else SHORT_ROWS) for i in range(3)]
    _wait_training(private.client, jobs[0])
    private.broker().flushall()
    flushed_at = time.time()
    for job_id in jobs:
        done = _final(private.client, job_id)
        assert done.status == "succeeded", done.error
        assert done.finished_at >= int(flushed_at)  # the wire's finished_at is whole seconds
        assert _starts(private.client, job_id) == 1
    resent = [job_id for job_id in jobs[1:] if any("broker lost" in m for m in _messages(private.client, job_id))]
    assert resent, "the flushed queue held the waiting jobs' messages; the reconciler must have re-sent them"


def test_redis_flushed_with_a_queued_export(private):
    """FLUSHALL while an export waits for a worker (stopped here): with no request after, the
    reconciler re-sends it from PostgreSQL, and the export runs once and succeeds."""
    job_id = _submit(private.client, SHORT_ROWS)
    assert _final(private.client, job_id).status == "succeeded"
    private.service.processes["worker"].terminate()
    private.service.processes["worker"].wait()
    url = f"{private.service.url}/v1/fine_tuning/jobs/{job_id}/export"
    headers = {"Authorization": f"Bearer {private.client.api_key}"}
    export = httpx.post(url, headers=headers)
    assert export.status_code == 202, export.text
    assert export.json()["id"].encode() in b"".join(private.broker().lrange("tuneforge.faults", 0, -1))
    private.broker().flushall()
    flushed_at = time.time()
    private.service.start_worker()
    done = wait_for(lambda: httpx.get(url, headers=headers).json(), lambda e: e["status"] in ("succeeded", "failed"),
                    timeout=180)
    assert done["status"] == "succeeded", done["error"]
    assert done["finished_at"] >= int(flushed_at) and done["files"]
    with psycopg.connect(private.service.env["TUNEFORGE_DATABASE_URL"]) as db:
        row = db.execute("select attempt from job_exports where id = %s", (export.json()["id"],)).fetchone()
    assert row == (1,)


def test_redis_crash_and_restart(private):
    """Redis SIGKILLed while a job runs: the API keeps serving (its request-rate check fails open)
    and accepts a new job into PostgreSQL; Redis back 2 s later on the same port, the worker
    reconnects and both jobs finish, each once."""
    private.service.cli("tenants", "limits", "faults", "--requests-per-second", "100")
    running = _submit(private.client, LONG_ROWS)
    _wait_training(private.client, running)
    private.redis.crash()
    crashed_at = time.time()
    assert private.client.fine_tuning.jobs.retrieve(running).status == "running"
    accepted = _submit(private.client, SHORT_ROWS)  # the broker is down: the job waits in PostgreSQL
    assert private.client.fine_tuning.jobs.retrieve(accepted).status == "queued"
    time.sleep(max(0.0, crashed_at + 2 - time.time()))
    private.redis.start()
    for job_id in (running, accepted):
        done = _final(private.client, job_id)
        assert done.status == "succeeded", done.error
        assert done.finished_at >= int(crashed_at + 2)  # whole seconds on the wire
        assert _starts(private.client, job_id) == 1



def _stored(private: Private) -> set[str]:
    root = private.data_dir / "files"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.parametrize("moment", ["receiving the body", "writing the bytes"])
def test_api_killed_during_upload(private, moment):
    """SIGKILL the API while it receives an upload, or once its bytes start to land on disk (a
    partial temp file, or the whole file before its row commits): no file row appears, and the
    restarted API's sweeper removes every byte no row owns."""
    rows = make_classification_rows(200_000 if moment == "writing the bytes" else 20_000, seed=7)
    body, content_type = multipart_upload(jsonl(rows), filename="big.jsonl")
    api, before = private.service.processes["api"], _stored(private)
    with socket.create_connection(("127.0.0.1", private.service.port)) as sock:
        sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {private.client.api_key}\r\n"
                      f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        if moment == "receiving the body":
            sock.sendall(body[: len(body) // 2])
            time.sleep(0.5)
        else:
            sock.sendall(body)
            wait_for(lambda: _stored(private) - before, bool, timeout=60, interval=0.001)
        api.kill()
        api.wait()
    left = _stored(private) - before
    private.service.start_api()
    assert not [f for f in private.client.files.list(limit=100).data if f.filename == "big.jsonl"]
    wait_for(lambda: _stored(private) - before, lambda extra: not extra, timeout=30)
    if moment == "writing the bytes":
        assert left, "the kill was meant to land once bytes were on disk"


def test_stored_bytes_are_checksummed_on_read(private):
    """Bytes damaged in storage are refused on read (the worker refuses them the same way)."""
    good = private.client.files.create(file=("ok.jsonl", io.BytesIO(json.dumps(SHORT_ROWS[0]).encode() + b"\n")),
                                       purpose="fine-tune")
    headers = {"Authorization": f"Bearer {private.client.api_key}"}
    content = httpx.get(f"{private.service.url}/v1/files/{good.id}/content", headers=headers)
    assert content.status_code == 200
    assert content.headers["x-checksum-sha256"] == good.model_extra["sha256"] == hashlib.sha256(content.content).hexdigest()
    damaged = next((private.data_dir / "files").rglob(good.id))
    damaged.write_bytes(damaged.read_bytes()[:-2] + b"\n\n")
    refused = httpx.get(f"{private.service.url}/v1/files/{good.id}/content", headers=headers)
    assert refused.status_code == 500 and refused.json()["error"]["code"] == "file_corrupted"


@pytest.fixture(params=["artifacts", "checkpoints"])
def full_disk(request, private) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted over the artifacts or the checkpoints dir: a real ENOSPC there."""
    target = private.data_dir / request.param
    target.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def test_disk_full_while_writing(private, full_disk):
    """The artifact (or a checkpoint) does not fit: the job fails as `disk_full`, no artifact is
    listed, the partial files are removed, and the worker goes on serving."""
    method = {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 1, "batch_size": 8, "max_length": 16, "checkpoint_every": 2}}}
    job_id = _submit(private.client, SHORT_ROWS, method)
    done = _final(private.client, job_id)
    assert done.status == "failed" and done.error.code == "disk_full", done.error
    assert "disk space" in done.error.message
    listing = httpx.get(f"{private.service.url}/v1/fine_tuning/jobs/{job_id}/artifacts",
                        headers={"Authorization": f"Bearer {private.client.api_key}"}).json()
    assert listing["data"] == []
    assert not [p for p in full_disk.rglob("*") if p.is_file()]
    assert private.service.processes["worker"].poll() is None
