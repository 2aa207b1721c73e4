"""A small typed client for tuneforge's own API (files, jobs and their event stream, artifacts, models,
predictions). Every failure is a ClientError carrying the server's message, code and param, so the CLI
shows one line and a script catches one type."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx
from pydantic import BaseModel

from app.client.errors import ClientError
from app.client.sse import messages
from app.client.types import Artifact, FileObject, Job, JobEvent, Model, Page, PredictionList

W = TypeVar("W", bound=BaseModel)
Progress = Callable[[int], None]  # called with the bytes just sent or received
STREAM_TIMEOUT = httpx.Timeout(30.0, read=300.0)  # the server sends a keep-alive comment well within `read`


class ProgressFile:
    """A file httpx reads in chunks for a multipart upload; each chunk read is reported to `progress`.
    `fileno`, `seek` and `tell` pass through, so httpx still knows the length before sending."""

    def __init__(self, file: BinaryIO, progress: Progress):
        self._file, self._progress = file, progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        if chunk:
            self._progress(len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class TuneforgeClient:
    """One tenant's view of one service: `TuneforgeClient("http://127.0.0.1:8000", "tf-...")`."""

    def __init__(self, url: str, api_key: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> TuneforgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(response)
        return response

    def _unreachable(self, exc: httpx.HTTPError) -> ClientError:
        return ClientError(f"cannot reach tuneforge at {self.url}: {exc or type(exc).__name__}")

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = None
        raise ClientError.from_response(response.status_code, body, response.text)

    def _get(self, cls: type[W], path: str, **params: Any) -> W:
        query = {k: v for k, v in params.items() if v is not None}
        return cls.model_validate(self._request("GET", path, params=query).json())

    def _post(self, cls: type[W], path: str, body: dict[str, Any] | None = None,
              idempotency_key: str | None = None) -> W:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return cls.model_validate(self._request("POST", path, json=body, headers=headers).json())

    @contextmanager
    def _stream(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("GET", path, params=params, headers=headers, timeout=STREAM_TIMEOUT) as response:
                self._check(response)
                yield response
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    # -- files ---------------------------------------------------------------------------------------
    def upload_file(self, path: Path, purpose: str = "fine-tune", progress: Progress | None = None,
                    idempotency_key: str | None = None) -> FileObject:
        """POST /v1/files with the file streamed from disk; `progress` hears every chunk sent."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with open(path, "rb") as f:
            part = ProgressFile(f, progress) if progress else f
            response = self._request("POST", "/v1/files", data={"purpose": purpose}, headers=headers,
                                     files={"file": (Path(path).name, part, "application/jsonl")})
        return FileObject.model_validate(response.json())

    def list_files(self, limit: int = 100, after: str | None = None, purpose: str | None = None) -> Page[FileObject]:
        return self._get(Page[FileObject], "/v1/files", limit=limit, after=after, purpose=purpose)

    def get_file(self, file_id: str) -> FileObject:
        return self._get(FileObject, f"/v1/files/{file_id}")

    # -- jobs ----------------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> Job:
        """POST /v1/fine_tuning/jobs with the body as given (model, training_file, method, …)."""
        return self._post(Job, "/v1/fine_tuning/jobs", body, idempotency_key)

    def list_jobs(self, limit: int = 20, after: str | None = None,
                  metadata: dict[str, str] | None = None) -> Page[Job]:
        filters = {f"metadata[{k}]": v for k, v in (metadata or {}).items()}
        return self._get(Page[Job], "/v1/fine_tuning/jobs", limit=limit, after=after, **filters)

    def get_job(self, job_id: str) -> Job:
        return self._get(Job, f"/v1/fine_tuning/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> Job:
        return self._post(Job, f"/v1/fine_tuning/jobs/{job_id}/cancel")

    def pause_job(self, job_id: str) -> Job:
        return self._post(Job, f"/v1/fine_tuning/jobs/{job_id}/pause")

    def resume_job(self, job_id: str) -> Job:
        return self._post(Job, f"/v1/fine_tuning/jobs/{job_id}/resume")

    def list_events(self, job_id: str, limit: int = 20, after: str | None = None) -> Page[JobEvent]:
        """A page of the job's events, newest first (OpenAI's order)."""
        return self._get(Page[JobEvent], f"/v1/fine_tuning/jobs/{job_id}/events", limit=limit, after=after)

    def stream_events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent | Job]:
        """One connection to the job's Server-Sent Events: its events oldest first (after `last_event_id`),
        then the finished Job once it ends. Returns without the Job when the server closes the stream
        early (its time limit): reconnect with the last event's id, as `follow` does."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        with self._stream(f"/v1/fine_tuning/jobs/{job_id}/events", headers=headers, stream="true") as response:
            for message in messages(response.iter_lines()):
                if message.event == "done":
                    yield Job.model_validate_json(message.data)
                    return
                if message.id and message.data:
                    yield JobEvent.model_validate_json(message.data)

    def follow(self, job_id: str, last_event_id: str | None = None, attempts: int = 5,
               retry_delay: float = 3.0) -> Iterator[JobEvent | Job]:
        """`stream_events` until the job ends, reconnecting with Last-Event-ID when the connection
        breaks or the server ends the stream early; ClientError after `attempts` failures in a row."""
        failures = 0
        while True:
            try:
                for item in self.stream_events(job_id, last_event_id):
                    failures = 0
                    if isinstance(item, Job):
                        yield item
                        return
                    last_event_id = item.id
                    yield item
            except ClientError as exc:
                failures += 1
                if exc.status_code is not None or failures >= attempts:
                    raise
                time.sleep(retry_delay)

    # -- artifacts, models, predictions --------------------------------------------------------------
    def list_artifacts(self, job_id: str) -> list[Artifact]:
        """Every file of the job's artifact with its size and sha256, as the server recorded them."""
        return self._get(Page[Artifact], f"/v1/fine_tuning/jobs/{job_id}/artifacts").data

    @contextmanager
    def artifacts_tar(self, job_id: str) -> Iterator[tuple[int | None, Iterator[bytes]]]:
        """The job's ready folder as an uncompressed tar stream: (its length when known, its chunks)."""
        with self._stream(f"/v1/fine_tuning/jobs/{job_id}/artifacts.tar") as response:
            length = response.headers.get("Content-Length")
            yield (int(length) if length else None), response.iter_bytes()

    def list_models(self) -> list[Model]:
        return self._get(Page[Model], "/v1/models").data

    def predict(self, model: str, inputs: list[str | dict[str, Any]],
                max_new_tokens: int | None = None) -> PredictionList:
        """POST /v1/predictions: a label and per-label probabilities for each input, in order; an input
        is a text or, for a model trained on pairs, {"text": ..., "text_pair": ...}. text_to_text models
        answer with the generated `text` (at most `max_new_tokens`, default the job's); a decoder trained on chat
        rows also takes conversations, {"messages": [{"role", "content"}, ...]}, and answers the assistant's reply."""
        body: dict = {"model": model, "input": inputs}
        if max_new_tokens is not None:
            body["max_new_tokens"] = max_new_tokens
        return self._post(PredictionList, "/v1/predictions", body)
