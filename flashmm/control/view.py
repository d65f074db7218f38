"""What the operator's screen needs beyond the engine's own snapshot, built off the hot path.

`OperatorView` rides in `EngineSnapshot.extra["operator"]`: units from the instrument, the orders and fills
blotters, each breaker's current value against its threshold, the placement rate against its limit, a
flatten preview, the live parameters, and histories with a time axis (PnL realised vs unrealised, our
spread beside the market's). A `Recorder` samples the histories at most once a venue second; it is fed by
the control plane's timer, whether or not a console is looking, so a console attaching later sees them.

Everything here reads the engine between batches (commands and timers run on the engine's loop). Some
figures come from the engine's breaker windows (`_rejects`, `_window_t2q`, `_window_ack`, `_mids`): kept in
one function, `breaker_limits`, to follow `Engine._update_breakers`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from flashmm.control.params import ParamRow
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import OrderType, Side

if TYPE_CHECKING:
    from flashmm.core.engine import Engine

BLOTTER_FILLS = 500  # fills kept in the blotter's scrollback
BLOTTER_ORDERS = 300  # finished orders kept beside the live ones
HISTORY = 3600  # samples (one a venue second at most)
MARKOUT_S = 5.0  # the blotter's markout horizon
T2Q_TARGET_US = 1000.0  # tick-to-quote p99 target (README): over it, the console shows it in red


@dataclass(frozen=True, slots=True)
class Units:
    base: str
    quote: str
    price_tick: str
    lot_size: str
    bps_per_tick: float  # at the current mid (0 without one)
    settle: str = ""  # the currency PnL settles in (the base, for an inverse contract)

    @property
    def tiny_ticks(self) -> bool:
        """Distances read better in bps than in ticks (e.g. BTCUSDT: 0.0016 bps a tick)."""
        return 0 < self.bps_per_tick < 0.5


@dataclass(frozen=True, slots=True)
class OrderRow:
    seq: int  # finished orders: their number in the blotter (0 for live orders)
    client_id: int
    venue_id: str
    side: int  # 1 buy, -1 sell
    order_type: str  # limit | market
    level: int
    price_ticks: int
    lots: int
    filled_lots: int
    created_ns: int
    state: str
    cancel_requested: bool
    reason: str  # a rejection's reason


@dataclass(frozen=True, slots=True)
class FillRow:
    seq: int  # this run's fill number, from 1
    ts_ns: int
    client_id: int
    side: int
    price_ticks: float
    lots: int
    fee_quote: float
    is_maker: bool
    mid_ticks: float
    markout_bps: float | None  # mid MARKOUT_S later vs our price, in our favour; None until known


@dataclass(frozen=True, slots=True)
class LimitRow:
    breaker: str
    measure: str
    value: float | None
    threshold: float
    unit: str

    @property
    def over(self) -> bool:
        return self.value is not None and self.value > self.threshold


@dataclass(frozen=True, slots=True)
class RateView:
    placed_per_s: float  # placements per venue second over the last few seconds
    limit_per_s: float
    burst: int
    tokens: float
    rate_limited: int  # placements the bucket refused so far


@dataclass(frozen=True, slots=True)
class FlattenPreview:
    side: int  # the closing order's side (0: nothing to flatten)
    lots: int
    worst_price_ticks: int
    est_avg_price_ticks: float  # from the book's levels up to the worst price
    est_cost_quote: float  # against the mid (what closing costs now), >= 0
    fillable_lots: int  # what the visible book holds within the slippage cap
    note: str


@dataclass(frozen=True, slots=True)
class Sample:
    seq: int
    ts_ns: int
    total: float
    realised: float
    unrealised: float
    market_bps: float  # nan when not quoting both sides
    ours_bps: float
    placed_per_s: float


@dataclass(frozen=True, slots=True)
class OperatorView:
    """`full`: the series (orders done, fills, history, and the snapshot's event log) are complete; else they
    are the latest few only (the control socket's frames), which an attached console merges by `seq`."""

    full: bool
    log_seq: int  # number of the last event line (the snapshot's `log` ends with it)
    units: Units
    orders: tuple[OrderRow, ...]  # live orders (seq 0)
    orders_done: tuple[OrderRow, ...]  # finished orders, oldest first
    fills: tuple[FillRow, ...]  # oldest first
    limits: tuple[LimitRow, ...]
    rate: RateView
    flatten: FlattenPreview
    params: tuple[ParamRow, ...]
    history: tuple[Sample, ...]
    realised: float  # quote currency, like the snapshot's PnL
    unrealised: float
    market_spread_bps: float  # now (nan when not quoting both sides)
    our_spread_bps: float
    market_spread_avg_bps: float  # time-weighted over the run (the summary's figures)
    our_spread_avg_bps: float
    last_data_age_s: float  # wall seconds since the engine last processed a batch
    t2q_target_us: float
    clients: int  # consoles and ctl connections attached now
    control: str  # where the control plane listens ("" = in-process only)
    stopping: str  # "" or why the process is stopping
    stop_report: dict[str, Any]  # the shutdown report once done ({} before)
    refused: tuple[tuple[str, str], ...]  # (command, reason) for commands refused in the current mode


def units_of(engine: Engine) -> Units:
    inst = engine.instrument
    mid = engine.book.mid_ticks() if engine.book.two_sided() else 0.0
    return Units(inst.base, inst.quote, str(inst.price_tick), str(inst.lot_size), 1e4 / mid if mid else 0.0,
                 inst.settle_currency)


def pnl_split(engine: Engine, mid: float) -> tuple[float, float, float]:
    """(total, realised, unrealised) in the quote currency, as the snapshot's PnL (an inverse contract's
    settlement-currency PnL valued at the mid); realised + unrealised = total."""
    p = engine.portfolio
    if not mid:
        return -p.fees_paid, -p.fees_paid, 0.0
    realised, unrealised = p.realised_unrealised(mid)
    q = engine.instrument.to_quote
    return p.pnl_quote(mid).total, q(realised, mid), q(unrealised, mid)


def breaker_limits(engine: Engine, last_data_age_s: float) -> tuple[LimitRow, ...]:
    """Each breaker's measure now against the threshold that trips it (mirrors Engine._update_breakers)."""
    r = engine.cfg.risk
    book = engine.book
    now = engine.clock.now_ns()
    rows = [LimitRow("feed", "data age", last_data_age_s, r.feed_stale_s, "s")]
    horizon = now - int(r.reject_window_s * NS_PER_S)
    rejects = sum(1 for t in getattr(engine, "_rejects", ()) if t >= horizon)
    rows.append(LimitRow("venue_errors", f"rejects/{r.reject_window_s:g}s", float(rejects),
                         float(r.venue_reject_limit) - 0.5, ""))
    mid = book.mid_ticks() if book.two_sided() else 0.0
    if mid:
        pnl = engine.portfolio.pnl_quote(mid).total
        rows.append(LimitRow("drawdown", "below peak", max(0.0, engine.portfolio.peak_pnl - pnl),
                             r.max_drawdown_usdc, "USDC"))
    else:
        rows.append(LimitRow("drawdown", "below peak", None, r.max_drawdown_usdc, "USDC"))
    w = getattr(engine, "_window_t2q", None)
    rows.append(LimitRow("latency", "t2q p95",
                         w.percentile(95) / 1e6 if w is not None and w.count else None, r.latency_widen_ms, "ms"))
    a = getattr(engine, "_window_ack", None)
    rows.append(LimitRow("latency", "ack p95",
                         a.percentile(95) / 1e6 if a is not None and a.count else None, r.ack_latency_widen_ms, "ms"))
    breach = r.max_position_usdc * r.inventory_breach_pct / 100.0
    rows.append(LimitRow("inventory", "|position|", abs(engine.portfolio.exposure(mid)) if mid else None,
                         breach, "USDC"))
    mids = getattr(engine, "_mids", None)  # a RollingRange: its (min, max) as of the last cycle
    move = None
    lo_q, hi_q = getattr(mids, "_lo", None), getattr(mids, "_hi", None)
    if lo_q and hi_q:
        lo, hi = lo_q[0][1], hi_q[0][1]
        move = 1e4 * (hi - lo) / lo if lo > 0 else None
    rows.append(LimitRow("extreme_market", f"range/{r.extreme_window_s:g}s", move, r.extreme_move_bps, "bps"))
    return tuple(rows)


def flatten_preview(engine: Engine) -> FlattenPreview:
    """What `flatten` would send now: side, quantity, worst price (the slippage cap) and the cost against
    the mid of taking the visible book up to that price."""
    pos = engine.portfolio.position_lots
    book = engine.book
    if pos == 0:
        return FlattenPreview(0, 0, 0, 0.0, 0.0, 0, "flat: nothing to close")
    if not book.two_sided():
        return FlattenPreview(-1 if pos > 0 else 1, abs(pos), 0, 0.0, 0.0, 0, "no two-sided book: cannot price it")
    mid = book.mid_ticks()
    slip = mid * engine.cfg.controls.flatten_slippage_bps / 1e4
    side = Side.SELL if pos > 0 else Side.BUY
    worst = math.floor(mid - slip) if side is Side.SELL else math.ceil(mid + slip)
    worst = max(worst, 1)
    levels = book.bids.irange(reverse=True) if side is Side.SELL else book.asks.irange()
    depth = book.bids if side is Side.SELL else book.asks
    need, got, notional_ticks = abs(pos), 0, 0.0
    for price in islice(levels, 1000):
        if (side is Side.SELL and price < worst) or (side is Side.BUY and price > worst):
            break
        take = min(need - got, depth[price])
        got += take
        notional_ticks += take * price
        if got >= need:
            break
    avg = notional_ticks / got if got else 0.0
    cost = engine.instrument.notional(abs(avg - mid), got) if got else 0.0
    note = "" if got >= need else f"the visible book holds {got:,} of {need:,} lots within the cap"
    return FlattenPreview(int(side), need, worst, avg, cost, got, note)


class Recorder:
    """Numbered copies of what the engine appends (fills, event lines, finished orders) and sampled
    histories, so the screen gets them without rebuilding rows on every pull and an attached console can
    be sent only what is new. Fed between batches; each pass looks only at what was appended since."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.samples: deque[Sample] = deque(maxlen=HISTORY)
        self.fills: deque[FillRow] = deque(maxlen=BLOTTER_FILLS)
        self.events: deque[tuple[int, Any]] = deque(maxlen=500)  # (seq, LogLine)
        self.done: deque[OrderRow] = deque(maxlen=BLOTTER_ORDERS)
        self.fill_seq = self.event_seq = self.done_seq = self.sample_seq = 0
        self._last_fill: Any = None
        self._last_event: Any = None
        self._last_done: Any = None
        self._last_ts = -(1 << 62)
        self._placed: deque[tuple[int, int]] = deque(maxlen=64)  # (venue ts, orders placed so far)
        self._batches = -1
        self._last_batch_wall = time.monotonic()
        self._pending_markouts = 0  # fills at the end of self.fills whose markout is not known yet
        self.changes = 0  # counts every change here, so a console repaints (e.g. a markout filled in later)
        self.markout_seq = 0  # counts markouts filled in; `resolved` says which fill each one was
        self.resolved: deque[tuple[int, int]] = deque(maxlen=BLOTTER_FILLS)  # (markout number, fill number)

    def last_data_age_s(self) -> float:
        n = self.engine.counters.get("batches", 0)
        if n != self._batches:
            self._batches = n
            self._last_batch_wall = time.monotonic()
        return time.monotonic() - self._last_batch_wall

    def placed_per_s(self) -> float:
        if len(self._placed) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._placed[max(0, len(self._placed) - 6)], self._placed[-1]
        return (n1 - n0) / ((t1 - t0) / NS_PER_S) if t1 > t0 else 0.0

    @staticmethod
    def _new_since(items: Any, last: Any, limit: int) -> list[Any]:
        """Items appended to `items` after the object `last` (identity), at most `limit` of the newest."""
        new: list[Any] = []
        for x in reversed(items):
            if x is last or len(new) >= limit:
                break
            new.append(x)
        new.reverse()
        return new

    def catch_up(self) -> None:
        """Number what the engine appended since the last pass."""
        e = self.engine
        new_fills = self._new_since(e.portfolio.fills, self._last_fill, BLOTTER_FILLS)
        for f in new_fills:
            self.fill_seq += 1
            self.fills.append(FillRow(self.fill_seq, f.ts_ns, f.client_id, f.side, f.price_ticks, f.lots,
                                      f.fee_quote, f.is_maker, f.mid_ticks, None))
        if new_fills:
            self._last_fill = new_fills[-1]
            self._pending_markouts = min(len(self.fills), self._pending_markouts + len(new_fills))
        new_events = self._new_since(e.events_log, self._last_event, 500)
        for line in new_events:
            self.event_seq += 1
            self.events.append((self.event_seq, line))
        if new_events:
            self._last_event = new_events[-1]
        new_done = self._new_since(e.oms.done, self._last_done, BLOTTER_ORDERS)
        for o in new_done:
            self.done_seq += 1
            self.done.append(_order_row(o, self.done_seq))
        if new_done:
            self._last_done = new_done[-1]
        if new_fills or new_events or new_done:
            self.changes += 1
        self._markouts()

    def _markouts(self) -> None:
        """Fill in the markout of fills whose horizon has passed (the newest fills wait for theirs)."""
        n = self._pending_markouts
        if not n:
            return
        horizon = int(MARKOUT_S * NS_PER_S)
        fills = self.fills
        first = len(fills) - n
        for i in range(first, len(fills)):
            f = fills[i]
            later = self._mid_at(f.ts_ns + horizon)
            if later is None:
                break  # later fills are later still
            mo = f.side * 1e4 * (later - f.price_ticks) / f.price_ticks if f.price_ticks > 0 else math.nan
            fills[i] = FillRow(f.seq, f.ts_ns, f.client_id, f.side, f.price_ticks, f.lots, f.fee_quote, f.is_maker,
                               f.mid_ticks, mo)
            self.markout_seq += 1
            self.resolved.append((self.markout_seq, f.seq))
            n -= 1
        if n != self._pending_markouts:
            self.changes += 1
        self._pending_markouts = n

    def tick(self) -> None:
        """Cheap unless something was appended or a venue second has passed since the last sample."""
        e = self.engine
        self.last_data_age_s()
        self.catch_up()
        now = e.clock.now_ns()
        if now - self._last_ts < NS_PER_S or not e.book.two_sided():
            return
        self._last_ts = now
        self._placed.append((now, e.oms.counts.get("orders_placed", 0)))
        mid = e.book.mid_ticks()
        total, realised, unrealised = pnl_split(e, mid)
        market, ours = e.spread_history[-1] if e.spread_history else (math.nan, math.nan)
        self.sample_seq += 1
        self.changes += 1
        self.samples.append(Sample(self.sample_seq, now, total, realised, unrealised, market, ours,
                                   self.placed_per_s()))

    def _mid_at(self, ts_ns: int) -> float | None:
        ts, mids = self.engine.sample_ts, self.engine.mid_history
        if not ts or ts[-1] < ts_ns:
            return None
        i = bisect_left(ts, ts_ns)
        return mids[i] if i < len(mids) else None


def _order_row(o: Any, seq: int = 0) -> OrderRow:
    vid = str(o.venue_order_id) if o.venue_order_id >= 0 else ""
    return OrderRow(seq, o.client_id, vid, int(o.side), "market" if o.order_type is OrderType.MARKET else "limit",
                    o.level, o.price_ticks, o.lots, o.filled_lots, o.created_ns, o.state.value,
                    o.cancel_requested, o.reject_reason)


def order_rows(engine: Engine) -> tuple[OrderRow, ...]:
    """Live orders: buys then sells, by level."""
    live = sorted(engine.oms.orders.values(), key=lambda o: (-int(o.side), o.level, o.client_id))
    return tuple(_order_row(o) for o in live)


def rate_view(engine: Engine, recorder: Recorder) -> RateView:
    b = engine.oms.bucket
    r = engine.cfg.risk
    return RateView(recorder.placed_per_s(), r.max_orders_per_s, r.order_burst, round(b.tokens, 2),
                    int(engine.oms.counts.get("rate_limited", 0)))
