"""The FastAPI application. Importing it must not import torch."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.admin.endpoints import router as admin_router
from app.api.errors import ERROR_RESPONSES, install_error_handlers
from app.api.limits import LimitsMiddleware
from app.api.openapi import install_openapi
from app.artifacts.endpoints import router as artifacts_router
from app.base_models.endpoints import router as models_router
from app.corpora.endpoints import admin_router as admin_corpora_router
from app.corpora.endpoints import router as corpora_router
from app.core.db import get_engine
from app.core.errors import error_body
from app.core.queue import broker_ping
from app.exports.endpoints import router as exports_router
from app.files.endpoints import router as files_router
from app.jobs.endpoints import router as jobs_router
from app.jobs.openapi import document_create_job
from app.observability.endpoints import router as metrics_router
from app.observability.http import ObservabilityMiddleware
from app.predictions.endpoints import router as predictions_router
from app.storage.endpoints import admin_router as admin_storage_router
from app.storage.endpoints import router as storage_router
from app.tenants.auth import AuthMiddleware
from app.ui.endpoints import router as ui_router
from app.webhooks.endpoints import router as webhooks_router


def create_app() -> FastAPI:
    app = FastAPI(title="tuneforge", version="0.1.0",
                  description="Multi-tenant fine-tuning service with an OpenAI-compatible API.")
    install_error_handlers(app)
    for router in (files_router, jobs_router, artifacts_router, exports_router, models_router, storage_router,
                   admin_router, admin_storage_router, corpora_router, admin_corpora_router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(webhooks_router, prefix="/v1/webhook_endpoints", responses=ERROR_RESPONSES)
    app.include_router(webhooks_router, prefix="/v1/webhooks", responses=ERROR_RESPONSES, include_in_schema=False)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    app.include_router(predictions_router, responses=ERROR_RESPONSES)

    @app.get("/healthz", tags=["health"], responses={503: ERROR_RESPONSES[503]})
    def healthz() -> JSONResponse:
        checks = {"database": _database_ok(), "broker": broker_ping()}
        if all(checks.values()):
            return JSONResponse({"status": "ok", **checks})
        return JSONResponse({**error_body("Dependency unavailable.", "server_error"), **checks}, status_code=503)

    # Outermost first: metrics and log context, size limits, then authentication, then routing.
    app.add_middleware(AuthMiddleware)
    app.add_middleware(LimitsMiddleware)
    app.add_middleware(ObservabilityMiddleware)
    install_openapi(app, document_create_job)
    return app


def _database_ok() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


app = create_app()
