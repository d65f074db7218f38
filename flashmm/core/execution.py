"""Order manager: desired quotes -> place/cancel actions against live orders, with client order ids,
a lifecycle state machine, a placement rate limit, and reconciliation with the venue's record.

Lifecycle: PENDING (sent) -> OPEN (acknowledged) -> PARTIALLY_FILLED -> FILLED | CANCELLED;
PENDING -> REJECTED. A cancel request marks the order `cancel_requested` until the venue confirms.
x/dex has no replace: a changed quote is a cancel and a place in the same transaction.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter, itemgetter

from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import AccountState, CancelOrder, OrderAction, OrderType, PlaceOrder, Side
from flashmm.core.risk import TokenBucket
from flashmm.core.strategy import QuoteLevel

_LIMIT, _MARKET = OrderType.LIMIT, OrderType.MARKET  # (an enum member read through its class costs ~40 ns)
_BY_LEVEL, _BY_SECOND = attrgetter("level"), itemgetter(1)  # sort keys (no closure: sync is a C method, execution.pxd)


class OrderState(enum.StrEnum):
    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})
_ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    OrderState.PENDING: frozenset({OrderState.OPEN, OrderState.REJECTED, OrderState.PARTIALLY_FILLED,
                                   OrderState.FILLED, OrderState.CANCELLED}),
    OrderState.OPEN: frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED}),
    OrderState.PARTIALLY_FILLED: frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED}),
}


class InvalidTransition(Exception):
    pass


@dataclass(slots=True)
class ManagedOrder:
    client_id: int
    side: Side
    price_ticks: int
    lots: int
    level: int  # quote level; -1 for flatten orders
    order_type: OrderType
    created_ns: int
    state: OrderState = OrderState.PENDING
    filled_lots: int = 0
    venue_order_id: int = -1
    cancel_requested: bool = False
    reject_reason: str = ""
    queue_ahead: int = -1  # estimated lots ahead of us at our price (-1 = unknown)

    @property
    def remaining(self) -> int:
        return self.lots - self.filled_lots

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL

    def transition(self, new: OrderState) -> None:
        if new not in _ALLOWED.get(self.state, frozenset()):
            raise InvalidTransition(f"order {self.client_id}: {self.state} -> {new}")
        self.state = new


@dataclass(frozen=True, slots=True)
class OrderView:
    client_id: int
    side: Side
    level: int
    price_ticks: int
    lots: int
    filled_lots: int
    state: str
    age_ns: int
    cancel_requested: bool
    queue_ahead: int  # estimate from the L2 book; -1 = unknown


class OrderManager:
    def __init__(self, refresh_tolerance_bps: float, refresh_tolerance_size_pct: float, order_refresh_time_s: float,
                 max_orders_per_s: float, order_burst: int, client_id_start: int = 1, post_only: bool = True) -> None:
        self.tol_bps = refresh_tolerance_bps
        self._bps_per_tick = 0.0
        self._tol = (0.0, 0.0)  # (tight, loose) ticks of the current sync
        self.tol_size = refresh_tolerance_size_pct / 100.0
        self.refresh_ns = int(order_refresh_time_s * NS_PER_S)
        self.bucket = TokenBucket(max_orders_per_s, order_burst)
        self.orders: dict[int, ManagedOrder] = {}  # live orders only
        self.done: list[ManagedOrder] = []  # terminal orders, most recent last (bounded)
        self.next_client_id = client_id_start
        self.counts: Counter[str] = Counter()
        self.post_only = post_only  # quotes go out post-only; marketable orders (flatten) never are

    # ---- desired -> actions --------------------------------------------------------------------------
    def sync(self, desired: list[QuoteLevel], now_ns: int, room: dict[Side, int] | None = None,
             bps_per_tick: float = 0.0, tolerance_ticks: tuple[float, float] = (0.0, 0.0)) -> list[OrderAction]:
        """Cancel what no longer matches, place what is missing; cancels come first in the list.

        A resting order is kept while its price is within tolerance of its target, asymmetrically
        (`tolerance_ticks` = (tight, loose), each at least [strategy].refresh_tolerance_bps): an order with
        less edge than its target (a bid above it, an ask below it: the market or the fair value moved
        toward it) is replaced beyond `tight`; one with more edge (further from the fair value, less likely
        to fill, never worse) is kept up to `loose`. Quotes follow adverse moves at once and are not replaced
        for noise.

        `room` caps the lots that may rest per side: kept orders, orders being cancelled now (they can
        still fill until the venue confirms) and new orders. An order kept for being within the size
        tolerance may be larger than its target, so the cap is enforced here, not trusted from the
        proposal."""
        want = {(q.side, q.level): q for q in desired}
        self._bps_per_tick = bps_per_tick
        floor = self.tol_bps / bps_per_tick if bps_per_tick > 0 else 0.0
        self._tol = (max(floor, tolerance_ticks[0]), max(floor, tolerance_ticks[1]))
        left = dict(room) if room is not None else None
        cancels: list[OrderAction] = []
        keep: set[tuple[Side, int]] = set()
        for o in sorted(self.orders.values(), key=_BY_LEVEL):
            if o.cancel_requested or o.level < 0:
                continue
            q = want.get((o.side, o.level))
            if (q is not None and (o.side, o.level) not in keep and self._close_enough(o, q, now_ns)
                    and (left is None or o.remaining <= left[o.side])):
                keep.add((o.side, o.level))
                if left is not None:
                    left[o.side] -= o.remaining
                continue
            o.cancel_requested = True
            cancels.append(CancelOrder(o.client_id))
            if left is not None:
                # it can still fill until the venue confirms the cancel (a trade may beat the cancel there)
                left[o.side] -= o.remaining
        places: list[OrderAction] = []
        for key in sorted(want, key=_BY_SECOND):
            if key in keep:
                continue
            q = want[key]
            lots = q.lots if left is None else min(q.lots, left[q.side])
            if lots <= 0:
                continue
            if not self.bucket.take(now_ns):
                self.counts["rate_limited"] += 1
                continue
            if left is not None:
                left[q.side] -= lots
            places.append(self._new(q.side, q.price_ticks, lots, q.level, _LIMIT, now_ns))
        self.counts["cancels_sent"] += len(cancels)
        return cancels + places

    def _close_enough(self, o: ManagedOrder, q: QuoteLevel, now_ns: int) -> bool:
        if o.price_ticks != q.price_ticks:
            less_edge = (o.price_ticks - q.price_ticks) * int(o.side)  # > 0: a bid above / an ask below target
            tight, loose = self._tol
            if less_edge > tight + 1e-9 or -less_edge > loose + 1e-9:
                return False
        if abs(o.remaining - q.lots) > self.tol_size * q.lots:
            return False
        return now_ns - o.created_ns < self.refresh_ns

    def cancel_all(self) -> list[OrderAction]:
        out: list[OrderAction] = []
        for o in self.orders.values():
            if not o.cancel_requested and o.order_type is _LIMIT:
                o.cancel_requested = True
                out.append(CancelOrder(o.client_id))
        self.counts["cancels_sent"] += len(out)
        return out

    def market_order(self, side: Side, lots: int, worst_price_ticks: int, now_ns: int) -> PlaceOrder:
        """A marketable order (flatten): not rate limited, since it reduces risk."""
        return self._new(side, worst_price_ticks, lots, -1, _MARKET, now_ns)

    def _new(self, side: Side, price: int, lots: int, level: int, otype: OrderType, now_ns: int) -> PlaceOrder:
        cid = self.next_client_id
        self.next_client_id += 1
        self.orders[cid] = ManagedOrder(cid, side, price, lots, level, otype, now_ns)
        self.counts["orders_placed"] += 1
        return PlaceOrder(cid, side, price, lots, otype, self.post_only and otype is _LIMIT)

    # ---- venue events -------------------------------------------------------------------------------
    def _get(self, client_id: int, what: str) -> ManagedOrder | None:
        o = self.orders.get(client_id)
        if o is None:
            self.counts[f"unknown_{what}"] += 1
        return o

    def _finish(self, o: ManagedOrder, state: OrderState) -> None:
        o.transition(state)
        del self.orders[o.client_id]
        self.counts[f"orders_{state.value}"] += 1
        self.done.append(o)
        if len(self.done) > 1000:
            del self.done[:500]

    def on_ack(self, client_id: int, venue_order_id: int) -> None:
        o = self._get(client_id, "ack")
        if o is None:
            return
        o.venue_order_id = venue_order_id
        if o.state is OrderState.PENDING:
            o.transition(OrderState.OPEN)
        self.counts["acks"] += 1

    def on_reject(self, client_id: int, reason: str) -> None:
        o = self._get(client_id, "reject")
        if o is None:
            return
        if o.state is not OrderState.PENDING:  # the venue acked it before: a contradiction, left to reconcile
            self.counts["reject_after_ack"] += 1
            return
        o.reject_reason = reason
        self._finish(o, OrderState.REJECTED)

    def on_cancel_ack(self, client_id: int) -> None:
        o = self._get(client_id, "cancel_ack")
        if o is None:
            return
        self._finish(o, OrderState.CANCELLED)

    def on_cancel_reject(self, client_id: int, reason: str) -> None:
        # the order is gone from the venue (filled in the same block) or unknown: the fill, if any,
        # arrives as its own event; a live order here is left for reconciliation to settle
        o = self.orders.get(client_id)
        self.counts["cancel_rejects"] += 1
        if o is not None and o.remaining > 0:
            o.cancel_requested = False

    def on_fill(self, client_id: int, lots: int, done: bool) -> ManagedOrder | None:
        o = self._get(client_id, "fill")
        if o is None:
            return None
        o.filled_lots += lots
        if o.filled_lots > o.lots:
            self.counts["overfill"] += 1
        if done or o.remaining <= 0:
            self._finish(o, OrderState.FILLED)
        else:
            o.transition(OrderState.PARTIALLY_FILLED)
        self.counts["fills"] += 1
        return o

    # ---- reconciliation ---------------------------------------------------------------------------------
    def reconcile(self, venue: AccountState) -> tuple[list[str], list[OrderAction]]:
        """Compare our live orders with the venue's record; report every mismatch.

        An order we think is live but the venue does not have (and that is not merely unacknowledged)
        is closed as cancelled; an order the venue has that we do not know is reported and cancelled."""
        problems: list[str] = []
        actions: list[OrderAction] = []
        for cid, o in list(self.orders.items()):
            v = venue.open_orders.get(cid)
            if v is None and o.state is not OrderState.PENDING and o.order_type is _LIMIT:
                problems.append(f"order {cid} live here, absent at venue: closed as cancelled")
                self._finish(o, OrderState.CANCELLED)
            elif v is not None and v.remaining_lots != o.remaining:
                problems.append(f"order {cid} remaining {o.remaining} here, {v.remaining_lots} at venue")
        for cid in venue.open_orders:
            if cid not in self.orders:
                problems.append(f"order {cid} open at venue, unknown here: cancelling")
                actions.append(CancelOrder(cid))
        self.counts["reconcile_mismatches"] += len(problems)
        return problems, actions

    # ---- views ----------------------------------------------------------------------------------------
    def resting(self, side: Side) -> list[ManagedOrder]:
        return [o for o in self.orders.values() if o.side is side and o.order_type is _LIMIT]

    def locked_lots(self, side: Side) -> int:
        """Lots that could still fill on `side` from orders awaiting a cancel confirmation."""
        total = 0
        for o in self.orders.values():
            if o.cancel_requested and o.side is side:
                total += o.lots - o.filled_lots  # (o.remaining, without a property call per order)
        return total

    def views(self, now_ns: int) -> tuple[OrderView, ...]:
        return tuple(
            OrderView(o.client_id, o.side, o.level, o.price_ticks, o.lots, o.filled_lots, o.state.value,
                      now_ns - o.created_ns, o.cancel_requested, o.queue_ahead)
            for o in sorted(self.orders.values(), key=lambda x: (-int(x.side), x.level))
        )
