"""A client of the control socket, for `flashmm ctl` and `flashmm-tui --attach`.

One connection carries requests (answered in order, matched by id) and, once subscribed, snapshot lines
the server pushes. Frames are kept as received (decoded only when taken): after the first, a frame carries
only what is new, so every frame is taken and merged in order (`pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from flashmm.control.codec import encode

READ_LIMIT = 64 * 1024 * 1024  # a snapshot line (the book, blotters, histories) is far below this
MAX_PENDING = 200  # frames kept for a reader that does not take them (then only the newest, and a gap)


class ControlError(RuntimeError):
    """The control socket cannot be reached or answered with an error: one line for the operator."""


class ControlClient:
    def __init__(self, path: str | os.PathLike[str], role: str = "ctl") -> None:
        self.path = Path(path)
        self.role = role
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader_task: asyncio.Task | None = None
        self.latest: dict[str, Any] | None = None  # the newest snapshot as received (a dict)
        self.pending: list[dict[str, Any]] = []  # frames not taken yet (frames after the first carry only news)
        self.overflowed = 0
        self.received = 0
        self.stopped: dict[str, Any] | None = None  # the server's final report, when it said it stopped
        self.closed = asyncio.Event()
        self.on_frame: Callable[[], None] | None = None  # a snapshot arrived
        self.on_close: Callable[[], None] | None = None
        self.hello: dict[str, Any] = {}

    async def connect(self, timeout: float = 3.0) -> dict[str, Any]:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path), limit=READ_LIMIT), timeout)
        except FileNotFoundError:
            raise ControlError(f"no control socket at {self.path} (is the daemon running? see [control].socket)") from None
        except ConnectionRefusedError:
            raise ControlError(f"nothing listens on {self.path} (the daemon stopped?)") from None
        except PermissionError:
            raise ControlError(f"{self.path}: permission denied (the socket is 0600 for the daemon's user)") from None
        except (OSError, TimeoutError) as exc:
            raise ControlError(f"{self.path}: {getattr(exc, 'strerror', None) or exc or 'timed out'}") from None
        self._reader_task = asyncio.create_task(self._read())
        reply = await self.request("hello", timeout=timeout)
        self.hello = reply.get("data") or {}
        return self.hello

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                try:
                    msg = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "snapshot":
                    self.latest = msg.get("snapshot")
                    self.received += 1
                    self.pending.append(self.latest)
                    if len(self.pending) > MAX_PENDING:  # nobody is taking them: keep the newest only
                        del self.pending[:-1]
                        self.overflowed += 1
                    if self.on_frame is not None:
                        self.on_frame()
                elif kind == "stopped":
                    self.stopped = msg.get("report") or {}
                elif kind in ("reply", "error"):
                    fut = self._pending.pop(msg.get("id"), None) if isinstance(msg.get("id"), int) else None
                    if fut is None and kind == "error" and len(self._pending) == 1:
                        fut = self._pending.pop(next(iter(self._pending)))  # refused before our id was read
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlError("the daemon closed the connection"))
            self._pending.clear()
            self.closed.set()
            if self.on_close is not None:
                self.on_close()

    async def request(self, cmd: str, args: dict[str, Any] | None = None, why: str = "",
                      timeout: float = 10.0) -> dict[str, Any]:
        """Send one request; its reply ({"ok", "result", "data"}) or ControlError."""
        if self.writer is None or self.closed.is_set():
            raise ControlError("not connected")
        rid = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.writer.write(encode({"id": rid, "cmd": cmd, "args": args or {}, "who": self.role, "why": why}))
        try:
            msg = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._pending.pop(rid, None)
            raise ControlError(f"{cmd}: no answer within {timeout:g} s") from None
        if msg.get("type") == "error":
            raise ControlError(str(msg.get("error")))
        return msg

    async def subscribe(self, hz: float = 10.0, depth: int = 10) -> None:
        reply = await self.request("subscribe", {"hz": hz, "depth": depth})
        if not reply.get("ok"):
            raise ControlError(str(reply.get("result")))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
        self.closed.set()


async def one_request(path: str | os.PathLike[str], cmd: str, args: dict[str, Any] | None = None, why: str = "",
                      timeout: float = 10.0) -> dict[str, Any]:
    client = ControlClient(path, role="flashmm ctl")
    await client.connect(timeout)
    try:
        return await client.request(cmd, args, why, timeout)
    finally:
        await client.close()
