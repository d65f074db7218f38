"""structlog JSON logging (stderr or a file) and the append-only audit log of operator controls."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import orjson
import structlog

from flashmm.telemetry.failsafe import SINKS, STDERR, RotatingWriter, StreamSink

__all__ = ["AUDIT_GENESIS", "AuditLog", "RotatingWriter", "audit_line_hash", "configure_logging", "get_logger",
           "redact_secrets", "register_environment_secrets", "register_secret", "verify_audit_log"]

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


def configure_logging(level: str = "info", file: str = "", run_id: str = "", max_bytes: int = 50_000_000,
                      backups: int = 5, fallback_stderr: bool = True, fmt: str = "json") -> Any:
    """Log lines to stderr, or to `file` rotated by size; secrets are redacted. Returns the stream.

    Neither sink ever raises (flashmm.telemetry.failsafe): a line the file cannot take goes to stderr
    (`fallback_stderr`; the console passes False, the terminal is its screen) and is counted; a lost terminal
    (SIGHUP: EIO) or a closed pipe counts the line as lost instead of raising inside the shutdown path.
    `fmt`: json (one object a line), console (structlog's human-readable renderer), or auto (console when the
    stream is a terminal, JSON otherwise: files, pipes, journald, docker)."""
    stream: Any = (RotatingWriter(file, max_bytes, backups, fallback=STDERR if fallback_stderr else None) if file
                   else StreamSink(None, name="log"))
    register_environment_secrets()
    if fmt == "auto":
        fmt = "console" if not file and _isatty(stream) else "json"
    if fmt == "console":
        tail: list[Any] = [
            _drop_run_id,  # printed once, on the start line's own key; on every line it is noise for a person
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=True),
            redact_secrets,
            # plain tracebacks: the rich formatter prints local variables, and a local may hold a key
            structlog.dev.ConsoleRenderer(colors=_isatty(stream), pad_event_to=20, sort_keys=False,
                                          exception_formatter=structlog.dev.plain_traceback),
        ]
    else:
        tail = [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()),
        ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if run_id:
        structlog.contextvars.bind_contextvars(run_id=run_id)
    return stream


def _drop_run_id(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    if event.get("event") != "start":
        event.pop("run_id", None)
    return event


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def get_logger(component: str) -> Any:
    """A lazy logger: it resolves the configuration when it logs, so loggers made at import time follow a
    later configure_logging (and structlog's capture_logs in tests)."""
    return structlog.get_logger(component=component)


AUDIT_GENESIS = "0" * 64  # `prev` of an audit log's first line
_AUDIT_TAIL_CHUNK = 4096


def audit_line_hash(line: bytes) -> str:
    """SHA-256 (hex) of one audit line as stored, without its trailing newline: the next line's `prev`."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _tail(fd: int) -> tuple[bytes | None, bool]:
    """(the file's last line without its newline, whether the file ends with a newline); (None, True) when
    the file is empty. Reads backwards from the end only, so continuing the chain after a restart costs the
    same whatever the file's size."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0:
        return None, True
    pos, buf = end, b""
    while pos > 0:
        step = min(_AUDIT_TAIL_CHUNK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        body = buf[:-1] if buf.endswith(b"\n") else buf
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1:], buf.endswith(b"\n")
    return (buf[:-1] if buf.endswith(b"\n") else buf), buf.endswith(b"\n")


class AuditLog:
    """Append-only, tamper-evident JSON lines: who, when, what, why, the result, and `prev`.

    `prev` is the SHA-256 of the previous line as stored (AUDIT_GENESIS for the first), so editing,
    deleting or inserting a line breaks the chain at that point; `verify_audit_log` finds it. The chain
    continues across restarts and across processes sharing the file: each write takes an exclusive
    flock, reads the current last line, and appends. The file is opened with O_APPEND (never O_TRUNC), each
    line is fsynced, and nothing is ever rewritten. A torn last line (a crash mid-write) is closed with a
    newline before the next entry and stays in the chain, where verification reports it as unreadable.
    Limit: dropping lines from the END leaves a valid shorter chain; `head` (the hash of the last line this
    object wrote) is what a caller would record elsewhere to anchor it.

    `write` never raises: the control it records has already happened and must not be undone or stopped by
    a full disk. An entry the file cannot take is kept (`pending`, written first, in order, by the next
    write or `retry()`), copied to `fallback` (stderr for the daemon) and counted in the `audit` sink's health.
    """

    def __init__(self, path: str | None, fallback: StreamSink | None = STDERR) -> None:
        self.path = Path(path) if path else None
        self.entries: list[dict[str, Any]] = []  # this run's entries (the console shows them)
        self.pending: list[dict[str, Any]] = []  # entries not yet in the file (it failed), oldest first
        self.head: str | None = None
        self.fallback = fallback
        self.state = SINKS.sink("audit", str(self.path)) if self.path else None
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # checked at start (ops/preflight); here it only counts
                SINKS.failed(self.state, exc)

    def write(self, action: str, who: str, why: str, result: str, venue_ts_ns: int) -> dict[str, Any]:
        entry = {"ts": time.time(), "venue_ts_ns": venue_ts_ns, "action": action, "who": who, "why": why, "result": result}
        self.entries.append(entry)
        if self.path:
            self.pending.append(entry)
            self.retry()
            if any(e is entry for e in self.pending) and self.fallback is not None:
                self.fallback.write(orjson.dumps({"event": "audit_not_written", "path": str(self.path),
                                                  "error": self.state.last_error, "entry": entry}).decode() + "\n")
                self.state.redirected += 1
        return entry

    def retry(self) -> bool:
        """Write the pending entries, oldest first; True when none is left."""
        while self.pending:
            try:
                self._append(self.pending[0])
            except OSError as exc:
                SINKS.failed(self.state, exc)
                return False
            self.pending.pop(0)
        if self.state is not None and not self.state.ok:
            SINKS.recovered(self.state)
        return True

    def _append(self, entry: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time reads the tail and appends
            last, ends_with_newline = _tail(fd)
            entry["prev"] = AUDIT_GENESIS if last is None else audit_line_hash(last)
            line = orjson.dumps(entry)
            data = (b"" if ends_with_newline else b"\n") + line + b"\n"
            n = os.write(fd, data)
            if n < len(data):  # a short write (size limit): the tail is torn, the next entry closes it
                raise OSError(errno.EFBIG, "short write to the audit log")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        self.head = audit_line_hash(line)


def verify_audit_log(path: str | os.PathLike[str]) -> list[str]:
    """Broken links of an audit log's hash chain, one line each; an empty list means the chain is intact.

    Reports a line whose `prev` is not the SHA-256 of the line before it (an edited line shows up on the
    line after it, a deleted or inserted line where it was), a first line that does not start the chain,
    and lines that are not JSON objects or carry no `prev` (written before chaining, or hand-made).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [f"audit log {path}: cannot read: {exc.strerror or exc}"]
    problems: list[str] = []
    prev_hash = AUDIT_GENESIS
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line
    for i, line in enumerate(lines, start=1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(f"line {i}: not a JSON object (torn or hand-edited)")
        elif "prev" not in entry:
            problems.append(f"line {i}: no prev field (not written by the hash-chained audit log)")
        elif entry["prev"] != prev_hash:
            where = "the chain start" if i == 1 else f"the SHA-256 of line {i - 1}"
            problems.append(f"line {i}: prev is not {where}: a line before it was edited, deleted or inserted")
        prev_hash = audit_line_hash(line)
    return problems
