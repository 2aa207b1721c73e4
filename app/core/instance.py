"""What `tuneforge up` keeps in its data directory, so a later `up` and the operator commands find it.

- The data directory defaults to the platform's per-user data dir (`~/.local/share/tuneforge` on
  Linux, via platformdirs); `TUNEFORGE_DATA_DIR` or `--data-dir` override it.
- `up.json` (mode 0600) names the running `up` process and the URLs of the embedded PostgreSQL and
  Redis it started; it exists only while that process lives (a stale one is ignored).
- `default-api-key` (mode 0600) holds the default tenant's key, printed again by the next `up`.

Standard library and platformdirs only: app.core.config imports this.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

APP_NAME = "tuneforge"
STATE_FILE = "up.json"
KEY_FILE = "default-api-key"


def default_data_dir() -> Path:
    """The per-user data directory (platformdirs' user data dir for "tuneforge")."""
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


@dataclass(frozen=True)
class UpState:
    """A running `tuneforge up`: its pid, API URL and the server URLs it set for its children."""

    pid: int
    url: str
    database_url: str | None
    redis_url: str | None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only (0600 from creation), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def write_state(data_dir: Path, state: UpState) -> Path:
    path = data_dir / STATE_FILE
    write_private(path, json.dumps(asdict(state), indent=2))
    return path


def read_state(data_dir: Path) -> UpState | None:
    """The `up` running on `data_dir`, or None (no state file, unreadable, or its process is gone)."""
    try:
        state = UpState(**json.loads((data_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if pid_alive(state.pid) else None


def clear_state(data_dir: Path, pid: int) -> None:
    """Remove the state file if it still names `pid` (never another `up`'s)."""
    path = data_dir / STATE_FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def read_saved_key(data_dir: Path) -> str | None:
    try:
        key = (data_dir / KEY_FILE).read_text().strip()
    except OSError:
        return None
    return key or None


def save_key(data_dir: Path, key: str) -> Path:
    path = data_dir / KEY_FILE
    write_private(path, key + "\n")
    return path
