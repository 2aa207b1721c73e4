"""Slow-upload (slowloris) protection, end to end: a real uvicorn server and raw sockets, because
only a real server shows what a stalled or trickling client actually gets back (and when)."""
from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import auth, classification_rows, jsonl, multipart_upload
from tests.conftest import new_tenant
from tests.harness import Service

IDLE_TIMEOUT = 1.0
MIN_RATE = 200.0
CONTENT_TYPE = multipart_upload(b"")[1]


@pytest.fixture(scope="module")
def server(database, data_dir) -> Iterator[int]:
    """`tuneforge api` with a 1 s idle timeout and 200 B/s minimum rate; yields its port."""
    env = dict(os.environ, TUNEFORGE_BODY_IDLE_TIMEOUT=str(IDLE_TIMEOUT), TUNEFORGE_BODY_MIN_RATE=str(MIN_RATE),
               TUNEFORGE_MAX_UPLOAD_BYTES="4096")
    api = Service(env)
    try:
        api.start_api("--no-maintenance")
        yield api.port
    finally:
        api.stop()


def _multipart(content: bytes) -> bytes:
    return multipart_upload(content)[0]


def _open(port: int, path: str, key: str, content_type: str, length: int | None) -> socket.socket:
    """A connection that has sent a POST's headers and none of its body yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: {content_type}\r\n{framing}\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)) and (chunk := sock.recv(65536)):
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


def _assert_timed_out(sock: socket.socket) -> dict:
    status, headers, body = _read_response(sock)
    assert status == 408, body
    assert body["error"]["code"] == "request_timeout" and "bytes/s" in body["error"]["message"], body
    assert headers.get("connection") == "close"
    assert sock.recv(1) == b""  # and the server hung up: the rest of the body is never read
    return body


def _stored_files(key: str, port: int) -> list:
    return httpx.get(f"http://127.0.0.1:{port}/v1/files", headers=auth(key), timeout=10).json()["data"]


def test_stalled_upload_is_408_and_stores_nothing(server, data_dir: Path):
    tenant_id, key = new_tenant()
    body = _multipart(jsonl(classification_rows(40)))
    start = time.monotonic()
    with _open(server, "/v1/files", key, CONTENT_TYPE, len(body)) as sock:
        sock.sendall(body[: len(body) // 2])
        _assert_timed_out(sock)
    assert time.monotonic() - start < 5
    assert _stored_files(key, server) == []
    tenant_dir = data_dir / "files" / tenant_id  # no bytes either, not even a temporary file
    assert not tenant_dir.exists() or not any(tenant_dir.rglob("*"))


def test_trickled_upload_under_the_idle_timeout_is_cut_off_by_the_rate(server):
    _, key = new_tenant()
    body = _multipart(jsonl(classification_rows(40)))
    start = time.monotonic()
    with _open(server, "/v1/files", key, CONTENT_TYPE, len(body)) as sock:
        for i in range(40):  # one byte per 0.5 s: never idle for 1 s, but 2 B/s is far below 200
            if select.select([sock], [], [], 0.5)[0]:
                break
            sock.sendall(body[i:i + 1])
        body_json = _assert_timed_out(sock)
    assert IDLE_TIMEOUT < time.monotonic() - start < 10
    assert "too slowly" in body_json["error"]["message"]
    assert _stored_files(key, server) == []


def test_stalled_json_body_is_408(server):
    _, key = new_tenant()
    body = json.dumps({"model": "minilm-l6", "training_file": "file-nope", "method": {"type": "lora"}}).encode()
    with _open(server, "/v1/fine_tuning/jobs", key, "application/json", len(body)) as sock:
        sock.sendall(body[:20])
        _assert_timed_out(sock)


def test_oversize_chunked_upload_is_413_not_a_parse_error(server):
    """A refusal raised while the form is parsed reaches the client as itself, not as a generic 400."""
    _, key = new_tenant()
    head = _multipart(b"").rsplit(b"\r\n--", 1)[0]  # the form up to the file's content, which never ends
    chunks = [head] + [b"x" * 65536] * 20  # 1.25 MiB, over the 4 KiB upload limit plus the multipart allowance
    with _open(server, "/v1/files", key, CONTENT_TYPE, None) as sock:
        try:
            for chunk in chunks:
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server refused and hung up mid-body; its answer is already in our buffer
        status, _, body = _read_response(sock)
    assert status == 413 and body["error"]["code"] == "payload_too_large", body


def test_full_speed_upload_still_succeeds(server):
    _, key = new_tenant()
    response = httpx.post(f"http://127.0.0.1:{server}/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                          files={"file": ("train.jsonl", jsonl(classification_rows(40)))}, timeout=10)
    assert response.status_code == 200, response.text
    assert [f["id"] for f in _stored_files(key, server)] == [response.json()["id"]]


def test_refusal_that_escapes_the_app_is_still_answered(monkeypatch):
    """An app that lets the refusal escape (no handler turned it into a response) still gets a 408 out."""
    from app.api.limits import LimitsMiddleware
    from app.core.config import get_settings

    monkeypatch.setattr(get_settings(), "body_idle_timeout", 0.2)
    chunks = [{"type": "http.request", "body": b"{", "more_body": True}]
    sent: list[dict] = []

    async def receive() -> dict:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(60)  # the client stalls
        raise AssertionError("the idle timeout did not fire")

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass

    scope = {"type": "http", "method": "POST", "path": "/v1/fine_tuning/jobs", "headers": [], "query_string": b""}
    asyncio.run(LimitsMiddleware(app)(scope, receive, send))
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"


def test_ten_megabyte_header_is_refused_and_the_server_keeps_serving(server):
    """A 10 MB header block is refused once a few hundred KB are buffered (h11's bound): a 4xx,
    and the next request is served."""
    _, key = new_tenant()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(f"GET /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n".encode())
        try:
            for _ in range(10):
                sock.sendall(b"X-Fill: " + b"a" * (1024 * 1024) + b"\r\n")
            sock.sendall(b"\r\n")
        except OSError:
            pass  # refused and closed before we finished sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 4"), answer[:300]
    assert _stored_files(key, server) == []
