"""Binance combined-stream recordings: spot, USD-M futures and COIN-M (inverse) futures.

The symbol comes from the frames (stream names: `btcusdt@depth@100ms`); tick, lot and contract terms come
from the instrument table (flashmm.data.instruments), never from this code. A file with frames of several
symbols is an error unless one is chosen; the frames of the others are then counted per symbol in
`meta["other_symbol_frames"]` and reported, not silently dropped. The market is read from the frames too:
futures diffs carry `pu`, and a futures symbol ending in `_PERP` or a delivery date (`_240927`) is COIN-M.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from flashmm.core.domain import Instrument
from flashmm.data.events import (
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
)
from flashmm.data.readers.common import (
    DataError,
    _BadField,
    _is_int,
    _log_rejects,
    _open_lines,
    _stamped_json,
    _Units,
    _Writer,
)

if TYPE_CHECKING:
    from flashmm.data.instruments import InstrumentTable

MARKETS = ("spot", "usdm", "cm")
_COIN_M = re.compile(r"_(PERP|\d{6})$")
_SNIFF_LINES = 256


def binance_market(futures: bool, symbol: str) -> str:
    """spot, usdm or cm from what the frames show."""
    if not futures:
        return "spot"
    return "cm" if _COIN_M.search(symbol.upper()) else "usdm"


def sniff_binance(path: Path, lines: int = _SNIFF_LINES) -> tuple[bool, list[str]]:
    """(futures?, symbols seen) from the first lines of a recording: futures diffs carry `pu` (or arrive on
    `@depth@0ms`). Raises DataError when the file is not a readable Binance recording."""
    head: list[bytes] = []
    try:
        with gzip.open(path, "rb") as fh:
            for _ in range(lines):
                line = fh.readline()
                if not line:
                    break
                head.append(line)
    except (OSError, EOFError, zlib.error) as exc:
        if not head:
            raise DataError(f"{path}: not a readable gzip file: {exc}") from exc
    blob = b"".join(head)
    if b'"stream"' not in blob and b'"lastUpdateId"' not in blob:
        raise DataError(f"{path}: not a Binance recording (no stream frame or depth snapshot in its first lines)")
    symbols: list[str] = []
    for line in head:
        sp = line.find(b" ")
        try:
            msg = orjson.loads(line[sp + 1:]) if sp > 0 else None
        except orjson.JSONDecodeError:
            continue
        stream = msg.get("stream") if isinstance(msg, dict) else None
        if isinstance(stream, str) and "@" in stream:
            sym = stream.partition("@")[0].upper()
            if sym not in symbols:
                symbols.append(sym)
    futures = b"@depth@0ms" in blob or b'"pu":' in blob
    return futures, symbols


def read_binance(paths: list[Path], market: str, instruments: "InstrumentTable | None" = None,
                 symbol: str | None = None) -> EventSet:
    """Binance websocket recordings of one market ("spot", "usdm" or "cm"), read in the given order as one
    stream. `symbol` chooses one symbol of a file holding several; without it the file's one symbol is used
    (a second one is a DataError). See the package docstring for the sync rule."""
    if market not in MARKETS:
        raise ValueError(f"unknown Binance market {market!r}: expected one of {', '.join(MARKETS)}")
    if instruments is None:
        from flashmm.data.instruments import instrument_table

        instruments = instrument_table()
    futures = market != "spot"
    source = f"binance-{market}"
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("read_binance: no files given")
    chosen = symbol.upper() if symbol else None
    if chosen is None:  # the symbol of the first stream frame
        for p in paths:
            syms = sniff_binance(p)[1]
            if syms:
                chosen = syms[0]
                break
    if chosen is None:
        raise DataError(f"{paths[0]}: no stream frame in its first {_SNIFF_LINES} lines names a symbol")
    inst = instruments.resolve(source, chosen)
    return _read(paths, market, futures, source, inst, chosen, explicit=symbol is not None)


def _read(paths: list[Path], market: str, futures: bool, source: str, inst: Instrument, chosen: str,
          explicit: bool) -> EventSet:
    px = _Units(inst.price_tick)
    lot = _Units(inst.lot_size)
    rejects: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    others: Counter[str] = Counter()  # frames of other symbols, per symbol
    w = _Writer()
    stream_sym = chosen.lower()
    # Several symbols in one stream: the REST snapshot lines name none, so a snapshot is taken as the chosen
    # symbol's only when that symbol's own diffs continue it (Binance's sync rule); others are counted.
    multi = False

    snap_id: int | None = None  # lastUpdateId of the latest snapshot
    candidate: tuple[int, int, list[tuple[int, int, int]]] | None = None  # multi: (ts, id, rows) awaiting a diff
    pending: list[tuple[int, int, int, int, int, list[tuple[int, int, int]]]] = []  # (ts, seq, seq2, U, u, rows)
    first_diff: dict[str, Any] | None = None
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

    def emit_diff(ts: int, seq: int, seq2: int, rows: list) -> None:
        nonlocal first_diff
        if first_diff is None:
            first_diff = {"seq": seq, "seq2": seq2, "lastUpdateId": snap_id}
        w.message(ts, KIND_DIFF, rows, seq, seq2)

    def take_snapshot(ts: int, sid: int, rows: list[tuple[int, int, int]]) -> None:
        """Emit a snapshot and the diffs held back for it (Binance's sync rule), at the snapshot's time."""
        nonlocal snap_id, first_diff
        w.message(ts, KIND_SNAP, rows, sid, sid)
        counts["snapshots"] += 1
        first = snap_id is None
        snap_id = sid
        first_diff = None
        if first:
            counts["snapshot_line"] = counts["lines"]
        for _, seq, seq2, _U, u, prow in pending:
            if u <= sid:
                counts["diffs_dropped_before_sync"] += 1
            else:
                emit_diff(ts, seq, seq2, prow)  # at the snapshot's time, not earlier
        pending.clear()

    def continues(sid: int, U: int, u: int) -> bool:
        return U <= sid + 1 and u >= sid

    for path in paths:
        for line in _open_lines(path, lambda p: gzip.open(p, "rb"), "gzip", rejects):
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
                    if not multi:
                        take_snapshot(ts, sid, rows)
                    elif any(continues(sid, U, u) for _, _, _, U, u, _ in pending):
                        take_snapshot(ts, sid, rows)
                    else:
                        if candidate is not None:
                            counts["snapshot_not_chosen_symbol"] += 1
                        candidate = (ts, sid, rows)
                    continue
                if not isinstance(stream, str):
                    raise _BadField("stream")
                sym, _, kind = stream.partition("@")
                sym = sym.lower()  # Binance spells stream names in lower case
                data = msg["data"]
                if not isinstance(data, dict):
                    raise _BadField("data")
                if not sym or not kind:
                    rejects["unknown_stream"] += 1
                    continue
                if sym != stream_sym:
                    if not explicit:
                        raise DataError(
                            f"{path}: frames of several symbols ({chosen}, {sym.upper()}): choose one with "
                            f"--symbol (frames of the others are then counted and reported)")
                    others[sym.upper()] += 1
                    multi = True
                    continue
                if kind.startswith("depth"):
                    U, u = data["U"], data["u"]
                    if not (_is_int(U) and _is_int(u)):
                        raise _BadField("U/u")
                    if futures:
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
                    if candidate is not None and u > candidate[1]:
                        if continues(candidate[1], U, u):  # known to be ours only now: emitted now
                            take_snapshot(ts, candidate[1], candidate[2])
                        else:
                            counts["snapshot_not_chosen_symbol"] += 1
                        candidate = None
                    if snap_id is None:
                        pending.append((ts, seq, u, U, u, rows))
                    elif u <= snap_id:
                        counts["diffs_dropped_before_sync"] += 1
                    else:
                        emit_diff(ts, seq, u, rows)
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

    if candidate is not None:
        counts["snapshot_not_chosen_symbol"] += 1
    if pending:  # no snapshot anywhere: these diffs cannot be applied to anything
        rejects["diff_without_snapshot"] += len(pending)
    files = [str(p) for p in paths]
    meta: dict[str, Any] = dict(counts)
    meta["market"] = market
    meta["symbol"] = chosen
    meta["sync"] = first_diff
    meta["trade_ids"] = len(seen_trades)
    if others:
        meta["other_symbol_frames"] = dict(sorted(others.items()))
    es = EventSet(w.array(), inst, source, files, dict(sorted(rejects.items())), meta)
    _log_rejects(source, files, es.rejects)
    if others:
        from flashmm.telemetry.logging import get_logger

        get_logger("data").warning("other_symbol_frames", source=source, symbol=chosen, frames=dict(others))
    return es
