"""The OpenAPI document says what the server enforces, so `/docs` and generated clients are exact.

FastAPI derives most of it from the routes; this adds what it cannot see: NUL characters are refused in
paths and query strings (LimitsMiddleware), bodies the endpoints parse themselves (their domain's
`document_*` functions), and links from each creating operation to the operations that take the id it
returns (so a client, or schemathesis's stateful phase, can follow them).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

NO_NUL = "^[^\\x00]*$"  # LimitsMiddleware refuses %00 anywhere in the path or query string
JOB = "/v1/fine_tuning/jobs/{job_id}"


@dataclass(frozen=True)
class Link:
    """`producer`'s `status` response names an object whose id (at `source`) fills `param` of every
    operation at or below `under`, but `skip`."""

    producer: tuple[str, str]
    status: str
    param: str
    source: str
    under: str
    skip: frozenset[tuple[str, str]] = frozenset()


LINKS = (
    Link(("post", "/v1/files"), "200", "file_id", "$response.body#/id", "/v1/files/{file_id}"),
    # a job's export exists once requested (POST …/export links to it), not with the job
    Link(("post", "/v1/fine_tuning/jobs"), "200", "job_id", "$response.body#/id", JOB,
         frozenset({("get", f"{JOB}/export")})),
    Link(("post", f"{JOB}/export"), "202", "job_id", "$request.path.job_id", f"{JOB}/export",
         frozenset({("post", f"{JOB}/export")})),
    Link(("get", "/v1/models"), "200", "model_id", "$response.body#/data/0/id", "/v1/models/{model_id}"),
    Link(("post", "/v1/admin/tenants"), "200", "tenant_id", "$response.body#/id", "/v1/admin/tenants/{tenant_id}"),
    Link(("post", "/v1/webhook_endpoints"), "200", "webhook_endpoint_id", "$response.body#/id",
         "/v1/webhook_endpoints/{webhook_endpoint_id}"),
)
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

Documenter = Callable[[dict[str, Any]], None]
_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# a downloaded file (FileResponse): whole, or the part a `Range: bytes=start-end` header asks for
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file's bytes; `X-Checksum-SHA256` is their sha256.", "content": _BYTES},
    206: {"description": "The byte range the `Range` header asked for (resume a broken download).",
          "content": _BYTES},
    416: {"description": "The `Range` lies outside the file."},
}


def _forbid_nul(openapi: dict[str, Any]) -> None:
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter["in"] in ("path", "query") and schema.get("type") == "string" and not {"pattern", "enum"} & set(schema):
                    schema["pattern"] = NO_NUL
                for variant in [] if "pattern" in schema else schema.get("anyOf", []):  # `str | None`
                    if variant.get("type") == "string" and "pattern" not in variant:
                        variant["pattern"] = NO_NUL
                if parameter.get("style") == "deepObject":
                    schema.setdefault("propertyNames", {"pattern": NO_NUL})
                    schema.get("additionalProperties", {}).setdefault("pattern", NO_NUL)


def _link_name(method: str, path: str) -> str:
    """GET /v1/fine_tuning/jobs/{job_id}/events -> GetFineTuningJobsJobIdEvents."""
    words = re.split(r"[^A-Za-z0-9]+", path.removeprefix("/v1/"))
    return method.title() + "".join(word.title() for word in words if word)


def _add_links(openapi: dict[str, Any]) -> None:
    for link in LINKS:
        method, path = link.producer
        producer = openapi["paths"].get(path, {}).get(method)
        if producer is None or link.status not in producer["responses"]:
            continue
        links = {
            _link_name(consumer_method, consumer_path): {
                "operationId": consumer["operationId"],
                "parameters": {link.param: link.source},
                "description": f"The {link.param} {method.upper()} {path} names.",
            }
            for consumer_path, operations in openapi["paths"].items()
            if consumer_path == link.under or consumer_path.startswith(link.under + "/")
            for consumer_method, consumer in operations.items()
            if consumer_method in HTTP_METHODS and (consumer_method, consumer_path) not in link.skip
        }
        if links:
            producer["responses"][link.status]["links"] = links


def install_openapi(app: FastAPI, *documenters: Documenter) -> None:
    """Replace `app.openapi` with FastAPI's document plus the above and each domain's `documenters`."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            for document_part in documenters:
                document_part(document)
            _forbid_nul(document)
            _add_links(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
