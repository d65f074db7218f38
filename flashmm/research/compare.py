"""Comparing strategies across backtest engines on identical data, scored by one set of definitions.

Used by `scripts/compare_strategies.py` (FlashMM's own strategies against hftbacktest's examples). Three parts:

1. **One converter** (`to_hftbacktest`): FlashMM's normalised event array (`flashmm.data.events`) to
   hftbacktest 2.4's event rows (`HFTBT_EVENT_DTYPE`, the layout of `hftbacktest.types.event_dtype`), so that
   every data set FlashMM reads (Binance, Bitstamp, LOBSTER, its own recordings) reaches hftbacktest as
   exactly the book and trades FlashMM's engine sees. The events are replayed once through FlashMM's own
   `L2Book`, as the engine and the replay venue apply them (snapshots, diffs and, with [replay]
   .use_book_ticker, the real-time best bid/offer: `apply_top` moves the top between diffs and a diff older
   than the top does not resurrect what it moved past), and what the book did becomes rows:
   - an applied snapshot -> one `DEPTH_CLEAR_EVENT` row with no side (hftbacktest then clears *both* sides,
     as `apply_snapshot` replaces the whole book) and one `DEPTH_SNAPSHOT_EVENT` row per level;
   - a diff or a best bid/offer -> one `DEPTH_EVENT` row per level whose size it changed (0 = removed):
     hftbacktest 2.4's processors ignore `DEPTH_BBO_EVENT`, and a diff's level behind a newer top, or one
     set to the size it had, changes nothing;
   - a trade -> `TRADE_EVENT` with `BUY_EVENT` (buyer aggressor) or `SELL_EVENT`; an unknown aggressor
     (side 0) gets neither flag (hftbacktest then fills nobody on it; counted).
   Every row is an exchange *and* a local event at FlashMM's one timestamp (`exch_ts = local_ts = ts_ns`):
   no feed latency on either side, as in FlashMM's replay. Prices are `ticks x tick`, quantities
   `lots x lot`; hftbacktest rounds them back to the same integers. A book FlashMM marks stale (a sequence
   gap, a crossed book) cannot be said in hftbacktest's format: its messages are counted
   (`unusable_book_messages`), and the timeline shows them unusable.
2. **One market timeline** (`market_timeline`, the same replay): the best bid / ask after every book
   message. All strategies' fills are scored against it, and hftbacktest's own best bid / ask are checked
   against it at every step of its runs.
3. **One set of fill metrics** (`score_fills`), the same function for every strategy and engine:
   - realised spread at horizon h (5 s), per fill: `2 * side * (mid(t+h) - price) / mid(t) * 1e4` bps
     (side +1 buy, -1 sell; mid(t) = the mid just before the fill, i.e. after every book message earlier
     than it; mid(t+h) = after every book message up to t+h); the size-weighted mean over fills, with a
     95 % percentile-bootstrap interval over fills (fills resampled with replacement, 2,000 times, the
     weighted mean recomputed). Fills are treated as independent; they cluster in sweeps, so the interval
     is if anything too narrow. A fill whose t+h is past the end of the data, or with no two-sided book at
     t or t+h, is not scored (counted);
   - PnL = cash from fills + position at the final mid - fees, split as FlashMM's portfolio splits it and
     with its own function (`core.state.fill_cash_and_edge`): spread capture = each fill's edge against
     mid(t), fees, inventory = the rest; in the settlement currency (the base for an inverse contract) and
     valued in the quote currency at the final mid;
   - max |inventory| = max over the scored window of |exposure| / capital x 100 (exposure = position x mid,
     or contracts x multiplier for an inverse contract; at every fill and every book message);
   - orders per fill = orders placed / fill events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flashmm.core.book import L2Book
from flashmm.core.domain import BookTop, Instrument
from flashmm.core.state import fill_cash_and_edge
from flashmm.data.events import KIND_BBO, KIND_DIFF, KIND_SNAP, KIND_TRADE
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

# One fill, whatever engine made it: price in ticks, quantity in lots (FlashMM's units; a float so that any
# engine's quantity fits), fee in the instrument's settlement currency (positive = paid).
FILL_DTYPE = np.dtype([("ts_ns", "i8"), ("side", "i1"), ("price_ticks", "f8"), ("lots", "f8"), ("fee", "f8")])

NS_PER_S = 1_000_000_000


# ---- 1 + 2. the converter and the market timeline: one replay of FlashMM's book ------------------------
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
        """Mid in ticks (NaN where the book was not usable)."""
        bid, ask = self.top(ts_ns, strict)
        return np.where((bid > 0) & (ask > 0), (bid + ask) / 2.0, np.nan)

    def last_mid(self, until_ns: int | None = None) -> float:
        """The last usable mid (ticks) at or before `until_ns` (default: the end)."""
        ok = self.valid if until_ns is None else self.valid & (self.ts_ns <= until_ns)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return float("nan")
        i = idx[-1]
        return float((self.bid[i] + self.ask[i]) / 2.0)


def book_replay(events: np.ndarray, instrument: Instrument, use_top: bool = True
                ) -> tuple[np.ndarray, MarketTimeline, dict[str, Any]]:
    """FlashMM's book (`L2Book`: snapshots, diffs and, with `use_top`, the best bid/offer updates applied as
    the engine and the replay venue apply them) replayed once over the events. Returns hftbacktest's rows
    (see the module docstring), the market timeline and counts."""
    tick, lot = float(instrument.price_tick), float(instrument.lot_size)
    book = L2Book()
    base = EXCH_EVENT | LOCAL_EVENT
    out: list[tuple[int, int, float, float]] = []  # (ev, ts, px, qty)
    ts_l: list[int] = []
    bid_l: list[int] = []
    ask_l: list[int] = []
    c = {"rows_in": int(len(events)), "snapshots": 0, "snapshot_levels": 0, "diff_levels_in": 0,
         "diff_level_changes": 0, "tops_in": 0, "tops_applied": 0, "top_level_changes": 0, "trades": 0,
         "trades_unknown_aggressor": 0, "bbo_not_used": 0, "unusable_book_messages": 0}

    def emit_changes(before: dict[tuple[int, int], int]) -> int:
        n = 0
        for (side, price), old in before.items():
            new = (book.bids if side > 0 else book.asks).get(price, 0)
            if new != old:
                out.append((base | DEPTH_EVENT | (BUY_EVENT if side > 0 else SELL_EVENT), t, price * tick,
                            new * lot))
                n += 1
        return n

    for kind, t, seq, seq2, rows in iter_messages(events):
        if kind == KIND_TRADE:
            for side, price, qty in rows:
                flag = BUY_EVENT if side > 0 else SELL_EVENT if side < 0 else 0
                out.append((base | TRADE_EVENT | flag, t, price * tick, qty * lot))
                c["trades"] += 1
                c["trades_unknown_aggressor"] += side == 0
            continue
        if kind == KIND_SNAP:
            if book.apply_snapshot(book_event(kind, t, seq, seq2, rows)):
                out.append((base | DEPTH_CLEAR_EVENT, t, 0.0, 0.0))  # no side flag: both sides
                for side, price, qty in rows:
                    out.append((base | DEPTH_SNAPSHOT_EVENT | (BUY_EVENT if side > 0 else SELL_EVENT), t,
                                price * tick, qty * lot))
                c["snapshots"] += 1
                c["snapshot_levels"] += len(rows)
        elif kind == KIND_DIFF:
            before = {(s, p): (book.bids if s > 0 else book.asks).get(p, 0) for s, p, _ in rows}
            c["diff_levels_in"] += len(rows)
            book.apply_diff(book_event(kind, t, seq, seq2, rows))  # may apply in part (behind a top)
            c["diff_level_changes"] += emit_changes(before)
        elif kind == KIND_BBO:
            if not use_top:
                c["bbo_not_used"] += 1
                continue
            bid = next(((p, q) for s, p, q in rows if s > 0), None)
            ask = next(((p, q) for s, p, q in rows if s < 0), None)
            c["tops_in"] += 1
            if bid is None or ask is None:
                continue
            before = {(1, p): book.bids[p] for p in book.bids.irange(minimum=bid[0])}
            before |= {(-1, p): book.asks[p] for p in book.asks.irange(maximum=ask[0])}
            before.setdefault((1, bid[0]), 0)
            before.setdefault((-1, ask[0]), 0)
            if book.apply_top(BookTop(seq, bid[0], bid[1], ask[0], ask[1], t)):
                c["tops_applied"] += 1
                c["top_level_changes"] += emit_changes(before)
        else:
            continue
        ts_l.append(t)
        if book.stale or not book.two_sided():
            c["unusable_book_messages"] += 1
            bid_l.append(-1)
            ask_l.append(-1)
        else:
            bid_l.append(book.bids.peekitem(-1)[0])
            ask_l.append(book.asks.peekitem(0)[0])
    rows_out = np.zeros(len(out), HFTBT_EVENT_DTYPE)
    if out:
        ev, ts, px, qty = zip(*out, strict=True)
        rows_out["ev"] = np.asarray(ev, dtype=np.uint64)
        rows_out["exch_ts"] = ts
        rows_out["local_ts"] = ts
        rows_out["px"] = px
        rows_out["qty"] = qty
    c["rows_out"] = len(rows_out)
    c["book_rejects"] = dict(book.rejects)
    tl = MarketTimeline(np.asarray(ts_l, dtype=np.int64), np.asarray(bid_l, dtype=np.int64),
                        np.asarray(ask_l, dtype=np.int64), tick)
    return rows_out, tl, c


def to_hftbacktest(events: np.ndarray, instrument: Instrument, use_top: bool = True
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """FlashMM events -> hftbacktest rows (see the module docstring). Returns (rows, counts)."""
    rows, _, counts = book_replay(events, instrument, use_top)
    return rows, counts


def market_timeline(events: np.ndarray, instrument: Instrument, use_top: bool = True
                    ) -> tuple[MarketTimeline, dict[str, Any]]:
    """The best bid / ask after every book message of FlashMM's book."""
    _, tl, counts = book_replay(events, instrument, use_top)
    return tl, counts


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
def flashmm_fills(records: Any) -> np.ndarray:
    """FlashMM's `Portfolio.fills` (FillRecord) -> FILL_DTYPE."""
    recs = list(records)
    out = np.zeros(len(recs), FILL_DTYPE)
    if not recs:
        return out
    out["ts_ns"] = [r.ts_ns for r in recs]
    out["side"] = [r.side for r in recs]
    out["price_ticks"] = [r.price_ticks for r in recs]
    out["lots"] = [r.lots for r in recs]
    out["fee"] = [r.fee_quote for r in recs]  # the settlement currency, whatever the field's old name says
    return out


def realised_spread(fills: np.ndarray, timeline: MarketTimeline, horizon_s: float = 5.0,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Size-weighted realised spread at `horizon_s` over fills, bps, with a 95 % bootstrap interval."""
    res: dict[str, Any] = {"horizon_s": horizon_s, "bps": None, "ci95": None, "fills_scored": 0,
                           "fills_unscored": int(len(fills)),
                           "method": f"size-weighted mean over fills; 95 % percentile bootstrap over fills "
                                     f"(iid resampling, {n_boot} draws)"}
    if len(fills) == 0 or len(timeline.ts_ns) == 0:
        return res
    t = fills["ts_ns"].astype(np.int64)
    later = t + int(round(horizon_s * NS_PER_S))
    m0 = timeline.mid(t, strict=True)
    m1 = timeline.mid(later)
    ok = np.isfinite(m0) & np.isfinite(m1) & (later <= timeline.ts_ns[-1])
    if not ok.any():
        return res
    side = fills["side"][ok].astype(np.float64)
    x = 2.0 * side * (m1[ok] - fills["price_ticks"][ok]) / m0[ok] * 1e4
    w = fills["lots"][ok].astype(np.float64)
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


def pnl_split(fills: np.ndarray, timeline: MarketTimeline, end_mid_ticks: float, instrument: Instrument
              ) -> dict[str, Any]:
    """PnL = cash + position at the final mid - fees = spread capture + inventory + fees, in the settlement
    currency by FlashMM's own cash-and-edge function (`core.state.fill_cash_and_edge`: linear or inverse),
    and in the quote currency (the settlement amounts valued at the final mid, as FlashMM's `pnl_usdc`)."""
    zero = {"total": 0.0, "spread_capture": 0.0, "inventory": 0.0, "fees": 0.0}
    if len(fills) == 0:
        return zero | {"settle": dict(zero), "settle_currency": instrument.settle_currency}
    side = fills["side"].astype(np.float64)
    px, lots = fills["price_ticks"], fills["lots"]
    mid0 = timeline.mid(fills["ts_ns"], strict=True)
    mid0 = np.where(np.isfinite(mid0), mid0, px)  # no usable book just before: no edge booked
    cash = spread = 0.0
    for sd, p, n, m in zip(side.tolist(), px.tolist(), lots.tolist(), mid0.tolist(), strict=True):
        c, e = fill_cash_and_edge(instrument, int(sd), p, n, m)
        cash += c
        spread += e
    fees = float(fills["fee"].sum())
    position = float((side * lots).sum())
    total = cash + instrument.settle_value(end_mid_ticks, position) - fees
    settle = {"total": total, "spread_capture": spread, "inventory": total - spread + fees, "fees": -fees}
    quote = {k: instrument.to_quote(v, end_mid_ticks) for k, v in settle.items()}
    return quote | {"settle": settle, "settle_currency": instrument.settle_currency}


def max_abs_inventory(fills: np.ndarray, timeline: MarketTimeline, t0_ns: int, t1_ns: int,
                      instrument: Instrument) -> float:
    """Largest |exposure| (quote currency: position x mid, or contracts x multiplier for an inverse contract)
    in [t0, t1], at every fill and every book message."""
    if len(fills) == 0:
        return 0.0
    order = np.argsort(fills["ts_ns"], kind="stable")
    f_ts = fills["ts_ns"][order]
    pos_after = np.cumsum(fills["side"][order].astype(np.float64) * fills["lots"][order])
    sel = (timeline.ts_ns >= t0_ns) & (timeline.ts_ns <= t1_ns) & timeline.valid
    ts = np.concatenate((timeline.ts_ns[sel], f_ts))
    k = np.searchsorted(f_ts, ts, side="right") - 1
    pos = np.where(k >= 0, pos_after[np.maximum(k, 0)], 0.0)
    mid = timeline.mid(ts)
    ok = np.isfinite(mid)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(instrument.exposure(mid[ok], pos[ok]))))


def score_fills(fills: np.ndarray, timeline: MarketTimeline, t0_ns: int, t1_ns: int, instrument: Instrument,
                capital: float, orders_placed: int, horizon_s: float = 5.0, n_boot: int = 2000, seed: int = 0
                ) -> dict[str, Any]:
    """Every comparison figure of one strategy's fills, by the definitions in the module docstring."""
    # one canonical order (an engine may report the fills of one instant in hash-map order), so the
    # bootstrap draws the same resamples on every run
    fills = fills[np.lexsort((fills["lots"], fills["price_ticks"], fills["side"], fills["ts_ns"]))]
    end_mid = timeline.last_mid(t1_ns)
    n = int(len(fills))
    position = float((fills["side"].astype(np.float64) * fills["lots"]).sum()) if n else 0.0
    return {
        "pnl": pnl_split(fills, timeline, end_mid, instrument),
        "fills": n,
        "volume_quote": float(np.abs(instrument.exposure(fills["price_ticks"], fills["lots"])).sum()) if n else 0.0,
        "position_end_lots": position,
        "end_mid": end_mid * timeline.tick,
        "realised_spread": realised_spread(fills, timeline, horizon_s, n_boot, seed),
        "max_abs_inventory_pct": max_abs_inventory(fills, timeline, t0_ns, t1_ns, instrument) / capital * 100.0,
        "orders_placed": int(orders_placed),
        "orders_per_fill": (orders_placed / n) if n else None,
    }
