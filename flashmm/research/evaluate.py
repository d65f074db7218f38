"""Scores of a prediction model on labelled windows, with the baselines it has to beat.

Two views of the same windows:

The move view (what the strategy uses: the fair value shifts by the predicted move). Every predictor is a
number per window whose sign is its direction: the model's expected move in bps (a direction model without
one: p_up - p_down), the sign of the level-1 depth imbalance, a linear (ridge) regression of the move on the
same inputs and a logistic regression on the same inputs and labels (p_up - p_down), both fit on the train
slice, the engine's online alpha (its prequential predictions over the same stream, `dataset.sample_stream`),
last-move persistence, and no view at all (majority class, always flat). `move_scores`:
- `directional_accuracy`: on the windows whose mid changed over the horizon (`n_moves`), the share where the
  predictor's sign is the move's; a zero prediction (no view) counts half, the expected score of a coin toss;
- `ic`: Pearson correlation of the prediction with the realised move over every window;
- `bps_per_window`: the realised move in the predicted direction, averaged over every window (a unit position
  on the sign for one horizon, before costs; zero predictions trade nothing).
95 % intervals come from a moving-block bootstrap (`block_bootstrap`): blocks of `BLOCK_S` seconds of
consecutive windows (the windows overlap and the inputs are persistent, so single windows are not independent),
resampled within each data set, the same draws for every predictor so that the differences model - baseline
have paired intervals. "Beats by more than its interval" = the difference's interval lies above zero.

The class view (the model's down / flat / up head): `scores` gives `accuracy` (3-class), `macro_f1`,
`per_class` precision / recall / F1 / support, `confusion` (rows = true, columns = predicted, order down, flat,
up), `ece` (expected calibration error over 10 equal-width bins of the max probability) and `reliability`,
`class_balance`, `directional_accuracy` on the samples whose TRUE class is not flat (predicted direction =
p_up vs p_down; a tie counts half), `directional_accuracy_when_called` (only where the argmax is up or down)
and `signal_bps`.

`EvalSet` carries what `dataset.Dataset` does not and evaluation needs: the past move for persistence, the
online alpha, the source of each sample and the band. `eval_set`, `split_eval_set` and `concat_sets` build them
from the dataset module's own `windows` / `time_split` / `concat`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flashmm.config import SIM_PRESETS, Config
from flashmm.model.inputs import CLASSES, MODEL_INPUTS, N_INPUTS
from flashmm.research.dataset import (
    Dataset,
    Samples,
    concat,
    samples_from_events,
    samples_from_sim,
    samples_from_sim_trading,
    time_split,
    windows,
)

DOWN, FLAT, UP = 0, 1, 2
N_BINS = 10
IMBALANCE_INPUTS = ("imbalance_1", "imbalance_3", "imbalance_5")
BLOCK_S = 10.0  # bootstrap block: 10 s of consecutive windows
BOOTSTRAP_REPS = 1000
MIN_BLOCKS = 10  # fewer blocks than this: no interval (a percentile interval over a handful of blocks means little)
MOVE_CLIP_BPS = 20.0  # the regression baselines (and the model) fit the move clipped to +-20 bps


# ---- evaluation sets ----------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """A `dataset.Dataset` plus, per sample, the mid move over the previous horizon (nan where the grid has
    a hole), the engine's online alpha at the window's end (nan where it was not computed) and the source name;
    and the band the labels were made with."""

    data: Dataset
    past_move_bps: np.ndarray
    sources: np.ndarray  # str per sample
    band_bps: float
    online_alpha_bps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.online_alpha_bps is None:
            self.online_alpha_bps = np.full(len(self.data.y), np.nan)

    def __len__(self) -> int:
        return len(self.data.y)

    def where(self, mask: np.ndarray) -> EvalSet:
        d = self.data
        return EvalSet(Dataset(d.x[mask], d.y[mask], d.times_ns[mask], d.move_bps[mask], d.source),
                       self.past_move_bps[mask], self.sources[mask], self.band_bps, self.online_alpha_bps[mask])

    def source_names(self) -> list[str]:
        return list(dict.fromkeys(self.sources.tolist()))

    def by_source(self) -> dict[str, EvalSet]:
        return {s: self.where(self.sources == s) for s in self.source_names()}


def past_moves(s: Samples, d: Dataset, horizon_steps: int) -> np.ndarray:
    """Mid move in bps over the `horizon_steps` grid steps up to each window's end (nan across a hole)."""
    n = len(d.times_ns)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    idx = np.searchsorted(s.times_ns, d.times_ns)
    if np.any(idx >= len(s.times_ns)) or np.any(s.times_ns[np.minimum(idx, len(s.times_ns) - 1)] != d.times_ns):
        raise ValueError("dataset times are not sample times of this Samples object")
    j = idx - horizon_steps
    ok = j >= 0
    step = int(s.cadence_ms * 1_000_000)
    jj = np.where(ok, j, 0)
    ok &= s.times_ns[jj] == d.times_ns - horizon_steps * step  # grid times increase: equal span = no hole
    m0 = s.mid_ticks[jj]
    m1 = s.mid_ticks[idx]
    out[ok] = ((m1 - m0) / m0 * 1e4)[ok]
    return out


def eval_set(s: Samples, d: Dataset, horizon_steps: int, band_bps: float, name: str | None = None) -> EvalSet:
    alpha = np.full(len(d.y), np.nan)
    if s.online_alpha_bps is not None and len(d.y):
        alpha = s.online_alpha_bps[np.searchsorted(s.times_ns, d.times_ns)]
    return EvalSet(d, past_moves(s, d, horizon_steps), np.full(len(d.y), name or s.source, dtype=object), band_bps,
                   alpha)


def split_eval_set(e: EvalSet, fractions: tuple[float, float], embargo_ns: int) -> tuple[EvalSet, EvalSet, EvalSet]:
    """`dataset.time_split` of one source's set, carrying the extra columns along (matched by time)."""
    parts = time_split(e.data, fractions, embargo_ns)
    out = []
    for p in parts:
        mask = np.isin(e.data.times_ns, p.times_ns)
        out.append(EvalSet(p, e.past_move_bps[mask], e.sources[mask], e.band_bps, e.online_alpha_bps[mask]))
    return out[0], out[1], out[2]


def concat_sets(parts: list[EvalSet]) -> EvalSet:
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no samples")
    return EvalSet(concat([p.data for p in parts]), np.concatenate([p.past_move_bps for p in parts]),
                   np.concatenate([p.sources for p in parts]), parts[0].band_bps,
                   np.concatenate([p.online_alpha_bps for p in parts]))


# ---- baselines ----------------------------------------------------------------------------------------


def class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced weights n / (3 n_c); a class absent from y gets weight 0."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.zeros(len(CLASSES))
    present = counts > 0
    w[present] = len(y) / (present.sum() * counts[present])
    return w


class InputsLogit:
    """Multinomial logistic regression on the last row's inputs (default: all of MODEL_INPUTS), class-weighted.
    Fit by full-batch gradient descent on standardised inputs (convex; numpy only)."""

    def __init__(self, l2: float = 1e-4, iters: int = 400, lr: float = 1.0,
                 inputs: tuple[str, ...] = MODEL_INPUTS) -> None:
        self.cols = [MODEL_INPUTS.index(c) for c in inputs]
        self.l2, self.iters, self.lr = l2, iters, lr
        self.mu = np.zeros(len(self.cols))
        self.sd = np.ones(len(self.cols))
        self.w = np.zeros((len(self.cols), len(CLASSES)))
        self.b = np.zeros(len(CLASSES))

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x[:, -1, self.cols].astype(np.float64) - self.mu) / self.sd

    def fit(self, d: Dataset) -> InputsLogit:
        xs = d.x[:, -1, self.cols].astype(np.float64)
        self.mu = xs.mean(0)
        self.sd = np.maximum(xs.std(0), 1e-9)
        z = self._z(d.x)
        y = d.y
        sw = class_weights(y)[y]
        sw = sw / sw.sum()
        onehot = np.eye(len(CLASSES))[y]
        for _ in range(self.iters):
            p = _softmax(z @ self.w + self.b)
            g = (p - onehot) * sw[:, None]
            self.w -= self.lr * (z.T @ g + self.l2 * self.w)
            self.b -= self.lr * g.sum(0)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self._z(x) @ self.w + self.b)


class ImbalanceLogit(InputsLogit):
    """The logistic regression on the depth imbalances only (imbalance_1/3/5)."""

    def __init__(self, l2: float = 1e-4, iters: int = 400, lr: float = 1.0) -> None:
        super().__init__(l2, iters, lr, IMBALANCE_INPUTS)


class LinearMove:
    """Ridge regression of the move (bps, clipped to +-`clip_bps` as the model's target is) on the last row's
    inputs, standardised on the training data; closed form."""

    def __init__(self, ridge: float = 1.0, clip_bps: float = MOVE_CLIP_BPS) -> None:
        self.ridge, self.clip_bps = ridge, clip_bps
        self.mu = np.zeros(N_INPUTS)
        self.sd = np.ones(N_INPUTS)
        self.beta = np.zeros(N_INPUTS + 1)

    def _z(self, x: np.ndarray) -> np.ndarray:
        z = (x[:, -1, :].astype(np.float64) - self.mu) / self.sd
        return np.column_stack([np.ones(len(z)), np.clip(z, -8, 8)])

    def fit(self, d: Dataset) -> LinearMove:
        last = d.x[:, -1, :].astype(np.float64)
        self.mu = last.mean(0)
        self.sd = np.maximum(last.std(0), 1e-9)
        z = self._z(d.x)
        reg = self.ridge * np.eye(N_INPUTS + 1)
        reg[0, 0] = 0.0
        y = np.clip(d.move_bps, -self.clip_bps, self.clip_bps)
        self.beta = np.linalg.solve(z.T @ z + reg, z.T @ y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._z(x) @ self.beta if len(x) else np.zeros(0)


def _softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def _onehot(cls: np.ndarray) -> np.ndarray:
    return np.eye(len(CLASSES))[cls]


def imbalance_sign_probs(x: np.ndarray) -> np.ndarray:
    """The simplest signal: up when the level-1 depth imbalance of the window's last row is positive, down
    when negative, flat at zero (one-hot)."""
    imb = x[:, -1, MODEL_INPUTS.index("imbalance_1")] if len(x) else np.zeros(0)
    return _onehot(np.where(imb > 0, UP, np.where(imb < 0, DOWN, FLAT)))


def persistence_probs(e: EvalSet) -> np.ndarray:
    pm = np.nan_to_num(e.past_move_bps, nan=0.0)
    cls = np.where(pm > e.band_bps, UP, np.where(pm < -e.band_bps, DOWN, FLAT))
    return _onehot(cls)


# ---- the move view: directional accuracy, IC, bps traded on the sign, with block-bootstrap intervals -----

_STATS = ("n", "moves", "hits", "p", "y", "pp", "yy", "py", "sy")


def _sample_stats(pred: np.ndarray, move: np.ndarray) -> np.ndarray:
    """(n, 9) per-window sufficient statistics of `move_scores` (order `_STATS`)."""
    pred = np.asarray(pred, dtype=np.float64)
    move = np.asarray(move, dtype=np.float64)
    mv = move != 0.0
    hit = np.where(pred == 0.0, 0.5, (np.sign(pred) == np.sign(move)).astype(np.float64)) * mv
    return np.column_stack([np.ones(len(pred)), mv, hit, pred, move, pred * pred, move * move, pred * move,
                            np.sign(pred) * move])


def _metrics(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directional accuracy, IC and bps per window from summed statistics (..., 9); nan where undefined."""
    n, moves, hits, p, y, pp, yy, py, sy = (t[..., i] for i in range(len(_STATS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(moves > 0, hits / moves, np.nan)
        vp = pp / n - (p / n) ** 2
        vy = yy / n - (y / n) ** 2
        ok = (vp > 1e-12 * pp / n) & (vy > 1e-12 * yy / n)
        ic = np.where(ok, (py / n - (p / n) * (y / n)) / np.sqrt(np.where(ok, vp * vy, 1.0)), np.nan)
        bps = np.where(n > 0, sy / n, np.nan)
    return acc, ic, bps


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def move_scores(pred: np.ndarray, move: np.ndarray) -> dict[str, Any]:
    """The move view's point estimates for one predictor (see the module doc)."""
    t = _sample_stats(pred, move).sum(0)
    acc, ic, bps = _metrics(t)
    return {"n": int(t[0]), "n_moves": int(t[1]), "directional_accuracy": _num(acc), "ic": _num(ic),
            "bps_per_window": _num(bps), "called": float(np.mean(np.asarray(pred) != 0)) if len(pred) else None}


def block_ids(times_ns: np.ndarray, sources: np.ndarray, block_s: float = BLOCK_S) -> np.ndarray:
    """A block number per window: consecutive `block_s` seconds of one source share one."""
    ids = np.zeros(len(times_ns), dtype=np.int64)
    nxt = 0
    step = int(block_s * 1e9)
    for name in dict.fromkeys(sources.tolist()):
        m = sources == name
        t = times_ns[m]
        b = (t - t.min()) // step
        _, inv = np.unique(b, return_inverse=True)
        ids[m] = inv + nxt
        nxt += int(inv.max()) + 1 if len(inv) else 0
    return ids


def block_bootstrap(preds: dict[str, np.ndarray], move: np.ndarray, blocks: np.ndarray, strata: np.ndarray,
                    reference: str | None = None, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict[str, Any]:
    """Point estimates and 95 % percentile intervals of `move_scores` for every predictor, and of the paired
    differences `reference` - each other predictor. Blocks are resampled with replacement within each stratum
    (data set), keeping each stratum's number of blocks; every predictor sees the same draws."""
    uniq_blocks = np.unique(blocks)
    nb = len(uniq_blocks)
    bidx = np.searchsorted(uniq_blocks, blocks)
    rng = np.random.default_rng(seed)
    counts = np.zeros((reps, nb))
    block_stratum = np.empty(nb, dtype=object)
    block_stratum[bidx] = strata
    rows = np.arange(reps)[:, None]
    for name in dict.fromkeys(block_stratum.tolist()):
        members = np.flatnonzero(block_stratum == name)
        draw = members[rng.integers(0, len(members), size=(reps, len(members)))]
        np.add.at(counts, (np.broadcast_to(rows, draw.shape), draw), 1.0)

    def per_block(pred: np.ndarray) -> np.ndarray:
        st = _sample_stats(pred, move)
        out = np.zeros((nb, st.shape[1]))
        np.add.at(out, bidx, st)
        return out

    stats = {k: per_block(v) for k, v in preds.items()}
    rep_metrics = {k: _metrics(counts @ b) for k, b in stats.items()}

    def ci(a: np.ndarray) -> list[float | None] | None:
        a = a[np.isfinite(a)]
        if nb < MIN_BLOCKS or len(a) < 0.9 * reps:  # too few blocks to resample, or undefined too often
            return None
        return [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))]

    out: dict[str, Any] = {"reps": reps, "n_blocks": nb, "predictors": {}, "differences": {}}
    for k, v in preds.items():
        sc = move_scores(v, move)
        acc, ic, bps = rep_metrics[k]
        sc.update(directional_accuracy_ci95=ci(acc), ic_ci95=ci(ic), bps_per_window_ci95=ci(bps))
        out["predictors"][k] = sc
    if reference is not None and reference in preds:
        ra, ri, rb = rep_metrics[reference]
        ref = out["predictors"][reference]
        for k in preds:
            if k == reference:
                continue
            a, i, b = rep_metrics[k]
            o = out["predictors"][k]

            def diff(x: float | None, y: float | None) -> float | None:
                return None if x is None or y is None else x - y

            d = {"directional_accuracy": diff(ref["directional_accuracy"], o["directional_accuracy"]),
                 "directional_accuracy_ci95": ci(ra - a), "ic": diff(ref["ic"], o["ic"]), "ic_ci95": ci(ri - i),
                 "bps_per_window": diff(ref["bps_per_window"], o["bps_per_window"]),
                 "bps_per_window_ci95": ci(rb - b)}
            d["beats"] = all(d[f"{m}_ci95"] is not None and d[f"{m}_ci95"][0] > 0
                             for m in ("directional_accuracy", "ic"))
            out["differences"][k] = d
    return out


# ---- metrics ------------------------------------------------------------------------------------------


def scores(probs: np.ndarray, y: np.ndarray, move_bps: np.ndarray | None = None) -> dict[str, Any]:
    """Every score of `evaluate` for one set of probabilities (no baselines)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    k = len(CLASSES)
    pred = probs.argmax(1) if n else np.zeros(0, np.int64)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    per_class = {}
    f1s = []
    for c, name in enumerate(CLASSES):
        tp = conf[c, c]
        npred = conf[:, c].sum()
        ntrue = conf[c, :].sum()
        prec = tp / npred if npred else 0.0
        rec = tp / ntrue if ntrue else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[name] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(ntrue),
                           "predicted": int(npred)}
        f1s.append(f1)
    # directional: true move not flat; ties count half
    mv = y != FLAT
    nd = int(mv.sum())
    if nd:
        d = probs[mv, UP] - probs[mv, DOWN]
        truth = np.where(y[mv] == UP, 1.0, -1.0)
        hit = np.where(d == 0, 0.5, (np.sign(d) == truth).astype(np.float64))
        dir_acc: float | None = float(hit.mean())
        called = float((d != 0).mean())
    else:
        dir_acc, called = None, 0.0
    # the live monitor's definition: only where the model calls a direction (argmax not flat)
    mc = mv & (pred != FLAT)
    dir_called = float((pred[mc] == y[mc]).mean()) if mc.any() else None
    # calibration on the max probability
    mx = probs.max(1) if n else np.zeros(0)
    correct = (pred == y).astype(np.float64)
    b = np.minimum((mx * N_BINS).astype(np.int64), N_BINS - 1)
    bins = []
    ece = 0.0
    for i in range(N_BINS):
        m = b == i
        cnt = int(m.sum())
        if cnt:
            acc_b = float(correct[m].mean())
            conf_b = float(mx[m].mean())
            ece += cnt / n * abs(acc_b - conf_b)
        else:
            acc_b = conf_b = None
        bins.append({"lo": i / N_BINS, "hi": (i + 1) / N_BINS, "n": cnt, "confidence": conf_b, "accuracy": acc_b})
    out: dict[str, Any] = {
        "n": n,
        "n_directional": nd,
        "directional_accuracy": dir_acc,
        "directional_called": called,
        "directional_accuracy_when_called": dir_called,
        "n_directional_called": int(mc.sum()),
        "accuracy": float(correct.mean()) if n else None,
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion": conf.tolist(),
        "ece": float(ece) if n else None,
        "reliability": bins,
        "class_balance": {name: (float((y == c).mean()) if n else None) for c, name in enumerate(CLASSES)},
    }
    if move_bps is not None and n:
        out["signal_bps"] = float(np.mean(np.sign(probs[:, UP] - probs[:, DOWN]) * move_bps))
    return out


def predict(model_or_probs: Any, x: np.ndarray) -> np.ndarray:
    """Outputs from an (n, 3) or (n, 4) array, a LoadedModel (predict_proba_batch), anything with
    predict_proba over a batch, or a torch module that outputs them (e.g. artifact.Standardised): three
    probabilities (down, flat, up) and, for a model that has one, the expected move in bps."""
    if isinstance(model_or_probs, np.ndarray):
        p = model_or_probs
    elif hasattr(model_or_probs, "predict_proba_batch"):
        p = model_or_probs.predict_proba_batch(x)
    elif hasattr(model_or_probs, "predict_proba"):
        p = model_or_probs.predict_proba(x)
    else:
        import torch

        mod = model_or_probs
        was_training = getattr(mod, "training", False)
        mod.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), 8192):
                outs.append(mod(torch.from_numpy(np.ascontiguousarray(x[i : i + 8192], dtype=np.float32))).numpy())
        if was_training:
            mod.train()
        p = np.concatenate(outs) if outs else np.zeros((0, len(CLASSES)), np.float32)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(x) or p.shape[1] not in (len(CLASSES), len(CLASSES) + 1):
        raise ValueError(f"outputs of shape {p.shape}, expected ({len(x)}, {len(CLASSES)}) or ({len(x)}, "
                         f"{len(CLASSES) + 1})")
    return p


def model_move(out: np.ndarray) -> np.ndarray:
    """The model's move prediction: its expected move in bps, or p_up - p_down for a direction model."""
    return out[:, 3].copy() if out.shape[1] > len(CLASSES) else out[:, UP] - out[:, DOWN]


def imbalance_sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x[:, -1, MODEL_INPUTS.index("imbalance_1")].astype(np.float64)) if len(x) else np.zeros(0)


MOVE_LABELS = {"model": "model", "imbalance_sign": "sign of imbalance", "linear_regression": "linear regression",
               "logistic": "logistic regression", "online_alpha": "online alpha", "persistence": "persistence"}


def move_predictors(out: np.ndarray, e: EvalSet, linear: LinearMove | None = None,
                    logit: InputsLogit | None = None) -> dict[str, np.ndarray]:
    """Every predictor of the move view on `e`'s windows (see the module doc); the online alpha only where it
    was computed for every window."""
    d = e.data
    preds = {"model": model_move(out), "imbalance_sign": imbalance_sign(d.x)}
    if linear is not None:
        preds["linear_regression"] = linear.predict(d.x)
    if logit is not None:
        p = logit.predict_proba(d.x)
        preds["logistic"] = p[:, UP] - p[:, DOWN]
    if len(e) and np.all(np.isfinite(e.online_alpha_bps)):
        preds["online_alpha"] = e.online_alpha_bps.astype(np.float64)
    preds["persistence"] = np.nan_to_num(e.past_move_bps, nan=0.0)
    return preds


def move_view(out: np.ndarray, e: EvalSet, linear: LinearMove | None = None, logit: InputsLogit | None = None,
              block_s: float = BLOCK_S, reps: int = BOOTSTRAP_REPS) -> dict[str, Any]:
    """`block_bootstrap` of every move predictor on `e`, the model as the reference of the differences."""
    preds = move_predictors(out, e, linear, logit)
    blocks = block_ids(e.data.times_ns, e.sources, block_s)
    res = block_bootstrap(preds, e.data.move_bps, blocks, e.sources, reference="model", reps=reps)
    res["block_s"] = block_s
    return res


def _compact(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "n_directional", "directional_accuracy", "directional_called", "directional_accuracy_when_called",
            "accuracy", "macro_f1", "ece", "signal_bps")
    return {k: s[k] for k in keys if k in s}


def evaluate(model_or_probs: Any, dataset: Dataset | EvalSet, *, train: Dataset | EvalSet | None = None,
             logit: InputsLogit | None = None, linear: LinearMove | None = None, baselines: bool = True,
             per_source: bool = False, majority: int | None = None, move: bool = True,
             reps: int = BOOTSTRAP_REPS) -> dict[str, Any]:
    """Scores of a model (or its outputs, rows aligned with `dataset`) on `dataset`, see the module doc.

    Class view (top level): the model's head; baselines always-flat and the sign of the level-1 depth imbalance
    always; the majority class of the training labels when `majority` (or `train`) is given; persistence when
    `dataset` is an EvalSet (it needs the past mids); the logistic regression on the model's inputs when `train`
    (fit there) or a fitted `logit` is given. Move view (`move`, EvalSet only, when `move` is true): every move
    predictor with bootstrap intervals and the model's differences from each; the linear regression when `train`
    or a fitted `linear` is given. `per_source` (EvalSet only) adds the same dict per source under `sources`."""
    e = dataset if isinstance(dataset, EvalSet) else None
    d = dataset.data if isinstance(dataset, EvalSet) else dataset
    outputs = predict(model_or_probs, d.x)
    probs = outputs[:, : len(CLASSES)]
    out = scores(probs, d.y, d.move_bps)
    if train is not None:
        td = train.data if isinstance(train, EvalSet) else train
        if len(td.y):
            logit = logit if logit is not None else InputsLogit().fit(td)
            linear = linear if linear is not None else LinearMove().fit(td)
    if majority is None and train is not None:
        td = train.data if isinstance(train, EvalSet) else train
        if len(td.y):
            majority = int(np.bincount(td.y, minlength=len(CLASSES)).argmax())
    if baselines:
        bl: dict[str, Any] = {"always_flat": _compact(scores(_onehot(np.full(len(d.y), FLAT)), d.y, d.move_bps)),
                              "imbalance_sign": _compact(scores(imbalance_sign_probs(d.x), d.y, d.move_bps))}
        if majority is not None:
            bl["majority_class"] = {**_compact(scores(_onehot(np.full(len(d.y), majority)), d.y, d.move_bps)),
                                    "class": CLASSES[majority]}
        if e is not None:
            bl["persistence"] = _compact(scores(persistence_probs(e), d.y, d.move_bps))
        if logit is not None:
            bl["logistic"] = _compact(scores(logit.predict_proba(d.x), d.y, d.move_bps))
        out["baselines"] = bl
    if move and e is not None and len(e):
        out["move"] = move_view(outputs, e, linear if baselines else None, logit if baselines else None, reps=reps)
    if per_source and e is not None:
        out["sources"] = {}
        for name in e.source_names():
            m = e.sources == name
            out["sources"][name] = evaluate(outputs[m], e.where(m), logit=logit, linear=linear, baselines=baselines,
                                            majority=majority, move=move, reps=reps)
    return out


# ---- scoring a model file on data (flashmm eval-model) ------------------------------------------------


def is_real(source: str) -> bool:
    """A recorded market (not the simulator, with or without FlashMM trading in it)."""
    return not str(source).startswith(("sim-", "sim:", "flashmm"))


def source_samples(spec: str, cadence_ms: float, cache_dir: str | os.PathLike | None,
                   cfg: Config | None = None) -> Samples:
    """A data path (file or folder of one data set), `sim:SECONDS:SEED[:PRESET]` for the simulated market, or
    `sim-trading:SECONDS:SEED[:PRESET]` for the simulated market with FlashMM's engine trading in it (the book
    with our orders, as `flashmm record --trade` records it; the engine runs with `cfg`, default the built-in
    configuration). PRESET: a simulator preset (thin, deep), default the configured (or default) one. With `cfg`, recordings load as the configuration says ([replay].symbol, instruments_file,
    [instrument]). A data set that yields no sample is a DataError saying so, not an empty result."""
    from flashmm.data.readers import DataError

    if spec.startswith(("sim:", "sim-trading:")):
        parts = spec.split(":")
        try:
            if len(parts) not in (3, 4):
                raise ValueError
            kind, seconds, seed_n = parts[0], float(parts[1]), int(parts[2])
        except ValueError:
            raise DataError(f"{spec}: expected sim:SECONDS:SEED[:PRESET] or sim-trading:SECONDS:SEED[:PRESET]") from None
        if not (seconds > 0 and math.isfinite(seconds)):
            raise DataError(f"{spec}: SECONDS must be a positive number")
        preset = parts[3] if len(parts) == 4 else None
        if preset is not None and preset not in SIM_PRESETS:
            raise DataError(f"{spec}: unknown simulator preset {preset!r} (one of {', '.join(SIM_PRESETS)})")
        s = (samples_from_sim(seconds, seed_n, cadence_ms, preset) if kind == "sim"
             else samples_from_sim_trading(seconds, seed_n, cadence_ms, cfg, preset))
    else:
        from flashmm.data.loader import load_configured, load_events

        es = load_configured(cfg, [spec]) if cfg is not None else load_events([spec], cache_dir)
        s = samples_from_events(es, cadence_ms)
    if len(s.times_ns) == 0:
        raise DataError(f"{spec}: no samples: the book was never two-sided and in sync on the "
                        f"{cadence_ms:g} ms grid")
    return s


def eval_model(model_path: str | os.PathLike, data_paths: list[str], cache_dir: str | os.PathLike | None = None,
               json_out: str | os.PathLike | None = None, *, part: str = "test", cfg: Config | None = None,
               reps: int = BOOTSTRAP_REPS) -> dict[str, Any]:
    """Score a model file on each data set (a path, `sim:SECONDS:SEED` or `sim-trading:SECONDS:SEED`), on all
    of them pooled, and on the recorded (real) data sets pooled when there are both kinds.

    `part`: "test" scores the last slice of each data set under the model's own time split (the slice its
    training held back, if it was trained on this data), "val" the validation slice, "all" every window. The
    regression baselines are fit on the train slice of the same data. Writes `json_out` when given."""
    from flashmm.model.artifact import load

    if part not in ("test", "val", "all"):
        raise ValueError("part must be test, val or all")
    m = load(model_path)
    meta = m.meta
    cadence = float(meta["cadence_ms"])
    window = int(meta["window"])
    h = int(meta["horizon_steps"])
    band = float(meta["band_bps"])
    split = meta.get("split", {})
    fractions = tuple(split.get("fractions", (0.7, 0.15)))
    embargo_ns = int(split.get("embargo_ns", (window + h) * cadence * 1_000_000))
    scored, trains = [], []
    names: dict[str, int] = {}
    for spec in data_paths:
        s = source_samples(spec, cadence, cache_dir, cfg)
        name = s.source
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}#{names[name]}"
        e = eval_set(s, windows(s, window, h, band), h, band, name)
        tr, va, te = split_eval_set(e, fractions, embargo_ns)
        scored.append({"test": te, "val": va, "all": e}[part])
        trains.append(tr)
    pooled = concat_sets(scored)
    train_all = concat_sets(trains).data
    logit = InputsLogit().fit(train_all)
    linear = LinearMove().fit(train_all)
    majority = int(np.bincount(train_all.y, minlength=len(CLASSES)).argmax())
    res = evaluate(m, pooled, logit=logit, linear=linear, per_source=True, majority=majority, reps=reps)
    result = {
        "model": {"path": str(m.path), "sha256": m.sha256, "architecture": meta.get("architecture"),
                  "format_version": meta.get("format_version"), "expected_move": m.has_expected_move,
                  "file_bytes": meta.get("file_bytes"), "window": window, "cadence_ms": cadence,
                  "horizon_s": meta.get("horizon_s"), "band_bps": band,
                  "val_directional_accuracy": meta.get("val_directional_accuracy")},
        "data": list(data_paths),
        "part": part,
        "pooled": {k: v for k, v in res.items() if k != "sources"},
        "sources": res["sources"],
        "groups": {},
    }
    real = np.array([is_real(n) for n in pooled.sources], dtype=bool)
    if real.any() and not real.all():
        g = evaluate(m, pooled.where(real), logit=logit, linear=linear, majority=majority, reps=reps)
        result["groups"]["real"] = g
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=1))
    return result


def directional_ci95(acc: float | None, n: int) -> tuple[float, float] | None:
    """95 % interval of a directional accuracy over n calls (normal approximation to the binomial)."""
    if acc is None or n < 2:
        return None
    half = 1.96 * math.sqrt(acc * (1 - acc) / n)
    return acc - half, acc + half


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _ci_s(ci: list[float] | None, fmt: str, scale: float = 1.0) -> str:
    return f" [{format(ci[0] * scale, fmt)}, {format(ci[1] * scale, fmt)}]" if ci else ""


def _val(x: float | None, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if x is None else format(x * scale, fmt)


def report_lines(result: dict[str, Any]) -> list[str]:
    """eval-model's plain report: the model and every baseline on the same windows, pooled, on the recorded data
    sets pooled, and per data set; then the model's paired differences from each baseline ('beats' when the
    intervals of both the directional accuracy and the IC differences lie above zero)."""
    labels = {"imbalance_sign": "sign of imbalance", "linear_regression": "linear regression",
              "logistic": "logistic regression", "online_alpha": "online alpha", "persistence": "persistence",
              "majority_class": "majority class", "always_flat": "always flat"}

    def move_part(p: dict[str, Any] | None) -> str:
        if p is None:
            return ""
        return (f"directional {_pct(p['directional_accuracy'])}{_ci_s(p.get('directional_accuracy_ci95'), '.1%')}   "
                f"IC {_val(p['ic'], '+.3f')}{_ci_s(p.get('ic_ci95'), '+.3f')}   "
                f"sign {_val(p['bps_per_window'], '+.3f')} bps{_ci_s(p.get('bps_per_window_ci95'), '+.3f')}")

    def class_part(c: dict[str, Any] | None) -> str:
        if c is None:
            return ""
        return f"   accuracy {_pct(c['accuracy'])}   macro-F1 {c['macro_f1']:.3f}"

    def block(name: str, s: dict[str, Any]) -> list[str]:
        mv = s.get("move", {})
        preds = mv.get("predictors", {})
        n_moves = preds.get("model", {}).get("n_moves")
        out = [f"{name}: {s['n']:,} windows, {s['n_directional']:,} with a move beyond the band"
               + (f", {n_moves:,} with a mid change" if n_moves is not None else "")]
        model_p = preds.get("model")
        head = move_part(model_p) if model_p else f"directional {_pct(s['directional_accuracy'])}"
        out.append(f"  {'model':<24}{head}{class_part(s)}")
        bl = s.get("baselines", {})
        for key, label in labels.items():
            p, c = preds.get(key), bl.get(key)
            if p is None and c is None:
                continue
            extra = f" ({c['class']})" if c and "class" in c else ""
            body = move_part(p) if p else f"directional {_pct(c['directional_accuracy'])}"
            out.append(f"  {(label + extra):<24}{body}{class_part(c)}")
        for key, d in mv.get("differences", {}).items():
            out.append(f"  {('model - ' + labels.get(key, key)):<34}directional "
                       f"{_val(d['directional_accuracy'], '+.1f', 100)} pts{_ci_s(d['directional_accuracy_ci95'], '+.1f', 100)}"
                       f"   IC {_val(d['ic'], '+.3f')}{_ci_s(d['ic_ci95'], '+.3f')}   sign "
                       f"{_val(d['bps_per_window'], '+.3f')} bps{_ci_s(d['bps_per_window_ci95'], '+.3f')}"
                       f"   {'BEATS' if d['beats'] else 'does not beat'}")
        return out

    lines = block(f"pooled ({result['part']} slice)", result["pooled"])
    for gname, g in result.get("groups", {}).items():
        lines += block(f"{gname} data sets pooled ({result['part']} slice)", g)
    for name, s in result["sources"].items():
        lines += block(name, s)
    mv = result["pooled"].get("move")
    if mv:
        lines.append(f"(95 % intervals: moving-block bootstrap, {mv['block_s']:g} s blocks resampled within each data "
                     f"set, {mv['reps']} replicates; 'sign' = bps of the realised move per window traded on the "
                     "prediction's sign, before costs)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashmm.research.evaluate", description="score a model file on data")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", nargs="+", required=True, help="data set paths, sim:SECONDS:SEED or sim-trading:SECONDS:SEED")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--part", default="test", choices=("test", "val", "all"))
    a = ap.parse_args(argv)
    r = eval_model(a.model, a.data, a.cache_dir, a.json, part=a.part)
    print("\n".join(report_lines(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
