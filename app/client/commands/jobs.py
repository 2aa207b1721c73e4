"""`tuneforge jobs create|list|get|events|follow|cancel|pause|resume`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.client.commands.common import JsonOption, KeyOption, UrlOption, connect, err, print_json, print_table, \
    when

jobs_app = typer.Typer(help="Create, watch and control fine-tuning jobs.", no_args_is_help=True)
Pairs = list[str] | None
FOLLOW_EXIT = {"succeeded": 0, "failed": 1, "cancelled": 2}


@jobs_app.command("create")
def create(
    spec: Annotated[Path | None, typer.Option(help="The request body as a JSON or YAML file; flags override it.")]
    = None,
    model: Annotated[str | None, typer.Option(help="Base model id (see `tuneforge models list`).")] = None,
    training_file: Annotated[str | None, typer.Option(help="File id from `tuneforge files upload`.")] = None,
    validation_file: Annotated[str | None, typer.Option(help="Held-out file id (chooses the best checkpoint).")]
    = None,
    method: Annotated[str | None, typer.Option(help="method.type: supervised, lora, bitfit, ia3, …")] = None,
    setting: Annotated[Pairs, typer.Option("--set", help="A method setting KEY=VALUE, e.g. r=8 (repeat).")] = None,
    hyperparameters: Annotated[Pairs, typer.Option("--hyperparameters", "--hp",
                                                   help="KEY=VALUE, e.g. n_epochs=3 (repeat).")] = None,
    suffix: Annotated[str | None, typer.Option(help="Added to the fine-tuned model's name.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for data order, initialisation and masking.")] = None,
    metadata: Annotated[Pairs, typer.Option(help="KEY=VALUE kept with the job (repeat).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe: a replay returns the first job.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Then follow it, as `jobs follow` does.")] = False,
    url: UrlOption = None, api_key: KeyOption = None,
) -> None:
    """Submit a job from flags and/or --spec; prints its id."""
    from app.client.spec import build_body, load_spec, parse_pairs

    body = build_body(load_spec(spec) if spec else {}, model=model, training_file=training_file,
                      validation_file=validation_file, suffix=suffix, seed=seed, method=method,
                      settings=parse_pairs(setting or [], "--set"),
                      hyperparameters=parse_pairs(hyperparameters or [], "--hyperparameters"),
                      metadata=parse_pairs(metadata or [], "--metadata", raw=True))
    with connect(url, api_key) as client:
        job = client.create_job(body, idempotency_key=idempotency_key)
    err().print(f"job {job.id} {job.status}: {job.method_type} on {job.model}")
    typer.echo(job.id)
    if follow:
        follow_cmd(job.id, url=url, api_key=api_key)


@jobs_app.command("list")
def list_jobs(limit: int = 20, after: str | None = None, metadata: Annotated[Pairs, typer.Option(
              help="Only jobs with this KEY=VALUE (repeat).")] = None,
              as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """The tenant's jobs, newest first."""
    from app.client.spec import parse_pairs

    with connect(url, api_key) as client:
        jobs = client.list_jobs(limit=limit, after=after, metadata=parse_pairs(metadata or [], "--metadata", raw=True))
    if as_json:
        return print_json(jobs.data)
    print_table(["id", "status", "model", "method", "created", "fine-tuned model"],
                [[j.id, j.status, j.model, j.method_type, when(j.created_at), j.fine_tuned_model] for j in jobs.data])


@jobs_app.command("get")
def get(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """One job's object, as JSON."""
    with connect(url, api_key) as client:
        print_json(client.get_job(job_id))


@jobs_app.command("events")
def events(job_id: str, limit: int = 100, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """The job's latest events, oldest first."""
    from app.client.commands.follow import event_line
    from app.client.commands.common import out

    with connect(url, api_key) as client:
        page = client.list_events(job_id, limit=limit)
    for event in reversed(page.data):
        out().print(event_line(event))


@jobs_app.command("follow")
def follow_cmd(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Watch a job live until it ends: exit status 0 if it succeeded, 1 failed, 2 cancelled. Ctrl-C
    detaches; the job goes on."""
    from app.client.commands.follow import final_line, follow_job

    with connect(url, api_key) as client:
        try:
            job = follow_job(client, job_id)
        except KeyboardInterrupt:
            err().print(f"detached from job {job_id}; it was not cancelled and keeps running (`tuneforge jobs "
                        f"follow {job_id}` to watch again, `tuneforge jobs cancel {job_id}` to stop it)")
            raise typer.Exit(130) from None
    line = final_line(job)
    if job.status == "succeeded":
        typer.echo(line)
    else:
        err().print(line, markup=False)
    raise typer.Exit(FOLLOW_EXIT.get(job.status, 1))


def _change(action: str, job_id: str, url: str | None, api_key: str | None) -> None:
    with connect(url, api_key) as client:
        job = getattr(client, f"{action}_job")(job_id)
    typer.echo(f"job {job.id} {job.status}")


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Cancel a job that has not finished."""
    _change("cancel", job_id, url, api_key)


@jobs_app.command("pause")
def pause(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Pause a job at its next checkpoint (`resume` continues from there)."""
    _change("pause", job_id, url, api_key)


@jobs_app.command("resume")
def resume(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Resume a paused job from its last checkpoint."""
    _change("resume", job_id, url, api_key)
