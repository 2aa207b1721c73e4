"""What every client command shares: the --url/--api-key options (and their env vars), the connection,
and output. Results go to stdout (an id alone where a script wants one: `JOB=$(tuneforge jobs create …)`),
progress bars and notes to stderr. httpx, rich and pydantic load only when a client command runs, so
`tuneforge api` / `worker` start no slower for them."""
from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.client.config import KEY_ENV, URL_ENV

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from app.client.client import TuneforgeClient

UrlOption = Annotated[str | None, typer.Option("--url", envvar=URL_ENV, show_envvar=True,
                                               help="Service URL (default: the `tuneforge up` of the data directory).")]
KeyOption = Annotated[str | None, typer.Option("--api-key", envvar=KEY_ENV, show_envvar=True,
                                               help="API key (default: the key `tuneforge up` saved).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]


def connect(url: str | None, api_key: str | None) -> TuneforgeClient:
    """A client for the given service, or the one `tuneforge up` runs on the data directory."""
    from app.client.client import TuneforgeClient
    from app.client.config import resolve
    from app.core.config import get_settings

    connection = resolve(url, api_key, get_settings().data_dir.expanduser().resolve())
    return TuneforgeClient(connection.url, connection.api_key)


@cache
def out() -> Console:
    return _console(stderr=False)


@cache
def err() -> Console:
    return _console(stderr=True)


def _console(stderr: bool) -> Console:
    """Plain text without a terminal, and tables as wide as their rows (never wrapped at 80 columns in a
    pipe, where a script splits them)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 1000
    return console


def print_json(value: Any) -> None:
    """A wire object (pydantic) or a list of them, as indented JSON on stdout."""
    if isinstance(value, list):
        data: Any = [v.model_dump(mode="json") for v in value]
    else:
        data = value.model_dump(mode="json")
    typer.echo(json.dumps(data, indent=2))


def print_table(columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out().print(table)


def when(timestamp: int | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else ""


def byte_progress() -> Progress:
    """A transfer bar on stderr: bytes done / total, speed, time left; none when stderr is no terminal
    (a log or a pipe wants the result line, not bar frames)."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err(), disable=not err().is_terminal)
