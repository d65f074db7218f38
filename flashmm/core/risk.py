"""Risk: limits that trim a quote proposal, and circuit breakers with an explicit state machine.

Proposal -> risk -> execution are separate steps: the strategy proposes, `RiskManager.trim` cuts the
proposal down to what the limits allow, and the breakers decide how the engine may trade at all.
Any doubt moves the engine toward fewer and wider quotes, never more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from flashmm.config import RiskConfig
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import Instrument, Side
from flashmm.core.strategy import QuoteLevel

_BUY, _SELL = Side.BUY, Side.SELL  # (an enum member read through its class costs ~40 ns)


class BreakerState(enum.StrEnum):
    OK = "ok"
    TRIPPED = "tripped"
    COOLING_DOWN = "cooling_down"


_OK, _TRIPPED, _COOLING_DOWN = BreakerState.OK, BreakerState.TRIPPED, BreakerState.COOLING_DOWN  # (as _BUY)

class BreakerAction(enum.StrEnum):
    PAUSE = "pause"  # no quotes
    WIDEN = "widen"  # quotes widened
    FLATTEN = "flatten"  # close the position, no new quotes
    KILL = "kill"  # cancel all, flatten, disable trading until restart
    FALLBACK = "fallback"  # model-free pricing
    ALERT = "alert"  # shown to the operator; trading goes on


@dataclass(frozen=True, slots=True)
class BreakerView:
    name: str
    action: str
    state: str
    reason: str
    since_ns: int
    trips: int


class Breaker:
    """ok -> tripped (on trip) -> cooling_down (on clear) -> ok (after the cooldown)."""

    __slots__ = ("name", "action", "state", "reason", "since_ns", "trips", "cooldown_ns")

    def __init__(self, name: str, action: BreakerAction, cooldown_s: float) -> None:
        self.name = name
        self.action = action
        self.state = _OK
        self.reason = ""
        self.since_ns = 0
        self.trips = 0
        self.cooldown_ns = int(cooldown_s * NS_PER_S)

    @property
    def active(self) -> bool:
        """Does it still restrict trading? (tripped or cooling down)"""
        return self.state is not _OK

    def trip(self, reason: str, now_ns: int) -> bool:
        """Returns True when this is a new trip."""
        if self.state is _TRIPPED:
            self.reason = reason
            return False
        self.state = _TRIPPED
        self.reason = reason
        self.since_ns = now_ns
        self.trips += 1
        return True

    def clear(self, now_ns: int) -> bool:
        """The condition is gone: start cooling down (or finish it). Returns True on a state change."""
        if self.state is _TRIPPED:
            self.state = _COOLING_DOWN if self.cooldown_ns else _OK
            self.since_ns = now_ns
            if self.state is _OK:
                self.reason = ""
            return True
        if self.state is _COOLING_DOWN and now_ns - self.since_ns >= self.cooldown_ns:
            self.state = _OK
            self.reason = ""
            self.since_ns = now_ns
            return True
        return False

    def view(self) -> BreakerView:
        return BreakerView(self.name, self.action.value, self.state.value, self.reason, self.since_ns, self.trips)


BREAKER_ACTIONS: dict[str, BreakerAction] = {
    "feed": BreakerAction.PAUSE,  # stale or disconnected market data, stale book
    "venue_errors": BreakerAction.PAUSE,  # too many rejections
    "drawdown": BreakerAction.PAUSE,  # PnL drawdown limit
    "latency": BreakerAction.WIDEN,  # slow tick-to-quote
    "inventory": BreakerAction.FLATTEN,  # position beyond its limit
    "extreme_market": BreakerAction.KILL,  # jump or volatility spike
    "model": BreakerAction.FALLBACK,  # no model, drift, low confidence
    "state": BreakerAction.ALERT,  # the state store (Redis) is down or lost its journal: trading goes on from memory
    "account": BreakerAction.PAUSE,  # another client trades this account, or the instance lease was lost
    "io": BreakerAction.ALERT,  # a log, audit or summary sink cannot write (lines go to stderr, counted)
}


class TokenBucket:
    """Rate limit in venue time."""

    __slots__ = ("rate_per_ns", "burst", "tokens", "last_ns")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_ns = rate_per_s / NS_PER_S
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_ns = -1

    def take(self, now_ns: int, n: int = 1) -> bool:
        if self.last_ns >= 0:
            self.tokens = min(self.burst, self.tokens + (now_ns - self.last_ns) * self.rate_per_ns)
        self.last_ns = now_ns
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class RiskManager:
    def __init__(self, cfg: RiskConfig, instrument: Instrument) -> None:
        self.cfg = cfg
        self.instrument = instrument
        self.breakers = {name: Breaker(name, action, cfg.breaker_cooldown_s) for name, action in BREAKER_ACTIONS.items()}
        self.trimmed_orders = 0

    def lots_for_usdc(self, usdc: float, mid_ticks: float) -> int:
        return int(self.instrument.lots_for(usdc, mid_ticks))

    def room(self, position_lots: int, mid_ticks: float, locked_bid_lots: int = 0, locked_ask_lots: int = 0) -> dict[Side, int]:
        """Lots that may rest on each side so that if all of them filled, including orders still waiting
        for a cancel confirmation (`locked_*`), the position would stay within the limit."""
        max_pos = self.lots_for_usdc(self.cfg.max_position_usdc, mid_ticks)
        return {_BUY: max(0, max_pos - position_lots - locked_bid_lots),
                _SELL: max(0, max_pos + position_lots - locked_ask_lots)}

    def trim(self, levels: tuple[QuoteLevel, ...], mid_ticks: float, room: dict[Side, int]) -> list[QuoteLevel]:
        """Cap order sizes at max_order_usdc and cumulative size per side at `room`; deeper levels are
        cut first."""
        max_order = self.lots_for_usdc(self.cfg.max_order_usdc, mid_ticks)
        left = dict(room)
        out: list[QuoteLevel] = []
        for lv in sorted(levels, key=lambda x: x.level):
            lots = min(lv.lots, max_order, left[lv.side])
            if lots != lv.lots:
                self.trimmed_orders += 1
            if lots <= 0:
                continue
            left[lv.side] -= lots
            out.append(lv if lots == lv.lots else QuoteLevel(lv.side, lv.level, lv.price_ticks, lots))
        return out

    def active(self, action: BreakerAction) -> list[Breaker]:
        return [b for b in self.breakers.values() if b.action is action and b.active]

    def any_active(self, actions: tuple[BreakerAction, ...]) -> bool:
        """Does any breaker with one of these actions restrict trading? (one pass; every quote cycle asks)"""
        ok = _OK
        for b in self.breakers.values():
            if b.state is not ok and b.action in actions:
                return True
        return False

    def views(self) -> tuple[BreakerView, ...]:
        return tuple(b.view() for b in self.breakers.values())
