"""A real service: `tuneforge api` and `tuneforge worker` as separate processes on the real
PostgreSQL and Redis, with their own queue so other tests' messages never reach this worker."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.core.embedded import free_port
from tests.conftest import RUN_ID, new_tenant, quiesce_jobs


@dataclass
class Service:
    url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen]

    def start_worker(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "INFO"],
                                env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.processes["worker"] = proc
        return proc

    def start_api(self, *options: str) -> subprocess.Popen:
        """Start `tuneforge api` on this service's port and wait until it answers /healthz."""
        port = self.url.rsplit(":", 1)[1]
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", port, *options], env=self.env,
                                stdout=self.log, stderr=subprocess.STDOUT)
        self.processes["api"] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail("the API did not become healthy; see service.log in the data dir")

    @property
    def log(self):
        return open(os.path.join(self.env["TUNEFORGE_DATA_DIR"], "service.log"), "ab")

    def stop(self) -> None:
        for proc in self.processes.values():
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_service(env: dict[str, str]) -> Service:
    """api + one worker on `env` (its database, Redis, queue and data dir)."""
    svc = Service(url=f"http://127.0.0.1:{free_port()}", env=env, processes={})
    try:
        svc.start_api()
        svc.start_worker()
    except BaseException:
        svc.stop()
        raise
    return svc


@pytest.fixture(scope="module")
def service(database, registered_tiny_model, data_dir) -> Iterator[Service]:
    quiesce_jobs()
    svc = start_service(dict(os.environ, TUNEFORGE_QUEUE_NAME=f"tuneforge.e2e.{RUN_ID}"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def openai_client(service):
    from openai import OpenAI

    _, key = new_tenant()
    return OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=60)


def wait_for(fetch, predicate, timeout: float = 180, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if predicate(value):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out; last value: {value}")
