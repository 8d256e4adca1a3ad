"""The most recent errors logged, with their tracebacks, for the dashboard."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

MAX_ERRORS = 50


class RecentErrors(logging.Handler):
    """Keeps the last ``MAX_ERRORS`` records at ERROR and above (and warnings that carry
    a traceback, as a failed alarm's retry does) of the ``stateroom`` loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self.count = 0
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and not record.exc_info:
            return
        try:
            trace = None
            if record.exc_info:
                trace = self._formatter.formatException(record.exc_info)
            self.records.append(
                {
                    "n": self.count,
                    "time": record.created,
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage(),
                    "object": record.__dict__.get("object_id"),
                    "object_class": record.__dict__.get("object_class"),
                    "object_name": record.__dict__.get("object_name"),
                    "traceback": trace,
                }
            )
            self.count += 1
        except Exception:
            self.handleError(record)

    def install(self) -> None:
        logging.getLogger("stateroom").addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger("stateroom").removeHandler(self)
