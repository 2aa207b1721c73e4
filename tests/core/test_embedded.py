"""Embedded PostgreSQL and Redis (`tuneforge up` without server URLs): real servers on loopback
ports, data kept across restarts, and no server left running after stop or after our death."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from app.core.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = pytest.mark.timeout(90)


def _closed(port: int | None, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


def test_servers_answer_keep_their_data_across_restarts_and_close_their_ports(tmp_path):
    pg, rd = EmbeddedPostgres(tmp_path / "postgres"), EmbeddedRedis(tmp_path / "redis")
    with pg as db_url, rd as redis_url:
        assert db_url == f"postgresql://postgres@127.0.0.1:{pg.port}/tuneforge"
        assert redis_url == f"redis://127.0.0.1:{rd.port}/0"
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.execute("create table kept (v text)")
            conn.execute("insert into kept values ('hello')")
        client = redis.Redis.from_url(redis_url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
        lingering = psycopg.connect(db_url)  # stop must not wait for clients to hang up
        ports = (pg.port, rd.port)
    assert all(_closed(port) for port in ports)
    lingering.close()

    with pg as db_url, rd as redis_url:  # same data dirs: initdb is skipped, the rows are there
        with psycopg.connect(db_url) as conn:
            assert conn.execute("select v from kept").fetchall() == [("hello",)]
        with redis.Redis.from_url(redis_url) as client:
            assert client.get("k") == b"v"  # append-only file
        assert pg.start() == db_url  # starting a running server is a no-op
        ports = (pg.port, rd.port)
    assert all(_closed(port) for port in ports)
    pg.stop()  # stopping twice is harmless


CHILD = """
import sys, time
from pathlib import Path
from app.core.embedded import EmbeddedPostgres, EmbeddedRedis
pg, rd = EmbeddedPostgres(Path(sys.argv[1]) / "postgres"), EmbeddedRedis(Path(sys.argv[1]) / "redis")
print(pg.start(), rd.start(), pg.port, rd.port, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on PR_SET_PDEATHSIG")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_server_outlives_a_parent_that_dies_uncleanly(tmp_path, sig):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        *_, pg_port, redis_port = parent.stdout.readline().split()
        assert not _closed(int(pg_port), within=0) and not _closed(int(redis_port), within=0)
    finally:
        parent.send_signal(sig)
        parent.wait(30)
    assert _closed(int(pg_port)) and _closed(int(redis_port))
    with EmbeddedPostgres(tmp_path / "postgres") as db_url:  # the cluster was shut down cleanly enough to reuse
        with psycopg.connect(db_url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
