"""The seam between the engine and a prediction model.

A predictor maps the current feature vector to probabilities of a down / flat / up mid move over its
horizon; confidence is the largest probability. `NoModelPredictor` is the honest fallback: it predicts
nothing, the strategy prices model-free, and the engine shows "FALLBACK (no model)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Prediction:
    p_down: float
    p_flat: float
    p_up: float

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

    def predict(self, features: np.ndarray) -> Prediction | None: ...


class NoModelPredictor:
    """No model loaded: the engine prices model-free and says so."""

    name = "FALLBACK (no model)"
    available = False

    def predict(self, features: np.ndarray) -> Prediction | None:
        return None
