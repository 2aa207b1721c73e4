"""Real `tuneforge api` / `tuneforge worker` processes, for the end-to-end tests and the benchmarks.

One harness for both, so what the benchmarks measure is the deployment the tests check. It sits in
tests/ because the benchmarks already put the repository root on sys.path (they import
tests.tiny_models), and it imports neither pytest nor torch, so a benchmark uses it as plain code.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
TF = [sys.executable, "-m", "app.cli"]


class ServiceError(RuntimeError):
    """A `tuneforge` process failed or never became healthy; the message says where to look."""


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `tuneforge ARGS` to completion on `env`; its stdout, or ServiceError carrying its stderr."""
    done = subprocess.run([*TF, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise ServiceError(f"tuneforge {' '.join(args)} exited {done.returncode}: {done.stderr or done.stdout}")
    return done.stdout


class Background:
    """A command running in its own session (a signal to it reaches no one else), its stdout and stderr
    collected line by line by a thread, so it never blocks on a full pipe and a test can wait for a line."""

    def __init__(self, args: list[str], env: dict[str, str], name: str | None = None):
        self.name = name or " ".join(Path(a).name for a in args[:3])
        # SIGINT back to its default in the child: a test run started in the background (`cmd &` in a script, as CI
        # may be) ignores SIGINT, children inherit that, and Python then installs no KeyboardInterrupt handler
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def wait_for(self, fragment: str, timeout: float = 180) -> str:
        """The latest line holding `fragment`, once one has been printed; AssertionError with the output
        if none comes within `timeout` or the command ends without one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := [line for line in list(self.lines) if fragment in line]:
                return found[-1]
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the reader thread take the last lines
                break
            time.sleep(0.2)
        raise AssertionError(f"no {fragment!r} in the output of {self.name}:\n{''.join(self.lines)[-4000:]}")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60, interval: float = 0.3) -> bool:
    """Poll `url` until it answers 200; False once `proc` has exited or `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False


@dataclass
class Service:
    """An api and its workers on `env` (database, Redis, queue, data dir), all logging to `log_path`
    (default: service.log in the data dir). `processes` names them "api", "worker", "worker-2", …"""

    env: dict[str, str]
    url: str = ""
    log_path: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url = self.url or f"http://127.0.0.1:{free_port()}"
        self.log_path = self.log_path or Path(self.env["TUNEFORGE_DATA_DIR"]) / "service.log"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the handle
            proc = subprocess.Popen([*TF, *args], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = proc
        return proc

    def start_api(self, *options: str) -> subprocess.Popen:
        """Start `tuneforge api` on this service's port and wait until it answers /healthz."""
        proc = self._spawn("api", "api", "--port", str(self.port), *options)
        if not wait_http(f"{self.url}/healthz", proc):
            raise ServiceError(f"the API did not become healthy; see {self.log_path}:\n{self._log_tail()}")
        return proc

    def start_worker(self, name: str = "worker", loglevel: str = "INFO") -> subprocess.Popen:
        return self._spawn(name, "worker", "--loglevel", loglevel)

    def cli(self, *args: str) -> str:
        return cli(self.env, *args)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every process (workers shut down warm), SIGKILL what is still up after `grace` s."""
        live = [proc for proc in self.processes.values() if proc.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""


def start_service(env: dict[str, str], workers: int = 1, worker_loglevel: str = "INFO",
                  log_path: Path | None = None) -> Service:
    """api (healthy) + `workers` workers on `env`; everything started is stopped again if one fails."""
    svc = Service(env, log_path=log_path)
    try:
        svc.start_api()
        for i in range(workers):
            svc.start_worker("worker" if i == 0 else f"worker-{i + 1}", worker_loglevel)
    except BaseException:
        svc.stop()
        raise
    return svc
