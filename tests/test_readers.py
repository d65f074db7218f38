"""The data readers on the real recordings (which must be present: missing data fails, never skips), on
corrupted copies of them made here, FlashMM's own format, and the loader's detection and cache.

Expected counts and timestamps were measured on the recordings in ../shared/data; the book checks compare
the replayed events with the recordings' own data (Binance bookTicker, LOBSTER orderbook rows, Bitstamp
order_book lines), parsed independently here."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest
from structlog.testing import capture_logs

from flashmm.core.book import L2Book
from flashmm.core.domain import BookTop, Instrument
from flashmm.data.events import (
    EVENT_DTYPE,
    FLAG_END,
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
    EventWriter,
    message_bounds,
)
from flashmm.data.loader import load_events
from flashmm.data.readers import (
    DataError,
    book_event,
    iter_messages,
    read_binance,
    read_bitstamp,
    read_flashmm,
    read_lobster,
    write_flashmm,
)
from flashmm.telemetry.logging import configure_logging

REPO = Path(__file__).resolve().parent.parent
SPOT = "binance-spot-btcusdt-20240808"
USDM = "binance-usdm-btcusdt-20240808"
BITSTAMP = "bitstamp-btcusd-20150501"
LOBSTER = "lobster-aapl-20120621-head"
COINM = "binance-cm-btcusd-perp-20240808"
LOB_MSG = "AAPL_2012-06-21_34200000_57600000_message_10.csv"
LOB_OB = "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"


def _data_dir() -> Path:
    env = os.environ.get("FLASHMM_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _need(*parts: str) -> Path:
    p = _data_dir().joinpath(*parts)
    if not p.exists():
        pytest.fail(f"recorded data missing: {p} (set FLASHMM_DATA_DIR to the shared data folder)")
    return p


def _spot_files() -> list[Path]:
    return [_need(SPOT, "btcusdt_20240808.gz"), _need(SPOT, "btcusdt_20240809.gz")]


# parsed once per module: each real file is read by its reader once here
@pytest.fixture(scope="module")
def spot() -> EventSet:
    return read_binance(_spot_files(), "spot")


@pytest.fixture(scope="module")
def usdm() -> EventSet:
    return read_binance([_need(USDM, "btcusdt_20240808.gz")], "usdm")


@pytest.fixture(scope="module")
def bitstamp() -> EventSet:
    return read_bitstamp(_need(BITSTAMP, "2015-05-01.log.xz"))


@pytest.fixture(scope="module")
def lobster() -> EventSet:
    return read_lobster(_need(LOBSTER, LOB_MSG), _need(LOBSTER, LOB_OB))


def _msg_kinds(es: EventSet) -> dict[int, int]:
    ev = es.events
    starts = np.r_[0, message_bounds(ev)[:-1]]
    k = ev["kind"][starts]
    return {kind: int(np.count_nonzero(k == kind)) for kind in (KIND_SNAP, KIND_DIFF, KIND_TRADE, KIND_BBO)}


def _check_layout(es: EventSet) -> None:
    ev = es.events
    assert ev.dtype == EVENT_DTYPE
    assert np.all(np.diff(ev["ts_ns"]) >= 0), "events out of time order"
    assert ev["flags"][-1] & FLAG_END
    # rows of one message share ts, kind, seq, seq2
    b = message_bounds(ev)
    starts = np.r_[0, b[:-1]]
    owner = np.repeat(starts, b - starts)
    for col in ("ts_ns", "kind", "seq", "seq2"):
        assert np.array_equal(ev[col], ev[col][owner]), col


def _binance_bbo_check(es: EventSet) -> tuple[int, int, L2Book]:
    """Replay through L2Book; the book after each applied diff (keyed by its last update id u) against
    every BBO row carrying the same update id. Returns (compared, mismatched, book)."""
    book = L2Book()
    after: dict[int, tuple] = {}
    bbo: dict[int, tuple] = {}
    for kind, ts, seq, seq2, rows in iter_messages(es.events):
        if kind == KIND_SNAP:
            assert book.apply_snapshot(book_event(kind, ts, seq, seq2, rows))
        elif kind == KIND_DIFF:
            if book.apply_diff(book_event(kind, ts, seq, seq2, rows)):
                after[seq2] = (book.best_bid(), book.best_ask())
        elif kind == KIND_BBO:
            (bs, bp, bq), (as_, ap, aq) = rows
            assert (bs, as_) == (1, -1)
            bbo[seq] = ((bp, bq), (ap, aq))
    common = after.keys() & bbo.keys()
    return len(common), sum(1 for u in common if after[u] != bbo[u]), book


def _top_driven_check(es: EventSet) -> dict[str, int]:
    """Replay every message, bookTicker frames included (L2Book.apply_top), and check at each step that the
    book's best bid/offer is the newest information: after a frame newer than the depth state, the book's top
    is that frame; a diff older than the frame in force leaves that top untouched (nothing the frame moved past
    comes back); the book is never crossed or stale."""
    book = L2Book()
    n = {"frames": 0, "applied": 0, "older_than_depth": 0, "before_sync": 0, "diffs_behind_top": 0, "diffs": 0}
    frame = None
    for kind, ts, seq, seq2, rows in iter_messages(es.events):
        if kind == KIND_SNAP:
            assert book.apply_snapshot(book_event(kind, ts, seq, seq2, rows))
        elif kind == KIND_DIFF:
            behind = book.top_seq > seq2
            assert book.apply_diff(book_event(kind, ts, seq, seq2, rows))
            n["diffs"] += 1
            if behind:
                n["diffs_behind_top"] += 1
                assert (book.best_bid(), book.best_ask()) == frame, f"diff {seq2} moved the top of frame {book.top_seq}"
        elif kind == KIND_BBO:
            (_, bp, bq), (_, ap, aq) = rows
            n["frames"] += 1
            if book.stale:  # before the first snapshot: nothing to put a top on
                assert not book.apply_top(BookTop(seq, bp, bq, ap, aq, ts))
                n["before_sync"] += 1
                continue
            if book.apply_top(BookTop(seq, bp, bq, ap, aq, ts)):
                n["applied"] += 1
                frame = ((bp, bq), (ap, aq))
                assert (book.best_bid(), book.best_ask()) == frame
            else:
                assert seq <= book.seq, f"frame {seq} refused although newer than the depth state {book.seq}"
                n["older_than_depth"] += 1
        assert book.seq < 0 or (not book.stale and not book.crossed())
    assert n["applied"] + n["older_than_depth"] + n["before_sync"] == n["frames"]
    return n


# ---- Binance spot ---------------------------------------------------------------------------------


def test_binance_spot_counts_timestamps_and_sync(spot):
    _check_layout(spot)
    assert spot.source == "binance-spot" and spot.instrument.price_tick == Decimal("0.01")
    assert len(spot.events) == 466_346 and spot.messages == 99_572
    assert _msg_kinds(spot) == {KIND_SNAP: 1, KIND_DIFF: 6493, KIND_TRADE: 19_904, KIND_BBO: 73_174}
    ev = spot.events
    # the first two lines are diffs, buffered: the first row is the bookTicker on line 3
    assert int(ev["ts_ns"][0]) == 1_723_161_254_087_891_268
    assert int(ev["ts_ns"][-1]) == 1_723_161_904_535_092_233
    m = spot.meta
    assert m["lines"] == 99_574 and m["snapshot_line"] == 8 and m["depth_diffs"] == 6495
    assert m["diffs_dropped_before_sync"] == 2
    # 7 six-decimal quantities on far round-number asks (200000, 100000, 90000, ...), rounded up
    assert spot.rejects == {"qty_off_lot_grid": 7}
    # the snapshot, at the snapshot line's time, then the buffered diff straddling lastUpdateId+1, same time
    snap = np.flatnonzero(ev["kind"] == KIND_SNAP)
    assert len(snap) == 2000
    s0 = snap[0]
    assert int(ev["ts_ns"][s0]) == 1_723_161_254_206_652_067
    assert int(ev["seq"][s0]) == int(ev["seq2"][s0]) == 50_093_239_218
    d0 = snap[-1] + 1
    assert ev["kind"][d0] == KIND_DIFF and int(ev["ts_ns"][d0]) == 1_723_161_254_206_652_067
    assert (int(ev["seq"][d0]), int(ev["seq2"][d0])) == (50_093_239_208, 50_093_239_224)
    assert spot.meta["sync"] == {"seq": 50_093_239_208, "seq2": 50_093_239_224, "lastUpdateId": 50_093_239_218}
    # trades: aggressor from m, ids unique
    tr = ev[ev["kind"] == KIND_TRADE]
    assert set(np.unique(tr["side"]).tolist()) == {-1, 1}
    assert int(np.count_nonzero(tr["side"] == 1)) == 9093  # lines with "m":false
    assert len(np.unique(tr["seq"])) == len(tr)


def test_binance_spot_book_matches_every_book_ticker(spot):
    compared, mismatched, book = _binance_bbo_check(spot)
    assert compared == 1072 and mismatched == 0
    assert not book.stale and dict(book.rejects) == {}
    assert book.updates == 1 + 6493


def test_binance_spot_top_of_book_follows_every_book_ticker_frame_between_diffs(spot):
    n = _top_driven_check(spot)
    # 73,174 frames against 6,493 diffs of 100 ms: between diffs the top comes from bookTicker
    assert n == {"frames": 73_174, "applied": 73_171, "older_than_depth": 0, "before_sync": 3,
                 "diffs_behind_top": 41, "diffs": 6_493}


# ---- Binance USD-M --------------------------------------------------------------------------------


def test_binance_usdm_counts_timestamps_and_pu_chain(usdm):
    _check_layout(usdm)
    assert usdm.source == "binance-usdm" and usdm.instrument.price_tick == Decimal("0.1")
    assert usdm.instrument.lot_size == Decimal("0.001")
    assert len(usdm.events) == 598_753 and usdm.messages == 93_950
    assert _msg_kinds(usdm) == {KIND_SNAP: 1, KIND_DIFF: 6547, KIND_TRADE: 21_313, KIND_BBO: 66_089}
    ev = usdm.events
    assert int(ev["ts_ns"][0]) == 1_723_161_255_088_169_167
    assert int(ev["ts_ns"][-1]) == 1_723_161_599_833_492_584
    assert usdm.rejects == {}
    m = usdm.meta
    assert m["lines"] == 93_954 and m["snapshot_line"] == 55 and m["depth_diffs"] == 6551
    assert m["diffs_dropped_before_sync"] == 4
    snap = ev[ev["kind"] == KIND_SNAP]
    assert len(snap) == 2000 and int(snap["seq"][0]) == 5_123_107_852_948
    assert int(snap["ts_ns"][0]) == 1_723_161_255_319_702_566
    # DIFF seq = pu + 1: the first straddles lastUpdateId, then each seq is the previous seq2 + 1
    b = message_bounds(ev)
    starts = np.r_[0, b[:-1]]
    d = ev[starts][ev["kind"][starts] == KIND_DIFF]
    assert d["seq"][0] <= 5_123_107_852_948 + 1 <= d["seq2"][0]
    tr = ev[ev["kind"] == KIND_TRADE]
    assert int(np.count_nonzero(tr["side"] == 1)) == 9616  # lines with "m":false
    assert np.array_equal(d["seq"][1:], d["seq2"][:-1] + 1)


def test_binance_usdm_book_matches_every_book_ticker(usdm):
    compared, mismatched, book = _binance_bbo_check(usdm)
    assert compared == 629 and mismatched == 0
    assert not book.stale and dict(book.rejects) == {}


def test_binance_usdm_top_of_book_follows_every_book_ticker_frame_between_diffs(usdm):
    n = _top_driven_check(usdm)
    # diffs every update (0 ms): 1,093 frames arrive after the diff that already covered their id
    assert n == {"frames": 66_089, "applied": 64_953, "older_than_depth": 1_093, "before_sync": 43,
                 "diffs_behind_top": 246, "diffs": 6_547}


def test_binance_coin_m_is_read_as_an_inverse_contract_and_its_top_follows_book_ticker():
    cm = read_binance([_need(COINM, "btcusd_perp_20240808.gz"), _need(COINM, "btcusd_perp_20240809.gz")], "cm")
    inst = cm.instrument
    assert (cm.source, inst.symbol, inst.base, inst.quote) == ("binance-cm", "BTCUSD_PERP", "BTC", "USD")
    assert inst.inverse and inst.multiplier == Decimal("100") and inst.settle_currency == "BTC"
    assert inst.price_tick == Decimal("0.1") and inst.lot_size == Decimal("1")
    compared, mismatched, book = _binance_bbo_check(cm)
    assert compared > 0 and mismatched == 0 and not book.stale
    n = _top_driven_check(cm)
    assert n == {"frames": 48_355, "applied": 48_345, "older_than_depth": 0, "before_sync": 10,
                 "diffs_behind_top": 0, "diffs": 44_772}


# ---- Bitstamp -------------------------------------------------------------------------------------


def test_bitstamp_counts_snapshots_and_trade_sides(bitstamp):
    _check_layout(bitstamp)
    es = bitstamp
    assert es.source == "bitstamp" and es.instrument.lot_size == Decimal("0.00000001")
    assert len(es.events) == 201_015 and es.messages == 5586
    assert _msg_kinds(es) == {KIND_SNAP: 5011, KIND_DIFF: 0, KIND_TRADE: 575, KIND_BBO: 0}
    assert int(es.events["ts_ns"][0]) == 1_430_438_404_645_000_000  # the first trade (before any snapshot)
    assert int(es.events["ts_ns"][-1]) == 1_430_456_682_204_000_000
    assert es.rejects == {}
    sf = es.meta["side_from"]
    assert sf == {"book_bid": 261, "book_ask": 305, "l3": 9, "unknown": 0}
    assert sum(sf.values()) == 575
    tr = es.events[es.events["kind"] == KIND_TRADE]
    side = Counter(tr["side"].tolist())
    assert side == {1: 310, -1: 265}
    assert 0.3 < side[1] / len(tr) < 0.7
    # the first trade (236.47, before the first order_book line): the ask at 236.47 deleted 8 ms before
    assert (int(tr["side"][0]), int(tr["price"][0]), int(tr["qty"][0]), int(tr["seq"][0])) == (1, 23647, 21144331,
                                                                                             8111041)
    # a stale snapshot can contradict the L3 evidence: counted, not hidden
    assert es.meta["book_rule_disagrees_with_l3"] == 76


def test_bitstamp_snapshots_equal_the_order_book_lines(bitstamp):
    want = {1, 2500, 5011}
    lines: dict[int, tuple[int, dict]] = {}
    n = 0
    with lzma.open(_need(BITSTAMP, "2015-05-01.log.xz"), "rb") as fh:
        for line in fh:
            ts, kind, body = line.split(b" ", 2)
            if kind == b"order_book":
                n += 1
                if n in want:
                    lines[n] = (int(ts) * 1_000_000, orjson.loads(body))
    assert n == 5011
    snaps = {}
    for kind, ts, seq, _, rows in iter_messages(bitstamp.events):
        if kind == KIND_SNAP and seq in want:
            snaps[seq] = (ts, rows)
    for k in want:
        ts, book = lines[k]
        assert snaps[k][0] == ts
        cent, sat = Decimal("0.01"), Decimal("0.00000001")
        exp = [(1, int(Decimal(p) / cent), int(Decimal(q) / sat)) for p, q in book["bids"]]
        exp += [(-1, int(Decimal(p) / cent), int(Decimal(q) / sat)) for p, q in book["asks"]]
        assert snaps[k][1] == exp
        b = L2Book()
        assert b.apply_snapshot(book_event(KIND_SNAP, ts, k, k, snaps[k][1])) and not b.stale
        assert b.top_bids(5) == [(p, q) for s, p, q in exp[:5]]
        assert b.top_asks(5) == [(p, q) for s, p, q in exp[20:25]]


# ---- LOBSTER --------------------------------------------------------------------------------------


def test_lobster_counts_and_book_equals_orderbook_rows(lobster):
    _check_layout(lobster)
    es = lobster
    assert es.source == "lobster" and es.instrument.symbol == "AAPL"
    assert len(es.events) == 20_139 and es.messages == 1158
    assert _msg_kinds(es) == {KIND_SNAP: 999, KIND_DIFF: 0, KIND_TRADE: 159, KIND_BBO: 0}
    # 09:30:00.004241176 New York time (EDT, UTC-4) on 2012-06-21
    assert int(es.events["ts_ns"][0]) == 1_340_285_400_004_241_176
    assert int(es.events["ts_ns"][-1]) == 1_340_285_449_086_375_027
    assert es.rejects == {}
    assert es.meta["type_4"] == 98 and es.meta["type_5"] == 61

    msgs = _need(LOBSTER, LOB_MSG).read_text().split()
    obs = _need(LOBSTER, LOB_OB).read_text().split()
    assert len(msgs) == len(obs) == 999
    snaps, trades = {}, {}
    for kind, ts, seq, _, rows in iter_messages(es.events):
        (snaps if kind == KIND_SNAP else trades)[seq] = (ts, rows)
    for k in (1, 2, 100, 500, 998, 999):
        v = [int(x) for x in obs[k - 1].split(",")]
        asks = [(v[i] // 100, v[i + 1]) for i in range(0, 40, 4) if abs(v[i]) != 9999999999 and v[i + 1] > 0]
        bids = [(v[i + 2] // 100, v[i + 3]) for i in range(0, 40, 4) if abs(v[i + 2]) != 9999999999 and v[i + 3] > 0]
        ts, rows = snaps[k]
        book = L2Book()
        assert book.apply_snapshot(book_event(KIND_SNAP, ts, k, k, rows))
        assert book.top_asks(10) == asks and book.top_bids(10) == bids
        sec, frac = msgs[k - 1].split(",")[0].split(".")
        assert ts == 1_340_251_200 * 10**9 + int(sec) * 10**9 + int(frac.ljust(9, "0"))
    # every execution is a trade, aggressor opposite to the resting order's direction
    execs = [(k, m.split(",")) for k, m in enumerate(msgs, 1) if m.split(",")[1] in ("4", "5")]
    assert len(execs) == len(trades) == 159
    for k, f in execs:
        (side, price, qty), = trades[k][1]
        assert (side, price, qty) == (-int(f[5]), int(f[4]) // 100, int(f[3]))


def test_lobster_row_count_mismatch_is_a_data_error(tmp_path):
    msg = tmp_path / LOB_MSG
    ob = tmp_path / LOB_OB
    msg.write_bytes(_need(LOBSTER, LOB_MSG).read_bytes())
    ob.write_bytes(b"\n".join(_need(LOBSTER, LOB_OB).read_bytes().splitlines()[:-3]))
    with pytest.raises(DataError, match="999 rows.*996"):
        read_lobster(msg, ob)


# ---- FlashMM's own format -------------------------------------------------------------------------


def test_flashmm_round_trip(tmp_path, spot, lobster):
    for es in (spot, lobster):
        p = tmp_path / f"{es.source}.npz"
        write_flashmm(es, p)
        back = read_flashmm(p)
        assert back.events.dtype == EVENT_DTYPE
        assert np.array_equal(back.events, es.events)
        assert back.header() == es.header()
        assert back.instrument == es.instrument and back.source == es.source


def test_event_writer_keeps_a_diff_that_changed_no_level_so_the_chain_stays_whole(tmp_path):
    """`flashmm record` writes every block's diff; a quiet block (the thin simulated market has many) must not
    vanish, or the replay sees a sequence gap and stays stale for the rest of the recording."""
    w = EventWriter()
    w.message(0, KIND_SNAP, [(1, 99, 5), (-1, 101, 5)], 1, 1)
    w.message(1, KIND_DIFF, [], 2, 2)  # nothing changed in block 2
    w.message(2, KIND_DIFF, [(1, 100, 3)], 3, 3)
    es = EventSet(w.array(), Instrument("T", "B", "Q", Decimal("0.01"), Decimal("1")), "flashmm", ["t"])
    write_flashmm(es, tmp_path / "t.npz")
    back = read_flashmm(tmp_path / "t.npz")
    msgs = list(iter_messages(back.events))
    assert [(k, seq, rows) for k, _, seq, _, rows in msgs] == [
        (KIND_SNAP, 1, [(1, 99, 5), (-1, 101, 5)]), (KIND_DIFF, 2, []), (KIND_DIFF, 3, [(1, 100, 3)])]
    book = L2Book()
    assert book.apply_snapshot(book_event(*msgs[0]))
    assert all(book.apply_diff(book_event(*m)) for m in msgs[1:])
    assert not book.stale and book.best_bid() == (100, 3)


def test_flashmm_reader_rejects_damaged_files(tmp_path, lobster):
    good = tmp_path / "good.npz"
    write_flashmm(lobster, good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    header = np.frombuffer(orjson.dumps(lobster.header()), dtype=np.uint8)
    wrong_dtype = tmp_path / "dtype.npz"
    np.savez(wrong_dtype, events=np.zeros(3, dtype=np.float64), header=header)
    bad_version = tmp_path / "version.npz"
    np.savez(bad_version, events=lobster.events,
             header=np.frombuffer(orjson.dumps({**lobster.header(), "format_version": 99}), dtype=np.uint8))
    unordered = tmp_path / "order.npz"
    np.savez(unordered, events=lobster.events[::-1].copy(), header=header)
    missing = tmp_path / "missing.npz"
    np.savez(missing, events=lobster.events)

    for p, what in ((truncated, "unreadable"), (garbage, "unreadable"), (wrong_dtype, "dtype"),
                    (bad_version, "format_version"), (unordered, "time order"), (missing, "header"),
                    (tmp_path / "absent.npz", "no such file")):
        with pytest.raises(DataError, match=what) as ei:
            read_flashmm(p)
        assert p.name in str(ei.value)


# ---- corrupted copies of the real spot recording --------------------------------------------------


def _spot_head(n: int = 3000) -> list[bytes]:
    out = []
    with gzip.open(_need(SPOT, "btcusdt_20240808.gz"), "rb") as fh:
        for line in fh:
            out.append(line)
            if len(out) == n:
                break
    return out


def _write_gz(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.writelines(lines)
    return path


def _kind(line: bytes) -> str:
    if b"@depth" in line:
        return "depth"
    if b"@trade" in line:
        return "trade"
    if b"@bookTicker" in line:
        return "bbo"
    return "snap"


def test_corrupted_binance_lines_are_counted_and_the_gap_is_seen(tmp_path):
    lines = _spot_head()
    kinds = [_kind(x) for x in lines]
    snap_i = kinds.index("snap")
    assert snap_i == 7
    depth = [i for i, k in enumerate(kinds) if k == "depth" and i > snap_i + 20]
    dup_i, del_i = depth[5], depth[60]
    after_del = next(i for i in depth if i > del_i)
    trades = [i for i, k in enumerate(kinds) if k == "trade" and dup_i < i < del_i]
    bbos = [i for i, k in enumerate(kinds) if k == "bbo" and dup_i < i < del_i]
    cut_i, badf_i, duptr_i = trades[0], trades[3], trades[6]
    back_i, garbage_after, unknown_after = bbos[10], bbos[20], bbos[30]

    out = []
    for i, line in enumerate(lines):
        if i == del_i:
            continue  # a lost depth frame: the next one no longer chains
        if i == cut_i:
            out.append(line[: len(line) // 2] + b"\n")  # cut in half
            continue
        if i == back_i:  # receive time 5 s earlier than the line before
            ts, rest = line.split(b" ", 1)
            out.append(str(int(ts) - 5_000_000_000).encode() + b" " + rest)
            continue
        if i == badf_i:
            out.append(line.replace(b'"p":"', b'"p":"x'))  # a bad number
            continue
        out.append(line)
        if i in (dup_i, duptr_i):
            out.append(line)  # a repeated depth frame / trade
        if i == garbage_after:
            out.append(b"\x00\xff\x13 garbage, not a frame\n")
        if i == unknown_after:
            out.append(line.split(b" ", 1)[0] + b' {"stream":"btcusdt@kline_1m","data":{"k":{}}}\n')

    clean = read_binance([_write_gz(tmp_path / "clean.gz", lines)], "spot")
    bad_path = _write_gz(tmp_path / "bad.gz", out)
    configure_logging("warning")  # the level is global: earlier tests may have left it at "error"
    with capture_logs() as logs:
        es = read_binance([bad_path], "spot")
    expected = {"malformed_line": 2, "bad_field": 1, "out_of_order_ts": 1, "unknown_stream": 1,
                "duplicate_trade": 1, "qty_off_lot_grid": clean.rejects.get("qty_off_lot_grid", 0)}
    assert {k: v for k, v in es.rejects.items() if v} == {k: v for k, v in expected.items() if v}
    # each kind logged once, with its count
    logged = {e["kind"]: e["count"] for e in logs if e.get("event") == "input_rejected"}
    assert logged == es.rejects and len([e for e in logs if e.get("event") == "input_rejected"]) == len(logged)
    assert es.meta["trades"] == clean.meta["trades"] - 2
    assert es.meta["depth_diffs"] == clean.meta["depth_diffs"]  # one deleted, one repeated
    _check_layout(es)

    # the loader detects it and never raises either
    assert load_events([bad_path]).rejects == es.rejects

    # replay: the repeated frame is refused as already applied; the book goes stale at the frame after the
    # deleted one, and stays stale
    gap_frame = orjson.loads(lines[after_del].split(b" ", 1)[1])["data"]
    book = L2Book()
    stale_at = None
    for kind, ts, seq, seq2, rows in iter_messages(es.events):
        if kind == KIND_SNAP:
            book.apply_snapshot(book_event(kind, ts, seq, seq2, rows))
        elif kind == KIND_DIFF:
            book.apply_diff(book_event(kind, ts, seq, seq2, rows))
            if book.stale and stale_at is None:
                stale_at = (ts, seq, seq2)
    assert stale_at == (int(lines[after_del].split(b" ", 1)[0]), gap_frame["U"], gap_frame["u"])
    assert book.stale and book.stale_reason == "sequence_gap"
    assert book.rejects["sequence_gap"] == 1 and book.rejects["diff_already_applied"] == 1
    assert book.rejects["diff_while_stale"] > 50


def test_truncated_or_foreign_binance_files(tmp_path):
    blob = gzip.compress(b"".join(_spot_head(1500)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    es = read_binance([cut], "spot")  # keeps what it could read
    assert es.rejects["truncated_file"] == 1 and es.meta["snapshots"] == 1 and es.messages > 500
    foreign = tmp_path / "foreign.gz"
    foreign.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="foreign.gz"):
        read_binance([foreign], "spot")
    with pytest.raises(DataError, match="nothere.gz"):
        read_binance([tmp_path / "nothere.gz"], "spot")


# ---- loader: detection and cache -------------------------------------------------------------------


def test_loader_detects_each_data_set(spot, usdm, lobster):
    d = _data_dir()
    es = load_events([_need(SPOT)])
    assert es.source == "binance-spot" and [Path(f).name for f in es.files] == ["btcusdt_20240808.gz",
                                                                                 "btcusdt_20240809.gz"]
    assert np.array_equal(es.events, spot.events)
    assert load_events([_need(USDM, "btcusdt_20240808.gz")]).messages == usdm.messages
    lob = load_events([_need(LOBSTER, LOB_OB)])  # the orderbook file names its message file
    assert lob.source == "lobster" and np.array_equal(lob.events, lobster.events)
    assert load_events([d / LOBSTER]).messages == lobster.messages
    with pytest.raises(DataError, match="different data sets"):
        load_events([d / SPOT, d / USDM])
    with pytest.raises(DataError, match="different data sets"):
        load_events([d / LOBSTER, _need(BITSTAMP, "2015-05-01.log.xz")])


def test_loader_bitstamp_folder(bitstamp):
    es = load_events([_need(BITSTAMP)])  # orders.csv.xz beside it is not a data file
    assert es.source == "bitstamp" and np.array_equal(es.events, bitstamp.events)


def test_cache_hit_touch_and_corruption(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    f = _write_gz(src / "btcusdt_head.gz", _spot_head(2000))
    cache = tmp_path / "cache"

    first = load_events([src], cache_dir=cache)
    assert first.meta["cache"] == "miss"
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1 and len(entries[0].stem) == 64  # sha256 hex

    second = load_events([src], cache_dir=cache)
    assert second.meta["cache"] == "hit"
    assert np.array_equal(second.events, first.events)
    assert second.rejects == first.rejects and second.files == first.files
    assert {k: v for k, v in second.meta.items() if k != "cache"} == \
        {k: v for k, v in first.meta.items() if k != "cache"}

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # touched: a new key
    third = load_events([f], cache_dir=cache)
    assert third.meta["cache"] == "miss" and np.array_equal(third.events, first.events)
    assert load_events([f], cache_dir=cache).meta["cache"] == "hit"

    # a corrupt cache entry is never trusted: counted, rebuilt, then a hit again
    newest = max(cache.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:1000])
    rebuilt = load_events([f], cache_dir=cache)
    assert rebuilt.meta["cache"] == "miss" and rebuilt.meta["cache_corrupt"] == 1
    assert np.array_equal(rebuilt.events, first.events)
    again = load_events([f], cache_dir=cache)
    assert again.meta["cache"] == "hit" and np.array_equal(again.events, first.events)


def test_real_file_cache_round_trip(tmp_path, lobster):
    d = tmp_path / "lob"
    shutil.copytree(_need(LOBSTER), d)
    a = load_events([d], cache_dir=tmp_path / "c")
    b = load_events([d / LOB_MSG], cache_dir=tmp_path / "c")
    assert (a.meta["cache"], b.meta["cache"]) == ("miss", "hit")
    assert np.array_equal(b.events, lobster.events)
