"""structlog JSON logging (stderr or a file) and the append-only audit log of operator controls."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

REDACTED = "[REDACTED]"
# key names whose values are secrets wherever they appear in an event (nested too)
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|private_?key|mnemonic|api_?key|authorization|passphrase)",
                         re.IGNORECASE)
_SECRET_ENV = re.compile(r"^FLASHMM_.*(KEY|TOKEN|SECRET|PASSWORD|MNEMONIC|PASSPHRASE)", re.IGNORECASE)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """A value that must never appear in a log line, whatever key it is under (min. 6 characters)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def register_environment_secrets(environ: dict[str, str] | None = None) -> None:
    for name, value in (os.environ if environ is None else environ).items():
        if _SECRET_ENV.match(name):
            register_secret(value)
        elif name.startswith("FLASHMM_") and "://" in value and "@" in value:  # a URL with credentials
            register_secret(value.split("://", 1)[1].split("@", 1)[0])


def _scrub(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key) and value not in ("", None):
        return REDACTED
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets by key name and by registered value, everywhere in the event."""
    return {k: _scrub(v, k) for k, v in event.items()}


class RotatingWriter:
    """A line-buffered log file rotated by size: file -> file.1 -> ... -> file.N (oldest dropped)."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives for the process
        self._size = self.path.stat().st_size

    def write(self, text: str) -> int:
        if self._size + len(text) > self.max_bytes and self._size > 0:
            self._rotate()
        n = self._f.write(text)
        self._size += len(text.encode("utf-8"))
        return n

    def flush(self) -> None:
        self._f.flush()

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._size = 0


def configure_logging(level: str = "info", file: str = "", run_id: str = "", max_bytes: int = 50_000_000,
                      backups: int = 5) -> Any:
    """JSON lines to stderr, or to `file` rotated by size. Secrets are redacted. Returns the stream."""
    stream: Any = RotatingWriter(file, max_bytes, backups) if file else sys.stderr
    register_environment_secrets()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
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
