"""Replay of recorded real markets on the simulated clock, with our orders filled by a queue model.

The recorded market is not changed by our orders (the usual backtest assumption: our size is small
against the book). What happens to our orders:
- an action reaches the venue `latency_ms` after the decision;
- a post-only limit order (our quotes) that would cross the recorded book on arrival is rejected, as Binance
  rejects a GTX / LIMIT_MAKER order (`OrderReject` code `post_only_would_cross`, counted); it never fills as
  a taker;
- any other limit order that crosses the book on arrival takes liquidity at the book's prices (taker), up to
  the recorded sizes; the rest rests at its price;
- a resting order joins the back of its level: `queue_ahead` = the recorded size there on arrival;
- a trade at our price first consumes the queue ahead of us, the rest fills us (partial fills happen);
- a trade through our price (a buy above our ask, a sell below our bid), or the opposite best price
  reaching ours, fills what is left of us at our price;
- a level that shrinks by more than its trades was cancelled from; the cancelled size is split between
  ahead of us and behind us in proportion (so cancellations ahead of us advance us);
- market orders (flatten) walk the book up to their worst price; what is left is cancelled.
Fees: maker / taker bps of notional (negative = rebate), in the instrument's settlement currency.

The recorded book is the depth stream plus, where the recording has them ([replay].use_book_ticker),
the real-time best bid/offer updates (Binance bookTicker) between depth diffs: the venue's mirror and the
engine's book apply the same `BookTop` events (L2Book.apply_top), so queue positions and fills see the top
of the book as it was, not as the last 100 ms depth diff left it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from flashmm.config import ReplayConfig
from flashmm.core.book import L2Book
from flashmm.core.clock import SimClock
from flashmm.core.domain import (
    REJECT_POST_ONLY,
    AccountState,
    BookDiff,
    BookSnapshot,
    BookTop,
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    Fill,
    OrderAck,
    OrderAction,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
    VenueOrder,
)
from flashmm.data.events import (
    FLAG_EMPTY,
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
    message_bounds,
)
from flashmm.venues.base import Pacer, Venue


@dataclass(slots=True)
class _Resting:
    client_id: int
    side: Side
    price: int
    remaining: int
    queue_ahead: int
    venue_id: int


class QueueFillModel:
    """Our orders against a recorded book (an L2Book mirror kept by the venue)."""

    def __init__(self, book: L2Book, instrument, maker_fee_bps: float, taker_fee_bps: float) -> None:
        self.book = book
        self.instrument = instrument
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.orders: dict[int, _Resting] = {}
        self.traded_at: dict[tuple[int, int], int] = {}  # (side of book, price) -> lots traded since last diff
        self.position_lots = 0
        self.next_id = 1
        self.post_only_rejects = 0
        self.out: list[Event] = []

    # ---- our actions -------------------------------------------------------------------------------
    def place(self, p: PlaceOrder, ts: int) -> None:
        if p.lots <= 0:
            self.out.append(OrderReject(p.client_id, "quantity must be positive", ts))
            return
        if p.order_type is OrderType.LIMIT and p.price_ticks <= 0:
            self.out.append(OrderReject(p.client_id, "price must be positive", ts))
            return
        if p.client_id in self.orders:
            self.out.append(OrderReject(p.client_id, f"duplicate client order id {p.client_id}", ts))
            return
        if self.book.stale or not self.book.two_sided():
            self.out.append(OrderReject(p.client_id, "market data unavailable (book not synchronised)", ts))
            return
        if p.post_only and p.order_type is OrderType.LIMIT and self._crosses(p.side, p.price_ticks):
            self.post_only_rejects += 1
            best = self.book.asks.peekitem(0)[0] if p.side is Side.BUY else self.book.bids.peekitem(-1)[0]
            self.out.append(OrderReject(p.client_id, f"post-only {p.side.name} at {p.price_ticks} would cross the "
                                                     f"book (best {'ask' if p.side is Side.BUY else 'bid'} {best})",
                                        ts, REJECT_POST_ONLY))
            return
        vid = self.next_id
        self.next_id += 1
        self.out.append(OrderAck(p.client_id, vid, ts))
        limit = p.price_ticks if p.order_type is OrderType.LIMIT or p.price_ticks > 0 else 0
        remaining = self._take(p.client_id, p.side, limit, p.lots, ts)
        if remaining <= 0:
            return
        if p.order_type is OrderType.MARKET:
            self.out.append(CancelAck(p.client_id, ts))  # unfilled rest of a market order is cancelled
            return
        levels = self.book.bids if p.side is Side.BUY else self.book.asks
        self.orders[p.client_id] = _Resting(p.client_id, p.side, p.price_ticks, remaining,
                                            levels.get(p.price_ticks, 0), vid)

    def _crosses(self, side: Side, price: int) -> bool:
        if side is Side.BUY:
            return bool(self.book.asks) and self.book.asks.peekitem(0)[0] <= price
        return bool(self.book.bids) and self.book.bids.peekitem(-1)[0] >= price

    def cancel(self, c: CancelOrder, ts: int) -> None:
        o = self.orders.pop(c.client_id, None)
        if o is None:
            self.out.append(CancelReject(c.client_id, "order not found (filled or never placed)", ts))
        else:
            self.out.append(CancelAck(c.client_id, ts))

    def _take(self, cid: int, side: Side, limit: int, lots: int, ts: int) -> int:
        """Take liquidity from the recorded opposite side up to `limit` (0 = none). Returns what is left."""
        levels = self.book.asks if side is Side.BUY else self.book.bids
        if side is Side.BUY:
            prices = levels.irange(maximum=limit) if limit else levels.irange()
        else:
            prices = levels.irange(minimum=limit, reverse=True) if limit else levels.irange(reverse=True)
        taken: list[tuple[int, int]] = []
        for price in prices:  # lazy, best price first; stops at the limit
            if lots <= 0:
                break
            take = min(lots, levels[price])
            lots -= take
            taken.append((price, take))
        for i, (price, take) in enumerate(taken):
            self._fill(cid, side, float(price), take, False, lots == 0 and i == len(taken) - 1, ts)
        return lots

    def _fill(self, cid: int, side: Side, price: float, lots: int, maker: bool, done: bool, ts: int) -> None:
        notional = self.instrument.notional(price, lots)
        fee = notional * (self.maker_fee_bps if maker else self.taker_fee_bps) / 1e4
        self.position_lots += int(side) * lots
        self.out.append(Fill(cid, side, price, lots, fee, maker, ts, done))

    def _maker_fill(self, o: _Resting, lots: int, ts: int) -> None:
        lots = min(lots, o.remaining)
        if lots <= 0:
            return
        o.remaining -= lots
        done = o.remaining == 0
        if done:
            del self.orders[o.client_id]
        self._fill(o.client_id, o.side, float(o.price), lots, True, done, ts)

    # ---- the recorded market -----------------------------------------------------------------------
    def on_trade(self, price: int, lots: int, aggressor: int, ts: int) -> None:
        if aggressor == 0:
            # no side known: the trade hit whichever of our sides it reached
            sides: tuple[Side, ...] = (Side.BUY, Side.SELL)
        else:
            sides = (Side.SELL,) if aggressor > 0 else (Side.BUY,)  # a buy aggressor hits asks
        key = (-1 if aggressor > 0 else 1, price)  # the book side the trade took from
        self.traded_at[key] = self.traded_at.get(key, 0) + lots
        if not self.orders:
            return
        for o in list(self.orders.values()):
            if o.side not in sides:
                continue
            through = (o.side is Side.SELL and price > o.price) or (o.side is Side.BUY and price < o.price)
            if through:
                self._maker_fill(o, o.remaining, ts)
            elif price == o.price:
                beyond = lots - o.queue_ahead
                o.queue_ahead = max(0, o.queue_ahead - lots)
                if beyond > 0:
                    self._maker_fill(o, beyond, ts)

    def on_level(self, side: Side, price: int, old: int, new: int) -> None:
        """A recorded level changed from `old` to `new` lots (after the book mirror applied it)."""
        traded = self.traded_at.pop((int(side), price), 0)
        cancelled = (old - new) - traded
        if cancelled <= 0 or old <= 0:
            return
        for o in self.orders.values():
            if o.side is side and o.price == price and o.queue_ahead > 0:
                o.queue_ahead = max(0, min(new, o.queue_ahead - round(cancelled * o.queue_ahead / old)))

    def on_book_moved(self, ts: int) -> None:
        """The opposite best price reached one of ours: the market went through us."""
        if not self.book.two_sided():
            return
        best_bid = self.book.bids.peekitem(-1)[0]
        best_ask = self.book.asks.peekitem(0)[0]
        for o in list(self.orders.values()):
            if (o.side is Side.SELL and best_bid >= o.price) or (o.side is Side.BUY and best_ask <= o.price):
                self._maker_fill(o, o.remaining, ts)

    def account(self) -> AccountState:
        return AccountState(self.position_lots, {o.client_id: VenueOrder(o.client_id, o.side, o.price, o.remaining)
                                                 for o in self.orders.values()})


_SIDES = {1: Side.BUY, -1: Side.SELL, 0: None}


class ReplayVenue(Venue):
    name = "replay"
    wall_clock_feed = False

    def __init__(self, data: EventSet, cfg: ReplayConfig, speed: float = math.inf) -> None:
        self.data = data
        self.instrument = data.instrument
        self.cfg = cfg
        self.maker_fee_bps = cfg.maker_fee_bps
        self.speed = speed
        ev = data.events
        # plain Python lists: per-row access to numpy scalars costs several times more
        self._ts = ev["ts_ns"].tolist()
        self._kind = ev["kind"].tolist()
        self._side = ev["side"].tolist()
        self._flags = ev["flags"].tolist()
        self._price = ev["price"].tolist()
        self._qty = ev["qty"].tolist()
        self._seq = ev["seq"].tolist()
        self._seq2 = ev["seq2"].tolist()
        self._ends = message_bounds(ev).tolist()
        self._msg = 0
        self.clock = SimClock(int(self._ts[0]) if len(ev) else 0)
        self.latency_ns = int(cfg.latency_ms * 1_000_000)
        self.mirror = L2Book()  # the venue's own copy of the recorded book, for queue positions
        self.model = QueueFillModel(self.mirror, self.instrument, cfg.maker_fee_bps, cfg.taker_fee_bps)
        self._inflight: deque[tuple[int, OrderAction]] = deque()  # (arrival ns, action)
        self.rows_done = 0
        self.messages_done = 0
        self.bbo_messages = 0
        self.use_top = cfg.use_book_ticker
        self.pacer = Pacer(speed, yield_every=1024)
        self.lateness = self.pacer.lateness
        self._stopped = False

    @property
    def rows_total(self) -> int:
        return len(self._ts)

    @property
    def messages_total(self) -> int:
        return len(self._ends)

    async def start(self) -> None:
        self.pacer.start(self.clock.now_ns())

    def submit(self, actions: Sequence[OrderAction]) -> None:
        arrive = self.clock.now_ns() + self.latency_ns
        for a in actions:
            self._inflight.append((arrive, a))

    async def account_state(self) -> AccountState:
        return self.model.account()

    async def stop(self) -> None:
        self._stopped = True

    async def next_batch(self) -> list[Event] | None:
        if self._stopped:
            return None
        while self._msg < len(self._ends):
            start = self._ends[self._msg - 1] if self._msg else 0
            end = self._ends[self._msg]
            ts = self._ts[start]
            await self.pacer.wait_until(ts)
            self._msg += 1
            self.rows_done += end - start
            self.messages_done += 1
            out = self._arrivals(ts)
            self.clock.advance_to(max(ts, self.clock.now_ns()))
            kind = self._kind[start]
            if kind == KIND_BBO:
                self.bbo_messages += 1
                if not self.use_top:
                    if out:
                        return out
                    continue
            out.extend(self._market(kind, start, end, ts))
            return out
        # the recording is over: actions still in flight arrive, then the venue ends
        if self._inflight:
            return self._arrivals(self._inflight[-1][0] + 1)
        return None

    def _arrivals(self, until_ns: int) -> list[Event]:
        model = self.model
        model.out = []
        while self._inflight and self._inflight[0][0] <= until_ns:
            t, a = self._inflight.popleft()
            self.clock.advance_to(max(t, self.clock.now_ns()))
            if isinstance(a, PlaceOrder):
                model.place(a, t)
            else:
                model.cancel(a, t)
        return model.out

    def _top(self, start: int, end: int, ts: int) -> list[Event]:
        """A best bid/offer update: the mirror moves its top (L2Book.apply_top), the queue model sees the
        levels it removed or resized (cancels ahead of us advance us; a top through our price fills us)."""
        model = self.model
        model.out = []
        bid = ask = None
        for i in range(start, end):
            if self._side[i] > 0:
                bid = (self._price[i], self._qty[i])
            elif self._side[i] < 0:
                ask = (self._price[i], self._qty[i])
        if bid is None or ask is None:
            return model.out
        ev = BookTop(self._seq[start], bid[0], bid[1], ask[0], ask[1], ts)
        mirror = self.mirror
        changed: list[tuple[Side, int, int, int]] = []
        if model.orders and not mirror.stale and ev.seq > mirror.seq and ev.seq > mirror.top_seq:
            for p in mirror.bids.irange(minimum=bid[0], reverse=True):
                changed.append((Side.BUY, p, mirror.bids[p], bid[1] if p == bid[0] else 0))
            for p in mirror.asks.irange(maximum=ask[0]):
                changed.append((Side.SELL, p, mirror.asks[p], ask[1] if p == ask[0] else 0))
        if mirror.apply_top(ev):
            for side, p, old, new in changed:
                model.on_level(side, p, old, new)
            model.on_book_moved(ts)
        return model.out + [ev]

    def _market(self, kind: int, start: int, end: int, ts: int) -> list[Event]:
        model = self.model
        model.out = []
        side = self._side
        price = self._price
        qty = self._qty
        if kind == KIND_BBO:
            return self._top(start, end, ts)
        if kind == KIND_TRADE:
            trades = []
            for i in range(start, end):
                p, q, s = price[i], qty[i], side[i]
                model.on_trade(p, q, s, ts)
                trades.append(Trade(float(p), q, _SIDES[s], ts))
            return model.out + trades
        rows = list(zip(side[start:end], price[start:end], qty[start:end], strict=True))
        bids = [(p, q) for s, p, q in rows if s > 0]
        asks = [(p, q) for s, p, q in rows if s < 0]
        if kind == KIND_SNAP:
            if self._flags[start] & FLAG_EMPTY:
                bids, asks = [], []
            ev: Event = BookSnapshot(self._seq[start], bids, asks, ts)
            self.mirror.apply_snapshot(ev)
            model.traded_at.clear()
        elif kind == KIND_DIFF:
            ev = BookDiff(self._seq[start], self._seq2[start], bids, asks, ts)
            old_b = {p: self.mirror.bids.get(p, 0) for p, _ in bids}
            old_a = {p: self.mirror.asks.get(p, 0) for p, _ in asks}
            mb, ma = self.mirror.bids, self.mirror.asks
            if self.mirror.apply_diff(ev):  # levels behind a newer top are left as they are: compare after
                for p, _ in bids:
                    model.on_level(Side.BUY, p, old_b[p], mb.get(p, 0))
                for p, _ in asks:
                    model.on_level(Side.SELL, p, old_a[p], ma.get(p, 0))
        else:
            return model.out
        model.on_book_moved(ts)
        return model.out + [ev]
