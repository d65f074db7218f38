"""The control socket: a local Unix socket serving snapshots and taking commands (no TCP listener).

Protocol: one JSON object a line each way. A request is {"id": ..., "cmd": NAME, "args": {...}, "who": ...,
"why": ...}; the answer is {"type": "reply", "id": ..., "ok": ..., "result": ..., "data": ...}, or
{"type": "error", ...} for input that is not a request at all. `subscribe` ({"hz", "depth"}) makes the
server push {"type": "snapshot", "snapshot": ...} lines while the engine changes; at the end every
connection gets {"type": "stopped", "report": ...} before the server closes.

Safety: the socket is created 0600 in a 0700 folder that this uid owns; each connection's peer uid is read
with SO_PEERCRED and must be ours (or listed in [control].allowed_uids); lines are bounded; bad input gets
an error line and a counted rejection, never an exception out of the server. The engine never waits for a
client: snapshots are built and serialised once per publish tick (between batches, not in the hot path)
and written without awaiting; a client whose unsent bytes pass [control].client_buffer_bytes misses
snapshots (counted), and one that keeps sending without reading is disconnected. A console's first frame
carries whole series (blotters, event log, histories); after that each frame carries only the items it
has not been sent (numbered, merged by the console), so a frame stays small whatever the scrollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from flashmm.control.codec import PROTOCOL, encode
from flashmm.telemetry.logging import get_logger

if TYPE_CHECKING:
    from flashmm.config import ControlConfig
    from flashmm.control.commands import LocalControl

MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its terminating NUL
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlSocketError(RuntimeError):
    """The control socket cannot be served: one line for the operator (exit 2)."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED, Linux)."""
    return _CREDS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size))


def prepare_socket_path(path: str | os.PathLike[str]) -> Path:
    """Check and make ready the socket's folder (0700, ours) and clear a stale socket left by a process
    that died without removing it (kill -9). A live socket means another process serves it: refused."""
    p = Path(path)
    if len(os.fsencode(str(p))) > MAX_UNIX_PATH:
        raise ControlSocketError(f"control socket path {p} is {len(os.fsencode(str(p)))} bytes, longer than a Unix "
                                 f"socket allows ({MAX_UNIX_PATH}): set a shorter [control].socket")
    folder = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError as exc:
        raise ControlSocketError(f"control socket folder {folder}: {exc.strerror or exc}") from None
    if st.st_uid != os.getuid():
        raise ControlSocketError(f"control socket folder {folder} belongs to uid {st.st_uid}, not to this process "
                                 f"(uid {os.getuid()}): choose another [control].socket")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # others must not even reach the socket
    try:
        lst = p.lstat()
    except FileNotFoundError:
        return p
    if not stat.S_ISSOCK(lst.st_mode):
        raise ControlSocketError(f"control socket path {p} exists and is not a socket: remove it or choose another")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(p))
    except (ConnectionRefusedError, FileNotFoundError):
        p.unlink(missing_ok=True)  # nobody listens: left by a process that died
        return p
    except OSError as exc:
        raise ControlSocketError(f"control socket {p}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ControlSocketError(f"control socket {p} is served by another running process (flashmm ctl --socket {p} "
                             "status): stop it first, or set another [control].socket")


class _Client:
    __slots__ = ("reader", "writer", "pid", "uid", "role", "hz", "depth", "last_sent", "dropped", "since", "needs_full",
                 "sent")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int, uid: int) -> None:
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.uid = uid
        self.role = "client"
        self.hz = 0.0  # 0 = not subscribed
        self.depth = 10
        self.last_sent = 0.0
        self.dropped = 0
        self.since = time.monotonic()
        self.needs_full = True  # the first frame (and the one after a skipped frame) carries whole series
        self.sent: dict[str, int] = {}  # the newest item of each series this client has been sent

    @property
    def who(self) -> str:
        return f"{self.role} (pid {self.pid}, uid {self.uid})"


class ControlServer:
    def __init__(self, cfg: ControlConfig, control: LocalControl) -> None:
        self.cfg = cfg
        self.control = control
        self.path = Path(cfg.socket)
        self.allowed_uids = {os.getuid(), *cfg.allowed_uids}
        self.log = get_logger("control")
        self.clients: set[_Client] = set()
        self.rejected: Counter[str] = Counter()
        self.connections = 0
        self.snapshots_sent = 0
        self.snapshots_dropped = 0
        self.serialise_ns = 0  # total time spent building + encoding snapshots (for the benchmark)
        self.frames_built = 0
        self._server: asyncio.base_events.Server | None = None
        self._publisher: asyncio.Task | None = None
        self._handlers: set[asyncio.Task] = set()
        self._last_version = -1
        self._frame = b""

    # ---- life ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        p = prepare_socket_path(self.path)
        old = os.umask(0o177)  # the socket is born 0600: never a moment when others could connect
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(p), limit=self.cfg.max_request_bytes)
        except OSError as exc:
            raise ControlSocketError(f"control socket {p}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        os.chmod(p, 0o600)
        self._ino = p.stat().st_ino
        self.control.where = str(p)
        self._publisher = asyncio.create_task(self._publish(), name="control-publisher")
        self.log.info("control_listening", socket=str(p), mode="0600", allowed_uids=sorted(self.allowed_uids))

    async def close(self, report: dict[str, Any] | None = None) -> None:
        """Tell every connection the process stopped (with its report), then close and remove the socket."""
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
        if self._server is not None:
            self._server.close()
        line = encode({"type": "stopped", "report": report or {}})
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                c.writer.write(line)
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.writer.drain(), 1.0)
            c.writer.close()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == getattr(self, "_ino", None):  # ours, not a successor's
                self.path.unlink()

    def stats(self) -> dict[str, Any]:
        return {"socket": str(self.path), "clients": len(self.clients), "connections": self.connections,
                "rejected": dict(self.rejected), "snapshots_sent": self.snapshots_sent,
                "snapshots_dropped": self.snapshots_dropped}

    # ---- connections --------------------------------------------------------------------------------
    def _reject(self, reason: str, writer: asyncio.StreamWriter, text: str, req_id: Any = None) -> None:
        self.rejected[reason] += 1
        with contextlib.suppress(Exception):
            writer.write(encode({"type": "error", "id": req_id, "error": text, "reason": reason}))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # never out of the server: log it and drop this connection only
            self.rejected["internal_error"] += 1
            self.log.error("control_connection_error", error=f"{type(exc).__name__}: {exc}")
        finally:
            if task is not None:
                self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, _ = peer_credentials(sock)
        except (OSError, AttributeError, struct.error):
            self._reject("peer_unknown", writer, "peer credentials unavailable")
            return
        if uid not in self.allowed_uids:
            self._reject("peer_uid", writer, f"peer uid {uid} is not allowed on this control socket")
            self.log.warning("control_peer_refused", pid=pid, uid=uid)
            await _drain(writer)
            return
        if len(self.clients) >= self.cfg.max_clients:
            self._reject("too_many_clients", writer, f"too many connections ({self.cfg.max_clients}, [control].max_clients)")
            await _drain(writer)
            return
        client = _Client(reader, writer, pid, uid)
        self.clients.add(client)
        self.connections += 1
        self.control.clients = len(self.clients)
        self.control.changed()
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    self._reject("too_long", writer, f"request longer than {self.cfg.max_request_bytes} bytes: "
                                                     "connection closed")
                    await _drain(writer)
                    return
                except (ConnectionError, OSError):
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                self._handle(client, line)
                if writer.transport.get_write_buffer_size() > self.cfg.client_buffer_bytes:
                    self.rejected["slow_client"] += 1  # sends without reading the answers
                    return
        finally:
            self.clients.discard(client)
            self.control.clients = len(self.clients)
            self.control.changed()

    def _handle(self, client: _Client, line: bytes) -> None:
        w = client.writer
        try:
            req = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._reject("bad_json", w, "not JSON (one JSON object a line)")
            return
        if not isinstance(req, dict):
            self._reject("not_object", w, "a request is a JSON object")
            return
        req_id = req.get("id")
        if isinstance(req_id, bool) or (req_id is not None and not isinstance(req_id, (int, str))):
            self._reject("bad_id", w, "id must be an integer or a string")
            return
        cmd = req.get("cmd")
        args = req.get("args", {})
        who, why = req.get("who", ""), req.get("why", "")
        if not isinstance(who, str) or not isinstance(why, str) or len(who) > 200 or len(why) > 1000:
            self._reject("bad_field", w, "who and why must be short strings", req_id)
            return
        if who:
            client.role = who
        if cmd == "hello":
            e = self.control.engine
            w.write(encode({"type": "reply", "id": req_id, "ok": True, "result": "hello",
                            "data": {"protocol": PROTOCOL, "pid": os.getpid(), "venue": e.venue.name,
                                     "symbol": e.instrument.symbol, "socket": str(self.path)}}))
            return
        if cmd == "subscribe":
            if not isinstance(args, dict):
                self._reject("bad_args", w, "subscribe: arguments must be an object", req_id)
                return
            hz, depth = args.get("hz", self.cfg.publish_hz), args.get("depth", 10)
            if (isinstance(hz, bool) or not isinstance(hz, (int, float)) or not 0 < hz <= 1000
                    or isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 50):
                self._reject("bad_args", w, "subscribe: hz must be > 0 and depth 1..50", req_id)
                return
            client.hz = min(float(hz), self.cfg.publish_hz)
            client.depth = depth
            client.last_sent = 0.0
            client.needs_full = True
            self._last_version = -1  # a new subscriber gets the current picture at once
            w.write(encode({"type": "reply", "id": req_id, "ok": True, "result": f"subscribed at {client.hz:g} Hz"}))
            return
        if cmd == "unsubscribe":
            client.hz = 0.0
            w.write(encode({"type": "reply", "id": req_id, "ok": True, "result": "unsubscribed"}))
            return
        if cmd == "save" and client.uid != os.getuid():  # it writes a file as this process's user
            self._reject("bad_args", w, "save is allowed to this process's own user only", req_id)
            return
        reply = self.control.command(cmd, args, client.who, why)
        if reply.kind in ("unknown_command", "bad_args"):
            self.rejected[reply.kind] += 1
        try:
            out = encode({"type": "reply", "id": req_id, "ok": reply.ok, "result": reply.result, "data": reply.data})
        except (TypeError, orjson.JSONEncodeError) as exc:
            self.rejected["internal_error"] += 1
            out = encode({"type": "error", "id": req_id, "error": f"reply not serialisable: {exc}"})
        w.write(out)

    # ---- snapshots ---------------------------------------------------------------------------------------
    async def _publish(self) -> None:
        """One snapshot per tick when the engine changed, encoded once, written to every subscriber that is
        due and keeping up. Runs between batches on the engine's loop; the hot path never sees it."""
        period = 1.0 / self.cfg.publish_hz
        limit = self.cfg.client_buffer_bytes
        while True:
            await asyncio.sleep(period)
            self.control.tick()
            subs = [c for c in self.clients if c.hz > 0]
            if not subs:
                continue
            version = self.control.version
            if version == self._last_version:
                continue
            now = time.monotonic()
            due = [c for c in subs if now - c.last_sent >= 1.0 / c.hz - period / 2]
            if not due:
                continue
            t0 = time.perf_counter_ns()
            depth = max(c.depth for c in due)
            seqs = self.control.seqs()
            frames: dict[bool, bytes] = {}
            if any(c.needs_full for c in due):
                frames[True] = encode({"type": "snapshot", "snapshot": self.control.snapshot(depth)})
            behind = [c for c in due if not c.needs_full]
            if behind:  # what the furthest-behind of them lacks: nothing more
                since = {k: min(c.sent.get(k, 0) for c in behind) for k in seqs}
                frames[False] = encode({"type": "snapshot", "snapshot": self.control.snapshot(depth, since=since)})
            self.serialise_ns += time.perf_counter_ns() - t0
            self.frames_built += len(frames)
            self._last_version = version
            for c in due:
                transport = c.writer.transport
                if transport.is_closing():
                    continue
                if transport.get_write_buffer_size() > limit:
                    c.dropped += 1
                    c.needs_full = True  # it missed items: the next frame it gets is whole
                    self.snapshots_dropped += 1
                    continue
                c.writer.write(frames[c.needs_full])
                c.needs_full = False
                c.sent = seqs
                c.last_sent = now
                self.snapshots_sent += 1


async def _drain(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 1.0)
