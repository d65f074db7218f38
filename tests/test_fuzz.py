"""Property-based fuzzing (hypothesis) of every parser of outside input, and of the engine's event intake.

The rule checked everywhere: bad input is accepted, or counted as a rejection under its own key, or refused
with the module's own error (`DataError`, `ConfigError`, `QueryError`, `ValueError`, a JSON-RPC error object)
with a clear message. Any other exception, a hang, or silently repaired state is a bug.

Each strategy mixes structurally valid frames with wrong ones (missing keys, wrong types, negative / NaN /
huge numbers, ids beyond int64, non-monotonic sequence numbers, strings where numbers go) and raw garbage.
Runs are deterministic (`derandomize=True`, no example database) so CI sees the same inputs every time;
every bug found so far is pinned with `@example`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import lzma
import math
import os
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as ws_connect

from flashmm.config import Config, ConfigError, ReplayConfig, load_config
from flashmm.core.book import L2Book
from flashmm.core.domain import (
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelReject,
    FeeCharge,
    Fill,
    OrderAck,
    OrderReject,
    Side,
    Trade,
    VenueStatus,
)
from flashmm.core.engine import Engine
from flashmm.data.events import (
    EVENT_DTYPE,
    FLAG_EMPTY,
    FLAG_END,
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
)
from flashmm.data.readers import (
    DataError,
    iter_messages,
    read_binance,
    read_bitstamp,
    read_flashmm,
    read_lobster,
    write_flashmm,
)
from flashmm.data.instruments import instrument_table
from flashmm.data.readers.common import _stamped_json
from flashmm.telemetry.logging import AuditLog
from flashmm.venues.replay import ReplayVenue
from flashmm.venues.sei.rpc_server import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Query,
    QueryError,
    SeiRPCServer,
)
from flashmm.venues.sei.schema import dec_from_json, dec_from_wire, dec_to_json, dec_to_wire
from flashmm.venues.sei.tx import Signer, build_tx, decode_tx, memo_of, verify_tx_signature
from tests.conftest import make_engine, run_for

BTCUSDT_SPOT = instrument_table().resolve("binance-spot", "BTCUSDT")

# One profile for the whole file: deterministic, no database, no per-example deadline (the machine is shared).
# FLASHMM_FUZZ_SCALE=N runs N times the examples with fresh randomness: a deeper local search, never CI's default.
_SCALE = int(os.environ.get("FLASHMM_FUZZ_SCALE", "0") or 0)
FUZZ = settings(derandomize=_SCALE == 0, database=None, deadline=None, print_blob=_SCALE > 0,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def fuzz(n: int) -> settings:
    return settings(FUZZ, max_examples=n * max(_SCALE, 1))


INT64_MAX = 2**63 - 1
# ids at and beyond the int64 / uint64 edges (orjson reads integers up to 2**64 - 1 as int, larger as float)
EDGE_INTS = st.sampled_from([0, 1, -1, INT64_MAX - 1, INT64_MAX, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.integers(min_value=-(2**70), max_value=2**70), EDGE_INTS, st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
# JSON values of any shape (for the RPC server and header fuzzing)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=12,
)


def one_of_or_junk(good: st.SearchStrategy, junk_share: int = 4) -> st.SearchStrategy:
    """Mostly `good`, sometimes junk of any type (1 in `junk_share`)."""
    return st.one_of(*([good] * (junk_share - 1)), JUNK)


@st.composite
def drop_keys(draw: st.DrawFn, d: dict[str, Any]) -> dict[str, Any]:
    """A dict with, sometimes, some keys removed."""
    if draw(st.integers(0, 3)) == 0:
        gone = draw(st.sets(st.sampled_from(sorted(d)), max_size=len(d)))
        return {k: v for k, v in d.items() if k not in gone}
    return d


# ---- decimal strings -------------------------------------------------------------------------------

def dec_text(places: int) -> st.SearchStrategy[str]:
    """Decimal strings as exchanges write them, plus the edges: off-grid, negative, exponent, huge, NaN."""
    good = st.decimals(min_value=0, max_value=10**7, places=places, allow_nan=False).map(lambda d: f"{d:f}")
    edge = st.sampled_from(["0", "0.0", "-1.00", "1e3", "NaN", "inf", "", " 1", "1.", ".5", "00001.10",
                            "9" * 25, "9" * 19 + ".5", "1" + "0" * 18, "0.000000000001", "1,5", "+1"])
    return st.one_of(good, good, edge, st.from_regex(r"-?[0-9]{1,22}(\.[0-9]{0,12})?", fullmatch=True), JUNK)


def level_list(places_p: int, places_q: int) -> st.SearchStrategy:
    level = st.one_of(st.lists(st.one_of(dec_text(places_p), dec_text(places_q)), min_size=2, max_size=3),
                      st.tuples(dec_text(places_p), dec_text(places_q)).map(list), JUNK)
    return one_of_or_junk(st.lists(level, max_size=4), junk_share=8)


# ---- the reader contract --------------------------------------------------------------------------

def _accepted_is_sound(es: EventSet, path: Path) -> None:
    """What a reader accepts is well formed and survives FlashMM's own format unchanged."""
    ev = es.events
    assert ev.dtype == EVENT_DTYPE
    if ev.size:
        assert np.all(np.diff(ev["ts_ns"]) >= 0), "events must be in time order"
        assert ev["flags"][-1] & FLAG_END
        real = (ev["flags"] & FLAG_EMPTY) == 0
        assert np.all(np.isin(ev["side"], (-1, 0, 1)))
        book = real & ((ev["kind"] == KIND_SNAP) | (ev["kind"] == KIND_BBO))
        assert np.all(ev["qty"][book] >= 0)
        trades = real & (ev["kind"] == KIND_TRADE)
        assert np.all(ev["qty"][trades] > 0) and np.all(ev["price"][trades] > 0), "a trade of nothing or at no price"
    out = path.with_name("roundtrip.npz")
    write_flashmm(es, out)
    back = read_flashmm(out)
    assert np.array_equal(back.events, ev) and back.rejects == es.rejects


def read_or_data_error(read: Callable[[], EventSet]) -> EventSet | None:
    """The contract of a reader: an EventSet, or DataError with a message. Anything else propagates (a bug)."""
    try:
        return read()
    except DataError as exc:
        assert str(exc).strip(), "a DataError must say what is wrong"
        return None


def _sum_rejects(es: EventSet, kept: set[str]) -> int:
    """Rejections that stand for a whole input line (not the counted-but-kept kinds)."""
    return sum(n for k, n in es.rejects.items() if k not in kept)


# ---- Binance ---------------------------------------------------------------------------------------

SYMBOLS = st.sampled_from(["btcusdt", "btcusdt", "btcusdt", "ethusdt", "BTCUSDT", ""])


@st.composite
def binance_frame(draw: st.DrawFn) -> Any:
    """One decoded Binance frame (a JSON value): snapshot, depth diff, trade, bookTicker, or junk. Numbers are
    drawn on the spot grid (0.01 / 0.00001) or the USD-M one (0.1 / 0.001): each is off-grid for the other."""
    places_p, places_q = draw(st.sampled_from([(2, 5), (1, 3)]))
    ids = one_of_or_junk(st.one_of(st.integers(0, 60), EDGE_INTS))
    kind = draw(st.sampled_from(["snap", "depth", "depth", "trade", "ticker", "junk"]))
    if kind == "snap":
        return draw(drop_keys({"lastUpdateId": draw(ids), "bids": draw(level_list(places_p, places_q)),
                               "asks": draw(level_list(places_p, places_q))}))
    if kind == "junk":
        return draw(JSON)
    if kind == "depth":
        data = {"e": "depthUpdate", "U": draw(ids), "u": draw(ids), "pu": draw(ids),
                "b": draw(level_list(places_p, places_q)), "a": draw(level_list(places_p, places_q))}
        stream = "@depth@100ms"
    elif kind == "trade":
        data = {"e": "trade", "t": draw(ids), "p": draw(dec_text(places_p)), "q": draw(dec_text(places_q)),
                "m": draw(one_of_or_junk(st.booleans()))}
        stream = "@trade"
    else:
        data = {"u": draw(ids), "b": draw(dec_text(places_p)), "B": draw(dec_text(places_q)),
                "a": draw(dec_text(places_p)), "A": draw(dec_text(places_q))}
        stream = "@bookTicker"
    frame = {"stream": draw(SYMBOLS) + stream, "data": draw(drop_keys(data))}
    return draw(st.one_of(st.just(frame), st.just(frame), drop_keys(frame),
                          st.builds(lambda j: {"stream": j, "data": data}, JUNK)))


@st.composite
def stamped_lines(draw: st.DrawFn, body: st.SearchStrategy[bytes], sep: bytes = b" ") -> list[bytes]:
    """Recording lines `<stamp><sep><body>`: stamps mostly increasing, sometimes back, zero, huge or junk."""
    lines = []
    ts = draw(st.integers(1, 10**6))
    for _ in range(draw(st.integers(0, 12))):
        ts += draw(st.integers(-3, 50))
        stamp = draw(st.one_of(*[st.just(str(ts).encode())] * 6, EDGE_INTS.map(lambda i: str(i).encode()),
                               st.binary(max_size=6), st.just(b"")))
        line = stamp + sep + draw(body)
        if draw(st.integers(0, 9)) == 0:  # a line cut short
            line = line[: draw(st.integers(0, len(line)))]
        lines.append(line.replace(b"\n", b" "))
    return lines


def json_bytes(strategy: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    # stdlib json: it writes integers of any size (orjson refuses > 64 bit) and NaN (which orjson rejects on read)
    return st.one_of(strategy.map(lambda v: json.dumps(v).encode()), strategy.map(lambda v: json.dumps(v).encode()),
                     st.binary(max_size=40))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="flashmm-fuzz-") as d:
        yield Path(d)


def _write_gz(path: Path, lines: list[bytes]) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


BINANCE_KEPT = {"qty_off_lot_grid", "truncated_file"}  # counted, but the line is kept / not one line


def _check_binance(es: EventSet, lines: int) -> None:
    """Every line is an event, a dropped-before-sync diff, a frame of another symbol (counted per symbol), a
    snapshot that was not the chosen symbol's, or one counted rejection: nothing vanishes."""
    assert es.meta.get("lines", 0) == lines
    others = sum(es.meta.get("other_symbol_frames", {}).values()) + es.meta.get("snapshot_not_chosen_symbol", 0)
    assert lines == (es.messages + es.meta.get("diffs_dropped_before_sync", 0) + _sum_rejects(es, BINANCE_KEPT)
                     + others)


@fuzz(150)
@given(market=st.sampled_from(["spot", "usdm"]), lines=stamped_lines(json_bytes(binance_frame())))
# minimal inputs of the bugs this test found: values beyond int64 overflowed when the events were built
@example(market="spot", lines=[b'1 {"lastUpdateId": 9223372036854775808, "bids": [], "asks": []}'])
@example(market="spot", lines=[b'1 {"lastUpdateId": 5, "bids": [["99999999999999999999999", "1"]], "asks": []}'])
@example(market="spot", lines=[b'99999999999999999999 {"lastUpdateId": 5, "bids": [], "asks": []}'])
@example(market="usdm", lines=[b'1 {"lastUpdateId": 5, "bids": [], "asks": []}',
                               b'2 {"stream": "btcusdt@depth", "data": {"U": 1, "u": 9, "pu": 9223372036854775807, '
                               b'"b": [], "a": []}}'])
# a trade of zero quantity was kept (Bitstamp and LOBSTER refuse it)
@example(market="spot", lines=[b'1 {"stream": "btcusdt@trade", "data": {"t": 0, "p": "1.00", "q": "0.0", "m": false}}'])
def test_binance_frames(workdir: Path, market: str, lines: list[bytes]) -> None:
    path = workdir / f"binance-{market}.gz"
    _write_gz(path, lines)
    es = read_or_data_error(lambda: read_binance([path], market, symbol="BTCUSDT"))
    assert es is not None, "a readable gzip file is never a DataError once its symbol is known"
    _check_binance(es, len(lines))
    _accepted_is_sound(es, path)


@fuzz(60)
@given(raw=st.one_of(st.binary(max_size=200), st.builds(lambda b, cut: gzip.compress(b)[:cut], st.binary(max_size=200),
                                                         st.integers(0, 240)),
                     st.builds(lambda b, i, bit: _flip(gzip.compress(b), i, bit), st.binary(min_size=1, max_size=200),
                               st.integers(0, 300), st.integers(0, 7))))
def test_binance_container_garbage(workdir: Path, raw: bytes) -> None:
    """Not gzip, truncated gzip, bit-flipped gzip: DataError before the first line, a counted truncation after."""
    path = workdir / "garbage.gz"
    path.write_bytes(raw)
    es = read_or_data_error(lambda: read_binance([path], "spot", symbol="BTCUSDT"))
    if es is not None:
        _check_binance(es, es.meta.get("lines", 0))
        _accepted_is_sound(es, path)


def _flip(raw: bytes, i: int, bit: int) -> bytes:
    if not raw:
        return raw
    b = bytearray(raw)
    b[i % len(b)] ^= 1 << bit
    return bytes(b)


# ---- Bitstamp --------------------------------------------------------------------------------------

@st.composite
def bitstamp_line(draw: st.DrawFn) -> bytes:
    etype = draw(st.sampled_from([b"order_book", b"trade", b"trade", b"order_changed", b"order_deleted",
                                  b"order_created", b"other", b""]))
    num = st.one_of(st.floats(min_value=0, max_value=1e6), st.floats(), dec_text(2), dec_text(8), JUNK)
    if etype == b"order_book":
        body: Any = {"bids": draw(level_list(2, 8)), "asks": draw(level_list(2, 8))}
    elif etype == b"trade":
        body = {"id": draw(one_of_or_junk(st.one_of(st.integers(0, 20), EDGE_INTS))), "price": draw(num),
                "amount": draw(num)}
    else:
        body = {"order_type": draw(one_of_or_junk(st.sampled_from([0, 1]))), "price": draw(dec_text(2))}
    body = draw(st.one_of(st.just(body), drop_keys(body), JSON))
    return etype + b" " + draw(st.one_of(st.just(json.dumps(body).encode()), st.binary(max_size=30)))


BITSTAMP_KEPT = {"qty_off_lot_grid", "trade_side_unknown", "truncated_file"}


@fuzz(120)
@given(lines=stamped_lines(bitstamp_line()))
@example(lines=[b'9223372036854775 order_book {"bids": [], "asks": []}'])  # ms stamp * 1e6 beyond int64
@example(lines=[b'1 trade {"id": 0, "price": 1.0, "amount": 92233720369.0}'])  # amount in lots beyond int64
@example(lines=[b'1 trade {"id": 0, "price": 0.0, "amount": 1.0}'])  # a trade at price 0 was kept
def test_bitstamp_frames(workdir: Path, lines: list[bytes]) -> None:
    path = workdir / "bitstamp.xz"
    path.write_bytes(lzma.compress(b"".join(line + b"\n" for line in lines)))
    es = read_or_data_error(lambda: read_bitstamp(path))
    assert es is not None
    l3 = sum(es.meta.get(k, 0) for k in ("order_changed", "order_deleted", "order_created"))
    assert es.meta.get("lines", 0) == len(lines) == es.messages + l3 + _sum_rejects(es, BITSTAMP_KEPT)
    _accepted_is_sound(es, path)


# ---- LOBSTER ---------------------------------------------------------------------------------------

CSV_INT = st.one_of(st.integers(-10, 10**7), st.integers(-10, 5).map(lambda i: i * 100),
                    st.sampled_from([9999999999, -9999999999]), EDGE_INTS)


@st.composite
def lobster_rows(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    msgs, books = [], []
    t = draw(st.integers(34200, 57600))
    levels = draw(st.integers(1, 3))
    for _ in range(draw(st.integers(0, 10))):
        t += draw(st.integers(-1, 3))
        ts = draw(st.one_of(*[st.just(f"{t}.{draw(st.integers(0, 10**9 - 1)):09d}")] * 5,
                            st.sampled_from(["", "x", "1.", "1.1234567890", "9" * 30, "-5"])))
        fields = [ts] + [str(draw(CSV_INT)) for _ in range(5)]
        if draw(st.integers(0, 4)) == 0:
            fields[1] = str(draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8])))
        line = ",".join(fields[: draw(st.sampled_from([6, 6, 6, 5, 7]))]).encode()
        book = ",".join(str(draw(CSV_INT)) for _ in range(4 * levels + draw(st.sampled_from([0, 0, 0, 1])))).encode()
        for out, good in ((msgs, line), (books, book)):
            raw = draw(st.one_of(*[st.just(good)] * 6, st.binary(max_size=20)))
            out.append(raw.replace(b"\n", b" ").replace(b"\r", b" "))
    return msgs, books


@fuzz(100)
@given(rows=lobster_rows())
@example(rows=([b"34200.000000001,4,1,9223372036854775808,100,1"], [b"100,1,99,1"]))  # size beyond int64
@example(rows=([b"34200.0,4,1,1,92233720368547758070000,1"], [b"100,1,99,1"]))  # price beyond int64
def test_lobster_rows(workdir: Path, rows: tuple[list[bytes], list[bytes]]) -> None:
    msgs, books = rows
    mp = workdir / "AAPL_2012-06-21_34200000_57600000_message_1.csv"
    bp = workdir / "AAPL_2012-06-21_34200000_57600000_orderbook_1.csv"
    mp.write_bytes(b"".join(m + b"\n" for m in msgs))
    bp.write_bytes(b"".join(b + b"\n" for b in books))
    es = read_or_data_error(lambda: read_lobster(mp, bp))
    if es is None:
        return  # e.g. trailing blank rows make the two files' counts differ: refused with a message
    rejected = sum(es.rejects.get(k, 0) for k in ("malformed_line", "out_of_order_ts", "bad_field"))
    assert es.meta["rows"] == es.meta.get("snapshots", 0) + rejected
    assert es.messages == es.meta.get("snapshots", 0) + es.meta.get("trades", 0)
    _accepted_is_sound(es, mp)


# ---- the stamped JSON line and iter_messages ---------------------------------------------------------

@fuzz(300)
@given(stamp=st.one_of(st.binary(max_size=12), st.integers(-5, 2**70).map(lambda i: str(i).encode()),
                       EDGE_INTS.map(lambda i: str(i).encode())),
       body=st.one_of(st.binary(max_size=30), JSON.map(lambda v: json.dumps(v).encode())),
       last_ts=st.integers(-1, 2**64))
@example(stamp=b"18446744073709551615", body=b"{}", last_ts=-1)  # a stamp beyond int64
def test_stamped_json(stamp: bytes, body: bytes, last_ts: int) -> None:
    """A line is returned (time within int64, not before the last, a JSON object) or counted exactly once."""
    rejects: Counter[str] = Counter()
    out = _stamped_json(stamp, body, last_ts, rejects)
    if out is None:
        assert sum(rejects.values()) == 1 and set(rejects) <= {"malformed_line", "out_of_order_ts"}
    else:
        ts, msg = out
        assert not rejects
        assert 0 < ts <= INT64_MAX and ts >= last_ts and isinstance(msg, dict)


EVENT_ROWS = st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 255), st.integers(-128, 127),
                                st.integers(0, 255), st.integers(-(2**63), INT64_MAX), st.integers(-(2**63), INT64_MAX),
                                st.integers(-(2**63), INT64_MAX), st.integers(-(2**63), INT64_MAX)), max_size=30)


@fuzz(200)
@given(rows=EVENT_ROWS)
def test_iter_messages_any_array(rows: list[tuple]) -> None:
    """Any event array: messages end at FLAG_END rows; every non-placeholder row up to the last end comes out once."""
    ev = np.array(rows, dtype=EVENT_DTYPE)
    msgs = list(iter_messages(ev))
    assert len(msgs) == int(np.count_nonzero(ev["flags"] & FLAG_END))
    ends = np.flatnonzero(ev["flags"] & FLAG_END)
    covered = ev[: ends[-1] + 1] if ends.size else ev[:0]
    assert sum(len(m[4]) for m in msgs) == int(np.count_nonzero((covered["flags"] & FLAG_EMPTY) == 0))


# ---- FlashMM's own .npz -------------------------------------------------------------------------------

def _valid_set() -> EventSet:
    rows = [(1000, KIND_SNAP, 1, 0, 100, 5, 1, 1), (1000, KIND_SNAP, -1, FLAG_END, 101, 5, 1, 1),
            (2000, KIND_TRADE, 1, FLAG_END, 101, 2, 7, 0)]
    return EventSet(np.array(rows, dtype=EVENT_DTYPE), BTCUSDT_SPOT, "binance-spot", ["x.gz"],
                    {"bad_field": 1}, {"lines": 3})


def _npz(path: Path, **arrays: Any) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _header(**changes: Any) -> np.ndarray:
    h = _valid_set().header()
    h.update(changes)
    return np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)


@st.composite
def damaged_npz(draw: st.DrawFn, path: Path) -> str:
    """Write a damaged FlashMM file at `path`; returns what was done (for the failure message)."""
    how = draw(st.sampled_from(["truncate", "flip", "flip", "arrays", "header", "npy", "bytes"]))
    good = _valid_set()
    write_flashmm(good, path)
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: draw(st.integers(0, len(raw) - 1))])
    elif how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            raw = _flip(raw, draw(st.integers(0, len(raw) - 1)), draw(st.integers(0, 7)))
        path.write_bytes(raw)
    elif how == "arrays":
        arrays = {"events": good.events, "header": _header()}
        victim = draw(st.sampled_from(["events", "header", "both"]))
        replacement = draw(st.sampled_from(["missing", "int", "float2d", "str", "empty", "scalar"]))
        for name in (["events", "header"] if victim == "both" else [victim]):
            arrays[name] = {"missing": None, "int": np.arange(5), "float2d": np.zeros((2, 3)),
                            "str": np.array(["a", "b"]), "empty": np.zeros(0, dtype=EVENT_DTYPE),
                            "scalar": np.array(0, dtype=np.uint8)}[replacement]
        _npz(path, **{k: v for k, v in arrays.items() if v is not None})
    elif how == "header":
        field = draw(st.sampled_from(["format_version", "instrument", "source", "files", "rejects", "meta", "raw"]))
        if field == "raw":
            _npz(path, events=good.events, header=np.frombuffer(draw(st.binary(max_size=40)) + b" ", dtype=np.uint8))
        else:
            _npz(path, events=good.events, header=_header(**{field: draw(JSON)}))
    elif how == "npy":  # a single .npy where an .npz belongs
        with open(path, "wb") as fh:
            np.save(fh, draw(st.sampled_from([good.events, np.zeros(3), _header()])))
    else:
        path.write_bytes(draw(st.binary(max_size=300)))
    return how


@fuzz(150)
@given(data=st.data())
def test_flashmm_file_damage(workdir: Path, data: st.DataObject) -> None:
    path = workdir / "events.npz"
    how = data.draw(damaged_npz(path))
    try:
        es = read_flashmm(path)
    except DataError as exc:
        assert str(path) in str(exc), f"{how}: the message must name the file: {exc}"
        return
    _accepted_is_sound(es, path)  # what it accepts is sound


def _central_entry_patch(offset: int, value: bytes) -> Callable[[bytes], bytes]:
    """Overwrite bytes of the first zip central-directory entry (method at +10, flags at +8)."""
    def patch(raw: bytes) -> bytes:
        at = raw.index(b"PK\x01\x02") + offset
        return raw[:at] + value + raw[at + len(value):]
    return patch


def _with_header(**changes: Any) -> Callable[[bytes], bytes]:
    def rewrite(_: bytes) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, events=_valid_set().events, header=_header(**changes))
        return buf.getvalue()
    return rewrite


def _npy(_: bytes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


# Minimal inputs of the bugs found by test_flashmm_file_damage: each escaped read_flashmm as another exception,
# or was accepted and broke later (a header that write_flashmm cannot write back, an instrument with a NaN tick).
@pytest.mark.parametrize("damage, message", [
    (_npy, "single .npy"),  # np.load returns a bare array: TypeError, no context manager
    (_central_entry_patch(10, b"\x63\x00"), "NotImplementedError"),  # compression method 99
    (_central_entry_patch(8, b"\x01\x00"), "encrypted"),  # RuntimeError from zipfile
    (_with_header(rejects=[[1, 2]]), "bad header"),  # dict([[1, 2]]) = {1: 2}: not writable as JSON
    (_with_header(meta=[[1, 2]]), "bad header"),
    (_with_header(files="abc"), "bad header"),  # list("abc") = ["a", "b", "c"]
    (_with_header(source={"a": 1}), "bad header"),
    (_with_header(instrument={"symbol": "X", "base": "X", "quote": "Y", "price_tick": "NaN", "lot_size": "1"}),
     "finite positive"),
    (_with_header(instrument={"symbol": "X", "base": "X", "quote": "Y", "price_tick": "0.01", "lot_size": "0"}),
     "finite positive"),
], ids=["npy", "zip-method", "zip-encrypted", "rejects-pairs", "meta-pairs", "files-str", "source-dict",
        "nan-tick", "zero-lot"])
def test_flashmm_pinned_damage(workdir: Path, damage: Callable[[bytes], bytes], message: str) -> None:
    path = workdir / "pinned.npz"
    write_flashmm(_valid_set(), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        read_flashmm(path)
    assert str(path) in str(err.value)


# ---- configuration -----------------------------------------------------------------------------------

SECTIONS = {name: list(type(getattr(Config(), name)).model_fields) for name in Config.model_fields}
TOML_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x7f"), max_size=8)
TOML_SCALAR = st.one_of(st.integers(-(2**63), INT64_MAX), st.floats(), st.booleans(), TOML_TEXT,
                        st.sampled_from(["sim", "replay", "glft", "symmetric", "v1", "debug", "NaN", "Infinity",
                                         "-0", "1e999", "0.0001", "0", "-1"]))
TOML_VALUE = st.one_of(TOML_SCALAR, TOML_SCALAR, TOML_SCALAR, st.lists(st.integers(-5, 5), max_size=3),
                       st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), st.integers(), max_size=2))


def toml_value(v: Any) -> str:
    """A TOML literal (tomllib has no writer). JSON string escapes are TOML basic-string escapes."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # \uXXXX surrogate pairs are not valid TOML escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


@st.composite
def config_doc(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    names = st.one_of(st.sampled_from(sorted(SECTIONS)), st.from_regex(r"[a-z_]{1,6}", fullmatch=True))
    doc: dict[str, dict[str, Any]] = {}
    for section in draw(st.lists(names, max_size=3, unique=True)):
        keys = st.one_of(st.sampled_from(SECTIONS.get(section, ["x"])), st.from_regex(r"[a-z_]{1,6}", fullmatch=True))
        doc[section] = draw(st.dictionaries(keys, TOML_VALUE, max_size=3))
    return doc


def render_toml(doc: dict[str, dict[str, Any]]) -> str:
    return "".join(f"[{s}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in kv.items()) for s, kv in doc.items())


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


@fuzz(200)
@given(doc=config_doc())
@example(doc={"instrument": {"price_tick": "NaN"}})  # decimal.InvalidOperation escaped load_config
@example(doc={"instrument": {"lot_size": "sNaN"}})
@example(doc={"instrument": {"price_tick": "Infinity"}})  # an infinite tick was accepted
def test_config_documents(workdir: Path, doc: dict[str, dict[str, Any]]) -> None:
    path = workdir / "config.toml"
    path.write_text(render_toml(doc), encoding="utf-8")
    try:
        cfg = load_config(path, environ={})
    except ConfigError as exc:
        assert str(path) in str(exc), exc
        return
    for section, values in doc.items():  # accepted: it is what the file says, nothing dropped or patched
        for key, value in values.items():
            assert _same(getattr(getattr(cfg, section), key), value)
    inst = cfg.instrument
    assert Decimal(inst.price_tick).is_finite() and Decimal(inst.lot_size).is_finite()


@fuzz(100)
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                      config_doc().map(render_toml).flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[:i]))),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_config_invalid_toml(workdir: Path, text: str, raw: bytes | None) -> None:
    """Random text, cut documents and non-UTF-8 bytes: a Config or one ConfigError naming the file."""
    path = workdir / "bad.toml"
    if raw is None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(raw)
    try:
        assert isinstance(load_config(path, environ={}), Config)
    except ConfigError as exc:
        assert str(path) in str(exc)


ENV_NAME = st.one_of(
    st.builds(lambda s, k: f"FLASHMM_{s.upper()}__{k.upper()}", st.sampled_from(sorted(SECTIONS)),
              st.sampled_from(sorted({k for ks in SECTIONS.values() for k in ks}))),
    st.builds(lambda s, k: f"FLASHMM_{s}__{k}", st.from_regex(r"[A-Za-z_]{0,6}", fullmatch=True),
              st.from_regex(r"[A-Za-z_]{0,6}", fullmatch=True)),
    st.sampled_from(["FLASHMM_", "FLASHMM___", "FLASHMM_RUN", "HOME", "FLASHMM_RUN__SEED__X"]),
)
ENV_VALUE = st.one_of(TOML_SCALAR.map(toml_value), st.text(max_size=12),
                      st.sampled_from(["", "[", "1\n[v]", "{}", "nan"]))


@fuzz(200)
@given(env=st.dictionaries(ENV_NAME, ENV_VALUE, max_size=3))
@example(env={"FLASHMM_FOO__BAR": "1"})  # an unknown section from the environment blamed "built-in defaults"
@example(env={"FLASHMM_INSTRUMENT__PRICE_TICK": '"NaN"'})
def test_config_environment_overrides(env: dict[str, str]) -> None:
    """FLASHMM_<SECTION>__<KEY>: a Config, or a ConfigError that names the environment variable at fault."""
    try:
        cfg = load_config(None, environ=env)
    except ConfigError as exc:
        assert "environment FLASHMM_" in str(exc), exc  # no file: the environment is the only source
        return
    assert isinstance(cfg, Config)


# ---- the Sei node double's JSON-RPC server ------------------------------------------------------------

class _ServerThread:
    """A SeiRPCServer on its own event loop in a thread, so synchronous hypothesis tests can talk to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = SeiRPCServer("atlantic-2", max_body_bytes=100_000)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def node() -> Iterator[_ServerThread]:
    s = _ServerThread()
    try:
        yield s
    finally:
        s.close()


def _http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    resp = _http(port, (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                        f"Connection: close\r\n\r\n").encode() + body)
    head, _, payload = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), payload


CODES = {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR}


def _check_response(obj: Any) -> None:
    """A JSON-RPC 2.0 response: jsonrpc, an id unless it is an id-less error, exactly one of result / error."""
    assert isinstance(obj, dict) and obj.get("jsonrpc") == "2.0", obj
    assert ("result" in obj) != ("error" in obj), obj
    if "error" in obj:
        err = obj["error"]
        assert err["code"] in CODES and isinstance(err["message"], str) and err["message"], obj
    else:
        assert "id" in obj


def _check_payload(payload: bytes) -> int:
    """A response body: one response or a batch of them (empty: only notifications). Returns how many."""
    if not payload:
        return 0
    obj = orjson.loads(payload)
    items = obj if isinstance(obj, list) else [obj]
    assert items, "an empty batch response is never sent"
    for item in items:
        _check_response(item)
    return len(items)


def _status_works(port: int) -> None:
    status, payload = _post(port, b'{"jsonrpc":"2.0","id":"alive","method":"status"}')
    assert status == 200 and orjson.loads(payload)["result"]["node_info"]["network"] == "atlantic-2"


REQUEST = st.fixed_dictionaries(
    {},
    optional={"jsonrpc": st.one_of(st.just("2.0"), st.just("2.0"), JSON),
              "id": st.one_of(st.integers(-5, 5), EDGE_INTS, st.text(max_size=4), JSON),
              "method": st.one_of(st.sampled_from(["status", "health", "subscribe", "unsubscribe", "unsubscribe_all",
                                                   ""]), JSON),
              "params": st.one_of(st.just({"query": "tm.event = 'Tx'"}), JSON)},
)
RPC_BODY = st.one_of(REQUEST.map(lambda r: json.dumps(r).encode()),
                     st.lists(REQUEST, max_size=3).map(lambda r: json.dumps(r).encode()),
                     JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=60))


@fuzz(120)
@given(body=RPC_BODY)
@example(body=b'{"jsonrpc":"2.0","id":18446744073709551615,"method":"status"}')
@example(body=b'{"jsonrpc":"2.0","id":-9223372036854775809,"method":"status"}')
def test_rpc_http_post(node: _ServerThread, body: bytes) -> None:
    status, payload = _post(node.port, body)
    if status == 500:
        assert orjson.loads(payload)["error"]["code"] == PARSE_ERROR
    else:
        assert status == 200, (status, payload)
        _check_payload(payload)
    _status_works(node.port)


@fuzz(60)
@given(raw=st.one_of(st.binary(max_size=120),
                     st.builds(lambda m, t, h: m + b" " + t + b" HTTP/1.1\r\n" + h + b"\r\n\r\n",
                               st.sampled_from([b"GET", b"POST", b"PUT", b"\x00"]), st.binary(max_size=20),
                               st.binary(max_size=40).map(lambda b: b.replace(b"\r\n\r\n", b"")))))
def test_rpc_raw_http_garbage(node: _ServerThread, raw: bytes) -> None:
    """Garbage request heads: an HTTP answer or a closed connection, and the server stays up."""
    resp = _http(node.port, raw)
    assert resp == b"" or resp.startswith(b"HTTP/1.1 "), resp[:80]
    _status_works(node.port)


@fuzz(80)
@given(frames=st.lists(st.one_of(RPC_BODY.map(lambda b: b.decode("utf-8", "replace")), st.binary(max_size=60)),
                       min_size=1, max_size=4))
def test_rpc_websocket_frames(node: _ServerThread, frames: list[str | bytes]) -> None:
    """Text and binary frames of anything: only JSON-RPC responses come back, then `status` is answered."""
    with ws_connect(f"ws://127.0.0.1:{node.port}/websocket", open_timeout=5, close_timeout=2) as ws:
        for frame in frames:
            ws.send(frame)
        ws.send('{"jsonrpc":"2.0","id":"alive","method":"status"}')
        while True:
            obj = orjson.loads(ws.recv(timeout=5))
            for item in obj if isinstance(obj, list) else [obj]:
                _check_response(item)
            if isinstance(obj, dict) and obj.get("id") == "alive" and "result" in obj:
                break
    _status_works(node.port)


QUERY_PART = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True),
    st.sampled_from(["=", "<", "<=", ">", ">=", "CONTAINS", "EXISTS", "AND", "'Tx'", "''", "'a b'", "5", "-1.5",
                     "TIME 2023-01-01T00:00:00Z", "TIME 2023-13-45T99:00:00Z", "DATE 2023-02-30", "DATE 2023-01-01",
                     "TIME 2023-01-01T00:00:00.123456789+05:00", "tm.event", "'", "\x00", "1e5", "AND AND"]),
)
QUERY = st.one_of(st.lists(QUERY_PART, max_size=8).map(" ".join), st.text(max_size=30))
EVENT_VALUE = st.one_of(st.text(max_size=6), st.sampled_from(["5", "NaN", "sNaN", "1e999999", "2023-01-01",
                                                             "2023-01-01T00:00:00Z"]))
EVENTS = st.dictionaries(st.sampled_from(["tm.event", "a", "a.b", "tx.height", "TIME"]),
                         st.lists(EVENT_VALUE, max_size=3), max_size=3)


@fuzz(300)
@given(text=QUERY, events=EVENTS)
def test_query_grammar(text: str, events: dict[str, list[str]]) -> None:
    """A Query or QueryError; an accepted query's normal form parses to itself and matching never raises."""
    try:
        q = Query(text)
    except QueryError as exc:
        assert str(exc)
        return
    assert str(Query(str(q))) == str(q)
    assert q.matches(events) in (True, False)


@fuzz(40)
@given(query=QUERY)
def test_rpc_websocket_subscribe_queries(node: _ServerThread, query: str) -> None:
    """`subscribe` with any query text answers {} or a JSON-RPC error (a bad query is -32603 with the reason)."""
    with ws_connect(f"ws://127.0.0.1:{node.port}/websocket", open_timeout=5, close_timeout=2) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"query": query}}))
        obj = orjson.loads(ws.recv(timeout=5))
    _check_response(obj)
    try:
        Query(query)
        ok = len(query) <= node.server.max_query_length
    except QueryError:
        ok = False
    assert ("result" in obj) == ok, obj


# ---- Sei Dec and transactions -------------------------------------------------------------------------

DEC_TEXT = st.one_of(st.text(max_size=25),
                     st.from_regex(r"-?[0-9]{0,24}(\.[0-9]{0,22})?([eE][+-]?[0-9]{1,10})?", fullmatch=True),
                     st.sampled_from(["NaN", "sNaN", "Infinity", "-0", "0E-999999999", "1E+99999999", "1E-30"]))


@fuzz(400)
@given(s=DEC_TEXT)
@example(s="1E+99999999")  # hung: 10**(exponent + 18) was computed before any check
@example(s="0E-999999999")  # hung the same way on the divisor
@example(s="1E-999999999")
def test_dec_from_json(s: str) -> None:
    try:
        d = dec_from_json(s)
    except ValueError as exc:
        assert str(exc)
        return
    assert d.is_finite() and d >= 0
    assert dec_from_json(dec_to_json(d)) == d == Decimal(s)


@fuzz(300)
@given(s=st.one_of(DEC_TEXT, st.integers(-(10**40), 10**40).map(str)), allow_negative=st.booleans())
def test_dec_from_wire(s: str, allow_negative: bool) -> None:
    try:
        d = dec_from_wire(s, allow_negative=allow_negative)
    except ValueError as exc:
        assert str(exc)
        return
    assert d == Decimal(f"{int(s or '0')}E-18")
    if d >= 0:
        assert dec_to_wire(d) == str(abs(int(s or "0")))


@fuzz(50)
@given(x=st.one_of(st.none(), st.integers(), st.binary(max_size=4), st.floats()))
def test_dec_from_json_non_strings(x: Any) -> None:
    with pytest.raises(ValueError):
        dec_from_json(x)


_SIGNER = Signer("01" * 32, "atlantic-2")


def _real_tx() -> bytes:
    from flashmm.venues.sei.schema import MsgPlaceOrders, PositionDirection, new_order

    order = new_order(account=_SIGNER.address, contract_addr="sei1contract", price=Decimal("0.4125"),
                      quantity=Decimal("10"), price_denom="uusdc", asset_denom="usei", direction=PositionDirection.LONG)
    return build_tx(_SIGNER, [MsgPlaceOrders(creator=_SIGNER.address, orders=[order], contractAddr="sei1contract")],
                    account_number=5, sequence=3, gas_limit=120_000, fee_usei=8000, memo="fuzz")


_TX = _real_tx()


@fuzz(300)
@given(raw=st.one_of(st.binary(max_size=200),
                     st.builds(lambda cut: _TX[:cut], st.integers(0, len(_TX))),
                     st.builds(lambda i, bit: _flip(_TX, i, bit), st.integers(0, len(_TX) - 1), st.integers(0, 7)),
                     st.builds(lambda i, junk: _TX[:i] + junk + _TX[i:], st.integers(0, len(_TX)),
                               st.binary(max_size=8))))
def test_decode_tx(raw: bytes) -> None:
    """Random and damaged tx bytes: DecodedTx or ValueError; the signature check answers a bool."""
    try:
        decoded = decode_tx(raw)
    except ValueError as exc:
        assert str(exc)
    else:
        assert decoded.fee_usei >= 0 and isinstance(decoded.pubkey, bytes)
    with contextlib.suppress(ValueError):
        assert isinstance(memo_of(raw), str)
    ok = verify_tx_signature(raw, "atlantic-2", 5)
    assert ok in (True, False)
    if raw == _TX:
        assert ok


# ---- the engine never dies of bad market data -----------------------------------------------------------

PRICE = st.one_of(st.integers(-3, 3), st.integers(3900, 4100), st.sampled_from([0, -1, 2**62, INT64_MAX]))
LOTS = st.one_of(st.integers(-2, 3), st.integers(1, 5000), st.sampled_from([0, -1, 2**62]))
LEVELS = st.lists(st.tuples(PRICE, LOTS), max_size=5)
SEQ = st.one_of(st.integers(-2, 30), st.sampled_from([INT64_MAX, -(2**63)]))
TS = st.integers(0, 2**62)
ABSURD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10).map(float))


CLIENT_ID = st.one_of(st.integers(0, 40), st.integers(-5, 10**6))  # our ids are small sequential numbers
MARKET_EVENT = st.one_of(
    st.builds(BookSnapshot, SEQ, LEVELS, LEVELS, TS),
    st.builds(BookDiff, SEQ, SEQ, LEVELS, LEVELS, TS),
    st.builds(BookDiff, SEQ, SEQ, LEVELS, LEVELS, TS),
    st.builds(Trade, ABSURD, LOTS, st.sampled_from([None, Side.BUY, Side.SELL]), TS),
    st.builds(Fill, CLIENT_ID, st.sampled_from(list(Side)), st.floats(3900, 4100), st.integers(1, 50),
              st.floats(-1, 1), st.booleans(), TS, st.booleans()),
    st.builds(OrderAck, CLIENT_ID, st.integers(0, 10**6), TS),
    st.builds(OrderReject, CLIENT_ID, st.text(max_size=10), TS),
    st.builds(CancelAck, CLIENT_ID, TS),
    st.builds(CancelReject, CLIENT_ID, st.text(max_size=10), TS),
    st.builds(FeeCharge, st.floats(-1, 1), st.text(max_size=5), TS),
    st.builds(VenueStatus, st.booleans(), st.integers(0, 100), st.text(max_size=5), TS),
)


def _book_is_sound(book: L2Book) -> None:
    """No state patched in silently: levels are positive prices with positive sizes; a usable book is not crossed."""
    for side in (book.bids, book.asks):
        assert all(p > 0 and q > 0 for p, q in side.items()), dict(side)
    if not book.stale:
        assert not book.crossed()


def _bad_snapshot(snap: BookSnapshot) -> bool:
    """A level with size or price <= 0, or a price listed twice on one side (which size would be true?)."""
    return any(p <= 0 or q <= 0 for side in (snap.bids, snap.asks) for p, q in side) or any(
        len({p for p, _ in side}) != len(side) for side in (snap.bids, snap.asks))


def _book_counts(c: dict[str, int]) -> int:
    return c["book_updates"] + sum(n for k, n in c.items() if k.startswith("book_reject_"))


@fuzz(120)
@given(batches=st.lists(st.lists(MARKET_EVENT, max_size=8), min_size=1, max_size=4))
# minimal inputs of the bug this test found: a book whose mid is 0 (non-positive prices) divided the engine by zero
@example(batches=[[BookSnapshot(1, [(-1, 5)], [(1, 5)], 0)]])
@example(batches=[[BookSnapshot(2, [(0, 5)], [(0, 5)], 0)]])
@example(batches=[[BookSnapshot(3, [(4000, 5), (4000, 7)], [(4001, 5)], 0)]])  # a level listed twice
@example(batches=[[OrderReject(7, "", 0)]])  # a reject for an acknowledged order: InvalidTransition killed the engine
def test_engine_survives_bad_market_data(batches: list[list[Any]]) -> None:
    engine, _ = make_engine(seed=3)
    run_for(engine, 2.0)  # a warm engine: book synced, our orders resting
    for batch in batches:
        before, raw_before = engine.all_counters(), dict(engine.counters)
        # our order set only shrinks within a batch (new orders come after it), so unknown now = unknown then
        unknown_acks = sum(isinstance(e, OrderAck) and e.client_id not in engine.oms.orders for e in batch)
        unknown_fills = sum(isinstance(e, Fill) and e.client_id not in engine.oms.orders for e in batch)
        engine.on_batch(batch)
        after, raw = engine.all_counters(), engine.counters  # (all_counters' "fills" are the OMS's: known orders)
        assert raw["events"] == raw_before["events"] + len(batch)
        assert raw["trades"] == raw_before["trades"] + sum(isinstance(e, Trade) for e in batch)
        assert raw["fills"] == raw_before["fills"] + sum(isinstance(e, Fill) for e in batch)
        assert raw["venue_rejects"] == raw_before["venue_rejects"] + sum(isinstance(e, OrderReject) for e in batch)
        assert after.get("unknown_ack", 0) >= before.get("unknown_ack", 0) + unknown_acks
        assert after.get("unknown_fill", 0) >= before.get("unknown_fill", 0) + unknown_fills
        book_msgs = sum(isinstance(e, (BookSnapshot, BookDiff)) for e in batch)
        refused = sum(_bad_snapshot(e) for e in batch if isinstance(e, BookSnapshot))
        assert sum(after.get(f"book_reject_snapshot_{k}", 0) - before.get(f"book_reject_snapshot_{k}", 0)
                   for k in ("bad_size", "bad_price", "duplicate_level")) == refused, "a malformed snapshot is refused"
        assert _book_counts(after) - _book_counts(before) >= book_msgs, "a book message is applied or counted"
        _book_is_sound(engine.book)
    assert not engine.fault
    run_for(engine, 1.0)  # and it goes on trading on the real feed afterwards
    _book_is_sound(engine.book)


@st.composite
def replay_set(draw: st.DrawFn) -> EventSet:
    """An arbitrary recording (time-ordered, last row ends a message) for the replay venue; sides may be bad."""
    n = draw(st.integers(1, 40))
    rows, ts = [], 1_000_000_000
    for i in range(n):
        ts += draw(st.integers(0, 200_000_000))
        kind = draw(st.sampled_from([KIND_SNAP, KIND_SNAP, KIND_DIFF, KIND_DIFF, KIND_TRADE, KIND_BBO]))
        end = i == n - 1 or draw(st.booleans())
        flags = (FLAG_END if end else 0) | (FLAG_EMPTY if draw(st.integers(0, 9)) == 0 else 0)
        side = draw(st.one_of(*[st.sampled_from([-1, 1, 0])] * 9, st.integers(-128, 127)))
        rows.append((ts, kind, side, flags, draw(PRICE), draw(LOTS), draw(SEQ), draw(SEQ)))
    return EventSet(np.array(rows, dtype=EVENT_DTYPE), BTCUSDT_SPOT, "fuzz", [])


@fuzz(60)
@given(es=replay_set())
@example(es=EventSet(np.array([(1, KIND_TRADE, 5, FLAG_END, 100, 1, 1, 0)], dtype=EVENT_DTYPE),
                     BTCUSDT_SPOT, "fuzz", []))  # side 5 passed read_flashmm, then KeyError in replay
def test_engine_on_replayed_garbage(workdir: Path, es: EventSet) -> None:
    """A recording of garbage is refused by read_flashmm, or replays to the end: no fault, no crash."""
    path = workdir / "replay.npz"
    write_flashmm(es, path)
    try:
        es = read_flashmm(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    venue = ReplayVenue(es, ReplayConfig(latency_ms=1.0))
    engine = Engine(Config(), venue, audit=AuditLog(None), seed=1)
    asyncio.run(engine.run(None))
    assert not engine.fault
    assert venue.messages_done == venue.messages_total
    _book_is_sound(engine.book)


# ============================================================ the Sei connector's inputs from a node ======
def _sei_message() -> st.SearchStrategy:
    """WebSocket messages as a node (or something pretending to be one) might send them: mostly the shape of
    an event push with fields replaced by junk, sometimes any JSON, sometimes bytes that are not JSON."""
    header = st.fixed_dictionaries({"header": st.fixed_dictionaries({"height": one_of_or_junk(
        st.integers(-3, 2**64).map(str))})})
    tx_result = st.fixed_dictionaries({
        "height": one_of_or_junk(st.integers(0, 50).map(str)),
        "result": one_of_or_junk(st.fixed_dictionaries({"code": JUNK, "codespace": JUNK, "log": JUNK})),
    })
    events = st.dictionaries(
        st.sampled_from(["tm.event", "tx.hash", "tx.height", "place_order.order_id", "message.sender"]),
        one_of_or_junk(st.lists(st.one_of(st.sampled_from(["Tx", "NewBlockHeader", "ABC", "FF" * 32]),
                                          st.integers(-1, 2**64).map(str)), max_size=3)),
        max_size=5)
    push = st.fixed_dictionaries({
        "jsonrpc": st.just("2.0"), "id": JUNK,
        "result": one_of_or_junk(st.fixed_dictionaries({
            "query": st.text(max_size=10),
            "data": one_of_or_junk(st.fixed_dictionaries({"type": st.text(max_size=20), "value": one_of_or_junk(
                st.one_of(header, st.fixed_dictionaries({"TxResult": one_of_or_junk(tx_result)})))})),
            "events": one_of_or_junk(events),
        })),
    })
    dumps = lambda v: json.dumps(v).encode()  # noqa: E731 - big ints and NaN as a sloppy peer would send them
    return st.one_of(push.map(dumps), JSON.map(dumps), st.binary(max_size=40))


@fuzz(300)
@given(raw=_sei_message())
@example(raw=json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"query": "q", "data": {"type": "t", "value": {
    "TxResult": 7}}, "events": {"tm.event": ["Tx"], "tx.hash": ["FF" * 32]}}}).encode())  # our tx, junk result
@example(raw=json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"query": "q", "data": {"type": "t", "value": {
    "TxResult": {"height": "x", "result": []}}}, "events": {"tm.event": ["Tx"], "tx.hash": ["FF" * 32]}}}).encode())
def test_sei_connector_survives_any_node_message(raw: bytes):
    """Every WebSocket message is applied, or counted as a rejected feed message; a block header with a
    usable height reaches the block logic; nothing else escapes (the feed loop would treat it as a dead
    socket and reconnect, which a bad message must not cause)."""
    from flashmm.core.domain import OrderType, PlaceOrder
    from flashmm.venues.sei.tx import Signer
    from flashmm.venues.sei.venue import SeiVenue, _InFlight, _Live

    async def main() -> None:
        venue = SeiVenue(Config(), Signer("7" * 64, "arctic-1"))
        heights: list[int] = []

        async def fake_catch_up(latest: int, initial: bool) -> None:
            heights.append(latest)

        venue._catch_up = fake_catch_up  # no network: record what would be fetched
        venue._live[1] = _Live(1, Side.BUY, OrderType.LIMIT, 3990, 10, 10)
        venue._inflight["FF" * 32] = _InFlight("FF" * 32, [PlaceOrder(1, Side.BUY, 3990, 10)], [], 0, 1000)
        before = dict(venue.stats.rejects)
        await venue._on_ws_message(raw)
        rejected = venue.stats.rejects.get("feed_message", 0) - before.get("feed_message", 0)
        handled = bool(heights) or venue._out or "FF" * 32 not in venue._inflight
        assert rejected in (0, 1)
        assert all(h > 0 for h in heights)
        if not rejected:  # accepted: a header, our tx's result, or a well-formed event of no interest
            msg = json.loads(raw)
            assert isinstance(msg, dict) and isinstance(msg.get("result"), dict) or handled

    asyncio.run(main())


@fuzz(150)
@given(body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=60)),
       head=st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 500 Internal Server Error", b"garbage", b""]),
       length=st.one_of(st.none(), st.integers(-5, 200)))
def test_sei_rpc_client_answers_are_results_or_typed_errors(body: bytes, head: bytes, length: int | None):
    """Whatever an endpoint answers, a JSON-RPC call returns a result or raises RPCCallError (an answer)
    or TransportError (no usable answer, counted against the endpoint) — nothing else, and no hang."""
    from flashmm.venues.sei.rpc_client import EndpointPool, RPCCallError, RPCClient, TransportError

    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                n = len(body) if length is None else length
                writer.write(head + b"\r\nContent-Length: " + str(n).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RPCClient(EndpointPool([f"http://127.0.0.1:{port}"]), timeout_s=0.5)
        try:
            await client.call("status")
        except (RPCCallError, TransportError):
            pass
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 10))
