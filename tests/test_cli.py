"""The `tuneforge` command as a user runs it: real processes, real databases."""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading

import httpx
import psutil
import psycopg
import pytest

from app.core.embedded import free_port
from tests.conftest import ADMIN_URL, RUN_ID, new_tenant
from tests.harness import Background

TF = [sys.executable, "-m", "app.cli"]


def test_migrate_upgrades_an_empty_database_and_registers_minilm():
    name = f"tuneforge_cli_{RUN_ID}"
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = dict(os.environ, TUNEFORGE_DATABASE_URL=url)
        out = subprocess.run([*TF, "migrate"], env=env, capture_output=True, text=True, check=True).stdout
        assert "minilm-l6" in out
        created = subprocess.run([*TF, "tenants", "create", "acme"], env=env, capture_output=True, text=True,
                                 check=True).stdout
        key = created.strip().splitlines()[-1].split()[-1]
        assert key.startswith("tf-") and len(key) > 30
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname='public'")}
            stored = [r[0] for r in conn.execute("select key_hash from api_keys")]
            model = conn.execute("select id, sha256 from base_models").fetchall()
        assert {"tenants", "api_keys", "files", "jobs", "job_events", "job_checkpoints", "artifacts"} <= tables
        assert key not in stored and len(stored) == 1  # stored hashed
        assert model[0][0] == "minilm-l6" and len(model[0][1]) == 64
        again = subprocess.run([*TF, "tenants", "create", "acme"], env=env, capture_output=True, text=True)
        assert again.returncode != 0 and "already exists" in again.stderr + again.stdout
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Up(Background):
    """`tuneforge up` in its own session, its output collected by a thread (so it never blocks)."""

    def __init__(self, env: dict[str, str], *args: str):
        super().__init__([*TF, "up", *args], env, name="up")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=90)


def embedded_env(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TUNEFORGE_DATABASE_URL", "TUNEFORGE_REDIS_URL", "TUNEFORGE_URL", "TUNEFORGE_API_KEY")}
    return {**env, "TUNEFORGE_DATA_DIR": str(data_dir)}


def test_up_runs_everything_embedded_and_operator_commands_find_it(tmp_path):
    data = tmp_path / "data"
    env = embedded_env(data)
    up = Up(env, "--port", str(free_port()))
    try:
        key_line = up.wait_for("API key")
        url = re.search(r"API URL (http://127\.0\.0\.1:\d+)", "".join(up.lines)).group(1)
        assert f"data directory: {data}" in "".join(up.lines) and f"{url}/docs" in "".join(up.lines)
        key = key_line.split()[-1]
        assert "saved in" in key_line and (data / "default-api-key").read_text().strip() == key
        assert stat.S_IMODE((data / "default-api-key").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "up.json").stat().st_mode) == 0o600
        assert up.wait_for("export TUNEFORGE_URL=").split() == ["export", f"TUNEFORGE_URL={url}"]
        assert up.wait_for("export TUNEFORGE_API_KEY=").split() == ["export", f"TUNEFORGE_API_KEY={key}"]
        # a client command with neither URL nor key uses the `up` of the data directory and its saved key
        listed = subprocess.run([*TF, "models", "list", "--json"], env=env, capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert "minilm-l6" in [m["id"] for m in json.loads(listed.stdout)]
        assert httpx.get(f"{url}/healthz").json()["broker"] is True
        # an operator command with no database URL uses the embedded one `up` runs
        created = subprocess.run([*TF, "tenants", "create", "acme"], env=env, capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        acme = created.stdout.split()[-1]
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {acme}"}).status_code == 200
        again = subprocess.run([*TF, "up"], env=env, capture_output=True, text=True)  # same data dir: refused
        assert again.returncode == 1 and "already runs on" in again.stderr and "Traceback" not in again.stderr
    finally:
        assert up.stop() == 0
    assert not (data / "up.json").exists()

    # a restart prints the saved key again; the death of a child stops everything with status 1
    up = Up(env, "--port", str(free_port()))
    try:
        assert up.wait_for("API key").split()[-1] == key
        worker = next(p for p in psutil.Process(up.proc.pid).children() if "worker" in p.cmdline())
        worker.kill()
        assert up.proc.wait(timeout=90) == 1
        assert "tuneforge worker exited" in up.wait_for("exited with status")
    finally:
        up.stop()
    assert not (data / "up.json").exists()


def test_up_refuses_a_port_in_use_before_starting_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*TF, "up", "--port", str(port)], env=embedded_env(tmp_path / "data"),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"tuneforge: error: port {port} on 127.0.0.1 is already in use (another server?); pass another --port, "
        "or leave --port out to pick a free one"]
    assert not (tmp_path / "data" / "postgres").exists()


def test_without_a_port_up_takes_the_next_free_one_and_says_so(monkeypatch, capsys):
    from app import up

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(up, "DEFAULT_PORT", port)
        chosen = up.choose_port("127.0.0.1", None)
    assert chosen != port and up.port_free("127.0.0.1", chosen)
    assert capsys.readouterr().out.strip() == f"port {port} is in use; using port {chosen} instead"


class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_health_answered_by_another_process_is_not_up():
    from app.up import UpError, listens, wait_own_health

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, url = server.server_address[1], f"http://127.0.0.1:{server.server_address[1]}"
    api = subprocess.Popen(["sleep", "60"])
    try:
        assert listens(os.getpid(), port) and not listens(api.pid, port)
        with pytest.raises(UpError, match="did not answer"):
            wait_own_health(url, api, port, {"tuneforge api": api}, timeout=3)
        api.kill()
        api.wait()
        with pytest.raises(UpError, match="tuneforge api exited with status -9 before tuneforge was up"):
            wait_own_health(url, api, port, {"tuneforge api": api}, timeout=3)
    finally:
        api.kill()
        server.shutdown()


def test_cli_failures_are_one_line(tmp_path):
    env = embedded_env(tmp_path / "empty")
    no_up = subprocess.run([*TF, "tenants", "create", "acme"], env=env, capture_output=True, text=True)
    assert no_up.returncode == 1 and len(no_up.stderr.strip().splitlines()) == 1
    assert "no `tuneforge up` runs on data directory" in no_up.stderr and str(tmp_path / "empty") in no_up.stderr
    flagged = subprocess.run([*TF, "--data-dir", str(tmp_path / "other"), "admin", "create-key"], env=env,
                             capture_output=True, text=True)
    assert flagged.returncode == 1 and str(tmp_path / "other") in flagged.stderr
    unreachable = dict(env, TUNEFORGE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    down = subprocess.run([*TF, "tenants", "create", "acme"], env=unreachable, capture_output=True, text=True)
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1
    assert down.stderr.startswith("tuneforge: error: database error:") and "Traceback" not in down.stderr


def test_default_key_is_reused_while_it_is_the_tenants_active_key(database):
    from app.core.db import session_scope
    from app.tenants.service import authenticate_key, revoke_api_key

    name = f"up-{RUN_ID}"

    def default_key(saved: str) -> list[str]:
        done = subprocess.run([*TF, "tenants", "default-key", name], input=saved, capture_output=True, text=True,
                              check=True)
        return done.stdout.split()

    status, first = default_key("")
    assert status == "created"
    assert default_key(first) == ["saved", first]
    assert default_key("tf-not-a-key")[0] == "issued"
    _, other = new_tenant()
    assert default_key(other)[0] == "issued"  # another tenant's key is not this tenant's
    with session_scope() as session:
        revoke_api_key(session, authenticate_key(session, first).id)
    status, fresh = default_key(first)
    assert status == "issued" and fresh != first


def test_default_data_dir_is_per_user(monkeypatch, tmp_path):
    from app.core.config import Settings

    monkeypatch.delenv("TUNEFORGE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Settings().data_dir == tmp_path / "tuneforge"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_file_is_valid():
    subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], check=True)
