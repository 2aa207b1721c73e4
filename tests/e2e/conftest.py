"""A real service: `tuneforge api` and `tuneforge worker` as separate processes on the real
PostgreSQL and Redis, with their own queue so other tests' messages never reach this worker."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import RUN_ID, new_tenant, quiesce_jobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    @property
    def log(self):
        return open(os.path.join(self.env["TUNEFORGE_DATA_DIR"], "service.log"), "ab")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def service(database, registered_tiny_model, data_dir) -> Iterator[Service]:
    quiesce_jobs()
    port = free_port()
    env = dict(os.environ, TUNEFORGE_QUEUE_NAME=f"tuneforge.e2e.{RUN_ID}")
    svc = Service(url=f"http://127.0.0.1:{port}", env=env, processes={})
    api = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", str(port)], env=env,
                           stdout=svc.log, stderr=subprocess.STDOUT)
    svc.processes["api"] = api
    svc.start_worker()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{svc.url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        pytest.fail("the API did not become healthy; see service.log in the data dir")
    yield svc
    for proc in svc.processes.values():
        _stop(proc)


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
