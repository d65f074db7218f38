"""Injected time. Every component reads time from a Clock: the wall clock live, a simulated clock in
replays and the embedded market, so runs are faster than real time and tests are deterministic."""

from __future__ import annotations

import time
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int: ...


class ClockBase:
    """What the engine's clocks share: `now_ns`. (The compiled build makes it an extension type, clock.pxd, that
    the engine holds its clock as: a read of the time is then a C call, three a market message.)"""

    __slots__ = ()

    def now_ns(self) -> int:
        raise NotImplementedError


class WallClock(ClockBase):
    """UTC wall time in nanoseconds since the epoch."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()


class SimClock(ClockBase):
    """A clock that only moves when told to; it never goes backwards."""

    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def advance_to(self, t_ns: int) -> None:
        if t_ns < self._now_ns:
            raise ValueError(f"SimClock cannot go backwards: {t_ns} < {self._now_ns}")
        self._now_ns = t_ns

    def advance(self, dt_ns: int) -> None:
        self.advance_to(self._now_ns + dt_ns)
