"""`tuneforge up`: embedded PostgreSQL/Redis (unless URLs are set), migrations, the default tenant's
key, then the API and one worker, watched until one of them stops.

What it guarantees: the port is checked before anything starts (a busy default port is replaced by a
free one, and it says so); "up" is printed only once /healthz answers *and* the API process itself
listens on the port (not some other server that happens to hold it); the command exits non-zero as
soon as any child (API, worker, embedded server) dies; a second `up` on the same data directory is
refused; the default key is kept in a 0600 file and printed again on restart.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import typer

from app.client.config import export_lines
from app.core import instance

TF = [sys.executable, "-m", "app.cli"]
DEFAULT_PORT = 8000


class UpError(Exception):
    """`tuneforge up` cannot go on; the message is the one line the user sees."""


class Child(Protocol):
    def poll(self) -> int | None: ...


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, port: int | None) -> int:
    """`port` if given and free (else UpError); without one, 8000 or the next free port, said aloud."""
    if port is not None:
        if not port_free(host, port):
            raise UpError(f"port {port} on {host} is already in use (another server?); pass another --port, "
                          "or leave --port out to pick a free one")
        return port
    for candidate in range(DEFAULT_PORT, DEFAULT_PORT + 20):
        if port_free(host, candidate):
            if candidate != DEFAULT_PORT:
                typer.echo(f"port {DEFAULT_PORT} is in use; using port {candidate} instead")
            return candidate
    raise UpError(f"ports {DEFAULT_PORT}-{DEFAULT_PORT + 19} on {host} are all in use; pass a free --port")


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a listening socket on `port`."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


def dead_child(children: dict[str, Child]) -> tuple[str, int] | None:
    """(name, exit status) of the first child that has stopped, or None while all run."""
    for name, child in children.items():
        code = child.poll()
        if code is not None:
            return name, code
    return None


def wait_own_health(url: str, api: subprocess.Popen, port: int, children: dict[str, Child],
                    timeout: float = 180.0) -> None:
    """Until /healthz answers 200 from the API process we started; UpError if a child dies or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dead := dead_child(children):
            raise UpError(f"{dead[0]} exited with status {dead[1]} before tuneforge was up (see its output above)")
        try:
            healthy = httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and listens(api.pid, port):
            return
        time.sleep(0.5)
    raise UpError(f"the API did not answer {url}/healthz within {timeout:.0f} s")


def default_key(env: dict[str, str], tenant: str, data_dir: Path) -> tuple[str, str]:
    """(key, how to describe it): the saved key while it is still valid, else a new one, saved 0600."""
    saved = instance.read_saved_key(data_dir)
    done = subprocess.run([*TF, "tenants", "default-key", tenant], env=env, input=saved or "", text=True,
                          capture_output=True)
    if done.returncode:
        raise UpError(f"could not get the key of tenant {tenant!r}: {done.stderr.strip() or done.stdout.strip()}")
    status, key = done.stdout.split()[-2:]
    path = data_dir / instance.KEY_FILE
    if status == "saved":
        return key, f"saved in {path}"
    instance.save_key(data_dir, key)
    earlier = "; earlier keys of this tenant still work" if status == "issued" else ""
    return key, f"new, saved in {path} (mode 0600) and printed again by the next `tuneforge up`{earlier}"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in its own session (Ctrl-C reaches only `up`, which stops it in order) that the kernel
    stops if `up` dies uncleanly."""
    from app.core.embedded import _die_with_parent

    return subprocess.Popen([*TF, *args], env=env, start_new_session=True,
                            preexec_fn=_die_with_parent(signal.SIGTERM))


def _terminate(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_up(host: str, port: int | None, data_dir: Path, tenant: str) -> None:
    """Start everything, print where it is, and watch it; returns on Ctrl-C/SIGTERM, UpError on a death."""
    from app.core.config import get_settings

    data_dir = data_dir.expanduser().resolve()
    if running := instance.read_state(data_dir):
        raise UpError(f"tuneforge up already runs on {data_dir} (pid {running.pid}, {running.url}); "
                      "stop it first, or pass another --data-dir")
    port = choose_port(host, port)
    settings = get_settings()
    env = dict(os.environ, TUNEFORGE_DATA_DIR=str(data_dir))
    children: dict[str, Child] = {}
    typer.echo(f"data directory: {data_dir}  (TUNEFORGE_DATA_DIR or --data-dir to change)")
    with ExitStack() as stack:
        if not settings.database_url:
            from app.core.embedded import EmbeddedPostgres

            children["embedded PostgreSQL"] = postgres = EmbeddedPostgres(data_dir / "postgres")
            env["TUNEFORGE_DATABASE_URL"] = stack.enter_context(postgres)
        if not settings.redis_url:
            from app.core.embedded import EmbeddedRedis

            children["embedded Redis"] = broker = EmbeddedRedis(data_dir / "redis")
            env["TUNEFORGE_REDIS_URL"] = stack.enter_context(broker)
        url = f"http://{host}:{port}"
        instance.write_state(data_dir, instance.UpState(os.getpid(), url, env["TUNEFORGE_DATABASE_URL"],
                                                        env["TUNEFORGE_REDIS_URL"]))
        stack.callback(instance.clear_state, data_dir, os.getpid())
        if subprocess.run([*TF, "migrate"], env=env).returncode:
            raise UpError("tuneforge migrate failed (see above)")
        key, key_note = default_key(env, tenant, data_dir)
        api = _spawn(["api", "--host", host, "--port", str(port)], env)
        worker = _spawn(["worker"], env)
        stack.callback(_terminate, [api, worker])
        children.update({"tuneforge api": api, "tuneforge worker": worker})
        wait_own_health(url, api, port, children)
        typer.echo(f"tuneforge is up: API URL {url}  (OpenAI base_url {url}/v1, API docs {url}/docs)")
        typer.echo(f"API key for tenant {tenant!r} ({key_note}): {key}")
        typer.echo("client commands (tuneforge files, jobs, artifacts, predict) find this instance by its data "
                   "directory; from elsewhere (another data directory or machine), paste:")
        for line in export_lines(url, key):
            typer.echo(f"  {line}")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while (dead := dead_child(children)) is None:
                time.sleep(1)
        except KeyboardInterrupt:
            return
        raise UpError(f"{dead[0]} exited with status {dead[1]}; stopping tuneforge")
