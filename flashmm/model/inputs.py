"""The model's inputs, shared by training (research.dataset) and live inference (model.predictor).

One path for both: market events -> L2Book -> FeatureEngine -> `model_inputs` (instrument-independent:
bps, ratios, imbalances) -> `GridSampler` (the last state at or before each point of a fixed venue-time
grid). Live code imports this module; it never imports the research code that builds datasets.
"""

from __future__ import annotations

import math

import numpy as np

from flashmm.core.book import L2Book
from flashmm.core.features import F, FeatureEngine

MODEL_INPUTS: tuple[str, ...] = (
    "spread_bps",
    "microprice_in_spreads",  # (microprice - mid) / spread: -0.5 .. 0.5
    "imbalance_1",
    "imbalance_3",
    "imbalance_5",
    "order_flow_imbalance",
    "trade_flow_imbalance",
    "volatility_bps",  # per sqrt(second)
    "momentum_bps",
    "queue_log_ratio",  # log((bid lots at best + 1) / (ask lots at best + 1))
)
N_INPUTS = len(MODEL_INPUTS)
CLASSES = ("down", "flat", "up")


def model_inputs(values: np.ndarray, mid_ticks: float, out: np.ndarray) -> np.ndarray:
    """The model's inputs from the engine's feature vector (no allocation: fills `out`)."""
    bpt = 1e4 / mid_ticks
    spread = values[F["spread_ticks"]]
    out[0] = spread * bpt
    out[1] = values[F["microprice_offset_ticks"]] / spread if spread > 0 else 0.0
    out[2] = values[F["imbalance_1"]]
    out[3] = values[F["imbalance_3"]]
    out[4] = values[F["imbalance_5"]]
    out[5] = max(-10.0, min(10.0, values[F["order_flow_imbalance"]]))
    out[6] = values[F["trade_flow_imbalance"]]
    out[7] = values[F["volatility_ticks"]] * bpt
    out[8] = values[F["momentum_ticks"]] * bpt
    out[9] = math.log((values[F["bid_queue_lots"]] + 1.0) / (values[F["ask_queue_lots"]] + 1.0))
    return out


class GridSampler:
    """Samples on a fixed grid of venue time: at each grid point, the last state at or before it.

    `observe` is called after each book or trade update with the time of that update *before* applying
    it would be wrong: call `advance(ts)` before applying an event at ts (emits the grid points it passes
    with the state they saw), then `update(values, mid)` after applying it."""

    __slots__ = ("cadence_ns", "next_ns", "_state", "_mid", "_have", "times", "rows", "mids")

    def __init__(self, cadence_ms: float) -> None:
        self.cadence_ns = int(cadence_ms * 1_000_000)
        self.next_ns = -1
        self._state = np.zeros(N_INPUTS, dtype=np.float32)
        self._mid = math.nan
        self._have = False
        self.times: list[int] = []
        self.rows: list[np.ndarray] = []
        self.mids: list[float] = []

    def advance(self, ts_ns: int) -> int:
        """Emit the grid points strictly before ts_ns. Returns how many."""
        if self.next_ns < 0:
            self.next_ns = (ts_ns // self.cadence_ns + 1) * self.cadence_ns
            return 0
        n = 0
        while self.next_ns < ts_ns:
            if self._have:
                self.times.append(self.next_ns)
                self.rows.append(self._state.copy())
                self.mids.append(self._mid)
                n += 1
            self.next_ns += self.cadence_ns
        return n

    def update(self, features: FeatureEngine, book: L2Book) -> None:
        if book.stale or not book.two_sided() or not features.ready:
            self._have = False  # no sample from an unusable book (a gap leaves a hole, never a patch)
            return
        mid = book.mid_ticks()
        model_inputs(features.values, mid, self._state)
        self._mid = mid
        self._have = True
