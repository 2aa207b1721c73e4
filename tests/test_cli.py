"""The `tuneforge` command as a user runs it: real processes, real databases."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from app.core.embedded import free_port
from tests.conftest import ADMIN_URL, RUN_ID

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


def test_up_runs_everything_embedded(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEFORGE_DATABASE_URL", "TUNEFORGE_REDIS_URL")}
    env["TUNEFORGE_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    proc = subprocess.Popen([*TF, "up", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("API key" in line for line in lines):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
        text = "".join(lines)
        url = re.search(r"API URL (http://127\.0\.0\.1:\d+)", text).group(1)
        key = [line for line in lines if "API key" in line][-1].split()[-1]
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
        assert "minilm-l6" in [m["id"] for m in models["data"]]
        assert httpx.get(f"{url}/healthz").json()["broker"] is True
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_file_is_valid():
    subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], check=True)
