"""Comparing strategies across backtest engines on identical data, scored by one set of definitions.

Used by `scripts/compare_strategies.py` (FlashMM's own strategies against hftbacktest's examples). Three parts:

1. **One converter** (`to_hftbacktest`): FlashMM's normalised event array (`flashmm.data.events`) to
   hftbacktest 2.4's event rows (`HFTBT_EVENT_DTYPE`, the layout of `hftbacktest.types.event_dtype`). Every
   data set FlashMM reads (Binance, Bitstamp, LOBSTER, its own recordings) thereby reaches hftbacktest as
   exactly the book and trades FlashMM's engine sees:
   - SNAP message -> one `DEPTH_CLEAR_EVENT` row with no side (hftbacktest clears *both* sides, as FlashMM's
     `L2Book.apply_snapshot` replaces the whole book), then one `DEPTH_SNAPSHOT_EVENT` row per level; an empty
     snapshot is the clear row alone;
   - DIFF row -> `DEPTH_EVENT` (qty 0 deletes the level); an empty diff (FLAG_EMPTY) has no row;
   - TRADE row -> `TRADE_EVENT` with `BUY_EVENT` (buyer aggressor) or `SELL_EVENT`; an unknown aggressor
     (side 0) gets neither flag (hftbacktest then fills nobody on it; counted in the stats);
   - BBO rows are not converted: FlashMM's book does not use them (checks only) and hftbacktest 2.4's
     backtest processors ignore `DEPTH_BBO_EVENT`.
   Every row is an exchange *and* a local event at FlashMM's one timestamp (`exch_ts = local_ts = ts_ns`):
   no feed latency on either side, as in FlashMM's replay. Prices are `ticks x tick`, quantities
   `lots x lot`; hftbacktest rounds them back to the same integers.
2. **One market timeline** (`market_timeline`): the best bid / ask after every book message, built with
   FlashMM's own `L2Book` (stale after a sequence gap or a crossed book, until the next snapshot). All
   strategies' fills are scored against it, and hftbacktest's own best bid / ask are checked against it.
3. **One set of fill metrics** (`score_fills`), the same function for every strategy and engine:
   - realised spread at horizon h (5 s), per fill: `2 * side * (mid(t+h) - price) / mid(t) * 1e4` bps
     (side +1 buy, -1 sell; mid(t) = the mid just before the fill, i.e. after every book message earlier
     than it; mid(t+h) = after every book message up to t+h); the size-weighted mean over fills, with a
     95 % percentile-bootstrap interval over fills (fills resampled with replacement, 2,000 times, the
     weighted mean recomputed). Fills are treated as independent; they cluster in sweeps, so the interval
     is if anything too narrow. A fill whose t+h is past the end of the data, or with no two-sided book at
     t or t+h, is not scored (counted);
   - PnL = cash from fills + position x final mid - fees, split as in FlashMM's report: spread capture
     `sum side * (mid(t) - price) * qty`, fees, inventory = the rest;
   - max |inventory| = max over the scored window of |position x mid| / capital x 100 (at every fill and
     every book message);
   - orders per fill = orders placed / fill events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flashmm.core.book import L2Book
from flashmm.core.domain import Instrument
from flashmm.data.events import FLAG_EMPTY, FLAG_END, KIND_BBO, KIND_DIFF, KIND_SNAP, KIND_TRADE
from flashmm.data.readers import book_event, iter_messages

# hftbacktest 2.4's event layout and flags (hftbacktest/types.py); the hftbacktest side of the comparison
# asserts at start-up that its installed version has the same, so a format change cannot pass unnoticed.
HFTBT_EVENT_DTYPE = np.dtype(
    [("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
     ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")],
    align=True,
)
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
HFTBT_FLAGS = {"EXCH_EVENT": EXCH_EVENT, "LOCAL_EVENT": LOCAL_EVENT, "BUY_EVENT": BUY_EVENT,
               "SELL_EVENT": SELL_EVENT, "DEPTH_EVENT": DEPTH_EVENT, "TRADE_EVENT": TRADE_EVENT,
               "DEPTH_CLEAR_EVENT": DEPTH_CLEAR_EVENT, "DEPTH_SNAPSHOT_EVENT": DEPTH_SNAPSHOT_EVENT}

# One fill, whatever engine made it: price in quote currency, quantity in base units, fee in quote currency
# (positive = paid).
FILL_DTYPE = np.dtype([("ts_ns", "i8"), ("side", "i1"), ("price", "f8"), ("qty", "f8"), ("fee", "f8")])

NS_PER_S = 1_000_000_000


# ---- 1. the converter --------------------------------------------------------------------------------
def to_hftbacktest(events: np.ndarray, instrument: Instrument) -> tuple[np.ndarray, dict[str, int]]:
    """FlashMM events -> hftbacktest rows (see the module docstring). Returns (rows, counts)."""
    n = len(events)
    if n == 0:
        return np.zeros(0, HFTBT_EVENT_DTYPE), {"rows_in": 0, "rows_out": 0}
    kind = events["kind"]
    flags = events["flags"]
    side = events["side"].astype(np.int64)
    ends = np.flatnonzero(flags & FLAG_END) + 1
    if len(ends) == 0 or ends[-1] != n:
        raise ValueError("events do not end on a message boundary (FLAG_END missing)")
    starts = np.concatenate(([0], ends[:-1]))
    snap_start = np.zeros(n, dtype=bool)
    snap_start[starts[kind[starts] == KIND_SNAP]] = True
    keep = (kind != KIND_BBO) & ((flags & FLAG_EMPTY) == 0)
    per_row = snap_start.astype(np.int64) + keep.astype(np.int64)
    first_out = np.cumsum(per_row) - per_row  # where row i's output (clear row first) begins
    out = np.zeros(int(per_row.sum()), HFTBT_EVENT_DTYPE)

    base = np.uint64(EXCH_EVENT | LOCAL_EVENT)
    clear_at = first_out[snap_start]
    out["ev"][clear_at] = base | np.uint64(DEPTH_CLEAR_EVENT)
    out["exch_ts"][clear_at] = events["ts_ns"][snap_start]
    out["local_ts"][clear_at] = events["ts_ns"][snap_start]

    at = first_out[keep] + snap_start[keep]
    k = kind[keep]
    s = side[keep]
    ev = np.full(len(at), base, dtype=np.uint64)
    ev |= np.where(k == KIND_SNAP, DEPTH_SNAPSHOT_EVENT,
                   np.where(k == KIND_DIFF, DEPTH_EVENT, TRADE_EVENT)).astype(np.uint64)
    ev |= np.where(s > 0, BUY_EVENT, np.where(s < 0, SELL_EVENT, 0)).astype(np.uint64)
    out["ev"][at] = ev
    out["exch_ts"][at] = events["ts_ns"][keep]
    out["local_ts"][at] = events["ts_ns"][keep]
    out["px"][at] = events["price"][keep].astype(np.float64) * float(instrument.price_tick)
    out["qty"][at] = events["qty"][keep].astype(np.float64) * float(instrument.lot_size)

    book = kind != KIND_TRADE
    counts = {
        "rows_in": n,
        "rows_out": len(out),
        "snapshots": int(snap_start.sum()),
        "snapshot_levels": int(np.count_nonzero(keep & (kind == KIND_SNAP))),
        "diff_levels": int(np.count_nonzero(keep & (kind == KIND_DIFF))),
        "trades": int(np.count_nonzero(keep & (kind == KIND_TRADE))),
        "trades_unknown_aggressor": int(np.count_nonzero(keep & (kind == KIND_TRADE) & (side == 0))),
        "bbo_rows_not_converted": int(np.count_nonzero(kind == KIND_BBO)),
        "empty_diffs": int(np.count_nonzero(book & (kind == KIND_DIFF) & ((flags & FLAG_EMPTY) != 0))),
    }
    return out, counts


# ---- 2. the market timeline --------------------------------------------------------------------------
@dataclass
class MarketTimeline:
    """Best bid / ask (ticks) after each book message; -1 where the book is stale or one-sided."""

    ts_ns: np.ndarray  # int64, non-decreasing
    bid: np.ndarray  # int64
    ask: np.ndarray  # int64
    tick: float  # quote currency per tick

    @property
    def valid(self) -> np.ndarray:
        return (self.bid > 0) & (self.ask > 0)

    def _index(self, ts_ns: np.ndarray, strict: bool) -> np.ndarray:
        return np.searchsorted(self.ts_ns, ts_ns, side="left" if strict else "right") - 1

    def top(self, ts_ns: np.ndarray, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(bid, ask) ticks at each time: after every message at or before it (strictly before if `strict`);
        -1 where there was no book yet or it was not usable."""
        i = self._index(np.asarray(ts_ns, dtype=np.int64), strict)
        ok = i >= 0
        j = np.where(ok, i, 0)
        bid = np.where(ok, self.bid[j], -1)
        ask = np.where(ok, self.ask[j], -1)
        return bid, ask

    def mid(self, ts_ns: np.ndarray, strict: bool = False) -> np.ndarray:
        """Mid in quote currency (NaN where the book was not usable)."""
        bid, ask = self.top(ts_ns, strict)
        m = (bid + ask) / 2.0 * self.tick
        return np.where((bid > 0) & (ask > 0), m, np.nan)

    def last_mid(self, until_ns: int | None = None) -> float:
        """The last usable mid at or before `until_ns` (default: the end)."""
        ok = self.valid if until_ns is None else self.valid & (self.ts_ns <= until_ns)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return float("nan")
        i = idx[-1]
        return float((self.bid[i] + self.ask[i]) / 2.0 * self.tick)


def market_timeline(events: np.ndarray, instrument: Instrument) -> tuple[MarketTimeline, dict[str, int]]:
    """Replay the book messages through FlashMM's `L2Book`; one timeline entry per book message."""
    book = L2Book()
    ts: list[int] = []
    bids: list[int] = []
    asks: list[int] = []
    stale_messages = 0
    for kind, t, seq, seq2, rows in iter_messages(events):
        if kind == KIND_SNAP:
            book.apply_snapshot(book_event(kind, t, seq, seq2, rows))
        elif kind == KIND_DIFF:
            book.apply_diff(book_event(kind, t, seq, seq2, rows))
        else:
            continue
        ts.append(t)
        if book.stale or not book.two_sided():
            stale_messages += 1
            bids.append(-1)
            asks.append(-1)
        else:
            bids.append(book.bids.peekitem(-1)[0])
            asks.append(book.asks.peekitem(0)[0])
    tl = MarketTimeline(np.asarray(ts, dtype=np.int64), np.asarray(bids, dtype=np.int64),
                        np.asarray(asks, dtype=np.int64), float(instrument.price_tick))
    return tl, {"book_messages": len(ts), "unusable_messages": stale_messages,
                "book_rejects": dict(book.rejects)}


def compare_tops(timeline: MarketTimeline, ts_ns: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> dict[str, Any]:
    """Another engine's best bid / ask (ticks) at `ts_ns` against the timeline at the same instants.
    Returns counts: samples, both usable, equal, different (with the first few), usable on one side only."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    ref_bid, ref_ask = timeline.top(ts_ns)
    ref_ok = (ref_bid > 0) & (ref_ask > 0)
    oth_ok = (np.asarray(bid) > 0) & (np.asarray(ask) > 0) & (np.asarray(bid) < 2**62) & (np.asarray(ask) < 2**62)
    both = ref_ok & oth_ok
    equal = both & (ref_bid == bid) & (ref_ask == ask)
    diff = both & ~equal
    first = np.flatnonzero(diff)[:5]
    return {
        "samples": len(ts_ns),
        "both_usable": int(both.sum()),
        "equal": int(equal.sum()),
        "different": int(diff.sum()),
        "equal_pct": round(100.0 * equal.sum() / both.sum(), 4) if both.sum() else None,
        "usable_only_in_flashmm": int((ref_ok & ~oth_ok).sum()),
        "usable_only_in_other": int((~ref_ok & oth_ok).sum()),
        "first_differences": [{"ts_ns": int(ts_ns[i]), "flashmm": [int(ref_bid[i]), int(ref_ask[i])],
                               "other": [int(bid[i]), int(ask[i])]} for i in first],
    }


# ---- 3. fill metrics ----------------------------------------------------------------------------------
def flashmm_fills(records: Any, instrument: Instrument) -> np.ndarray:
    """FlashMM's `Portfolio.fills` (FillRecord: ticks, lots) -> FILL_DTYPE."""
    recs = list(records)
    out = np.zeros(len(recs), FILL_DTYPE)
    if not recs:
        return out
    tick, lot = float(instrument.price_tick), float(instrument.lot_size)
    out["ts_ns"] = [r.ts_ns for r in recs]
    out["side"] = [r.side for r in recs]
    out["price"] = np.array([r.price_ticks for r in recs], dtype=np.float64) * tick
    out["qty"] = np.array([r.lots for r in recs], dtype=np.float64) * lot
    out["fee"] = [r.fee_quote for r in recs]
    return out


def realised_spread(fills: np.ndarray, timeline: MarketTimeline, horizon_s: float = 5.0,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Size-weighted realised spread at `horizon_s` over fills, bps, with a 95 % bootstrap interval."""
    res: dict[str, Any] = {"horizon_s": horizon_s, "bps": None, "ci95": None, "fills_scored": 0,
                           "fills_unscored": int(len(fills)),
                           "method": f"size-weighted mean over fills; 95 % percentile bootstrap over fills "
                                     f"(iid resampling, {n_boot} draws)"}
    if len(fills) == 0:
        return res
    t = fills["ts_ns"].astype(np.int64)
    later = t + int(round(horizon_s * NS_PER_S))
    m0 = timeline.mid(t, strict=True)
    m1 = timeline.mid(later)
    ok = np.isfinite(m0) & np.isfinite(m1) & (later <= timeline.ts_ns[-1]) if len(timeline.ts_ns) else np.zeros(
        len(t), dtype=bool)
    if not ok.any():
        return res
    side = fills["side"][ok].astype(np.float64)
    x = 2.0 * side * (m1[ok] - fills["price"][ok]) / m0[ok] * 1e4
    w = fills["qty"][ok].astype(np.float64)
    res["bps"] = float(np.average(x, weights=w))
    res["fills_scored"] = int(ok.sum())
    res["fills_unscored"] = int((~ok).sum())
    if len(x) >= 2:
        res["ci95"] = list(bootstrap_ci(x, w, n_boot, seed))
    return res


def bootstrap_ci(x: np.ndarray, w: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the weighted mean of x (resampling (x, w) pairs with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))
    for lo in range(0, n_boot, chunk):
        hi = min(n_boot, lo + chunk)
        idx = rng.integers(0, n, size=(hi - lo, n))
        ww = w[idx]
        means[lo:hi] = (ww * x[idx]).sum(axis=1) / ww.sum(axis=1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def pnl_split(fills: np.ndarray, timeline: MarketTimeline, end_mid: float) -> dict[str, float]:
    """PnL in quote currency: total = cash + position x end_mid - fees = spread capture + inventory + fees."""
    if len(fills) == 0:
        return {"total": 0.0, "spread_capture": 0.0, "inventory": 0.0, "fees": 0.0}
    side = fills["side"].astype(np.float64)
    px, qty = fills["price"], fills["qty"]
    cash = float(-(side * px * qty).sum())
    position = float((side * qty).sum())
    fees = float(fills["fee"].sum())
    mid0 = timeline.mid(fills["ts_ns"], strict=True)
    mid0 = np.where(np.isfinite(mid0), mid0, px)  # no usable book just before: no edge booked
    spread = float((side * (mid0 - px) * qty).sum())
    total = cash + position * end_mid - fees
    return {"total": total, "spread_capture": spread, "inventory": total - spread + fees, "fees": -fees}


def max_abs_inventory(fills: np.ndarray, timeline: MarketTimeline, t0_ns: int, t1_ns: int) -> float:
    """Largest |position x mid| (quote currency) in [t0, t1], at every fill and every book message."""
    if len(fills) == 0:
        return 0.0
    order = np.argsort(fills["ts_ns"], kind="stable")
    f_ts = fills["ts_ns"][order]
    pos_after = np.cumsum(fills["side"][order].astype(np.float64) * fills["qty"][order])
    sel = (timeline.ts_ns >= t0_ns) & (timeline.ts_ns <= t1_ns) & timeline.valid
    ts = np.concatenate((timeline.ts_ns[sel], f_ts))
    k = np.searchsorted(f_ts, ts, side="right") - 1
    pos = np.where(k >= 0, pos_after[np.maximum(k, 0)], 0.0)
    mid = timeline.mid(ts)
    mid = np.where(np.isfinite(mid), mid, np.nan)
    val = np.abs(pos * mid)
    return float(np.nanmax(val)) if np.isfinite(val).any() else 0.0


def score_fills(fills: np.ndarray, timeline: MarketTimeline, t0_ns: int, t1_ns: int, capital: float,
                orders_placed: int, horizon_s: float = 5.0, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every comparison figure of one strategy's fills, by the definitions in the module docstring."""
    # one canonical order (an engine may report the fills of one instant in hash-map order), so the
    # bootstrap draws the same resamples on every run
    fills = fills[np.lexsort((fills["qty"], fills["price"], fills["side"], fills["ts_ns"]))]
    end_mid = timeline.last_mid(t1_ns)
    pnl = pnl_split(fills, timeline, end_mid)
    n = int(len(fills))
    return {
        "pnl": pnl,
        "fills": n,
        "volume_quote": float((fills["price"] * fills["qty"]).sum()) if n else 0.0,
        "position_end": float((fills["side"].astype(np.float64) * fills["qty"]).sum()) if n else 0.0,
        "end_mid": end_mid,
        "realised_spread": realised_spread(fills, timeline, horizon_s, n_boot, seed),
        "max_abs_inventory_pct": max_abs_inventory(fills, timeline, t0_ns, t1_ns) / capital * 100.0,
        "orders_placed": int(orders_placed),
        "orders_per_fill": (orders_placed / n) if n else None,
    }
