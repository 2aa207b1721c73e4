"""GET /metrics in Prometheus' text format. Request counters and histograms live in each API process;
with several processes (uvicorn --workers, gunicorn) set PROMETHEUS_MULTIPROC_DIR to an empty
directory before they start and every process answers the sum over all of them. The job gauges are
read from PostgreSQL at each scrape (app/observability/collector.py)."""
from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.concurrency import run_in_threadpool

from app.observability.collector import DatabaseCollector

router = APIRouter(tags=["health"])


def scrape() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."}})
async def metrics() -> Response:
    """Prometheus metrics of the service (public, like /healthz: restrict it at the proxy if needed)."""
    return Response(await run_in_threadpool(scrape), media_type=CONTENT_TYPE_LATEST)
