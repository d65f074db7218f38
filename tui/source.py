"""What the console reads and controls: a *source*.

- `LocalSource`: the engine in this process, through its `LocalControl` (flashmm/control/commands.py);
- `RemoteSource`: a daemon's control socket (`flashmm-tui --attach`): the same snapshots, decoded, with
  the blotters' series merged frame by frame (each frame after the first carries only what is new), and the same commands; it reconnects when the daemon goes
  away and says so, without touching trading;
- `FixedSource`: one fixed snapshot (tests, demos).

A source has `attached`, `link` ((ok, text) for the header), `version`, `snapshot(depth)`,
`async command(name, args, why) -> Reply`, and `stop(cause)` (the in-process shutdown path; an attached
console detaches instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pwd
import time
from collections import deque
from pathlib import Path
from typing import Any

from flashmm.control.client import ControlClient, ControlError
from flashmm.control.codec import decode_snapshot
from flashmm.control.commands import Reply
from flashmm.control.view import BLOTTER_FILLS, BLOTTER_ORDERS, HISTORY
from flashmm.core.engine import EngineSnapshot


def console_who() -> str:
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return f"console (pid {os.getpid()}, user {user})"


class LocalSource:
    attached = False

    def __init__(self, control: Any, stop: Any = None) -> None:
        self.control = control
        self._stop = stop  # Session.request_stop
        self.link: tuple[bool, str] = (True, "")
        self.who = console_who()

    @property
    def version(self) -> int:
        return self.control.version

    def snapshot(self, depth: int = 10) -> EngineSnapshot:
        return self.control.snapshot(depth)

    async def command(self, name: str, args: dict[str, Any] | None = None, why: str = "") -> Reply:
        return self.control.command(name, args, self.who, why)

    def stop(self, cause: str) -> bool:
        if self._stop is None:
            return False
        return self._stop(cause, self.who)


class FixedSource:
    """Always the same snapshot; records the commands sent to it (tests, demos)."""

    attached = False

    def __init__(self, snap: EngineSnapshot) -> None:
        self.snap = snap
        self.version = snap.version
        self.link: tuple[bool, str] = (True, "")
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.stops: list[str] = []

    def snapshot(self, depth: int = 10) -> EngineSnapshot:
        return self.snap

    async def command(self, name: str, args: dict[str, Any] | None = None, why: str = "") -> Reply:
        self.calls.append((name, args or {}, why))
        o = self.snap.extra.get("operator")
        refused = dict(o.refused) if o is not None else {}
        if name in refused:
            return Reply(False, f"refused: {refused[name]}", kind="refused")
        return Reply(True, name)

    def stop(self, cause: str) -> bool:
        self.stops.append(cause)
        return True


class RemoteSource:
    """A daemon's snapshots and commands over its control socket. Never blocks the console: frames are
    kept as they arrive and decoded and merged at the console's pull; commands wait for their answer."""

    attached = True

    def __init__(self, path: str | os.PathLike[str], hz: float = 10.0, depth: int = 10) -> None:
        self.path = Path(path)
        self.hz = hz
        self.depth = depth
        self.client: ControlClient | None = None
        self.version = 0
        self.link: tuple[bool, str] = (False, f"connecting to {self.path}")
        self.connected = False
        self.daemon_pid = 0
        self.stopped: dict[str, Any] | None = None  # the daemon's final report, when it said it stopped
        self.attempts = 0
        self.detached = False
        self._task: asyncio.Task | None = None
        self._snap: EngineSnapshot | None = None
        self._fills: deque[Any] = deque(maxlen=BLOTTER_FILLS)
        self._done: deque[Any] = deque(maxlen=BLOTTER_ORDERS)
        self._history: deque[Any] = deque(maxlen=HISTORY)
        self._log: deque[tuple[int, Any]] = deque(maxlen=500)
        self._params: tuple[Any, ...] = ()
        self.gaps = 0  # frames that could not be merged (a whole one was asked for)
        self.frames = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="attach")

    async def _keep_connected(self) -> None:
        delay = 0.5
        while not self.detached:
            client = ControlClient(self.path, role="console")
            client.on_frame = self._on_frame
            client.on_close = self._on_close
            try:
                hello = await client.connect()
                await client.subscribe(self.hz, self.depth)
            except ControlError as exc:
                await client.close()
                self.attempts += 1
                self.connected = False
                last = _stopped(self.stopped) if self.stopped else str(exc)
                self.link = (False, f"DISCONNECTED: {last}; retrying in {delay:.0f}s")
                self.version += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            self.client = client
            self.connected = True
            self.stopped = None
            self.daemon_pid = int(hello.get("pid", 0))
            self.link = (True, f"ATTACHED pid {self.daemon_pid}")
            self.version += 1
            await client.closed.wait()
            self.connected = False
            if client.stopped is not None:
                self.stopped = client.stopped
            self.client = None
            if self.detached:
                break
            self.link = (False, f"DISCONNECTED: {_stopped(self.stopped) if self.stopped else 'connection lost'}; retrying")
            self.version += 1

    def _on_frame(self) -> None:
        self.version += 1
        self.frames += 1

    def _on_close(self) -> None:
        self.version += 1

    async def detach(self) -> None:
        self.detached = True
        if self.client is not None:
            await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # ---- snapshots -----------------------------------------------------------------------------------------
    def snapshot(self, depth: int = 10) -> EngineSnapshot | None:
        c = self.client
        if c is not None and c.pending:
            frames, c.pending = c.pending, []
            if c.overflowed:  # frames were dropped before we took them: ask for a whole one
                c.overflowed = 0
                self.gaps += 1
                asyncio.ensure_future(self._resubscribe())
            for raw in frames:
                try:
                    self._merge(decode_snapshot(raw))
                except (ValueError, TypeError, KeyError) as exc:  # a frame this console cannot read: said, skipped
                    self.link = (False, f"unreadable frame from the daemon: {type(exc).__name__}: {exc}")
        if self._snap is None:
            return None
        o = self._snap.extra["operator"]
        if not self.connected and not o.stopping:
            o = dataclasses.replace(o, refused=tuple((c, "not connected to the daemon") for c in
                                                     ("pause", "resume", "toggle_pause", "widen", "tighten",
                                                      "flatten", "kill", "set", "save", "stop")))
            return dataclasses.replace(self._snap, extra={**self._snap.extra, "operator": o})
        return self._snap

    def _merge(self, snap: EngineSnapshot) -> None:
        """Whole series (the first frame, or after a skipped one) replace ours; tails are appended by number.
        A hole (a frame lost) asks the daemon for a whole frame again."""
        o = snap.extra["operator"]
        if o.full:
            self._fills = deque(o.fills, maxlen=BLOTTER_FILLS)
            self._done = deque(o.orders_done, maxlen=BLOTTER_ORDERS)
            self._history = deque(o.history, maxlen=HISTORY)
            first = o.log_seq - len(snap.log) + 1
            self._log = deque(((first + i, x) for i, x in enumerate(snap.log)), maxlen=500)
            self._params = o.params
        else:
            ok = _merge_seq(self._fills, o.fills, replace=True)
            ok &= _merge_seq(self._done, o.orders_done)
            ok &= _merge_seq(self._history, o.history)
            first = o.log_seq - len(snap.log) + 1
            last_log = self._log[-1][0] if self._log else 0
            if snap.log and first > last_log + 1 and last_log:
                ok = False
            for i, x in enumerate(snap.log):
                if first + i > last_log:
                    self._log.append((first + i, x))
            if o.params:
                self._params = o.params
            if not ok:
                self.gaps += 1
                if self.client is not None:  # resubscribing makes the next frame whole
                    asyncio.ensure_future(self._resubscribe())
        o = dataclasses.replace(o, full=True, fills=tuple(self._fills), orders_done=tuple(self._done),
                                history=tuple(self._history), params=self._params)
        self._snap = dataclasses.replace(snap, log=tuple(x for _, x in self._log), extra={**snap.extra, "operator": o})

    async def _resubscribe(self) -> None:
        with contextlib.suppress(ControlError):
            if self.client is not None:
                await self.client.subscribe(self.hz, self.depth)

    # ---- commands --------------------------------------------------------------------------------------------
    async def command(self, name: str, args: dict[str, Any] | None = None, why: str = "") -> Reply:
        c = self.client
        if c is None or not self.connected:
            return Reply(False, f"refused: not connected to the daemon ({self.link[1]})", kind="refused")
        try:
            msg = await c.request(name, args, why)
        except ControlError as exc:
            return Reply(False, f"failed: {exc}", kind="failed")
        return Reply(bool(msg.get("ok")), str(msg.get("result", "")), msg.get("data"))

    def stop(self, cause: str) -> bool:
        return False  # an attached console never stops the daemon by itself going away


def _stopped(report: dict[str, Any]) -> str:
    return f"daemon stopped, exit {report.get('code')} ({report.get('cause')})"


def _merge_seq(dst: deque[Any], tail: tuple[Any, ...], replace: bool = False) -> bool:
    """Append the items of `tail` numbered after ours; with `replace`, items we have are updated (a fill's
    markout arrives after the fill). False when the new items start after a hole."""
    if not tail:
        return True
    last = dst[-1].seq if dst else 0
    newer = [x.seq for x in tail if x.seq > last]
    if dst and newer and newer[0] != last + 1:
        return False
    if replace and dst:
        first = dst[0].seq
        for item in tail:
            if first <= item.seq <= last:
                dst[item.seq - first] = item
    for item in tail:
        if item.seq > last:
            dst.append(item)
    return True


def now_s() -> float:
    return time.monotonic()
