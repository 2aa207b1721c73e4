"""The API's request middleware: Prometheus counters and latency histograms by route template and status,
and the request's scope made the log context (app/observability/context.py)."""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.context import request_scope

REQUESTS = Counter("tuneforge_http_requests", "HTTP requests answered, by method, route template and status.",
                   ["method", "route", "status"])
LATENCY = Histogram("tuneforge_http_request_duration_seconds",
                    "Seconds from a request's arrival to the end of its response (streams: until they end).",
                    ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
UNMATCHED = "unmatched"  # unknown paths share one label: a scanner cannot grow the series without bound
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/fine_tuning/jobs/{job_id}`), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


class ObservabilityMiddleware:
    """Outermost middleware, so refusals by the limits and authentication count too."""

    def __init__(self, app: ASGIApp):
        self.app = app
        # (method, route, status) -> its counter and histogram series: `labels()` takes a lock and rebuilds
        # the key on every call; bounded as the labels are (route templates, METHODS, status codes)
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            with request_scope(scope):
                await self.app(scope, receive, observed_send)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            key = (method, route_template(scope), str(status))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (REQUESTS.labels(*key), LATENCY.labels(*key[:2]))
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
