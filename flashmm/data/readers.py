"""Readers: recorded market data files -> one time-ordered `EventSet` (see `flashmm.data.events`).

Every reader is faithful: it converts, it does not repair. Sequence gaps, duplicate depth diffs and crossed
books pass through and are detected by `L2Book` in the replay. Input that cannot be converted (a truncated
or malformed line, a missing field, a bad number, a timestamp going backwards, an unknown stream) is
skipped and counted in `EventSet.rejects` under its own key, never raised; each kind is logged once, with
its count, at the end of the file set. Only a file that cannot be read at all raises `DataError`.

Timestamps are the recorder's local receive time where the recording has one (Binance ns, Bitstamp ms),
else the exchange time (LOBSTER: seconds after midnight New York time on the date in the file name).

Binance (`read_binance`, market "spot" or "usdm"): `<recv_ns> <json>` lines, several files of one stream
read as one stream in the order given. Binance's sync procedure runs here: depth diffs are buffered until
the REST snapshot line (`{"lastUpdateId": ...}`); the SNAP message is emitted at the snapshot line's time,
then the buffered diffs with u > lastUpdateId (at the snapshot's time), then everything as it comes (trades
and bookTickers are emitted as they come, also before the snapshot). Diffs
with u <= lastUpdateId of the latest snapshot are dropped (counted in meta, not a reject). DIFF rows carry
seq=U, seq2=u (spot) or seq=pu+1, seq2=u (USD-M), so that L2Book's "first_seq > seq + 1 => gap" rule is
the venue's own chain rule. A diff that changes no level is kept as one FLAG_EMPTY row (side 0, qty 0),
like an empty snapshot, so that the sequence chain stays whole. Quantities off the lot grid are rounded
up to the next lot (a positive size never becomes 0) and counted as "qty_off_lot_grid" (kept, not
skipped). A repeated trade id is "duplicate_trade" (dropped).

Bitstamp 2015 (`read_bitstamp`): `order_book` lines -> SNAP (seq = snapshot counter), `trade` -> TRADE with
the aggressor inferred (see `read_bitstamp`); L3 order lines are used for that inference only.

LOBSTER (`read_lobster`): orderbook row k -> SNAP at message k's time (seq = k, 1-based), executions
(type 4, 5) -> TRADE (seq = k) before that SNAP, aggressor = -direction; halts (type 7) counted "halt".

FlashMM's own format (`write_flashmm` / `read_flashmm`): an `.npz` with `events` (EVENT_DTYPE) and `header`
(the JSON of `EventSet.header()` as uint8), no pickle; the reader validates everything it loads.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flashmm.data.events import (
    EVENT_DTYPE,
    FLAG_EMPTY,
    FLAG_END,
    FORMAT_VERSION,
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
    EventWriter,
    instrument_from_header,
)
from flashmm.domain import BookDiff, BookSnapshot, Instrument
from flashmm.telemetry.logging import get_logger

READER_VERSION = 1  # bump when any reader's output for the same input changes (invalidates caches)

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
# Every number ends up in an int64 column; anything larger is a bad field (ids keep room for pu + 1).
_INT64_MAX = 2**63 - 1


class DataError(Exception):
    """A data file that cannot be read at all (missing, not the expected container, corrupt header)."""


# ---- instruments ----------------------------------------------------------------------------------


def binance_instrument(market: str) -> Instrument:
    if market == "spot":
        return Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
    if market == "usdm":
        return Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.001"))
    raise ValueError(f"unknown Binance market {market!r}: expected 'spot' or 'usdm'")


def bitstamp_instrument() -> Instrument:
    return Instrument("BTCUSD", "BTC", "USD", Decimal("0.01"), Decimal("0.00000001"))


# ---- decimal strings -> integer units -------------------------------------------------------------


class _Units:
    """Decimal strings -> integer multiples of `step` (a tick or a lot), cached per string.

    `exact(s)` raises ValueError when `s` is not a non-negative multiple of the step; `ceil(s)` returns
    (units rounded up, was_off_grid) and raises ValueError only for a bad or negative number. Both raise
    ValueError beyond int64 (the event columns)."""

    __slots__ = ("step", "_scale", "_exact", "_ceil")

    _NUM = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")

    def __init__(self, step: Decimal) -> None:
        self.step = step
        sign, digits, exp = step.normalize().as_tuple()
        # a power of ten (0.01, 1, ...): pure string arithmetic; otherwise exact Decimal arithmetic
        self._scale = -int(exp) if (digits == (1,) and not sign and int(exp) <= 0) else None
        self._exact: dict[str, int] = {}
        self._ceil: dict[str, tuple[int, bool]] = {}

    def _convert(self, s: str) -> tuple[int, bool]:
        if not isinstance(s, str) or self._NUM.fullmatch(s) is None:
            raise ValueError(f"not a non-negative decimal number: {s!r}")
        scale = self._scale
        if scale is not None:
            i, _, f = s.partition(".")
            v = int((i or "0") + (f.ljust(scale, "0") if len(f) <= scale else f[:scale]))
            if v >= _INT64_MAX:  # >= leaves room for ceil's + 1
                raise ValueError(f"{s} is out of range")
            return v, len(f) > scale and f[scale:].strip("0") != ""
        try:
            q = Decimal(s) / self.step
        except InvalidOperation as exc:
            raise ValueError(f"bad number {s!r}") from exc
        floor = int(q)
        if floor >= _INT64_MAX:
            raise ValueError(f"{s} is out of range")
        return floor, q != floor

    def exact(self, s: str) -> int:
        v = self._exact.get(s)
        if v is None:
            v, off = self._convert(s)
            if off:
                raise ValueError(f"{s} is not a multiple of {self.step}")
            if len(self._exact) > 500_000:
                self._exact.clear()
            self._exact[s] = v
        return v

    def ceil(self, s: str) -> tuple[int, bool]:
        r = self._ceil.get(s)
        if r is None:
            v, off = self._convert(s)
            r = (v + 1, True) if off else (v, False)
            if len(self._ceil) > 500_000:
                self._ceil.clear()
            self._ceil[s] = r
        return r


def _is_int(x: Any) -> bool:
    """An integer id that fits the int64 columns (orjson reads integers up to 2**64 - 1 as int)."""
    return isinstance(x, int) and not isinstance(x, bool) and -_INT64_MAX <= x < _INT64_MAX


class _BadField(Exception):
    """A well-formed line whose content cannot be converted (missing field, bad number)."""


class _Writer(EventWriter):
    """EventWriter that keeps a message with no rows as one FLAG_EMPTY row for DIFFs too (the sequence
    numbers it carries matter to the book's chain rule)."""

    def message(self, ts_ns: int, kind: int, rows: list[tuple[int, int, int]], seq: int = 0, seq2: int = 0) -> None:
        if not rows and kind == KIND_DIFF:
            self._rows.append((ts_ns, kind, 0, FLAG_EMPTY | FLAG_END, 0, 0, seq, seq2))
            self.last_ts = ts_ns
            if len(self._rows) >= self._chunk:
                self._flush()
            return
        super().message(ts_ns, kind, rows, seq, seq2)


def _log_rejects(source: str, files: list[str], rejects: dict[str, int]) -> None:
    if not rejects:
        return
    log = get_logger("data")
    for kind, n in sorted(rejects.items()):
        log.warning("input_rejected", source=source, kind=kind, count=n, files=files)


def _open_lines(path: Path, opener: Callable[[Path], Any], what: str,
                rejects: Counter) -> Iterator[bytes]:
    """Lines of a compressed text file. A file that cannot be opened or is not `what` at all raises
    DataError; a stream that breaks after some lines (truncated, bad CRC) ends with a "truncated_file"
    reject and keeps the lines read before it."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    n = 0
    try:
        fh = opener(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc}") from exc
    with fh:
        while True:
            try:
                line = fh.readline()
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                if n == 0:
                    raise DataError(f"{path}: not a readable {what} file: {exc}") from exc
                rejects["truncated_file"] += 1
                get_logger("data").warning("file_truncated", file=str(path), after_lines=n, error=str(exc))
                return
            if not line:
                return
            n += 1
            yield line


# ---- reading events back as messages -----------------------------------------------------------


def _stamped_json(stamp: bytes, body: bytes, last_ts: int, rejects: Counter,
                  max_ts: int = _INT64_MAX) -> tuple[int, dict] | None:
    """A recording line's receive time and JSON object; None (counted) when malformed or out of order.
    `max_ts`: the largest stamp whose time in ns still fits int64 (a ms stamp is multiplied by 10**6)."""
    try:
        ts = int(stamp)
        msg = orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        rejects["malformed_line"] += 1
        return None
    if ts <= 0 or ts > max_ts or not isinstance(msg, dict):
        rejects["malformed_line"] += 1
        return None
    if ts < last_ts:
        rejects["out_of_order_ts"] += 1
        return None
    return ts, msg


def iter_messages(events: np.ndarray) -> Iterator[tuple[int, int, int, int, list[tuple[int, int, int]]]]:
    """(kind, ts_ns, seq, seq2, rows) per message, rows = [(side, price, qty)] without FLAG_EMPTY rows."""
    if events.size == 0:
        return
    ends = (np.flatnonzero(events["flags"] & FLAG_END) + 1).tolist()
    kind = events["kind"].tolist()
    ts = events["ts_ns"].tolist()
    side = events["side"].tolist()
    price = events["price"].tolist()
    qty = events["qty"].tolist()
    seq = events["seq"].tolist()
    seq2 = events["seq2"].tolist()
    empty = (events["flags"] & FLAG_EMPTY).tolist()
    start = 0
    for end in ends:
        rows = [(side[i], price[i], qty[i]) for i in range(start, end) if not empty[i]]
        yield kind[start], ts[start], seq[start], seq2[start], rows
        start = end


def book_event(kind: int, ts_ns: int, seq: int, seq2: int,
               rows: list[tuple[int, int, int]]) -> BookSnapshot | BookDiff:
    """A SNAP or DIFF message as the domain event L2Book applies."""
    bids = [(p, q) for s, p, q in rows if s > 0]
    asks = [(p, q) for s, p, q in rows if s < 0]
    if kind == KIND_SNAP:
        return BookSnapshot(seq, bids, asks, ts_ns)
    if kind == KIND_DIFF:
        return BookDiff(seq, seq2, bids, asks, ts_ns)
    raise ValueError(f"message kind {kind} is not a book message")


# ---- Binance --------------------------------------------------------------------------------------


def read_binance(paths: list[Path], market: str) -> EventSet:
    """Binance spot ("spot", BTCUSDT tick 0.01 / lot 0.00001) or USD-M ("usdm", tick 0.1 / lot 0.001)
    websocket recordings, read in the given order as one stream. See the module docstring."""
    inst = binance_instrument(market)
    usdm = market == "usdm"
    source = f"binance-{market}"
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("read_binance: no files given")
    px = _Units(inst.price_tick)
    lot = _Units(inst.lot_size)
    rejects: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    w = _Writer()
    symbol = inst.symbol.lower()

    snap_id: int | None = None  # lastUpdateId of the latest snapshot
    pending: list[tuple[int, int, int, int, list[tuple[int, int, int]]]] = []  # (ts, seq, seq2, u, rows)
    first_diff: dict[str, int] | None = None
    seen_trades: set[int] = set()
    last_ts = -1

    def qty(s: str) -> int:
        v, off = lot.ceil(s)
        if off:
            rejects["qty_off_lot_grid"] += 1
        return v

    def levels(raw: Any, side: int, out: list[tuple[int, int, int]]) -> None:
        if not isinstance(raw, list):
            raise _BadField("levels are not a list")
        p2t = px.exact
        for lv in raw:
            if not isinstance(lv, list) or len(lv) < 2:
                raise _BadField(f"bad level {lv!r}")
            out.append((side, p2t(lv[0]), qty(lv[1])))

    def emit_diff(ts: int, seq: int, seq2: int, u: int, rows: list) -> None:
        nonlocal first_diff
        if first_diff is None:
            first_diff = {"seq": seq, "seq2": seq2, "lastUpdateId": snap_id}
        w.message(ts, KIND_DIFF, rows, seq, seq2)

    for path in paths:
        opener = (lambda p: gzip.open(p, "rb"))
        for line in _open_lines(path, opener, "gzip", rejects):
            counts["lines"] += 1
            sp = line.find(b" ")
            parsed = _stamped_json(line[:sp], line[sp + 1:], last_ts, rejects) if sp > 0 else None
            if parsed is None:
                if sp <= 0:
                    rejects["malformed_line"] += 1
                continue
            ts, msg = parsed
            last_ts = ts
            try:
                stream = msg.get("stream")
                if stream is None:
                    if "lastUpdateId" not in msg:
                        rejects["unknown_stream"] += 1
                        continue
                    sid = msg["lastUpdateId"]
                    if not _is_int(sid):
                        raise _BadField("lastUpdateId")
                    rows: list[tuple[int, int, int]] = []
                    levels(msg["bids"], 1, rows)
                    levels(msg["asks"], -1, rows)
                    w.message(ts, KIND_SNAP, rows, sid, sid)
                    counts["snapshots"] += 1
                    first = snap_id is None
                    snap_id = sid
                    first_diff = None
                    if first:
                        counts["snapshot_line"] = counts["lines"]
                        for _, seq, seq2, u, prow in pending:
                            if u <= sid:
                                counts["diffs_dropped_before_sync"] += 1
                            else:
                                emit_diff(ts, seq, seq2, u, prow)  # at the snapshot's time, not earlier
                        pending.clear()
                    continue
                if not isinstance(stream, str):
                    raise _BadField("stream")
                sym, _, kind = stream.partition("@")
                data = msg["data"]
                if not isinstance(data, dict):
                    raise _BadField("data")
                if sym != symbol:
                    rejects["unknown_stream"] += 1
                    continue
                if kind.startswith("depth"):
                    U, u = data["U"], data["u"]
                    if not (_is_int(U) and _is_int(u)):
                        raise _BadField("U/u")
                    if usdm:
                        pu = data["pu"]
                        if not _is_int(pu):
                            raise _BadField("pu")
                        seq = pu + 1
                    else:
                        seq = U
                    rows = []
                    levels(data["b"], 1, rows)
                    levels(data["a"], -1, rows)
                    counts["depth_diffs"] += 1
                    if not rows:
                        counts["empty_diffs"] += 1
                    if snap_id is None:
                        pending.append((ts, seq, u, u, rows))
                    elif u <= snap_id:
                        counts["diffs_dropped_before_sync"] += 1
                    else:
                        emit_diff(ts, seq, u, u, rows)
                elif kind == "trade":
                    t, m = data["t"], data["m"]
                    if not _is_int(t) or not isinstance(m, bool):
                        raise _BadField("t/m")
                    row = (-1 if m else 1, px.exact(data["p"]), qty(data["q"]))
                    if row[1] <= 0 or row[2] <= 0:  # a trade of nothing, or at no price
                        raise _BadField("p/q")
                    if t in seen_trades:
                        rejects["duplicate_trade"] += 1
                        continue
                    seen_trades.add(t)
                    counts["trades"] += 1
                    w.message(ts, KIND_TRADE, [row], t, 0)
                elif kind == "bookTicker":
                    u = data["u"]
                    if not _is_int(u):
                        raise _BadField("u")
                    rows = [(1, px.exact(data["b"]), qty(data["B"])), (-1, px.exact(data["a"]), qty(data["A"]))]
                    counts["book_tickers"] += 1
                    w.message(ts, KIND_BBO, rows, u, 0)
                else:
                    rejects["unknown_stream"] += 1
            except (_BadField, KeyError, ValueError, TypeError):
                rejects["bad_field"] += 1

    if pending:  # no snapshot anywhere: these diffs cannot be applied to anything
        rejects["diff_without_snapshot"] += len(pending)
    files = [str(p) for p in paths]
    meta: dict[str, Any] = dict(counts)
    meta["market"] = market
    meta["sync"] = first_diff
    meta["trade_ids"] = len(seen_trades)
    es = EventSet(w.array(), inst, source, files, dict(sorted(rejects.items())), meta)
    _log_rejects(source, files, es.rejects)
    return es


# ---- Bitstamp 2015 ---------------------------------------------------------------------------------

_L3_WINDOW_MS = 100


def read_bitstamp(path: Path) -> EventSet:
    """Bitstamp BTC/USD capture (`<recv_ms> <event_type> <json>` lines, xz).

    `order_book` -> SNAP (top 20 a side, seq = running snapshot counter). `trade` -> TRADE (seq = trade id)
    with the aggressor inferred, in this order: price <= the last snapshot's best bid -> sell (-1); price
    >= its best ask -> buy (+1); otherwise the nearest order_changed/order_deleted at the trade price
    within 100 ms before the trade line (order_type 0: a bid was hit -> -1; 1 -> +1); else 0, counted
    "trade_side_unknown". `meta["side_from"]` counts how many sides each rule gave, and
    `meta["book_rule_disagrees_with_l3"]` how many book-rule sides an L3 match would contradict (the last
    snapshot can be seconds old). L3 lines emit no rows.
    """
    path = Path(path)
    inst = bitstamp_instrument()
    source = "bitstamp"
    px = _Units(inst.price_tick)
    lot = _Units(inst.lot_size)
    tick_f = float(inst.price_tick)
    lot_f = float(inst.lot_size)
    rejects: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    side_from: Counter[str] = Counter({"book_bid": 0, "book_ask": 0, "l3": 0, "unknown": 0})
    w = _Writer()
    best_bid: int | None = None
    best_ask: int | None = None
    snaps = 0
    recent: deque[tuple[int, int, int]] = deque()  # (ts_ms, price_ticks, order_type) of changes/deletes
    seen_trades: set[int] = set()
    last_ts = -1

    def levels(raw: Any, side: int, out: list[tuple[int, int, int]]) -> list[int]:
        if not isinstance(raw, list):
            raise _BadField("levels")
        prices = []
        for lv in raw:
            if not isinstance(lv, list) or len(lv) < 2:
                raise _BadField("level")
            p = px.exact(lv[0])
            v, off = lot.ceil(lv[1])
            if off:
                rejects["qty_off_lot_grid"] += 1
            out.append((side, p, v))
            prices.append(p)
        return prices

    def to_units(x: Any, step_f: float, what: str) -> int:
        if isinstance(x, str):
            x = float(x)
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not np.isfinite(x) or x < 0:
            raise _BadField(what)
        v = x / step_f
        if v >= _INT64_MAX:
            raise _BadField(f"{what} {x} out of range")
        r = round(v)
        if abs(v - r) > 1e-6 * max(1.0, abs(v)):
            raise _BadField(f"{what} {x} off the grid")
        return int(r)

    for line in _open_lines(path, lambda p: lzma.open(p, "rb"), "xz", rejects):
        counts["lines"] += 1
        parts = line.split(b" ", 2)
        if len(parts) != 3:
            rejects["malformed_line"] += 1
            continue
        parsed = _stamped_json(parts[0], parts[2], last_ts, rejects, _INT64_MAX // NS_PER_MS)
        if parsed is None:
            continue
        ts_ms, msg = parsed
        last_ts = ts_ms
        ts = ts_ms * NS_PER_MS
        etype = parts[1]
        try:
            if etype == b"order_book":
                rows: list[tuple[int, int, int]] = []
                bids = levels(msg["bids"], 1, rows)
                asks = levels(msg["asks"], -1, rows)
                snaps += 1
                w.message(ts, KIND_SNAP, rows, snaps, snaps)
                best_bid = max(bids) if bids else None
                best_ask = min(asks) if asks else None
                counts["order_book"] += 1
            elif etype == b"trade":
                tid = msg["id"]
                if not _is_int(tid):
                    raise _BadField("id")
                p = to_units(msg["price"], tick_f, "price")
                q = to_units(msg["amount"], lot_f, "amount")
                if p <= 0 or q <= 0:
                    raise _BadField("price/amount")
                if tid in seen_trades:
                    rejects["duplicate_trade"] += 1
                    continue
                seen_trades.add(tid)
                l3_side = 0
                lo = ts_ms - _L3_WINDOW_MS
                for r_ts, r_px, r_type in reversed(recent):
                    if r_ts < lo:
                        break
                    if r_px == p:
                        l3_side = -1 if r_type == 0 else 1
                        break
                if best_bid is not None and p <= best_bid:
                    side = -1
                    side_from["book_bid"] += 1
                elif best_ask is not None and p >= best_ask:
                    side = 1
                    side_from["book_ask"] += 1
                elif l3_side:
                    side = l3_side
                    side_from["l3"] += 1
                else:
                    side = 0
                    side_from["unknown"] += 1
                    rejects["trade_side_unknown"] += 1
                if l3_side and side != l3_side:
                    counts["book_rule_disagrees_with_l3"] += 1
                counts["trade"] += 1
                w.message(ts, KIND_TRADE, [(side, p, q)], tid, 0)
            elif etype in (b"order_changed", b"order_deleted", b"order_created"):
                otype = msg["order_type"]
                if otype not in (0, 1) or isinstance(otype, bool):
                    raise _BadField("order_type")
                p = px.exact(msg["price"])
                counts[etype.decode()] += 1
                if etype != b"order_created":
                    recent.append((ts_ms, p, otype))
                    lo = ts_ms - _L3_WINDOW_MS
                    while recent and recent[0][0] < lo:
                        recent.popleft()
            else:
                rejects["unknown_event"] += 1
        except (_BadField, KeyError, ValueError, TypeError):
            rejects["bad_field"] += 1

    files = [str(path)]
    meta: dict[str, Any] = dict(counts)
    meta["side_from"] = dict(side_from)
    es = EventSet(w.array(), inst, source, files, dict(sorted(rejects.items())), meta)
    _log_rejects(source, files, es.rejects)
    return es


# ---- LOBSTER ---------------------------------------------------------------------------------------

_LOBSTER_NAME = re.compile(r"^(?P<sym>[A-Za-z0-9.^-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<t0>\d+)_(?P<t1>\d+)_"
                           r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$")
_LOBSTER_DUMMY = 9999999999
_LOBSTER_PRICE_SCALE = 10_000  # prices are USD * 10000


def _ny_midnight_ns(date: _dt.date) -> int:
    """Unix ns of midnight America/New_York on `date` (LOBSTER times are NASDAQ local time)."""
    try:
        from zoneinfo import ZoneInfo

        tz: _dt.tzinfo = ZoneInfo("America/New_York")
        local = _dt.datetime(date.year, date.month, date.day, tzinfo=tz)
        return int(local.timestamp()) * NS_PER_S
    except Exception:  # no tz database: the US rule since 2007 (2nd Sunday of March .. 1st Sunday of Nov)
        def nth_sunday(month: int, n: int) -> _dt.date:
            d = _dt.date(date.year, month, 1)
            return d + _dt.timedelta(days=(6 - d.weekday()) % 7 + 7 * (n - 1))

        dst = nth_sunday(3, 2) <= date < nth_sunday(11, 1)
        offset_h = 4 if dst else 5
        utc = _dt.datetime(date.year, date.month, date.day, tzinfo=_dt.timezone.utc)
        return (int(utc.timestamp()) + offset_h * 3600) * NS_PER_S


def _secs_to_ns(s: str) -> int:
    i, _, f = s.partition(".")
    if not i.isdigit() or (f and not f.isdigit()) or len(f) > 9:
        raise ValueError(f"bad time {s!r}")
    return int(i) * NS_PER_S + (int(f.ljust(9, "0")) if f else 0)


def lobster_partner(path: Path) -> Path:
    """The orderbook file of a message file, or the message file of an orderbook file."""
    path = Path(path)
    m = _LOBSTER_NAME.match(path.name)
    if m is None:
        raise DataError(f"{path}: not a LOBSTER file name (SYMBOL_DATE_T0_T1_message|orderbook_LEVELS.csv)")
    other = "orderbook" if m["kind"] == "message" else "message"
    return path.with_name(f"{m['sym']}_{m['date']}_{m['t0']}_{m['t1']}_{other}_{m['levels']}.csv")


def read_lobster(message_path: Path, orderbook_path: Path) -> EventSet:
    """LOBSTER message + orderbook files (tick 0.01 USD, lot 1 share; prices USD*10000)."""
    message_path, orderbook_path = Path(message_path), Path(orderbook_path)
    m = _LOBSTER_NAME.match(message_path.name)
    if m is None or m["kind"] != "message":
        raise DataError(f"{message_path}: not a LOBSTER message file name "
                        f"(SYMBOL_YYYY-MM-DD_T0_T1_message_N.csv)")
    sym = m["sym"]
    inst = Instrument(sym, sym, "USD", Decimal("0.01"), Decimal("1"))
    price_div = _LOBSTER_PRICE_SCALE // 100  # USD*10000 -> ticks of 0.01
    try:
        day = _dt.date.fromisoformat(m["date"])
    except ValueError as exc:
        raise DataError(f"{message_path}: bad date in the file name") from exc
    t0_ns = _ny_midnight_ns(day)

    def lines(p: Path) -> list[bytes]:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        try:
            return p.read_bytes().splitlines()
        except OSError as exc:
            raise DataError(f"{p}: cannot read: {exc}") from exc

    msgs = lines(message_path)
    books = lines(orderbook_path)
    while msgs and not msgs[-1].strip():
        msgs.pop()
    while books and not books[-1].strip():
        books.pop()
    if len(msgs) != len(books):
        raise DataError(f"{message_path} has {len(msgs)} rows but {orderbook_path} has {len(books)}: "
                        f"LOBSTER row k of the orderbook is the book after message k, the counts must match")

    rejects: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    w = _Writer()
    last_ts = -1
    n_cols: int | None = None
    for k, (ml, bl) in enumerate(zip(msgs, books), start=1):
        try:
            f = ml.decode("ascii").split(",")
            if len(f) != 6:
                raise ValueError("message fields")
            ts = t0_ns + _secs_to_ns(f[0])
            mtype, size, price, direction = int(f[1]), int(f[3]), int(f[4]), int(f[5])
            vals = [int(x) for x in bl.decode("ascii").split(",")]
            if n_cols is None:
                n_cols = len(vals)
            if len(vals) != n_cols or len(vals) % 4 or not vals:
                raise ValueError("orderbook fields")
            if max(ts, size, price, *map(abs, vals)) > _INT64_MAX:
                raise ValueError("number beyond int64")
        except (ValueError, UnicodeDecodeError):
            rejects["malformed_line"] += 1
            continue
        if ts < last_ts:
            rejects["out_of_order_ts"] += 1
            continue
        last_ts = ts
        try:
            rows: list[tuple[int, int, int]] = []
            asks: list[tuple[int, int, int]] = []
            for i in range(0, len(vals), 4):
                ap, asz, bp, bsz = vals[i], vals[i + 1], vals[i + 2], vals[i + 3]
                if abs(bp) != _LOBSTER_DUMMY and bsz > 0:
                    if bp % price_div or bp <= 0:
                        raise _BadField("bid price")
                    rows.append((1, bp // price_div, bsz))
                if abs(ap) != _LOBSTER_DUMMY and asz > 0:
                    if ap % price_div or ap <= 0:
                        raise _BadField("ask price")
                    asks.append((-1, ap // price_div, asz))
            rows.extend(asks)
            trade = None
            if mtype in (4, 5):
                if direction not in (1, -1) or size <= 0 or price <= 0 or price % price_div:
                    raise _BadField("execution")
                trade = (-direction, price // price_div, size)
            elif mtype == 7:
                rejects["halt"] += 1
            elif mtype not in (1, 2, 3, 6):
                raise _BadField("type")
        except _BadField:
            rejects["bad_field"] += 1
            continue
        counts[f"type_{mtype}"] += 1
        if trade is not None:
            counts["trades"] += 1
            w.message(ts, KIND_TRADE, [trade], k, 0)
        w.message(ts, KIND_SNAP, rows, k, k)
        counts["snapshots"] += 1

    files = [str(message_path), str(orderbook_path)]
    meta: dict[str, Any] = dict(counts)
    meta["rows"] = len(msgs)
    meta["levels"] = (n_cols or 0) // 4
    meta["time_zone"] = "America/New_York"
    es = EventSet(w.array(), inst, "lobster", files, dict(sorted(rejects.items())), meta)
    _log_rejects("lobster", files, es.rejects)
    return es


# ---- FlashMM's own format --------------------------------------------------------------------------


def write_flashmm(es: EventSet, path: Path) -> None:
    """Write `es` as an .npz (atomically: a temporary file renamed into place)."""
    path = Path(path)
    if es.events.dtype != EVENT_DTYPE:
        raise ValueError(f"events have dtype {es.events.dtype}, expected EVENT_DTYPE")
    header = np.frombuffer(orjson.dumps(es.header(), option=orjson.OPT_SORT_KEYS), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, events=es.events, header=header)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_flashmm(path: Path) -> EventSet:
    """Read and validate a FlashMM .npz. Anything wrong raises DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy loads as one array, no context manager
            raise DataError(f"{path}: not a FlashMM event file (a single .npy array, expected an .npz with "
                            f"'events' and 'header')")
        with loaded as z:
            names = set(z.files)
            if not {"events", "header"} <= names:
                raise DataError(f"{path}: not a FlashMM event file (arrays {sorted(names)}, "
                                f"expected 'events' and 'header')")
            events = z["events"]
            raw = z["header"]
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error,
            NotImplementedError, RuntimeError, MemoryError) as exc:  # zipfile: unknown method, "encrypted"
        raise DataError(f"{path}: unreadable FlashMM event file ({type(exc).__name__}: {exc})") from exc
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataError(f"{path}: header has dtype {raw.dtype}, expected uint8 JSON")
    try:
        h = orjson.loads(raw.tobytes())
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{path}: header is not valid JSON: {exc}") from exc
    if not isinstance(h, dict):
        raise DataError(f"{path}: header is not a JSON object")
    if h.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {h.get('format_version')!r}, this reader reads {FORMAT_VERSION}")
    if events.dtype != EVENT_DTYPE:
        raise DataError(f"{path}: events have dtype {events.dtype}, expected {EVENT_DTYPE}")
    if events.ndim != 1:
        raise DataError(f"{path}: events are {events.ndim}-dimensional")
    if events.size:
        ts = events["ts_ns"]
        bad = np.flatnonzero(ts[1:] < ts[:-1])
        if bad.size:
            raise DataError(f"{path}: events not in time order (row {int(bad[0]) + 1} goes backwards)")
        if not events["flags"][-1] & FLAG_END:
            raise DataError(f"{path}: the last row does not end a message (truncated?)")
        if int(events["kind"].max()) > KIND_BBO:
            raise DataError(f"{path}: unknown event kind {int(events['kind'].max())}")
        bad = np.flatnonzero((events["side"] < -1) | (events["side"] > 1))
        if bad.size:
            side = int(events["side"][bad[0]])
            raise DataError(f"{path}: row {int(bad[0])} has side {side}, expected -1, 0 or +1")
    rejects, meta, files = h.get("rejects", {}), h.get("meta", {}), h.get("files")
    if not (isinstance(h.get("source"), str) and isinstance(files, list)
            and all(isinstance(f, str) for f in files) and isinstance(meta, dict)
            and isinstance(rejects, dict) and all(_is_int(n) for n in rejects.values())):
        raise DataError(f"{path}: bad header (source, files, rejects or meta of the wrong type)")
    try:
        inst = instrument_from_header(h)
        if not all(isinstance(x, str) for x in (inst.symbol, inst.base, inst.quote)) or not all(
                d.is_finite() and d > 0 for d in (inst.price_tick, inst.lot_size)):
            raise ValueError("the instrument needs string names and finite positive tick and lot sizes")
        es = EventSet(events, inst, h["source"], files, rejects, meta)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise DataError(f"{path}: bad header ({type(exc).__name__}: {exc})") from exc
    return es


__all__ = [
    "DataError", "READER_VERSION", "binance_instrument", "bitstamp_instrument", "book_event", "iter_messages",
    "lobster_partner",
    "read_binance", "read_bitstamp", "read_flashmm", "read_lobster", "write_flashmm",
]
