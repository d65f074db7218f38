"""The one interface between the engine and any market (simulated, replayed, live).

Nothing in the strategy knows which venue it is talking to: a venue delivers batches of events
(a block, a frame) and accepts order actions, whose outcomes come back later as events.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from flashmm.core.clock import NS_PER_S, Clock
from flashmm.core.domain import AccountState, Event, Instrument, OrderAction
from flashmm.telemetry.histogram import LatencyHistogram


class VenueStartError(RuntimeError):
    """The venue cannot start: no endpoint answers, the wrong chain, no signing key. One clear line."""


class VenueUnavailableError(ConnectionError):
    """The venue did not answer a query (a stalled or restarting node, an error answer): the engine pauses
    quoting and retries; it is never an engine fault."""


class Venue(ABC):
    name: str
    instrument: Instrument
    clock: Clock
    maker_fee_bps: float = 0.0  # what a passive fill costs here (the quoter keeps its edge above it)
    # Live feeds can go quiet: the engine then waits for a batch at most [risk].feed_stale_s of wall time.
    # Venues that own their clock (sim, replay) never go quiet, and skip that timer on every batch.
    wall_clock_feed: bool = True
    # The account this venue trades, when it outlives the process (a chain address): one process at a time may
    # hold it (flashmm/ops/lease.py). None: the account lives and dies with this process (sim, replay).
    account_id: str | None = None
    # The venue saw something about the account the engine should check now, not at the next reconciliation
    # (an order or transaction of the account that this process did not send); account_state() clears it.
    reconcile_soon: bool = False
    # Does the venue's time run with wall time (live; a simulated clock paced at a finite speed)? An unpaced
    # replay or benchmark does not: the engine's own wall-clock speed says nothing about its market there, and
    # must not change what it trades (the latency breaker's tick-to-quote test is skipped: a 250 ms GC pause
    # or a busy machine in one 10 s window of a backtest widened its quotes, so two runs differed).
    paced: bool = True

    @abstractmethod
    async def start(self) -> None:
        """Connect; the first batch delivered afterwards starts with a book snapshot."""

    @abstractmethod
    async def next_batch(self) -> list[Event] | None:
        """Wait for the next batch of events; None when the venue has ended (a replay ran out)."""

    @abstractmethod
    def submit(self, actions: Sequence[OrderAction]) -> None:
        """Hand order actions to the venue without waiting; acknowledgements arrive as events."""

    @abstractmethod
    async def account_state(self) -> AccountState:
        """The venue's record of our position and open orders."""

    def order_cost_quote(self, mid_ticks: float) -> float:
        """What placing one order and cancelling it later costs here beyond fees on fills, in the quote
        currency (gas, per-order exchange charges); 0 where orders are free. The quoter keeps its edge, and
        the order manager its requotes, above it."""
        return 0.0

    def link(self) -> tuple[bool, str]:
        """(connected, one short line) for the console header; empty for venues that own their clock."""
        return True, ""

    def status(self) -> dict[str, Any]:
        """Connection and transport counters for the summary and the console (live venues fill it in)."""
        return {}

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect. Cancelling orders first is the engine's job (Engine.shutdown)."""


class Pacer:
    """Paces a venue that owns its clock against wall time at `speed` x real time (inf = as fast as
    possible, yielding to other tasks every `yield_every` steps), and records how late each step was
    handed over (event-loop lag: a busy console or exporter shows up here)."""

    def __init__(self, speed: float, yield_every: int = 1) -> None:
        self.speed = speed
        self.yield_every = yield_every
        self.lateness = LatencyHistogram()
        self._wall_start = 0.0
        self._venue_start = 0
        self._steps = 0

    def start(self, venue_now_ns: int) -> None:
        self._wall_start = time.monotonic()
        self._venue_start = venue_now_ns

    async def wait_until(self, venue_ts_ns: int) -> None:
        """Return when wall time has caught up with `venue_ts_ns`."""
        self._steps += 1
        if math.isfinite(self.speed):
            due = self._wall_start + (venue_ts_ns - self._venue_start) / NS_PER_S / self.speed
            delay = due - time.monotonic()
            # behind schedule, still yield once: a venue that never awaits starves every other task on the loop
            # (signal handlers, the control socket, the console, a test's own coroutine waited for ever on a
            # machine too busy for speed=200)
            await asyncio.sleep(delay if delay > 0 else 0)
            self.lateness.record(max(0, int((time.monotonic() - due) * 1e9)))
        elif self._steps % self.yield_every == 0:
            await asyncio.sleep(0)  # let other tasks (console, progress, signals) run
