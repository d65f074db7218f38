"""Short-horizon alpha: the mid's expected move over the next `horizon_s`, in bps, from the book and the tape.

`OnlineAlpha` is a ridge regression of the realised move on a few dimensionless features (depth imbalance at
the best level and over five levels, order-flow and trade-flow imbalance, short momentum), learned online
from the market's own mid path: each point of a fixed venue-time grid records the features and the mid;
once `horizon_s` has passed, the realised move becomes that point's target and the sufficient statistics
are updated with exponential forgetting. So the coefficients are fitted to the market being traded,
keep adapting, and never see the future. Every prediction is also scored once its horizon has passed
(prequential), which gives the live hit rate and the correlation shown beside the simplest alpha, the
sign of the level-1 imbalance.

The fair value the quoter prices around is mid + alpha (strategy.Quoter); the alpha is bounded by
`cap_bps` and is zero until `warmup_points` targets have been seen.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from flashmm.core.features import F, FeatureEngine

ALPHA_INPUTS: tuple[str, ...] = (
    "imbalance_1",  # (bid - ask) / (bid + ask) lots at the best level: the queue imbalance
    "imbalance_5",  # the same over five levels
    "order_flow_imbalance",  # Cont-Kukanov-Stoikov OFI over best-level depth, clipped to +-5
    "trade_flow_imbalance",  # EWMA signed taker volume / EWMA taker volume
    "momentum_bps",  # mid - EWMA(mid), bps
)
N_ALPHA = len(ALPHA_INPUTS)
_I1, _I5, _OFI, _TFI, _MOM = (F["imbalance_1"], F["imbalance_5"], F["order_flow_imbalance"],
                              F["trade_flow_imbalance"], F["momentum_ticks"])


def alpha_inputs(features: FeatureEngine, mid_ticks: float) -> tuple[float, ...]:
    """The regression's inputs from the feature engine's current values (all dimensionless or bps). Called on
    every market update: the compiled build reads the values as typed memory (alpha.pxd), five C reads instead
    of converting the array (its `tolist` was 2.7 % of a replay)."""
    v = features._v  # (features.values, the same array)
    return (float(v[_I1]), float(v[_I5]), max(-5.0, min(5.0, float(v[_OFI]))), float(v[_TFI]),
            float(v[_MOM]) * 1e4 / mid_ticks)


class OnlineAlpha:
    """See the module docstring."""

    __slots__ = ("horizon_ns", "cadence_ns", "decay", "ridge", "cap_bps", "warmup", "_next_ns", "next_due_ns",
                 "_pending", "_sxx", "_sxy", "n_targets", "beta", "_since_fit", "_x", "_score_n", "_score_hits",
                 "_score_hits_imb", "_score_moves", "_pp", "_yy", "_py", "_p", "_y")

    def __init__(self, horizon_s: float = 1.0, cadence_ms: float = 250.0, halflife_s: float = 600.0,
                 ridge: float = 50.0, cap_bps: float = 3.0, warmup_points: int = 200) -> None:
        self.horizon_ns = int(horizon_s * 1e9)
        self.cadence_ns = int(cadence_ms * 1e6)
        points_per_halflife = max(1.0, halflife_s * 1e3 / cadence_ms)
        self.decay = 0.5 ** (1.0 / points_per_halflife)
        self.ridge = ridge
        self.cap_bps = cap_bps
        self.warmup = warmup_points
        self._next_ns = -1
        # the earliest venue time at which `observe` records or resolves anything (the next grid point, the oldest
        # target's horizon); before it, an observation only replaces the latest inputs (before the first: now)
        self.next_due_ns = -(1 << 62)
        self._pending: deque[tuple[int, float, tuple[float, ...], float]] = deque()  # (due, mid, x, predicted)
        k = N_ALPHA + 1  # with an intercept
        # the sufficient statistics as lists of floats, updated by scalar code (six numbers: numpy's per-call cost
        # was most of each update) and handed to numpy only to solve; the same IEEE operations element by element
        self._sxx = [[0.0] * k for _ in range(k)]
        self._sxy = [0.0] * k
        self.n_targets = 0
        self.beta = np.zeros(k)
        self._since_fit = 0
        self._x: tuple[float, ...] = (0.0,) * N_ALPHA
        # prequential scores: predictions made before their targets existed
        self._score_n = 0
        self._score_moves = 0
        self._score_hits = 0
        self._score_hits_imb = 0
        self._pp = self._yy = self._py = self._p = self._y = 0.0

    def observe(self, now_ns: int, x: tuple[float, ...], mid_ticks: float) -> None:
        """Call with each new market state: records grid points, resolves the targets whose horizon passed
        (with the mid that held up to now), refits now and then."""
        self._x = x
        if self._next_ns < 0:
            self._next_ns = (now_ns // self.cadence_ns + 1) * self.cadence_ns
        pend = self._pending
        while pend and pend[0][0] <= now_ns:
            due, mid0, x0, pred = pend.popleft()
            self._learn(x0, 1e4 * (mid_ticks - mid0) / mid0, pred)
        while self._next_ns <= now_ns:
            pend.append((self._next_ns + self.horizon_ns, mid_ticks, x, self.predict(x)))
            self._next_ns += self.cadence_ns
        if self._since_fit >= 20:
            self.refit()
        self.next_due_ns = min(self._next_ns, pend[0][0]) if pend else self._next_ns

    def _learn(self, x: tuple[float, ...], y: float, predicted: float) -> None:
        v = (1.0, *x)
        d = self.decay
        sxy = self._sxy
        for i, row in enumerate(self._sxx):  # sxx = sxx * d + outer(v, v); sxy = sxy * d + v * y
            vi = v[i]
            for j in range(len(row)):
                row[j] = row[j] * d + vi * v[j]
            sxy[i] = sxy[i] * d + vi * y
        self.n_targets += 1
        self._since_fit += 1
        if self.n_targets > self.warmup:  # score only predictions a fitted model made
            self._score_n += 1
            self._pp += predicted * predicted
            self._yy += y * y
            self._py += predicted * y
            self._p += predicted
            self._y += y
            if y != 0.0:
                self._score_moves += 1
                self._score_hits += (predicted > 0) == (y > 0) if predicted != 0.0 else 0.5
                imb = x[0]
                self._score_hits_imb += (imb > 0) == (y > 0) if imb != 0.0 else 0.5

    def refit(self) -> None:
        self._since_fit = 0
        if self.n_targets < self.warmup:
            return
        reg = self.ridge * np.eye(N_ALPHA + 1)
        reg[0, 0] = 1e-9  # the intercept is not shrunk
        try:
            self.beta = np.linalg.solve(np.array(self._sxx) + reg, np.array(self._sxy))
        except np.linalg.LinAlgError:  # singular: keep the last coefficients
            return

    def predict(self, x: tuple[float, ...] | None = None) -> float:
        """Expected mid move over the horizon, bps (0 until warmed up), within +-cap_bps."""
        if self.n_targets < self.warmup:
            return 0.0
        x = self._x if x is None else x
        b = self.beta.tolist()  # (Python floats: the same IEEE operations as numpy's scalars, without their cost)
        v = b[0] + b[1] * x[0] + b[2] * x[1] + b[3] * x[2] + b[4] * x[3] + b[5] * x[4]
        c = self.cap_bps
        return c if v > c else (-c if v < -c else float(v))

    @property
    def ready(self) -> bool:
        return self.n_targets >= self.warmup

    def scores(self) -> dict[str, float | int | None]:
        """Live, out-of-sample: directional hit rate of the alpha and of the sign of the level-1 imbalance on
        the same points, and the correlation of predicted with realised moves."""
        n, m = self._score_n, self._score_moves
        corr = None
        if n >= 20:
            vp = self._pp / n - (self._p / n) ** 2
            vy = self._yy / n - (self._y / n) ** 2
            if vp > 0 and vy > 0:
                corr = (self._py / n - (self._p / n) * (self._y / n)) / math.sqrt(vp * vy)
        return {"points": n, "moves": m, "hit_rate": self._score_hits / m if m else None,
                "hit_rate_imbalance_sign": self._score_hits_imb / m if m else None,
                "correlation": corr}

    def coefficients(self) -> dict[str, float]:
        return {"intercept": float(self.beta[0]), **{k: float(v) for k, v in zip(ALPHA_INPUTS, self.beta[1:], strict=True)}}
