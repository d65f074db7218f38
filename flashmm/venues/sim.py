"""The embedded simulated Sei market: an x/dex-style batch auction per block plus an order-flow model.

`SimMarket` is a pure, seeded, synchronous market (the same seed gives the same run); `SimVenue` wraps it
in the async `Venue` interface and paces blocks against wall time at `speed`.

Matching per block and pair follows x/dex as of sei-chain v5.5 (../shared/SEI.md):
1. the block's cancellations;
2. the block's LIMIT orders join the book, FIFO within a price level;
3. MARKET orders match the opposite side best price first (their price is the worst acceptable, 0 =
   none); makers fill at their level price; all takers of a side in the block get one clearing price,
   the VWAP of that side's taker fills;
4. while best bid >= best ask, cross them for the smaller quantity, both settling at the midpoint, FIFO;
5. market orders left unfilled are cancelled.

Other traders: a latent fair price (log random walk with calm/volatile regimes and jumps) that
liquidity providers quote around, uninformed market orders, and informed market orders that trade
towards the fair price when the mid has drifted away from it. So book imbalance and trade flow carry
real information about the next mid move.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sortedcontainers import SortedDict

from flashmm.config import SimConfig
from flashmm.core.clock import NS_PER_S, SimClock
from flashmm.core.domain import (
    AccountState,
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    FeeCharge,
    Fill,
    Instrument,
    OrderAck,
    OrderAction,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
    VenueOrder,
)
from flashmm.venues.base import Pacer, Venue

OURS = 0  # owner id of our account; other traders are 1
OTHERS = 1
SIM_START_NS = 1_735_689_600 * NS_PER_S  # 2025-01-01T00:00:00Z: a fixed epoch keeps runs reproducible


@dataclass(slots=True)
class _Order:
    order_id: int
    owner: int
    side: Side
    price: int  # ticks
    lots: int  # remaining
    client_id: int  # ours only; -1 for others


@dataclass(slots=True)
class _Market:
    """A market order of this block."""

    owner: int
    side: Side
    limit: int  # worst acceptable price in ticks, 0 = none
    lots: int
    client_id: int


@dataclass(frozen=True, slots=True)
class MatchFill:
    """One fill produced by the auction (for tests and accounting)."""

    order_id: int
    owner: int
    client_id: int
    side: Side
    price: float
    lots: int
    is_maker: bool
    done: bool  # the order has nothing left after this fill


class BatchAuctionBook:
    """The matching book of one pair with x/dex's per-block batch-auction rules."""

    def __init__(self) -> None:
        self.levels: dict[Side, SortedDict] = {Side.BUY: SortedDict(), Side.SELL: SortedDict()}
        self.orders: dict[int, _Order] = {}
        self.level_lots: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        self.touched: dict[Side, set[int]] = {Side.BUY: set(), Side.SELL: set()}

    # ---- book maintenance ----------------------------------------------------------------------
    def add_limit(self, order: _Order) -> None:
        side_levels = self.levels[order.side]
        queue = side_levels.get(order.price)
        if queue is None:
            queue = side_levels[order.price] = deque()
        queue.append(order)
        self.orders[order.order_id] = order
        self._adjust(order.side, order.price, order.lots)

    def cancel(self, order_id: int) -> _Order | None:
        order = self.orders.pop(order_id, None)
        if order is None:
            return None
        queue = self.levels[order.side][order.price]
        queue.remove(order)
        if not queue:
            del self.levels[order.side][order.price]
        self._adjust(order.side, order.price, -order.lots)
        return order

    def _adjust(self, side: Side, price: int, delta: int) -> None:
        lots = self.level_lots[side]
        v = lots.get(price, 0) + delta
        if v:
            lots[price] = v
        else:
            lots.pop(price, None)
        self.touched[side].add(price)

    def best(self, side: Side) -> int | None:
        lv = self.levels[side]
        if not lv:
            return None
        return lv.peekitem(-1)[0] if side is Side.BUY else lv.peekitem(0)[0]

    def _consume_front(self, side: Side, price: int, lots: int) -> list[tuple[_Order, int]]:
        """Take up to `lots` from the level's queue, FIFO. Returns (order, lots filled) pairs."""
        queue = self.levels[side][price]
        out: list[tuple[_Order, int]] = []
        while lots > 0 and queue:
            o = queue[0]
            take = min(lots, o.lots)
            o.lots -= take
            lots -= take
            out.append((o, take))
            if o.lots == 0:
                queue.popleft()
                del self.orders[o.order_id]
        if not queue:
            del self.levels[side][price]
        self._adjust(side, price, -sum(t for _, t in out))
        return out

    # ---- the auction ---------------------------------------------------------------------------
    def match_markets(self, markets: Sequence[_Market]) -> tuple[list[MatchFill], list[tuple[_Market, int, float]]]:
        """Step 3: returns maker fills and, per market order, (order, lots filled, clearing price)."""
        maker_fills: list[MatchFill] = []
        filled: list[tuple[_Market, int]] = []
        notional = {Side.BUY: 0.0, Side.SELL: 0.0}
        volume = {Side.BUY: 0, Side.SELL: 0}
        for m in markets:
            book_side = m.side.opposite
            remaining = m.lots
            while remaining > 0:
                best = self.best(book_side)
                if best is None:
                    break
                if m.limit and ((m.side is Side.BUY and best > m.limit) or (m.side is Side.SELL and best < m.limit)):
                    break
                for o, take in self._consume_front(book_side, best, remaining):
                    remaining -= take
                    maker_fills.append(MatchFill(o.order_id, o.owner, o.client_id, o.side, float(best), take, True, o.lots == 0))
                    notional[m.side] += best * take
                    volume[m.side] += take
            filled.append((m, m.lots - remaining))
        clearing = {s: (notional[s] / volume[s] if volume[s] else 0.0) for s in (Side.BUY, Side.SELL)}
        return maker_fills, [(m, q, clearing[m.side]) for m, q in filled]

    def cross_limits(self) -> list[tuple[MatchFill, MatchFill]]:
        """Step 4: while best bid >= best ask, cross for the smaller quantity at the midpoint, FIFO."""
        out: list[tuple[MatchFill, MatchFill]] = []
        while True:
            bid = self.best(Side.BUY)
            ask = self.best(Side.SELL)
            if bid is None or ask is None or bid < ask:
                return out
            bq = self.levels[Side.BUY][bid][0]
            aq = self.levels[Side.SELL][ask][0]
            take = min(bq.lots, aq.lots)
            mid = (bid + ask) / 2.0
            self._consume_front(Side.BUY, bid, take)
            self._consume_front(Side.SELL, ask, take)
            out.append((
                MatchFill(bq.order_id, bq.owner, bq.client_id, Side.BUY, mid, take, False, bq.lots == 0),
                MatchFill(aq.order_id, aq.owner, aq.client_id, Side.SELL, mid, take, False, aq.lots == 0),
            ))

    # ---- public L2 view --------------------------------------------------------------------------
    def take_diff(self, published: dict[Side, dict[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Levels changed since the last publication, as absolute sizes; updates `published`."""
        out = []
        for side in (Side.BUY, Side.SELL):
            cur = self.level_lots[side]
            pub = published[side]
            changes = []
            for p in sorted(self.touched[side]):
                v = cur.get(p, 0)
                if pub.get(p, 0) != v:
                    changes.append((p, v))
                    if v:
                        pub[p] = v
                    else:
                        pub.pop(p, None)
            self.touched[side].clear()
            out.append(changes)
        return out[0], out[1]


class SimMarket:
    """Seeded simulated SEI/USDC market. `step()` runs one block and returns its events."""

    def __init__(self, cfg: SimConfig, instrument: Instrument, seed: int) -> None:
        self.cfg = cfg
        self.instrument = instrument
        self.rng = np.random.default_rng(seed)
        self.dt_s = cfg.block_ms / 1000.0
        self.block_ns = cfg.block_ms * 1_000_000
        # the warm-up's blocks come before SIM_START_NS, so the first published block is at the same time
        warmup_blocks = math.ceil(cfg.warmup_s * 1000.0 / cfg.block_ms)
        self.clock = SimClock(SIM_START_NS - warmup_blocks * self.block_ns)
        self.height = 0
        self.book = BatchAuctionBook()
        self.published: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        self.next_order_id = 1
        self.fair_ticks = cfg.initial_price / instrument.tick_f  # latent fair price, in ticks (float)
        self.volatile = False
        # lognormal market-order sizes with the configured median and mean
        self._size_mu = math.log(cfg.trade_size_median_lots)
        self._size_sigma = math.sqrt(2.0 * math.log(cfg.trade_size_mean_lots / cfg.trade_size_median_lots))
        self._lp_p = 1.0 / (1.0 + cfg.lp_distance_ticks)  # geometric distance beyond the touch
        self.others: list[int] = []  # resting order ids of other traders (for random cancellation)
        self._others_index: dict[int, int] = {}
        # our account, as the venue records it
        self.position_lots = 0
        self.cash_quote = cfg.our_account_funds_usdc
        self.our_orders: dict[int, int] = {}  # client_id -> venue order id
        self._pending: list[OrderAction] = []
        self.stats = {"blocks": 0, "trades": 0, "our_fills": 0, "other_orders": 0}
        self._seed_book()
        self._warm_up(warmup_blocks)

    def _warm_up(self, blocks: int) -> None:
        """Other traders trade for `blocks` blocks before the first snapshot; nothing is published."""
        if blocks <= 0:
            return
        self.height = 1  # past the snapshot: step() runs whole blocks
        for _ in range(blocks):
            self.step()
        self.height = 0
        self.stats = {k: 0 for k in self.stats}

    # ---- our order entry (a transaction for the next block) ---------------------------------------
    def submit(self, actions: Sequence[OrderAction]) -> None:
        self._pending.extend(actions)

    def account_state(self) -> AccountState:
        orders = {}
        for cid, oid in self.our_orders.items():
            o = self.book.orders.get(oid)
            if o is not None:
                orders[cid] = VenueOrder(cid, o.side, o.price, o.lots)
        return AccountState(self.position_lots, orders)

    # ---- the block ------------------------------------------------------------------------------------
    def step(self) -> list[Event]:
        if self.height == 0:
            self.height = 1
            return [self._snapshot()]
        self.clock.advance(self.block_ns)
        ts = self.clock.now_ns()
        self.height += 1
        self.stats["blocks"] += 1
        self._evolve_fair()
        events: list[Event] = []

        ours, self._pending = self._pending, []
        other_cancels = self._other_cancellations()
        other_limits, other_markets = self._other_orders()

        # our transaction lands at a random place among the block's transactions
        our_cancels = [a for a in ours if isinstance(a, CancelOrder)]
        our_places = [a for a in ours if isinstance(a, PlaceOrder)]
        if ours:
            self._charge_gas(len(our_places), len(our_cancels), ts, events)

        # 1. cancellations
        for oid in other_cancels:
            if self.book.cancel(oid) is not None:
                self._forget_other(oid)
        for c in our_cancels:
            oid = self.our_orders.pop(c.client_id, None)
            if oid is None or self.book.cancel(oid) is None:
                events.append(CancelReject(c.client_id, "order not found (filled or never placed)", ts))
            else:
                events.append(CancelAck(c.client_id, ts))

        # 2. limit orders (ours inserted at a seeded position among the others'), 3. market orders
        limits: list[_Order] = other_limits
        markets: list[_Market] = other_markets
        pos_l = int(self.rng.integers(0, len(limits) + 1))
        pos_m = int(self.rng.integers(0, len(markets) + 1))
        our_limits: list[_Order] = []
        our_markets: list[_Market] = []
        for p in our_places:
            reason = self._validate(p)
            if reason:
                events.append(OrderReject(p.client_id, reason, ts))
                continue
            oid = self._new_id()
            events.append(OrderAck(p.client_id, oid, ts))
            if p.order_type is OrderType.LIMIT:
                o = _Order(oid, OURS, p.side, p.price_ticks, p.lots, p.client_id)
                our_limits.append(o)
                self.our_orders[p.client_id] = oid
            else:
                our_markets.append(_Market(OURS, p.side, p.price_ticks, p.lots, p.client_id))
        limits = limits[:pos_l] + our_limits + limits[pos_l:]
        markets = markets[:pos_m] + our_markets + markets[pos_m:]
        for o in limits:
            self.book.add_limit(o)
            if o.owner == OTHERS:
                self._remember_other(o.order_id)

        maker_fills, taker_results = self.book.match_markets(markets)
        for f in maker_fills:
            self._on_fill(f, ts, events)
        trades: list[Trade] = []
        for m, lots, clearing in taker_results:
            if lots:
                trades.append(Trade(clearing, lots, m.side, ts))
                if m.owner == OURS:
                    self._our_fill(m.client_id, m.side, clearing, lots, False, lots == m.lots, ts, events)
            elif m.owner == OURS:
                # 5. unfilled market orders are cancelled
                events.append(CancelAck(m.client_id, ts))
            if m.owner == OURS and 0 < lots < m.lots:
                events.append(CancelAck(m.client_id, ts))

        # 4. crossed limit orders settle at the midpoint
        for b_fill, a_fill in self.book.cross_limits():
            trades.append(Trade(b_fill.price, b_fill.lots, None, ts))
            self._on_fill(b_fill, ts, events)
            self._on_fill(a_fill, ts, events)

        self.stats["trades"] += len(trades)
        bids, asks = self.book.take_diff(self.published)
        events.append(BookDiff(self.height, self.height, bids, asks, ts))
        events.extend(trades)
        return events

    # ---- helpers -------------------------------------------------------------------------------------
    def _snapshot(self) -> BookSnapshot:
        self.book.take_diff(self.published)
        return BookSnapshot(
            self.height,
            list(self.published[Side.BUY].items()),
            list(self.published[Side.SELL].items()),
            self.clock.now_ns(),
        )

    def _new_id(self) -> int:
        oid = self.next_order_id
        self.next_order_id += 1
        return oid

    def _validate(self, p: PlaceOrder) -> str:
        if p.lots <= 0:
            return "quantity needs to be non-zero and multiple of quantity tick size"
        if p.order_type is OrderType.LIMIT and p.price_ticks <= 0:
            return "price needs to be non-zero and multiple of price tick size"
        if p.order_type is OrderType.MARKET and p.price_ticks < 0:
            return "price needs to be non-negative"
        if p.client_id in self.our_orders:
            return f"duplicate client order id {p.client_id}"
        return ""

    def _charge_gas(self, n_place: int, n_cancel: int, ts: int, events: list[Event]) -> None:
        c = self.cfg
        usei = c.gas_per_tx * c.gas_price_usei + n_place * c.dex_fee_usei_per_order + n_cancel * c.dex_fee_usei_per_cancel
        if usei <= 0:
            return
        # our gas is paid in SEI, the pair's base asset: value it at the fair price
        sei = usei / 1e6
        amount = sei * self.fair_ticks * self.instrument.tick_f
        self.cash_quote -= amount
        events.append(FeeCharge(amount, "gas", ts))

    def _on_fill(self, f: MatchFill, ts: int, events: list[Event]) -> None:
        if f.owner == OTHERS:
            if f.done:
                self._forget_other(f.order_id)
            return
        if f.done:
            self.our_orders.pop(f.client_id, None)
        self._our_fill(f.client_id, f.side, f.price, f.lots, f.is_maker, f.done, ts, events)

    def _our_fill(self, cid: int, side: Side, price: float, lots: int, maker: bool, done: bool, ts: int,
                  events: list[Event]) -> None:
        notional = self.instrument.notional(price, lots)
        fee = notional * (self.cfg.maker_fee_bps if maker else self.cfg.taker_fee_bps) / 1e4
        self.position_lots += int(side) * lots
        self.cash_quote -= int(side) * notional + fee
        self.stats["our_fills"] += 1
        events.append(Fill(cid, side, price, lots, fee, maker, ts, done))

    def _remember_other(self, oid: int) -> None:
        self._others_index[oid] = len(self.others)
        self.others.append(oid)

    def _forget_other(self, oid: int) -> None:
        i = self._others_index.pop(oid, None)
        if i is None:
            return
        last = self.others.pop()
        if last != oid:
            self.others[i] = last
            self._others_index[last] = i

    def _evolve_fair(self) -> None:
        c, dt, rng = self.cfg, self.dt_s, self.rng
        if self.volatile:
            if rng.random() < c.regime_revert_per_s * dt:
                self.volatile = False
        elif rng.random() < c.regime_switch_per_s * dt:
            self.volatile = True
        vol_bps = c.vol_volatile_bps if self.volatile else c.vol_calm_bps
        log_ret = vol_bps * 1e-4 * math.sqrt(dt) * rng.standard_normal()
        if rng.random() < c.jump_rate_per_s * dt:
            log_ret += (1 if rng.random() < 0.5 else -1) * rng.exponential(c.jump_bps) * 1e-4
        self.fair_ticks *= math.exp(log_ret)

    def _other_cancellations(self) -> list[int]:
        c, rng = self.cfg, self.rng
        out: list[int] = []
        n = len(self.others)
        if n:
            k = int(rng.binomial(n, min(1.0, c.cancel_per_s * self.dt_s)))
            if k:
                out.extend(self.others[i] for i in rng.choice(n, size=k, replace=False))
        # liquidity providers pull quotes left on the wrong side of the fair price
        fair = self.fair_ticks
        for side, prices in (
            (Side.BUY, self.book.levels[Side.BUY].irange(minimum=math.floor(fair) + 1)),
            (Side.SELL, self.book.levels[Side.SELL].irange(maximum=math.ceil(fair) - 1)),
        ):
            for p in list(prices):
                for o in self.book.levels[side][p]:
                    if o.owner == OTHERS and rng.random() < c.stale_cancel_prob:
                        out.append(o.order_id)
        return out

    def _other_orders(self) -> tuple[list[_Order], list[_Market]]:
        c, rng, dt = self.cfg, self.rng, self.dt_s
        fair = self.fair_ticks
        limits: list[_Order] = []
        n_lp = int(rng.poisson(c.lp_orders_per_s * dt))
        for _ in range(n_lp):
            limits.append(self._lp_order(fair))
        markets: list[_Market] = []
        n_noise = int(rng.poisson(c.noise_trades_per_s * dt))
        for _ in range(n_noise):
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            markets.append(_Market(OTHERS, side, 0, self._trade_size(), -1))
        bid = self.book.best(Side.BUY)
        ask = self.book.best(Side.SELL)
        if bid is not None and ask is not None:
            mispricing = fair - (bid + ask) / 2.0
            strength = min(1.0, max(0.0, abs(mispricing) - c.informed_threshold_ticks))
            n_inf = int(rng.poisson(c.informed_trades_per_s * strength * dt))
            side = Side.BUY if mispricing > 0 else Side.SELL
            for _ in range(n_inf):
                # informed takers do not pay beyond the fair price
                limit = math.floor(fair) if side is Side.BUY else math.ceil(fair)
                markets.append(_Market(OTHERS, side, max(limit, 1), self._trade_size(), -1))
        self.stats["other_orders"] += n_lp + len(markets)
        return limits, markets

    def _lp_order(self, fair: float) -> _Order:
        rng = self.rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        extra = int(rng.geometric(self._lp_p)) - 1
        off = 0.05 + self.cfg.lp_offset_ticks
        if side is Side.BUY:
            price = math.floor(fair - off) - extra
        else:
            price = math.ceil(fair + off) + extra
        if self.cfg.lp_join_best_prob > 0 and rng.random() < self.cfg.lp_join_best_prob:
            # queue at the side's best price where it leaves at least the least distance from the fair price
            best = self.book.best(side)
            edge = self.cfg.lp_offset_ticks
            if best is not None and ((side is Side.BUY and fair - best >= edge) or (side is Side.SELL and best - fair >= edge)):
                price = best
        lots = max(1, int(rng.exponential(self.cfg.lp_size_mean_lots)))
        return _Order(self._new_id(), OTHERS, side, max(price, 1), lots, -1)

    def _trade_size(self) -> int:
        return max(1, int(self.rng.lognormal(self._size_mu, self._size_sigma)))

    def _seed_book(self) -> None:
        fair = self.fair_ticks
        for i in range(self.cfg.initial_levels):
            for side in (Side.BUY, Side.SELL):
                off = 0.05 + self.cfg.lp_offset_ticks
                price = (math.floor(fair - off) - i) if side is Side.BUY else (math.ceil(fair + off) + i)
                for _ in range(3):
                    lots = max(1, int(self.rng.exponential(self.cfg.lp_size_mean_lots)))
                    o = _Order(self._new_id(), OTHERS, side, max(price, 1), lots, -1)
                    self.book.add_limit(o)
                    self._remember_other(o.order_id)


class SimVenue(Venue):
    """The simulated market behind the Venue interface, paced at `speed` x wall time (inf = no pacing)."""

    name = "sim"
    wall_clock_feed = False

    def __init__(self, cfg: SimConfig, instrument: Instrument, seed: int, speed: float = 1.0) -> None:
        self.market = SimMarket(cfg, instrument, seed)
        self.instrument = instrument
        self.maker_fee_bps = cfg.maker_fee_bps
        self.clock = self.market.clock
        self.speed = speed
        self.paced = math.isfinite(speed)
        self.pacer = Pacer(speed)
        self.lateness = self.pacer.lateness  # paced runs: how late each block was handed over (event-loop lag)
        self._stopped = False

    async def start(self) -> None:
        self.pacer.start(self.clock.now_ns())

    async def next_batch(self) -> list[Event] | None:
        if self._stopped:
            return None
        await self.pacer.wait_until(self.clock.now_ns() + self.market.block_ns)
        return self.market.step()

    def submit(self, actions: Sequence[OrderAction]) -> None:
        self.market.submit(actions)

    def order_cost_quote(self, mid_ticks: float) -> float:
        """x/dex's per-order and per-cancel charges plus one transaction's gas (a replace is one cancel and
        one place in the same block's transaction), paid in SEI and valued at the mid."""
        c = self.market.cfg
        usei = c.dex_fee_usei_per_order + c.dex_fee_usei_per_cancel + c.gas_per_tx * c.gas_price_usei
        return usei / 1e6 * mid_ticks * self.instrument.tick_f

    async def account_state(self) -> AccountState:
        return self.market.account_state()

    async def stop(self) -> None:
        self._stopped = True
