"""The client side of the `tuneforge` command (files, jobs, artifacts, models list, predict), talking to a
service over HTTP with app.client; `register` adds them to app.cli's command tree."""
from __future__ import annotations

import typer

from app.client.commands.artifacts import artifacts_app
from app.client.commands.files import files_app
from app.client.commands.jobs import jobs_app
from app.client.commands.models import list_models, predict


def register(app: typer.Typer, models: typer.Typer) -> None:
    """Add the client commands to the `tuneforge` app and its `models` group."""
    app.add_typer(files_app, name="files")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(artifacts_app, name="artifacts")
    models.command("list")(list_models)
    app.command("predict")(predict)
