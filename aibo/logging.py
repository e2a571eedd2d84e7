"""Log records tagged with the request or task they belong to; JSON lines for production."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

from django import template

# The id of the request or Huey task being handled in this thread or coroutine ("-" outside).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="-"
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "process": record.process,
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


# `{% load request_id %}{% request_id %}` (settings: TEMPLATES libraries): Django renders 500.html
# without a context, so the error pages take the id from here; it is the one in the log line.
register = template.Library()


@register.simple_tag(name="request_id")
def request_id_tag() -> str:
    return current_request_id.get()
