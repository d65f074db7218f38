"""What the quoter learns online from the market and from its own fills, each bounded and shown.

- `TradeIntensity`: the fill-intensity curve lambda(delta) = A exp(-k delta) of GLFT, fitted as hftbacktest's
  GLFT tutorial does: each market trade's distance from the mid (bps) at the time it printed; the rate of
  trades reaching at least delta, for a grid of delta, over a decaying window; log-linear least squares.
- `AdverseSelection`: how far the mid moves against a passive fill within `horizon_s`, in bps. The prior is
  the market's own trade impact (the mid's move in the aggressor's direction after each trade); our fills'
  measured adverse selection (effective - realised spread, core.metrics) takes over as they accumulate.
- `VolatilityRegime`: calm / volatile / trending from a short and a long volatility (EWMA of squared
  one-second mid returns, or GARCH(1,1) targeting the long variance) and the short-horizon drift.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections import deque

import numpy as np

# distance grid for the intensity fit, bps from the mid
_DELTAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0])
_DELTAS_LIST = [float(d) for d in _DELTAS]
_NEVER = 1 << 62


def _line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """`np.polyfit(x, y, 1, w=w)`: (slope, intercept), by the same numpy operations in the same order (numpy 2's
    polyfit: the weighted Vandermonde matrix, its columns scaled to unit norm, `lstsq`, the scale undone), so the
    same bits, without polyfit's argument checks and copies (the refit runs every 5 s of a replay, and polyfit's
    Python was most of its cost). Not its rank warning: a rank-deficient fit gives the same numbers silently."""
    lhs = np.vander(x, 2)
    lhs *= w[:, np.newaxis]
    rhs = y * w
    scale = np.sqrt((lhs * lhs).sum(axis=0))
    lhs /= scale
    c = np.linalg.lstsq(lhs, rhs, len(x) * _EPS)[0]
    c = (c.T / scale).T
    return float(c[0]), float(c[1])


_EPS = float(np.finfo(np.float64).eps)


class TradeIntensity:
    """See the module docstring. `fit()` returns (A per second, k per bps), clipped to the given bounds; the
    bounds are also what it returns before `min_trades` trades have been seen (the configured A and k)."""

    __slots__ = ("halflife_ns", "counts", "time_s", "trades", "_last_ns", "min_trades", "a_bounds", "k_bounds",
                 "default", "a", "k")

    def __init__(self, default_a: float, default_k: float, halflife_s: float = 300.0, min_trades: int = 50,
                 a_bounds: tuple[float, float] = (0.05, 50.0), k_bounds: tuple[float, float] = (0.1, 10.0)) -> None:
        self.halflife_ns = halflife_s * 1e9
        # per distance of the grid, decayed: a C array of doubles (updated in place, 12 C operations a trade in the
        # compiled build, calibration.pxd; the same IEEE operations as on a list of floats)
        self.counts = array("d", [0.0] * len(_DELTAS))
        self.time_s = 0.0
        self.trades = 0
        self._last_ns = -1
        self.min_trades = min_trades
        self.a_bounds = a_bounds
        self.k_bounds = k_bounds
        self.default = (default_a, default_k)
        self.a, self.k = default_a, default_k

    def _decay_to(self, now_ns: int) -> None:
        if self._last_ns >= 0 and now_ns > self._last_ns:
            dt = now_ns - self._last_ns
            d = 0.5 ** (dt / self.halflife_ns)
            counts = self.counts
            for i in range(len(counts)):
                counts[i] *= d
            self.time_s = self.time_s * d + dt / 1e9
        self._last_ns = max(self._last_ns, now_ns)

    def on_trade(self, price_ticks: float, mid_ticks: float, now_ns: int) -> None:
        if mid_ticks <= 0:
            return
        self._decay_to(now_ns)
        dist = abs(price_ticks - mid_ticks) / mid_ticks * 1e4
        reach = dist + 1e-12
        counts = self.counts
        for i in range(len(counts)):
            if _DELTAS_LIST[i] <= reach:
                counts[i] += 1.0
        self.trades += 1

    def fit(self, now_ns: int) -> tuple[float, float]:
        self._decay_to(now_ns)
        if self.trades < self.min_trades or self.time_s <= 0:
            return self.default
        counts = np.asarray(self.counts)
        rate = counts / self.time_s
        ok = rate > 1e-9
        if ok.sum() < 3:
            return self.a, self.k
        x = _DELTAS[ok]
        y = np.log(rate[ok])
        w = np.sqrt(counts[ok])  # bins with more trades weigh more
        slope, intercept = _line_fit(x, y, w)
        lo, hi = self.a_bounds
        a = float(min(max(math.exp(intercept), lo), hi))  # (np.clip's value on a float, without its call's cost)
        lo, hi = self.k_bounds
        k = float(min(max(-slope, lo), hi))
        self.a, self.k = a, k
        return a, k


class AdverseSelection:
    """See the module docstring. Values in bps, positive when the market moved against the passive side."""

    __slots__ = ("horizon_ns", "prior_weight", "_alpha", "impact", "impact_n", "ours", "ours_n", "_pending",
                 "next_due_ns")

    def __init__(self, horizon_s: float = 5.0, halflife_trades: float = 500.0, halflife_fills: float = 30.0,
                 prior_weight_fills: float = 10.0) -> None:
        self.horizon_ns = int(horizon_s * 1e9)
        self.prior_weight = prior_weight_fills
        self._alpha = (1 - 0.5 ** (1 / halflife_trades), 1 - 0.5 ** (1 / halflife_fills))
        self.impact = 0.0  # EWMA of the market's trade impact, bps
        self.impact_n = 0
        self.ours = 0.0  # EWMA of our fills' adverse selection, bps
        self.ours_n = 0
        self._pending: deque[tuple[int, int, float]] = deque()  # (due, aggressor sign, mid)
        # when the oldest pending trade's horizon passes (the engine calls resolve only from then on; read on
        # every market message, so kept as the queue changes rather than computed)
        self.next_due_ns = _NEVER

    def on_trade(self, aggressor: int, mid_ticks: float, now_ns: int) -> None:
        if aggressor and mid_ticks > 0:
            pend = self._pending
            if not pend:
                self.next_due_ns = now_ns + self.horizon_ns
            pend.append((now_ns + self.horizon_ns, aggressor, mid_ticks))

    def resolve(self, now_ns: int, mid_ticks: float) -> None:
        """The market's trades whose horizon passed, scored with the mid that held until now."""
        pend = self._pending
        a = self._alpha[0]
        while pend and pend[0][0] <= now_ns:
            _, sign, mid0 = pend.popleft()
            impact = sign * (mid_ticks - mid0) / mid0 * 1e4
            self.impact = impact if self.impact_n == 0 else self.impact + a * (impact - self.impact)
            self.impact_n += 1
        self.next_due_ns = pend[0][0] if pend else _NEVER

    def on_our_fill(self, adverse_bps: float) -> None:
        """One of our fills reached the horizon: its adverse selection (core.metrics.adverse_selection_bps)."""
        a = self._alpha[1]
        self.ours = adverse_bps if self.ours_n == 0 else self.ours + a * (adverse_bps - self.ours)
        self.ours_n += 1

    def estimate(self) -> float:
        """Our fills' figure, shrunk toward the market's trade impact while they are few."""
        if self.ours_n == 0:
            return self.impact
        w = self.ours_n / (self.ours_n + self.prior_weight)
        return w * self.ours + (1 - w) * self.impact


class VolatilityRegime:
    """One-second mid returns (bps) on a venue-time grid: a short and a long variance (EWMA, or for the short
    one GARCH(1,1) targeting the long variance), and the drift over the short half-life.

    regime: "volatile" when the short volatility exceeds `volatile_ratio` x the long one; else "trending"
    when the short drift exceeds `trend_z` short standard deviations of it; else "calm"."""

    __slots__ = ("_next_ns", "_last_mid", "short_var", "long_var", "drift", "n", "_a_short", "_a_long", "garch",
                 "garch_alpha", "garch_beta", "volatile_ratio", "trend_z", "regime", "_drift_n")

    def __init__(self, short_halflife_s: float = 20.0, long_halflife_s: float = 600.0, garch: bool = False,
                 volatile_ratio: float = 1.8, trend_z: float = 3.0, garch_alpha: float = 0.08,
                 garch_beta: float = 0.9) -> None:
        self._next_ns = -1
        self._last_mid = math.nan
        self.short_var = self.long_var = 0.0
        self.drift = 0.0
        self.n = 0
        self._a_short = 1 - 0.5 ** (1 / short_halflife_s)
        self._a_long = 1 - 0.5 ** (1 / long_halflife_s)
        self.garch = garch
        self.garch_alpha, self.garch_beta = garch_alpha, garch_beta
        self.volatile_ratio = volatile_ratio
        self.trend_z = trend_z
        self.regime = "calm"
        self._drift_n = short_halflife_s

    def observe(self, now_ns: int, mid_ticks: float) -> None:
        if self._next_ns < 0:
            self._next_ns = (now_ns // 1_000_000_000 + 1) * 1_000_000_000
            self._last_mid = mid_ticks
            return
        while self._next_ns <= now_ns:  # one return per second of venue time (zero while the mid stands)
            r = (mid_ticks - self._last_mid) / self._last_mid * 1e4
            self._last_mid = mid_ticks
            self._next_ns += 1_000_000_000
            self._update(r)
            mid_ticks = self._last_mid  # later seconds in the same call saw no new mid

    def _update(self, r: float) -> None:
        r2 = r * r
        if self.n == 0:
            self.short_var = self.long_var = r2
        else:
            self.long_var += self._a_long * (r2 - self.long_var)
            if self.garch:  # sigma2_t = omega + a r2 + b sigma2_{t-1}, omega = (1 - a - b) x long-run variance
                a, b = self.garch_alpha, self.garch_beta
                self.short_var = (1 - a - b) * self.long_var + a * r2 + b * self.short_var
            else:
                self.short_var += self._a_short * (r2 - self.short_var)
        self.drift += self._a_short * (r - self.drift)
        self.n += 1
        if self.n < 30:
            self.regime = "calm"
        elif self.short_var > self.volatile_ratio ** 2 * self.long_var:
            self.regime = "volatile"
        elif abs(self.drift) > self.trend_z * math.sqrt(max(0.0, self.short_var - self.drift ** 2) / self._drift_n
                                                         + 1e-18):
            self.regime = "trending"
        else:
            self.regime = "calm"

    @property
    def sigma_bps(self) -> float:
        """Short volatility, bps per sqrt(second)."""
        return math.sqrt(self.short_var)

    @property
    def long_sigma_bps(self) -> float:
        return math.sqrt(self.long_var)


# distances of the virtual quotes, bps from the mid
VIRTUAL_DELTAS_BPS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0,
                                         15.0, 20.0, 25.0, 30.0)


class VirtualFills:
    """Fill rate and realised spread of passive quotes at each distance from the mid, measured on the
    market's own tape: the adverse-selection curve the half-spread is chosen from.

    Every `cadence_ms` of venue time, a virtual bid and ask stand at mid -/+ delta for each delta of
    VIRTUAL_DELTAS_BPS, from `latency_s` after the decision, and behave like the engine's own quotes: a quote
    the mid moves toward by more than `chase_frac` x delta is replaced (cancelled `latency_s` later, as the
    order manager's tight refresh tolerance does), and none lives longer than `life_s`. A market trade at or
    through a live virtual price fills it (a sell fills bids, a buy fills asks; an unknown side fills both);
    `horizon_s` later its realised spread 2 x side x (mid_h - price) / mid, bps, is recorded. Counts and sums
    decay with `halflife_s`. The quoter's half-spread is the tightest delta whose fills earned at least a
    minimum realised spread (the curve made non-decreasing in delta first), among the deltas with at least
    `min_fills` (decayed) fills: the zero crossing of the adverse-selection curve plus a margin (maximising
    rate x edge instead chased the few large sweeps that fill the widest quotes, and moved with them); when
    no delta earned enough there is no edge to quote for (`best()` says so). Queue position is ignored: at
    these distances a fill comes from a trade through the price. Without the replacement rule, quotes left
    standing for 2 s were filled by every slow 2.5 bps drift, and the curve said 2.5 bps lost where the
    engine's own quotes at 2.5 bps earned (they follow such drifts)."""

    __slots__ = ("deltas", "cadence_ns", "latency_ns", "life_ns", "horizon_ns", "halflife_ns", "min_fills",
                 "chase", "_live", "_pending", "_next_ns", "_due_ns", "n", "rs_sum", "time_s", "_last_ns", "fills",
                 "_deltas", "_bid_reach", "_ask_reach", "_chase_bid", "_chase_ask", "_best_key", "_best")

    def __init__(self, cadence_ms: float = 250.0, latency_s: float = 0.05, life_s: float = 5.0,
                 horizon_s: float = 5.0, halflife_s: float = 900.0, min_fills: float = 30.0,
                 deltas_bps: tuple[float, ...] = VIRTUAL_DELTAS_BPS, chase_frac: float = 0.1) -> None:
        self.deltas = np.array(deltas_bps)
        self._deltas = [float(d) for d in self.deltas]  # the same values, as a list for bisect on the hot path
        self.cadence_ns = int(cadence_ms * 1e6)
        self.latency_ns = int(latency_s * 1e9)
        self.life_ns = int(life_s * 1e9)
        self.horizon_ns = int(horizon_s * 1e9)
        self.halflife_ns = halflife_s * 1e9
        self.min_fills = min_fills
        self.chase = max(chase_frac, 1e-9)
        # live grid points: [t0, mid0, bids filled up to, asks filled up to, bids replaced up to,
        #                    asks replaced up to, bid replacement times, ask replacement times]
        self._live: deque[list] = deque()
        self._pending: deque[tuple[int, int, int, float, float]] = deque()  # (due, side, delta index, price, mid0)
        self._next_ns = -1
        # the earliest venue time at which `observe` has work other than the mid reaching a virtual quote: the next
        # grid point, the oldest pending fill's horizon, the oldest grid point's end (before the first call: now)
        self._due_ns = -(1 << 62)
        self.n = np.zeros(len(self.deltas))  # decayed fill counts (both sides)
        self.rs_sum = np.zeros(len(self.deltas))  # decayed sums of realised spread, bps
        self.time_s = 0.0  # decayed elapsed time
        self._last_ns = -1
        self.fills = 0
        # a trade at or below _bid_reach may fill a virtual bid, at or above _ask_reach a virtual ask; no other
        # trade can (see _reach): most trades skip the loop over the live grid points
        self._bid_reach = -math.inf
        self._ask_reach = math.inf
        self._chase_bid = -math.inf
        self._chase_ask = math.inf
        self._best_key: tuple | None = None
        self._best: tuple[float | None, bool] = (None, False)

    def _reach(self) -> None:
        """Bounds that let most market updates skip the loop over the live grid points, recomputed whenever a
        point opens, expires or advances (bounds over points since expired only skip less).
        - Trades: the highest price that may fill a still-unfilled virtual bid, the lowest for an ask. A bid at
          delta fills when (mid0 - price) / mid0 x 1e4 >= delta, i.e. at prices up to mid0 x (1 - delta / 1e4).
        - The mid: below the highest mid0 x (1 - chase x delta / 1e4) over the bids still standing some bid is
          replaced, above the lowest mid0 x (1 + chase x delta / 1e4) some ask.
        Each bound carries a margin of 1e-9 x mid0 (1e-5 bps), far beyond the rounding of either computation,
        so it never excludes an update that changes something."""
        deltas = self._deltas
        nd = len(deltas)
        chase = self.chase
        bid = chase_bid = -math.inf
        ask = chase_ask = math.inf
        for g in self._live:
            m = g[1]
            margin = m * 1e-9
            i = g[2]
            if i < nd:
                d = deltas[i]
                bid = max(bid, m * (1 - d / 1e4) + margin)
            i = g[3]
            if i < nd:
                d = deltas[i]
                ask = min(ask, m * (1 + d / 1e4) - margin)
            i = g[4]
            if i < nd:
                d = deltas[i]
                chase_bid = max(chase_bid, m * (1 - chase * d / 1e4) + margin)
            i = g[5]
            if i < nd:
                d = deltas[i]
                chase_ask = min(chase_ask, m * (1 + chase * d / 1e4) - margin)
        self._bid_reach, self._ask_reach = bid, ask
        self._chase_bid, self._chase_ask = chase_bid, chase_ask

    def observe(self, now_ns: int, mid_ticks: float) -> None:
        """The current mid (call on each market update): resolves pending fills, replaces the virtual quotes
        the mid moved toward, opens grid points, expires old ones."""
        if now_ns < self._due_ns and self._chase_bid <= mid_ticks <= self._chase_ask:
            return  # nothing due, no virtual quote reached: what follows would change nothing
        if self._next_ns < 0:
            self._next_ns = (now_ns // self.cadence_ns + 1) * self.cadence_ns
            self._last_ns = now_ns
        pend = self._pending
        if pend and pend[0][0] <= now_ns:
            self._decay_to(now_ns)
            while pend and pend[0][0] <= now_ns:
                _, side, i, price, mid0 = pend.popleft()
                self.n[i] += 1.0
                self.rs_sum[i] += 2e4 * side * (mid_ticks - price) / mid0
        live = self._live
        changed = False
        while live:  # grid points whose quotes have all lived their life
            t0 = live[0][0]
            if t0 + self.latency_ns + self.life_ns >= now_ns:
                break
            live.popleft()
            changed = True
        deltas = self._deltas
        nd = len(deltas)
        if mid_ticks < self._chase_bid or mid_ticks > self._chase_ask:  # else no virtual quote is reached
            eff = now_ns + self.latency_ns
            chase = self.chase
            for g in live:
                m0 = g[1]
                moved = (mid_ticks - m0) / m0 * 1e4 / chase  # > 0: toward the asks
                # (bisect on a list: the same index as numpy's searchsorted, without its per-call cost; skipped
                # when the next distance still standing is not reached, i.e. when it would change nothing)
                if moved < 0 and g[4] < nd and deltas[g[4]] < -moved:  # toward the bids: within chase x delta go
                    j = bisect_left(deltas, -moved)
                    for i in range(g[4], j):
                        g[6][i] = eff
                    if j > g[4]:
                        g[4] = j
                        changed = True
                elif moved > 0 and g[5] < nd and deltas[g[5]] < moved:
                    j = bisect_left(deltas, moved)
                    for i in range(g[5], j):
                        g[7][i] = eff
                    if j > g[5]:
                        g[5] = j
                        changed = True
        while self._next_ns <= now_ns:
            never = [1 << 62] * nd
            live.append([self._next_ns, mid_ticks, 0, 0, 0, 0, never, list(never)])
            self._next_ns += self.cadence_ns
            changed = True
        if changed:
            self._reach()
        due = self._next_ns
        if pend and pend[0][0] < due:
            due = pend[0][0]
        if live and live[0][0] + self.latency_ns + self.life_ns + 1 < due:
            due = live[0][0] + self.latency_ns + self.life_ns + 1
        self._due_ns = due

    def on_trade(self, price_ticks: float, aggressor: int, now_ns: int) -> None:
        if not ((aggressor <= 0 and price_ticks <= self._bid_reach) or (aggressor >= 0 and price_ticks >= self._ask_reach)):
            return  # beyond every virtual quote still unfilled
        deltas = self._deltas
        nd = len(deltas)
        advanced = False
        for g in self._live:
            t0 = g[0]
            if now_ns < t0 + self.latency_ns or now_ns > t0 + self.latency_ns + self.life_ns:
                continue
            mid0 = g[1]
            depth = (mid0 - price_ticks) / mid0 * 1e4  # > 0: below the mid
            # (as in observe: bisect, skipped when the next distance not yet filled is beyond the trade)
            if aggressor <= 0 and depth > 0 and g[2] < nd and deltas[g[2]] <= depth:  # a sell at or through bids
                j = bisect_right(deltas, depth)
                gone = g[6]
                for i in range(g[2], j):
                    if gone[i] > now_ns:
                        self._fill(now_ns, 1, i, mid0 * (1 - deltas[i] / 1e4), mid0)
                if j > g[2]:
                    g[2] = j
                    advanced = True
            if aggressor >= 0 and depth < 0 and g[3] < nd and deltas[g[3]] <= -depth:  # a buy at or through asks
                j = bisect_right(deltas, -depth)
                gone = g[7]
                for i in range(g[3], j):
                    if gone[i] > now_ns:
                        self._fill(now_ns, -1, i, mid0 * (1 + deltas[i] / 1e4), mid0)
                if j > g[3]:
                    g[3] = j
                    advanced = True
        if advanced:
            self._reach()

    def _fill(self, now_ns: int, side: int, i: int, price: float, mid0: float) -> None:
        due = now_ns + self.horizon_ns
        self._pending.append((due, side, i, price, mid0))
        if due < self._due_ns:
            self._due_ns = due
        self.fills += 1

    def _decay_to(self, now_ns: int) -> None:
        if now_ns > self._last_ns:
            dt = now_ns - self._last_ns
            d = 0.5 ** (dt / self.halflife_ns)
            self.n *= d
            self.rs_sum *= d
            self.time_s = self.time_s * d + dt / 1e9
            self._last_ns = now_ns

    def curve(self) -> list[dict[str, float]]:
        """Per distance: fills per second (one side), mean realised spread (bps), profit rate (bps/s)."""
        out = []
        for i, d in enumerate(self.deltas):
            n = self.n[i]
            rs = self.rs_sum[i] / n if n > 0 else 0.0
            rate = n / 2 / self.time_s if self.time_s > 0 else 0.0
            out.append({"delta_bps": float(d), "fills": float(n), "rate_per_s": rate, "realised_bps": rs,
                        "profit_bps_per_s": rate * rs})
        return out

    def smoothed(self) -> np.ndarray:
        """Mean realised spread per distance, made non-decreasing in the distance (pool-adjacent-violators,
        weighted by fills): a deeper quote is filled only by larger moves, and one sweep that fills a few deep
        quotes must not make a deep distance look worse than a shallower one."""
        return np.array(self._smoothed())

    def _smoothed(self) -> list[float]:
        """`smoothed()` as a list, computed on Python floats (the same IEEE operations as on numpy's scalars, at
        a fraction of their cost: it runs whenever the curve changed since the last quote cycle)."""
        blocks: list[list[float]] = []  # [weighted mean, weight, count of distances]
        for t, w in zip(self.rs_sum.tolist(), self.n.tolist(), strict=True):
            v = t / (w if w >= 1e-12 else 1e-12) if w > 0 else 0.0  # (np.maximum(n, 1e-12), element by element)
            blocks.append([v, w, 1.0])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                b = blocks.pop()
                a = blocks[-1]
                tot = a[1] + b[1]
                a[0] = (a[0] * a[1] + b[0] * b[1]) / tot if tot > 0 else max(a[0], b[0])
                a[1] = tot
                a[2] += b[2]
        out: list[float] = []
        for m, _, c in blocks:
            out += [m] * int(c)
        return out

    def best(self, min_realised_bps: float) -> tuple[float | None, bool]:
        """(half-spread in bps, has_edge). Among distances with `min_fills` (decayed) fills: the tightest whose
        fills earned at least `min_realised_bps` of realised spread (on the smoothed curve). When none did but
        wider distances are not measured yet, the next distance beyond the widest measured one (fills further
        out are rarer and later: quote there until it is measured, rather than stand aside because the
        tighter ones lose). (None, False) before any distance is measured; (the best-earning distance, False)
        when every distance is measured and none earned enough."""
        # the same curve gives the same answer: quote cycles far outnumber the resolutions that change the curve
        key = (self.n.tobytes(), self.rs_sum.tobytes(), self.time_s, self.min_fills, min_realised_bps)
        if key == self._best_key:
            return self._best
        self._best_key, self._best = key, self._best_of(min_realised_bps)
        return self._best

    def _best_of(self, min_realised_bps: float) -> tuple[float | None, bool]:
        # (on lists: numpy's per-call cost on 18 numbers was most of this; the same comparisons and values)
        min_fills = self.min_fills
        ok = [x >= min_fills for x in self.n.tolist()]
        if not any(ok) or self.time_s <= 0:
            return None, False
        rs = self._smoothed()
        deltas = self._deltas
        for i, measured in enumerate(ok):
            if measured and rs[i] >= min_realised_bps:
                return deltas[i], True
        widest = len(ok) - 1 - ok[::-1].index(True)
        if widest + 1 < len(deltas):
            return deltas[widest + 1], True
        return deltas[int(np.argmax(np.where(ok, rs, -np.inf)))], False
