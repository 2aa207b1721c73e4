"""Test session: a real PostgreSQL database created for the run and migrated with Alembic,
the real Redis on an isolated queue, and a temp data dir. Settings come from the environment,
so this runs before any app module reads them."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import psycopg
import pytest

ADMIN_URL = os.environ.get("TUNEFORGE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TUNEFORGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)
DB_NAME = f"tuneforge_test_{RUN_ID}"
DATA_DIR = Path(tempfile.mkdtemp(prefix=f"tuneforge-test-{RUN_ID}-"))
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"

os.environ.update({
    "TUNEFORGE_DATABASE_URL": DATABASE_URL,
    "TUNEFORGE_REDIS_URL": REDIS_URL,
    "TUNEFORGE_DATA_DIR": str(DATA_DIR),
    "TUNEFORGE_QUEUE_NAME": f"tuneforge.test.{RUN_ID}",
    "TUNEFORGE_HEARTBEAT_INTERVAL": "0.5",
    "TUNEFORGE_HEARTBEAT_TIMEOUT": "5",
    "TUNEFORGE_STOP_POLL_INTERVAL": "0.2",
    "TUNEFORGE_DISPATCHER_INTERVAL": "0.5",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
})


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session", autouse=True)
def database() -> str:
    _admin(f'CREATE DATABASE "{DB_NAME}"')
    from app.core.migrate import upgrade

    upgrade(DATABASE_URL)
    from app.base_models.service import register_default
    from app.core.db import session_scope

    with session_scope() as db:
        register_default(db)
    yield DATABASE_URL
    from app.core.db import get_engine

    get_engine().dispose()
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _purge_test_queues()


def _purge_test_queues() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{RUN_ID}*"):
        client.delete(key)


@pytest.fixture
def session(database):
    """A session whose work is rolled back after the test (services never commit)."""
    from app.core.db import get_engine
    from sqlalchemy.orm import Session

    connection = get_engine().connect()
    transaction = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield db
    db.close()
    transaction.rollback()
    connection.close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def registered_tiny_model(database, tiny_model_dir) -> str:
    """The tiny random BERT registered as public base model `tiny-bert`."""
    from app.base_models.service import register
    from app.core.db import session_scope

    with session_scope() as db:
        register(db, "tiny-bert", tiny_model_dir)
    return "tiny-bert"


def new_tenant(name: str | None = None) -> tuple[str, str]:
    """A committed tenant and its API key; each test gets its own, which is the isolation."""
    from app.core.db import session_scope
    from app.tenants.service import create_tenant

    with session_scope() as db:
        tenant, key = create_tenant(db, name or f"tenant-{secrets.token_hex(4)}")
        return tenant.id, key


@pytest.fixture
def tenant() -> tuple[str, str]:
    return new_tenant()


@pytest.fixture
def client(database):
    from fastapi.testclient import TestClient

    from app.main import app

    with TestClient(app) as test_client:
        yield test_client


def quiesce_jobs() -> None:
    """Cancel jobs (and fail exports and corpora) earlier tests left waiting and empty the test queues, so
    the next test's dispatcher, maintenance pass and workers see only their own."""
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.models import Corpus, Job, JobExport

    with session_scope() as db:
        db.execute(update(Job).where(Job.status.in_(("queued", "validating_files"))).values(status="cancelled"))
        db.execute(update(JobExport).where(JobExport.status.in_(("queued", "running"))).values(status="failed"))
        db.execute(update(Corpus).where(Corpus.status.in_(("queued", "running"))).values(status="failed"))
    _purge_test_queues()


@pytest.fixture
def quiet_queue():
    quiesce_jobs()
    yield
