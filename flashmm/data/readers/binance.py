"""Binance combined-stream recordings (spot, USD-M). See flashmm.data.readers for the rules."""


from __future__ import annotations

import gzip
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def binance_instrument(market: str) -> Instrument:
    if market == "spot":
        return Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
    if market == "usdm":
        return Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.001"))
    raise ValueError(f"unknown Binance market {market!r}: expected 'spot' or 'usdm'")



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
