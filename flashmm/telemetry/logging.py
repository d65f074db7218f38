"""structlog JSON logging (stderr or a file) and the append-only audit log of operator controls."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", file: str = "", run_id: str = "") -> TextIO:
    """JSON lines to stderr, or appended to `file`. Returns the stream."""
    stream: TextIO
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        stream = open(file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives for the process
    else:
        stream = sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if run_id:
        structlog.contextvars.bind_contextvars(run_id=run_id)
    return stream


def get_logger(component: str) -> Any:
    """A lazy logger: it resolves the configuration when it logs, so loggers made at import time follow a
    later configure_logging (and structlog's capture_logs in tests)."""
    return structlog.get_logger(component=component)


class AuditLog:
    """Append-only JSON lines: who, when, what, why, and the result. Opened in append mode per write,
    flushed and fsynced, so a crash loses no line and nothing is ever rewritten."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.entries: list[dict[str, Any]] = []  # this run's entries (the console shows them)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, action: str, who: str, why: str, result: str, venue_ts_ns: int) -> dict[str, Any]:
        entry = {"ts": time.time(), "venue_ts_ns": venue_ts_ns, "action": action, "who": who, "why": why, "result": result}
        self.entries.append(entry)
        if self.path:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, orjson.dumps(entry) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry
