"""Files, artifacts and base models on S3 (TUNEFORGE_ARTIFACT_URL=s3://…) against a real S3 HTTP server:
moto's standalone server in its own process, reached through s3fs. The API and the worker run as separate
processes with separate data directories (two hosts that share only PostgreSQL, Redis and the bucket), so
anything that went through a local disk instead of the store fails here."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.core.embedded import free_port
from tests.api.helpers import classification_rows, jsonl
from tests.conftest import RUN_ID, new_tenant, quiesce_jobs
from tests.e2e.conftest import wait_for
from tests.harness import Background, Service, wait_http

BUCKET, PREFIX = "tuneforge-test", "deploy"
FINAL = ("succeeded", "failed", "cancelled")
ORPHAN_GRACE = 20  # seconds; an upload here takes under 5


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free port, its bucket, and an s3fs filesystem on it."""
    port = free_port()
    server = Background([sys.executable, "-m", "moto.server", "-p", str(port)], dict(os.environ), name="moto")
    endpoint = f"http://127.0.0.1:{port}"
    if not wait_http(f"{endpoint}/", server.proc, timeout=60):
        server.proc.kill()
        pytest.fail("moto server did not start:\n" + "".join(server.lines)[-2000:])
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True,
                           use_listings_cache=False)
    fs.mkdir(BUCKET)
    yield fs, credentials
    server.proc.terminate()
    server.proc.wait(timeout=20)


def host_env(credentials: dict, data_dir: Path) -> dict[str, str]:
    return dict(os.environ, **credentials, TUNEFORGE_ARTIFACT_URL=f"s3://{BUCKET}/{PREFIX}",
                TUNEFORGE_DATA_DIR=str(data_dir), TUNEFORGE_QUEUE_NAME=f"tuneforge.s3.{RUN_ID}",
                TUNEFORGE_ORPHAN_GRACE=str(ORPHAN_GRACE))


@pytest.fixture(scope="module")
def hosts(s3, database, tmp_path_factory):
    """An API on one data dir and a worker on another, both on the bucket."""
    quiesce_jobs()
    _, credentials = s3
    api_dir, worker_dir = tmp_path_factory.mktemp("api-host"), tmp_path_factory.mktemp("worker-host")
    api = Service(host_env(credentials, api_dir))
    api.start_api()
    worker = Service(host_env(credentials, worker_dir), url=api.url)
    worker.start_worker()
    yield api, worker, api_dir, worker_dir
    worker.stop()
    api.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(url: str, key: str, body: bytes) -> dict:
    response = httpx.post(f"{url}/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                          files={"file": ("train.jsonl", body)}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def objects(fs, under: str) -> dict[str, int]:
    return {path.removeprefix(f"{BUCKET}/{PREFIX}/"): info["size"]
            for path, info in fs.find(f"{BUCKET}/{PREFIX}/{under}", detail=True).items()}


def test_upload_job_and_downloads_go_through_the_bucket(s3, hosts, tmp_path):
    fs, _ = s3
    api, worker, api_dir, worker_dir = hosts
    tenant_id, key = new_tenant()
    from tests.tiny_models import make_tiny_bert

    model_dir = make_tiny_bert(tmp_path / "s3-tiny", seed=7)
    api.cli("models", "add", "s3-tiny", str(model_dir))  # registered on the API host: uploaded by content hash
    body = jsonl(classification_rows(24))
    file = upload(api.url, key, body)
    assert objects(fs, "files") == {f"files/{tenant_id}/{file['id']}": len(body)}
    assert not (api_dir / "files").exists()  # the API host keeps no file store of its own

    url = f"{api.url}/v1/files/{file['id']}/content"
    assert httpx.get(url, headers=auth(key)).content == body
    part = httpx.get(url, headers={**auth(key), "Range": "bytes=5-20"})
    assert part.status_code == 206 and part.content == body[5:21]
    assert part.headers["content-range"] == f"bytes 5-20/{len(body)}"
    assert httpx.get(url, headers={**auth(key), "Range": f"bytes={len(body) + 5}-"}).status_code == 416

    job = httpx.post(f"{api.url}/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": "s3-tiny", "training_file": file["id"], "seed": 1,
        "method": {"type": "lora", "lora": {"hyperparameters": {"n_epochs": 1}}}}).json()
    done = wait_for(lambda: httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}", headers=auth(key)).json(),
                    lambda j: j["status"] in FINAL, timeout=300)
    assert done["status"] == "succeeded", done

    [base_copy] = [p for p in (worker_dir / "cache" / "base_models").iterdir()  # fetched from the bucket, one copy
                   if p.name != ".locks"]  # (beside the in-use locks of app.base_models.cache)
    assert base_copy.is_dir() and not base_copy.is_symlink() and (base_copy / "config.json").is_file()
    assert (worker_dir / "cache" / "files" / file["sha256"]).read_bytes() == body

    listing = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}/artifacts", headers=auth(key)).json()["data"]
    stored = objects(fs, f"artifacts/{tenant_id}/{job['id']}")
    assert {f"artifacts/{tenant_id}/{job['id']}/{a['name']}" for a in listing} <= set(stored)
    for item in listing:
        got = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}/artifacts/{item['name']}", headers=auth(key))
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == item["sha256"]
        assert got.headers["x-checksum-sha256"] == item["sha256"]
    weights = next(a for a in listing if a["name"].endswith(".safetensors"))
    whole = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}/artifacts/{weights['name']}", headers=auth(key))
    tail = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}/artifacts/{weights['name']}",
                     headers={**auth(key), "Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == whole.content[100:]

    tar = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job['id']}/artifacts.tar", headers=auth(key))
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        names = {m.name: hashlib.sha256(archive.extractfile(m).read()).hexdigest() for m in archive.getmembers()}
    assert names == {f"{job['id']}/{a['name']}": a["sha256"] for a in listing}
    assert not (api_dir / "artifacts" / tenant_id).exists()  # streamed from the bucket, never copied here

    predicted = httpx.post(f"{api.url}/v1/predictions", headers=auth(key), timeout=120,
                           json={"model": done["fine_tuned_model"], "input": ["good great happy", "bad awful"]})
    assert predicted.status_code == 200, predicted.text
    fetched = api_dir / "artifacts" / tenant_id / job["id"]  # predictions read files: fetched once, whole
    assert {p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()} == {
        a["name"] for a in listing}


def test_api_killed_mid_upload_leaves_nothing_listed(s3, hosts, tmp_path):
    fs, credentials = s3
    api, *_ = hosts
    tenant_id, key = new_tenant()
    row = json.dumps({"text": "good " * 60, "label": "pos"}) + "\n"
    body = (row * (24 * 1024 * 1024 // len(row))).encode()  # 24 MiB: a multipart upload of 3 parts
    doomed = Service(host_env(credentials, tmp_path / "doomed-host"))
    proc = doomed.start_api("--no-maintenance")
    threading.Thread(target=lambda: _quiet_upload(doomed.url, key, body), daemon=True).start()

    def uploading() -> bool:
        return any(u["Key"].startswith(f"{PREFIX}/files/{tenant_id}/") for u in fs.list_multipart_uploads(BUCKET))
    wait_for(uploading, bool, timeout=120, interval=0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert httpx.get(f"{api.url}/v1/files", headers=auth(key)).json()["data"] == []
    assert objects(fs, f"files/{tenant_id}") == {}
    time.sleep(1)
    assert objects(fs, f"files/{tenant_id}") == {}  # nothing completes after the process is gone

    # the other API's maintenance pass aborts the upload left behind once it has seen it unfinished for
    # orphan_grace seconds
    wait_for(uploading, lambda still: not still, timeout=ORPHAN_GRACE + 60)


def _quiet_upload(url: str, key: str, body: bytes) -> None:
    try:
        httpx.post(f"{url}/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                   files={"file": ("big.jsonl", body)}, timeout=300)
    except httpx.HTTPError:
        pass  # the server is killed mid-request


def test_worker_killed_mid_artifact_upload_resumes_and_shows_no_half_artifact(s3, hosts, tmp_path):
    from app.core.object_store import MARKER
    from tests.tiny_models import make_tiny_bert

    fs, _ = s3
    api, worker, _, _ = hosts
    tenant_id, key = new_tenant()
    api.cli("models", "add", "s3-wide", str(make_tiny_bert(tmp_path / "s3-wide", hidden=512, seed=3)))
    file = upload(api.url, key, jsonl(classification_rows(16)))
    job = httpx.post(f"{api.url}/v1/fine_tuning/jobs", headers=auth(key), json={  # ~18 MB of weights: 3 parts
        "model": "s3-wide", "training_file": file["id"], "seed": 1, "method": {"type": "supervised", "supervised": {
            "hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}}}).json()
    prefix = f"{PREFIX}/artifacts/{tenant_id}/{job['id']}/"

    def uploading() -> bool:
        return any(u["Key"].startswith(prefix) for u in fs.list_multipart_uploads(BUCKET))
    wait_for(uploading, bool, timeout=300, interval=0.05)
    worker.processes["worker"].kill()  # SIGKILL mid-upload: no cleanup
    worker.processes["worker"].wait()

    url = f"{api.url}/v1/fine_tuning/jobs/{job['id']}"
    assert httpx.get(url, headers=auth(key)).json()["status"] == "running"
    assert httpx.get(f"{url}/artifacts", headers=auth(key)).json()["data"] == []
    assert httpx.get(f"{url}/artifacts.tar", headers=auth(key)).status_code == 409
    assert f"artifacts/{tenant_id}/{job['id']}/{MARKER}" not in objects(fs, f"artifacts/{tenant_id}/{job['id']}")

    worker.start_worker()
    done = wait_for(lambda: httpx.get(url, headers=auth(key)).json(), lambda j: j["status"] in FINAL, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    events = httpx.get(f"{url}/events", params={"limit": 100}, headers=auth(key)).json()["data"]
    assert any("attempt 2" in e["message"] for e in events)
    listing = httpx.get(f"{url}/artifacts", headers=auth(key)).json()["data"]
    marker = json.loads(fs.cat_file(f"{BUCKET}/{prefix}{MARKER}"))
    assert sorted(map(tuple, marker["files"])) == sorted((a["name"], a["bytes"], a["sha256"]) for a in listing)
    for item in listing:
        got = httpx.get(f"{url}/artifacts/{item['name']}", headers=auth(key))
        assert hashlib.sha256(got.content).hexdigest() == item["sha256"]
