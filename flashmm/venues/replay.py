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

import asyncio
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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

_BUY, _SELL, _LIMIT, _MARKET = Side.BUY, Side.SELL, OrderType.LIMIT, OrderType.MARKET  # (an enum member read
# through its class costs ~40 ns: these run per message)


@dataclass(slots=True)
class _Resting:
    client_id: int
    side: Side
    price: int
    remaining: int
    queue_ahead: int
    venue_id: int


_INF = float("inf")


class QueueFillModel:
    """Our orders against a recorded book (an L2Book mirror kept by the venue).

    Most market messages touch no level where we rest and move no best price through ours: the model keeps
    the prices of its resting orders per side (`bid_prices`, `ask_prices`, the highest bid and lowest ask) so
    that such a message costs a few comparisons; the per-order logic runs only where it can change something.
    """

    def __init__(self, book: L2Book, instrument, maker_fee_bps: float, taker_fee_bps: float,
                 enforce_post_only: bool = True) -> None:
        self.book = book
        # False: a post-only order that crosses on arrival takes liquidity and pays the taker fee, as the replay
        # did before post-only was enforced ([replay].enforce_post_only; for before/after comparisons only)
        self.enforce_post_only = enforce_post_only
        self.instrument = instrument
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.orders: dict[int, _Resting] = {}
        # price -> lots traded there since the last diff, per side of the book (a buy aggressor's trades on the
        # asks, the others' on the bids)
        self.traded_bid: dict[int, int] = {}
        self.traded_ask: dict[int, int] = {}
        self.position_lots = 0
        self.next_id = 1
        self.post_only_rejects = 0
        self.out: list[Event] = []
        # where our resting orders are (kept by _reindex whenever an order rests, fills completely or is cancelled)
        self.bid_prices: frozenset[int] = frozenset()
        self.ask_prices: frozenset[int] = frozenset()
        self.max_bid: float = -_INF  # highest price of our resting buys
        self.min_ask: float = _INF  # lowest price of our resting sells

    def _reindex(self) -> None:
        bids = [o.price for o in self.orders.values() if o.side is _BUY]
        asks = [o.price for o in self.orders.values() if o.side is _SELL]
        self.bid_prices = frozenset(bids)
        self.ask_prices = frozenset(asks)
        self.max_bid = max(bids) if bids else -_INF
        self.min_ask = min(asks) if asks else _INF

    # ---- our actions -------------------------------------------------------------------------------
    def place(self, p: PlaceOrder, ts: int) -> None:
        if p.lots <= 0:
            self.out.append(OrderReject(p.client_id, "quantity must be positive", ts))
            return
        if p.order_type is _LIMIT and p.price_ticks <= 0:
            self.out.append(OrderReject(p.client_id, "price must be positive", ts))
            return
        if p.client_id in self.orders:
            self.out.append(OrderReject(p.client_id, f"duplicate client order id {p.client_id}", ts))
            return
        if self.book.stale or not self.book.two_sided():
            self.out.append(OrderReject(p.client_id, "market data unavailable (book not synchronised)", ts))
            return
        if p.post_only and self.enforce_post_only and p.order_type is _LIMIT \
                and self._crosses(p.side, p.price_ticks):
            self.post_only_rejects += 1
            best = self.book.asks.best() if p.side is _BUY else self.book.bids.best()
            self.out.append(OrderReject(p.client_id, f"post-only {p.side.name} at {p.price_ticks} would cross the "
                                                     f"book (best {'ask' if p.side is _BUY else 'bid'} {best})",
                                        ts, REJECT_POST_ONLY))
            return
        vid = self.next_id
        self.next_id += 1
        self.out.append(OrderAck(p.client_id, vid, ts))
        limit = p.price_ticks if p.order_type is _LIMIT or p.price_ticks > 0 else 0
        remaining = self._take(p.client_id, p.side, limit, p.lots, ts)
        if remaining <= 0:
            return
        if p.order_type is _MARKET:
            self.out.append(CancelAck(p.client_id, ts))  # unfilled rest of a market order is cancelled
            return
        levels = self.book.bids if p.side is _BUY else self.book.asks
        self.orders[p.client_id] = _Resting(p.client_id, p.side, p.price_ticks, remaining,
                                            levels.lots.get(p.price_ticks, 0), vid)
        self._reindex()

    def _crosses(self, side: Side, price: int) -> bool:
        if side is _BUY:
            return bool(self.book.asks) and self.book.asks.best() <= price
        return bool(self.book.bids) and self.book.bids.best() >= price

    def cancel(self, c: CancelOrder, ts: int) -> None:
        o = self.orders.pop(c.client_id, None)
        if o is None:
            self.out.append(CancelReject(c.client_id, "order not found (filled or never placed)", ts))
        else:
            self._reindex()
            self.out.append(CancelAck(c.client_id, ts))

    def _take(self, cid: int, side: Side, limit: int, lots: int, ts: int) -> int:
        """Take liquidity from the recorded opposite side up to `limit` (0 = none). Returns what is left."""
        levels = self.book.asks if side is _BUY else self.book.bids
        if not levels or (limit and (levels.best() > limit if side is _BUY else levels.best() < limit)):
            return lots  # nothing to take at the limit (a resting quote: the usual case)
        if side is _BUY:
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
            self._reindex()
        self._fill(o.client_id, o.side, float(o.price), lots, True, done, ts)

    # ---- the recorded market -----------------------------------------------------------------------
    def clear_traded(self) -> None:
        """Forget the trades not yet set against a level (a snapshot replaced the book)."""
        self.traded_bid.clear()
        self.traded_ask.clear()

    def on_trade(self, price: int, lots: int, aggressor: int, ts: int) -> None:
        traded = self.traded_ask if aggressor > 0 else self.traded_bid  # the book side the trade took from
        traded[price] = traded.get(price, 0) + lots
        if not self.orders:
            return
        # a buy aggressor hits asks, a sell aggressor bids; no side known: whichever of our sides it reached.
        # Only our sells at or below the price, or our buys at or above it, can be reached at all.
        hits_asks = aggressor >= 0 and price >= self.min_ask
        hits_bids = aggressor <= 0 and price <= self.max_bid
        if not (hits_asks or hits_bids):
            return
        for o in list(self.orders.values()):
            if o.side is _SELL:
                if not hits_asks:
                    continue
            elif not hits_bids:
                continue
            through = (o.side is _SELL and price > o.price) or (o.side is _BUY and price < o.price)
            if through:
                self._maker_fill(o, o.remaining, ts)
            elif price == o.price:
                beyond = lots - o.queue_ahead
                o.queue_ahead = max(0, o.queue_ahead - lots)
                if beyond > 0:
                    self._maker_fill(o, beyond, ts)

    def on_level(self, side: Side, price: int, old: int, new: int) -> None:
        """A recorded level changed from `old` to `new` lots (after the book mirror applied it)."""
        buy = side is _BUY
        at = self.traded_bid if buy else self.traded_ask
        traded = at.pop(price, 0) if at else 0
        cancelled = (old - new) - traded
        if cancelled <= 0 or old <= 0 or price not in (self.bid_prices if buy else self.ask_prices):
            return  # nothing cancelled, or none of ours rests at this level
        for o in self.orders.values():
            if o.side is side and o.price == price and o.queue_ahead > 0:
                o.queue_ahead = max(0, min(new, o.queue_ahead - round(cancelled * o.queue_ahead / old)))

    def on_book_moved(self, ts: int) -> None:
        """The opposite best price reached one of ours: the market went through us."""
        if not self.orders:
            return
        book = self.book
        if not (book.bids.ladder and book.asks.ladder):
            return
        best_bid = book.bids.ladder[-1]
        best_ask = -book.asks.ladder[-1]
        if best_bid < self.min_ask and best_ask > self.max_bid:
            return  # neither best price reached any of ours
        for o in list(self.orders.values()):
            if (o.side is _SELL and best_bid >= o.price) or (o.side is _BUY and best_ask <= o.price):
                self._maker_fill(o, o.remaining, ts)

    def account(self) -> AccountState:
        return AccountState(self.position_lots, {o.client_id: VenueOrder(o.client_id, o.side, o.price, o.remaining)
                                                 for o in self.orders.values()})


_SIDES = {1: _BUY, -1: _SELL, 0: None}


def _column(values: np.ndarray) -> array:
    """A column of small integers the venue only indexes (row sides, message bounds, kinds, flags) as a typed
    array: read per message as a C integer in the compiled build (replay.pxd), as an int here."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return out


def _bid_ask_split(side: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per message: the index of its first ask row when its rows are all bid rows then all ask rows (the
    readers write them so), else -1 (the rows are then sorted out one by one)."""
    if len(ends) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], ends[:-1]))
    bid = side > 0
    ask = side < 0
    n_bid = np.add.reduceat(bid.astype(np.int64), starts)
    n_ask = np.add.reduceat(ask.astype(np.int64), starts)
    bid_after_ask = np.zeros(len(side), dtype=np.int64)
    bid_after_ask[1:] = bid[1:] & ask[:-1]
    bid_after_ask[starts] = 0  # across a message boundary
    ok = (n_bid + n_ask == ends - starts) & (np.add.reduceat(bid_after_ask, starts) == 0)
    return np.where(ok, starts + n_bid, -1)


class _ReplayCore:
    """The replay's state and its per-message work; `ReplayVenue` below is this plus the Venue interface. (Kept
    apart because the compiled build makes it an extension type, replay.pxd, which cannot derive from the Venue
    ABC: its attributes are then slots that its own methods read directly, a dozen or so per message.)"""

    def __init__(self, data: EventSet, cfg: ReplayConfig, speed: float = math.inf) -> None:
        self.data = data
        self.instrument = data.instrument
        self.cfg = cfg
        self.maker_fee_bps = cfg.maker_fee_bps
        self.speed = speed
        ev = data.events
        # plain Python lists (per-row access to numpy scalars costs several times more): the rows' side, price
        # and size; what a message's rows share (time, kind, flags, sequence numbers) once per message
        self._side = _column(ev["side"])
        # one integer object per distinct price: a level's dictionary key is then the very object a later row or
        # top of the same price carries, and a lookup matches it by identity (no integer comparison)
        interned: dict[int, int] = {}
        self._price = [interned.setdefault(p, p) for p in ev["price"].tolist()]
        self._qty = ev["qty"].tolist()
        self._rows_total = len(ev)
        ends = message_bounds(ev)
        starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
        self._ends = _column(ends)
        self._starts = _column(starts)
        first = ev[starts]
        self._ts = first["ts_ns"].tolist()
        self._kind = _column(first["kind"])
        self._flags = _column(first["flags"])
        self._seq = first["seq"].tolist()
        self._seq2 = first["seq2"].tolist()
        self._split = _column(_bid_ask_split(ev["side"], ends))
        self._msg = 0
        self.clock = SimClock(int(self._ts[0]) if self._ts else 0)
        self.latency_ns = int(cfg.latency_ms * 1_000_000)
        self.mirror = L2Book()  # the venue's own copy of the recorded book, for queue positions
        self.model = QueueFillModel(self.mirror, self.instrument, cfg.maker_fee_bps, cfg.taker_fee_bps,
                                    cfg.enforce_post_only)
        self._inflight: deque[tuple[int, OrderAction]] = deque()  # (arrival ns, action)
        self.rows_done = 0
        self.messages_done = 0
        self.bbo_messages = 0
        self.use_top = cfg.use_book_ticker
        self.paced = math.isfinite(speed)
        self.pacer = Pacer(speed, yield_every=1024)
        self.lateness = self.pacer.lateness
        self._steps = 0
        self._stopped = False

    @property
    def rows_total(self) -> int:
        return self._rows_total

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
        tss, n = self._ts, len(self._ends)
        while self._msg < n:
            i = self._msg
            if self.paced:
                await self.pacer.wait_until(tss[i])
            else:  # as fast as possible: only let other tasks (console, progress, signals) run now and then
                self._steps += 1
                if not self._steps & 1023:
                    await asyncio.sleep(0)
            self._msg = i + 1
            out = self._message(i)
            if out is not None:
                return out
        # the recording is over: actions still in flight arrive, then the venue ends
        if self._inflight:
            return self._arrivals(self._inflight[-1][0] + 1)
        return None

    def _message(self, i: int) -> list[Event] | None:
        """Message `i` of the recording: the batch it makes (after the actions that arrived before it), or None
        when it makes none (a best bid/offer update while [replay].use_book_ticker is off, no action arriving)."""
        start = self._starts[i]
        end = self._ends[i]
        ts = self._ts[i]
        self.rows_done += end - start
        self.messages_done += 1
        inflight = self._inflight
        out = self._arrivals(ts) if inflight and inflight[0][0] <= ts else None
        clock = self.clock
        if ts > clock.now_ns():
            clock.advance_to(ts)
        kind = self._kind[i]
        if kind == KIND_BBO:
            self.bbo_messages += 1
            if not self.use_top:
                return out if out else None
            ev = self._top(i, start, end, ts)
        elif kind == KIND_TRADE:
            ev = self._trades(start, end, ts)
        elif kind == KIND_DIFF:
            ev = self._diff(i, start, end, ts)
        elif kind == KIND_SNAP:
            ev = self._snapshot(i, start, end, ts)
        else:
            return out if out is not None else []
        if out:
            out.extend(ev)
            return out
        return ev

    def _arrivals(self, until_ns: int) -> list[Event]:
        model = self.model
        model.out = []
        clock = self.clock
        while self._inflight and self._inflight[0][0] <= until_ns:
            t, a = self._inflight.popleft()
            if t > clock.now_ns():
                clock.advance_to(t)
            if isinstance(a, PlaceOrder):
                model.place(a, t)
            else:
                model.cancel(a, t)
        return model.out

    def _top(self, i: int, start: int, end: int, ts: int) -> list[Event]:
        """A best bid/offer update: the mirror moves its top (L2Book.apply_top), the queue model sees the
        levels it removed or resized (cancels ahead of us advance us; a top through our price fills us)."""
        side, price, qty = self._side, self._price, self._qty
        if end - start == 2 and side[start] > 0 and side[start + 1] < 0:  # the usual bid row, ask row
            bid, ask = start, start + 1
        else:
            bid = ask = -1
            for r in range(start, end):
                if side[r] > 0:
                    bid = r
                elif side[r] < 0:
                    ask = r
            if bid < 0 or ask < 0:
                return []
        bp = price[bid]
        bq = qty[bid]
        ap = price[ask]
        aq = qty[ask]
        seq = self._seq[i]
        ev = BookTop(seq, bp, bq, ap, aq, ts)
        mirror = self.mirror
        model = self.model
        if not model.orders:  # nothing of ours can move: the mirror only
            mirror.set_top(seq, bp, bq, ap, aq, ts)
            return [ev]
        model.out = []
        bids, asks = mirror.bids, mirror.asks
        bl, al = bids.ladder, asks.ladder
        if bl and al and bl[-1] <= bp and al[-1] + ap <= 0:  # (an ask's key is minus its price)
            # the usual update: neither side's best price gets better than the new top's, so no level is removed
            # and only the top's own two prices can change (what was there before: 0 for a new level)
            ob = bids.lots.get(bp, 0)
            oa = asks.lots.get(ap, 0)
            if mirror.set_top(seq, bp, bq, ap, aq, ts):
                # (a level that did not shrink, with no trade there to settle, changes nothing in the queue model)
                if ob and (ob > bq or model.traded_bid):
                    model.on_level(_BUY, bp, ob, bq)
                if oa and (oa > aq or model.traded_ask):
                    model.on_level(_SELL, ap, oa, aq)
                model.on_book_moved(ts)
            out = model.out
            out.append(ev)
            return out
        # the levels at or better than the new top (the top resizes its own and removes the rest), as price and
        # old lots in turn: bids, then asks
        changed_b: list[int] = []
        changed_a: list[int] = []
        if not mirror.stale and seq > mirror.seq and seq > mirror.top_seq:
            lots = bids.lots
            for p in bids.at_or_better(bp):
                changed_b.append(p)
                changed_b.append(lots[p])
            lots = asks.lots
            for p in asks.at_or_better(ap):
                changed_a.append(p)
                changed_a.append(lots[p])
        if mirror.set_top(seq, bp, bq, ap, aq, ts):
            for j in range(0, len(changed_b), 2):
                p = changed_b[j]
                model.on_level(_BUY, p, changed_b[j + 1], bq if p == bp else 0)
            for j in range(0, len(changed_a), 2):
                p = changed_a[j]
                model.on_level(_SELL, p, changed_a[j + 1], aq if p == ap else 0)
            model.on_book_moved(ts)
        out = model.out
        out.append(ev)
        return out

    def _trades(self, start: int, end: int, ts: int) -> list[Event]:
        model = self.model
        model.out = []
        side, price, qty = self._side, self._price, self._qty
        trades = []
        for r in range(start, end):
            p, q, s = price[r], qty[r], side[r]
            model.on_trade(p, q, s, ts)
            trades.append(Trade(float(p), q, _SIDES[s], ts))
        out = model.out
        out.extend(trades)
        return out

    def _rows(self, i: int, start: int, end: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        price, qty = self._price, self._qty
        split = self._split[i]
        if split >= 0:  # its bid rows, then its ask rows: two slices
            return list(zip(price[start:split], qty[start:split])), list(zip(price[split:end], qty[split:end]))
        side = self._side
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for r in range(start, end):
            s = side[r]
            if s > 0:
                bids.append((price[r], qty[r]))
            elif s < 0:
                asks.append((price[r], qty[r]))
        return bids, asks

    def _snapshot(self, i: int, start: int, end: int, ts: int) -> list[Event]:
        model = self.model
        model.out = []
        if self._flags[i] & FLAG_EMPTY:
            bids, asks = [], []
        else:
            bids, asks = self._rows(i, start, end)
        ev = BookSnapshot(self._seq[i], bids, asks, ts)
        self.mirror.apply_snapshot(ev)
        model.clear_traded()
        model.on_book_moved(ts)
        out = model.out
        out.append(ev)
        return out

    def _diff(self, i: int, start: int, end: int, ts: int) -> list[Event]:
        model = self.model
        model.out = []
        bids, asks = self._rows(i, start, end)
        ev = BookDiff(self._seq[i], self._seq2[i], bids, asks, ts)
        mirror = self.mirror
        mb, ma = mirror.bids.lots, mirror.asks.lots
        if not model.orders and not model.traded_bid and not model.traded_ask:
            mirror.apply_diff(ev)  # no order of ours, no trade to set against a level: the mirror only
        else:
            # the queue model sees every row of an applied diff (each one settles the trades at its level);
            # only the levels where we rest can move a queue position
            ours_b, ours_a = model.bid_prices, model.ask_prices
            old_b = {p: mb.get(p, 0) for p, _ in bids if p in ours_b}
            old_a = {p: ma.get(p, 0) for p, _ in asks if p in ours_a}
            if mirror.apply_diff(ev):  # levels behind a newer top are left as they are: compare after
                traded = model.traded_bid
                for p, _ in bids:
                    if old_b and p in old_b:
                        model.on_level(_BUY, p, old_b[p], mb.get(p, 0))
                    elif traded:
                        traded.pop(p, None)
                traded = model.traded_ask
                for p, _ in asks:
                    if old_a and p in old_a:
                        model.on_level(_SELL, p, old_a[p], ma.get(p, 0))
                    elif traded:
                        traded.pop(p, None)
        model.on_book_moved(ts)
        out = model.out
        out.append(ev)
        return out


class ReplayVenue(_ReplayCore, Venue):
    name = "replay"
    wall_clock_feed = False
