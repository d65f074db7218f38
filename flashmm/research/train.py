"""Train, select, export and document the prediction model (`flashmm train`).

What it predicts is what the strategy uses: the mid's move over the next second in bps (the online alpha's
target, [strategy].alpha_horizon_s), as an expected value, which the engine takes as the fair value's shift
with [strategy].alpha = "model"; beside it, a down / unchanged / up head (probabilities for the console and an
auxiliary task).

Data: each source (a recorded data set; one seed of the simulated market, on each of its presets, thin and deep;
one seed of the simulated market with FlashMM's engine trading in it, so that the book carries our own orders as
it does live, on each preset too) is sampled on
the 250 ms grid by the engine's own book and feature code (`dataset`), cut into 8-sample windows (2 s) labelled
by the mid's move over the next 4 steps (1 s), and split by time into train / validation / test (60/10/30) with
an embargo of window + horizon steps after each boundary: the test slice is the later 30 % that the held-out
backtests trade. The splits are then pooled across sources.

Candidates (all small): an MLP on the last feature vector, an MLP on the flattened window, a GRU and a causal
temporal convolution, each with four outputs (three class logits, the expected move). Loss: cross-entropy +
Huber on the move (clipped to +-20 bps, in units of its standard deviation), each source weighted by the
square root of its size; AdamW, fixed seeds, deterministic algorithms (CPU), early-stopped on the validation
IC (correlation of the expected move with the realised one; ties: directional accuracy). The candidate with
the best validation IC is exported (`artifact.save`, format version 2) and the model card written beside it.

`--promote-if-better`: the candidate and the current model are scored on the same held-back test slice;
the current file is replaced only if the candidate's directional accuracy on mid changes is higher (ties: IC).
The comparison is appended to the card's promotion log either way.

    python -m flashmm.research.train --data PATH... --out models/flashmm.pt2 [--promote-if-better]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flashmm.config import Config
from flashmm.model import artifact
from flashmm.model.inputs import CLASSES, MODEL_INPUTS, N_INPUTS
from flashmm.research.dataset import Samples, samples_from_sim, samples_from_sim_trading, windows
from flashmm.research.evaluate import (
    MOVE_CLIP_BPS,
    EvalSet,
    InputsLogit,
    LinearMove,
    class_weights,
    concat_sets,
    eval_set,
    evaluate,
    is_real,
    move_scores,
    scores,
    source_samples,
    split_eval_set,
)

CADENCE_MS = 250.0
WINDOW = 8  # 2 s of history
HORIZON_STEPS = 4  # 1 s: the online alpha's horizon
BAND_BPS = 0.0  # classes: down / unchanged / up
FRACTIONS = (0.6, 0.1)  # train 60 %, validation 10 %, test the later 30 % (what held-out backtests trade)
SIM_SECONDS = 1800.0
SIM_SEEDS = (101, 102)
TRADING_SECONDS = 1800.0
TRADING_SEEDS = (201, 202)
SIM_PRESETS = ("thin", "deep")  # every seed on each simulator preset
ARCHITECTURES = ("mlp_last", "mlp_window", "gru", "tcn")
HUBER_DELTA = 1.0  # in units of the move's training standard deviation
MOVE_LOSS_WEIGHT = 1.0


# ---- architectures ------------------------------------------------------------------------------------
# Each maps standardised inputs (batch, window, N_INPUTS) to (batch, n_out): three logits (down, flat, up) and,
# with n_out = 4, the expected move in units of the model's move scale (artifact.Standardised).


class MLPLast(nn.Module):
    """MLP on the last feature vector only (no history)."""

    def __init__(self, window: int, hidden: int = 64, dropout: float = 0.1, n_out: int = len(CLASSES)) -> None:
        super().__init__()
        self.hidden = hidden
        self.f = nn.Sequential(nn.Linear(N_INPUTS, hidden), nn.GELU(), nn.Dropout(dropout),
                               nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.f(z[:, -1, :])


class MLPWindow(nn.Module):
    """MLP on the flattened window."""

    def __init__(self, window: int, hidden: int = 64, dropout: float = 0.1, n_out: int = len(CLASSES)) -> None:
        super().__init__()
        self.hidden = hidden
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(window * N_INPUTS, hidden), nn.GELU(), nn.Dropout(dropout),
                               nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.f(z)


class GRUNet(nn.Module):
    """One-layer GRU over the window; the last hidden state -> logits."""

    def __init__(self, window: int, hidden: int = 32, dropout: float = 0.1, n_out: int = len(CLASSES)) -> None:
        super().__init__()
        self.hidden = hidden
        self.gru = nn.GRU(N_INPUTS, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(z)
        return self.head(self.drop(out[:, -1, :]))


class TCN(nn.Module):
    """Causal temporal convolution: kernel 3 at dilations 1, 2, 4 (receptive field 15 >= window)."""

    def __init__(self, window: int, hidden: int = 32, dropout: float = 0.1, n_out: int = len(CLASSES)) -> None:
        super().__init__()
        self.hidden = hidden
        self.convs = nn.ModuleList([nn.Conv1d(N_INPUTS, hidden, 3, dilation=1), nn.Conv1d(hidden, hidden, 3, dilation=2),
                                    nn.Conv1d(hidden, hidden, 3, dilation=4)])
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.transpose(1, 2)  # (batch, inputs, time)
        for conv in self.convs:
            h = F.gelu(conv(F.pad(h, (2 * conv.dilation[0], 0))))
        return self.head(self.drop(h[:, :, -1]))


_NETS = {"mlp_last": MLPLast, "mlp_window": MLPWindow, "gru": GRUNet, "tcn": TCN}


def build_network(name: str, window: int, hidden: int | None = None, n_out: int = len(CLASSES)) -> nn.Module:
    if name not in _NETS:
        raise ValueError(f"unknown architecture {name!r}; one of {sorted(_NETS)}")
    kw = {"n_out": n_out} if hidden is None else {"hidden": hidden, "n_out": n_out}
    return _NETS[name](window, **kw)


def rebuild_eager(loaded: artifact.LoadedModel) -> artifact.Standardised:
    """The eager module of a loaded model file: its architecture rebuilt from the metadata, weights and
    normalisation buffers from the exported program's state dict (a version 1 file made before the move scale
    existed has no such buffer: it keeps the unused default)."""
    meta = loaded.meta
    net = build_network(meta["architecture"], int(meta["window"]), (meta.get("arch_config") or {}).get("hidden"),
                        n_out=loaded.n_outputs)
    m = artifact.Standardised(net, np.zeros(N_INPUTS), np.ones(N_INPUTS))
    state = dict(loaded.program.state_dict)
    missing, unexpected = m.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "move_scale"]:
        raise ValueError(f"{loaded.path}: weights do not fit {meta['architecture']} (missing {missing}, "
                         f"unexpected {unexpected})")
    return m.eval()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---- data ---------------------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_kind(name: str) -> str:
    if str(name).startswith("sim-trading"):
        return "simulator, FlashMM trading"
    if str(name).startswith("sim"):
        return "simulator"
    return "recorded" if is_real(name) else "FlashMM recording"


@dataclass
class SourceSplit:
    name: str
    samples: Samples
    train: EvalSet
    val: EvalSet
    test: EvalSet
    info: dict[str, Any] = field(default_factory=dict)

    def ranges(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.info)
        out["kind"] = source_kind(self.name)
        out["n_grid_samples"] = len(self.samples.times_ns)
        for part in ("train", "val", "test"):
            e: EvalSet = getattr(self, part)
            t = e.data.times_ns
            mv = e.data.move_bps
            out[part] = ({"n": len(t), "start_ns": int(t[0]), "end_ns": int(t[-1]), "start": _iso(int(t[0])),
                          "end": _iso(int(t[-1])),
                          "class_balance": [float(np.mean(e.data.y == c)) for c in range(len(CLASSES))],
                          "moving_share": float(np.mean(mv != 0)), "move_std_bps": float(np.std(mv))}
                         if len(t) else {"n": 0})
        return out


@dataclass
class TrainData:
    sources: list[SourceSplit]
    cadence_ms: float = CADENCE_MS
    window: int = WINDOW
    horizon_steps: int = HORIZON_STEPS
    band_bps: float = BAND_BPS
    fractions: tuple[float, float] = FRACTIONS
    seconds_to_build: float = 0.0

    @property
    def embargo_steps(self) -> int:
        return self.window + self.horizon_steps

    @property
    def embargo_ns(self) -> int:
        return int(self.embargo_steps * self.cadence_ms * 1_000_000)

    def part(self, name: str) -> EvalSet:
        return concat_sets([getattr(s, name) for s in self.sources])


def split_samples(s: Samples, name: str | None = None, *, window: int = WINDOW, horizon_steps: int = HORIZON_STEPS,
                  band_bps: float = BAND_BPS, fractions: tuple[float, float] = FRACTIONS) -> SourceSplit:
    """One source: windows, labels, time split with embargo = (window + horizon) steps."""
    name = name or s.source
    e = eval_set(s, windows(s, window, horizon_steps, band_bps), horizon_steps, band_bps, name)
    embargo_ns = int((window + horizon_steps) * s.cadence_ms * 1_000_000)
    tr, va, te = split_eval_set(e, fractions, embargo_ns)
    info = {k: v for k, v in s.meta.items() if k in ("files", "symbol", "seconds", "seed", "book_rejects", "engine")}
    return SourceSplit(name, s, tr, va, te, info)


def build_dataset(data_paths: list[str], sim_seconds: float = SIM_SECONDS, sim_seeds: list[int] | tuple[int, ...] = SIM_SEEDS,
                  cache_dir: str | os.PathLike | None = None, *, cadence_ms: float = CADENCE_MS, window: int = WINDOW,
                  horizon_steps: int = HORIZON_STEPS, band_bps: float = BAND_BPS,
                  fractions: tuple[float, float] = FRACTIONS, cfg: Config | None = None,
                  trading_seconds: float = TRADING_SECONDS, trading_seeds: list[int] | tuple[int, ...] = TRADING_SEEDS,
                  sim_presets: list[str] | tuple[str, ...] = SIM_PRESETS, log: Any = None) -> TrainData:
    """Every data path (one data set each; `sim:SECONDS:SEED[:PRESET]` and `sim-trading:SECONDS:SEED[:PRESET]`
    also accepted), plus, on each of `sim_presets`, `sim_seeds` simulated markets of `sim_seconds` each and
    `trading_seeds` simulated markets of `trading_seconds` each with FlashMM's engine trading in them
    (configuration `cfg`) -> per-source time splits, ready to pool."""
    t0 = time.perf_counter()
    specs = ([str(p) for p in data_paths]
             + [f"sim:{sim_seconds:g}:{int(s)}:{pr}" for pr in sim_presets for s in sim_seeds]
             + [f"sim-trading:{trading_seconds:g}:{int(s)}:{pr}" for pr in sim_presets for s in trading_seeds])
    samples: list[Samples] = []
    for spec in specs:
        t1 = time.perf_counter()
        samples.append(source_samples(spec, cadence_ms, cache_dir, cfg))
        if log:
            log(f"  {spec}: {len(samples[-1].times_ns)} grid samples ({time.perf_counter() - t1:.1f} s)")
    seen: dict[str, int] = {}
    splits = []
    for s in samples:
        seen[s.source] = seen.get(s.source, 0) + 1
        name = s.source if seen[s.source] == 1 else f"{s.source}#{seen[s.source]}"
        splits.append(split_samples(s, name, window=window, horizon_steps=horizon_steps, band_bps=band_bps,
                                    fractions=fractions))
    return TrainData(splits, cadence_ms, window, horizon_steps, band_bps, tuple(fractions), time.perf_counter() - t0)


# ---- training -----------------------------------------------------------------------------------------


@dataclass
class FitResult:
    architecture: str
    model: artifact.Standardised
    params: int
    best_epoch: int
    epochs: int
    seconds: float
    val: dict[str, Any]
    history: list[dict[str, float]]
    weighting: str = "source_sqrt"


def sample_weights(e: EvalSet, weighting: str = "source_sqrt") -> np.ndarray:
    """Weight per training sample (mean 1).

    "source_sqrt" (default): each source's total weight is the square root of its size, so the small recorded
    Binance sets are not drowned by Bitstamp's five hours and the simulator, yet a bigger source still counts
    for more. "source": every source the same total weight. "per_source" / "per_source_sqrt" additionally
    balance the classes within each source (the direction model's schemes); "pooled": classes balanced over
    the pool."""
    y = e.data.y
    if weighting == "pooled":
        return class_weights(y)[y].astype(np.float32)
    if weighting not in ("source_sqrt", "source", "per_source", "per_source_sqrt"):
        raise ValueError("weighting: source_sqrt, source, per_source, per_source_sqrt or pooled")
    w = np.zeros(len(y), dtype=np.float32)
    for name in e.source_names():
        m = e.sources == name
        w[m] = class_weights(y[m])[y[m]] if weighting.startswith("per_source") else 1.0
        w[m] /= np.sqrt(m.sum()) if weighting.endswith("sqrt") else m.sum()
    return (w / w.mean()).astype(np.float32)


def input_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-input mean and std over the last row of each window (each grid sample once)."""
    last = x[:, -1, :].astype(np.float64)
    return last.mean(0), np.maximum(last.std(0), 1e-6)


def move_scale(move_bps: np.ndarray) -> float:
    """The unit the network's move output is learnt in: the training move's standard deviation (clipped)."""
    return float(max(np.std(np.clip(move_bps, -MOVE_CLIP_BPS, MOVE_CLIP_BPS)), 0.05))


def _val_key(vm: dict[str, Any]) -> tuple[float, float]:
    return (vm["ic"] if vm["ic"] is not None else -1.0, vm["directional_accuracy"] or 0.0)


def fit(arch: str, data: TrainData, *, seed: int = 0, max_epochs: int = 40, patience: int = 6, batch_size: int = 256,
        lr: float = 2e-3, weight_decay: float = 1e-2, hidden: int | None = None, weighting: str = "source_sqrt",
        log: Any = None) -> FitResult:
    """Train one architecture on `data`'s pooled train part, early-stopped on the validation IC of the
    expected move (ties: its directional accuracy on mid changes)."""
    tr = data.part("train").data
    va = data.part("val").data
    mean, std = input_stats(tr.x)
    scale = move_scale(tr.move_bps)
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = artifact.Standardised(build_network(arch, data.window, hidden, n_out=len(CLASSES) + 1), mean, std,
                                      move_scale_bps=scale)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        w = torch.from_numpy(sample_weights(data.part("train"), weighting))
        x = torch.from_numpy(np.ascontiguousarray(tr.x, dtype=np.float32))
        y = torch.from_numpy(tr.y)
        target = torch.from_numpy((np.clip(tr.move_bps, -MOVE_CLIP_BPS, MOVE_CLIP_BPS) / scale).astype(np.float32))
        gen = torch.Generator().manual_seed(seed)
        best: tuple[float, float] = (-2.0, -1.0)
        best_state = copy.deepcopy(model.state_dict())
        best_epoch, history, since = 0, [], 0
        t0 = time.perf_counter()
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            perm = torch.randperm(len(y), generator=gen)
            tot = 0.0
            for i in range(0, len(y), batch_size):
                idx = perm[i : i + batch_size]
                wi = w[idx]
                out = model.logits(x[idx])
                per = (F.cross_entropy(out[:, : len(CLASSES)], y[idx], reduction="none")
                       + MOVE_LOSS_WEIGHT * F.huber_loss(out[:, len(CLASSES)], target[idx], reduction="none",
                                                         delta=HUBER_DELTA))
                loss = (per * wi).sum() / wi.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(idx)
            vo = _outputs(model, va.x)
            vm = move_scores(vo[:, len(CLASSES)], va.move_bps)
            key = _val_key(vm)
            history.append({"epoch": epoch, "train_loss": tot / len(y), "val_ic": vm["ic"],
                            "val_directional_accuracy": vm["directional_accuracy"]})
            if log:
                log(f"  {arch} epoch {epoch}: loss {tot / len(y):.4f} val IC {_f(vm['ic'])} directional "
                    f"{_pct(vm['directional_accuracy'])} ({time.perf_counter() - t0:.0f} s)")
            if key > best:
                best, best_state, best_epoch, since = key, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                since += 1
                if since >= patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        vo = _outputs(model, va.x)
        val = scores(vo[:, : len(CLASSES)], va.y, va.move_bps)
        val["move"] = move_scores(vo[:, len(CLASSES)], va.move_bps)
        return FitResult(arch, model, n_params(model.net), best_epoch, epoch, time.perf_counter() - t0, val, history,
                         weighting)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _outputs(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        out = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + 8192], dtype=np.float32))).numpy()
               for i in range(0, len(x), 8192)]
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES) + 1), np.float32)


# ---- the result, the artifact, the card ---------------------------------------------------------------


@dataclass
class TrainResult:
    model: artifact.Standardised
    architecture: str
    meta: dict[str, Any]
    candidates: dict[str, dict[str, Any]]
    artifact_path: Path
    card_path: Path
    promotion: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta["metrics"]


def _strip(ev: dict[str, Any]) -> dict[str, Any]:
    """An evaluate() dict without the heavy per-source copies of reliability bins."""
    out = dict(ev)
    if "sources" in out:
        out["sources"] = {k: {kk: vv for kk, vv in v.items() if kk != "reliability"} for k, v in out["sources"].items()}
    return out


def _weights_by_source(tr: EvalSet, weighting: str) -> dict[str, float]:
    """The effective weight of one training sample of each source (mean weight over the train set = 1)."""
    w = sample_weights(tr, weighting)
    return {name: float(w[tr.sources == name].mean()) for name in tr.source_names()}


def verdict(test: dict[str, Any], groups: dict[str, Any]) -> dict[str, Any]:
    """Does the model beat the simple predictors on held-out data by more than the interval? On the recorded
    data sets pooled (the simulator's own numbers are no evidence about real markets), and on each data set."""
    real = groups.get("real") or {}
    diffs = (real.get("move") or {}).get("differences", {})
    out: dict[str, Any] = {"scope": "recorded data sets pooled, test slices",
                           "beats": {k: bool(d["beats"]) for k, d in diffs.items()}}
    must = ("imbalance_sign", "linear_regression", "logistic")
    out["beats_required"] = bool(diffs) and all(out["beats"].get(k, False) for k in must)
    out["per_source"] = {name: {k: bool(d["beats"]) for k, d in (s.get("move") or {}).get("differences", {}).items()}
                         for name, s in test.get("sources", {}).items()}
    return out


def make_meta(fr: FitResult, data: TrainData, candidates: dict[str, Any], seed: int, command: str | None) -> dict[str, Any]:
    tr = data.part("train")
    va = data.part("val")
    te = data.part("test")
    logit = InputsLogit().fit(tr.data)
    linear = LinearMove().fit(tr.data)
    majority = int(np.bincount(tr.data.y, minlength=len(CLASSES)).argmax())
    kw = {"logit": logit, "linear": linear, "majority": majority}
    val_ev = evaluate(fr.model, va, per_source=True, **kw)
    test_ev = evaluate(fr.model, te, per_source=True, **kw)
    groups = {}
    real = np.array([is_real(n) for n in te.sources], dtype=bool)
    for gname, mask in (("real", real), ("sim", ~real)):
        if mask.any() and not mask.all():
            groups[gname] = evaluate(fr.model, te.where(mask), **kw)
    mean, std = input_stats(tr.data.x)
    by_source = {}
    for s in data.sources:
        if len(s.train):
            m, sd = input_stats(s.train.data.x)
            by_source[s.name] = {"mean": m.tolist(), "std": sd.tolist()}
    vm = val_ev["move"]["predictors"]["model"]
    vo = _outputs(fr.model, va.data.x)[:, len(CLASSES)]
    called = vo != 0
    val_called = move_scores(vo[called], va.data.move_bps[called])["directional_accuracy"] if called.any() else None
    return {
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "window": data.window,
        "cadence_ms": data.cadence_ms,
        "horizon_steps": data.horizon_steps,
        "horizon_s": data.horizon_steps * data.cadence_ms / 1000.0,
        "band_bps": data.band_bps,
        "target": {"kind": "move_bps", "clip_bps": MOVE_CLIP_BPS,
                   "move_scale_bps": float(fr.model.move_scale.item())},
        "architecture": fr.architecture,
        "arch_config": {"hidden": getattr(fr.model.net, "hidden", None)},
        "params": fr.params,
        "seed": seed,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "split": {"fractions": list(data.fractions), "embargo_steps": data.embargo_steps, "embargo_ns": data.embargo_ns},
        "ranges": {s.name: s.ranges() for s in data.sources},
        # the drift monitor's references: the expected move's directional accuracy on mid changes (validation)
        "val_directional_accuracy": vm["directional_accuracy"],
        "val_directional_accuracy_when_called": val_called,
        "val_ic": vm["ic"],
        "val_macro_f1": val_ev["macro_f1"],
        "test_directional_accuracy": test_ev["move"]["predictors"]["model"]["directional_accuracy"],
        "test_ic": test_ev["move"]["predictors"]["model"]["ic"],
        "test_macro_f1": test_ev["macro_f1"],
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "feature_stats_by_source": by_source,
        "training": {"best_epoch": fr.best_epoch, "epochs_run": fr.epochs, "seconds": round(fr.seconds, 1),
                     "weighting": fr.weighting, "weight_by_source": _weights_by_source(tr, fr.weighting),
                     "n_train": len(tr), "n_val": len(va),
                     "n_test": len(te), "build_dataset_s": round(data.seconds_to_build, 1)},
        "metrics": {"candidates": candidates, "val": _strip(val_ev), "test": _strip(test_ev), "test_groups": groups},
        "verdict": verdict(test_ev, groups),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _f(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _ci(ci: list[float] | None, fmt: str, scale: float = 1.0) -> str:
    return "" if not ci else f" [{format(ci[0] * scale, fmt)}, {format(ci[1] * scale, fmt)}]"


_LOG_HEADER = "## Promotion log"
_MOVE_ROWS = (("model", "**model**"), ("imbalance_sign", "sign of imbalance"), ("linear_regression", "linear regression"),
              ("logistic", "logistic regression"), ("online_alpha", "online alpha (prequential)"),
              ("persistence", "persistence"))


def _move_table(blocks: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Rows: data set x predictor; directional accuracy, IC, bps on the sign, each with its 95 % interval."""
    L = ["| data (test slice) | predictor | directional acc. on mid changes | IC | bps per window on the sign |",
         "|---|---|---|---|---|"]
    for name, ev in blocks:
        mv = ev.get("move")
        if not mv:
            continue
        pr = mv["predictors"]
        first = True
        for key, label in _MOVE_ROWS:
            p = pr.get(key)
            if p is None:
                continue
            head = f"{name} ({p['n']}; {p['n_moves']} changes)" if first else ""
            first = False
            L.append(f"| {head} | {label} | {_pct(p['directional_accuracy'])}{_ci(p['directional_accuracy_ci95'], '.1f', 100)} | "
                     f"{_f(p['ic'])}{_ci(p['ic_ci95'], '+.3f')} | {_f(p['bps_per_window'])}"
                     f"{_ci(p['bps_per_window_ci95'], '+.3f')} |")
    return L


def _diff_table(blocks: list[tuple[str, dict[str, Any]]]) -> list[str]:
    L = ["| data (test slice) | model minus | directional acc., points | IC | bps per window | beats? |",
         "|---|---|---|---|---|---|"]
    for name, ev in blocks:
        mv = ev.get("move")
        if not mv:
            continue
        first = True
        for key, label in _MOVE_ROWS[1:]:
            d = mv["differences"].get(key)
            if d is None:
                continue
            da = d["directional_accuracy"]
            L.append(f"| {name if first else ''} | {label} | {_f(None if da is None else 100 * da, 1)}"
                     f"{_ci(d['directional_accuracy_ci95'], '+.1f', 100)} | {_f(d['ic'])}{_ci(d['ic_ci95'], '+.3f')} | "
                     f"{_f(d['bps_per_window'])}{_ci(d['bps_per_window_ci95'], '+.3f')} | "
                     f"{'**yes**' if d['beats'] else 'no'} |")
            first = False
    return L


def render_card(meta: dict[str, Any], log_text: str = "", file_name: str = "flashmm.pt2",
                bench: dict[str, Any] | None = None) -> str:
    m = meta["metrics"]
    val, test = m["val"], m["test"]
    groups = m.get("test_groups", {})
    vd = meta.get("verdict", {})
    L: list[str] = []
    a = L.append
    a("# FlashMM prediction model: model card")
    a("")
    a(f"File: `{file_name}` ({meta.get('file_bytes', '?')} bytes; a `torch.export` program with the input "
      "normalisation, the softmax and the move's scale inside, and this card's numbers in `flashmm_meta.json` inside "
      f"the file). Architecture **{meta['architecture']}**, {meta['params']} parameters, format version "
      f"{meta['format_version']}, torch {meta['torch_version']}, created {meta['created_utc']}.")
    a("")
    a("Produced by:")
    a("```")
    a(meta.get("command") or "(command not recorded)")
    a("```")
    a("")
    a("## What it predicts")
    a(f"The mid's **expected move over the next {meta['horizon_s']:g} s, in bps** ({meta['horizon_steps']} steps of a "
      f"{meta['cadence_ms']:g} ms grid of venue time): the same target as the engine's online alpha "
      "(`[strategy].alpha_horizon_s`), and what the strategy uses: with `[strategy].alpha = \"model\"` the fair value "
      "is mid + this expected move (bounded by `alpha_cap_bps`). Beside it, probabilities of the mid being lower / "
      f"unchanged / higher {meta['horizon_s']:g} s later (band {meta['band_bps']:g} bps), shown in the console and "
      f"learnt as an auxiliary task. Input: the last {meta['window']} grid samples "
      f"({meta['window'] * meta['cadence_ms'] / 1000:g} s) of the engine's own features.")
    a("")
    a("## Inputs")
    a("`model.inputs.MODEL_INPUTS`, computed by the engine's `FeatureEngine` on its own L2 book and sampled on the grid "
      "by `GridSampler` (one code path for training and serving; recordings are replayed with their bookTicker "
      "frames as the engine replays them). All are instrument-independent (bps, ratios, imbalances, a log ratio):")
    a("")
    a("| input | train mean | train std |")
    a("|---|---|---|")
    for name, mu, sd in zip(MODEL_INPUTS, meta["feature_mean"], meta["feature_std"]):
        a(f"| {name} | {mu:.4g} | {sd:.4g} |")
    a("")
    a("These means/stds (pooled training data; per source in `feature_stats_by_source`) are the drift monitor's "
      "reference and the normalisation inside the model (inputs are standardised and clipped to +-8).")
    a("")
    a("## Data and time ranges")
    fr = meta["split"]["fractions"]
    a(f"Each source is split by time {fr[0]:.0%} / {fr[1]:.0%} / rest into train / validation / test, with an embargo "
      f"of {meta['split']['embargo_steps']} steps ({meta['split']['embargo_ns'] / 1e9:g} s = window + horizon) after "
      "each boundary, so no label or window crosses a boundary; the test slice is the later 30 % that the held-out "
      "backtests trade (`flashmm backtest --trade-from-fraction 0.7`). The parts are then pooled. Windows across a "
      "hole in the grid (stale or gapped book) are dropped. Simulator times are the simulated clock's. "
      "'Simulator, FlashMM trading': the engine (built-in configuration) traded on the simulated venue while its "
      "market events were recorded (`flashmm record --trade`), so the book holds our own orders as it does live.")
    a("")
    a("| source | kind | train (n, UTC) | validation | test | mid changed (train) | move std bps (train) |")
    a("|---|---|---|---|---|---|---|")
    for name, r in meta["ranges"].items():
        def rng(p: dict[str, Any]) -> str:
            return f"{p['n']}: {p['start'][:19]} to {p['end'][11:19]}" if p.get("n") else "0"
        t = r["train"]
        a(f"| {name} | {r.get('kind', '')} | {rng(t)} | {rng(r['val'])} | {rng(r['test'])} | "
          f"{_pct(t.get('moving_share'))} | {_f(t.get('move_std_bps'), 2)} |")
    a("")
    t = meta["training"]
    a("## Training")
    a(f"Loss: cross-entropy of the three classes + Huber (delta {HUBER_DELTA:g}) on the move clipped to "
      f"+-{meta['target']['clip_bps']:g} bps in units of its training standard deviation "
      f"({meta['target']['move_scale_bps']:.3f} bps); AdamW (lr 2e-3, weight decay 1e-2), batch 256, early stopping on "
      f"the validation IC (patience 6), seed {meta['seed']}, deterministic algorithms on CPU "
      f"({meta['torch_threads']} thread{'' if meta['torch_threads'] == 1 else 's'}). {t['n_train']} train / {t['n_val']} validation / {t['n_test']} test windows "
      f"(built in {t['build_dataset_s']} s). Chosen model: best epoch {t['best_epoch']} of {t['epochs_run']}, "
      f"{t['seconds']} s.")
    a("")
    a(f"Sample weights (`{t['weighting']}`): each source's total weight is the square root of its size, so the "
      "recorded Binance sets (minutes) are not drowned by Bitstamp's five hours and the simulator. Weight of one "
      "sample, per source: " + ", ".join(f"{k} {v:.2f}" for k, v in t["weight_by_source"].items()) + ".")
    a("")
    a("Candidates (chosen by validation IC of the expected move, ties by its directional accuracy):")
    a("")
    a("| architecture | params | val IC | val directional acc. | val bps on the sign | val macro-F1 | best epoch | train s |")
    a("|---|---|---|---|---|---|---|---|")
    for name, c in m["candidates"].items():
        star = " (chosen)" if name == meta["architecture"] else ""
        a(f"| {name}{star} | {c['params']} | {_f(c['ic'])} | {_pct(c['directional_accuracy'])} | "
          f"{_f(c['bps_per_window'])} | {_f(c['macro_f1'])} | {c['best_epoch']} | {c['seconds']} |")
    a("")
    a("## Held-out results (test slices)")
    a("Every predictor is scored on the same windows: the model's expected move; the sign of the level-1 depth "
      "imbalance; a linear (ridge) regression of the move and a logistic regression of the class on the same ten "
      "inputs, both fit on the pooled train slices; the engine's online alpha, replayed over the whole recording "
      "as the engine runs it (learning only from the past: its prequential predictions); last-move persistence. "
      "Directional accuracy: on the windows whose mid changed over the horizon, a zero prediction counts half. IC: "
      "correlation of the prediction with the realised move. bps per window: the realised move in the predicted "
      "direction, a unit position on the sign for one horizon, before costs. 95 % intervals: moving-block bootstrap "
      "(10 s blocks resampled within each data set, 1,000 replicates; none under 10 blocks); the differences are "
      "paired (same draws).")
    a("")
    blocks = []
    if "real" in groups:
        blocks.append(("recorded data sets pooled", groups["real"]))
    blocks += [(k, v) for k, v in test.get("sources", {}).items() if is_real(k)]
    if "sim" in groups:
        blocks.append(("simulator sets pooled", groups["sim"]))
    blocks += [(k, v) for k, v in test.get("sources", {}).items() if not is_real(k)]
    blocks.append(("everything pooled", test))
    L += _move_table(blocks)
    a("")
    a("The model minus each baseline (paired; 'beats' = the intervals of both the directional-accuracy and the IC "
      "differences lie above zero):")
    a("")
    L += _diff_table(blocks)
    a("")
    beats = vd.get("beats", {})
    if beats:
        ok = vd.get("beats_required")
        a(f"**Verdict on held-out data ({vd.get('scope')}): the model "
          f"{'beats' if ok else 'does not beat'} the sign of the imbalance, the linear regression and the logistic "
          f"regression by more than the interval** (sign of imbalance: {'yes' if beats.get('imbalance_sign') else 'no'}, "
          f"linear: {'yes' if beats.get('linear_regression') else 'no'}, logistic: "
          f"{'yes' if beats.get('logistic') else 'no'}, online alpha: {'yes' if beats.get('online_alpha') else 'no'}).")
        a("")
    a("## The class head")
    a(f"Validation macro-F1 {_f(val['macro_f1'])}, test macro-F1 {_f(test['macro_f1'])}, test accuracy "
      f"{_pct(test['accuracy'])} (majority class {_pct(test['baselines'].get('majority_class', {}).get('accuracy'))}), "
      f"expected calibration error {_f(test['ece'])} (10 bins of the max probability):")
    a("")
    a("| max probability | n | mean confidence | accuracy |")
    a("|---|---|---|---|")
    for b in test["reliability"]:
        if b["n"]:
            a(f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {_f(b['confidence'])} | {_f(b['accuracy'])} |")
    a("")
    a("Confusion on the test slices (rows true, columns predicted: down, unchanged, up): "
      + "; ".join(f"{c} {row}" for c, row in zip(CLASSES, test["confusion"])) + ".")
    a("")
    a("## Limits (read before trusting the numbers)")
    nmoves = {k: v["move"]["predictors"]["model"]["n_moves"] for k, v in test.get("sources", {}).items()
              if is_real(k) and v.get("move")}
    a("- Real data is scarce: the Binance recordings are ~11, ~6 and ~11 minutes, so their test slices hold "
      + ", ".join(f"{k} {n}" for k, n in nmoves.items()) + " windows with a mid change, in few 10 s blocks: the "
      "intervals are wide. Bitstamp 2015 updates its book every ~2.4 s: its mid rarely changes within a second.")
    a("- The online alpha is fitted to each market as it trades (and keeps adapting); the model is one network "
      "for every venue, trained on the first 60 % of each recording: it must tell venues apart from its inputs.")
    a("- Overlapping windows (a 250 ms grid, 1 s horizon) are not independent; the block bootstrap accounts for "
      "that within 10 s, not for slower regimes.")
    a("")
    a("## Serving")
    a("`flashmm.model.artifact.load(path)` checks the file (format version, inputs, classes, a probe window) and "
      "raises `ModelError` naming the file otherwise; the engine then prices without it. `predict_proba(window)` "
      "takes the (window, 10) raw inputs and returns p_down, p_flat, p_up and the expected move in bps. The live "
      "hit rate scores the sign of the expected move against every mid change after the horizon; the drift "
      "monitor compares it with `val_directional_accuracy_when_called` "
      f"({_pct(meta.get('val_directional_accuracy_when_called'))}).")
    a("")
    if bench:
        ss = bench["single_sample"]
        th = bench.get("torch_threads")
        load = bench.get("loadavg_1m_at_start")
        a(f"Measured by `flashmm bench inference` ({bench.get('cpu_count')} CPU cores shared with other work"
          + (f", load average {load:g} at the start" if load is not None else "") + f", torch {bench.get('torch')}, "
          f"{th} thread{'' if th == 1 else 's'} as the engine serves), single-sample latency in microseconds; on a "
          "busy machine the p99 is the scheduler's (compare the plain Python work of the same length), not the "
          "model's:")
        a("")
        a("| path | p50 | p90 | p99 |")
        a("|---|---|---|---|")
        rows = [("eager (Python module)", ss["eager"]), ("exported program", ss["exported"]),
                ("predict_proba (the engine's call)", ss["predict_proba"])]
        if "cpu_reference" in ss:
            rows.append(("plain Python work of the same length (the machine's own tail)", ss["cpu_reference"]))
        for label, r in rows:
            a(f"| {label} | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} |")
        a("")
        a(f"RSS of a fresh process with the model loaded: {bench['rss_mb_model_loaded']} MB (torch itself "
          f"included; {bench['rss_mb_before_load']} MB before loading). Batch scoring: "
          f"{bench['batch_windows_per_s']} windows/s.")
        a("")
    a(_LOG_HEADER)
    a("")
    a(log_text.strip() if log_text.strip() else "(no promotions yet)")
    a("")
    return "\n".join(L)


def _existing_log(card_path: Path) -> str:
    if not card_path.exists():
        return ""
    text = card_path.read_text()
    i = text.find("\n" + _LOG_HEADER + "\n")
    if i < 0:
        return ""
    log = text[i + len(_LOG_HEADER) + 2 :]
    j = log.find("<!-- does-it-help:begin -->")
    log = (log if j < 0 else log[:j]).strip()
    return "" if log == "(no promotions yet)" else log


def write_card(card_path: Path, meta: dict[str, Any], keep_log: bool = True, file_name: str = "flashmm.pt2",
               bench: dict[str, Any] | None = None) -> None:
    """Write the card for a newly trained model. The promotion log is kept; the backtest section
    (scripts/model_does_it_help.py) is not: it described the previous model."""
    card_path.parent.mkdir(parents=True, exist_ok=True)
    log = _existing_log(card_path) if keep_log else ""
    card_path.write_text(render_card(meta, log, file_name, bench))


def append_log(card_path: Path, entry: str) -> None:
    if card_path.exists():
        text = card_path.read_text()
        if ("\n" + _LOG_HEADER + "\n") in text:
            text = text.replace("(no promotions yet)\n", "")
            j = text.find("<!-- does-it-help:begin -->")
            if j >= 0:  # the log goes before the backtest section
                card_path.write_text(text[:j].rstrip() + "\n\n" + entry.strip() + "\n\n" + text[j:])
            else:
                card_path.write_text(text.rstrip() + "\n\n" + entry.strip() + "\n")
            return
        card_path.write_text(text.rstrip() + "\n\n" + _LOG_HEADER + "\n\n" + entry.strip() + "\n")
    else:
        card_path.parent.mkdir(parents=True, exist_ok=True)
        card_path.write_text("# FlashMM prediction model: model card\n\n" + _LOG_HEADER + "\n\n" + entry.strip() + "\n")


# ---- promotion ----------------------------------------------------------------------------------------


def _test_sets(meta: dict[str, Any], data: TrainData) -> dict[str, EvalSet]:
    """Per source, the test windows a model with this metadata sees (its own window length)."""
    w = int(meta["window"])
    out = {}
    for s in data.sources:
        if w == data.window:
            out[s.name] = s.test
        else:
            e = eval_set(s.samples, windows(s.samples, w, data.horizon_steps, data.band_bps), data.horizon_steps,
                         data.band_bps, s.name)
            out[s.name] = e.where(np.isin(e.data.times_ns, s.test.data.times_ns))
    return out


def compare_on_test(candidate: artifact.LoadedModel, current: artifact.LoadedModel, data: TrainData) -> dict[str, Any]:
    """Both models on the same held-back test windows (same sources and end times), scored on the move: the sign
    of each model's expected move (p_up - p_down for a direction model) against every mid change, and the IC. Not
    comparable (None) if the grid or horizon differ (their targets would not be the same), or if the current
    model's grid is not this data's."""
    for k in ("cadence_ms", "horizon_steps"):
        if float(current.meta.get(k, -1)) != float(candidate.meta.get(k, -2)):
            return {"comparable": False, "reason": f"{k} differs: current {current.meta.get(k)} vs candidate "
                                                   f"{candidate.meta.get(k)}"}
    if float(current.meta["cadence_ms"]) != float(data.cadence_ms):
        return {"comparable": False, "reason": f"the models' grid ({current.meta['cadence_ms']} ms) is not the "
                                               f"data's ({data.cadence_ms} ms)"}
    a_sets, b_sets = _test_sets(candidate.meta, data), _test_sets(current.meta, data)
    a_parts, b_parts = [], []
    for name in a_sets:
        common = np.intersect1d(a_sets[name].data.times_ns, b_sets[name].data.times_ns)
        a_parts.append(a_sets[name].where(np.isin(a_sets[name].data.times_ns, common)))
        b_parts.append(b_sets[name].where(np.isin(b_sets[name].data.times_ns, common)))
    ea = evaluate(candidate, concat_sets(a_parts), baselines=False, reps=200)
    eb = evaluate(current, concat_sets(b_parts), baselines=False, reps=200)

    def brief(e: dict[str, Any]) -> dict[str, Any]:
        mv = e["move"]["predictors"]["model"]
        return {"directional_accuracy": mv["directional_accuracy"], "ic": mv["ic"],
                "bps_per_window": mv["bps_per_window"], "macro_f1": e["macro_f1"], "n": e["n"],
                "n_moves": mv["n_moves"]}

    return {"comparable": True, "candidate": brief(ea), "current": brief(eb)}


def promote_candidate(candidate_path: Path, current_path: Path, data: TrainData) -> dict[str, Any]:
    """Replace `current_path` with the candidate only if it is better on the same test slice (see module doc)."""
    cand = artifact.load(candidate_path)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    res: dict[str, Any] = {"time_utc": now,
                           "candidate_file": str(candidate_path), "current_file": str(current_path),
                           "candidate_sha256": cand.sha256, "candidate_architecture": cand.meta.get("architecture")}
    if not current_path.exists():
        res.update(promoted=True, reason="no current model")
    else:
        try:
            cur = artifact.load(current_path)
        except artifact.ModelError as exc:
            res.update(promoted=True, reason=f"current model unusable: {exc}")
        else:
            res["current_sha256"] = cur.sha256
            res["current_architecture"] = cur.meta.get("architecture")
            cmp = compare_on_test(cand, cur, data)
            res.update(cmp)
            if not cmp["comparable"]:
                res.update(promoted=False, reason="not comparable: " + cmp["reason"])
            else:
                ca, cu = cmp["candidate"], cmp["current"]
                da, db = ca["directional_accuracy"] or 0.0, cu["directional_accuracy"] or 0.0
                ia, ib = ca["ic"] if ca["ic"] is not None else -1.0, cu["ic"] if cu["ic"] is not None else -1.0
                if da > db:
                    res.update(promoted=True, reason="higher test directional accuracy on mid changes")
                elif da == db and ia > ib:
                    res.update(promoted=True, reason="equal directional accuracy, higher test IC")
                else:
                    res.update(promoted=False, reason="not better on test directional accuracy (ties: IC)")
    if res["promoted"] and candidate_path.resolve() != current_path.resolve():
        tmp = current_path.with_name(current_path.name + ".promote.tmp")
        shutil.copyfile(candidate_path, tmp)
        os.replace(tmp, current_path)
    return res


def _log_entry(p: dict[str, Any]) -> str:
    head = f"- {p['time_utc']}: candidate {p.get('candidate_architecture')} ({p['candidate_sha256'][:12]}) vs current"
    if p.get("current_sha256"):
        head += f" {p.get('current_architecture')} ({p['current_sha256'][:12]})"
    else:
        head += " (none)"
    lines = [head + f": **{'promoted' if p['promoted'] else 'kept current'}** ({p['reason']})."]
    if p.get("comparable"):
        c, u = p["candidate"], p["current"]
        lines.append(f"  Same test slice, {c['n']} windows ({c['n_moves']} mid changes): directional accuracy "
                     f"candidate {_pct(c['directional_accuracy'])} vs current {_pct(u['directional_accuracy'])}; "
                     f"IC {_f(c['ic'])} vs {_f(u['ic'])}.")
    return "\n".join(lines)


def _bench_subprocess(model_path: Path, log: Any) -> dict[str, Any] | None:
    """`bench_inference` in a fresh process (so its RSS is a serving process's, not this one's)."""
    import json
    import subprocess
    import tempfile

    log("measuring inference latency (eager, exported) in a fresh process ...")
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "bench.json"
        try:
            subprocess.run([sys.executable, "-m", "flashmm.ops.bench_inference", "--model", str(model_path),
                            "--json", str(out), "--n", "3000", "--no-aoti"], check=True, capture_output=True,
                           timeout=600)
            return json.loads(out.read_text())
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            log(f"inference benchmark failed: {exc}")
            return None


# ---- the whole run ------------------------------------------------------------------------------------


def train(data_paths: list[str], out: str | os.PathLike, *, sim_seconds: float = SIM_SECONDS,
          sim_seeds: list[int] | tuple[int, ...] = SIM_SEEDS, trading_seconds: float = TRADING_SECONDS,
          trading_seeds: list[int] | tuple[int, ...] = TRADING_SEEDS,
          sim_presets: list[str] | tuple[str, ...] = SIM_PRESETS, cache_dir: str | os.PathLike | None = None,
          promote_if_better: bool = False, current: str | os.PathLike | None = None,
          architectures: tuple[str, ...] | list[str] = ARCHITECTURES, seed: int = 0, max_epochs: int = 40,
          patience: int = 6, hidden: int | None = None, data: TrainData | None = None, command: str | None = None,
          card_path: str | os.PathLike | None = None, bench: bool = True, log: Any = print,
          cfg: Config | None = None) -> TrainResult:
    """Build the data (unless `data` is given), train every architecture, export the best to `out` and
    write the model card (`card_path`, default README.md beside the current model).

    Without `promote_if_better`: the model goes to `out` and the card describes it.
    With it: the candidate is written to `out` (or beside `current` when `out` is `current`), scored against
    `current` (default `flashmm.pt2` beside `out`) on the same test slice, copied over it only if better;
    the card is rewritten for the candidate if promoted, and the comparison is appended to its promotion
    log either way."""
    out = Path(out)
    log = log or (lambda *_: None)
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks on a shared machine: one thread is as fast and kinder than a pool
    if data is None:
        log(f"sampling {len(data_paths)} data sets and, on the {' and '.join(sim_presets)} simulator presets, "
            f"{len(sim_seeds)} x {sim_seconds:g} s of simulated market and {len(trading_seeds)} x "
            f"{trading_seconds:g} s with FlashMM trading each ...")
        data = build_dataset(data_paths, sim_seconds, sim_seeds, cache_dir, cfg=cfg, trading_seconds=trading_seconds,
                             trading_seeds=trading_seeds, sim_presets=sim_presets, log=log)
    log(f"data: {len(data.part('train'))} train / {len(data.part('val'))} val / {len(data.part('test'))} test windows "
        f"from {len(data.sources)} sources ({data.seconds_to_build:.1f} s)")
    fits: dict[str, FitResult] = {}
    for arch in architectures:
        fits[arch] = fit(arch, data, seed=seed, max_epochs=max_epochs, patience=patience, hidden=hidden, log=log)
        v = fits[arch].val["move"]
        log(f"{arch}: {fits[arch].params} params, val IC {_f(v['ic'])} directional {_pct(v['directional_accuracy'])} "
            f"(epoch {fits[arch].best_epoch}/{fits[arch].epochs}, {fits[arch].seconds:.1f} s)")
    chosen = max(fits.values(), key=lambda f: _val_key(f.val["move"]))
    candidates = {a: {"params": f.params, "ic": f.val["move"]["ic"],
                      "directional_accuracy": f.val["move"]["directional_accuracy"],
                      "bps_per_window": f.val["move"]["bps_per_window"], "macro_f1": f.val["macro_f1"],
                      "accuracy": f.val["accuracy"], "ece": f.val["ece"], "best_epoch": f.best_epoch,
                      "epochs_run": f.epochs, "seconds": round(f.seconds, 1), "history": f.history}
                  for a, f in fits.items()}
    if command is None:
        command = ("python -m flashmm.research.train --data " + " ".join(map(str, data_paths)) + f" --out {out}"
                   f" --sim-seconds {sim_seconds:g} --sim-seeds {' '.join(map(str, sim_seeds))}"
                   f" --trading-seconds {trading_seconds:g} --trading-seeds {' '.join(map(str, trading_seeds))}"
                   f" --sim-presets {' '.join(sim_presets)}"
                   + (" --promote-if-better" if promote_if_better else ""))
    meta = make_meta(chosen, data, candidates, seed, command)
    meta["training"]["total_s"] = round(time.perf_counter() - t_start, 1)
    torch.set_num_threads(threads)
    example = torch.from_numpy(np.ascontiguousarray(data.part("val").data.x[:2], dtype=np.float32))
    cur_path = Path(current) if current is not None else out.parent / "flashmm.pt2"
    same = promote_if_better and out.resolve() == cur_path.resolve()
    target = out.with_name(out.stem + ".candidate" + out.suffix) if same else out
    artifact.save(chosen.model, example, meta, target)
    meta = artifact.load(target).meta  # with file_bytes
    log(f"chose {chosen.architecture}: wrote {target} ({meta['file_bytes']} bytes); test directional "
        f"{_pct(meta['test_directional_accuracy'])}, IC {_f(meta['test_ic'])}")
    bench_res = _bench_subprocess(target, log) if bench else None
    promotion = None
    if promote_if_better:
        cpath = Path(card_path) if card_path else cur_path.parent / "README.md"
        promotion = promote_candidate(target, cur_path, data)
        if promotion["promoted"]:
            write_card(cpath, meta, file_name=cur_path.name, bench=bench_res)
        append_log(cpath, _log_entry(promotion))
        if same:
            target.unlink(missing_ok=True)
            target = cur_path
        log(f"promotion: {'promoted' if promotion['promoted'] else 'kept current'} ({promotion['reason']})")
    else:
        cpath = Path(card_path) if card_path else out.parent / "README.md"
        write_card(cpath, meta, file_name=out.name, bench=bench_res)
    return TrainResult(chosen.model, chosen.architecture, meta, candidates, target, cpath, promotion, bench_res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashmm.research.train", description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="*", default=[], help="data set paths (one data set each), sim:SECONDS:SEED or "
                                                          "sim-trading:SECONDS:SEED")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sim-seconds", type=float, default=SIM_SECONDS)
    ap.add_argument("--sim-seeds", type=int, nargs="*", default=list(SIM_SEEDS))
    ap.add_argument("--trading-seconds", type=float, default=TRADING_SECONDS)
    ap.add_argument("--trading-seeds", type=int, nargs="*", default=list(TRADING_SEEDS))
    ap.add_argument("--sim-presets", nargs="*", default=list(SIM_PRESETS), choices=("thin", "deep"))
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--promote-if-better", action="store_true")
    ap.add_argument("--current", default=None)
    ap.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--no-bench", action="store_true", help="skip the latency measurement for the card")
    a = ap.parse_args(argv)
    cmd = "python -m flashmm.research.train " + " ".join(sys.argv[1:] if argv is None else argv)
    train(a.data, a.out, sim_seconds=a.sim_seconds, sim_seeds=a.sim_seeds, trading_seconds=a.trading_seconds,
          trading_seeds=a.trading_seeds, sim_presets=a.sim_presets, cache_dir=a.cache_dir, promote_if_better=a.promote_if_better,
          current=a.current, architectures=tuple(a.architectures), seed=a.seed, max_epochs=a.max_epochs,
          command=cmd, bench=not a.no_bench)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
