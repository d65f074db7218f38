"""The seam between the engine and a prediction model.

A predictor maps the engine's state to probabilities of a down / flat / up mid move over its horizon
and, for a model that has one (format version 2), the mid's expected move over that horizon in bps, which
the engine uses as the fair value's shift; confidence is the largest probability. `NoModelPredictor` is the honest fallback: it predicts nothing,
the strategy prices model-free, and the engine shows "FALLBACK (no model)". `ModelPredictor` runs an
exported model (flashmm.model.artifact) on a window of inputs sampled exactly as in training, scores
its own predictions once their horizon has passed (the live hit rate) and watches for drift.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from flashmm.model.inputs import N_INPUTS, model_inputs

if TYPE_CHECKING:
    from flashmm.config import Config, ModelConfig
    from flashmm.core.book import L2Book
    from flashmm.core.features import FeatureEngine


@dataclass(frozen=True, slots=True)
class Prediction:
    p_down: float
    p_flat: float
    p_up: float
    expected_move_bps: float | None = None  # the mid's expected move over the model's horizon (version 2 models)

    @property
    def confidence(self) -> float:
        return max(self.p_down, self.p_flat, self.p_up)

    @property
    def direction(self) -> float:
        """Expected direction in [-1, 1]."""
        return self.p_up - self.p_down


class Predictor(Protocol):
    name: str
    available: bool
    reason: str  # why there is no model, or ""

    def on_market(self, ts_ns: int) -> None: ...

    def predict(self, features: FeatureEngine, book: L2Book, now_ns: int) -> Prediction | None: ...

    def precompute(self, features: FeatureEngine, book: L2Book, now_ns: int) -> None: ...

    def drift(self) -> str: ...

    def hit_rate(self) -> float | None: ...


class NoModelPredictor:
    """No model loaded: the engine prices model-free and says so."""

    available = False

    def __init__(self, reason: str = "no model: model-free pricing", name: str = "FALLBACK (no model)") -> None:
        self.reason = reason
        # FALLBACK: a model was wanted and could not be used; "none: ...": the configuration prices without one
        self.name = name

    def on_market(self, ts_ns: int) -> None:
        return None

    def predict(self, features: FeatureEngine, book: L2Book, now_ns: int) -> Prediction | None:
        return None

    def precompute(self, features: FeatureEngine, book: L2Book, now_ns: int) -> None:
        return None

    def drift(self) -> str:
        return ""

    def hit_rate(self) -> float | None:
        return None


class ModelPredictor:
    """An exported model on the engine's own features, sampled on the model's grid."""

    available = True
    reason = ""

    def __init__(self, loaded: Any, cfg: ModelConfig, path: str) -> None:
        self.model = loaded
        meta = loaded.meta
        self.meta = meta
        self.cfg = cfg
        self.name = f"{meta.get('architecture', 'model')} {Path(path).name}"
        self.window = int(meta["window"])
        self.cadence_ns = int(float(meta["cadence_ms"]) * 1_000_000)
        self.horizon_ns = int(float(meta["horizon_s"]) * 1e9)
        self.band_bps = float(meta["band_bps"])
        # a model with an expected move is scored as the online alpha is: the sign of its expected move against
        # every realised mid change; a direction model, on its directional calls against moves beyond its band
        self.has_move = bool(getattr(loaded, "has_expected_move", False))
        self._rows: deque[np.ndarray] = deque(maxlen=self.window)
        self._state = np.zeros(N_INPUTS, dtype=np.float32)
        self._have = False
        self._mid = math.nan
        self._next_ns = -1
        self._buf = np.zeros((self.window, N_INPUTS), dtype=np.float32)
        self._pending: deque[tuple[int, float, float]] = deque()  # (due ns, mid at prediction, direction)
        self._outcomes: deque[int] = deque(maxlen=cfg.drift_window)  # 1 hit, 0 miss (directional only)
        self._hits = 0  # sum of _outcomes
        # the last drift_window input rows, in order, for the drift monitor: row j is written at j % W and at
        # j % W + W, so the window is always one contiguous slice (the monitor ran on the quote cycle, where
        # copying a deque of 500 rows into an array each cycle was the predict stage's p95: ~140 us)
        self._drift_w = cfg.drift_window
        self._inputs_buf = np.zeros((2 * cfg.drift_window, N_INPUTS), dtype=np.float64)
        self._n_inputs = 0
        self._input_z: tuple[int, np.ndarray] | None = None  # (_n_inputs it was computed at, z per input)
        self._mean = np.asarray(meta["feature_mean"], dtype=np.float64)
        self._std = np.maximum(np.asarray(meta["feature_std"], dtype=np.float64), 1e-9)
        self.predictions = 0
        self.errors = 0
        self._rows_version = 0  # bumps whenever the window changes
        self._cached: tuple[int, Prediction] | None = None
        # computed after the orders went out: the answers for the window as it will be if the next k grid points
        # all record the current state (they do, unless the market moves first), for the likeliest k and k + 1
        # (a 400 ms block on a 250 ms grid passes one or two points): [(version, that state, prediction)]
        self._speculative: list[tuple[int, np.ndarray, Prediction]] = []
        self.speculative_hits = 0
        self._last_cycle_ns = -1
        self._cycle_ns = 0.0  # running interval between quote cycles

    # the grid: at each point, the last state at or before it (as in training)
    def on_market(self, ts_ns: int) -> None:
        if self._next_ns < 0:
            self._next_ns = (ts_ns // self.cadence_ns + 1) * self.cadence_ns
            return
        while self._next_ns < ts_ns:
            if self._have:
                self._rows.append(self._state.copy())
                i = self._n_inputs % self._drift_w
                self._inputs_buf[i] = self._inputs_buf[i + self._drift_w] = self._state
                self._n_inputs += 1
            else:
                self._rows.clear()  # a hole in the grid: the window starts again (as training drops it)
            self._rows_version += 1
            self._next_ns += self.cadence_ns

    def predict(self, features: FeatureEngine, book: L2Book, now_ns: int) -> Prediction | None:
        if book.stale or not book.two_sided() or not features.ready:
            self._have = False
            return None
        mid = book.mid_ticks()
        model_inputs(features.values, mid, self._state)
        self._have = True
        self._score(now_ns, mid)
        if len(self._rows) < self.window:
            return None  # warming up
        if self._cached is not None and self._cached[0] == self._rows_version:
            return self._cached[1]  # same window, same answer: the model runs once per grid step
        pred = None
        for version, state, answer in self._speculative:
            if version == self._rows_version and np.array_equal(self._rows[-1], state):
                pred = answer  # computed off the hot path after the last cycle, for exactly this window
                self.speculative_hits += 1
                break
        if pred is None:
            for i, row in enumerate(self._rows):
                self._buf[i] = row
            pred = self._prediction(self.model.predict_proba(self._buf))
        self._speculative = []
        self.predictions += 1
        if self.has_move:
            if pred.expected_move_bps:  # a call (zero is none): score it after the horizon
                self._pending.append((now_ns + self.horizon_ns, mid, pred.expected_move_bps))
        elif pred.p_flat < max(pred.p_up, pred.p_down):  # a directional call: score it after the horizon
            self._pending.append((now_ns + self.horizon_ns, mid, pred.p_up - pred.p_down))
        self._cached = (self._rows_version, pred)
        return pred

    def precompute(self, features: FeatureEngine, book: L2Book, now_ns: int) -> None:
        """After the orders are out: predict for the window the next grid point will most likely make (the
        current state appended), so the next quote cycle need not run the model. Only when that grid point
        is likely to pass before the next cycle (judged from the running interval between cycles)."""
        if self._last_cycle_ns >= 0:
            gap = now_ns - self._last_cycle_ns
            self._cycle_ns = gap if self._cycle_ns <= 0 else 0.9 * self._cycle_ns + 0.1 * gap
        self._last_cycle_ns = now_ns
        if self._cycle_ns > 0 and self._next_ns - now_ns > 1.5 * self._cycle_ns:
            return  # the window will not change by the next cycle: the cached answer serves it
        if book.stale or not book.two_sided() or not features.ready or self._next_ns < 0:
            return
        # grid points likely to pass before the next cycle (each records the same state): k and k + 1
        k = 1 if self._cycle_ns <= 0 else max(1, int((now_ns + self._cycle_ns - self._next_ns) // self.cadence_ns) + 1)
        state = np.zeros(N_INPUTS, dtype=np.float32)
        model_inputs(features.values, book.mid_ticks(), state)
        rows = list(self._rows)
        self._speculative = []
        for steps in (k, k + 1):
            if steps > self.window or len(rows) < self.window - steps:
                continue
            window = rows[len(rows) - (self.window - steps):] + [state] * steps
            for i, row in enumerate(window):
                self._buf[i] = row
            self._speculative.append((self._rows_version + steps, state,
                                      self._prediction(self.model.predict_proba(self._buf))))

    def _prediction(self, p: np.ndarray) -> Prediction:
        move = float(p[3]) if self.has_move else None
        return Prediction(float(p[0]), float(p[1]), float(p[2]), move)

    def _score(self, now_ns: int, mid: float) -> None:
        while self._pending and self._pending[0][0] <= now_ns:
            _, mid0, direction = self._pending.popleft()
            move_bps = (mid - mid0) / mid0 * 1e4
            if (move_bps != 0.0) if self.has_move else (abs(move_bps) > self.band_bps):  # moves it can be right about
                if len(self._outcomes) == self._outcomes.maxlen:
                    self._hits -= self._outcomes[0]  # about to fall out of the window
                hit = 1 if (move_bps > 0) == (direction > 0) else 0
                self._outcomes.append(hit)
                self._hits += hit

    def hit_rate(self) -> float | None:
        return self._hits / len(self._outcomes) if self._outcomes else None

    def input_window(self) -> np.ndarray:
        """The last drift_window input rows the drift monitor averages, oldest first (a view)."""
        n, w = self._n_inputs, self._drift_w
        start = n % w if n >= w else 0
        return self._inputs_buf[start:start + min(n, w)]

    def drift(self) -> str:
        """A reason when live behaviour departs from the model card, else ''."""
        c = self.cfg
        if len(self._outcomes) >= c.drift_min_samples:
            hr = self.hit_rate() or 0.0
            # the live hit rate scores the model's directional calls, so compare with the card's figure for those
            card = float(self.meta.get("val_directional_accuracy_when_called", self.meta.get("val_directional_accuracy", 0.5)))
            floor = card - c.drift_hit_rate_drop_pct / 100.0
            if hr < floor:
                return f"live hit rate {hr:.1%} < {floor:.1%} (card {card:.1%})"
        if min(self._n_inputs, self._drift_w) >= c.drift_min_samples:
            if self._input_z is None or self._input_z[0] != self._n_inputs:  # new rows since the last look
                live = np.mean(self.input_window(), axis=0)
                self._input_z = (self._n_inputs, np.abs(live - self._mean) / self._std)
            z = self._input_z[1]
            worst = int(np.argmax(z))
            if z[worst] > c.drift_feature_z:
                from flashmm.model.inputs import MODEL_INPUTS

                return f"input {MODEL_INPUTS[worst]} drifted {z[worst]:.1f} sd from training"
        return ""


def shipped_model_path() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "models" / "flashmm.pt2"


class ModelLoadError(Exception):
    pass


def predictor_for(cfg: Config) -> Predictor:
    """The predictor the configuration asks for: the model only when the quoter prices with it
    ([strategy].alpha = "model"; the symmetric baseline never does); otherwise no model is loaded (torch not
    imported, nothing computed on the hot path), and the console says why."""
    if cfg.strategy.model == "symmetric":
        return NoModelPredictor("symmetric baseline: no model", name="none: symmetric")
    if cfg.strategy.alpha != "model":
        what = {"online": "online alpha", "imbalance": "imbalance alpha", "none": "no alpha"}[cfg.strategy.alpha]
        return NoModelPredictor(f"not used: [strategy].alpha = {cfg.strategy.alpha}", name=f"none: {what}")
    return load_predictor(cfg.model)


def load_predictor(cfg: ModelConfig) -> Predictor:
    """The configured model, or the honest fallback. Raises ModelLoadError when the model is required
    and cannot be used."""
    if cfg.path.strip().lower() == "none":
        return NoModelPredictor("model disabled in config: model-free pricing")
    path = Path(cfg.path).expanduser() if cfg.path else shipped_model_path()
    try:
        try:
            from flashmm.model.artifact import ModelError, load
        except ImportError as exc:  # torch missing or broken in this environment
            raise ModelLoadError(f"cannot load models here ({exc})") from None
        try:
            loaded = load(path)
        except ModelError as exc:
            raise ModelLoadError(str(exc)) from None
    except ModelLoadError as exc:
        if cfg.required:
            raise
        return NoModelPredictor(f"{exc}: model-free pricing")
    try:
        import torch

        torch.set_num_threads(1)  # one sample at a time on the engine's loop: no thread pool hand-off
    except ImportError:  # pragma: no cover - load() above already needed torch
        pass
    return ModelPredictor(loaded, cfg, str(path))
