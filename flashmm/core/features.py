"""Microstructure features, updated incrementally per event in O(levels).

One code path serves live quoting and (later) model training, so there is no training/serving skew.
All decays are in venue time, so the same event stream gives the same features at any replay speed.
"""

from __future__ import annotations

import math

import numpy as np

from flashmm.core.book import L2Book
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import Trade

FEATURE_NAMES: tuple[str, ...] = (
    "spread_ticks",
    "microprice_offset_ticks",  # microprice - mid
    "imbalance_1",  # (bid - ask) / (bid + ask) lots at the best level
    "imbalance_3",
    "imbalance_5",
    "order_flow_imbalance",  # Cont-Kukanov-Stoikov OFI, EWMA, normalised by best-level depth
    "trade_flow_imbalance",  # EWMA signed taker volume / EWMA taker volume
    "volatility_ticks",  # EWMA realised volatility of the mid, ticks per sqrt(second)
    "momentum_ticks",  # mid - EWMA(mid)
    "bid_queue_lots",
    "ask_queue_lots",
)
F = {name: i for i, name in enumerate(FEATURE_NAMES)}
_EXACT = 1 << 26  # prices and 5-level sizes below this: the features' integer arithmetic stays below 2**53
_NAN = float("nan")  # (not math.nan: the compiled build's `math` is C's libm, where nan is a function)


class FeatureEngine:
    __slots__ = (
        "values", "vol_tau_s", "flow_tau_s", "mom_tau_s", "_last_ts", "_mid", "_ema_mid", "_var_sum", "_var_time",
        "_prev_top", "_pbp", "_pbq", "_pap", "_paq", "_have_prev", "_top_exact", "_ofi", "_depth", "_flow_signed",
        "_flow_total", "_flow_ts", "ready", "_v",
    )

    def __init__(self, vol_halflife_s: float = 30.0, flow_halflife_s: float = 5.0, momentum_halflife_s: float = 2.0):
        self.values = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
        self._v = self.values  # the same array; the compiled build writes it as typed memory (features.pxd)
        ln2 = math.log(2.0)
        self.vol_tau_s = vol_halflife_s / ln2
        self.flow_tau_s = flow_halflife_s / ln2
        self.mom_tau_s = momentum_halflife_s / ln2
        self._last_ts = 0
        self._mid = _NAN
        self._ema_mid = _NAN
        self._var_sum = 0.0
        self._var_time = 0.0
        # the previous top (bid px, bid lots, ask px, ask lots): in the four integers while its values are below
        # 2**26 (`_top_exact`), else as a tuple of Python integers
        self._have_prev = False
        self._top_exact = False
        self._pbp = self._pbq = self._pap = self._paq = 0
        self._prev_top: tuple[int, int, int, int] | None = None
        self._ofi = 0.0
        self._depth = 0.0
        self._flow_signed = 0.0
        self._flow_total = 0.0
        self._flow_ts = 0
        self.ready = False

    def on_book(self, book: L2Book, ts_ns: int) -> None:
        if book.stale or not book.two_sided():
            return
        bp, bq, bq3, bq5 = book.bids.top_depth()  # the best price and lots, and the lots over 3 and 5 levels
        ap, aq, aq3, aq5 = book.asks.top_depth()
        if bp < _EXACT and ap < _EXACT and bq5 < _EXACT and aq5 < _EXACT and (self._top_exact or not self._have_prev):
            self._update_exact(ts_ns, bp, bq, ap, aq, bq3, aq3, bq5, aq5)
        else:
            self._update_any(ts_ns, bp, bq, ap, aq, bq3, aq3, bq5, aq5)

    def _update_exact(self, ts_ns: int, bp: int, bq: int, ap: int, aq: int, bq3: int, aq3: int, bq5: int,
                      aq5: int) -> None:
        """The integer arithmetic of an update whose prices and sizes (and the previous top's) are below 2**26:
        every intermediate is then below 2**53, so the compiled build's C integers convert to doubles exactly and
        every result is the interpreter's to the bit. (The features' integer arithmetic on Python integers was a
        third of an update's cost.)"""
        if self._have_prev:
            pbp, pbq, pap, paq = self._pbp, self._pbq, self._pap, self._paq
            e = (bq if bp >= pbp else 0) - (pbq if bp <= pbp else 0) - (aq if ap <= pap else 0) + (paq if ap >= pap else 0)
        else:
            e = 0
        self._pbp, self._pbq, self._pap, self._paq = bp, bq, ap, aq
        self._top_exact = True
        self._update(ts_ns, (bp + ap) / 2.0, ap - bp, (bp * aq + ap * bq) / (bq + aq), (bq - aq) / (bq + aq),
                     (bq3 - aq3) / (bq3 + aq3), (bq5 - aq5) / (bq5 + aq5), e, bq + aq, bq, aq)

    def _update_any(self, ts_ns: int, bp: int, bq: int, ap: int, aq: int, bq3: int, aq3: int, bq5: int,
                    aq5: int) -> None:
        """The same arithmetic on unbounded integers, each result rounded to a double once."""
        if self._have_prev:
            pbp, pbq, pap, paq = (self._pbp, self._pbq, self._pap, self._paq) if self._top_exact else self._prev_top
            e = (bq if bp >= pbp else 0) - (pbq if bp <= pbp else 0) - (aq if ap <= pap else 0) + (paq if ap >= pap else 0)
        else:
            e = 0
        if bp < _EXACT and ap < _EXACT and bq < _EXACT and aq < _EXACT:  # the next update may be exact again
            self._pbp, self._pbq, self._pap, self._paq = bp, bq, ap, aq
            self._top_exact = True
        else:
            self._prev_top = (bp, bq, ap, aq)
            self._top_exact = False
        self._update(ts_ns, (bp + ap) / 2.0, float(ap - bp), (bp * aq + ap * bq) / (bq + aq), (bq - aq) / (bq + aq),
                     (bq3 - aq3) / (bq3 + aq3), (bq5 - aq5) / (bq5 + aq5), float(e), float(bq + aq), float(bq),
                     float(aq))

    def _update(self, ts_ns: int, mid: float, spread: float, micro: float, imb1: float, imb3: float,
                imb5: float, e: float, depth2: float, bq: float, aq: float) -> None:
        """The decayed state and the vector from the update's exact quantities (`depth2`: the best bid's plus the
        best ask's lots; `e`: the order-flow increment at the best level)."""
        v = self._v
        dt = (ts_ns - self._last_ts) / NS_PER_S if self._last_ts else 0.0

        # realised variance as decayed sum of squared mid changes over decayed elapsed time
        if self.ready and dt > 0:
            d_vol = math.exp(-dt / self.vol_tau_s)
            dm = mid - self._mid
            self._var_sum = self._var_sum * d_vol + dm * dm
            self._var_time = self._var_time * d_vol + dt
            a_mom = 1.0 - math.exp(-dt / self.mom_tau_s)
            self._ema_mid += a_mom * (mid - self._ema_mid)
        elif not self.ready:
            self._ema_mid = mid

        # order-flow imbalance at the best level (Cont, Kukanov & Stoikov 2014)
        if self._have_prev:
            d_flow = math.exp(-dt / self.flow_tau_s) if dt > 0 else 1.0
            self._ofi = self._ofi * d_flow + e
            self._depth = self._depth * d_flow + (1.0 - d_flow) * depth2 / 2.0 if self.ready else depth2 / 2.0
        else:
            self._depth = depth2 / 2.0
        self._have_prev = True

        self._mid = mid
        self._last_ts = ts_ns
        self.ready = True
        v[0] = spread
        v[1] = micro - mid
        v[2] = imb1
        v[3] = imb3
        v[4] = imb5
        v[5] = self._ofi / self._depth if self._depth > 0 else 0.0
        v[6] = self._flow_signed / self._flow_total if self._flow_total > 0 else 0.0
        v[7] = math.sqrt(self._var_sum / self._var_time) if self._var_time > 0 else 0.0
        v[8] = mid - self._ema_mid
        v[9] = bq
        v[10] = aq

    def on_trade(self, trade: Trade) -> None:
        aggressor = trade.aggressor
        if aggressor is None:
            return
        ts, lots = trade.ts_ns, trade.lots
        dt = (ts - self._flow_ts) / NS_PER_S if self._flow_ts else 0.0
        d = math.exp(-dt / self.flow_tau_s) if dt > 0 else 1.0
        self._flow_signed = self._flow_signed * d + int(aggressor) * lots
        self._flow_total = self._flow_total * d + lots
        self._flow_ts = ts
        self._v[6] = self._flow_signed / self._flow_total if self._flow_total > 0 else 0.0

    @property
    def volatility_ticks(self) -> float:
        return float(self.values[7])

    @property
    def mid_ticks(self) -> float:
        return self._mid

    def as_dict(self) -> dict[str, float]:
        return {name: float(self.values[i]) for i, name in enumerate(FEATURE_NAMES)}
