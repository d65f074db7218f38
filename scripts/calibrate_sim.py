#!/usr/bin/env python3
"""Compare the embedded simulated market's statistics with recorded real data (Binance spot BTCUSDT).

    scripts/calibrate_sim.py [--data-dir DIR] [--seconds 600] [--seed 7] [--json PATH]

Reads both files of binance-spot-btcusdt-20240808 as one stream, runs the simulator for --seconds of
simulated time with no engine, prints both side by side and says which figures are meant to match
(dimensionless ones; the two instruments differ in price, tick/price ratio and lot units).
Exit status: 0 ok, 1 the simulator failed, 2 the data folder is missing.
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

from flashmm.research.marketstats import binance_market_stats, binance_spot_btcusdt, sim_market_stats  # noqa: E402

BINANCE_FOLDER = "binance-spot-btcusdt-20240808"

# metric -> (meant to match?, why)
METRICS: list[tuple[str, str, str]] = [
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
    ("trade_rate_per_s", "match", "market orders per second"),
    ("trade_size_mean_lots", "no", "lot units differ"),
    ("trade_size_median_lots", "no", "lot units differ"),
    ("trade_size_median_over_mean", "match", "heavy-tailed trade sizes"),
    ("trade_notional_mean_quote", "no", "different market"),
    ("buy_aggressor_frac", "shape", "the recorded tape drifted down: more sellers"),
    ("vol_bps_per_sqrt_s", "match", "volatility is a price property"),
    ("vol_ticks_per_sqrt_s", "no", "tick/price ratio differs"),
    ("mid_changes_per_s", "shape", "capped by cadence: 100 ms diffs vs blocks"),
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder holding binance-spot-btcusdt-20240808 "
                         "(default: $FLASHMM_DATA_DIR or ../shared/data)")
    ap.add_argument("--seconds", type=float, default=600.0, help="simulated seconds (default 600)")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    ap.add_argument("--json", type=Path, default=None, help="write {real, sim} as JSON here")
    args = ap.parse_args(argv)

    data_dir = args.data_dir or default_data_dir()
    folder = data_dir / BINANCE_FOLDER
    files = sorted(folder.glob("*.gz")) if folder.is_dir() else []
    if len(files) < 2:
        print(f"error: recorded data not found: expected the two .gz files of {folder} "
              f"(set --data-dir or FLASHMM_DATA_DIR to the shared data folder)", file=sys.stderr)
        return 2

    real = binance_market_stats(files, binance_spot_btcusdt())
    sim: dict | None
    sim_error = None
    try:
        sim = sim_market_stats(args.seconds, args.seed)
    except Exception as exc:  # the report is still useful without the simulator
        sim = None
        sim_error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)

    from rich.console import Console
    from rich.table import Table

    title = (f"Real BTCUSDT ({', '.join(real['source'])}) vs simulated market "
             f"(seed {args.seed}, {args.seconds:g} s)")
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    table.add_column("real BTCUSDT", justify="right", no_wrap=True)
    table.add_column("sim SEI/USDC", justify="right", no_wrap=True)
    table.add_column("meant to match", justify="center", no_wrap=True)
    table.add_column("note", min_width=20)
    styles = {"match": "bold green", "shape": "yellow", "no": "dim"}
    for key, kind, note in METRICS:
        sim_v = sim.get(key) if sim else None
        table.add_row(key, _fmt(real.get(key)), _fmt(sim_v) if sim else "-",
                      f"[{styles[kind]}]{kind}[/]", note)
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=150)
    console.print(table)
    bbo = real["bbo_crosscheck"]
    console.print(f"real: {real['trades']:,} trades, {real['book_updates']:,} book states, "
                  f"gaps {real['gaps']}, BBO cross-check vs bookTicker {bbo['compared']:,} compared / "
                  f"{bbo['mismatched']} mismatched, "
                  f"{real['counts']['qty_off_lot_grid']} quantities off the lot grid")
    if sim_error:
        console.print(f"[bold red]simulator failed:[/] {sim_error}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({"real": real, "sim": sim, "sim_error": sim_error},
                                           option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        console.print(f"wrote {args.json}")
    return 1 if sim_error else 0


if __name__ == "__main__":
    sys.exit(main())
