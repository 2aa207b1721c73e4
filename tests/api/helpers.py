"""Small helpers shared by API tests (no mocks: the real app, database and broker)."""
from __future__ import annotations

import json
from typing import Any


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def classification_rows(n: int = 24, labels: tuple[str, ...] = ("pos", "neg")) -> list[dict[str, Any]]:
    words = {"pos": "good great happy fine", "neg": "bad awful sad poor", "neu": "table chair door"}
    return [{"text": f"{words.get(labels[i % len(labels)], 'x')} item {i}", "label": labels[i % len(labels)]}
            for i in range(n)]


MULTIPART_BOUNDARY = "tuneforge-test-boundary"


def multipart_upload(content: bytes, filename: str = "train.jsonl") -> tuple[bytes, str]:
    """A raw POST /v1/files body and its Content-Type, for tests that send bytes over a socket."""
    body = (f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


def upload(client, key: str, content: bytes, filename: str = "train.jsonl", purpose: str = "fine-tune"):
    return client.post("/v1/files", headers=auth(key), files={"file": (filename, content)},
                       data={"purpose": purpose})


def assert_error(response, status: int, *fragments: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment.lower() in error["message"].lower(), error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error
