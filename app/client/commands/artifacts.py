"""`tuneforge artifacts list|download`: a job's trained files, every one checked against its sha256."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.client.commands.common import JsonOption, KeyOption, UrlOption, byte_progress, connect, err, \
    print_json, print_table

artifacts_app = typer.Typer(help="List and download what a job trained.", no_args_is_help=True)


@artifacts_app.command("list")
def list_artifacts(job_id: str, as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """The files of a job's artifact with their sizes and sha256 (the manifest list)."""
    with connect(url, api_key) as client:
        listed = client.list_artifacts(job_id)
    if as_json:
        return print_json(listed)
    print_table(["name", "bytes", "sha256"], [[a.name, a.bytes, a.sha256] for a in listed])


@artifacts_app.command("download")
def download(job_id: str,
             out: Annotated[Path, typer.Option("--out", help="Folder to put the job's folder in.")] = Path("."),
             force: Annotated[bool, typer.Option(help="Replace an existing download of this job.")] = False,
             url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Download a job's ready folder (OUT/JOB_ID) with a progress bar; every file's sha256 is checked
    against the job's artifact list and manifest before the folder appears. Prints its path."""
    from app.client.download import download_artifacts

    with connect(url, api_key) as client, byte_progress() as bar:
        task = bar.add_task(f"downloading {job_id}", total=None)
        folder = download_artifacts(client, job_id, out, progress=lambda n: bar.advance(task, n),
                                    on_length=lambda total: bar.update(task, total=total), force=force)
    err().print(f"every file of {job_id} matches its sha256")
    typer.echo(folder)
