"""Logging of the services: plain text by default, JSON lines with LOG_FORMAT=json.

A JSON line holds ``time`` (UTC, ISO-8601), ``level``, ``logger``, ``message`` and, when the
call passed them (``log.info(..., extra={"batch_id": 7})``), the ids that tie a line to the data:
``transaction_id``, ``batch_id``, ``query``, ``client``, ``model_version``; an exception's trace
goes in ``exc_info``. Log shippers (Loki, Elasticsearch, Cloud Logging) index these fields as
they are, without a parsing rule.

    configure_logging(settings.log_format)   # once, at a service's start
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the record attributes (set through ``extra=``) that a JSON line carries as fields of their own
CONTEXT_FIELDS = ("transaction_id", "batch_id", "query", "client", "model_version", "status", "reason")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (a value JSON cannot hold becomes its str)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (text or json); ValueError naming LOG_FORMAT otherwise."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"LOG_FORMAT={log_format!r} is not one of {', '.join(LOG_FORMATS)}")


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr in ``log_format``. A second call replaces the
    handler of the first (a line is never printed twice); handlers others added (a test
    runner's capture) stay."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format))
    handler.fraudops_handler = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "fraudops_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
