"""Prediction of the next short-term mid move. The engine sees only the `Predictor` interface."""

from flashmm.model.predictor import NoModelPredictor, Prediction, Predictor

__all__ = ["NoModelPredictor", "Prediction", "Predictor"]
