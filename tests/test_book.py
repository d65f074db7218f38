"""L2Book: snapshot + diff application, sequence-gap detection, rejections counted by reason, and the
queries the strategy reads (best prices, mid, spread, top levels, depth), all checked on hand-made books."""

from __future__ import annotations

from flashmm.core.book import L2Book
from flashmm.core.domain import BookDiff, BookSnapshot, BookTop


def _book() -> L2Book:
    """bids 100x5, 99x7, 97x2; asks 102x3, 103x4, 106x9; seq 10."""
    book = L2Book()
    assert book.apply_snapshot(BookSnapshot(10, [(99, 7), (100, 5), (97, 2)], [(106, 9), (102, 3), (103, 4)], 1_000))
    return book


def _levels(book: L2Book) -> tuple[dict[int, int], dict[int, int]]:
    return dict(book.bids), dict(book.asks)


def test_new_book_is_stale_until_the_first_snapshot():
    book = L2Book()
    assert book.stale
    assert not book.apply_diff(BookDiff(1, 1, [(100, 1)], [], 0))
    assert book.rejects["diff_while_stale"] == 1
    assert not book.bids


def test_snapshot_then_contiguous_diffs_are_applied_in_order():
    book = _book()
    assert not book.stale and book.seq == 10 and book.ts_ns == 1_000
    assert book.apply_diff(BookDiff(11, 11, [(100, 8)], [], 2_000))
    assert book.apply_diff(BookDiff(12, 12, [(101, 1)], [(104, 6)], 3_000))
    assert book.seq == 12 and book.ts_ns == 3_000 and book.updates == 3
    assert _levels(book) == ({97: 2, 99: 7, 100: 8, 101: 1}, {102: 3, 103: 4, 104: 6, 106: 9})
    assert not book.stale and not book.rejects


def test_size_zero_removes_the_level_and_unknown_zero_is_harmless():
    book = _book()
    assert book.apply_diff(BookDiff(11, 11, [(100, 0), (50, 0)], [(102, 0)], 2_000))
    assert _levels(book) == ({97: 2, 99: 7}, {103: 4, 106: 9})
    assert book.best_bid() == (99, 7) and book.best_ask() == (103, 4)


def test_sequence_gap_marks_stale_and_does_not_apply_the_diff():
    book = _book()
    before = _levels(book)
    assert not book.apply_diff(BookDiff(12, 12, [(101, 50)], [(102, 0)], 2_000))  # 11 is missing
    assert book.stale and book.stale_reason == "sequence_gap"
    assert book.rejects["sequence_gap"] == 1
    assert _levels(book) == before
    assert book.seq == 10


def test_diffs_while_stale_are_rejected_and_counted_until_a_new_snapshot():
    book = _book()
    book.apply_diff(BookDiff(12, 12, [], [], 2_000))  # gap
    before = _levels(book)
    for s in (11, 12, 13):  # even the contiguous one is refused: a stale book is never patched
        assert not book.apply_diff(BookDiff(s, s, [(100, 1)], [], 2_000))
    assert book.rejects["diff_while_stale"] == 3
    assert _levels(book) == before
    assert book.apply_snapshot(BookSnapshot(20, [(200, 1)], [(201, 2)], 5_000))
    assert not book.stale and book.stale_reason == ""
    assert book.seq == 20 and _levels(book) == ({200: 1}, {201: 2})
    assert book.apply_diff(BookDiff(21, 21, [(199, 4)], [], 6_000))
    assert book.bids[199] == 4


def test_already_applied_diff_is_dropped_and_counted():
    book = _book()
    assert book.apply_diff(BookDiff(11, 11, [(100, 8)], [], 2_000))
    assert not book.apply_diff(BookDiff(11, 11, [(100, 1)], [], 2_000))  # replayed
    assert not book.apply_diff(BookDiff(9, 10, [(100, 2)], [], 2_000))  # older still
    assert book.rejects["diff_already_applied"] == 2
    assert book.bids[100] == 8 and book.seq == 11
    assert not book.stale


def test_diff_spanning_the_next_sequence_number_is_applied_binance_style():
    book = _book()
    # first_seq 8 <= seq+1 = 11 <= last_seq 15: the diff overlaps what we have and covers the next id
    assert book.apply_diff(BookDiff(8, 15, [(100, 6)], [(102, 1)], 2_000))
    assert book.seq == 15 and book.bids[100] == 6 and book.asks[102] == 1
    # and the next one must start at or before 16
    assert book.apply_diff(BookDiff(16, 18, [], [(103, 0)], 3_000))
    assert book.seq == 18 and 103 not in book.asks
    assert not book.stale


def test_negative_size_in_a_diff_is_rejected_without_changing_the_book():
    book = _book()
    before = _levels(book)
    assert not book.apply_diff(BookDiff(11, 11, [(100, 3)], [(102, -1)], 2_000))
    assert book.rejects["diff_bad_size"] == 1
    assert _levels(book) == before and book.seq == 10
    assert not book.stale  # a bad diff is refused, the next good one still applies
    assert book.apply_diff(BookDiff(11, 11, [(100, 3)], [], 2_000))


def test_snapshot_with_non_positive_size_is_rejected():
    book = L2Book()
    assert not book.apply_snapshot(BookSnapshot(5, [(100, 0)], [(101, 1)], 0))
    assert book.rejects["snapshot_bad_size"] == 1
    assert book.stale and book.seq == -1


def test_diff_that_crosses_the_book_marks_it_stale():
    book = _book()
    assert not book.apply_diff(BookDiff(11, 11, [(102, 1)], [], 2_000))  # bid 102 >= ask 102
    assert book.stale and book.stale_reason == "crossed_after_diff"
    assert book.rejects["crossed_after_diff"] == 1
    assert not book.apply_diff(BookDiff(12, 12, [(102, 0)], [], 3_000))
    assert book.rejects["diff_while_stale"] == 1


def test_crossed_snapshot_marks_stale():
    book = L2Book()
    book.apply_snapshot(BookSnapshot(1, [(101, 1)], [(100, 1)], 0))
    assert book.stale and book.stale_reason == "snapshot_crossed"


def test_external_mark_stale_keeps_the_reason():
    book = _book()
    book.mark_stale("feed_disconnected")
    assert book.stale and book.stale_reason == "feed_disconnected"
    assert book.rejects["feed_disconnected"] == 1


def test_queries_by_hand():
    book = _book()
    assert book.best_bid() == (100, 5)
    assert book.best_ask() == (102, 3)
    assert book.two_sided()
    assert book.mid_ticks() == 101.0  # (100 + 102) / 2
    assert book.spread_ticks() == 2
    assert book.top_bids(2) == [(100, 5), (99, 7)]
    assert book.top_bids(10) == [(100, 5), (99, 7), (97, 2)]
    assert book.top_asks(2) == [(102, 3), (103, 4)]
    assert book.top_asks(10) == [(102, 3), (103, 4), (106, 9)]
    # within 0 ticks: the best level only; within 2: bids 100..98 -> 5+7, asks 102..104 -> 3+4
    assert book.depth_within(0) == (5, 3)
    assert book.depth_within(2) == (12, 7)
    # within 3: bids 100..97 -> 5+7+2 = 14; asks 102..105 -> 7; within 4: asks reach 106 -> 16
    assert book.depth_within(3) == (14, 7)
    assert book.depth_within(4) == (14, 16)


def test_half_tick_mid_and_one_sided_book():
    book = L2Book()
    book.apply_snapshot(BookSnapshot(1, [(100, 1)], [(101, 1)], 0))
    assert book.mid_ticks() == 100.5 and book.spread_ticks() == 1
    book.apply_diff(BookDiff(2, 2, [], [(101, 0)], 0))
    assert not book.two_sided()
    assert book.best_ask() is None and book.best_bid() == (100, 1)
    assert book.depth_within(5) == (1, 0)


# ---- the real-time top of book (bookTicker between depth diffs) -------------------------------------


def test_a_newer_top_sets_the_best_levels_and_removes_the_levels_it_moved_past():
    book = _book()  # seq 10: bids 100x5 99x7 97x2 / asks 102x3 103x4 106x9
    assert book.apply_top(BookTop(15, 99, 4, 103, 8, 2_000))
    assert _levels(book) == ({97: 2, 99: 4}, {103: 8, 106: 9})  # 100 and 102 are gone as of id 15
    assert book.seq == 10 and book.top_seq == 15 and book.mid_ticks() == 101.0


def test_a_diff_older_than_the_top_never_resurrects_a_level_the_top_moved_past():
    book = _book()
    assert book.apply_top(BookTop(15, 99, 4, 103, 8, 2_000))
    # the 100 ms diff covering ids 11..14 arrives after the top: its 100 and 102 levels are history
    assert book.apply_diff(BookDiff(11, 14, [(100, 6), (99, 7), (98, 1)], [(102, 2), (104, 5)], 2_100))
    assert _levels(book) == ({97: 2, 98: 1, 99: 4}, {103: 8, 104: 5, 106: 9})
    assert book.rejects["diff_levels_behind_top"] == 3  # 100, 99 (the top's own, newer size), 102
    assert not book.stale and book.seq == 14
    # a diff ending at or after the top's id is newer than it: it applies in full
    assert book.apply_diff(BookDiff(15, 16, [(100, 2)], [(103, 0)], 2_200))
    assert _levels(book) == ({97: 2, 98: 1, 99: 4, 100: 2}, {104: 5, 106: 9})
    assert book.top_seq == -1


def test_a_top_older_than_the_book_crossed_or_while_stale_is_counted_not_applied():
    book = _book()
    assert not book.apply_top(BookTop(10, 100, 5, 102, 3, 2_000))  # the diffs already reached id 10
    assert book.rejects["top_older_than_book"] == 1
    assert not book.apply_top(BookTop(11, 102, 1, 101, 1, 2_000))
    assert book.rejects["top_crossed"] == 1
    assert not book.apply_top(BookTop(12, 100, 0, 102, 3, 2_000))
    assert book.rejects["top_bad_level"] == 1
    assert book.apply_top(BookTop(13, 100, 1, 102, 3, 2_000))
    assert not book.apply_top(BookTop(13, 100, 2, 102, 3, 2_000))  # not newer than the last top
    book.mark_stale("test")
    assert not book.apply_top(BookTop(20, 100, 5, 102, 3, 3_000))
    assert book.rejects["top_while_stale"] == 1 and book.bids[100] == 1


# ---- the array-backed price levels against sortedcontainers.SortedDict (the structure they replaced) --------

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sortedcontainers import SortedDict  # noqa: E402

import flashmm.core.book as book_module  # noqa: E402
from flashmm.core.book import Levels  # noqa: E402

_PRICE = st.integers(1, 60)
_OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "pop_best", "setitem", "popitem0", "delitem", "resize_best"]),
                          _PRICE,
                          st.integers(0, 9)), max_size=80)


@pytest.fixture
def tiny_tiers(monkeypatch):
    """Only a few levels in the sorted part, so that a handful of prices exercises the refills and trims that
    a 1,000-level Binance book exercises."""
    monkeypatch.setattr(book_module, "_NEAR", 3)
    monkeypatch.setattr(book_module, "_LOW", 2)
    monkeypatch.setattr(book_module, "_HIGH", 7)
    # a refill's window below the floor starts at 2 ticks and widens (x4) to every deeper level past 40
    monkeypatch.setattr(book_module, "_SPAN_START", 2)
    monkeypatch.setattr(book_module, "_SPAN_ALL", 40)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, sign=st.sampled_from([1, -1]), queries=st.lists(
    st.tuples(st.one_of(st.none(), _PRICE), st.one_of(st.none(), _PRICE), st.booleans(), st.booleans(),
              st.booleans()), max_size=8))
def test_levels_behave_as_the_sorted_dict_they_replaced(tiny_tiers, ops, sign, queries):
    lv, ref = Levels(sign), SortedDict()
    for i, (op, price, lots) in enumerate(ops):
        if op == "set":
            lv.set(price, lots)
            if lots:
                ref[price] = lots
            else:
                ref.pop(price, None)
        elif op == "del" and price in ref:
            del lv[price]
            del ref[price]
        elif op == "pop_best" and ref:
            best = ref.peekitem(-1 if sign > 0 else 0)
            assert lv.best() == best[0]
            lv.set(best[0], 0)
            del ref[best[0]]
        elif op == "setitem" and lots:
            lv[price] = lots
            ref[price] = lots
        elif op == "resize_best" and ref and lots:  # a best bid/offer update at the same price
            best = ref.peekitem(-1 if sign > 0 else 0)[0]
            lv.set(best, lots)
            ref[best] = lots
        elif op == "popitem0" and ref:
            assert lv.popitem(0) == ref.popitem(0)
        elif op == "delitem":
            assert lv.pop(price, None) == ref.pop(price, None)
        assert list(lv) == list(ref) and lv.items() == list(ref.items()) and len(lv) == len(ref)
        keys = sorted(sign * p for p in ref)
        assert lv.ladder == [k for k in keys if k >= lv.floor] and (lv.ladder or not ref)  # the best is last
        if ref and i % 2:  # the five-level depth the features read (kept between reads, moved by a best resize)
            q = [lots for _, lots in (reversed(ref.items()) if sign > 0 else ref.items())][:5]
            assert lv.top_depth() == (ref.peekitem(-1 if sign > 0 else 0)[0], q[0], sum(q[:3]), sum(q))
    for lo, hi, inc_lo, inc_hi, rev in queries:
        assert list(lv.irange(lo, hi, (inc_lo, inc_hi), rev)) == list(ref.irange(lo, hi, (inc_lo, inc_hi), rev))
        if lo is not None:  # the levels at a price or better, best first
            want = list(ref.irange(minimum=lo, reverse=True)) if sign > 0 else list(ref.irange(maximum=lo))
            assert lv.at_or_better(lo) == want
    if ref:
        for i in (0, -1, len(ref) // 2, -len(ref)):
            assert lv.peekitem(i) == ref.peekitem(i)
        n = len(ref) // 2 + 1
        want = list(reversed(ref.items()))[:n] if sign > 0 else list(ref.items())[:n]
        assert lv.top(n) == want
    assert dict(lv) == dict(ref) and (lv == dict(ref))


@pytest.fixture(scope="module")
def parse_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


_RECORDINGS = ["binance-spot-btcusdt-20240808", "binance-usdm-btcusdt-20240808", "binance-cm-btcusd-perp-20240808",
               "bitstamp-btcusd-20150501", "lobster-aapl-20120621-head"]


# every recording with the real tiers; with tiny tiers (refills and trims all the time) one deep and one top-20 book
@pytest.mark.parametrize(("folder", "tiers"), [(f, "default") for f in _RECORDINGS] + [
    ("binance-spot-btcusdt-20240808", "tiny"), ("bitstamp-btcusd-20150501", "tiny")])
def test_the_array_book_equals_the_sorted_dict_book_after_every_event_of_every_recording(
        folder, tiers, data_dir, parse_cache, monkeypatch):
    """Every snapshot, diff and top of the real recordings, in order, applied to this book and to the book as it
    was (tests/reference_book.py, SortedDict levels): the same answer, rejections, sequence state and top ten
    levels after each event, and the same whole book every 500 events and at the end."""
    import asyncio

    from flashmm.config import ReplayConfig
    from flashmm.data.loader import load_events
    from flashmm.venues.replay import ReplayVenue
    from tests.reference_book import L2Book as ReferenceBook

    if tiers == "tiny":
        monkeypatch.setattr(book_module, "_NEAR", 3)
        monkeypatch.setattr(book_module, "_LOW", 2)
        monkeypatch.setattr(book_module, "_HIGH", 7)
    data = load_events([data_dir / folder], parse_cache)
    venue = ReplayVenue(data, ReplayConfig())
    new, ref = L2Book(), ReferenceBook()
    apply = {BookSnapshot: ("apply_snapshot",), BookDiff: ("apply_diff",), BookTop: ("apply_top",)}

    async def events():
        while (batch := await venue.next_batch()) is not None:
            for ev in batch:
                if type(ev) in apply:
                    yield ev

    async def check() -> int:
        n = 0
        async for ev in events():
            name = apply[type(ev)][0]
            assert getattr(new, name)(ev) == getattr(ref, name)(ev), (n, ev)
            assert (new.stale, new.seq, new.top_seq, new.rejects) == (ref.stale, ref.seq, ref.top_seq, ref.rejects)
            assert new.top_bids(10) == ref.top_bids(10) and new.top_asks(10) == ref.top_asks(10), n
            if n % 500 == 0:
                assert dict(new.bids) == dict(ref.bids) and dict(new.asks) == dict(ref.asks), n
            n += 1
        return n

    n = asyncio.run(check())
    assert n > 500 and list(new.bids.items()) == list(ref.bids.items()) and list(new.asks) == list(ref.asks)
    if new.two_sided():
        assert new.mid_ticks() == ref.mid_ticks() and new.depth_within(50) == ref.depth_within(50)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("spacing", [1, 997, 1 << 41])  # within the first window; wider; wider than any window
def test_a_refill_brings_in_the_best_deeper_levels_however_far_below_the_floor(sign, spacing):
    """A refill looks within a window below the floor and widens it until it holds enough levels: whatever the
    spacing of the deeper levels, the sorted part gets the best _NEAR of them (and all, when fewer are left)."""
    n = 3 * book_module._NEAR
    prices = [10**6 + spacing * i for i in range(n)]
    lv = Levels(sign, {p: 1 for p in prices})
    ref = SortedDict({p: 1 for p in prices})
    while len(ref) > 1:
        best = lv.best()
        assert best == ref.peekitem(-1 if sign > 0 else 0)[0]
        before = len(lv.ladder)
        lv.set(best, 0)
        del ref[best]
        keys = sorted(sign * p for p in ref)
        assert lv.ladder == [k for k in keys if k >= lv.floor]
        if len(lv.ladder) > before - 1:  # a refill happened: the best _NEAR deeper levels, or every one left
            assert len(lv.ladder) == min(len(ref), before - 1 + book_module._NEAR)
