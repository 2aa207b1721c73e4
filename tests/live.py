"""An ASGI app served by uvicorn in a thread of the test process: real sockets on the test database,
for clients that need them (the official `openai` client, streams read while they run)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.core.embedded import free_port


@contextmanager
def serve(app, timeout: float = 20) -> Iterator[str]:
    """Yields the base URL once the server accepts connections; stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
