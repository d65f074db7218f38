#!/usr/bin/env python3
"""Compare each simulator preset's statistics with the real recording it is calibrated to.

    scripts/calibrate_sim.py [--preset thin|deep|both] [--data-dir DIR] [--seed 7] [--seeds 5]
                             [--thin-seconds 18000] [--deep-seconds 600] [--json PATH]

thin: the Bitstamp BTC/USD capture of 2015-05-01 (5.1 h, top-20 snapshots every ~2.4 s), measured as
recorded and again on a tick as coarse relative to its price as the simulator's (`tick_multiple`: 6 cents,
2.55 bps at ~236 USD, vs 0.0001 USDC at 0.40 = 2.5 bps), against the thin preset run for as long as the
capture. deep: both files of Binance spot BTCUSDT 2024-08-08 against the deep preset (600 s). Each preset
runs for --seed and, for the range column, --seeds consecutive seeds from it (one seed of a heavy-tailed
market is one draw).
Every figure on both sides comes from the same function (flashmm.research.marketstats.MarketStatsCollector).
Each row says whether it is meant to match, and why not where it cannot.
Exit status: 0 ok, 1 a simulator run failed, 2 a data folder is missing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flashmm.config import SimConfig, default_instrument  # noqa: E402
from flashmm.research.marketstats import (  # noqa: E402
    CALIBRATION_MIN_MOVE_BPS,
    binance_market_stats,
    binance_spot_btcusdt,
    bitstamp_market_stats,
    bitstamp_tick_multiple,
    sim_market_stats,
)

BINANCE_FOLDER = "binance-spot-btcusdt-20240808"
BITSTAMP_FILE = Path("bitstamp-btcusd-20150501") / "2015-05-01.log.xz"

# metric -> (meant to match?, why); "match" rows are the calibration targets
DEEP_METRICS: list[tuple[str, str, str]] = [
    ("duration_s", "no", "run length"),
    ("spread_ticks_median", "match", "both tick-constrained"),
    ("spread_ticks_mean", "shape", "wide-spread episodes after sweeps"),
    ("spread_ticks_p90", "shape", ""),
    ("spread_one_tick_frac", "match", ""),
    ("spread_bps_median", "no", "tick/price ratio differs (BTC 0.0016 bps/tick)"),
    ("depth_best_lots", "no", "lot units differ"),
    ("depth10_lots", "no", "lot units differ"),
    ("depth_best_in_mean_trades", "match", "depth in units of the mean trade"),
    ("depth10_in_mean_trades", "no", "10 ticks = 0.016 bps on BTCUSDT, 25 bps here"),
    ("depth10bps_in_mean_taker_orders", "no", "the real book is 6,000 ticks deep in 10 bps"),
    ("trade_rate_per_s", "match", "market orders per second"),
    ("taker_order_rate_per_s", "shape", "Binance prints one trade per maker fill; calibrated on trades"),
    ("trade_size_mean_lots", "no", "lot units differ"),
    ("trade_size_median_lots", "no", "lot units differ"),
    ("trade_size_median_over_mean", "match", "heavy-tailed trade sizes"),
    ("trade_notional_mean_quote", "no", "different market"),
    ("buy_aggressor_frac", "shape", "the recorded tape drifted down: more sellers"),
    ("vol_bps_per_sqrt_s", "match", "volatility is a price property"),
    ("vol60_bps_per_sqrt_s", "shape", "10 samples of 60 s on each side"),
    ("vol_ticks_per_sqrt_s", "no", "tick/price ratio differs"),
    ("mid_changes_per_s", "shape", "capped by cadence: 100 ms diffs vs blocks"),
    ("imbalance_sign_accuracy", "shape", "signal: sign of level-1 imbalance vs next mid move"),
    ("trade_sign_accuracy", "shape", "signal: a trade's side vs the next mid move"),
    ("trade_flow_sign_accuracy", "shape", "signal: last 5 s of net taker volume vs next mid move"),
    ("stale_updates", "match", "0"),
    ("gaps", "match", "0"),
]

THIN_METRICS: list[tuple[str, str, str]] = [
    ("duration_s", "no", "run length: the sim runs as long as the capture"),
    ("spread_ticks_median", "match", "on the coarse tick; 0.43 bps ticks as recorded"),
    ("spread_ticks_mean", "match", "on the coarse tick"),
    ("spread_one_tick_frac", "match", "on the coarse tick"),
    ("spread_bps_p10", "shape", "the sim's least spread is its 2.5 bps tick"),
    ("spread_bps_median", "match", ""),
    ("spread_bps_mean", "match", ""),
    ("spread_bps_p90", "match", ""),
    ("depth_best_quote", "match", "per side, USD vs USDC; a 2.5 bps wide level"),
    ("depth5bps_quote", "match", "per side, within 5 bps of the mid"),
    ("depth10bps_quote", "match", ""),
    ("depth25bps_quote", "match", "the 20 recorded levels reach >= 32.7 bps"),
    ("depth_best_in_mean_taker_orders", "shape", "one heavy-tailed mean sets the unit"),
    ("depth25bps_in_mean_taker_orders", "shape", ""),
    ("depth_best_lots", "no", "lot units differ (satoshi vs SEI)"),
    ("taker_order_rate_per_s", "match", "trades of one side within 250 ms = one taker order"),
    ("trade_rate_per_s", "shape", "Bitstamp prints one trade per maker fill"),
    ("taker_order_size_median_over_mean", "match", "heavy-tailed order sizes"),
    ("taker_order_size_p90_over_mean", "shape", "360 orders: a noisy tail"),
    ("taker_order_notional_mean_quote", "match", "USD and USDC: chosen to match"),
    ("buy_aggressor_frac", "shape", "sides inferred from the book (no side field)"),
    ("vol_bps_per_sqrt_s", "match", "1 s returns of the mid"),
    ("vol60_bps_per_sqrt_s", "match", "60 s returns: the price beyond the bid/ask bounce"),
    ("vol_ticks_per_sqrt_s", "no", "tick/price ratio differs"),
    ("mid_move_5s_frac", "match", f"5 s steps with a mid move >= {CALIBRATION_MIN_MOVE_BPS:g} bps"),
    ("mid_changes_per_s", "match", "on the coarse tick; snapshots every 2.4 s miss the briefest"),
    ("imbalance_sign_accuracy", "match", "signal: sign of level-1 imbalance vs next mid move"),
    ("trade_sign_accuracy", "match", "signal: a trade's side vs the next mid move"),
    ("trade_flow_sign_accuracy", "match", "signal: last 5 s of net taker volume vs next mid move"),
    ("stale_updates", "match", "0"),
    ("gaps", "match", "0"),
]


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 1:
            return f"{v:.3f}"
        return f"{v:.4g}"
    return str(v)


def default_data_dir() -> Path:
    env = os.environ.get("FLASHMM_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _run_sim(seconds: float, seed: int, seeds: int, preset: str) -> tuple[dict | None, list[dict], str | None]:
    """The stats of `seed`, and of `seeds` consecutive seeds from it (the first is `seed`'s)."""
    try:
        runs = [sim_market_stats(seconds, s, SimConfig(preset=preset), min_move_bps=CALIBRATION_MIN_MOVE_BPS)
                for s in range(seed, seed + max(1, seeds))]
        return runs[0], runs, None
    except Exception as exc:  # the report is still useful without the simulator
        traceback.print_exc(file=sys.stderr)
        return None, [], f"{type(exc).__name__}: {exc}"


def _range(runs: list[dict]) -> dict:
    """Per metric, 'min - max' over the runs (a string cell)."""
    out: dict = {}
    for key in runs[0] if runs else ():
        vals = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = f"{_fmt(min(vals))} - {_fmt(max(vals))}"
    return out


def _table(title: str, columns: list[tuple[str, dict | None]], metrics: list[tuple[str, str, str]]):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    for name, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("meant to match", justify="center", no_wrap=True)
    table.add_column("note", min_width=20)
    styles = {"match": "bold green", "shape": "yellow", "no": "dim"}
    for key, kind, note in metrics:
        cells = [("-" if stats is None else stats[key] if isinstance(stats.get(key), str) else _fmt(stats.get(key)))
                 for _, stats in columns]
        table.add_row(key, *cells, f"[{styles[kind]}]{kind}[/]", note)
    return table


def _seed_column(runs: list[dict], args) -> list[tuple[str, dict]]:
    if len(runs) < 2:
        return []
    return [(f"seeds {args.seed}-{args.seed + len(runs) - 1}", _range(runs))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("thin", "deep", "both"), default="both", help="which preset (default both)")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="the shared data folder (default: $FLASHMM_DATA_DIR or ../shared/data)")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    ap.add_argument("--seeds", type=int, default=5,
                    help="seeds from --seed on for the range column (default 5; 1 = no range)")
    ap.add_argument("--thin-seconds", type=float, default=18_000.0,
                    help="simulated seconds of the thin preset (default 18000, about the capture's length)")
    ap.add_argument("--deep-seconds", type=float, default=600.0,
                    help="simulated seconds of the deep preset (default 600)")
    ap.add_argument("--json", type=Path, default=None, help="write {thin: {...}, deep: {...}} as JSON here")
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=170)
    data_dir = args.data_dir or default_data_dir()
    presets = ("thin", "deep") if args.preset == "both" else (args.preset,)
    out: dict[str, dict] = {}
    failed = False

    # every data file first: a missing folder is exit 2 before minutes of simulation
    bitstamp = data_dir / BITSTAMP_FILE
    binance_folder = data_dir / BINANCE_FOLDER
    binance_files = sorted(binance_folder.glob("*.gz")) if binance_folder.is_dir() else []
    if "thin" in presets and not bitstamp.is_file():
        print(f"error: recorded data not found: {bitstamp} "
              f"(set --data-dir or FLASHMM_DATA_DIR to the shared data folder)", file=sys.stderr)
        return 2
    if "deep" in presets and len(binance_files) < 2:
        print(f"error: recorded data not found: expected the two .gz files of {binance_folder} "
              f"(set --data-dir or FLASHMM_DATA_DIR to the shared data folder)", file=sys.stderr)
        return 2

    if "thin" in presets:
        cfg, inst = SimConfig(preset="thin"), default_instrument()
        k = bitstamp_tick_multiple(bitstamp, cfg, inst)
        real = bitstamp_market_stats(bitstamp, min_move_bps=CALIBRATION_MIN_MOVE_BPS)
        coarse = bitstamp_market_stats(bitstamp, min_move_bps=CALIBRATION_MIN_MOVE_BPS, tick_multiple=k)
        sim, runs, err = _run_sim(args.thin_seconds, args.seed, args.seeds, "thin")
        failed |= err is not None
        tick_bps = 1e4 * inst.tick_f / cfg.initial_price
        console.print(_table(
            f"thin preset: Bitstamp BTC/USD 2015-05-01 ({real['duration_s'] / 3600:.1f} h) vs sim "
            f"(seed {args.seed}, {args.thin_seconds:g} s)",
            [("Bitstamp", real), (f"Bitstamp, {k}c tick", coarse), (f"sim thin, seed {args.seed}", sim)]
            + _seed_column(runs, args), THIN_METRICS))
        console.print(f"Bitstamp: {real['trades']:,} trades ({real['taker_orders']} taker orders), "
                      f"{real['book_updates']:,} snapshots; sides from the book "
                      f"{real['counts']['trade_side_from']}. Coarse tick: {k} cents = "
                      f"{float(coarse['instrument']['price_tick']) / 236 * 1e4:.2f} bps at 236 USD; "
                      f"the sim's: {tick_bps:.2f} bps at {cfg.initial_price} USDC")
        if err:
            console.print(f"[bold red]simulator failed:[/] {err}")
        out["thin"] = {"real": real, "real_on_sim_tick": coarse, "sim": sim, "sim_seeds": runs, "sim_error": err,
                       "seed": args.seed, "seconds": args.thin_seconds}

    if "deep" in presets:
        real = binance_market_stats(binance_files, binance_spot_btcusdt())
        sim, runs, err = _run_sim(args.deep_seconds, args.seed, args.seeds, "deep")
        failed |= err is not None
        console.print(_table(
            f"deep preset: Binance spot BTCUSDT ({', '.join(real['source'])}) vs sim "
            f"(seed {args.seed}, {args.deep_seconds:g} s)",
            [("real BTCUSDT", real), (f"sim deep, seed {args.seed}", sim)] + _seed_column(runs, args), DEEP_METRICS))
        bbo = real["bbo_crosscheck"]
        console.print(f"real: {real['trades']:,} trades, {real['book_updates']:,} book states, "
                      f"gaps {real['gaps']}, BBO cross-check vs bookTicker {bbo['compared']:,} compared / "
                      f"{bbo['mismatched']} mismatched, "
                      f"{real['counts']['qty_off_lot_grid']} quantities off the lot grid")
        if err:
            console.print(f"[bold red]simulator failed:[/] {err}")
        out["deep"] = {"real": real, "sim": sim, "sim_seeds": runs, "sim_error": err, "seed": args.seed,
                       "seconds": args.deep_seconds}

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        console.print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
