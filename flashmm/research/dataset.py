"""Training data from the engine's own feature code, so training and live inference see the same numbers.

One path for both: market events -> L2Book -> FeatureEngine -> `model_inputs` (instrument-independent:
bps, ratios, imbalances) -> `GridSampler` (the last state at or before each point of a fixed venue-time
grid). Live, the predictor runs the same sampler on the engine's own book and features.

Targets: the mid's move over the horizon H in bps (`Dataset.move_bps`: what the strategy's fair value shifts
by, the online alpha's target), and its class: down if < -band, up if > +band, else flat.
Splits are by time, in order (train, validation, test), with an embargo of H + window between them so
no label looks across a boundary.

Beside the model's inputs, `sample_stream` runs the engine's own online alpha (core.alpha.OnlineAlpha) over
the same stream and records, at each grid point, the alpha the engine would have priced with: its prequential
predictions, learned only from the past, for the evaluation to compare the model with on the same windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flashmm.config import SimConfig, StrategyConfig
from flashmm.core.alpha import OnlineAlpha, alpha_inputs
from flashmm.core.book import L2Book
from flashmm.core.domain import BookDiff, BookSnapshot, BookTop, Instrument, Side, Trade
from flashmm.core.features import FeatureEngine
from flashmm.data.events import KIND_BBO, KIND_TRADE, EventSet
from flashmm.data.readers import book_event, iter_messages
from flashmm.model.inputs import N_INPUTS, GridSampler


@dataclass
class Samples:
    """Feature rows on a regular grid, with the mid at each point."""

    source: str
    times_ns: np.ndarray  # int64
    x: np.ndarray  # float32 (n, N_INPUTS)
    mid_ticks: np.ndarray  # float64
    cadence_ms: float
    meta: dict = field(default_factory=dict)
    online_alpha_bps: np.ndarray | None = None  # float64: the engine's online alpha at each grid point


def _market_events(events: np.ndarray, use_top: bool = True) -> Iterator[BookSnapshot | BookDiff | BookTop | Trade]:
    """The recording's market events as the replay delivers them to the engine (bookTicker frames as BookTop,
    as [replay].use_book_ticker does), so training sees the book the engine trades on."""
    for kind, ts, seq, seq2, rows in iter_messages(events):
        if kind == KIND_BBO:
            if use_top:
                bid = next(((p, q) for s, p, q in rows if s > 0), None)
                ask = next(((p, q) for s, p, q in rows if s < 0), None)
                if bid is not None and ask is not None:
                    yield BookTop(seq, bid[0], bid[1], ask[0], ask[1], ts)
            continue
        if kind == KIND_TRADE:
            for s, p, q in rows:
                yield Trade(float(p), q, Side(s) if s else None, ts)
        else:
            yield book_event(kind, ts, seq, seq2, rows)


def online_alpha_for(sc: StrategyConfig | None = None) -> OnlineAlpha:
    """The engine's online alpha as [strategy] configures it (engine.Engine builds it the same way)."""
    sc = sc or StrategyConfig()
    return OnlineAlpha(sc.alpha_horizon_s, halflife_s=sc.alpha_halflife_s, cap_bps=sc.alpha_cap_bps)


def sample_stream(stream: Iterable[BookSnapshot | BookDiff | BookTop | Trade], cadence_ms: float, source: str,
                  vol_halflife_s: float = 30.0, alpha: OnlineAlpha | None = None) -> Samples:
    """Replay market events through the engine's book and features; sample on the grid. With `alpha` (default:
    the engine's, `online_alpha_for()`), the online alpha learns along the way as in the engine (one update per
    venue timestamp, after all its events, like the engine's one per batch) and its prediction at each grid
    point is kept in `online_alpha_bps`."""
    book = L2Book()
    feats = FeatureEngine(vol_halflife_s=vol_halflife_s)
    sampler = GridSampler(cadence_ms)
    alpha = alpha if alpha is not None else online_alpha_for()
    alphas: list[float] = []
    cur_alpha = 0.0
    pending_ts = -1  # a timestamp whose events changed the market and the alpha has not observed yet
    for ev in stream:
        ts = ev.ts_ns
        if pending_ts >= 0 and ts != pending_ts:
            cur_alpha = _observe(alpha, feats, book, pending_ts)
            pending_ts = -1
        n = sampler.advance(ts)
        if n:
            alphas.extend([cur_alpha] * n)
        if isinstance(ev, Trade):
            feats.on_trade(ev)
        else:
            if isinstance(ev, BookSnapshot):
                ok = book.apply_snapshot(ev)
            elif isinstance(ev, BookTop):
                ok = book.apply_top(ev)
            else:
                ok = book.apply_diff(ev)
            if ok:
                feats.on_book(book, ts)
        sampler.update(feats, book)
        pending_ts = ts
    x = np.array(sampler.rows, dtype=np.float32).reshape(-1, N_INPUTS)
    return Samples(source, np.array(sampler.times, dtype=np.int64), x, np.array(sampler.mids, dtype=np.float64),
                   cadence_ms, {"book_rejects": dict(book.rejects), "online_alpha": alpha.scores()},
                   np.array(alphas, dtype=np.float64))


def _observe(alpha: OnlineAlpha, feats: FeatureEngine, book: L2Book, ts: int) -> float:
    """The engine's per-batch step: the alpha sees the market state (when usable) and predicts from it."""
    if feats.ready and book.two_sided() and not book.stale:
        mid = book.mid_ticks()
        x = alpha_inputs(feats, mid)
        alpha.observe(ts, x, mid)
        return alpha.predict(x)
    return 0.0


def samples_from_events(es: EventSet, cadence_ms: float, source: str | None = None) -> Samples:
    """A recording sampled as the engine sees it. The source is named after the reader (binance-spot, bitstamp,
    ...); FlashMM's own recordings after what they hold: `sim-trading-PRESET-seedN` when FlashMM traded in them
    (`flashmm record --trade`), `flashmm-seedN` for the market alone."""
    if source is None:
        source = es.source
        if es.source == "flashmm":
            kind = "sim-trading" if es.meta.get("engine_trading") else "flashmm"
            if es.meta.get("preset"):
                kind += f"-{es.meta['preset']}"
            source = f"{kind}-seed{es.meta['seed']}" if "seed" in es.meta else kind
    s = sample_stream(_market_events(es.events), cadence_ms, source)
    s.meta.update({"files": es.files, "symbol": es.instrument.symbol})
    if es.meta.get("engine_trading"):
        s.meta["engine"] = es.meta.get("engine")
    return s


def sim_events(seconds: float, seed: int, cfg: SimConfig | None = None,
               instrument: Instrument | None = None) -> Iterator[BookSnapshot | BookDiff | Trade]:
    """The simulated market's public events, no engine trading in it."""
    from flashmm.config import default_instrument
    from flashmm.venues.sim import SimMarket

    m = SimMarket(cfg or SimConfig(), instrument or default_instrument(), seed)
    end = m.clock.now_ns() + int(seconds * 1e9)
    while m.clock.now_ns() < end:
        for ev in m.step():
            if isinstance(ev, (BookSnapshot, BookDiff, Trade)):
                yield ev


def samples_from_sim(seconds: float, seed: int, cadence_ms: float, preset: str | None = None) -> Samples:
    """The simulated market alone ([sim] defaults of `preset`, default the default preset), named
    `sim-PRESET-seedN`."""
    cfg = SimConfig(preset=preset) if preset else SimConfig()
    s = sample_stream(sim_events(seconds, seed, cfg), cadence_ms, f"sim-{cfg.preset}-seed{seed}")
    s.meta.update({"seconds": seconds, "seed": seed, "symbol": "SEI/USDC", "preset": cfg.preset})
    return s


def samples_from_sim_trading(seconds: float, seed: int, cadence_ms: float, cfg: Any = None,
                             preset: str | None = None) -> Samples:
    """The simulated market with FlashMM's engine trading in it (configuration `cfg`, default the built-in
    one; `preset` replaces its [sim] by that preset's market), recorded in memory as `flashmm record --trade`
    records it, then sampled: the book with our orders. Named `sim-trading-PRESET-seedN`."""
    from flashmm.config import Config
    from flashmm.data.record import record_trading

    cfg = cfg if cfg is not None else Config()
    if preset:
        cfg = cfg.model_copy(update={"sim": SimConfig(preset=preset)})
    es = record_trading(cfg, seconds, seed)
    s = samples_from_events(es, cadence_ms, f"sim-trading-{cfg.sim.preset}-seed{seed}")
    s.meta.update({"seconds": seconds, "seed": seed, "preset": cfg.sim.preset})
    return s


# ---- labels, windows, splits ---------------------------------------------------------------------------


def labels(mid_ticks: np.ndarray, horizon_steps: int, band_bps: float) -> np.ndarray:
    """Class per sample (0 down, 1 flat, 2 up) of the mid move over `horizon_steps` grid steps; -1 where
    the future is not in the data (the last `horizon_steps` samples) or a sample is missing."""
    n = len(mid_ticks)
    y = np.full(n, -1, dtype=np.int64)
    if n <= horizon_steps:
        return y
    now = mid_ticks[: n - horizon_steps]
    later = mid_ticks[horizon_steps:]
    move_bps = (later - now) / now * 1e4
    y[: n - horizon_steps] = np.where(move_bps > band_bps, 2, np.where(move_bps < -band_bps, 0, 1))
    return y


def contiguous(times_ns: np.ndarray, cadence_ms: float) -> np.ndarray:
    """True where a sample follows the previous one by exactly one grid step (holes break windows)."""
    step = int(cadence_ms * 1_000_000)
    ok = np.ones(len(times_ns), dtype=bool)
    if len(times_ns):
        ok[0] = False
        ok[1:] = np.diff(times_ns) == step
    return ok


@dataclass
class Dataset:
    x: np.ndarray  # (n, window, N_INPUTS) float32
    y: np.ndarray  # (n,) int64
    times_ns: np.ndarray  # time of the last row of each window
    move_bps: np.ndarray  # realised move (for directional accuracy and "does it help")
    source: str


def windows(s: Samples, window: int, horizon_steps: int, band_bps: float) -> Dataset:
    """Windows of `window` consecutive grid samples ending at t, labelled by the move from t to t+H.
    Windows that span a hole in the grid, or whose label would cross one, are dropped."""
    n = len(s.times_ns)
    y_all = labels(s.mid_ticks, horizon_steps, band_bps)
    cont = contiguous(s.times_ns, s.cadence_ms)
    # a run of contiguous samples: breaks where cont is False
    run_start = np.zeros(n, dtype=np.int64)
    start = 0
    for i in range(n):
        if not cont[i]:
            start = i
        run_start[i] = start
    ends = []
    for t in range(window - 1, n - horizon_steps):
        if y_all[t] < 0 or run_start[t] > t - window + 1 or run_start[t + horizon_steps] != run_start[t]:
            continue
        ends.append(t)
    ends_a = np.asarray(ends, dtype=np.int64)
    if len(ends_a) == 0:
        return Dataset(np.zeros((0, window, N_INPUTS), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros(0), s.source)
    idx = ends_a[:, None] + np.arange(-window + 1, 1)[None, :]
    mids = s.mid_ticks
    move = (mids[ends_a + horizon_steps] - mids[ends_a]) / mids[ends_a] * 1e4
    return Dataset(s.x[idx], y_all[ends_a], s.times_ns[ends_a], move, s.source)


def time_split(d: Dataset, fractions: tuple[float, float] = (0.7, 0.15), embargo_ns: int = 0
               ) -> tuple[Dataset, Dataset, Dataset]:
    """Train / validation / test in time order. `embargo_ns` of samples after each boundary are dropped so
    no training label overlaps validation inputs (set it to horizon + window)."""
    n = len(d.y)
    if n == 0:
        return d, d, d
    t = d.times_ns
    t0, t1 = t[0], t[-1]
    b1 = t0 + (t1 - t0) * fractions[0]
    b2 = t0 + (t1 - t0) * (fractions[0] + fractions[1])
    tr = t < b1
    va = (t >= b1 + embargo_ns) & (t < b2)
    te = t >= b2 + embargo_ns

    def pick(m: np.ndarray) -> Dataset:
        return Dataset(d.x[m], d.y[m], d.times_ns[m], d.move_bps[m], d.source)

    return pick(tr), pick(va), pick(te)


def concat(parts: list[Dataset]) -> Dataset:
    parts = [p for p in parts if len(p.y)]
    if not parts:
        raise ValueError("no samples")
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.times_ns for p in parts]), np.concatenate([p.move_bps for p in parts]),
                   "+".join(p.source for p in parts))
