"""One instance per account: a local lock file per live venue account, and a lease in Redis per namespace.

Two processes trading one account fight: each cancels the other's orders as unknown, they race for the
signing sequence, and with one Redis namespace they journal each other's fills. So a process claims its
account before it trades:

- **Local lock** (always, for a venue whose account outlives the process: `Venue.account_id`): an exclusive
  `flock` on `<lock_dir>/<account>.lock`, holding the holder's host, pid, run id and start time. The kernel
  releases it when the process dies, however it dies, so it is never stale.
- **Redis lease** (when `[redis].enabled`): the key `<namespace>:<venue>:<symbol>:lease`, taken with
  `SET NX PX ttl` and renewed every third of the TTL by a thread (so a busy event loop cannot starve it) with
  a compare-and-expire script; it holds the same facts as the lock file. A holder that is gone (a process
  of this host that no longer exists, or one silent for two renewal periods: killed, its host down) is
  waited out: its lease is taken over only once it has expired, and that is logged. A holder that still
  renews makes the second instance refuse at once.

A second instance refuses to start with one line naming the holder (`InstanceError`, exit 2). A lease lost
while running (it expired during a stall longer than its TTL and someone else took it) is a `problem` the
engine shows as its `account` breaker (pause, held until an operator resumes); a lease that vanished (a
wipe, a Redis restart without persistence) is simply taken again and logged.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from flashmm.telemetry.logging import get_logger


class StartupError(RuntimeError):
    """FlashMM cannot start; the message is one line naming the file, key or server (exit 2)."""


class InstanceError(StartupError):
    """Another instance holds this account."""


def default_lock_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "flashmm" if runtime else Path(f"/tmp/flashmm-{os.getuid()}")


def redact_url(url: str) -> str:
    """A Redis URL fit for a message: the password replaced."""
    u = urlsplit(url)
    if u.password is None:
        return url
    netloc = (f"{u.username}:***@" if u.username else ":***@") + (u.hostname or "") + (f":{u.port}" if u.port else "")
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    run_id: str
    started: float  # wall time

    @classmethod
    def me(cls, run_id: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), run_id, time.time())

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on host {self.host} (run {self.run_id}, since {since})"

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Holder | None:
        try:
            d = orjson.loads(raw or b"")
            return cls(str(d["host"]), int(d["pid"]), str(d["run_id"]), float(d["started"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


# ====================================================================== local lock file ===============
class LocalLock:
    """An exclusive flock on one file per account; released by the kernel when the process ends."""

    def __init__(self, directory: Path, account_id: str, holder: Holder) -> None:
        self.account_id = account_id
        self.path = directory / (re.sub(r"[^A-Za-z0-9._-]+", "_", account_id).strip("_") + ".lock")
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StartupError(f"lock file {self.path} ([run].lock_dir): cannot be created: "
                               f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = Holder.parse(os.pread(fd, 4096, 0))
            os.close(fd)
            who = other.describe() if other else "another process"
            raise InstanceError(f"another FlashMM instance trades {self.account_id}: {who} holds the lock file "
                                f"{self.path}") from None
        except OSError as exc:
            os.close(fd)
            raise StartupError(f"lock file {self.path}: cannot be locked: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(self.holder.__dict__), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # the file stays (unlinking it would race a new holder's open)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


# ====================================================================== Redis lease ===================
# KEYS[1] lease key; ARGV[1] our value, ARGV[2] ttl ms. 1: renewed; 2: it was gone and is ours again; 0: another's.
_RENEW_LUA = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """`SET NX PX` with a renewing thread. `problem` is "" while the lease is ours."""

    def __init__(self, url: str, key: str, holder: Holder, ttl_s: float, *, socket_timeout_s: float = 1.0) -> None:
        import redis

        self.url = url
        self.key = key
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)
        self.value = orjson.dumps({**holder.__dict__, "ttl_ms": self.ttl_ms}).decode()
        self._redis = redis.Redis.from_url(url, socket_timeout=socket_timeout_s,
                                           socket_connect_timeout=socket_timeout_s)
        self._renew = self._redis.register_script(_RENEW_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)
        self.log = get_logger("lease")
        self.problem = ""  # why the lease is not ours ("" while it is)
        self.lost_to: Holder | None = None
        self.renewals = 0
        self.retakes = 0  # the lease had vanished (expired during a stall, a wipe) and was taken again
        self.errors = 0
        self.waited_s = 0.0  # waiting out a stale holder at start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = False

    def acquire(self, wait_stale: bool = True, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        """Take the lease or raise InstanceError naming its holder. A holder that has not renewed for two
        renewal periods is presumed gone: its lease is waited out (at most one TTL) and then taken over."""
        from redis.exceptions import RedisError

        t0 = clock()
        announced = False
        while True:
            try:
                if self._redis.set(self.key, self.value, nx=True, px=self.ttl_ms):
                    break
                raw, pttl = self._redis.get(self.key), self._redis.pttl(self.key)
            except (RedisError, OSError) as exc:
                raise StartupError(f"Redis at {redact_url(self.url)} ([redis].url): lease {self.key}: {exc}") from None
            if raw is None or pttl == -2:
                continue  # expired between the calls
            if pttl == 0:  # expiring within the millisecond
                sleep(0.002)
                continue
            other = Holder.parse(raw)
            try:
                their_ttl = int(orjson.loads(raw).get("ttl_ms", self.ttl_ms))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                their_ttl = self.ttl_ms
            silent_ms = their_ttl - pttl if pttl > 0 else 0  # every renewal resets the key's TTL to the full TTL
            who = other.describe() if other else repr(raw[:80])
            # gone: a process of this host that no longer exists, or a holder silent for two renewal periods
            gone = other is not None and other.host == self.holder.host and not _pid_alive(other.pid)
            stale = pttl > 0 and (gone or silent_ms > 2 * their_ttl / 3 + 200)
            if not (wait_stale and stale) or clock() - t0 > their_ttl / 1000 + 1.0:
                raise InstanceError(
                    f"another FlashMM instance holds the Redis lease {self.key}: {who}, renewed "
                    f"{silent_ms / 1000:.1f} s ago, expires in {pttl / 1000:.1f} s")
            if not announced:
                announced = True
                self.log.warning("lease_holder_gone", key=self.key, holder=who, silent_s=round(silent_ms / 1000, 3),
                                 process_exists=not gone, action=f"waiting {pttl / 1000:.1f} s for it to expire")
            sleep(min(max(pttl / 1000, 0.01), 0.25))
        self.waited_s = clock() - t0
        if announced:
            self.log.warning("lease_taken_over", key=self.key, waited_s=round(self.waited_s, 3))
        else:
            self.log.info("lease_taken", key=self.key, ttl_s=self.ttl_ms / 1000)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flashmm-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.ttl_ms / 3000
        while not self._stop.wait(period):
            self.renew_once()

    def renew_once(self) -> int | None:
        """One renewal: 1 renewed, 2 taken again (it had vanished), 0 lost to another holder, None on an error."""
        from redis.exceptions import RedisError

        try:
            r = int(self._renew(keys=[self.key], args=[self.value, self.ttl_ms]))
        except (RedisError, OSError) as exc:
            self.errors += 1
            if not self._down:
                self._down = True
                self.log.warning("lease_renewal_failed", key=self.key, error=f"{type(exc).__name__}: {exc}")
            return None
        if self._down:
            self._down = False
            self.log.info("lease_renewal_ok", key=self.key)
        if r == 1:
            self.renewals += 1
        elif r == 2:
            self.retakes += 1
            self.log.warning("lease_retaken", key=self.key,
                             reason="the lease had vanished: expired during a stall, or Redis lost it (a wipe, a "
                                    "restart without persistence)")
        else:
            try:
                other = Holder.parse(self._redis.get(self.key))
            except (RedisError, OSError):
                other = None
            if not self.problem:
                self.log.error("lease_lost", key=self.key, holder=other.describe() if other else "unknown")
            self.lost_to = other
            self.problem = (f"instance lease {self.key} lost to {other.describe() if other else 'another holder'}: "
                            f"another instance may trade this account")
        return r

    def acknowledge(self) -> None:
        """An operator resumed: a lease that is ours again clears the problem; one still held elsewhere stays."""
        if self.problem and self.renew_once() in (1, 2):
            self.problem = ""
            self.lost_to = None

    def release(self) -> None:
        from redis.exceptions import RedisError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self._release(keys=[self.key], args=[self.value])
        except (RedisError, OSError):
            pass  # it expires by itself
        try:
            self._redis.close()
        except Exception:
            pass


# ====================================================================== both, for the engine ==========
class InstanceGuard:
    """The lock and the lease of one process; the engine's `account` breaker shows `problem`."""

    def __init__(self, lock: LocalLock | None, lease: RedisLease | None) -> None:
        self.lock = lock
        self.lease = lease

    @property
    def problem(self) -> str:
        return self.lease.problem if self.lease is not None else ""

    def acknowledge(self) -> None:
        if self.lease is not None:
            self.lease.acknowledge()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.lock is not None:
            out["lock_file"] = str(self.lock.path)
        if self.lease is not None:
            out.update({"lease_key": self.lease.key, "lease_renewals": self.lease.renewals,
                        "lease_retakes": self.lease.retakes, "lease_errors": self.lease.errors,
                        "lease_waited_s": round(self.lease.waited_s, 3), "lease_problem": self.lease.problem})
        return out

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
        if self.lock is not None:
            self.lock.release()


def lease_key(namespace: str, venue_name: str, symbol: str) -> str:
    """The lease sits beside the journal it protects (flashmm.ops.daemon.make_state_store's namespace)."""
    return f"{namespace}:{venue_name}:{symbol}:lease"


def claim_instance(cfg: Any, venue: Any, run_id: str) -> InstanceGuard:
    """Take the local lock (live venues) and the Redis lease (state on), before anything trades; raises
    StartupError / InstanceError with one line. The lease renews itself from then on."""
    holder = Holder.me(run_id)
    lock = None
    account_id = getattr(venue, "account_id", None)
    if account_id:
        lock = LocalLock(Path(cfg.run.lock_dir).expanduser() if cfg.run.lock_dir else default_lock_dir(), account_id,
                         holder)
        lock.acquire()
    lease = None
    if cfg.redis.enabled:
        lease = RedisLease(cfg.redis.url, lease_key(cfg.redis.namespace, venue.name, venue.instrument.symbol), holder,
                           cfg.redis.lease_ttl_s)
        try:
            lease.acquire()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        lease.start()
    return InstanceGuard(lock, lease)
