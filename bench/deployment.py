"""A real deployment for benchmarks: `tuneforge api` + N `tuneforge worker`s as separate processes
on a fresh database in the local PostgreSQL and the local Redis."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TUNEFORGE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TUNEFORGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TF = [sys.executable, "-m", "app.cli"]


class Deployment:
    def __init__(self, work: Path, workers: int = 1, **settings: str):
        self.db = f"tuneforge_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db}"
        self.env = dict(os.environ, TUNEFORGE_DATABASE_URL=self.database_url, TUNEFORGE_REDIS_URL=REDIS_URL,
                        TUNEFORGE_DATA_DIR=str(work / "service"), TUNEFORGE_QUEUE_NAME=f"tuneforge.bench.{self.db}",
                        **{f"TUNEFORGE_{k.upper()}": v for k, v in settings.items()})
        self.cli("migrate")
        from app.core.embedded import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(work / "service.log", "ab")
        self.procs = [subprocess.Popen([*TF, "api", "--port", str(port)], env=self.env, cwd=ROOT, stdout=log,
                                       stderr=log)]
        self.procs += [subprocess.Popen([*TF, "worker", "--loglevel", "WARNING"], env=self.env, cwd=ROOT,
                                        stdout=log, stderr=log) for _ in range(workers)]
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

    def cli(self, *args: str) -> str:
        return subprocess.run([*TF, *args], env=self.env, check=True, capture_output=True, text=True,
                              cwd=ROOT).stdout

    def tenant_headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cli('tenants', 'create', name).split()[-1]}"}

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
