"""The engine: venue events -> book -> features -> prediction -> quotes -> risk -> orders -> venue.

The hot path (`on_batch`) is synchronous and timestamps each stage with perf_counter_ns into latency
histograms. The engine knows nothing of the console: it publishes an immutable `EngineSnapshot` on
request, and operator controls come in as method calls, each written to the audit log.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from flashmm.config import Config
from flashmm.core.alpha import N_ALPHA, OnlineAlpha, alpha_inputs
from flashmm.core.book import L2Book, Levels
from flashmm.core.calibration import AdverseSelection, TradeIntensity, VirtualFills, VolatilityRegime
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import (
    REJECT_POST_ONLY,
    BookDiff,
    BookSnapshot,
    BookTop,
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    FeeCharge,
    Fill,
    OrderAck,
    OrderAction,
    OrderReject,
    OrderType,
    Side,
    Trade,
    VenueStatus,
)
from flashmm.core.execution import OrderManager, OrderState, OrderView
from flashmm.core.features import FeatureEngine
from flashmm.core.guards import Guards
from flashmm.core.metrics import (
    FillQuality,
    RollingRange,
    TimeWeightedSpreads,
    fill_rate,
    inventory_pct,
    orders_per_fill,
    spread_bps,
    spread_improvement,
    taker_share_pct,
    time_at_touch_pct,
)
from flashmm.core.risk import BreakerAction, BreakerView, RiskManager
from flashmm.core.state import PnL, Portfolio
from flashmm.core.strategy import QuoteProposal, Quoter
from flashmm.model.predictor import NoModelPredictor, Prediction, Predictor
from flashmm.telemetry.histogram import LatencyHistogram
from flashmm.telemetry.logging import AuditLog, get_logger

if TYPE_CHECKING:
    from flashmm.venues.base import Venue

T2Q_EDGES_NS = (0, 50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000, 5_000_000)
STAGES = ("book", "features", "predict", "quote", "risk", "orders", "submit")  # risk = breakers + limits
_HALTING = (BreakerAction.PAUSE, BreakerAction.FLATTEN, BreakerAction.KILL)  # breakers that stop quoting
_PAUSING, _WIDENING = (BreakerAction.PAUSE,), (BreakerAction.WIDEN,)
_BUY, _SELL, _LIMIT = Side.BUY, Side.SELL, OrderType.LIMIT  # (an enum member read through its class costs ~50 ns)


_T2Q_LABELS = ("<50us", "50-100us", "100-200us", "200-400us", "400-800us", "0.8-1.6ms", "1.6-5ms", ">=5ms")


class Mode(enum.StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WIDENED = "WIDENED"
    FLATTENING = "FLATTENING"
    KILLED = "KILLED"
    FAULTED = "FAULTED"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class LogLine:
    ts_ns: int
    kind: str  # fill | control | breaker | venue | engine
    text: str


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """An immutable picture of the engine for the console, the daemon's status line and tests."""

    seq: int
    ts_ns: int
    venue: str
    symbol: str
    price_tick: str
    mode: str
    widen: float
    uptime_s: float
    bids: tuple[tuple[int, int, int], ...]  # (price_ticks, lots, our lots), best first
    asks: tuple[tuple[int, int, int], ...]
    mid_ticks: float
    book_stale: bool
    stale_reason: str
    orders: tuple[OrderView, ...]
    position_lots: int
    position_usdc: float
    inventory_pct: float
    max_abs_inventory_pct: float
    max_position_usdc: float
    reservation_ticks: float
    half_spread_ticks: float
    inventory_skew_ticks: float
    pnl: PnL
    predictor: str
    prediction: Prediction | None
    breakers: tuple[BreakerView, ...]
    latency_us: dict[str, dict[str, float]]
    counters: dict[str, int]
    features: dict[str, float]
    log: tuple[LogLine, ...]
    version: int = 0  # changes whenever engine state changes (the console skips unchanged snapshots)
    pnl_history: tuple[float, ...] = ()  # total PnL sampled each second of venue time
    confidence_history: tuple[float, ...] = ()
    hit_rate: float | None = None  # live directional hit rate of the model (None: no model)
    t2q_hist: tuple[tuple[str, int], ...] = ()  # coarse tick-to-quote histogram: (bin label, count)
    fault: str = ""
    venue_link: tuple[bool, str] = (True, "")  # live venues: (connected, "height, endpoint, txs in flight")
    # what the quoter works with (Engine.strategy_state): alpha, measured half-spread or GLFT + adverse
    # selection, A and k, volatility and regime, whether there is an edge to quote for
    strategy: dict[str, Any] = field(default_factory=dict)
    # fill quality and the other metrics of DESIGN.md (Engine.fill_metrics)
    quality: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, cfg: Config, venue: Venue, predictor: Predictor | None = None,
                 audit: AuditLog | None = None, seed: int | None = None, history_len: int | None = 600,
                 state_store: Any = None) -> None:
        self.cfg = cfg
        self.venue = venue
        self.clock = venue.clock
        self.instrument = venue.instrument
        self.seed = cfg.run.seed if seed is None else seed
        self.predictor: Predictor = predictor or NoModelPredictor()
        self.audit = audit or AuditLog(None)
        self.log = get_logger("engine")
        self.book = L2Book()
        sc = cfg.strategy
        self.features = FeatureEngine(vol_halflife_s=sc.vol_halflife_s)
        self.quoter = Quoter(sc, cfg.risk, self.instrument, venue.maker_fee_bps)
        self._quote_interval_ns = int(sc.quote_interval_ms * 1_000_000)
        self._last_quote_ns = -(1 << 62)
        self.risk = RiskManager(cfg.risk, self.instrument)
        self.oms = OrderManager(sc.refresh_tolerance_bps, sc.refresh_tolerance_size_pct, sc.order_refresh_time_s,
                                cfg.risk.max_orders_per_s, cfg.risk.order_burst, post_only=sc.post_only)
        self.portfolio = Portfolio(self.instrument, journal_max=None if history_len is None else 10_000)
        self.hist = {s: LatencyHistogram() for s in STAGES}
        self._hist_book, self._hist_features = self.hist["book"], self.hist["features"]  # (read every market message)
        self._hist_predict, self._hist_quote = self.hist["predict"], self.hist["quote"]  # (and every quote cycle)
        self._hist_risk, self._hist_orders = self.hist["risk"], self.hist["orders"]
        self._hist_submit = self.hist["submit"]
        self.tick_to_quote = LatencyHistogram()
        self._window_t2q = LatencyHistogram()  # for the latency breaker
        self._window_ack = LatencyHistogram()  # venue time from order sent to ack: a slow venue widens too
        self._window_start_ns = 0
        self.spreads = TimeWeightedSpreads()
        # what the quoter learns online (core.alpha, core.calibration): the short-horizon alpha, the trades'
        # intensity curve (A, k), adverse selection (the market's trade impact, then our own fills) and the regime
        self.online_alpha = OnlineAlpha(sc.alpha_horizon_s, halflife_s=sc.alpha_halflife_s, cap_bps=sc.alpha_cap_bps)
        self.intensity = TradeIntensity(sc.arrival_intensity, sc.arrival_decay, sc.intensity_halflife_s,
                                        a_bounds=(sc.arrival_intensity / 4, sc.arrival_intensity * 4),
                                        k_bounds=(sc.arrival_decay / 4, sc.arrival_decay * 4))
        self.adverse = AdverseSelection(sc.adverse_horizon_s)
        self.regime = VolatilityRegime(garch=sc.volatility_model == "garch")
        self.virtual = VirtualFills(latency_s=sc.virtual_latency_ms / 1e3, life_s=sc.virtual_quote_life_s,
                                    horizon_s=sc.adverse_horizon_s, halflife_s=sc.virtual_halflife_s,
                                    min_fills=sc.virtual_min_fills, chase_frac=sc.refresh_tolerance_tight_frac)
        self.has_edge = True  # False while the measured curve says no distance earns (stand aside)
        self._retune_last: tuple[float, tuple[bool, str]] | None = None
        self._intensity = (sc.arrival_intensity, sc.arrival_decay)
        self._last_fit_ns = 0
        self.alpha_bps = 0.0
        # markouts, effective / realised spread, adverse selection of our fills (the last also feeds the quoter)
        self.fill_quality = FillQuality(listener=self.adverse.on_our_fill, listen_horizon_s=sc.adverse_horizon_s)
        self.events_log: deque[LogLine] = deque(maxlen=500)
        self._counters: dict[str, int] = {"events": 0, "batches": 0, "quotes": 0, "fills": 0, "trades": 0,
                                          "book_updates": 0, "top_updates": 0, "venue_rejects": 0,
                                          "post_only_rejects": 0, "taker_fills": 0, "reconcile_mismatches": 0,
                                          "position_mismatches": 0}
        # the counts every market message moves, as integers (C integers in the compiled build: a dictionary
        # read-modify-write was ~55 ns, three a message); `counters` writes them into the dictionary when read
        self._n_events = self._n_batches = self._n_trades = self._n_book_updates = self._n_top_updates = 0
        # operator / breaker state
        self.paused = False
        self.killed = False
        self.flatten_reason = ""  # "" | operator | kill | breaker
        self.widen = 1.0
        self.fault = ""
        self.mode = Mode.STARTING
        self.start_ns = -1
        self.wall_start = time.monotonic()
        self.seq = 0
        self.max_abs_inventory_pct = 0.0
        self.last_prediction: Prediction | None = None
        self.last_proposal = None
        self._mids = RollingRange()  # mid range over [risk].extreme_window_s
        self._rejects: deque[int] = deque()
        self._stop = False  # stop() asks run() to return after the batch in hand
        self._quoting = True
        self._last_reconcile_ns = 0
        self._reconciled_once = False
        self._logs_after_cycle: list[tuple[str, dict[str, Any]]] = []  # info lines deferred past tick-to-quote
        if not self.predictor.available and cfg.strategy.alpha == "model":  # wanted, and missing: fall back, visibly
            self.risk.breakers["model"].trip(self.predictor.reason or "no model: model-free pricing", 0)
        self.model_errors = 0
        self._trace_orders = cfg.logging.level == "debug"  # per-order lifecycle lines (client_id correlates)
        self.state_store = state_store  # flashmm.core.state_redis.RedisStateStore when [redis].enabled
        self._state_task: asyncio.Task | None = None
        self._last_state_flush = 0.0
        self.recovered: dict[str, Any] = {}
        self.guards = Guards(self)  # account, venue stalls, sinks, lost journal (flashmm/core/guards.py)
        self._handlers = {
            BookSnapshot: self._on_snapshot, BookDiff: self._on_diff, BookTop: self._on_top, Trade: self._on_trade,
            OrderAck: self._on_ack, OrderReject: self._on_reject, CancelAck: self._on_cancel_ack,
            CancelReject: self._on_cancel_reject, Fill: self._on_fill, FeeCharge: self._on_fee,
            VenueStatus: self._on_status,
        }
        self._batch_book_ns = 0
        self._batch_feat_ns = 0
        self._alpha_x: tuple[float, ...] = (0.0,) * N_ALPHA
        self._alpha_mid = 0.0  # > 0: `_alpha_x` is due from the current features at this mid (see `alpha_x`)
        self._use_model = sc.alpha == "model"
        self._market_in_batch = False
        self.version = 0
        # per second of venue time (bounded for the console; unbounded for backtest reports)
        self.pnl_history: deque[float] = deque(maxlen=history_len)
        self.confidence_history: deque[float] = deque(maxlen=history_len)
        self.inventory_history: deque[float] = deque(maxlen=history_len)  # inventory % of capital
        self.spread_history: deque[tuple[float, float]] = deque(maxlen=history_len)  # (market, ours) bps
        self.sample_ts: deque[int] = deque(maxlen=history_len)  # venue time of each sample
        self.mid_history: deque[float] = deque(maxlen=history_len)  # mid, ticks
        self._last_sample_ns = 0
        self._last_spreads = (math.nan, math.nan)

    # ================================================================== run loop ======================
    async def run(self, duration_s: float | None = None, trade_from_ns: int | None = None) -> None:
        """Trade until `duration_s` of venue time has passed, the venue ends, or stop() is called.
        With `trade_from_ns` (backtests on a held-out slice) the engine follows the market with quoting
        off until that venue time, so book, features and model are warm when trading starts."""
        await self.venue.start()
        if self.state_store is not None:
            await self._recover_state()
        self.start_ns = self.clock.now_ns()
        warmup = trade_from_ns is not None and trade_from_ns > self.start_ns
        if warmup:
            self._quoting = False
        self.mode = Mode.RUNNING
        model = self.risk.breakers["model"]
        if model.state == "tripped" and model.since_ns == 0:
            model.since_ns = self.start_ns
        self._event("engine", f"started on {self.venue.name} {self.instrument.symbol} seed={self.seed}")
        end_ns = self.start_ns + int(duration_s * NS_PER_S) if duration_s is not None else None
        reconcile_ns = 5 * NS_PER_S
        try:
            timed = self.venue.wall_clock_feed
            # looked up once, not per batch: what wraps them (the soak's probe, a benchmark's timer) is in place
            next_batch, on_batch = self.venue.next_batch, self.on_batch
            while not self._stop:
                if timed:
                    try:
                        batch = await asyncio.wait_for(next_batch(), timeout=self.cfg.risk.feed_stale_s)
                    except TimeoutError:
                        self.on_feed_timeout()
                        continue
                else:
                    batch = await next_batch()
                if batch is None:
                    self._event("venue", "venue ended")
                    break
                on_batch(batch)
                now = self.clock.now_ns()
                if warmup and now >= trade_from_ns:
                    warmup = False
                    self._quoting = True
                    self.max_abs_inventory_pct = 0.0
                    self._event("engine", "warm-up over: trading starts")
                if now - self._last_reconcile_ns >= reconcile_ns:
                    self._last_reconcile_ns = now
                    await self.reconcile()
                if self.state_store is not None:
                    self._state_snapshots(now)
                if end_ns is not None and now >= end_ns:
                    break
        except Exception as exc:  # the engine must not die silently: record, fault, let shutdown cancel
            self.fault = f"{type(exc).__name__}: {exc}"
            self.mode = Mode.FAULTED
            self.log.exception("engine_fault", error=self.fault)
            self._event("engine", f"FAULTED: {self.fault}")
            raise

    def stop(self) -> None:
        self._stop = True

    def reconfigure(self, cfg: Config) -> None:
        """Parameters changed while trading (validated by flashmm/control/params.py against the same models
        as config.toml). Commands run between batches on the engine's loop, so the next quote cycle is the
        first to use them; breaker states, the book and the position are kept."""
        self.cfg = cfg
        sc, rc = cfg.strategy, cfg.risk
        self.quoter = Quoter(sc, rc, self.instrument, self.venue.maker_fee_bps)
        self._quote_interval_ns = int(sc.quote_interval_ms * 1_000_000)
        self.risk.cfg = rc
        for breaker in self.risk.breakers.values():
            breaker.cooldown_ns = int(rc.breaker_cooldown_s * NS_PER_S)
        oms = self.oms
        oms.tol_bps = sc.refresh_tolerance_bps
        oms.tol_size = sc.refresh_tolerance_size_pct / 100.0
        oms.refresh_ns = int(sc.order_refresh_time_s * NS_PER_S)
        oms.bucket.rate_per_ns = rc.max_orders_per_s / NS_PER_S
        oms.bucket.burst = float(rc.order_burst)
        self.widen = min(self.widen, cfg.controls.widen_max)
        self.version += 1

    async def shutdown(self, timeout_s: float | None = None) -> bool:
        """Cancel every order and wait until the venue confirms (or the timeout). Returns True when
        no order is left open."""
        self._quoting = False
        timeout_s = self.cfg.controls.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        actions = self.oms.cancel_all()
        if actions:
            self._submit(actions)
        while self.oms.orders and time.monotonic() < deadline:
            try:
                batch = await asyncio.wait_for(self.venue.next_batch(), timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if batch is None:
                break
            self.on_batch(batch)
            again = self.oms.cancel_all()  # orders acknowledged after the first cancel round
            if again:
                self._submit(again)
        clean = not self.oms.orders
        if self.state_store is not None:
            self._state_snapshots(self.clock.now_ns(), force=True)
            flushed = await self.state_store.close(timeout_s)
            if self._state_task is not None:
                self._state_task.cancel()
            self.log.info("state_closed", flushed=flushed)
        if self.mode is not Mode.FAULTED:
            self.mode = Mode.STOPPED
        self._event("engine", "all orders cancelled" if clean else f"{len(self.oms.orders)} orders left open at exit")
        self.log.info("shutdown", clean=clean, open_orders=len(self.oms.orders))
        await self.venue.stop()
        return clean

    async def reconcile(self) -> None:
        try:
            state = await self.venue.account_state()
        except (ConnectionError, TimeoutError) as exc:  # a stalled or restarted node: pause and retry, no fault
            self.guards.venue_unreachable(exc)
            return
        self.guards.venue_answered()
        state = self.guards.split_foreign(state)
        if not self._reconciled_once:
            if not self._adopt_venue_position(state.position_lots):
                return  # a held position waits for a two-sided book to be valued at; nothing else is judged
            self._reconciled_once = True
        problems, actions = self.oms.reconcile(state)
        if state.position_lots != self.portfolio.position_lots:
            problems.append(f"position {self.portfolio.position_lots} here, {state.position_lots} at venue")
            self._counters["position_mismatches"] += 1
            self.risk.breakers["venue_errors"].trip("position differs from the venue's record", self.clock.now_ns())
        for p in problems:
            self._counters["reconcile_mismatches"] += 1
            self.log.warning("reconcile_mismatch", detail=p)
            self._event("venue", f"reconcile: {p}")
        if actions:
            self._submit(actions)

    def _adopt_venue_position(self, venue_lots: int) -> bool:
        """Without a state store there is no journal to recover from: a position the venue already holds at
        the first reconciliation (a live account) is taken as the starting position, valued at the mid, and
        said so. With a state store the journal decides and a difference pauses trading (_recover_state)."""
        if self.state_store is not None or venue_lots == 0 or self.portfolio.position_lots or self.portfolio.fills:
            return True  # nothing to adopt: reconcile as usual
        if not self.book.two_sided():
            return False
        mid = self.book.mid_ticks()
        self.portfolio.adopt_position(venue_lots, mid)
        self._counters["positions_adopted"] = self._counters.get("positions_adopted", 0) + 1
        self.log.warning("position_adopted", position_lots=venue_lots, mid=self._px(mid))
        self._event("venue", f"started with the venue's position {venue_lots} lots (no state store): valued at "
                             f"{self._px(mid)}, PnL counts from now")
        return True

    # ---- state store (Redis) ------------------------------------------------------------------------------
    async def _recover_state(self) -> None:
        """Load what a previous run journaled, then compare it with the venue's record: every difference is
        logged, counted and pauses trading (sticky) until the operator resumes; nothing is merged silently."""
        from flashmm.core.state_redis import reconcile

        store = self.state_store
        rec = await store.load()  # Redis unreadable at start: refuse to start blind (raises)
        if rec is not None:
            rec.apply_to(self.portfolio)
            venue = await self.venue.account_state()
            top = max(venue.open_orders, default=0)
            self.oms.next_client_id = max(rec.next_client_id, top + 1, self.oms.next_client_id) + 1000
            problems = reconcile(rec, venue)
            self.recovered = {"fills": len(rec.fills), "position_lots": self.portfolio.position_lots,
                              "problems": problems}
            self._event("engine", f"recovered {len(rec.fills)} fills, position {self.portfolio.position_lots} "
                                  f"from the state store")
            self.log.info("state_recovered", fills=len(rec.fills), position_lots=self.portfolio.position_lots,
                          problems=problems)
            for p in problems:
                self._counters["reconcile_mismatches"] += 1
                self._event("venue", f"recovery: {p}")
            # orders the journal knew but the venue no longer has ended while we were down (their fills,
            # if any, show up in the position); a position that differs is what must stop trading
            if rec.position_lots != venue.position_lots:
                self.risk.breakers["venue_errors"].trip(
                    f"recovered position {rec.position_lots} differs from the venue's {venue.position_lots}",
                    self.clock.now_ns())
        store.set_next_client_id(self.oms.next_client_id)
        self._state_task = asyncio.create_task(store.run())

    def _state_snapshots(self, now: int, force: bool = False) -> None:
        store = self.state_store
        store.set_next_client_id(self.oms.next_client_id)
        wall = time.monotonic()
        if force or wall - self._last_state_flush >= self.cfg.redis.flush_interval_s:
            self._last_state_flush = wall
            store.set_orders(self.oms.orders.values())
            store.set_book(self.book.top_bids(10), self.book.top_asks(10), now)
            store.set_breakers(self.risk.views())
            store.set_position(self.portfolio)

    # ================================================================== hot path ======================
    def on_batch(self, batch: list[Event]) -> None:
        t0 = time.perf_counter_ns()
        self._batch_book_ns = self._batch_feat_ns = 0
        self._market_in_batch = False
        now0 = self.clock.now_ns()
        predictor = self.predictor
        if predictor.available:  # (no model: no grid to sample)
            predictor.on_market(now0)  # the model's grid sees the state before this batch
        fq = self.fill_quality
        if ((fq.next_due_ns <= now0 or self.adverse.next_due_ns <= now0) and self.book.two_sided()
                and not self.book.stale):  # horizons that passed before this batch: the mid until now
            mid0 = self.book.mid_ticks()
            if fq.next_due_ns <= now0:
                fq.resolve(now0, mid0)
            self.adverse.resolve(now0, mid0)
        handlers = self._handlers
        for ev in batch:
            t = type(ev)  # the market's events directly (C calls in the compiled build), the rest by the table
            if t is BookTop:
                self._on_top(ev)
            elif t is BookDiff:
                self._on_diff(ev)
            elif t is Trade:
                self._on_trade(ev)
            else:
                handlers[t](ev)
        self._n_events += len(batch)
        self._n_batches += 1
        self.version += 1
        if self._market_in_batch:
            self._hist_book.record(self._batch_book_ns)
            self._hist_features.record(self._batch_feat_ns)
            now = self.clock.now_ns()
            book = self.book
            if self.features.ready and book.two_sided() and not book.stale:
                mid = book.mid_ticks()
                alpha = self.online_alpha
                if now >= alpha.next_due_ns:  # a grid point or a target due: the alpha's inputs now
                    self._alpha_x = alpha_inputs(self.features, mid)
                    self._alpha_mid = 0.0
                    alpha.observe(now, self._alpha_x, mid)
                else:  # nothing for the alpha to record: its inputs are computed if read (`alpha_x`)
                    self._alpha_mid = mid
                self.regime.observe(now, mid)
                self.virtual.observe(now, mid)
            if self._quoting and now - self._last_quote_ns >= self._quote_interval_ns:
                self._last_quote_ns = now
                self._quote_cycle(t0)
        if self._logs_after_cycle:
            for name, fields in self._logs_after_cycle:
                self.log.info(name, **fields)
            self._logs_after_cycle.clear()

    def _quote_cycle(self, t0: int) -> None:
        now = self.clock.now_ns()
        book = self.book
        tr = time.perf_counter_ns()
        self._update_breakers(now)
        breakers_ns = time.perf_counter_ns() - tr
        risk = self.risk
        actions: list[OrderAction]
        t4 = time.perf_counter_ns()
        if self.flatten_reason:
            actions = self._flatten_step(now)
        elif (self.killed or self.paused or book.stale or not book.two_sided() or risk.any_active(_HALTING)
              or (self.state_store is not None and self.state_store.overflow)):
            actions = self.oms.cancel_all()
            self.last_proposal = None
        else:
            tb = time.perf_counter_ns()
            mid = book.mid_ticks()
            prediction = self._predict(now)
            t1 = time.perf_counter_ns()
            widen = self.widen * (self.cfg.risk.latency_widen_factor if risk.any_active(_WIDENING) else 1.0)
            proposal = self.propose(mid, widen, prediction)
            self._note_retune(proposal, mid)
            self.last_proposal = proposal
            t2 = time.perf_counter_ns()
            room = risk.room(self.portfolio.position_lots, mid, self.oms.locked_lots(_BUY),
                             self.oms.locked_lots(_SELL))
            desired = risk.trim(proposal.levels, mid, room)
            t3 = time.perf_counter_ns()
            half = proposal.half_spread_ticks
            sc = self.cfg.strategy
            cost = self.order_cost_bps(mid) * mid / 1e4  # ticks: a replacement must be worth what it costs
            actions = self.oms.sync(desired, now, room, 1e4 / mid,
                                    (max(sc.refresh_tolerance_tight_frac * half, cost),
                                     # an order one tick further from the fair value than its target is kept
                                     max(sc.refresh_tolerance_loose_frac * half, 2 * cost, 1.0)))
            t4 = time.perf_counter_ns()
            if desired:
                self._counters["quotes"] += 1
            self._hist_predict.record(t1 - tb)
            self._hist_quote.record(t2 - t1)
            self._hist_risk.record(t3 - t2 + breakers_ns)  # breaker evaluation + limits
            self._hist_orders.record(t4 - t3)
        if actions:
            self._submit(actions)
        t5 = time.perf_counter_ns()
        self._hist_submit.record(t5 - t4)
        self.tick_to_quote.record(t5 - t0)
        self._window_t2q.record(t5 - t0)
        self._after_cycle(now)

    def propose(self, mid: float, widen: float, prediction: Prediction | None) -> QuoteProposal:
        """The quoter's proposal from the engine's current state: fair value (alpha), measured half-spread or
        GLFT + adverse selection, calibrated intensity, regime, inventory."""
        sc = self.cfg.strategy
        book = self.book
        self.alpha_bps = alpha_bps = self._alpha(mid, prediction)
        half_bps = None
        if sc.half_spread == "measured" and sc.model != "symmetric":
            half_bps, self.has_edge = self.virtual.best(sc.min_realised_edge_bps)
            if half_bps is None:  # not measured yet: GLFT + the adverse-selection estimate meanwhile
                self.has_edge = True
        mb, ma = self.market_best_ex_us()
        return self.quoter.propose(mid, mb if mb is not None else book.bids.peekitem(-1)[0],
                                   ma if ma is not None else book.asks.peekitem(0)[0],
                                   self.features.volatility_ticks, self.portfolio.position_lots,
                                   prediction if self._use_model and prediction is not None
                                   and prediction.expected_move_bps is None else None, widen,
                                   alpha_bps=alpha_bps, adverse_bps=self.adverse.estimate(),
                                   intensity=self._intensity if sc.calibrate_intensity else None,
                                   volatile=self.regime.regime == "volatile", half_bps=half_bps,
                                   reduce_only=not self.has_edge and sc.stand_aside_without_edge,
                                   order_cost_bps=self.order_cost_bps(mid))

    def order_cost_bps(self, mid: float) -> float:
        """The venue's cost of one order (gas, per-order charges) in bps of one order's notional."""
        cost = self.venue.order_cost_quote(mid)
        return cost / self.cfg.strategy.order_amount_usdc * 1e4 if cost > 0 else 0.0

    def _note_retune(self, proposal: QuoteProposal, mid: float) -> None:
        """Tactical re-tuning, said when it happens: the measured half-spread moving to another distance, the
        edge appearing or going, the regime changing (logged and in the event log; the console shows the
        current values)."""
        half = proposal.half_spread_ticks * 1e4 / mid / self.widen
        state = (self.has_edge, self.regime.regime)
        last = self._retune_last
        if last is not None and state == last[1] and abs(half - last[0]) + 0.01 < max(0.25, 0.2 * last[0]):
            return  # within the threshold whatever rounding to 0.01 does: nothing to say (round() costs ~1 µs)
        half_bps = round(half, 2)
        if last is None:
            self._retune_last = (half_bps, state)
            return
        if state != last[1] or abs(half_bps - last[0]) > max(0.25, 0.2 * last[0]):
            self._retune_last = (half_bps, state)
            text = (f"re-tuned: half-spread {last[0]:g} -> {half_bps:g} bps"
                    + ("" if state[0] else ", NO EDGE (reduce only)") + f", regime {state[1]}")
            self._event("strategy", text)
            self._logs_after_cycle.append(("retune", {"half_spread_bps": half_bps, "was_bps": last[0],
                                                      "has_edge": state[0], "regime": state[1],
                                                      "intensity_a_k": self._intensity,
                                                      "adverse_bps": round(self.adverse.estimate(), 3)}))

    @property
    def alpha_x(self) -> tuple[float, ...]:
        """The online alpha's inputs at the last usable market state. Computed when read: a market update that
        the alpha records nothing at leaves only the mid it was at (the features change only with the next
        market event, after which on_batch sets it again), so most updates build no inputs at all."""
        if self._alpha_mid:
            self._alpha_x = alpha_inputs(self.features, self._alpha_mid)
            self._alpha_mid = 0.0
        return self._alpha_x

    def _alpha(self, mid: float, prediction: Prediction | None = None) -> float:
        """The fair value's shift from the mid, bps ([strategy].alpha). With alpha = "model", a model's expected
        move (bounded by alpha_cap_bps); a direction model without one goes through `prediction` instead."""
        sc = self.cfg.strategy
        mode = sc.alpha
        if mode == "online":
            return self.online_alpha.predict(self.alpha_x)
        if mode == "imbalance":
            return sc.imbalance_alpha_bps * self.alpha_x[0]
        if mode == "model" and prediction is not None and prediction.expected_move_bps is not None:
            return max(-sc.alpha_cap_bps, min(sc.alpha_cap_bps, prediction.expected_move_bps))
        return 0.0

    def strategy_state(self) -> dict[str, Any]:
        """What the quoter is working with, for the console, the summary and InfluxDB."""
        a, k = self._intensity
        prop = self.last_proposal
        bpt = 1e4 / self.book.mid_ticks() if self.book.two_sided() else 0.0
        return {
            "alpha": self.cfg.strategy.alpha, "alpha_bps": round(self.alpha_bps, 4),
            "alpha_live": self.online_alpha.scores(), "alpha_coefficients": self.online_alpha.coefficients(),
            "adverse_selection_estimate_bps": round(self.adverse.estimate(), 4),
            "trade_impact_bps": round(self.adverse.impact, 4), "our_fills_scored": self.adverse.ours_n,
            "intensity_a_per_s": round(a, 4), "intensity_k_per_bps": round(k, 4),
            "sigma_bps": round(self.regime.sigma_bps, 4), "regime": self.regime.regime,
            "half_spread_source": self.cfg.strategy.half_spread, "has_edge": self.has_edge,
            "measured_fills": self.virtual.fills,
            "half_spread_bps": round(prop.half_spread_ticks * bpt, 4) if prop else None,
            "glft_half_spread_bps": round(prop.glft_half_ticks * bpt, 4) if prop else None,
            "adverse_term_bps": round(prop.adverse_ticks * bpt, 4) if prop else None,
        }

    def _submit(self, actions: list[OrderAction]) -> None:
        """Every order action leaves the engine here."""
        self.venue.submit(actions)
        if self._trace_orders:
            for a in actions:
                if isinstance(a, CancelOrder):
                    self.log.debug("order_cancel_sent", client_id=a.client_id)
                else:
                    self.log.debug("order_sent", client_id=a.client_id, side=a.side.name, price_ticks=a.price_ticks,
                                   lots=a.lots, order_type=a.order_type.name)

    def _predict(self, now: int) -> Prediction | None:
        """Run the model (always, so drift can clear); use it only while the model breaker is ok."""
        if not self.predictor.available:
            return None
        breaker = self.risk.breakers["model"]
        try:
            prediction = self.predictor.predict(self.features, self.book, now)
            drift = self.predictor.drift()
        except Exception as exc:  # a failing model must never stop trading: fall back, visibly
            self.model_errors += 1
            prediction, drift = None, f"model error: {type(exc).__name__}: {exc}"
            if self.model_errors == 1 or self.model_errors % 1000 == 0:
                self.log.error("model_error", error=drift, count=self.model_errors)
        if drift:
            if breaker.trip(drift, now):
                self._event("breaker", f"model tripped: {drift}: model-free pricing")
                self.log.warning("breaker_tripped", breaker="model", reason=drift)
        elif breaker.state == "tripped" and breaker.clear(now):
            self._event("breaker", f"model {breaker.state}")
        if prediction is not None:
            self.last_prediction = prediction
        return None if breaker.active else prediction

    # ---- event handlers -------------------------------------------------------------------------------
    def _on_snapshot(self, ev: BookSnapshot) -> None:
        t = time.perf_counter_ns()
        ok = self.book.apply_snapshot(ev)
        t1 = time.perf_counter_ns()
        if ok:
            self.features.on_book(self.book, ev.ts_ns)
            self._market_in_batch = True
            self._n_book_updates += 1
            self._event("venue", f"book snapshot at seq {ev.seq}")
        self._batch_book_ns += t1 - t
        self._batch_feat_ns += time.perf_counter_ns() - t1

    def _on_diff(self, ev: BookDiff) -> None:
        t = time.perf_counter_ns()
        was_stale = self.book.stale
        ok = self.book.apply_diff(ev)
        t1 = time.perf_counter_ns()
        if ok:
            self.features.on_book(self.book, ev.ts_ns)
            self._n_book_updates += 1
        elif self.book.stale and not was_stale:
            self.log.warning("book_stale", reason=self.book.stale_reason, seq=self.book.seq, first_seq=ev.first_seq)
            self._event("venue", f"book stale: {self.book.stale_reason}")
        self._market_in_batch = True
        self._batch_book_ns += t1 - t
        self._batch_feat_ns += time.perf_counter_ns() - t1

    def _on_top(self, ev: BookTop) -> None:
        t = time.perf_counter_ns()
        ok = self.book.apply_top(ev)
        t1 = time.perf_counter_ns()
        if ok:
            self.features.on_book(self.book, ev.ts_ns)
            self._n_top_updates += 1
            self._market_in_batch = True
        self._batch_book_ns += t1 - t
        self._batch_feat_ns += time.perf_counter_ns() - t1

    def _on_trade(self, ev: Trade) -> None:
        t = time.perf_counter_ns()
        book = self.book
        if self._alpha_mid and (book.stale or not book.two_sided()):
            # the trade moves the features while the book is unusable, so the batch will not set the alpha's
            # inputs again: those of the last usable state are computed now, before they change
            self.alpha_x  # noqa: B018
        self.features.on_trade(ev)
        if book.two_sided() and not book.stale:
            mid = book.mid_ticks()
            price, aggressor, ts = ev.price_ticks, ev.aggressor, ev.ts_ns  # (each read once: an event's attribute
            side = int(aggressor) if aggressor is not None else 0         # is a generic lookup here)
            self.intensity.on_trade(price, mid, ts)
            if aggressor is not None:
                self.adverse.on_trade(side, mid, ts)
            self.virtual.on_trade(price, side, ts)
        self._n_trades += 1
        self._market_in_batch = True
        self._batch_feat_ns += time.perf_counter_ns() - t

    def _on_ack(self, ev: OrderAck) -> None:
        o = self.oms.orders.get(ev.client_id)
        if o is not None and o.state is OrderState.PENDING:
            self._window_ack.record(max(0, ev.ts_ns - o.created_ns))
        self.oms.on_ack(ev.client_id, ev.venue_order_id)
        if self._trace_orders:
            self.log.debug("order_acked", client_id=ev.client_id, venue_order_id=ev.venue_order_id)

    def _on_reject(self, ev: OrderReject) -> None:
        self.oms.on_reject(ev.client_id, ev.reason)
        if ev.code == REJECT_POST_ONLY:
            # the market moved onto our price while the order travelled: the venue refused to let it take
            # liquidity, as post-only means; normal at the touch, so counted, not a venue error
            n = self._counters["post_only_rejects"] = self._counters["post_only_rejects"] + 1
            if n == 1 or n % 100 == 0:
                self._event("venue", f"post-only order {ev.client_id} would have crossed: rejected ({n} so far)")
            if self._trace_orders:
                self.log.debug("order_rejected", client_id=ev.client_id, reason=ev.reason, code=ev.code)
            return
        self._counters["venue_rejects"] += 1
        self._rejects.append(ev.ts_ns)
        self.log.warning("order_rejected", client_id=ev.client_id, reason=ev.reason, code=ev.code)
        self._event("venue", f"order {ev.client_id} rejected: {ev.reason}")

    def _on_cancel_ack(self, ev: CancelAck) -> None:
        self.oms.on_cancel_ack(ev.client_id)
        if self._trace_orders:
            self.log.debug("order_cancelled", client_id=ev.client_id)

    def _on_cancel_reject(self, ev: CancelReject) -> None:
        self.oms.on_cancel_reject(ev.client_id, ev.reason)

    def _on_fill(self, ev: Fill) -> None:
        mid = self.book.mid_ticks() if self.book.two_sided() else ev.price_ticks
        order = self.oms.on_fill(ev.client_id, ev.lots, ev.done)
        self.portfolio.on_fill(ev, mid)
        if self.state_store is not None:
            from flashmm.core.state_redis import fill_id, unknown_order_fill_id

            fid = fill_id(ev.client_id, order.filled_lots) if order is not None else unknown_order_fill_id(ev)
            self.state_store.record_fill(self.portfolio.fills[-1], fid)
        self._counters["fills"] += 1
        if not ev.is_maker:
            self._counters["taker_fills"] += 1
        self.fill_quality.on_fill(ev.ts_ns, int(ev.side), ev.price_ticks, mid)
        self._track_inventory(mid)
        side = "BUY" if ev.side is Side.BUY else "SELL"
        # written after this batch's quote cycle: a JSON log line costs tens of µs, and a block can carry
        # several fills (the Sei venue measured p50 tick-to-quote 815 µs with the lines written here)
        self._logs_after_cycle.append(("fill", {"client_id": ev.client_id, "side": side,
                                                "price_ticks": ev.price_ticks, "lots": ev.lots,
                                                "maker": ev.is_maker, "position_lots": self.portfolio.position_lots}))
        self._event("fill", f"{side} {ev.lots} @ {self._px(ev.price_ticks)} ({'maker' if ev.is_maker else 'taker'}) "
                            f"pos {self.portfolio.position_lots}")

    def _on_fee(self, ev: FeeCharge) -> None:
        self.portfolio.on_fee(ev.amount_quote)
        if self.state_store is not None:
            self.state_store.record_fee(ev.amount_quote)

    def _on_status(self, ev: VenueStatus) -> None:
        if not ev.connected:
            self.book.mark_stale(f"venue disconnected: {ev.reason}")
            self._event("venue", f"disconnected: {ev.reason}")
            # pull quotes now: no market data follows a disconnect, so no quote cycle would run to do it
            if self.risk.breakers["feed"].trip(f"venue disconnected: {ev.reason}", self.clock.now_ns()):
                self._event("breaker", "feed tripped: venue disconnected")
            self._cancel_now()

    def on_feed_timeout(self) -> None:
        """No batch for feed_stale_s: pull quotes (the next batch's cycle re-evaluates)."""
        now = self.clock.now_ns()
        if self.risk.breakers["feed"].trip(f"no market data for {self.cfg.risk.feed_stale_s:g}s", now):
            self._event("breaker", "feed tripped: no market data")
        actions = self.oms.cancel_all()
        if actions:
            self._submit(actions)

    # ---- breakers -----------------------------------------------------------------------------------
    def _update_breakers(self, now: int) -> None:
        r = self.cfg.risk
        b = self.risk.breakers
        book = self.book
        venue_down = self.guards.venue_down
        self._set(b["feed"], book.stale or bool(venue_down),
                  f"book stale: {book.stale_reason}" if book.stale else venue_down, now)
        if book.two_sided() and not book.stale:
            mid = book.mid_ticks()
            self._track_inventory(mid)
            # extreme market: mid range within the window
            lo, hi = self._mids.push(now, mid, now - int(r.extreme_window_s * NS_PER_S))
            move_bps = 1e4 * (hi - lo) / lo
            if move_bps > r.extreme_move_bps and not self.killed:
                b["extreme_market"].trip(f"mid moved {move_bps:.0f} bps in {r.extreme_window_s:g}s", now)
                self._event("breaker", f"extreme_market tripped: {move_bps:.0f} bps")
                self.kill("breaker:extreme_market", "extreme market move")
            pnl = self.portfolio.pnl_total_quote(mid)
            self.portfolio.peak_pnl = max(self.portfolio.peak_pnl, pnl)
            if self.portfolio.peak_pnl - pnl > r.max_drawdown_usdc and not b["drawdown"].active:
                b["drawdown"].trip(f"drawdown {self.portfolio.peak_pnl - pnl:.2f} > {r.max_drawdown_usdc:g} USDC", now)
                self._event("breaker", "drawdown tripped: quoting paused until resume")
            pos_usdc = self.portfolio.exposure(mid)
            breach = r.max_position_usdc * r.inventory_breach_pct / 100.0
            if abs(pos_usdc) > breach and not self.flatten_reason:
                if b["inventory"].trip(f"position {pos_usdc:.0f} USDC beyond {breach:g}", now):
                    self._event("breaker", "inventory tripped: flattening")
                    self.flatten_reason = "breaker"
                    self.log.warning("inventory_breach", position_usdc=pos_usdc)
        horizon = now - int(r.reject_window_s * NS_PER_S)
        while self._rejects and self._rejects[0] < horizon:
            self._rejects.popleft()
        rejected = len(self._rejects) >= r.venue_reject_limit
        self._set(b["venue_errors"], rejected,
                  f"{len(self._rejects)} rejections in {r.reject_window_s:g}s" if rejected else "", now,
                  sticky_reason="position differs from the venue's record")
        if now - self._window_start_ns >= 10 * NS_PER_S:
            if self._window_t2q.count or self._window_ack.count:
                p95_ms = self._window_t2q.percentile(95) / 1e6
                ack_ms = self._window_ack.percentile(95) / 1e6
                # (wall-clock tick-to-quote only where the venue's time is wall time: see Venue.paced)
                slow = ([f"tick-to-quote p95 {p95_ms:.1f} ms"]
                        if p95_ms > r.latency_widen_ms and self.venue.paced else [])
                slow += [f"order ack p95 {ack_ms:.0f} ms"] if ack_ms > r.ack_latency_widen_ms else []
                self._set(b["latency"], bool(slow), "; ".join(slow), now)
            self._window_t2q.reset()
            self._window_ack.reset()
            self._window_start_ns = now
        st = self.state_store
        if st is not None:
            lost = getattr(st, "journal_alert", "")  # the journal was wiped or overwritten: held until resume
            self._set(b["state"], not st.healthy or st.overflow or bool(lost),
                      ("state store queue full: quoting paused" if st.overflow
                       else f"state store down: {st.reason}" if not st.healthy else lost), now)
        self.guards.update_breakers(now)
        for breaker in b.values():  # a cleared breaker returns to ok once its cooldown has passed
            if breaker.state == "cooling_down" and breaker.clear(now):
                self._event("breaker", f"{breaker.name} ok")

    def _set(self, breaker, condition: bool, reason: str, now: int, sticky_reason: str = "") -> None:
        if condition:
            if breaker.trip(reason, now):
                self._event("breaker", f"{breaker.name} tripped: {reason}")
                self.log.warning("breaker_tripped", breaker=breaker.name, reason=reason)
        elif breaker.active and breaker.reason != sticky_reason:
            if breaker.clear(now):
                self._event("breaker", f"{breaker.name} {breaker.state}")
                self.log.info("breaker_changed", breaker=breaker.name, state=str(breaker.state))

    def _track_inventory(self, mid: float) -> None:
        pct = abs(inventory_pct(self.portfolio.exposure(mid), self.cfg.risk.capital_usdc))
        if pct > self.max_abs_inventory_pct:
            self.max_abs_inventory_pct = pct

    # ---- flatten ------------------------------------------------------------------------------------
    def _flatten_step(self, now: int) -> list[OrderAction]:
        actions = self.oms.cancel_all()
        pos = self.portfolio.position_lots
        market_live = any(o.order_type is OrderType.MARKET for o in self.oms.orders.values())
        if pos != 0 and not market_live and self.book.two_sided():
            mid = self.book.mid_ticks()
            slip = mid * self.cfg.controls.flatten_slippage_bps / 1e4
            side = Side.SELL if pos > 0 else Side.BUY
            worst = math.floor(mid - slip) if side is Side.SELL else math.ceil(mid + slip)
            actions.append(self.oms.market_order(side, abs(pos), max(worst, 1), now))
            self._event("engine", f"flatten: {side.name} {abs(pos)} worst {self._px(worst)}")
        elif pos == 0 and not self.oms.orders:
            reason, self.flatten_reason = self.flatten_reason, ""
            self._event("engine", "flat")
            if reason == "operator":
                self.paused = True
            elif reason == "breaker":
                self.risk.breakers["inventory"].clear(now)
        return actions

    # ================================================================== controls =====================
    def _control(self, action: str, who: str, why: str, result: str) -> str:
        self.version += 1
        self.audit.write(action, who, why, result, self.clock.now_ns())
        self.log.info("control", action=action, who=who, why=why, result=result)
        self._event("control", f"{action} by {who}: {result}")
        return result

    def _cancel_now(self) -> None:
        actions = self.oms.cancel_all()
        if actions:
            self._submit(actions)

    def pause(self, who: str = "operator", why: str = "") -> str:
        if self.killed:
            return self._control("pause", who, why, "ignored: killed")
        self.paused = True
        self._cancel_now()
        return self._control("pause", who, why, "paused, orders cancelled")

    def resume(self, who: str = "operator", why: str = "") -> str:
        if self.killed:
            return self._control("resume", who, why, "refused: killed until restart")
        self.paused = False
        # sticky breakers (drawdown, a position mismatch) wait for an operator: resuming acknowledges them
        now = self.clock.now_ns()
        cleared = [b.name for b in (self.risk.breakers["drawdown"], self.risk.breakers["venue_errors"])
                   if b.state == "tripped" and b.clear(now)]
        cleared += self.guards.acknowledge(now)
        if "drawdown" in cleared:
            self.portfolio.peak_pnl = self.portfolio.pnl_quote(self.book.mid_ticks()).total if self.book.two_sided() else 0.0
        result = "running" + (f"; acknowledged {', '.join(cleared)}" if cleared else "")
        return self._control("resume", who, why, result)

    def toggle_pause(self, who: str = "operator", why: str = "") -> str:
        return self.resume(who, why) if self.paused else self.pause(who, why)

    def _widen_ladder(self) -> list[float]:
        """1, step, step^2, ... below the cap, then the cap: widen and tighten walk the same rungs."""
        c = self.cfg.controls
        rungs = [1.0]
        while rungs[-1] * c.widen_step < c.widen_max - 1e-9:
            rungs.append(rungs[-1] * c.widen_step)
        return rungs + [c.widen_max] if c.widen_max > 1.0 else rungs

    def widen_spread(self, who: str = "operator", why: str = "") -> str:
        up = [x for x in self._widen_ladder() if x > self.widen + 1e-9]
        self.widen = up[0] if up else self.cfg.controls.widen_max
        return self._control("widen", who, why, f"spread x{self.widen:.2f}")

    def tighten(self, who: str = "operator", why: str = "") -> str:
        down = [x for x in self._widen_ladder() if x < self.widen - 1e-9]
        self.widen = down[-1] if down else 1.0
        return self._control("tighten", who, why, f"spread x{self.widen:.2f}")

    def flatten(self, who: str = "operator", why: str = "") -> str:
        if self.killed:
            return self._control("flatten", who, why, "ignored: killed (already flattening)")
        self.flatten_reason = "operator"
        self._cancel_now()
        return self._control("flatten", who, why, f"flattening position {self.portfolio.position_lots}")

    def kill(self, who: str = "operator", why: str = "") -> str:
        self.killed = True
        self.paused = True
        self.flatten_reason = "kill"
        self._cancel_now()
        return self._control("kill", who, why, "killed: orders cancelled, flattening, trading disabled until restart")

    # ================================================================== views ========================
    @property
    def current_mode(self) -> Mode:
        if self.mode in (Mode.FAULTED, Mode.STOPPED, Mode.STARTING):
            return self.mode
        if self.killed:
            return Mode.KILLED
        if self.flatten_reason:
            return Mode.FLATTENING
        if self.paused or self.risk.any_active(_PAUSING):
            return Mode.PAUSED
        if self.widen > 1.0 or self.risk.any_active(_WIDENING):
            return Mode.WIDENED
        return Mode.RUNNING

    def _px(self, ticks: float) -> str:
        return f"{ticks * self.instrument.tick_f:.{max(0, -self.instrument.price_tick.as_tuple().exponent) + 1}f}"

    def _event(self, kind: str, text: str) -> None:
        self.events_log.append(LogLine(self.clock.now_ns(), kind, text))

    def _our_lots_by_price(self) -> tuple[dict[int, int], dict[int, int]]:
        """Our resting limit orders' lots by price: (bids, asks), in one pass over the orders."""
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for o in self.oms.orders.values():
            if o.order_type is _LIMIT and o.state != "pending":
                out = bids if o.side is _BUY else asks
                price = o.price_ticks
                out[price] = out.get(price, 0) + o.remaining
        return bids, asks

    def market_best_ex_us(self, ours_b: dict[int, int] | None = None,
                          ours_a: dict[int, int] | None = None) -> tuple[int | None, int | None]:
        """Best bid and ask of everyone else: the market's own spread, without our orders (`ours_b`/`ours_a`:
        our lots by price, when the caller has them already)."""
        if ours_b is None or ours_a is None:
            ours_b, ours_a = self._our_lots_by_price()
        bids, asks = self.book.bids, self.book.asks
        return _best_not_ours(bids, ours_b, True), _best_not_ours(asks, ours_a, False)

    def _after_cycle(self, now: int) -> None:
        """Bookkeeping after the orders are out (not part of tick-to-quote): spreads, queue estimates,
        the calibration refit, the console's histories, and the model's next answer computed ahead."""
        self._observe_spreads(now)
        if now - self._last_fit_ns >= 5 * NS_PER_S:  # the intensity curve changes slowly: refit every 5 s
            self._last_fit_ns = now
            self._intensity = self.intensity.fit(now)
        if self.predictor.available:
            try:
                self.predictor.precompute(self.features, self.book, now)
            except Exception as exc:  # the hot-path call will meet the same failure and trip the breaker
                self.log.debug("model_precompute_failed", error=str(exc))
        book = self.book
        for o in self.oms.orders.values():
            if o.order_type is not _LIMIT or o.state == "pending":
                continue
            level = book.bids.get(o.price_ticks, 0) if o.side is _BUY else book.asks.get(o.price_ticks, 0)
            ahead = max(0, level - o.remaining)  # upper bound: everyone else at our price
            o.queue_ahead = ahead if o.queue_ahead < 0 else min(o.queue_ahead, ahead)
        if now - self._last_sample_ns >= NS_PER_S and book.two_sided():
            self._last_sample_ns = now
            mid = book.mid_ticks()
            self.pnl_history.append(self.portfolio.pnl_quote(mid).total)
            self.inventory_history.append(inventory_pct(self.portfolio.exposure(mid), self.cfg.risk.capital_usdc))
            self.spread_history.append(self._last_spreads)
            self.sample_ts.append(now)
            self.mid_history.append(mid)
            if self.last_prediction is not None:
                self.confidence_history.append(self.last_prediction.confidence)

    def _observe_spreads(self, now: int) -> None:
        market = ours = None
        market_ticks = at_touch = 0.0
        if self.book.two_sided() and not self.book.stale:
            mid = self.book.mid_ticks()
            ours_b, ours_a = self._our_lots_by_price()
            mb, ma = self.market_best_ex_us(ours_b, ours_a)
            our_b = max(ours_b, default=None)
            our_a = min(ours_a, default=None)
            if mb is not None and ma is not None and our_b is not None and our_a is not None:
                market = spread_bps(ma - mb, mid)
                ours = spread_bps(our_a - our_b, mid)
                market_ticks = float(ma - mb)
                at_touch = ((our_b >= mb) + (our_a <= ma)) / 2.0
        self.spreads.observe(now, market, ours, market_ticks, at_touch)
        self._last_spreads = (market if market is not None else math.nan, ours if ours is not None else math.nan)

    def snapshot(self, depth: int = 10) -> EngineSnapshot:
        self.seq += 1
        now = self.clock.now_ns()
        book = self.book
        ours_b, ours_a = self._our_lots_by_price()
        bids = tuple((p, q, ours_b.get(p, 0)) for p, q in book.top_bids(depth))
        asks = tuple((p, q, ours_a.get(p, 0)) for p, q in book.top_asks(depth))
        mid = book.mid_ticks() if book.two_sided() else 0.0
        pos_usdc = self.portfolio.exposure(mid) if mid else 0.0
        prop = self.last_proposal
        lat = {s: h.summary_us() for s, h in self.hist.items()}
        lat["tick_to_quote"] = self.tick_to_quote.summary_us()
        return EngineSnapshot(
            seq=self.seq, ts_ns=now, venue=self.venue.name, symbol=self.instrument.symbol,
            price_tick=str(self.instrument.price_tick), mode=self.current_mode.value, widen=self.widen,
            uptime_s=(now - self.start_ns) / NS_PER_S if self.start_ns >= 0 else 0.0,
            bids=bids, asks=asks, mid_ticks=mid, book_stale=book.stale, stale_reason=book.stale_reason,
            orders=self.oms.views(now), position_lots=self.portfolio.position_lots, position_usdc=pos_usdc,
            inventory_pct=inventory_pct(pos_usdc, self.cfg.risk.capital_usdc),
            max_abs_inventory_pct=self.max_abs_inventory_pct, max_position_usdc=self.cfg.risk.max_position_usdc,
            reservation_ticks=prop.reservation_ticks if prop else 0.0,
            half_spread_ticks=prop.half_spread_ticks if prop else 0.0,
            inventory_skew_ticks=prop.inventory_skew_ticks if prop else 0.0,
            pnl=self.portfolio.pnl_quote(mid) if mid else PnL(0.0, 0.0, 0.0, -self.portfolio.fees_paid),
            predictor=self.predictor.name, prediction=self.last_prediction, breakers=self.risk.views(),
            latency_us=lat, counters=self.all_counters(), features=self.features.as_dict(),
            log=tuple(self.events_log), version=self.version, pnl_history=tuple(self.pnl_history),
            confidence_history=tuple(self.confidence_history), hit_rate=self.predictor.hit_rate(),
            t2q_hist=tuple(zip(_T2Q_LABELS, self.tick_to_quote.coarse(T2Q_EDGES_NS), strict=True)),
            fault=self.fault,
            venue_link=self.venue.link(),
            strategy=self.strategy_state(),
            quality=self.fill_metrics(),
        )

    def fill_metrics(self, counts: dict[str, int] | None = None) -> dict[str, Any]:
        """The quality metrics of DESIGN.md (core/metrics.py), one computation for the summary, the console,
        InfluxDB and backtest reports."""
        counts = counts if counts is not None else self.all_counters()
        sp = self.spreads
        improvement, why = spread_improvement(sp.market_bps, sp.ours_bps, sp.market_ticks, sp.one_tick_share)
        opf = orders_per_fill(counts.get("orders_placed", 0), counts["fills"])
        taker = taker_share_pct(counts["taker_fills"], counts["fills"])
        touch = time_at_touch_pct(sp.touch_ns, sp.time_ns)
        return {
            "spread_improvement_pct": None if improvement is None else round(improvement, 2),
            "spread_improvement_note": why,
            "market_spread_ticks": round(sp.market_ticks, 4),
            **self.fill_quality.as_dict(),
            "time_at_touch_pct": None if touch is None else round(touch, 2),
            "taker_share_pct": None if taker is None else round(taker, 2),
            "orders_per_fill": None if opf is None else round(opf, 3),
            "post_only_rejects": counts["post_only_rejects"],
        }

    def instrument_summary(self) -> dict[str, Any]:
        inst = self.instrument
        return {"symbol": inst.symbol, "base": inst.base, "quote": inst.quote, "settle": inst.settle_currency,
                "price_tick": str(inst.price_tick), "lot_size": str(inst.lot_size),
                "multiplier": str(inst.multiplier), "inverse": inst.inverse}

    @property
    def counters(self) -> dict[str, int]:
        """Event and action counts by name, cumulative since the engine was built (the dictionary itself: what
        another component counts there stays)."""
        c = self._counters
        c["events"], c["batches"], c["trades"] = self._n_events, self._n_batches, self._n_trades
        c["book_updates"], c["top_updates"] = self._n_book_updates, self._n_top_updates
        return c

    def all_counters(self) -> dict[str, int]:
        c = dict(self.counters)
        # the order manager counts fills of orders it knows; the engine's "fills" also counts fills of
        # orders it does not (adopted at a restart): the engine's figure is the one that matches the position
        c.update({k: int(v) for k, v in self.oms.counts.items() if k != "fills"})
        c["fills_known_orders"] = int(self.oms.counts.get("fills", 0))
        for reason, n in self.book.rejects.items():
            c[f"book_reject_{reason}"] = n
        c["open_orders"] = len(self.oms.orders)
        return c

    def summary(self) -> dict[str, Any]:
        """The run summary: its keys are the metric names of DESIGN.md."""
        now = self.clock.now_ns()
        mid = self.book.mid_ticks() if self.book.two_sided() else 0.0
        pnl = self.portfolio.pnl_quote(mid) if mid else PnL(0.0, 0.0, 0.0, -self.portfolio.fees_paid)
        pos_usdc = self.portfolio.exposure(mid) if mid else 0.0
        counts = self.all_counters()
        t2q = self.tick_to_quote.summary_us()
        return {
            "venue": self.venue.name,
            "symbol": self.instrument.symbol,
            "seed": self.seed,
            "mode": self.current_mode.value,
            "fault": self.fault,
            "uptime_s": round((now - self.start_ns) / NS_PER_S, 3) if self.start_ns >= 0 else 0.0,
            "wall_s": round(time.monotonic() - self.wall_start, 3),
            "events": counts["events"],
            "quotes": counts["quotes"],
            "orders_placed": counts.get("orders_placed", 0),
            "orders_cancelled": counts.get("orders_cancelled", 0),
            "orders_filled": counts.get("orders_filled", 0),
            "orders_rejected": counts.get("orders_rejected", 0),
            "open_orders": counts["open_orders"],
            "fills": counts["fills"],
            "fill_rate": round(fill_rate(counts["fills"], counts.get("orders_placed", 0)), 4),
            "volume_base": float(self.instrument.lots_to_qty(self.portfolio.volume_lots)),
            "position_base": float(self.instrument.lots_to_qty(self.portfolio.position_lots)),
            "position_usdc": round(pos_usdc, 4),
            "inventory_pct": round(inventory_pct(pos_usdc, self.cfg.risk.capital_usdc), 4),
            "max_abs_inventory_pct": round(self.max_abs_inventory_pct, 4),
            "pnl_usdc": round(pnl.total, 4),
            "pnl_breakdown": {"spread_capture": round(pnl.spread_capture, 4), "inventory": round(pnl.inventory, 4),
                              "fees": round(pnl.fees, 4)},
            # PnL is valued in the quote currency above; an inverse contract settles in its base, shown here too
            "pnl_settle": round(self.portfolio.pnl(mid).total, 8) if mid else round(-self.portfolio.fees_paid, 8),
            "instrument": self.instrument_summary(),
            "strategy_state": self.strategy_state(),
            "market_spread_bps": round(self.spreads.market_bps, 4),
            "our_spread_bps": round(self.spreads.ours_bps, 4),
            **self.fill_metrics(counts),
            "quoting_time_s": round(self.spreads.time_ns / NS_PER_S, 3),
            "tick_to_quote_us": {"p50": t2q["p50"], "p99": t2q["p99"], "p999": t2q["p999"], "max": t2q["max"],
                                 "count": t2q["count"]},
            "stage_latency_us": {s: {k: v for k, v in h.summary_us().items() if k in ("p50", "p99", "p999")}
                                 for s, h in self.hist.items()},
            "breakers": {b.name: {"state": b.state, "trips": b.trips, "reason": b.reason, "action": b.action}
                         for b in self.risk.views()},
            "model": self.predictor.name,
            "prediction_hit_rate": self.predictor.hit_rate(),
            "model_errors": self.model_errors,
            "counters": counts,
            "recovered": self.recovered,  # what a restart took from the state store ({} without one)
            "venue_status": self.venue.status(),
        }


def _best_not_ours(levels: Levels, ours: dict[int, int], bids: bool) -> int | None:
    """The best price on one side of the book where someone other than us rests (None when there is none
    among the best 50 levels): usually the best price itself, checked first without walking the side."""
    if not levels:
        return None
    best = levels.best()
    if levels.lots[best] > ours.get(best, 0):
        return best
    return next((p for p in islice(levels.irange(reverse=bids), 50) if levels[p] > ours.get(p, 0)), None)
