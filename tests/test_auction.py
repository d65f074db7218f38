"""The x/dex frequent batch auction (../shared/SEI.md, "Matching"): BatchAuctionBook on hand-made books
with hand-computed prices, then SimMarket's block semantics, determinism and its book feed."""

from __future__ import annotations

import pytest

from flashmm.config import SimConfig, default_instrument
from flashmm.core.book import L2Book
from flashmm.core.domain import (
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    CancelReject,
    Fill,
    OrderAck,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
)
from flashmm.venues.sim import OTHERS, BatchAuctionBook, MatchFill, SimMarket, _Market, _Order

B, S = Side.BUY, Side.SELL


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _book(bids=(), asks=()) -> tuple[BatchAuctionBook, dict[int, _Order]]:
    """bids/asks: (price, lots) in arrival order. Returns the book and its orders by id (1, 2, ...)."""
    book = BatchAuctionBook()
    ids = _Ids()
    orders = {}
    for side, entries in ((B, bids), (S, asks)):
        for price, lots in entries:
            o = _Order(ids(), OTHERS, side, price, lots, -1)
            book.add_limit(o)
            orders[o.order_id] = o
    return book, orders


def _mkt(side: Side, lots: int, limit: int = 0, owner: int = OTHERS, cid: int = -1) -> _Market:
    return _Market(owner, side, limit, lots, cid)


def _fills(fills: list[MatchFill]) -> list[tuple[int, float, int, bool]]:
    return [(f.order_id, f.price, f.lots, f.done) for f in fills]


# ---- BatchAuctionBook ----------------------------------------------------------------------------------


def test_fifo_within_a_level_small_taker_fills_only_the_first_maker():
    book, orders = _book(asks=[(100, 5), (100, 5)])  # ids 1 then 2
    makers, takers = book.match_markets([_mkt(B, 3)])
    assert _fills(makers) == [(1, 100.0, 3, False)]
    assert all(f.is_maker and f.side is S for f in makers)
    assert orders[1].lots == 2 and orders[2].lots == 5
    assert book.level_lots[S] == {100: 7}
    assert [(q, px) for _, q, px in takers] == [(3, 100.0)]


def test_fifo_within_a_level_larger_taker_spills_to_the_second_in_arrival_order():
    book, orders = _book(asks=[(100, 5), (100, 5)])
    makers, _ = book.match_markets([_mkt(B, 8)])
    assert _fills(makers) == [(1, 100.0, 5, True), (2, 100.0, 3, False)]
    assert 1 not in book.orders and orders[2].lots == 2
    assert book.level_lots[S] == {100: 2}


def test_market_buy_walks_asks_best_first_and_makers_fill_at_their_own_level():
    book, _ = _book(asks=[(103, 10), (100, 5), (101, 5)])  # ids 1 (103), 2 (100), 3 (101)
    makers, takers = book.match_markets([_mkt(B, 12)])
    assert _fills(makers) == [(2, 100.0, 5, True), (3, 101.0, 5, True), (1, 103.0, 2, False)]
    # taker clearing price: (5*100 + 5*101 + 2*103) / 12 = 1211 / 12
    (_, q, px), = takers
    assert q == 12 and px == pytest.approx(1211 / 12)
    assert book.best(S) == 103 and book.level_lots[S] == {103: 8}


def test_market_sell_walks_bids_best_first():
    book, _ = _book(bids=[(98, 4), (99, 3), (95, 10)])
    makers, takers = book.match_markets([_mkt(S, 5)])
    assert [(f.price, f.lots) for f in makers] == [(99.0, 3), (98.0, 2)]
    # (3*99 + 2*98) / 5 = 493 / 5 = 98.6
    assert takers[0][1] == 5 and takers[0][2] == pytest.approx(98.6)


def test_all_takers_of_a_side_in_the_block_get_one_clearing_price_the_vwap():
    book, _ = _book(bids=[(99, 10)], asks=[(100, 5), (101, 5), (103, 10)])
    a, b, c = _mkt(B, 4), _mkt(B, 8), _mkt(S, 6)
    makers, takers = book.match_markets([a, b, c])
    # a: 4@100; b: 1@100, 5@101, 2@103; buy-side VWAP = (4*100 + 1*100 + 5*101 + 2*103) / 12 = 1211/12
    assert [(f.price, f.lots) for f in makers if f.side is S] == [(100.0, 4), (100.0, 1), (101.0, 5), (103.0, 2)]
    by_order = {id(m): (q, px) for m, q, px in takers}
    assert by_order[id(a)] == (4, pytest.approx(1211 / 12))
    assert by_order[id(b)] == (8, pytest.approx(1211 / 12))
    # the sell side has its own clearing price: 6@99
    assert by_order[id(c)] == (6, 99.0)


def test_market_order_limit_is_the_worst_acceptable_price_and_zero_means_none():
    asks = [(100, 5), (101, 5), (103, 10)]
    book, _ = _book(asks=asks)
    _, takers = book.match_markets([_mkt(B, 20, limit=101)])
    (_, q, px), = takers
    assert q == 10 and px == pytest.approx(100.5)  # (5*100 + 5*101) / 10; 103 is beyond the limit
    assert book.level_lots[S] == {103: 10}

    book, _ = _book(asks=asks)
    _, takers = book.match_markets([_mkt(B, 20, limit=0)])
    (_, q, px), = takers
    assert q == 20 and px == pytest.approx(2035 / 20)  # (500 + 505 + 1030) / 20 = 101.75
    assert book.best(S) is None

    book, _ = _book(bids=[(99, 5), (98, 5), (95, 10)])
    _, takers = book.match_markets([_mkt(S, 20, limit=98)])
    (_, q, px), = takers
    assert q == 10 and px == pytest.approx(98.5)
    assert book.best(B) == 95


def test_market_order_with_limit_better_than_the_book_does_not_fill():
    book, _ = _book(asks=[(100, 5)])
    makers, takers = book.match_markets([_mkt(B, 3, limit=99)])
    assert makers == [] and takers[0][1] == 0 and takers[0][2] == 0.0
    assert book.level_lots[S] == {100: 5}


def test_crossed_limits_settle_at_the_midpoint_for_the_smaller_quantity():
    book, _ = _book(bids=[(102, 5)], asks=[(100, 3)])  # bid id 1, ask id 2
    (bid_fill, ask_fill), = book.cross_limits()
    assert (bid_fill.order_id, bid_fill.side, bid_fill.price, bid_fill.lots, bid_fill.done) == (1, B, 101.0, 3, False)
    assert (ask_fill.order_id, ask_fill.side, ask_fill.price, ask_fill.lots, ask_fill.done) == (2, S, 101.0, 3, True)
    assert book.level_lots[B] == {102: 2} and book.level_lots[S] == {}
    assert book.cross_limits() == []  # nothing left to cross


def test_crossed_limits_half_tick_midpoint():
    book, _ = _book(bids=[(101, 4)], asks=[(100, 4)])
    (bid_fill, ask_fill), = book.cross_limits()
    assert bid_fill.price == 100.5 and ask_fill.price == 100.5  # (101 + 100) / 2
    assert bid_fill.lots == ask_fill.lots == 4 and bid_fill.done and ask_fill.done
    assert book.best(B) is None and book.best(S) is None


def test_crossing_repeats_while_crossed_fifo():
    # bids: id1 102x5, id2 102x4 (later); asks: id3 100x3, id4 101x10
    book, orders = _book(bids=[(102, 5), (102, 4)], asks=[(100, 3), (101, 10)])
    pairs = book.cross_limits()
    got = [(b.order_id, a.order_id, b.price, b.lots) for b, a in pairs]
    assert got == [
        (1, 3, 101.0, 3),  # (102 + 100) / 2
        (1, 4, 101.5, 2),  # id1's remaining 2 against the next ask level: (102 + 101) / 2
        (2, 4, 101.5, 4),  # then id2, after id1 in arrival order
    ]
    assert book.best(B) is None
    assert orders[4].lots == 4 and book.level_lots[S] == {101: 4}


def test_cancel_removes_the_order_and_its_level_lots():
    book, _ = _book(bids=[(99, 5), (99, 7), (98, 1)])
    assert book.cancel(1).lots == 5
    assert book.level_lots[B] == {99: 7, 98: 1}
    assert [o.order_id for o in book.levels[B][99]] == [2]
    assert book.cancel(2) is not None
    assert 99 not in book.levels[B] and book.level_lots[B] == {98: 1}
    assert book.best(B) == 98
    assert book.cancel(2) is None  # already gone
    assert book.cancel(12345) is None


def test_take_diff_reports_absolute_sizes_of_changed_levels_only():
    book, _ = _book(bids=[(99, 5), (98, 1)], asks=[(101, 2), (102, 3)])
    published = {B: {}, S: {}}
    bids, asks = book.take_diff(published)
    assert bids == [(98, 1), (99, 5)] and asks == [(101, 2), (102, 3)]
    assert book.take_diff(published) == ([], [])  # nothing touched since

    book.add_limit(_Order(10, OTHERS, B, 99, 4, -1))  # 99: 5 -> 9
    book.match_markets([_mkt(B, 2)])  # ask 101 removed
    tmp = _Order(11, OTHERS, S, 105, 6, -1)
    book.add_limit(tmp)
    book.cancel(11)  # touched but unchanged since the last publication
    bids, asks = book.take_diff(published)
    assert bids == [(99, 9)]  # absolute size, not +4
    assert asks == [(101, 0)]  # a removed level is reported with size 0; 105 is not reported
    assert published == {B: {98: 1, 99: 9}, S: {102: 3}}


# ---- SimMarket ---------------------------------------------------------------------------------------


def _market(seed: int = 11) -> SimMarket:
    return SimMarket(SimConfig(), default_instrument(), seed)


def _started(seed: int = 11) -> tuple[SimMarket, BookSnapshot]:
    m = _market(seed)
    (snap,) = m.step()
    assert isinstance(snap, BookSnapshot)
    return m, snap


@pytest.mark.parametrize("preset", ["thin", "deep"])
def test_same_seed_gives_identical_event_streams_and_another_seed_differs(preset):
    runs = []
    for seed in (5, 5, 6):
        m = SimMarket(SimConfig(preset=preset), default_instrument(), seed)
        runs.append([m.step() for _ in range(1000)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    # not an empty run compared with itself: the book changed and trades printed
    assert any(isinstance(e, Trade) for batch in runs[0] for e in batch)
    assert sum(1 for batch in runs[0] for e in batch if isinstance(e, BookDiff) and (e.bids or e.asks)) > 50


def test_our_limit_order_is_acknowledged_in_the_next_step():
    m, _ = _started()
    price = m.book.best(B) - 50  # far from the touch: it rests
    m.submit([PlaceOrder(1, B, price, 10)])
    assert m.account_state().open_orders == {}  # nothing happens before the block
    events = m.step()
    acks = [e for e in events if isinstance(e, OrderAck)]
    assert [a.client_id for a in acks] == [1]
    assert acks[0].venue_order_id in m.book.orders
    state = m.account_state()
    assert state.open_orders[1].price_ticks == price and state.open_orders[1].remaining_lots == 10
    assert state.open_orders[1].side is B
    assert state.position_lots == 0


def test_cancellations_are_applied_before_new_orders_in_the_block():
    m, _ = _started()
    price = m.book.best(B)
    m.submit([PlaceOrder(1, B, price, 10)])  # joins the best bid
    m.step()
    assert 1 in m.account_state().open_orders
    # In one transaction: cancel it, and sweep every bid down to its price with our own market sell.
    # Were the cancel applied after matching, order 1 would be filled by the sweep.
    m.submit([PlaceOrder(2, S, price, 10**9, OrderType.MARKET), CancelOrder(1)])
    events = m.step()
    assert CancelAck(1, m.clock.now_ns()) in events
    assert not [e for e in events if isinstance(e, Fill) and e.client_id == 1]
    sweep = [e for e in events if isinstance(e, Fill) and e.client_id == 2]
    assert sweep and sweep[0].lots > 0  # the sweep did happen at our order's price level
    assert m.book.best(B) is None or m.book.best(B) < price  # the level our order sat on was swept
    for _ in range(30):
        events = m.step()
        assert not [e for e in events if isinstance(e, Fill) and e.client_id == 1]
    assert 1 not in m.account_state().open_orders


def test_zero_lot_order_is_rejected_with_a_quantity_reason():
    m, _ = _started()
    m.submit([PlaceOrder(7, B, m.book.best(B), 0)])
    events = m.step()
    rejects = [e for e in events if isinstance(e, OrderReject)]
    assert [r.client_id for r in rejects] == [7]
    assert "quantity" in rejects[0].reason
    assert not [e for e in events if isinstance(e, OrderAck)]
    assert 7 not in m.account_state().open_orders


def test_cancelling_an_unknown_client_id_is_rejected():
    m, _ = _started()
    m.submit([CancelOrder(999)])
    events = m.step()
    rejects = [e for e in events if isinstance(e, CancelReject)]
    assert [r.client_id for r in rejects] == [999]
    assert not [e for e in events if isinstance(e, CancelAck)]


def test_our_market_order_fills_as_taker_and_moves_the_position():
    m, _ = _started()
    worst = m.book.best(S) + 5
    m.submit([PlaceOrder(3, B, worst, 10, OrderType.MARKET)])
    events = m.step()
    fills = [e for e in events if isinstance(e, Fill) and e.client_id == 3]
    assert len(fills) == 1
    f = fills[0]
    assert f.side is B and f.lots == 10 and not f.is_maker and f.done
    assert m.account_state().position_lots == 10
    assert 3 not in m.account_state().open_orders  # a market order never rests

    m.submit([PlaceOrder(4, S, max(1, m.book.best(B) - 5), 25, OrderType.MARKET)])
    m.step()
    assert m.account_state().position_lots == 10 - 25


@pytest.mark.parametrize("preset", ["thin", "deep"])
def test_every_block_publishes_one_contiguous_diff_and_the_engine_book_tracks_the_sim(preset):
    m = SimMarket(SimConfig(preset=preset), default_instrument(), 3)
    book = L2Book()
    (snap,) = m.step()
    assert book.apply_snapshot(snap)
    prev = snap.seq
    for _ in range(500):
        events = m.step()
        diffs = [e for e in events if isinstance(e, BookDiff)]
        assert len(diffs) == 1
        d = diffs[0]
        assert d.first_seq == d.last_seq == prev + 1
        prev = d.last_seq
        assert book.apply_diff(d)
        assert not book.stale
        assert book.best_bid()[0] == m.book.best(B) and book.best_ask()[0] == m.book.best(S)
    assert dict(book.bids) == m.book.level_lots[B]
    assert dict(book.asks) == m.book.level_lots[S]
    assert not book.rejects
