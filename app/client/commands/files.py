"""`tuneforge files upload|list|get`. An upload is checked here first with the server's own readers
(app.training.data, pure Python), so a bad line is named before a byte is sent."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from app.client.commands.common import JsonOption, KeyOption, UrlOption, byte_progress, connect, err, \
    print_json, print_table, when

files_app = typer.Typer(help="Upload and list training files.", no_args_is_help=True)
MAX_REPORTED = 20  # problems listed per file before stopping


class DataFormat(str, Enum):
    classification = "classification"  # {"text", "label"} rows, as training and validation files need
    corpus = "corpus"                  # {"text"} rows, an adaptive job's corpus_file
    jsonl = "jsonl"                    # any JSON object per line: the upload's own check only


def check_locally(path: Path, data_format: DataFormat) -> str:
    """What the file holds, in a few words; ClientError naming every bad line (up to MAX_REPORTED)."""
    from app.client.errors import ClientError
    from app.training.corpus_text import validate_texts
    from app.training.data import DatasetError, iter_jsonl, validate_classification_file

    if not path.is_file():
        raise ClientError(f"{path}: no such file")
    try:
        if data_format is DataFormat.classification:
            summary = validate_classification_file(path, max_errors=MAX_REPORTED)
            return f"{summary.n_examples} examples, labels {', '.join(map(str, summary.labels))}"
        if data_format is DataFormat.corpus:
            return f"{validate_texts(path)} texts"
        rows = sum(1 for _ in iter_jsonl(path))
    except DatasetError as exc:
        raise ClientError(f"{path} is not valid {data_format.value} data, nothing uploaded: {exc}") from exc
    if rows == 0:
        raise ClientError(f"{path} has no JSON lines, nothing uploaded")
    return f"{rows} JSON lines"


@files_app.command("upload")
def upload(path: Path,
           data_format: Annotated[DataFormat, typer.Option("--format", help="What the file must hold.")]
           = DataFormat.classification,
           idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe: a replay returns the first upload.")]
           = None,
           url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Check a JSONL file locally (line numbers for every problem), upload it with a progress bar, and
    print its file id."""
    contents = check_locally(path, data_format)
    with connect(url, api_key) as client, byte_progress() as bar:
        task = bar.add_task(f"uploading {path.name}", total=path.stat().st_size)
        uploaded = client.upload_file(path, progress=lambda n: bar.advance(task, n), idempotency_key=idempotency_key)
    err().print(f"uploaded {path.name}: {contents}, {uploaded.bytes} bytes")
    typer.echo(uploaded.id)


@files_app.command("list")
def list_files(limit: int = 100, as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """The tenant's files, newest first."""
    with connect(url, api_key) as client:
        files = client.list_files(limit=limit).data
    if as_json:
        return print_json(files)
    print_table(["id", "filename", "bytes", "purpose", "created"],
                [[f.id, f.filename, f.bytes, f.purpose, when(f.created_at)] for f in files])


@files_app.command("get")
def get_file(file_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """One file's object, as JSON."""
    with connect(url, api_key) as client:
        print_json(client.get_file(file_id))
