"""Backtests: the same engine on recorded real markets, replayed as fast as possible.

Each `--data` argument is one data set (a file, the files of one stream, or a folder). The report
carries the metric names of DESIGN.md, per data set.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flashmm.config import Config
from flashmm.core.clock import NS_PER_S
from flashmm.core.engine import Engine
from flashmm.data.events import EventSet
from flashmm.data.loader import load_events
from flashmm.model.predictor import NoModelPredictor, load_predictor
from flashmm.telemetry.logging import AuditLog, configure_logging
from flashmm.venues.replay import ReplayVenue

MINUTES_PER_YEAR = 365 * 24 * 60


def sharpe_annualised(pnl_per_minute: np.ndarray, capital: float) -> float | None:
    """Sharpe ratio of per-minute returns (PnL change / capital), annualised by sqrt(minutes per year).
    None with fewer than 3 minutes or no variation."""
    if len(pnl_per_minute) < 4:
        return None
    r = np.diff(pnl_per_minute) / capital
    sd = float(np.std(r, ddof=1))
    if sd == 0.0:
        return None
    return float(np.mean(r) / sd * math.sqrt(MINUTES_PER_YEAR))


def max_drawdown(pnl: np.ndarray) -> float:
    """Largest fall of PnL from a running peak (>= 0, quote currency)."""
    if len(pnl) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.maximum(pnl, 0.0))
    return float(np.max(peak - pnl))


def markouts(engine: Engine, horizon_s: float = 2.0) -> dict[str, float | int | None]:
    """Per fill, the mid `horizon_s` later (the first per-second sample at or after it) against the fill:
    markout = side x (mid_later - fill price) / fill price, bps (> 0: the fill made money); adverse
    selection = -side x (mid_later - mid at fill) / mid at fill, bps (> 0: the market moved against us)."""
    ts = np.asarray(engine.sample_ts, dtype=np.int64)
    mids = np.asarray(engine.mid_history, dtype=np.float64)
    fills = engine.portfolio.fills
    if len(ts) == 0 or not fills:
        return {"markout_bps": None, "adverse_selection_bps": None, "fills_scored": 0, "horizon_s": horizon_s}
    f_ts = np.array([f.ts_ns for f in fills], dtype=np.int64) + int(horizon_s * NS_PER_S)
    idx = np.searchsorted(ts, f_ts)
    ok = idx < len(ts)
    side = np.array([f.side for f in fills], dtype=np.float64)[ok]
    px = np.array([f.price_ticks for f in fills], dtype=np.float64)[ok]
    mid0 = np.array([f.mid_ticks for f in fills], dtype=np.float64)[ok]
    later = mids[idx[ok]]
    w = np.array([f.lots for f in fills], dtype=np.float64)[ok]
    if not len(w):
        return {"markout_bps": None, "adverse_selection_bps": None, "fills_scored": 0, "horizon_s": horizon_s}
    markout = side * (later - px) / px * 1e4
    adverse = -side * (later - mid0) / mid0 * 1e4
    return {"markout_bps": round(float(np.average(markout, weights=w)), 4),
            "adverse_selection_bps": round(float(np.average(adverse, weights=w)), 4),
            "fills_scored": int(len(w)), "horizon_s": horizon_s,
            "method": "size-weighted over fills; mid from per-second samples at or after fill + horizon"}


def with_strategy(cfg: Config, strategy: str, quote_interval_ms: float | None = None) -> Config:
    """flashmm = the configured model-based quoting; symmetric = the baseline (fixed spread, no skew, no model)."""
    updates: dict[str, Any] = {}
    if strategy == "symmetric":
        updates["model"] = "symmetric"
    elif strategy != "flashmm":
        raise ValueError(f"unknown strategy {strategy!r} (flashmm or symmetric)")
    if quote_interval_ms is not None:
        updates["quote_interval_ms"] = quote_interval_ms
    if not updates:
        return cfg
    return cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update=updates)})


def run_one(cfg: Config, data: EventSet, progress: Any = None, trade_from_fraction: float = 0.0
            ) -> tuple[dict[str, Any], Engine]:
    """Replay one data set through the engine. Returns the report section and the engine. With
    `trade_from_fraction` > 0 the engine trades only from that point of the recording on (e.g. the
    held-out slice a model was not trained on); before it, it only follows the market."""
    venue = ReplayVenue(data, cfg.replay)
    predictor = load_predictor(cfg.model) if cfg.strategy.model != "symmetric" else NoModelPredictor(
        "symmetric baseline: no model")
    engine = Engine(cfg, venue, predictor=predictor, audit=AuditLog(None), history_len=None)
    task = progress.add_task(Path(data.files[0]).parent.name or data.files[0], total=venue.rows_total) if progress else None

    async def go() -> None:
        async def tick() -> None:
            while True:
                progress.update(task, completed=venue.rows_done)
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick()) if progress else None
        try:
            start = int(data.events["ts_ns"][0]) if len(data.events) else 0
            trade_from = start + int(trade_from_fraction * data.duration_s * NS_PER_S) if trade_from_fraction else None
            await engine.run(None, trade_from_ns=trade_from)
            await engine.shutdown(timeout_s=5.0)
        finally:
            if ticker:
                ticker.cancel()
                progress.update(task, completed=venue.rows_done)

    t0 = time.perf_counter()
    asyncio.run(go())
    wall = time.perf_counter() - t0
    section = report_section(cfg, data, engine, venue, wall)
    section["traded_from_fraction"] = trade_from_fraction
    return section, engine


def report_section(cfg: Config, data: EventSet, engine: Engine, venue: ReplayVenue, wall_s: float) -> dict[str, Any]:
    s = engine.summary()
    pnl = np.asarray(engine.pnl_history, dtype=np.float64)
    inv = np.asarray(engine.inventory_history, dtype=np.float64)
    per_minute = pnl[::60] if len(pnl) else pnl
    duration = data.duration_s
    counts = s["counters"]
    orders_filled = s["orders_filled"]
    return {
        "data": {"source": data.source, "files": data.files, "symbol": data.instrument.symbol,
                 "duration_s": round(duration, 3), "rows": venue.rows_total, "messages": venue.messages_total,
                 "reader_rejects": data.rejects, "cache": data.meta.get("cache")},
        "strategy": cfg.strategy.model,
        "spread_improvement_pct": s["spread_improvement_pct"],
        "market_spread_bps": s["market_spread_bps"],
        "our_spread_bps": s["our_spread_bps"],
        "quoting_time_s": s["quoting_time_s"],
        "pnl_usdc": s["pnl_usdc"],
        "pnl_breakdown": s["pnl_breakdown"],
        "sharpe": sharpe_annualised(per_minute, cfg.risk.capital_usdc),
        "sharpe_method": "per-minute PnL changes / capital, mean/std x sqrt(525600); null under 4 minutes",
        "max_drawdown_usdc": round(max_drawdown(pnl), 4),
        "fills": s["fills"],
        "orders_placed": s["orders_placed"],
        "orders_filled": orders_filled,
        "orders_cancelled": s["orders_cancelled"],
        "orders_rejected": s["orders_rejected"],
        "fill_rate": s["fill_rate"],
        "order_to_fill_ratio": round(s["orders_placed"] / orders_filled, 3) if orders_filled else None,
        "volume_base": s["volume_base"],
        "inventory": {
            "final_pct": s["inventory_pct"],
            "mean_pct": round(float(np.mean(inv)), 4) if len(inv) else 0.0,
            "std_pct": round(float(np.std(inv)), 4) if len(inv) else 0.0,
            "mean_abs_pct": round(float(np.mean(np.abs(inv))), 4) if len(inv) else 0.0,
            "max_abs_inventory_pct": s["max_abs_inventory_pct"],
        },
        "markouts": markouts(engine),
        "prediction_hit_rate": s["prediction_hit_rate"],  # live directional accuracy of the model's calls
        "model": s["model"],
        "model_errors": s["model_errors"],
        "breakers": {k: {"trips": v["trips"], "state": v["state"]} for k, v in s["breakers"].items()},
        "book_rejects": {k[len("book_reject_"):]: v for k, v in counts.items() if k.startswith("book_reject_")},
        "events": venue.rows_done,
        "messages": venue.messages_done,
        "engine_batches": counts["batches"],
        "wall_s": round(wall_s, 3),
        "rows_per_s": round(venue.rows_done / wall_s, 1) if wall_s else None,
        "messages_per_s": round(venue.messages_done / wall_s, 1) if wall_s else None,
        "replay_speed_vs_real_time": round(duration / wall_s, 1) if wall_s else None,
        "tick_to_quote_us": s["tick_to_quote_us"],
        "config": {"latency_ms": cfg.replay.latency_ms, "maker_fee_bps": cfg.replay.maker_fee_bps,
                   "taker_fee_bps": cfg.replay.taker_fee_bps, "quote_interval_ms": cfg.strategy.quote_interval_ms},
    }


def plot(engine: Engine, title: str) -> None:
    """PnL, inventory and spreads in the terminal (plotext)."""
    import plotext as plt

    pnl = list(engine.pnl_history)
    inv = list(engine.inventory_history)
    spreads = list(engine.spread_history)
    if not pnl:
        print(f"{title}: nothing to plot (no quote cycles)")
        return
    x = list(range(len(pnl)))
    plt.clf()
    plt.subplots(3, 1)
    plt.subplot(1, 1)
    plt.plot(x, pnl, label="PnL USDC")
    plt.title(f"{title}: PnL (USDC) by second")
    plt.subplot(2, 1)
    plt.plot(x, inv, label="inventory %")
    plt.title("inventory, % of capital")
    plt.subplot(3, 1)
    mkt = [m if m == m else None for m, _ in spreads]
    ours = [o if o == o else None for _, o in spreads]
    plt.plot(x, [v if v is not None else 0.0 for v in mkt], label="market bps")
    plt.plot(x, [v if v is not None else 0.0 for v in ours], label="ours bps")
    plt.title("spreads, bps (0 = not quoting)")
    plt.plotsize(100, 36)
    plt.show()


def run_backtest(cfg: Config, data_sets: list[list[str]], strategy: str, report_path: str | Path,
                 cache_dir: Path | None, plot_charts: bool = False, show_progress: bool = True,
                 trade_from_fraction: float = 0.0) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # fills and breaker changes go to the log file when one is configured; on the terminal only errors,
    # which would otherwise garble the progress display (the report counts breaker trips anyway)
    configure_logging("warning" if cfg.logging.file else "error", cfg.logging.file)
    cfg = with_strategy(cfg, strategy)
    sections = []
    engines = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                        TimeElapsedColumn(), disable=not show_progress)
    with progress:
        for paths in data_sets:
            data = load_events(paths, cache_dir)
            section, engine = run_one(cfg, data, progress, trade_from_fraction)
            sections.append(section)
            engines.append((data, engine))
    report = {"strategy": strategy, "quoting_model": cfg.strategy.model, "data_sets": sections,
              "generated_unix": time.time(), "ns_per_s": NS_PER_S}
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if plot_charts:
        for data, engine in engines:
            plot(engine, f"{data.instrument.symbol} ({data.source})")
    return report
