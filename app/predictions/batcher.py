"""One inference thread per process and the queue in front of it (dynamic batching, as in Clipper,
Crankshaw et al. 2017, and NVIDIA Triton's dynamic batcher).

Requests queue while a forward pass runs; the thread then takes everything waiting, up to `max_rows`
inputs, and hands it to `run` in one go, which batches what can share a forward pass. Only this
thread touches the models, so request threads never lock around them. A failure fails the requests
of that batch, never the thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from app.predictions.served import ServedModel

log = logging.getLogger(__name__)

Input = tuple[str | list[dict[str, str]], str | None]  # (text, or a conversation for chat-trained decoders; text_pair)


@dataclass
class Work:
    """One request: its model, its inputs, and the future its logits (one row per input) resolve."""

    served: ServedModel
    inputs: list[Input]
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, run: Callable[[list[Work]], Any], max_rows: int, name: str = "tuneforge-predictions"):
        self._run, self.max_rows, self._name = run, max_rows, name
        self._queue: queue.Queue[Work] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, work: Work) -> Future:
        self._ensure_thread()
        self._queue.put(work)
        return work.future

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _take(self) -> list[Work]:
        """The oldest waiting request, then whatever else waits, while it fits in `max_rows` inputs."""
        works = [self._queue.get()]
        rows = len(works[0].inputs)
        while rows < self.max_rows:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            works.append(work)
            rows += len(work.inputs)
        return works

    def _loop(self) -> None:
        while True:
            works = [w for w in self._take() if w.future.set_running_or_notify_cancel()]
            try:
                self._run(works)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive any one batch
                log.exception("prediction batch failed")
                for work in works:
                    if not work.future.done():
                        work.future.set_exception(exc)
