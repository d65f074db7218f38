"""Market statistics of an L2 book + trade stream, to calibrate the simulated market against real data.

`MarketStatsCollector` is fed book states and trades as they happen (O(1) appends per event; everything
is computed in `result()` with numpy). Conventions, so that real and simulated figures compare:

- Time-weighted statistics weight each valid book state by how long it lasted: from its update to the
  next book update (valid or not), the last one until the end of the run (the latest event seen, or
  `result(end_ns=...)`). Stale or one-sided states are skipped (counted) and their time is excluded.
- Weighted quantiles are the lower quantile: the smallest value whose cumulative weight reaches q.
- Depth statistics are plain means over valid book updates (not time-weighted), per side; `*_quote`
  values each state's lots at its mid. `depth{N}bps_lots` is the mean size per side within N bps of the mid (N in `DEPTH_BPS`), comparable across instruments whose
  ticks differ; `book_span_bps_min` is the least distance from the mid to the farthest level seen on
  either side, so a feed that shows only the top of the book (Bitstamp's 20 levels) says whether it
  covered those N bps.
- Trades and taker orders: a venue that prints one trade per maker fill (Binance, Bitstamp) shows a
  sweep as several trades within milliseconds; the simulator prints one per market order. Consecutive
  trades with the same known aggressor side at most `BURST_GAP_NS` apart are counted as one taker
  order (`taker_order_*`), so the two compare; depth is also given in mean taker orders.
- Volatility: the mid is sampled on a 1 s grid starting at the first valid book state (the last valid
  mid at or before each grid point; a grid point that falls in a stale period has no mid and the
  returns touching it are dropped); `vol_*` are the sample standard deviations (ddof=1) of the 1 s
  log returns (in basis points) and of the 1 s mid changes (in ticks).
- `vol60_bps_per_sqrt_s`: the same 1 s grid, non-overlapping 60 s log returns, divided by sqrt(60):
  the price's volatility beyond the bid/ask bounce of the mid.
- `mid_move_5s_frac`: the share of 5 s steps of the 1 s grid over which the mid moved by at least
  `min_move_bps` (a constructor argument; 0 = any change). With a threshold above the coarser tick of two
  instruments it compares how often their mids move, whatever their ticks and feed cadences (>= 5 s
  apart is needed: Bitstamp's snapshots come every ~2.4 s).
- Predictive signal (`imbalance_sign_accuracy`, `trade_sign_accuracy`): how often the sign of the
  level-1 depth imbalance (bid size - ask size) at each 1 s grid point, and the aggressor side of each
  trade, equal the sign of the next change of the mid (the first later valid state whose mid differs;
  none across a stale period). For a trade the mid it is compared with is the state strictly before the
  trade's timestamp, so a trade's own impact counts the same whether the feed prints the book after
  the trade in the same instant (the simulator's block) or seconds later (a snapshot feed). Grid
  points with zero imbalance and trades of unknown side are left out and counted.
  `trade_flow_sign_accuracy`: the sign of the net aggressor volume of the last `FLOW_WINDOW_S` seconds at
  each grid point against the next mid change after the state in force there (no window without trades).
- `mid_changes_per_s` counts changes of the mid between consecutive valid book updates, per second of
  valid book time. It can be no faster than the feed's update cadence (100 ms for Binance depth diffs,
  one block for the simulator).

`binance_market_stats` replays recorded Binance spot frames (`flashmm.data.readers.read_binance`, which
applies Binance's sync rule) through L2Book;
`sim_market_stats` runs the embedded simulated market with no engine attached.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from flashmm.core.book import L2Book
from flashmm.core.domain import BookDiff, BookSnapshot, Instrument, Side, Trade
from flashmm.data.events import KIND_BBO, KIND_DIFF, KIND_SNAP, KIND_TRADE
from flashmm.data.readers import book_event, iter_messages, read_binance, read_bitstamp

NS_PER_S = 1_000_000_000
DEPTH_TICKS = 10
DEPTH_BPS = (5, 10, 25)
FLOW_WINDOW_S = 5
BURST_GAP_NS = 250_000_000  # a sweep prints its fills within ~40 ms on Bitstamp; blocks are 400 ms apart


def binance_spot_btcusdt() -> Instrument:
    """Binance spot BTCUSDT: tick 0.01 USDT, lot 0.00001 BTC."""
    return Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))


class MarketStatsCollector:
    __slots__ = (
        "instrument", "_ts", "_bid", "_ask", "_valid", "_bid_q", "_ask_q", "_d10_bid", "_d10_ask",
        "_tr_ts", "_tr_px", "_tr_lots", "_tr_side", "stale_updates", "one_sided_updates",
        "_first_ns", "_last_ns", "_q_bid", "_q_ask", "_dbps", "_span_bps", "min_move_bps", "_mid_quote",
    )

    def __init__(self, instrument: Instrument, min_move_bps: float = 0.0) -> None:
        self.instrument = instrument
        self.min_move_bps = float(min_move_bps)
        # level-1 sizes of every book state (0 when not valid), for the imbalance signal
        self._q_bid: list[int] = []
        self._q_ask: list[int] = []
        # per valid state: depth within each of DEPTH_BPS of the mid (bid + ask), and the book's span
        self._dbps: list[list[int]] = [[] for _ in DEPTH_BPS]
        self._span_bps: list[float] = []
        self._mid_quote: list[float] = []  # per valid state: the mid in quote currency per lot
        # one entry per book state (valid or not), in arrival order
        self._ts: list[int] = []
        self._bid: list[int] = []
        self._ask: list[int] = []
        self._valid: list[bool] = []
        # one entry per valid book state
        self._bid_q: list[int] = []
        self._ask_q: list[int] = []
        self._d10_bid: list[int] = []
        self._d10_ask: list[int] = []
        # trades
        self._tr_ts: list[int] = []
        self._tr_px: list[float] = []
        self._tr_lots: list[int] = []
        self._tr_side: list[int] = []  # +1 buy aggressor, -1 sell, 0 unknown
        self.stale_updates = 0
        self.one_sided_updates = 0
        self._first_ns: int | None = None
        self._last_ns: int | None = None

    def _see(self, ts_ns: int) -> None:
        if self._first_ns is None or ts_ns < self._first_ns:
            self._first_ns = ts_ns
        if self._last_ns is None or ts_ns > self._last_ns:
            self._last_ns = ts_ns

    # ---- events ------------------------------------------------------------------------------------
    def on_book(self, book: L2Book, ts_ns: int) -> None:
        """Call after each book update (including one that left the book stale)."""
        self._see(ts_ns)
        self._ts.append(ts_ns)
        if book.stale or not book.two_sided():
            if book.stale:
                self.stale_updates += 1
            else:
                self.one_sided_updates += 1
            self._bid.append(0)
            self._ask.append(0)
            self._valid.append(False)
            self._q_bid.append(0)
            self._q_ask.append(0)
            return
        bp, bq = book.best_bid()
        ap, aq = book.best_ask()
        self._bid.append(bp)
        self._ask.append(ap)
        self._valid.append(True)
        self._bid_q.append(bq)
        self._ask_q.append(aq)
        self._q_bid.append(bq)
        self._q_ask.append(aq)
        db, da = book.depth_within(DEPTH_TICKS)
        self._d10_bid.append(db)
        self._d10_ask.append(da)
        mid = (bp + ap) / 2.0
        self._mid_quote.append(mid * self.instrument.tick_f * self.instrument.lot_f)
        bids, asks = book.bids, book.asks
        for k, n_bps in enumerate(DEPTH_BPS):
            lo = math.ceil(mid * (1.0 - n_bps * 1e-4) - 1e-9)
            hi = math.floor(mid * (1.0 + n_bps * 1e-4) + 1e-9)
            total = 0
            for p in bids.irange(minimum=lo, reverse=True):
                total += bids[p]
            for p in asks.irange(maximum=hi):
                total += asks[p]
            self._dbps[k].append(total)
        far_bid = bids.peekitem(0)[0]
        far_ask = asks.peekitem(-1)[0]
        self._span_bps.append(min(mid - far_bid, far_ask - mid) / mid * 1e4)

    def on_trade(self, trade: Trade) -> None:
        self._see(trade.ts_ns)
        self._tr_ts.append(trade.ts_ns)
        self._tr_px.append(float(trade.price_ticks))
        self._tr_lots.append(int(trade.lots))
        self._tr_side.append(0 if trade.aggressor is None else int(trade.aggressor))

    # ---- result ------------------------------------------------------------------------------------
    def result(self, end_ns: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = self._first_ns
        end = self._last_ns if end_ns is None else max(end_ns, self._last_ns or end_ns)
        duration_s = 0.0 if first is None or end is None else (end - first) / NS_PER_S
        out["duration_s"] = duration_s
        out["book_updates"] = int(sum(self._valid))
        out["stale_updates"] = self.stale_updates
        out["one_sided_updates"] = self.one_sided_updates

        ts = np.asarray(self._ts, dtype=np.int64)
        valid = np.asarray(self._valid, dtype=bool)
        bid = np.asarray(self._bid, dtype=np.int64)
        ask = np.asarray(self._ask, dtype=np.int64)
        n = ts.size

        # time weights of every state: until the next state, the last until the end
        if n:
            w = np.empty(n, dtype=np.float64)
            w[:-1] = np.diff(ts) / NS_PER_S
            w[-1] = (end - ts[-1]) / NS_PER_S
            w[w < 0] = 0.0  # out-of-order input must not produce negative time
        else:
            w = np.empty(0)
        wv = w[valid]
        spread = (ask - bid)[valid].astype(np.float64)
        mid = ((ask + bid) / 2.0)[valid]
        valid_time = float(wv.sum())
        out["valid_time_s"] = valid_time

        if spread.size and valid_time > 0:
            out["spread_ticks_median"] = _wquantile(spread, wv, 0.5)
            out["spread_ticks_mean"] = float(np.dot(spread, wv) / valid_time)
            out["spread_ticks_p90"] = _wquantile(spread, wv, 0.9)
            out["spread_one_tick_frac"] = float(wv[spread == 1].sum() / valid_time)
            spread_bps = spread / mid * 1e4
            out["spread_bps_median"] = _wquantile(spread_bps, wv, 0.5)
            out["spread_bps_mean"] = float(np.dot(spread_bps, wv) / valid_time)
            out["spread_bps_p10"] = _wquantile(spread_bps, wv, 0.1)
            out["spread_bps_p90"] = _wquantile(spread_bps, wv, 0.9)
        else:
            for k in ("spread_ticks_median", "spread_ticks_mean", "spread_ticks_p90",
                      "spread_one_tick_frac", "spread_bps_median", "spread_bps_mean", "spread_bps_p10",
                      "spread_bps_p90"):
                out[k] = None

        # depth: plain means over valid book updates
        if self._bid_q:
            out["depth_best_lots"] = float(
                (np.mean(self._bid_q, dtype=np.float64) + np.mean(self._ask_q, dtype=np.float64)) / 2.0)
            out["depth10_lots"] = float(
                (np.mean(self._d10_bid, dtype=np.float64) + np.mean(self._d10_ask, dtype=np.float64)) / 2.0)
        else:
            out["depth_best_lots"] = out["depth10_lots"] = None
        mid_quote = np.asarray(self._mid_quote, dtype=np.float64)
        if self._bid_q:
            best = np.asarray(self._bid_q, dtype=np.float64) + np.asarray(self._ask_q, dtype=np.float64)
            out["depth_best_quote"] = float(np.mean(best * mid_quote) / 2.0)
        else:
            out["depth_best_quote"] = None
        for k, n_bps in enumerate(DEPTH_BPS):
            vals = self._dbps[k]
            out[f"depth{n_bps}bps_lots"] = float(np.mean(vals, dtype=np.float64) / 2.0) if vals else None
            out[f"depth{n_bps}bps_quote"] = (
                float(np.mean(np.asarray(vals, dtype=np.float64) * mid_quote) / 2.0) if vals else None)
        out["book_span_bps_min"] = float(min(self._span_bps)) if self._span_bps else None

        # trades
        lots = np.asarray(self._tr_lots, dtype=np.float64)
        px = np.asarray(self._tr_px, dtype=np.float64)
        side = np.asarray(self._tr_side, dtype=np.int64)
        out["trades"] = int(lots.size)
        out["trade_rate_per_s"] = lots.size / duration_s if duration_s > 0 else None
        if lots.size:
            mean_lots = float(lots.mean())
            out["trade_size_mean_lots"] = mean_lots
            out["trade_size_median_lots"] = float(np.median(lots))
            out["trade_size_median_over_mean"] = (
                out["trade_size_median_lots"] / mean_lots if mean_lots else None)
            out["trade_notional_mean_quote"] = float(
                np.mean(px * lots) * self.instrument.tick_f * self.instrument.lot_f)
        else:
            mean_lots = 0.0
            out["trade_size_mean_lots"] = out["trade_size_median_lots"] = None
            out["trade_size_median_over_mean"] = out["trade_notional_mean_quote"] = None
        known = side != 0
        out["trades_known_side"] = int(known.sum())
        out["buy_aggressor_frac"] = float((side[known] > 0).mean()) if known.any() else None
        for k_out, k_in in (("depth_best_in_mean_trades", "depth_best_lots"),
                            ("depth10_in_mean_trades", "depth10_lots")):
            out[k_out] = out[k_in] / mean_lots if (out[k_in] is not None and mean_lots > 0) else None

        # taker orders: runs of same-side trades at most BURST_GAP_NS apart
        tr_ts = np.asarray(self._tr_ts, dtype=np.int64)
        orders = _taker_orders(tr_ts, side, lots)
        out["taker_orders"] = int(orders.size)
        out["taker_order_rate_per_s"] = orders.size / duration_s if duration_s > 0 else None
        if orders.size:
            mean_order = float(orders.mean())
            out["taker_order_size_mean_lots"] = mean_order
            out["taker_order_size_median_over_mean"] = float(np.median(orders)) / mean_order
            out["taker_order_size_p90_over_mean"] = float(np.quantile(orders, 0.9)) / mean_order
            out["taker_order_notional_mean_quote"] = float(
                mean_order * float(np.mean(px)) * self.instrument.tick_f * self.instrument.lot_f)
        else:
            mean_order = 0.0
            for k in ("taker_order_size_mean_lots", "taker_order_size_median_over_mean",
                      "taker_order_size_p90_over_mean", "taker_order_notional_mean_quote"):
                out[k] = None
        depth_keys = ["depth_best_lots"] + [f"depth{n}bps_lots" for n in DEPTH_BPS]
        for k_in in depth_keys:
            k_out = k_in.replace("_lots", "_in_mean_taker_orders")
            out[k_out] = out[k_in] / mean_order if (out[k_in] is not None and mean_order > 0) else None

        # volatility, mid moves and the predictive signal on a 1 s grid
        out.update(self._grid_stats(ts, valid, bid, ask, end, tr_ts, side))

        # mid changes between consecutive valid updates, per second of valid book time
        mid2 = bid + ask  # twice the mid, integer: no float equality
        if n >= 2 and valid_time > 0:
            both = valid[1:] & valid[:-1]
            changes = int(np.count_nonzero(both & (mid2[1:] != mid2[:-1])))
            out["mid_changes"] = changes
            out["mid_changes_per_s"] = changes / valid_time
        else:
            out["mid_changes"] = 0
            out["mid_changes_per_s"] = None
        return out

    def _grid_stats(self, ts: np.ndarray, valid: np.ndarray, bid: np.ndarray, ask: np.ndarray, end: int | None,
                    tr_ts: np.ndarray, tr_side: np.ndarray) -> dict:
        res: dict[str, Any] = {
            "vol_samples": 0, "vol_bps_per_sqrt_s": None, "vol_ticks_per_sqrt_s": None,
            "vol60_samples": 0, "vol60_bps_per_sqrt_s": None,
            "mid_move_5s_samples": 0, "mid_move_5s_frac": None, "mid_move_min_bps": self.min_move_bps,
            "imbalance_sign_samples": 0, "imbalance_sign_accuracy": None, "imbalance_zero_or_no_move": 0,
            "trade_sign_samples": 0, "trade_sign_accuracy": None, "trade_sign_unscored": 0,
            "trade_flow_sign_samples": 0, "trade_flow_sign_accuracy": None,
        }
        if not valid.any() or end is None:
            return res
        t0 = int(ts[np.argmax(valid)])
        k = (end - t0) // NS_PER_S
        grid = t0 + np.arange(k + 1, dtype=np.int64) * NS_PER_S
        idx = np.searchsorted(ts, grid, side="right") - 1  # the state in force at each grid point
        mid = np.where(valid[idx], (bid[idx] + ask[idx]) / 2.0, np.nan)
        dmid = np.diff(mid)
        logret = np.diff(np.log(mid))
        ok = np.isfinite(dmid)
        res["vol_samples"] = int(ok.sum())
        if ok.sum() >= 2:
            res["vol_bps_per_sqrt_s"] = float(np.std(logret[ok], ddof=1) * 1e4)
            res["vol_ticks_per_sqrt_s"] = float(np.std(dmid[ok], ddof=1))
        r60 = np.diff(np.log(mid[::60]))
        r60 = r60[np.isfinite(r60)]
        res["vol60_samples"] = int(r60.size)
        if r60.size >= 2:
            res["vol60_bps_per_sqrt_s"] = float(np.std(r60, ddof=1) * 1e4 / math.sqrt(60.0))
        r5 = np.diff(np.log(mid[::5]))
        r5 = r5[np.isfinite(r5)]
        res["mid_move_5s_samples"] = int(r5.size)
        if r5.size:
            moved = np.abs(r5) * 1e4 >= self.min_move_bps if self.min_move_bps > 0 else r5 != 0
            res["mid_move_5s_frac"] = float(moved.mean())

        # the sign of the next mid change after each state (0: none before the run ends or goes stale)
        mid2 = (bid + ask).tolist()
        vl = valid.tolist()
        n = len(mid2)
        nxt = [0] * n
        for i in range(n - 2, -1, -1):
            if not (vl[i] and vl[i + 1]):
                continue
            d = mid2[i + 1] - mid2[i]
            nxt[i] = (d > 0) - (d < 0) if d else nxt[i + 1]
        nxt_a = np.asarray(nxt, dtype=np.int64)
        qb = np.asarray(self._q_bid, dtype=np.int64)
        qa = np.asarray(self._q_ask, dtype=np.int64)
        imb = np.sign(qb[idx] - qa[idx])
        label = nxt_a[idx]
        scored = valid[idx] & (imb != 0) & (label != 0)
        res["imbalance_sign_samples"] = int(scored.sum())
        res["imbalance_zero_or_no_move"] = int((valid[idx] & ~scored).sum())
        if scored.any():
            res["imbalance_sign_accuracy"] = float((imb[scored] == label[scored]).mean())
        if tr_ts.size:
            # net aggressor volume of the last FLOW_WINDOW_S at each grid point vs the next mid change
            signed = np.cumsum(tr_side * np.asarray(self._tr_lots, dtype=np.int64))
            hi = np.searchsorted(tr_ts, grid, side="right") - 1
            lo = np.searchsorted(tr_ts, grid - FLOW_WINDOW_S * NS_PER_S, side="right") - 1
            net = np.where(hi >= 0, signed[np.maximum(hi, 0)], 0) - np.where(lo >= 0, signed[np.maximum(lo, 0)], 0)
            flow = np.sign(net)
            f_ok = valid[idx] & (flow != 0) & (label != 0)
            res["trade_flow_sign_samples"] = int(f_ok.sum())
            if f_ok.any():
                res["trade_flow_sign_accuracy"] = float((flow[f_ok] == label[f_ok]).mean())
            before = np.searchsorted(ts, tr_ts, side="left") - 1  # the state strictly before each trade
            has = before >= 0
            b = np.where(has, before, 0)
            t_label = np.where(has & valid[b], nxt_a[b], 0)
            t_ok = (tr_side != 0) & (t_label != 0)
            res["trade_sign_samples"] = int(t_ok.sum())
            res["trade_sign_unscored"] = int((~t_ok).sum())
            if t_ok.any():
                res["trade_sign_accuracy"] = float((tr_side[t_ok] == t_label[t_ok]).mean())
        return res


def _taker_orders(ts: np.ndarray, side: np.ndarray, lots: np.ndarray) -> np.ndarray:
    """Sizes of taker orders: runs of consecutive trades with the same known aggressor side at most
    BURST_GAP_NS apart are one order; a trade of unknown side is an order of its own."""
    if ts.size == 0:
        return np.empty(0)
    new = np.ones(ts.size, dtype=bool)
    new[1:] = ~((side[1:] == side[:-1]) & (side[1:] != 0) & (np.diff(ts) <= BURST_GAP_NS))
    starts = np.flatnonzero(new)
    return np.add.reduceat(lots, starts)


def _wquantile(values: np.ndarray, weights: np.ndarray, q: float) -> float | None:
    """Lower weighted quantile: the smallest value whose cumulative weight reaches q of the total."""
    total = weights.sum()
    if values.size == 0 or total <= 0:
        return None
    order = np.argsort(values, kind="stable")
    v = values[order]
    cw = np.cumsum(weights[order])
    i = int(np.searchsorted(cw, q * total - 1e-12 * total, side="left"))
    return float(v[min(i, v.size - 1)])


# ---- Binance recorded frames ----------------------------------------------------------------------


def binance_market_stats(paths: list[Path], instrument: Instrument) -> dict[str, Any]:
    """Stats of recorded Binance spot frames, read by `read_binance(paths, "spot")` (the given files in
    order, as one stream; event time is the local receive time) and replayed through L2Book.

    The reader does Binance's sync (diffs buffered until the REST snapshot, u <= lastUpdateId dropped,
    quantities off the lot grid rounded up and counted); L2Book applies the chain rule (the first diff must
    have U <= lastUpdateId+1 <= u, then each U == previous u + 1) and marks any break stale. A stale book
    stays stale until another snapshot (none in the 20240808 recording): its states are skipped by the
    stats and the gap is counted.

    Also cross-checks the book against the BBO rows (bookTicker frames): whenever a bookTicker's update id
    equals the last update id of an applied diff, the book's best bid/ask (price and size) must equal it.
    """
    es = read_binance(list(paths), "spot")
    if (es.instrument.price_tick, es.instrument.lot_size) != (instrument.price_tick, instrument.lot_size):
        raise ValueError(f"instrument {instrument} does not match Binance spot BTCUSDT {es.instrument}")
    book = L2Book()
    col = MarketStatsCollector(instrument)
    tickers: dict[int, tuple[int, int, int, int]] = {}
    book_bbo: dict[int, tuple[int, int, int, int]] = {}
    diffs_applied = 0
    sync: dict[str, int] | None = None
    snap_id: int | None = None
    first_after_snap = False

    for kind, ts, seq, seq2, rows in iter_messages(es.events):
        if kind == KIND_DIFF:
            if first_after_snap:
                sync = {"U": seq, "u": seq2, "lastUpdateId": snap_id}
                first_after_snap = False
            if book.apply_diff(book_event(kind, ts, seq, seq2, rows)):
                diffs_applied += 1
                bb, ba = book.best_bid(), book.best_ask()
                if bb and ba:
                    book_bbo[seq2] = (bb[0], bb[1], ba[0], ba[1])
                col.on_book(book, ts)
            elif book.stale:  # a gap (or a diff while stale): the state is recorded as stale and skipped
                col.on_book(book, ts)
        elif kind == KIND_TRADE:
            side, price, lots = rows[0]
            col.on_trade(Trade(float(price), lots, Side(side) if side else None, ts))
        elif kind == KIND_BBO:
            bid = next(r for r in rows if r[0] > 0)
            ask = next(r for r in rows if r[0] < 0)
            tickers[seq] = (bid[1], bid[2], ask[1], ask[2])
        elif kind == KIND_SNAP:
            book.apply_snapshot(book_event(kind, ts, seq, seq2, rows))
            col.on_book(book, ts)
            snap_id, first_after_snap = seq, True

    res = col.result()
    common = tickers.keys() & book_bbo.keys()
    mismatched = sum(1 for u in common if tickers[u] != book_bbo[u])
    res["gaps"] = int(book.rejects["sequence_gap"])
    res["book_rejects"] = dict(book.rejects)
    res["bbo_crosscheck"] = {"compared": len(common), "mismatched": mismatched}
    res["sync"] = sync
    m, rej = es.meta, es.rejects
    res["counts"] = {
        "lines": m.get("lines", 0), "depth_diffs": m.get("depth_diffs", 0), "diffs_applied": diffs_applied,
        "diffs_dropped_before_sync": m.get("diffs_dropped_before_sync", 0),
        "diffs_duplicate": int(book.rejects["diff_already_applied"]), "snapshots": m.get("snapshots", 0),
        "trades": m.get("trades", 0), "book_tickers": m.get("book_tickers", 0),
        "bad_lines": sum(rej.get(k, 0) for k in _SKIPPED_LINE_KINDS),
        "qty_off_lot_grid": rej.get("qty_off_lot_grid", 0),
    }
    res["reader_rejects"] = dict(rej)
    res["source"] = [Path(p).name for p in paths]
    res["instrument"] = _instrument_dict(instrument)
    return res


# reader rejects that drop a whole line (qty_off_lot_grid keeps it, rounded up)
_SKIPPED_LINE_KINDS = ("malformed_line", "bad_field", "out_of_order_ts", "unknown_stream", "duplicate_trade")


def _instrument_dict(instrument: Instrument) -> dict[str, str]:
    return {"symbol": instrument.symbol, "base": instrument.base, "quote": instrument.quote,
            "price_tick": str(instrument.price_tick), "lot_size": str(instrument.lot_size)}


# ---- the embedded simulated market ----------------------------------------------------------------


def sim_market_stats(seconds: float, seed: int, sim_config=None, min_move_bps: float = 0.0) -> dict[str, Any]:
    """Run the embedded simulated market (no engine attached) for `seconds` of simulated time and
    collect the same statistics from its public events."""
    from flashmm.config import SimConfig, default_instrument
    from flashmm.venues.sim import SimMarket

    cfg = SimConfig() if sim_config is None else sim_config
    instrument = default_instrument()
    m = SimMarket(cfg, instrument, seed)
    book = L2Book()
    col = MarketStatsCollector(instrument, min_move_bps=min_move_bps)
    start = m.clock.now_ns()
    stop = start + int(seconds * NS_PER_S)
    steps = 0
    while m.clock.now_ns() < stop:
        events = m.step()
        steps += 1
        for ev in events:
            if isinstance(ev, BookSnapshot):
                book.apply_snapshot(ev)
                col.on_book(book, ev.ts_ns)
            elif isinstance(ev, BookDiff):
                if book.apply_diff(ev) or book.stale:
                    col.on_book(book, ev.ts_ns)
            elif isinstance(ev, Trade):
                col.on_trade(ev)
    res = col.result(end_ns=m.clock.now_ns())
    res["gaps"] = int(book.rejects["sequence_gap"])
    res["book_rejects"] = dict(book.rejects)
    res["steps"] = steps
    res["seed"] = seed
    res["source"] = f"flashmm.venues.sim.SimMarket seed={seed} seconds={seconds}"
    res["instrument"] = _instrument_dict(instrument)
    return res


# ---- Bitstamp 2015 capture --------------------------------------------------------------------------


def bitstamp_market_stats(path: Path, min_move_bps: float = 0.0, tick_multiple: int = 1) -> dict[str, Any]:
    """Stats of the Bitstamp BTC/USD capture (`read_bitstamp`): every `order_book` line is a full top-20
    snapshot applied to L2Book, trades carry the aggressor the reader inferred (book rule, else L3).

    `tick_multiple` k > 1 measures the same book on a tick k times coarser (k cents): bids are floored and
    asks ceiled onto the coarser grid and the sizes of the levels that merge are summed, as if the same
    orders had had to rest on that venue's grid; trade prices are divided by k. This puts tick-dependent
    figures (spread in ticks, time at one tick, depth at the best level, how often the mid moves) on the
    tick-to-price ratio of another market."""
    if tick_multiple < 1:
        raise ValueError(f"tick_multiple must be >= 1, got {tick_multiple}")
    es = read_bitstamp(Path(path))
    k = tick_multiple
    inst = es.instrument
    if k > 1:
        inst = Instrument(inst.symbol, inst.base, inst.quote, inst.price_tick * k, inst.lot_size)
    book = L2Book()
    col = MarketStatsCollector(inst, min_move_bps=min_move_bps)
    for kind, ts, seq, seq2, rows in iter_messages(es.events):
        if kind == KIND_SNAP:
            snap = book_event(kind, ts, seq, seq2, rows)
            if k > 1:
                snap = BookSnapshot(seq, _coarsen(snap.bids, k, floor=True), _coarsen(snap.asks, k, floor=False), ts)
            book.apply_snapshot(snap)
            col.on_book(book, ts)
        elif kind == KIND_TRADE:
            side, price, lots = rows[0]
            col.on_trade(Trade(price / k, lots, Side(side) if side else None, ts))
    res = col.result()
    res["gaps"] = int(book.rejects["sequence_gap"])
    res["book_rejects"] = dict(book.rejects)
    m = es.meta
    res["counts"] = {"lines": m.get("lines", 0), "snapshots": m.get("order_book", 0), "trades": m.get("trade", 0),
                     "trade_side_from": m.get("side_from", {}),
                     "book_rule_disagrees_with_l3": m.get("book_rule_disagrees_with_l3", 0)}
    res["reader_rejects"] = dict(es.rejects)
    res["source"] = [Path(path).name]
    res["tick_multiple"] = k
    res["instrument"] = _instrument_dict(inst)
    return res


def _coarsen(levels: list[tuple[int, int]], k: int, floor: bool) -> list[tuple[int, int]]:
    """Levels moved onto a grid k times coarser, away from the mid (bids down, asks up), sizes summed."""
    out: dict[int, int] = {}
    for price, lots in levels:
        p = price // k if floor else -((-price) // k)
        out[p] = out.get(p, 0) + lots
    return sorted(out.items())


# mid moves counted in calibration: below half the simulator's 2.5 bps tick, so any move of its mid counts,
# and above the bulk of Bitstamp's half-cent (0.2 bps) flickers
CALIBRATION_MIN_MOVE_BPS = 1.0


def bitstamp_tick_multiple(path: Path, sim_config, instrument: Instrument) -> int:
    """The whole number of Bitstamp ticks (cents) nearest to the simulator's tick-to-price ratio at the
    capture's median mid: 6 for 0.0001 USDC at 0.40 (2.5 bps) against ~236 USD."""
    es = read_bitstamp(Path(path))
    mids = []
    for kind, _ts, _seq, _seq2, rows in iter_messages(es.events):
        if kind == KIND_SNAP:
            bids = [p for s, p, _ in rows if s > 0]
            asks = [p for s, p, _ in rows if s < 0]
            if bids and asks:
                mids.append((max(bids) + min(asks)) / 2.0)
    if not mids:
        raise ValueError(f"{path}: no two-sided snapshot")
    sim_ratio = instrument.tick_f / sim_config.initial_price
    return max(1, round(sim_ratio * float(np.median(mids))))
