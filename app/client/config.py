"""Where the client connects: `--url` / `--api-key`, else TUNEFORGE_URL / TUNEFORGE_API_KEY (typer reads
those into the same options), else the `tuneforge up` running on the data directory (its up.json names
the URL, its 0600 default-api-key file the key), so a user of `up` on this machine needs neither."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.client.errors import ClientError
from app.core import instance

URL_ENV = "TUNEFORGE_URL"
KEY_ENV = "TUNEFORGE_API_KEY"


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str


def export_lines(url: str, api_key: str) -> list[str]:
    """The shell lines that point every later client command at this service."""
    return [f"export {URL_ENV}={url}", f"export {KEY_ENV}={api_key}"]


def resolve(url: str | None, api_key: str | None, data_dir: Path) -> Connection:
    """The URL and key given, each missing one taken from the `up` state of `data_dir`; ClientError
    saying how to give it when neither has it."""
    if not url:
        state = instance.read_state(data_dir)
        url = state.url if state else None
    if not url:
        raise ClientError(f"no service URL: pass --url, set {URL_ENV}, or start `tuneforge up` "
                          f"(none runs on {data_dir})")
    api_key = api_key or instance.read_saved_key(data_dir)
    if not api_key:
        raise ClientError(f"no API key: pass --api-key or set {KEY_ENV} (`tuneforge up` prints one; "
                          "`tuneforge tenants create NAME` makes another)")
    return Connection(url.rstrip("/"), api_key)
