"""Backtests: the same engine on recorded real markets, replayed as fast as possible.

Each `--data` argument is one data set (a file, the files of one stream, or a folder). The report
carries the metric names of DESIGN.md, per data set.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flashmm.config import Config
from flashmm.core.clock import NS_PER_S
from flashmm.core.engine import Engine
from flashmm.data.events import KIND_BBO, EventSet
from flashmm.data.loader import load_configured
from flashmm.data.readers import DataError
from flashmm.model.predictor import predictor_for
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


def mid_gap_at_fills_bps(data: EventSet, engine: Engine) -> dict[str, Any]:
    """How far the engine's mid was from the recording's real-time best bid/offer when our orders filled:
    per fill, |mid the engine valued the fill at - mid of the last bookTicker frame at or before the fill|, in
    bps (mean and p95). None where the recording has no best bid/offer stream. With [replay].use_book_ticker
    the engine's book follows those frames and the gap is ~0; with depth diffs only it is the staleness of the
    100 ms depth stream that adverse selection would otherwise be mistaken for."""
    ev = data.events
    bbo = ev[ev["kind"] == KIND_BBO]
    fills = engine.portfolio.fills
    if len(bbo) == 0 or not fills:
        return {"mean": None, "p95": None, "fills": 0}
    bid = bbo[bbo["side"] > 0]
    ask = bbo[bbo["side"] < 0]
    if len(bid) != len(ask) or not np.array_equal(bid["ts_ns"], ask["ts_ns"]):
        return {"mean": None, "p95": None, "fills": 0}
    ts = bid["ts_ns"]
    mid = (bid["price"] + ask["price"]) / 2.0
    f_ts = np.array([f.ts_ns for f in fills], dtype=np.int64)
    f_mid = np.array([f.mid_ticks for f in fills], dtype=np.float64)
    idx = np.searchsorted(ts, f_ts, side="left") - 1  # the last frame strictly before the fill
    ok = idx >= 0
    if not ok.any():
        return {"mean": None, "p95": None, "fills": 0}
    gap = np.abs(f_mid[ok] - mid[idx[ok]]) / mid[idx[ok]] * 1e4
    return {"mean": round(float(gap.mean()), 4), "p95": round(float(np.percentile(gap, 95)), 4), "fills": int(ok.sum())}


class NoDataProcessedError(DataError):
    """A backtest that processed nothing (no market row reached the engine, or no quote cycle ran)."""


def check_processed(data: EventSet, engine: Engine, venue: ReplayVenue) -> None:
    """A run of nothing must fail loudly: no market message reached the engine, or the engine never ran a
    quote cycle (its book never usable while it was allowed to trade). The message names what was rejected."""
    counts = engine.all_counters()
    label = f"{data.instrument.symbol} ({data.source}, {', '.join(Path(f).name for f in data.files)})"
    book = {k.removeprefix("book_reject_"): v for k, v in counts.items() if k.startswith("book_reject_") and v}
    why = "; ".join(x for x in (
        ", ".join(f"{k} {v:,}" for k, v in sorted(data.rejects.items(), key=lambda kv: -kv[1])),
        ", ".join(f"book {k} {v:,}" for k, v in sorted(book.items(), key=lambda kv: -kv[1]))) if x)
    if venue.messages_done == 0 or counts["book_updates"] == 0:
        raise NoDataProcessedError(f"{label}: no market data reached the engine ({venue.rows_done:,} of "
                                   f"{venue.rows_total:,} rows replayed; rejected: {why or 'none'})")
    if counts["quotes"] == 0 and counts["batches"]:
        raise NoDataProcessedError(f"{label}: the engine never quoted ({counts['book_updates']:,} book updates, "
                                   f"0 quote cycles with a usable book; rejected: {why or 'none'}; "
                                   f"breakers: {', '.join(f'{b.name} {b.trips}' for b in engine.risk.views() if b.trips) or 'none'})")


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


# A replay allocates millions of short-lived objects (events, rows, tuples) and creates no reference cycles worth
# collecting: at the interpreter's default (a young-generation collection every 700 net allocations) the spot
# replay paid for 5 young and 1 middle-generation collection, 7 ms of collector time (the middle one scans
# every survivor); with the threshold raised, none. Measured in alternated runs: 2-4 % of the replay's wall time.
_REPLAY_GC_THRESHOLD0 = 50_000


@contextmanager
def replay_gc() -> Iterator[None]:
    """The young-generation collection threshold raised to `_REPLAY_GC_THRESHOLD0` while a replay runs, and put
    back after (the older generations' thresholds unchanged; cycles are still collected, less often)."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], _REPLAY_GC_THRESHOLD0), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def run_one(cfg: Config, data: EventSet, progress: Any = None, trade_from_fraction: float = 0.0,
            trade_until_fraction: float = 1.0) -> tuple[dict[str, Any], Engine]:
    """Replay one data set through the engine. Returns the report section and the engine. With
    `trade_from_fraction` > 0 the engine trades only from that point of the recording on (e.g. the
    held-out slice a model was not trained on); before it, it only follows the market. With
    `trade_until_fraction` < 1 the run ends at that point (orders cancelled, the position marked at the
    mid there): the earlier slice a sweep chooses parameters on."""
    venue = ReplayVenue(data, cfg.replay)
    predictor = predictor_for(cfg)
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
            until_s = trade_until_fraction * data.duration_s if trade_until_fraction < 1.0 else None
            await engine.run(until_s, trade_from_ns=trade_from)
            await engine.shutdown(timeout_s=5.0)
        finally:
            if ticker:
                ticker.cancel()
                progress.update(task, completed=venue.rows_done)

    with replay_gc():
        t0 = time.perf_counter()
        asyncio.run(go())
        wall = time.perf_counter() - t0
    check_processed(data, engine, venue)
    section = report_section(cfg, data, engine, venue, wall)
    section["traded_from_fraction"] = trade_from_fraction
    section["traded_until_fraction"] = trade_until_fraction
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
                 "reader_rejects": data.rejects, "other_symbol_frames": data.meta.get("other_symbol_frames", {}),
                 "cache": data.meta.get("cache")},
        "instrument": s["instrument"],
        "strategy": cfg.strategy.model,
        "spread_improvement_pct": s["spread_improvement_pct"],
        "spread_improvement_note": s["spread_improvement_note"],
        "market_spread_bps": s["market_spread_bps"],
        "market_spread_ticks": s["market_spread_ticks"],
        "our_spread_bps": s["our_spread_bps"],
        "quoting_time_s": s["quoting_time_s"],
        "pnl_usdc": s["pnl_usdc"],  # in the quote currency (instrument.quote); pnl_settle in instrument.settle
        "pnl_settle": s["pnl_settle"],
        "pnl_breakdown": s["pnl_breakdown"],
        "effective_spread_bps": s["effective_spread_bps"],
        "realised_spread_bps": s["realised_spread_bps"],
        "adverse_selection_bps": s["adverse_selection_bps"],
        "markout_bps": s["markout_bps"],
        "time_at_touch_pct": s["time_at_touch_pct"],
        "taker_share_pct": s["taker_share_pct"],
        "orders_per_fill": s["orders_per_fill"],
        "post_only_rejects": s["post_only_rejects"],
        "mid_gap_at_fills_bps": mid_gap_at_fills_bps(data, engine),
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
                   "taker_fee_bps": cfg.replay.taker_fee_bps, "quote_interval_ms": cfg.strategy.quote_interval_ms,
                   "use_book_ticker": cfg.replay.use_book_ticker},
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
    quote = engine.instrument.quote
    mkt = [m if m == m else 0.0 for m, _ in spreads]
    ours = [o if o == o else 0.0 for _, o in spreads]
    charts = ((f"{title}: PnL ({quote}) by second", [(pnl, f"PnL {quote}")]),
              ("inventory, % of capital", [(inv, "inventory %")]),
              ("spreads, bps (0 = not quoting)", [(mkt, "market bps"), (ours, "ours bps")]))
    for chart_title, series in charts:  # one chart at a time: plotext 5 sizes subplots unevenly
        plt.clf()
        for ys, label in series:
            plt.plot(x[: len(ys)], ys, label=label)
        plt.title(chart_title)
        plt.plotsize(100, 15)
        plt.show()


def run_backtest(cfg: Config, data_sets: list[list[str]], strategy: str, report_path: str | Path,
                 plot_charts: bool = False, show_progress: bool = True,
                 trade_from_fraction: float = 0.0, workers: int | None = 1, backend: str = "auto",
                 address: str | None = None) -> dict[str, Any]:
    """Every data set through the engine (loaded as the configuration says: [replay].symbol,
    instruments_file, cache_dir). A data set that processed nothing raises NoDataProcessedError. With several
    data sets and `workers` != 1 (None: every core) they run at once, as Ray tasks or processes
    (research/parallel.py), with the same results as one by one."""
    from types import SimpleNamespace

    from flashmm.research.parallel import Job, ParallelRunner, RichBars, rich_progress

    # fills and breaker changes go to the log file when one is configured; on the terminal only errors,
    # which would otherwise garble the progress display (the report counts breaker trips anyway)
    level = "warning" if cfg.logging.file else "error"
    configure_logging(level, cfg.logging.file)
    cfg = with_strategy(cfg, strategy)
    datas = [load_configured(cfg, paths) for paths in data_sets]
    jobs = [Job(cfg, i, trade_from_fraction, label=Path(d.files[0]).parent.name or d.files[0], keep_series=plot_charts)
            for i, d in enumerate(datas)]
    progress = rich_progress(disable=not show_progress)
    with progress, ParallelRunner(datas, workers, backend, address, level, cfg.logging.file) as runner:
        results = runner.run(jobs, RichBars(progress, len(jobs), lambda j: len(datas[j.data].events), jobs))
        parallel = {"backend": runner.used_backend, "workers": runner.resolved_workers()}
    for r in results:
        if not r.ok:
            raise RuntimeError(f"backtest of {jobs[r.index].label} failed: {r.error}")
    sections = [r.section for r in results]
    report = {"strategy": strategy, "quoting_model": cfg.strategy.model, "data_sets": sections,
              "generated_unix": time.time(), "ns_per_s": NS_PER_S,
              "parallel": {**parallel, "tasks": [{"data": j.label, "worker": r.worker, "wall_s": r.wall_s}
                                                 for j, r in zip(jobs, results)]}}
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if plot_charts:
        for data, r in zip(datas, results):
            # what plot() reads of an engine: the per-second series (sent back by the worker) and the instrument
            plot(SimpleNamespace(**r.series, instrument=data.instrument), f"{data.instrument.symbol} ({data.source})")
    return report


def _fmt(x: Any, spec: str = "+.2f", unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def summary_table(report: dict[str, Any]) -> Any:
    """One plain table of a backtest report: metrics down, data sets across (fits an 80-column terminal
    for two data sets, and any width for one)."""
    from rich.table import Table

    secs = report["data_sets"]
    table = Table(title=f"backtest: {report['strategy']} ({report['quoting_model']})", show_lines=False)
    table.add_column("metric")
    for s in secs:
        table.add_column(f"{s['data']['symbol']}\n{s['data']['source']}", justify="right")

    def row(name: str, f: Any) -> None:
        table.add_row(name, *[f(s) for s in secs])

    def cur(s: dict[str, Any]) -> str:
        return s["instrument"]["quote"]

    row("traded, s", lambda s: f"{s['data']['duration_s'] * (s['traded_until_fraction'] - s['traded_from_fraction']):,.0f}")
    row("PnL", lambda s: f"{s['pnl_usdc']:+,.4f} {cur(s)}")
    row("  in settlement", lambda s: f"{s['pnl_settle']:+.8f} {s['instrument']['settle']}"
        if s["instrument"]["inverse"] else "same")
    row("  spread capture", lambda s: f"{s['pnl_breakdown']['spread_capture']:+,.4f}")
    row("  inventory", lambda s: f"{s['pnl_breakdown']['inventory']:+,.4f}")
    row("  fees", lambda s: f"{s['pnl_breakdown']['fees']:+,.4f}")
    row("fills / orders per fill", lambda s: f"{s['fills']:,} / {_fmt(s['orders_per_fill'], '.1f')}")
    row("taker share of fills", lambda s: _fmt(s["taker_share_pct"], ".1f", " %"))
    row("post-only rejects", lambda s: f"{s['post_only_rejects']:,}")

    def realised(s: dict[str, Any]) -> str:
        r = s["realised_spread_bps"]
        ci = r["ci95"]
        return _fmt(r["5s"], "+.2f") + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")

    row("effective spread, bps", lambda s: _fmt(s["effective_spread_bps"]))
    row("realised spread 5 s [95 %]", realised)
    row("adverse selection 5 s, bps", lambda s: _fmt(s["adverse_selection_bps"]))
    row("markout 1 / 5 / 30 s, bps", lambda s: " / ".join(_fmt(s["markout_bps"][h]) for h in ("1s", "5s", "30s")))
    row("time at touch", lambda s: _fmt(s["time_at_touch_pct"], ".1f", " %"))
    row("market / our spread, bps", lambda s: f"{s['market_spread_bps']:.2f} / {s['our_spread_bps']:.2f}")
    row("spread improvement", lambda s: _fmt(s["spread_improvement_pct"], "+.1f", " %")
        if s["spread_improvement_pct"] is not None else "n/a (< 2 ticks)")
    row("max |inventory|, % capital", lambda s: f"{s['inventory']['max_abs_inventory_pct']:.3f}")
    row("mid gap at fills, bps", lambda s: _fmt(s["mid_gap_at_fills_bps"]["mean"], ".3f"))
    row("rows/s", lambda s: f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else "n/a")
    return table
