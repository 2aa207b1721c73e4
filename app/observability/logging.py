"""Log set-up for `tuneforge api` and `tuneforge worker`: plain text by default, one JSON object per line
with `TUNEFORGE_LOG_FORMAT=json`. Either way every record carries `job_id` and `tenant_id`
(app/observability/context.py) where known."""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from app.observability.context import current

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s tenant=%(tenant_id)s] %(message)s"
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "job_id", "tenant_id", "color_message"}


class ContextFilter(logging.Filter):
    """Stamps `job_id` and `tenant_id` on every record passing through the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message", "job_id", "tenant_id", …extra fields, "exc_info"}."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                "job_id": getattr(record, "job_id", None), "tenant_id": getattr(record, "tenant_id", None),
                "process": record.process}
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def handler(log_format: str) -> logging.Handler:
    """A stderr handler in `log_format` ("text" or "json") that stamps the context ids."""
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    out.addFilter(ContextFilter())
    return out


def configure_logging(log_format: str, level: str | int = "INFO") -> None:
    """The root logger writes through one `handler`; uvicorn's and Celery's loggers propagate to it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(log_format))
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record too, not a bare stderr line
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
