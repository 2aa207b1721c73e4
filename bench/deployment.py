"""A real deployment for benchmarks: `tuneforge api` + N `tuneforge worker`s as separate processes
on a fresh database in the local PostgreSQL and the local Redis, started by the same harness as the
end-to-end tests (tests.harness), so the benchmarks time the deployment the tests check."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg

from tests.harness import cli, start_service

ADMIN_URL = os.environ.get("TUNEFORGE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TUNEFORGE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class Deployment:
    def __init__(self, work: Path, workers: int = 1, **settings: str):
        self.db = f"tuneforge_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db}"
        self.env = dict(os.environ, TUNEFORGE_DATABASE_URL=self.database_url, TUNEFORGE_REDIS_URL=REDIS_URL,
                        TUNEFORGE_DATA_DIR=str(work / "service"), TUNEFORGE_QUEUE_NAME=f"tuneforge.bench.{self.db}",
                        **{f"TUNEFORGE_{k.upper()}": v for k, v in settings.items()})
        try:
            self.cli("migrate")
            self.service = start_service(self.env, workers=workers, worker_loglevel="WARNING",
                                         log_path=work / "service.log")
        except BaseException:
            self._drop()
            raise
        self.url = self.service.url

    def cli(self, *args: str) -> str:
        return cli(self.env, *args)

    def tenant_headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cli('tenants', 'create', name).split()[-1]}"}

    def close(self) -> None:
        self.service.stop(grace=60)
        self._drop()

    def _drop(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
