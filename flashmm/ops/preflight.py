"""Start-up checks: everything a run will need to write or reach, checked before anything trades.

Each failure is one line naming the file and its key, or the server (`StartupError`, exit 2), instead of a
traceback at the first write, a summary lost after a clean cancel, or ten silent seconds on a dead Redis:

- the log file, the audit log, the summary and the lock folder can be created and written (the check opens
  them for append, creating them if missing, and writes nothing into them; a folder gets a probe file);
- Redis (when state is on) answers PING with the configured URL: refused, unreachable, timed out, a wrong
  password and a missing one are told apart.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from flashmm.ops.lease import StartupError, redact_url


def _why(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror or exc}" + (f" ({name})" if name else "")


def _folder_in_the_way(p: Path) -> Path | None:
    """The first ancestor of `p` that exists and is not a folder."""
    for parent in reversed(p.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_writable_file(path: str | Path, what: str) -> None:
    """`path` can be appended to (created if missing; a regular file or a character device such as
    /dev/null); raises StartupError naming `what` (e.g. "log file [logging].file")."""
    p = Path(path)
    try:
        if p.is_dir():
            raise StartupError(f"{what} {p}: is a folder, not a file")
        blocker = _folder_in_the_way(p)
        if blocker is not None:
            raise StartupError(f"{what} {p}: cannot be written: {blocker} is a file, not a folder")
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            raise StartupError(f"{what} {p}: not a regular file (a FIFO, socket or block device): refused")
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o640)
        os.close(fd)
    except StartupError:
        raise
    except OSError as exc:
        raise StartupError(f"{what} {p}: cannot be written: {_why(exc)}") from None


def check_writable_dir(path: str | Path, what: str) -> None:
    """A file can be created in folder `path` (created if missing): a probe file is made and removed."""
    d = Path(path)
    probe = d / f".flashmm-probe-{os.getpid()}"
    blocker = d if d.exists() and not d.is_dir() else _folder_in_the_way(d)
    if blocker is not None:
        raise StartupError(f"{what} {d}: cannot be written: {blocker} is a file, not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"{what} {d}: cannot be written: {_why(exc)}") from None


def check_paths(cfg: Any, summary_path: str | None, console: bool = False) -> None:
    """Every path this run will write (the lock folder is checked when the lock is taken: claim_instance).
    The console's log defaults to var/flashmm.log (the terminal is its screen); the daemon's empty
    [logging].file means stderr."""
    log_file = cfg.logging.file or ("var/flashmm.log" if console else "")
    if log_file:
        check_writable_file(log_file, "log file ([logging].file)")
    if cfg.logging.audit_file:
        check_writable_file(cfg.logging.audit_file, "audit log ([logging].audit_file)")
    if summary_path:
        s = Path(summary_path)
        if s.is_dir():
            raise StartupError(f"summary {s} (--summary): is a folder, not a file")
        if s.exists():
            check_writable_file(s, "summary (--summary)")
        check_writable_dir(s.parent, "summary folder (--summary)")  # written as a temporary file + rename


def check_redis(cfg: Any, timeout_s: float = 2.0) -> None:
    """PING the configured Redis (state on); one line telling refused / unreachable / timed out / a wrong or
    missing password / anything else Redis answered apart."""
    if not cfg.redis.enabled:
        return
    import redis
    from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

    url = cfg.redis.url
    where = f"Redis at {redact_url(url)} ([redis].url)"
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except ValueError as exc:
        raise StartupError(f"{where}: not a Redis URL: {exc}") from None
    try:
        client.ping()
    except AuthenticationError as exc:
        text = _first_line(exc)
        if "HELLO must be called" in text or "NOAUTH" in text:
            text = "the server needs a password and the URL carries none (set FLASHMM_REDIS__URL)"
        raise StartupError(f"{where}: authentication failed: {text}") from None
    except TimeoutError:
        raise StartupError(f"{where}: no answer within {timeout_s:g} s") from None
    except ConnectionError as exc:
        text = _first_line(exc)
        if "refused" in text.lower():
            text = "connection refused (is redis-server running there?)"
        raise StartupError(f"{where}: {text}") from None
    except ResponseError as exc:
        text = _first_line(exc)
        if text.startswith("NOAUTH"):
            text = "the server needs a password and the URL carries none (set FLASHMM_REDIS__URL)"
        elif "WRONGPASS" in text or "invalid password" in text.lower():
            text = f"authentication failed: {text}"
        raise StartupError(f"{where}: {text}") from None
    except OSError as exc:
        raise StartupError(f"{where}: {_why(exc)}") from None
    finally:
        try:
            client.close()
        except Exception:
            pass


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
