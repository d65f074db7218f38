"""The replay venue's queue-position fill model, case by case, with numbers worked by hand."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from flashmm.config import ReplayConfig
from flashmm.core.domain import (
    REJECT_POST_ONLY,
    BookTop,
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    CancelReject,
    Fill,
    Instrument,
    OrderAck,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
)
from flashmm.data.events import KIND_BBO, KIND_DIFF, KIND_SNAP, KIND_TRADE, EventSet, EventWriter
from flashmm.venues.replay import ReplayVenue

INST = Instrument("TEST", "B", "Q", Decimal("0.01"), Decimal("1"))
MS = 1_000_000
B, S = Side.BUY, Side.SELL


def _set(*messages) -> EventSet:
    """messages: (ts_ms, kind, rows, seq, seq2); always starts from the same snapshot at t=0."""
    w = EventWriter()
    w.message(0, KIND_SNAP, [(1, 100, 50), (1, 99, 100), (-1, 101, 40), (-1, 102, 60)], 10, 10)
    for ts, kind, rows, *seqs in messages:
        w.message(ts * MS, kind, rows, *(seqs or [0, 0]))
    return EventSet(w.array(), INST, "test", ["synthetic"])


def _venue(es: EventSet, latency_ms: float = 0.0, **cfg) -> ReplayVenue:
    v = ReplayVenue(es, ReplayConfig(latency_ms=latency_ms, maker_fee_bps=1.0, taker_fee_bps=5.0, **cfg))
    asyncio.run(v.start())
    first = asyncio.run(v.next_batch())
    assert isinstance(first[-1], BookSnapshot)
    return v


def _next(v: ReplayVenue) -> list:
    return asyncio.run(v.next_batch())


def _fills(events) -> list[tuple[int, float, int, bool, bool]]:
    return [(f.client_id, f.price_ticks, f.lots, f.is_maker, f.done) for f in events if isinstance(f, Fill)]


def test_order_joins_the_back_and_trades_at_its_price_eat_the_queue_first_then_fill_it_partially():
    es = _set((1, KIND_TRADE, [(-1, 100, 30)], 1), (2, KIND_TRADE, [(-1, 100, 25)], 2), (3, KIND_TRADE, [(-1, 100, 10)], 3))
    v = _venue(es)
    v.submit([PlaceOrder(1, B, 100, 10)])
    ev = _next(v)  # arrival (ack) then the 30-lot trade: queue 50 -> 20, no fill
    assert any(isinstance(e, OrderAck) for e in ev) and _fills(ev) == []
    assert v.model.orders[1].queue_ahead == 20
    ev = _next(v)  # 25 lots: 20 ahead, then 5 fill us
    assert _fills(ev) == [(1, 100.0, 5, True, False)]
    ev = _next(v)  # 10 lots: our last 5
    assert _fills(ev) == [(1, 100.0, 5, True, True)]
    assert v.model.position_lots == 10


def test_cancellations_ahead_advance_us_in_proportion():
    # join behind 50; 30 join behind us (level 80); the level falls to 64 with no trade: 16 cancelled,
    # 16 * 50/80 = 10 of them ahead of us -> 40 ahead
    es = _set((1, KIND_DIFF, [(1, 100, 80)], 11, 11), (2, KIND_DIFF, [(1, 100, 64)], 12, 12))
    v = _venue(es)
    v.submit([PlaceOrder(1, B, 100, 10)])
    _next(v)
    assert v.model.orders[1].queue_ahead == 50
    _next(v)
    assert v.model.orders[1].queue_ahead == 40


def test_traded_size_is_not_counted_as_cancelled():
    # a 30-lot sell at 100, then the diff shows the level at 20 (50 - 30): nothing was cancelled
    es = _set((1, KIND_TRADE, [(-1, 100, 30)], 1), (2, KIND_DIFF, [(1, 100, 20)], 11, 11))
    v = _venue(es)
    v.submit([PlaceOrder(1, B, 100, 10)])
    _next(v)
    _next(v)
    assert v.model.orders[1].queue_ahead == 20


def test_a_trade_through_our_price_fills_the_rest_at_our_price():
    es = _set((1, KIND_TRADE, [(1, 102, 5)], 1))  # a buy at 102 went through our ask at 101
    v = _venue(es)
    v.submit([PlaceOrder(7, S, 101, 10)])
    ev = _next(v)
    assert _fills(ev) == [(7, 101.0, 10, True, True)]
    assert v.model.position_lots == -10


def test_the_book_moving_through_us_fills_us():
    # asks drop to 100 (our bid): the market went through us
    es = _set((1, KIND_DIFF, [(1, 100, 0), (-1, 100, 15), (-1, 101, 0)], 11, 11))
    v = _venue(es)
    v.submit([PlaceOrder(3, B, 100, 10)])
    ev = _next(v)
    assert _fills(ev) == [(3, 100.0, 10, True, True)]


def test_a_marketable_limit_takes_the_book_then_rests():
    w = EventWriter()
    w.message(0, KIND_SNAP, [(1, 100, 50), (-1, 101, 4), (-1, 102, 10)], 10, 10)
    w.message(1 * MS, KIND_BBO, [(1, 100, 50), (-1, 101, 4)], 10)
    w.message(2 * MS, KIND_DIFF, [(1, 100, 50)], 11, 11)
    v = _venue(EventSet(w.array(), INST, "test", ["synthetic"]))
    v.submit([PlaceOrder(1, B, 101, 10)])
    ev = _next(v)  # the BBO message is skipped, but the arrival is delivered at once
    # 4 @ 101 taken (taker, fee 5 bps of 4 * 1.01 = 0.00202), 6 rest at 101 with nobody ahead
    assert _fills(ev) == [(1, 101.0, 4, False, False)]
    fee = next(e.fee_quote for e in ev if isinstance(e, Fill))
    assert fee == pytest.approx(4 * 1.01 * 5 / 1e4)
    assert v.model.orders[1].remaining == 6 and v.model.orders[1].queue_ahead == 0


def test_latency_delays_arrival_so_an_earlier_trade_cannot_fill_us():
    es = _set((5, KIND_TRADE, [(-1, 100, 60)], 1), (100, KIND_TRADE, [(-1, 100, 60)], 2))
    v = _venue(es, latency_ms=50)
    v.submit([PlaceOrder(1, B, 100, 10)])  # decided at t=0, arrives at 50 ms
    ev = _next(v)  # the 5 ms trade happens before we arrive
    assert _fills(ev) == [] and not any(isinstance(e, OrderAck) for e in ev)
    ev = _next(v)  # arrival at 50 ms (queue = 50), then the 100 ms trade of 60: 10 fill us
    assert any(isinstance(e, OrderAck) for e in ev)
    assert _fills(ev) == [(1, 100.0, 10, True, True)]


def test_a_cancel_that_arrives_first_prevents_the_fill_and_a_late_one_is_rejected():
    es = _set((1, KIND_DIFF, [(1, 99, 100)], 11, 11), (2, KIND_TRADE, [(-1, 100, 100)], 1),
              (3, KIND_DIFF, [(1, 99, 100)], 12, 12))
    v = _venue(es)
    v.submit([PlaceOrder(1, B, 100, 10), PlaceOrder(2, B, 100, 10)])
    _next(v)
    v.submit([CancelOrder(1)])
    ev = _next(v)
    assert any(isinstance(e, CancelAck) and e.client_id == 1 for e in ev)
    assert [f[0] for f in _fills(ev)] == [2]  # only order 2 was still there
    v.submit([CancelOrder(2)])
    ev = _next(v)
    assert any(isinstance(e, CancelReject) and e.client_id == 2 for e in ev)


def test_a_market_order_walks_the_book_to_its_worst_price_and_the_rest_is_cancelled():
    es = _set((1, KIND_DIFF, [(1, 99, 100)], 11, 11))
    v = _venue(es)
    v.submit([PlaceOrder(9, B, 101, 100, OrderType.MARKET)])  # worst 101: only the 40 at 101
    ev = _next(v)
    assert _fills(ev) == [(9, 101.0, 40, False, False)]
    assert any(isinstance(e, CancelAck) and e.client_id == 9 for e in ev)
    assert 9 not in v.model.orders


def test_orders_are_rejected_while_the_recorded_book_is_not_synchronised():
    es = _set((1, KIND_DIFF, [(1, 99, 10)], 15, 15), (2, KIND_DIFF, [(1, 99, 10)], 16, 16))  # gap: 11..14 missing
    v = _venue(es)
    ev = _next(v)
    assert any(isinstance(e, BookDiff) for e in ev) and v.mirror.stale
    v.submit([PlaceOrder(1, B, 100, 10)])
    ev = _next(v)
    assert [e.reason for e in ev if isinstance(e, OrderReject)] == ["market data unavailable (book not synchronised)"]


def test_trades_are_delivered_with_their_aggressor_and_bbo_rows_reach_the_engine_as_book_tops():
    w = EventWriter()
    w.message(0, KIND_SNAP, [(1, 100, 50), (-1, 101, 40)], 10, 10)
    w.message(1 * MS, KIND_BBO, [(1, 100, 45), (-1, 101, 40)], 11)
    w.message(2 * MS, KIND_TRADE, [(1, 101, 3), (0, 101, 2)], 5)
    v = _venue(EventSet(w.array(), INST, "test", ["synthetic"]))
    ev = _next(v)
    assert [(e.seq, e.bid_ticks, e.bid_lots) for e in ev if isinstance(e, BookTop)] == [(11, 100, 45)]
    assert v.mirror.bids[100] == 45  # the venue's own book moved with it
    ev = _next(v)
    assert [(e.price_ticks, e.lots, e.aggressor) for e in ev if isinstance(e, Trade)] == [(101.0, 3, B), (101.0, 2, None)]
    assert v.bbo_messages == 1
    assert asyncio.run(v.next_batch()) is None
    assert v.rows_done == v.rows_total


def test_a_post_only_order_that_would_cross_on_arrival_is_rejected_and_never_fills_as_a_taker():
    # decided against a book at 100/101; by arrival (latency 5 ms) a top moved the ask down to 100
    es = _set((4, KIND_BBO, [(1, 99, 10), (-1, 100, 7)], 11), (6, KIND_TRADE, [(-1, 99, 1)], 1))
    v = _venue(es, latency_ms=5.0)
    v.submit([PlaceOrder(1, B, 100, 5, post_only=True), PlaceOrder(2, S, 101, 5, post_only=True)])
    ev = _next(v)  # the top at 4 ms
    assert v.mirror.asks.peekitem(0) == (100, 7)
    ev = _next(v)  # arrivals at 5 ms, then the trade at 6 ms
    rejects = [e for e in ev if isinstance(e, OrderReject)]
    assert [(r.client_id, r.code) for r in rejects] == [(1, REJECT_POST_ONLY)]
    assert "would cross" in rejects[0].reason
    assert not _fills(ev) and 1 not in v.model.orders and 2 in v.model.orders
    assert v.model.post_only_rejects == 1 and v.model.position_lots == 0


def test_without_post_only_enforcement_a_crossing_quote_takes_and_pays_the_taker_fee():
    """[replay].enforce_post_only = false: the replay before issue 12 (for before/after figures only)."""
    es = _set((4, KIND_BBO, [(1, 99, 10), (-1, 100, 7)], 11), (6, KIND_TRADE, [(-1, 99, 1)], 1))
    v = _venue(es, latency_ms=5.0, enforce_post_only=False)
    v.submit([PlaceOrder(1, B, 100, 5, post_only=True)])
    _next(v)
    ev = _next(v)
    fills = [f for f in ev if isinstance(f, Fill)]
    assert [(f.client_id, f.price_ticks, f.lots, f.is_maker) for f in fills] == [(1, 100.0, 5, False)]
    assert fills[0].fee_quote == pytest.approx(100 * 0.01 * 5 * 5.0 / 1e4)  # taker 5 bps of notional
    assert not [e for e in ev if isinstance(e, OrderReject)] and v.model.post_only_rejects == 0


def test_a_flatten_market_order_still_crosses_and_pays_the_taker_fee():
    es = _set((4, KIND_BBO, [(1, 100, 50), (-1, 101, 40)], 11), (6, KIND_TRADE, [(-1, 99, 1)], 1))
    v = _venue(es, latency_ms=1.0)
    v.submit([PlaceOrder(3, S, 99, 20, OrderType.MARKET)])
    ev = _next(v)
    fills = [f for f in ev if isinstance(f, Fill)]
    assert [(f.client_id, f.price_ticks, f.lots, f.is_maker) for f in fills] == [(3, 100.0, 20, False)]
    assert fills[0].fee_quote == pytest.approx(100 * 0.01 * 20 * 5.0 / 1e4)  # taker 5 bps of notional


def test_a_book_top_through_our_resting_price_fills_us_and_cancels_ahead_advance_us():
    es = _set((2, KIND_BBO, [(1, 100, 30), (-1, 101, 40)], 11),  # 20 lots cancelled at 100: 20 of 50 ahead go
              (3, KIND_BBO, [(1, 98, 5), (-1, 99, 4)], 12))     # the market drops through our bid: filled
    v = _venue(es)
    v.submit([PlaceOrder(1, B, 100, 5, post_only=True)])
    _next(v)  # arrival at 0 (no latency) then the first top
    assert v.model.orders[1].queue_ahead == 30
    ev = _next(v)
    assert _fills(ev) == [(1, 100.0, 5, True, True)]
