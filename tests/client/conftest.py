"""The client commands against a real service: the e2e `service` fixture (real `tuneforge api` and
`tuneforge worker` processes on the real PostgreSQL and Redis, tiny model `tiny-bert`), driven by the
installed `tuneforge` console script in subprocesses, as a user types it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import new_tenant
from tests.e2e.conftest import service  # noqa: F401  (the module-scoped real service)
from tests.harness import ROOT

TUNEFORGE = str(Path(sys.executable).parent / "tuneforge")


class User:
    """One tenant at the keyboard: runs `tuneforge ARGS` with TUNEFORGE_URL / TUNEFORGE_API_KEY set."""

    def __init__(self, url: str):
        self.tenant_id, self.key = new_tenant()
        self.env = dict(os.environ, TUNEFORGE_URL=url, TUNEFORGE_API_KEY=self.key)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([TUNEFORGE, *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def ok(self, *args: str, timeout: float = 300) -> str:
        """stdout of a command that must succeed."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"tuneforge {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return done.stdout

    def fails(self, *args: str) -> str:
        """The one stderr line of a command that must fail (exit status 1)."""
        done = self.run(*args)
        assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tuneforge: error: "), done.stderr
        return lines[0]


@pytest.fixture
def user(service) -> User:  # noqa: F811
    return User(service.url)
