"""Bitstamp 2015 capture (L2 snapshots, trades with the aggressor inferred, L3 order events)."""


from __future__ import annotations

import lzma
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flashmm.data.events import (
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
)
from flashmm.data.readers.common import (
    _INT64_MAX,
    NS_PER_MS,
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

DEFAULT_SYMBOL = "BTCUSD"  # the 2015 capture (PROVENANCE.md); its frames name no pair
_L3_WINDOW_MS = 100


def read_bitstamp(path: Path, instruments: "InstrumentTable | None" = None, symbol: str | None = None) -> EventSet:
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
    if instruments is None:
        from flashmm.data.instruments import instrument_table

        instruments = instrument_table()
    # The 2015 capture's frames name no pair (it is BTC/USD: PROVENANCE.md); a capture of another pair needs
    # --symbol, and the instrument table or [instrument] keys for it.
    inst = instruments.resolve("bitstamp", symbol or DEFAULT_SYMBOL)
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
