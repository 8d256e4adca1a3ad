"""Log output: ``--log-format text`` (the default) or ``json`` (one object per line).

A JSON line has ``time``, ``level``, ``logger`` and ``message``; ``exception`` when a
traceback is attached; and, where known, ``object_class``, ``object_name``,
``object_id`` and ``request_id``: from the record (``extra=``, as the runtime logs
handler and alarm failures) or else from the object or request the logging code runs
for. Access log lines add ``client``, ``method``, ``path``, ``status`` and
``duration_ms``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from stateroom.runtime.context import current_host
from stateroom.runtime.trace import current_trace, describe

# Fields a record may carry (``extra=``) that the JSON format prints.
FIELDS = (
    "object_class",
    "object_name",
    "object_id",
    "request_id",
    "client",
    "method",
    "path",
    "status",
    "duration_ms",
)

TEXT_FORMAT = "stateroom: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                out[field] = value
        if "object_id" not in out:
            # Logged by code running for an object (user code's own logging, too).
            host = current_host.get()
            if host is not None:
                info = describe(host)
                out.update((k, v) for k, v in info.fields().items() if v is not None)
        if "request_id" not in out:
            trace = current_trace.get()
            if trace is not None:
                out["request_id"] = trace.request_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str)


def configure(level: str, log_format: str) -> None:
    """Log to stderr at ``level`` in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
