"""Sinks that no I/O failure can turn into an engine fault: the log file, stderr, the audit log, the summary.

A full disk (ENOSPC), a file-size limit (EFBIG, `ulimit -f`), a removed or read-only folder: each write is
caught at the sink, counted, and the line goes to a fallback (stderr for the daemon; nowhere for the console,
whose terminal Textual owns, and then it is counted as lost). The file is retried once a `retry_s`, rotated
first when it was full (rotation drops the oldest backup, which is what frees space on a full disk and
starts a fresh file under a size limit). Nothing here raises into a caller: logging, the audit of a control
and the summary at exit must never stop a cancel or a kill.

`SINKS` is the process's registry of sink health: the engine's `io` breaker (ALERT) shows its `problem()`,
the daemon's status line and the summary carry its `status()`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

RETRY_S = 1.0  # a failing file sink is tried again at most this often
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@dataclass
class SinkState:
    """One sink's health; `ok` False while its last write failed."""

    name: str
    target: str
    ok: bool = True
    errors: int = 0  # writes that failed
    redirected: int = 0  # lines written to the fallback instead
    lost: int = 0  # lines written nowhere (no fallback, or the fallback failed too)
    recoveries: int = 0
    last_error: str = ""
    since: float = 0.0  # wall time of the first failure of the current outage (0 while ok)


class SinkHealth:
    """Health of every sink of this process (thread-safe: the exporter thread logs too)."""

    def __init__(self) -> None:
        self._sinks: dict[str, SinkState] = {}
        self._lock = threading.Lock()
        self.version = 0  # changes on every state change (the engine re-evaluates its breaker on change only)

    def sink(self, name: str, target: str) -> SinkState:
        with self._lock:
            st = self._sinks.get(name)
            if st is None or st.target != target:
                st = self._sinks[name] = SinkState(name, target)
                self.version += 1
            return st

    def failed(self, st: SinkState, exc: BaseException) -> bool:
        """Count a failed write; True when this starts an outage."""
        with self._lock:
            st.errors += 1
            st.last_error = _describe(exc)
            new = st.ok
            if new:
                st.ok = False
                st.since = time.time()
                self.version += 1
            return new

    def recovered(self, st: SinkState) -> bool:
        with self._lock:
            if st.ok:
                return False
            st.ok = True
            st.since = 0.0
            st.recoveries += 1
            self.version += 1
            return True

    def problem(self) -> str:
        """One line naming every failing sink, "" when all write."""
        with self._lock:
            bad = [s for s in self._sinks.values() if not s.ok]
            return "; ".join(f"{s.name}{'' if s.target == s.name else ' ' + s.target}: {s.last_error} ("
                             + (f"{s.redirected} to stderr, " if s.name != "stderr" else "") + f"{s.lost} lost)"
                             for s in bad)

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: asdict(s) for name, s in self._sinks.items()}

    def reset(self) -> None:
        """Forget every sink (tests)."""
        with self._lock:
            self._sinks.clear()
            self.version += 1


SINKS = SinkHealth()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)} {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _notice(event: str, **fields: Any) -> str:
    """A JSON line in the log's own shape, for what the sink itself has to say."""
    return orjson.dumps({"event": event, "component": "sink", "level": "error" if "failed" in event else "info",
                         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", **fields},
                        default=str).decode() + "\n"


class StreamSink:
    """A text stream (stderr by default, looked up at each write) that never raises: a failed write is
    counted as lost. The last resort of every other sink."""

    def __init__(self, stream: Any = None, name: str = "stderr") -> None:
        self._stream = stream
        self.state = SINKS.sink(name, "stderr" if stream is None else getattr(stream, "name", repr(stream)))

    def write(self, text: str) -> int:
        try:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(text)
            stream.flush()
        except Exception as exc:  # closed, full, broken pipe: nothing more to try
            SINKS.failed(self.state, exc)
            self.state.lost += max(1, text.count("\n"))
            return len(text)
        if not self.state.ok:
            SINKS.recovered(self.state)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        """Whether the stream is a terminal (the log format `auto` renders for a person there)."""
        try:
            return bool((self._stream if self._stream is not None else sys.stderr).isatty())
        except (AttributeError, ValueError, OSError):
            return False


STDERR = StreamSink()


class RotatingWriter:
    """A log file rotated by size (file -> file.1 -> ... -> file.N, the oldest dropped), written one line per
    `os.write` on an O_APPEND descriptor, that never raises.

    A failed write sends the line to `fallback` (None: counted as lost) and marks the sink failed; the file
    is tried again after `retry_s`, rotated first if the failure was a full disk or a size limit, reopened
    if it was anything else. A line cut short by the failure is closed with a newline before the next one.
    """

    def __init__(self, path: str, max_bytes: int, backups: int, fallback: StreamSink | None = STDERR,
                 retry_s: float = RETRY_S, name: str = "log", clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fallback = fallback
        self.retry_s = retry_s
        self._clock = clock
        self.state = SINKS.sink(name, str(path))
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._regular = True
        self._size = 0
        self._retry_at = 0.0
        self._full = False  # the last failure was ENOSPC/EFBIG: rotate before retrying
        self._torn = False  # a partial line is in the file: start the next with a newline
        self.path.parent.mkdir(parents=True, exist_ok=True)  # at start: an error here is a start-up error
        self._open()

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _open(self) -> None:
        self._close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(self._fd)
        self._regular = stat.S_ISREG(st.st_mode)  # /dev/null, a terminal: written, never rotated (renamed)
        self._size = st.st_size

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        with self._lock:
            if not self.state.ok and self._clock() < self._retry_at:
                self._divert(text)
                return len(text)
            try:
                if not self.state.ok:
                    self._reopen_for_retry()
                if self._size + len(data) > self.max_bytes and self._size > 0 and self._regular:
                    self._rotate()
                self._write_all((b"\n" + data) if self._torn else data)
            except OSError as exc:
                self._failed(exc, text)
                return len(text)
            if not self.state.ok and SINKS.recovered(self.state):
                note = _notice("log_sink_recovered", sink=self.state.name, path=str(self.path),
                               redirected=self.state.redirected, lost=self.state.lost)
                try:
                    self._write_all(note.encode())
                except OSError:
                    pass
        return len(text)

    def flush(self) -> None:
        return None  # every line is its own write(2)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError(errno.EBADF, "log file not open")
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                n = os.write(self._fd, view[written:])
                written += n
                self._size += n
        except OSError:
            if written:
                self._torn = True
            raise
        self._torn = False

    def _reopen_for_retry(self) -> None:
        if self._full and self._size > 0 and self._regular:
            self._rotate()
        else:
            self._open()

    def _failed(self, exc: OSError, text: str) -> None:
        self._full = exc.errno in _FULL
        self._retry_at = self._clock() + self.retry_s
        if SINKS.failed(self.state, exc) and self.fallback is not None:
            self.fallback.write(_notice("log_sink_failed", sink=self.state.name, path=str(self.path),
                                        error=self.state.last_error,
                                        action=f"lines go to stderr; the file is retried every {self.retry_s:g} s"))
        self._divert(text)

    def _divert(self, text: str) -> None:
        if self.fallback is None:
            self.state.lost += 1
            return
        before = self.fallback.state.lost
        self.fallback.write(text)
        if self.fallback.state.lost > before:
            self.state.lost += 1
        else:
            self.state.redirected += 1

    def _rotate(self) -> None:
        self._close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._torn = False
        self._open()


def write_summary(path: str | Path, summary: dict[str, Any], fallback: StreamSink | None = STDERR) -> bool:
    """Write the run summary (JSON, via a temporary file and a rename, so a reader never sees half of it).
    Never raises: a failed write is retried once (the temporary file removed first, which is what frees its
    space), then the summary goes to `fallback` as one line with the reason. True when the file was written."""
    p = Path(path)
    st = SINKS.sink("summary", str(p))
    data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
    tmp = p.with_name(p.name + ".tmp")
    error: BaseException | None = None
    for _attempt in range(2):
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(p)
            if not st.ok:
                SINKS.recovered(st)
            return True
        except OSError as exc:
            error = exc
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    assert error is not None
    SINKS.failed(st, error)
    if fallback is not None:
        fallback.write(f"flashmm: summary not written to {p} ({st.last_error}); the summary follows on one line\n")
        fallback.write(orjson.dumps(summary, option=orjson.OPT_SORT_KEYS, default=str).decode() + "\n")
        st.redirected += 1
    else:
        st.lost += 1
    return False
