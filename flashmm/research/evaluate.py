"""Scores of a direction model on labelled windows, with the baselines it has to beat.

`evaluate(model_or_probs, dataset)` returns one dict:
- `directional_accuracy`: on the samples whose TRUE move is not flat, the share where the predicted
  direction (p_up > p_down: up, p_down > p_up: down) is the true one. A tie (p_up == p_down, e.g. a
  baseline with no view) counts half: the expected score of a coin toss. `n_directional` says on how many.
- `directional_accuracy_when_called`: the same, only where the model calls a direction (argmax up or down),
  the definition of the engine's live hit rate.
- `accuracy` (3-class), `macro_f1`, `per_class` precision / recall / F1 / support, `confusion`
  (rows = true, columns = predicted, order down, flat, up), `ece` (expected calibration error over 10
  equal-width bins of the max probability) and `reliability` (the bins), `class_balance`, and
  `signal_bps` (mean realised move in bps in the predicted direction, over all samples: what a unit
  position in the model's direction would have earned before costs).
- `baselines`: the same scores for always-flat, last-move persistence (the sign of the mid move over
  the previous horizon; flat if inside the band or unknown) and a class-weighted multinomial logistic
  regression on the imbalances (fit on `train`, scored on the evaluated slice).

`EvalSet` carries what `dataset.Dataset` does not and evaluation needs: the past move for persistence, the
source of each sample and the band. `eval_set`, `split_eval_set` and `concat_sets` build them from the
dataset module's own `windows` / `time_split` / `concat`.
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

from flashmm.config import Config
from flashmm.model.inputs import CLASSES, MODEL_INPUTS
from flashmm.research.dataset import (
    Dataset,
    Samples,
    concat,
    samples_from_events,
    samples_from_sim,
    time_split,
    windows,
)

DOWN, FLAT, UP = 0, 1, 2
N_BINS = 10
IMBALANCE_INPUTS = ("imbalance_1", "imbalance_3", "imbalance_5")


# ---- evaluation sets ----------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """A `dataset.Dataset` plus, per sample, the mid move over the previous horizon (nan where the grid has
    a hole) and the source name; and the band the labels were made with."""

    data: Dataset
    past_move_bps: np.ndarray
    sources: np.ndarray  # str per sample
    band_bps: float

    def __len__(self) -> int:
        return len(self.data.y)

    def where(self, mask: np.ndarray) -> EvalSet:
        d = self.data
        return EvalSet(Dataset(d.x[mask], d.y[mask], d.times_ns[mask], d.move_bps[mask], d.source),
                       self.past_move_bps[mask], self.sources[mask], self.band_bps)

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
    return EvalSet(d, past_moves(s, d, horizon_steps), np.full(len(d.y), name or s.source, dtype=object), band_bps)


def split_eval_set(e: EvalSet, fractions: tuple[float, float], embargo_ns: int) -> tuple[EvalSet, EvalSet, EvalSet]:
    """`dataset.time_split` of one source's set, carrying the extra columns along (matched by time)."""
    parts = time_split(e.data, fractions, embargo_ns)
    out = []
    for p in parts:
        mask = np.isin(e.data.times_ns, p.times_ns)
        out.append(EvalSet(p, e.past_move_bps[mask], e.sources[mask], e.band_bps))
    return out[0], out[1], out[2]


def concat_sets(parts: list[EvalSet]) -> EvalSet:
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no samples")
    return EvalSet(concat([p.data for p in parts]), np.concatenate([p.past_move_bps for p in parts]),
                   np.concatenate([p.sources for p in parts]), parts[0].band_bps)


# ---- baselines ----------------------------------------------------------------------------------------


def class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced weights n / (3 n_c); a class absent from y gets weight 0."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.zeros(len(CLASSES))
    present = counts > 0
    w[present] = len(y) / (present.sum() * counts[present])
    return w


class ImbalanceLogit:
    """Multinomial logistic regression on the last row's depth imbalances, class-weighted like the model.
    Fit by full-batch gradient descent on standardised inputs (convex; numpy only)."""

    def __init__(self, l2: float = 1e-4, iters: int = 400, lr: float = 1.0) -> None:
        self.cols = [MODEL_INPUTS.index(c) for c in IMBALANCE_INPUTS]
        self.l2, self.iters, self.lr = l2, iters, lr
        self.mu = np.zeros(len(self.cols))
        self.sd = np.ones(len(self.cols))
        self.w = np.zeros((len(self.cols), len(CLASSES)))
        self.b = np.zeros(len(CLASSES))

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x[:, -1, self.cols].astype(np.float64) - self.mu) / self.sd

    def fit(self, d: Dataset) -> ImbalanceLogit:
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
    """Probabilities from an (n, 3) array, a LoadedModel (predict_proba_batch), anything with
    predict_proba over a batch, or a torch module that outputs probabilities (e.g. artifact.Standardised)."""
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
    if p.shape != (len(x), len(CLASSES)):
        raise ValueError(f"probabilities of shape {p.shape}, expected ({len(x)}, {len(CLASSES)})")
    return p


def _compact(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "n_directional", "directional_accuracy", "directional_called", "directional_accuracy_when_called",
            "accuracy", "macro_f1", "ece", "signal_bps")
    return {k: s[k] for k in keys if k in s}


def evaluate(model_or_probs: Any, dataset: Dataset | EvalSet, *, train: Dataset | EvalSet | None = None,
             logit: ImbalanceLogit | None = None, baselines: bool = True, per_source: bool = False,
             majority: int | None = None) -> dict[str, Any]:
    """Scores of a model (or its probabilities, rows aligned with `dataset`) on `dataset`, see the module doc.

    Baselines: always-flat and the sign of the level-1 depth imbalance always; the majority class of the
    training labels when `majority` (or `train`) is given; persistence when `dataset` is an EvalSet (it needs
    the past mids); the imbalance logistic regression when `train` (fit there) or a fitted `logit` is given. `per_source`
    (EvalSet only) adds the same dict per source under `sources`."""
    e = dataset if isinstance(dataset, EvalSet) else None
    d = dataset.data if isinstance(dataset, EvalSet) else dataset
    probs = predict(model_or_probs, d.x)
    out = scores(probs, d.y, d.move_bps)
    if logit is None and train is not None:
        td = train.data if isinstance(train, EvalSet) else train
        if len(td.y):
            logit = ImbalanceLogit().fit(td)
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
            bl["logistic_imbalance"] = _compact(scores(logit.predict_proba(d.x), d.y, d.move_bps))
        out["baselines"] = bl
    if per_source and e is not None:
        out["sources"] = {}
        for name in e.source_names():
            m = e.sources == name
            out["sources"][name] = evaluate(probs[m], e.where(m), logit=logit, baselines=baselines, majority=majority)
    return out


# ---- scoring a model file on data (flashmm eval-model) ------------------------------------------------


def source_samples(spec: str, cadence_ms: float, cache_dir: str | os.PathLike | None,
                   cfg: Config | None = None) -> Samples:
    """A data path (file or folder of one data set), or `sim:SECONDS:SEED` for the simulated market. With
    `cfg`, recordings load as the configuration says ([replay].symbol, instruments_file, [instrument]).
    A data set that yields no sample is a DataError saying so, not an empty result."""
    from flashmm.data.readers import DataError

    if spec.startswith("sim:"):
        try:
            _, secs, seed = spec.split(":")
            seconds, seed_n = float(secs), int(seed)
        except ValueError:
            raise DataError(f"{spec}: expected sim:SECONDS:SEED") from None
        s = samples_from_sim(seconds, seed_n, cadence_ms)
    else:
        from flashmm.data.loader import load_configured, load_events

        es = load_configured(cfg, [spec]) if cfg is not None else load_events([spec], cache_dir)
        s = samples_from_events(es, cadence_ms)
    if len(s.times_ns) == 0:
        raise DataError(f"{spec}: no samples: the book was never two-sided and in sync on the "
                        f"{cadence_ms:g} ms grid")
    return s


def eval_model(model_path: str | os.PathLike, data_paths: list[str], cache_dir: str | os.PathLike | None = None,
               json_out: str | os.PathLike | None = None, *, part: str = "test", cfg: Config | None = None
               ) -> dict[str, Any]:
    """Score a model file on each data set (a path, or `sim:SECONDS:SEED`) and on all of them pooled.

    `part`: "test" scores the last slice of each data set under the model's own time split (the slice its
    training held back, if it was trained on this data), "all" scores every window. The logistic
    baseline is fit on the train slice of the same data. Writes `json_out` when given."""
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
    logit = ImbalanceLogit().fit(train_all)
    majority = int(np.bincount(train_all.y, minlength=len(CLASSES)).argmax())
    res = evaluate(m, pooled, logit=logit, per_source=True, majority=majority)
    result = {
        "model": {"path": str(m.path), "sha256": m.sha256, "architecture": meta.get("architecture"),
                  "file_bytes": meta.get("file_bytes"), "window": window, "cadence_ms": cadence,
                  "horizon_s": meta.get("horizon_s"), "band_bps": band,
                  "val_directional_accuracy": meta.get("val_directional_accuracy")},
        "data": list(data_paths),
        "part": part,
        "pooled": {k: v for k, v in res.items() if k != "sources"},
        "sources": res["sources"],
    }
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


def report_lines(result: dict[str, Any]) -> list[str]:
    """eval-model's plain report: the model and every baseline on the same windows, pooled and per source."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    def block(name: str, s: dict[str, Any]) -> list[str]:
        ci = directional_ci95(s["directional_accuracy"], s["n_directional"])
        ci_s = f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""
        out = [f"{name}: {s['n']:,} windows, {s['n_directional']:,} with a move beyond the band",
               f"  model                   directional {pct(s['directional_accuracy'])}{ci_s}   accuracy "
               f"{pct(s['accuracy'])}   macro-F1 {s['macro_f1']:.3f}"]
        names = {"imbalance_sign": "sign of imbalance", "logistic_imbalance": "logistic regression",
                 "majority_class": "majority class", "always_flat": "always flat", "persistence": "persistence"}
        for key, label in names.items():
            b = s.get("baselines", {}).get(key)
            if b is None:
                continue
            extra = f" ({b['class']})" if "class" in b else ""
            out.append(f"  {(label + extra):<24}directional {pct(b['directional_accuracy'])}   accuracy "
                       f"{pct(b['accuracy'])}   macro-F1 {b['macro_f1']:.3f}")
        return out

    lines = block(f"pooled ({result['part']} slice)", result["pooled"])
    for name, s in result["sources"].items():
        lines += block(name, s)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashmm.research.evaluate", description="score a model file on data")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", nargs="+", required=True, help="data set paths, or sim:SECONDS:SEED")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--part", default="test", choices=("test", "val", "all"))
    a = ap.parse_args(argv)
    r = eval_model(a.model, a.data, a.cache_dir, a.json, part=a.part)
    print("\n".join(report_lines(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
