#!/usr/bin/env python3
"""Backtest throughput: FlashMM against hftbacktest on the same recorded Binance spot data.

    scripts/bench_vs_hftbacktest.py [--data-dir DIR] [--hftbt-venv PATH] [--skip-install]
                                    [--repeat 5] [--json OUT] [--skip-flashmm]

One run does everything:
  1. a throwaway venv (default /tmp/flashmm-hftbt-venv; reused when `import hftbacktest, numba` works in it)
     gets `pip install hftbacktest` from PyPI. hftbacktest is never a dependency of FlashMM: it lives only
     in that venv and is only ever run in subprocesses of it.
  2. the two files of binance-spot-btcusdt-20240808 (recorded by hftbacktest's own example collector, see
     PROVENANCE.md) are converted to hftbacktest's event format with hftbacktest's own converter,
     `hftbacktest.data.utils.binancefutures.convert`. hftbacktest (2.4.x) ships no Binance *spot*
     converter, and the futures one reads fields the spot streams do not carry, so each frame is first
     given them (a 1:1 rewrite; bookTicker frames, which it would ignore, are dropped; see ADAPTER_NOTE);
     everything else (row layout, latency and event-order correction, validation) is the library's.
  3. a GLFT grid market maker after hftbacktest's tutorial "GLFT Market Making Model and Grid Trading"
     requotes every 100 ms (`hbt.elapse(100_000_000)`) in hftbacktest's backtester (constant order
     latency, RiskAdverseQueueModel, no partial fills, tick 0.01, lot 0.00001). Timed: the strategy call
     only, after a JIT warm-up on a slice of the data, best and median of --repeat runs. Also reported:
     "raw gz -> result" = their converter + npz load + backtester construction + loop.
  4. `flashmm bench backtest --data F1 --data F2 --quote-interval-ms 100 --repeat R --json TMP` (project venv;
     the `--data F1 F2` form when its --help shows nargs; --repeat, this script's own, where its --help has it:
     the fastest of R runs is the headline and the median is kept, as on hftbacktest's side) gives FlashMM's
     side: JSON keys rows, rows_per_s, messages, messages_per_s, wall_s (optional load_s/cache give a
     raw-gz-to-result figure too; rows_per_s_median where --repeat ran).
  5. a table of both throughputs and the ratio FlashMM/hftbacktest; --json OUT keeps both sides, the
     versions, the command line and the notes on what differs.

Exit status: 0 both sides ran; 1 the hftbacktest side failed (venv, pip, conversion or backtest);
2 the data folder is missing; 3 the FlashMM side failed (hftbacktest figures are still printed/written).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hftbt_venv  # noqa: E402  (the throwaway-venv helpers, shared with compare_strategies.py)
from _hftbt_venv import (  # noqa: E402
    DEFAULT_VENV,
    StepError,
    _clean_env,
    _log,
    _run,
    _tail,
    _venv_python,
    ensure_venv,
)

_hftbt_venv.LOG_PREFIX = "bench-vs-hftbt"
BINANCE_FOLDER = "binance-spot-btcusdt-20240808"
FILES = ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
DEFAULT_WORKDIR = Path("/tmp/flashmm-hftbt-work")

ADAPTER_NOTE = (
    "hftbacktest has no Binance spot converter; binancefutures.convert is used after a 1:1 per-frame "
    "rewrite that only adds the fields the futures schema requires: depthUpdate 'T' := 'E' (spot diffs "
    "carry only the event time), trade 'X' := 'MARKET' (spot trades have no execution type; all are "
    "market trades), REST snapshot 'T' := 'E' of the last depth diff received before it (the REST "
    "snapshot has no timestamp). Depth diffs with u <= the snapshot's lastUpdateId that arrive after "
    "it are dropped (Binance's documented sync rule; counted in dropped_stale_diffs). bookTicker frames "
    "are dropped before conversion: spot bookTicker has no 'e' field (the converter reads data['e'] for "
    "every stream frame) and no timestamp, and with opt='' the converter ignores bookTicker anyway. "
    "The two files are converted as one stream (they join without a gap) into one npz."
)


# --------------------------------------------------------------------------------------------------
# The hftbacktest side: written to the work folder and run by the throwaway venv's python only.
# --------------------------------------------------------------------------------------------------
HFTBT_SIDE = r'''
"""Runs inside the throwaway hftbacktest venv. Subcommands: convert, run. Writes one JSON to --out."""
import argparse
import gzip
import json
import statistics
import sys
import time


def cmd_convert(a):
    import numpy as np
    import hftbacktest
    from hftbacktest.data.utils import binancefutures

    t0 = time.perf_counter()
    stats = {"frames": 0, "depth": 0, "trade": 0, "book_ticker": 0, "snapshot": 0, "other": 0,
             "dropped_stale_diffs": 0}
    last_depth_e = None
    snapshot_id = None
    with gzip.open(a.adapted, "wt", compresslevel=1) as out:
        for path in a.files:
            with gzip.open(path, "rt") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    stats["frames"] += 1
                    ts, _, raw = line.partition(" ")
                    msg = json.loads(raw)
                    data = msg.get("data")
                    if data is None:
                        if "lastUpdateId" in msg:
                            stats["snapshot"] += 1
                            snapshot_id = int(msg["lastUpdateId"])
                            msg["T"] = last_depth_e if last_depth_e is not None else int(ts) // 1_000_000
                        else:
                            stats["other"] += 1
                    else:
                        e = data.get("e")
                        if e == "depthUpdate":
                            last_depth_e = int(data["E"])
                            if snapshot_id is not None and int(data["u"]) <= snapshot_id:
                                stats["dropped_stale_diffs"] += 1
                                continue
                            stats["depth"] += 1
                            data["T"] = data["E"]
                        elif e == "trade":
                            stats["trade"] += 1
                            data.setdefault("X", "MARKET")
                        elif "bookTicker" in msg.get("stream", ""):
                            # Spot bookTicker has no "e" (the converter indexes data['e']) and no time;
                            # with opt='' the converter would ignore it anyway: drop it here.
                            stats["book_ticker"] += 1
                            continue
                        else:
                            stats["other"] += 1
                    out.write(ts)
                    out.write(" ")
                    out.write(json.dumps(msg, separators=(",", ":")))
                    out.write("\n")
    t_adapt = time.perf_counter() - t0

    t1 = time.perf_counter()
    data = binancefutures.convert(
        a.adapted, output_filename=None, opt="", base_latency=0, combined_stream=True,
        buffer_size=a.buffer_size,
    )
    t_convert = time.perf_counter() - t1
    t2 = time.perf_counter()
    np.savez_compressed(a.npz, data=data)
    t_save = time.perf_counter() - t2

    ev = data["ev"]
    from hftbacktest import (DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, EXCH_EVENT,
                             LOCAL_EVENT)
    exch = (ev & EXCH_EVENT) != 0
    local = (ev & LOCAL_EVENT) != 0
    kinds = {}
    for name, flag in (("depth", DEPTH_EVENT), ("trade", TRADE_EVENT), ("depth_clear", DEPTH_CLEAR_EVENT),
                       ("depth_snapshot", DEPTH_SNAPSHOT_EVENT)):
        # Source events: rows seen by the exchange side (a reordered event is split into an exchange-only and
        # a local-only row by correct_event_order, so counting exchange rows counts each event once).
        kinds[name] = int(np.count_nonzero(((ev & 0xFF) == flag) & exch))
    result = {
        "hftbacktest_version": getattr(hftbacktest, "__version__", "unknown"),
        "converter": "hftbacktest.data.utils.binancefutures.convert(opt='', combined_stream=True, base_latency=0)",
        "rows": int(len(data)),
        "source_events": int(np.count_nonzero(exch)),
        "rows_exch_and_local": int(np.count_nonzero(exch & local)),
        "rows_exch_only": int(np.count_nonzero(exch & ~local)),
        "rows_local_only": int(np.count_nonzero(local & ~exch)),
        "source_events_by_kind": kinds,
        "frames": stats,
        "adapt_s": t_adapt,
        "convert_s": t_convert,
        "save_s": t_save,
        "first_exch_ts": int(data["exch_ts"][0]), "last_exch_ts": int(data["exch_ts"][-1]),
        "first_local_ts": int(data["local_ts"][0]), "last_local_ts": int(data["local_ts"][-1]),
        "npz": a.npz,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


STRATEGY = """
import numpy as np
from numba import njit, uint64
from numba.typed import Dict
from hftbacktest import BUY, SELL, GTX, LIMIT, BUY_EVENT


@njit
def measure_trading_intensity(order_arrival_depth, out):
    max_tick = 0
    for depth in order_arrival_depth:
        if not np.isfinite(depth):
            continue
        tick = round(depth / .5) - 1
        if tick < 0 or tick >= len(out):
            continue
        out[:tick] += 1
        max_tick = max(max_tick, tick)
    return out[:max_tick]


@njit
def linear_regression(x, y):
    sx = np.sum(x)
    sy = np.sum(y)
    sx2 = np.sum(x ** 2)
    sxy = np.sum(x * y)
    w = len(x)
    slope = (w * sxy - sx * sy) / (w * sx2 - sx ** 2)
    intercept = (sy - slope * sx) / w
    return slope, intercept


@njit
def compute_coeff(xi, gamma, delta, A, k):
    inv_k = np.divide(1, k)
    c1 = 1 / (xi * delta) * np.log(1 + xi * delta * inv_k)
    c2 = np.sqrt(np.divide(gamma, 2 * A * delta * k) * ((1 + xi * delta * inv_k) ** (k / (xi * delta) + 1)))
    return c1, c2


@njit
def gridtrading_glft_mm(hbt, interval_ns, window, recalib_every, order_qty, max_position, grid_num,
                        gamma, delta, adj1, adj2, max_steps):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    steps_per_s = 1e9 / interval_ns
    arrival_depth = np.full(max_steps, np.nan, np.float64)
    mid_price_chg = np.full(max_steps, np.nan, np.float64)
    t = 0
    prev_mid_price_tick = np.nan
    mid_price_tick = np.nan
    tmp = np.zeros(500, np.float64)
    ticks = np.arange(len(tmp)) + 0.5
    A = np.nan
    k = np.nan
    volatility = np.nan
    n_submit = 0
    n_cancel = 0
    n_quoting_steps = 0

    while hbt.elapse(interval_ns) == 0:
        # Arrival depth of market trades from the previous step's mid-price.
        if not np.isnan(mid_price_tick):
            depth = -np.inf
            for last_trade in hbt.last_trades(asset_no):
                trade_price_tick = last_trade.px / tick_size
                if last_trade.ev & BUY_EVENT == BUY_EVENT:
                    depth = max(trade_price_tick - mid_price_tick, depth)
                else:
                    depth = max(mid_price_tick - trade_price_tick, depth)
            arrival_depth[t] = depth
        hbt.clear_last_trades(asset_no)
        hbt.clear_inactive_orders(asset_no)

        depth = hbt.depth(asset_no)
        position = hbt.position(asset_no)
        orders = hbt.orders(asset_no)
        best_bid_tick = depth.best_bid_tick
        best_ask_tick = depth.best_ask_tick
        prev_mid_price_tick = mid_price_tick
        mid_price_tick = (best_bid_tick + best_ask_tick) / 2.0
        mid_price_chg[t] = mid_price_tick - prev_mid_price_tick

        # Calibrates A, k and the volatility every recalib_every steps over the last `window` steps.
        if t % recalib_every == 0 and t >= window - 1:
            tmp[:] = 0
            lambda_ = measure_trading_intensity(arrival_depth[t + 1 - window:t + 1], tmp)
            if len(lambda_) > 2:
                lambda_ = lambda_[:70] / (window / steps_per_s)
                x = ticks[:len(lambda_)]
                y = np.log(lambda_)
                ok = np.isfinite(y)
                if np.sum(ok) > 2:
                    k_, logA = linear_regression(x[ok], y[ok])
                    A = np.exp(logA)
                    k = -k_
            volatility = np.nanstd(mid_price_chg[t + 1 - window:t + 1]) * np.sqrt(steps_per_s)

        # GLFT quotes (ticks), skewed by the position in units of order_qty.
        c1, c2 = compute_coeff(gamma, gamma, delta, A, k)
        half_spread_tick = (c1 + delta / 2 * c2 * volatility) * adj1
        skew = c2 * volatility * adj2
        reservation_price_tick = mid_price_tick - skew * (position / order_qty)
        bid_price_tick = np.minimum(np.round(reservation_price_tick - half_spread_tick), best_bid_tick)
        ask_price_tick = np.maximum(np.round(reservation_price_tick + half_spread_tick), best_ask_tick)
        bid_price = bid_price_tick * tick_size
        ask_price = ask_price_tick * tick_size
        grid_interval = max(np.round(half_spread_tick) * tick_size, tick_size)
        if np.isfinite(grid_interval):
            bid_price = np.floor(bid_price / grid_interval) * grid_interval
            ask_price = np.ceil(ask_price / grid_interval) * grid_interval

        new_bid_orders = Dict.empty(np.uint64, np.float64)
        if position < max_position and np.isfinite(bid_price):
            for i in range(grid_num):
                bid_price_tick = round(bid_price / tick_size)
                new_bid_orders[uint64(bid_price_tick)] = bid_price
                bid_price -= grid_interval
        new_ask_orders = Dict.empty(np.uint64, np.float64)
        if position > -max_position and np.isfinite(ask_price):
            for i in range(grid_num):
                ask_price_tick = round(ask_price / tick_size)
                new_ask_orders[uint64(ask_price_tick)] = ask_price
                ask_price += grid_interval
        if len(new_bid_orders) > 0 or len(new_ask_orders) > 0:
            n_quoting_steps += 1

        order_values = orders.values()
        while order_values.has_next():
            order = order_values.get()
            if order.cancellable:
                if (order.side == BUY and order.order_id not in new_bid_orders) or (
                        order.side == SELL and order.order_id not in new_ask_orders):
                    hbt.cancel(asset_no, order.order_id, False)
                    n_cancel += 1
        for order_id, order_price in new_bid_orders.items():
            if order_id not in orders:
                hbt.submit_buy_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
                n_submit += 1
        for order_id, order_price in new_ask_orders.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, order_price, order_qty, GTX, LIMIT, False)
                n_submit += 1

        t += 1
        if t >= max_steps:
            break
    return t, n_submit, n_cancel, n_quoting_steps, A, k, volatility
"""


def build_backtest(a, data):
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(a.latency_ns, a.latency_ns)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(a.maker_fee, a.taker_fee)
        .tick_size(a.tick_size)
        .lot_size(a.lot_size)
        .last_trades_capacity(10_000)
    )
    if a.depth == "roivec":
        asset = asset.roi_lb(a.roi_lb).roi_ub(a.roi_ub)
        return ROIVectorMarketDepthBacktest([asset])
    return HashMapMarketDepthBacktest([asset])


def cmd_run(a):
    import importlib.util
    import numpy as np
    import numba
    import hftbacktest

    mod_path = a.out + ".strategy.py"
    with open(mod_path, "w") as f:
        f.write(STRATEGY)
    spec = importlib.util.spec_from_file_location("flashmm_hftbt_strategy", mod_path)
    strat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strat)

    t0 = time.perf_counter()
    data = np.load(a.npz)["data"]
    load_s = time.perf_counter() - t0
    rows = int(len(data))
    span_s = (int(data["local_ts"][-1]) - int(data["local_ts"][0])) / 1e9
    max_steps = int(span_s * 1e9 / a.interval_ns) + 100

    params = (a.interval_ns, a.window_steps, a.recalib_steps, a.order_qty, a.max_position, a.grid_num,
              a.gamma, a.delta, a.adj1, a.adj2, max_steps)

    # JIT warm-up on a slice (compilation is not part of the loop's wall time).
    warm = np.ascontiguousarray(data[: min(rows, a.warmup_rows)])
    t0 = time.perf_counter()
    hbt = build_backtest(a, warm)
    strat.gridtrading_glft_mm(hbt, *params)
    hbt.close()
    compile_s = time.perf_counter() - t0

    runs = []
    for i in range(a.repeat):
        t0 = time.perf_counter()
        hbt = build_backtest(a, data)
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        steps, n_submit, n_cancel, n_quoting, A, k, vol = strat.gridtrading_glft_mm(hbt, *params)
        loop_s = time.perf_counter() - t1
        sv = hbt.state_values(0)
        mid = (hbt.depth(0).best_bid + hbt.depth(0).best_ask) / 2.0
        run = {
            "loop_s": loop_s, "build_s": build_s, "steps": int(steps), "orders_submitted": int(n_submit),
            "orders_cancelled": int(n_cancel), "quoting_steps": int(n_quoting),
            "fills": int(sv.num_trades), "position": float(sv.position), "balance": float(sv.balance),
            "fee": float(sv.fee), "trading_volume": float(sv.trading_volume),
            "equity": float(sv.balance + sv.position * mid - sv.fee), "last_mid": float(mid),
            "A": float(A), "k": float(k), "volatility_ticks_per_sqrt_s": float(vol),
        }
        hbt.close()
        runs.append(run)
        print(f"hftbacktest run {i + 1}/{a.repeat}: loop {loop_s:.3f} s, {rows / loop_s:,.0f} rows/s, "
              f"{steps} steps, {n_submit} orders, {int(sv.num_trades)} fills", flush=True)

    loops = [r["loop_s"] for r in runs]
    result = {
        "hftbacktest_version": getattr(hftbacktest, "__version__", "unknown"),
        "numba_version": numba.__version__, "numpy_version": np.__version__,
        "python": sys.version.split()[0],
        "backtester": "ROIVectorMarketDepthBacktest" if a.depth == "roivec" else "HashMapMarketDepthBacktest",
        "rows": rows, "span_s": span_s, "npz_load_s": load_s, "jit_warmup_s": compile_s,
        "warmup_rows": int(len(warm)),
        "wall_s": min(loops), "wall_s_median": statistics.median(loops),
        "rows_per_s": rows / min(loops), "rows_per_s_median": rows / statistics.median(loops),
        "runs": runs,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--files", nargs="+", required=True)
    c.add_argument("--adapted", required=True)
    c.add_argument("--npz", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--buffer-size", type=int, default=5_000_000)
    r = sub.add_parser("run")
    r.add_argument("--npz", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--warmup-rows", type=int, default=200_000)
    r.add_argument("--depth", choices=("roivec", "hashmap"), default="roivec")
    r.add_argument("--roi-lb", type=float, default=40_000.0)
    r.add_argument("--roi-ub", type=float, default=90_000.0)
    r.add_argument("--tick-size", type=float, default=0.01)
    r.add_argument("--lot-size", type=float, default=0.00001)
    r.add_argument("--latency-ns", type=int, default=10_000_000)
    r.add_argument("--maker-fee", type=float, default=-0.00005)
    r.add_argument("--taker-fee", type=float, default=0.0007)
    r.add_argument("--interval-ns", type=int, default=100_000_000)
    r.add_argument("--window-steps", type=int, default=600)
    r.add_argument("--recalib-steps", type=int, default=50)
    r.add_argument("--order-qty", type=float, default=0.001)
    r.add_argument("--max-position", type=float, default=0.02)
    r.add_argument("--grid-num", type=int, default=1)
    r.add_argument("--gamma", type=float, default=0.05)
    r.add_argument("--delta", type=float, default=1.0)
    r.add_argument("--adj1", type=float, default=1.0)
    r.add_argument("--adj2", type=float, default=0.05)
    a = p.parse_args()
    if a.cmd == "convert":
        cmd_convert(a)
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
'''


# --------------------------------------------------------------------------------------------------
# Helpers for this (FlashMM-side) process: stdlib only, rich if present.
# --------------------------------------------------------------------------------------------------
def count_frames(files: list[Path]) -> dict[str, int]:
    """Raw frames by kind (the same counting for both sides' messages/s)."""
    c = {"frames": 0, "depth": 0, "trade": 0, "book_ticker": 0, "snapshot": 0, "other": 0}
    for path in files:
        with gzip.open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                c["frames"] += 1
                head = line[20:80]
                if b"@depth" in head:
                    c["depth"] += 1
                elif b"@trade" in head:
                    c["trade"] += 1
                elif b"@bookTicker" in head:
                    c["book_ticker"] += 1
                elif b"lastUpdateId" in head:
                    c["snapshot"] += 1
                else:
                    c["other"] += 1
    return c


def hftbt_side(args, files: list[Path], venv: Path) -> dict[str, Any]:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    script = work / "hftbt_side.py"
    script.write_text(HFTBT_SIDE)
    py = str(_venv_python(venv))
    env = _clean_env()
    env.setdefault("NUMBA_CACHE_DIR", str(work / "numba-cache"))

    conv_json = work / "convert.json"
    npz = work / "btcusdt_20240808-09.npz"
    for p in (conv_json, npz):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = _run([py, str(script), "convert", "--files", *map(str, files), "--adapted",
                 str(work / "adapted.gz"), "--npz", str(npz), "--out", str(conv_json)],
                args.timeout_convert, "hftbacktest conversion", env=env, cwd=str(work))
    conv_wall = time.perf_counter() - t0
    if not conv_json.exists() or not npz.exists():
        raise StepError(f"hftbacktest conversion wrote no result\n{_tail(proc.stdout + proc.stderr)}")
    conv = json.loads(conv_json.read_text())
    conv["wall_s_total"] = conv_wall
    _log(f"converted {conv['rows']:,} rows in {conv['convert_s']:.1f} s (adapter {conv['adapt_s']:.1f} s)")

    run_json = work / "run.json"
    run_json.unlink(missing_ok=True)
    cmd = [py, str(script), "run", "--npz", str(npz), "--out", str(run_json), "--repeat", str(args.repeat),
           "--depth", args.hftbt_depth, "--latency-ns", str(int(args.latency_ms * 1e6)),
           "--interval-ns", str(int(args.quote_interval_ms * 1e6)),
           "--window-steps", str(int(round(args.glft_window_s * 1000 / args.quote_interval_ms))),
           "--recalib-steps", str(max(1, int(round(5000 / args.quote_interval_ms)))),
           "--order-qty", str(args.order_qty), "--max-position", str(args.order_qty * args.max_position_orders),
           "--grid-num", str(args.grid_num), "--gamma", str(args.glft_gamma), "--adj1", str(args.glft_adj1),
           "--adj2", str(args.glft_adj2)]
    proc = _run(cmd, args.timeout_run, "hftbacktest GLFT backtest", env=env, cwd=str(work))
    if not run_json.exists():
        raise StepError(f"hftbacktest backtest wrote no result\n{_tail(proc.stdout + proc.stderr)}")
    run = json.loads(run_json.read_text())
    return {"conversion": conv, "backtest": run, "stdout_tail": _tail(proc.stdout, 1500)}


def find_flashmm(explicit: str | None) -> Path | None:
    cands = [Path(explicit)] if explicit else [ROOT / ".venv" / "bin" / "flashmm", Path("/tmp/probe-venv/bin/flashmm")]
    for c in cands:
        if c.exists():
            return c
    return None


def flashmm_side(args, files: list[Path]) -> dict[str, Any]:
    exe = find_flashmm(args.flashmm)
    if exe is None:
        raise StepError("no flashmm executable: looked for <repo>/.venv/bin/flashmm and /tmp/probe-venv/bin/flashmm "
                        "(or pass --flashmm PATH)")
    # `--data` is either repeatable (--data F1 --data F2) or takes several values (--data F1 F2): ask --help.
    try:
        helptext = subprocess.run([str(exe), "bench", "backtest", "--help"], capture_output=True, text=True,
                                  timeout=120, cwd=str(ROOT)).stdout
    except (subprocess.TimeoutExpired, OSError):
        helptext = ""
    if "[DATA ...]" in helptext:
        data_args = ["--data", *map(str, files)]
    else:
        data_args = [a for f in files for a in ("--data", str(f))]
    with tempfile.TemporaryDirectory(prefix="flashmm-bt-") as td:
        out = Path(td) / "flashmm.json"
        # timed as hftbacktest's side is (best and median of --repeat runs), where this build has --repeat
        repeat = ["--repeat", str(args.repeat)] if "--repeat" in helptext else []
        cmd = [str(exe), "bench", "backtest", *data_args, "--quote-interval-ms",
               _num(args.quote_interval_ms), *repeat, "--json", str(out)]
        t0 = time.perf_counter()
        try:
            proc = _run(cmd, args.timeout_flashmm, "flashmm bench backtest", cwd=str(ROOT))
        except StepError as e:
            msg = str(e)
            if "invalid choice" in msg and "backtest" in msg:
                msg = ("`flashmm bench backtest` does not exist in this build yet (argparse: invalid choice).\n"
                       + msg)
            raise StepError(msg) from None
        wall = time.perf_counter() - t0
        if not out.exists():
            raise StepError(f"flashmm bench backtest exited 0 but wrote no {out}\n{_tail(proc.stdout + proc.stderr)}")
        try:
            res = json.loads(out.read_text())
        except ValueError as e:
            raise StepError(f"flashmm bench backtest wrote invalid JSON: {e}") from None
    missing = [k for k in ("rows", "rows_per_s", "messages", "messages_per_s", "wall_s") if k not in res]
    if missing:
        raise StepError(f"flashmm bench backtest JSON lacks {missing} (contract: rows, rows_per_s, messages, "
                        f"messages_per_s, wall_s); keys present: {sorted(res)[:30]}")
    side = {"result": res, "command": shlex.join(cmd), "process_wall_s": wall, "executable": str(exe)}
    # Optional (beyond the contract): load_s = reading the raw gz into FlashMM's event array. Only a cache miss
    # measures parsing, so only then is load_s + wall_s comparable with hftbacktest's converter + loop.
    load_s = res.get("load_s")
    cache = res.get("cache", (res.get("data") or {}).get("cache"))
    if isinstance(load_s, (int, float)) and cache != "hit":
        e2e = float(load_s) + float(res["wall_s"])
        side["end_to_end"] = {"wall_s": e2e, "rows_per_s": float(res["rows"]) / e2e if e2e else None,
                              "what": f"FlashMM load_s (raw gz -> event array, cache {cache}) + wall_s"}
    return side


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def print_table(report: dict[str, Any]) -> None:
    h = report.get("hftbacktest") or {}
    hb = h.get("backtest") or {}
    hc = h.get("conversion") or {}
    he = h.get("end_to_end") or {}
    fr = (report.get("flashmm") or {}).get("result") or {}
    fe = (report.get("flashmm") or {}).get("end_to_end") or {}
    ratio = report.get("ratio_flashmm_over_hftbacktest") or {}
    best = min(hb.get("runs") or [{}], key=lambda r: r.get("loop_s", float("inf")))
    rows = [
        ("rows", hb.get("rows"), fr.get("rows"), None),
        ("wall s (backtest loop)", hb.get("wall_s"), fr.get("wall_s"), ratio.get("wall_s")),
        ("rows/s (backtest loop)", hb.get("rows_per_s"), fr.get("rows_per_s"), ratio.get("rows_per_s")),
        ("messages (raw frames)", (report.get("raw_frames") or {}).get("frames"), fr.get("messages"), None),
        ("messages/s", report.get("hftbacktest_messages_per_s"), fr.get("messages_per_s"),
         ratio.get("messages_per_s")),
        ("wall s, raw gz -> result", he.get("wall_s"), fe.get("wall_s"), ratio.get("end_to_end_wall_s")),
        ("rows/s, raw gz -> result", he.get("rows_per_s"), fe.get("rows_per_s"), ratio.get("end_to_end_rows_per_s")),
        ("rows/s, median of the runs", hb.get("rows_per_s_median"), fr.get("rows_per_s_median"),
         ratio.get("rows_per_s_median")),
        ("loop wall s, median", hb.get("wall_s_median"),
         statistics.median(fr["wall_s_runs"]) if fr.get("wall_s_runs") else None, None),
        ("timed runs", len(hb.get("runs") or []) or None, fr.get("repeat"), None),
        ("conversion s (their converter)", hc.get("convert_s"), None, None),
        ("JIT warm-up s (not timed)", hb.get("jit_warmup_s"), None, None),
        ("orders / fills (best run)",
         f"{best['orders_submitted']:,} / {best['fills']:,}" if "fills" in best else None, None, None),
    ]
    title = (f"Backtest throughput, Binance spot BTCUSDT (~11 min), "
             f"requote every {_num(report['config']['quote_interval_ms'])} ms")
    hname = f"hftbacktest {report.get('versions', {}).get('hftbacktest', '?')}"
    hstatus = hname + (" (FAILED)" if "error" in report.get("hftbacktest_status", {}) else "")
    fst = report.get("flashmm_status", {})
    fstatus = "FlashMM" + (" (FAILED)" if "error" in fst else " (skipped)" if fst.get("skipped") else "")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(f"{'':32}{hstatus:>24}{fstatus:>20}{'FlashMM/hftbt':>15}")
        for name, a, b, r in rows:
            print(f"{name:32}{_fmt(a):>24}{_fmt(b):>20}{_fmt(r) if r is not None else '':>15}")
    else:
        t = Table(title=title)
        t.add_column("", no_wrap=True)
        t.add_column(hstatus, justify="right", no_wrap=True)
        t.add_column(fstatus, justify="right", no_wrap=True)
        t.add_column("FlashMM / hftbt", justify="right", no_wrap=True)
        for name, a, b, r in rows:
            t.add_row(name, _fmt(a), _fmt(b), _fmt(r) if r is not None else "")
        Console(width=max(100, shutil.get_terminal_size((100, 20)).columns)).print(t)
    for side in ("hftbacktest_status", "flashmm_status"):
        err = report.get(side, {}).get("error")
        if err:
            print(f"\n{side.split('_')[0]} side FAILED:\n{err}", file=sys.stderr)


def default_data_dir() -> Path:
    env = os.environ.get("FLASHMM_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding binance-spot-btcusdt-20240808/ (default $FLASHMM_DATA_DIR or ../shared/data)")
    p.add_argument("--hftbt-venv", type=Path, default=DEFAULT_VENV, help=f"throwaway venv (default {DEFAULT_VENV})")
    p.add_argument("--hftbt-spec", default="hftbacktest", help="pip requirement (default: latest hftbacktest)")
    p.add_argument("--skip-install", action="store_true", help="never run pip; fail if the venv does not work")
    p.add_argument("--reinstall", action="store_true", help="recreate the venv even if it works")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"scratch folder (default {DEFAULT_WORKDIR})")
    p.add_argument("--repeat", type=int, default=5, help="timed hftbacktest runs (best and median reported)")
    p.add_argument("--quote-interval-ms", type=float, default=100.0)
    p.add_argument("--latency-ms", type=float, default=10.0, help="hftbacktest constant order entry/response latency")
    p.add_argument("--hftbt-depth", choices=("roivec", "hashmap"), default="roivec",
                   help="ROIVectorMarketDepthBacktest (the GLFT tutorial's) or HashMapMarketDepthBacktest")
    p.add_argument("--glft-window-s", type=float, default=60.0,
                   help="GLFT calibration window (tutorial: 600 s; the recording is only ~650 s long)")
    p.add_argument("--grid-num", type=int, default=1, help="orders per side (tutorial: 20; FlashMM quotes 1)")
    p.add_argument("--glft-gamma", type=float, default=0.05, help="GLFT risk aversion (tutorial 0.05)")
    p.add_argument("--glft-adj1", type=float, default=0.1,
                   help="half-spread multiplier (tutorial 1.0: on BTCUSDT at tick 0.01 that quotes ~$50 from the "
                        "mid and never fills in these 11 minutes; 0.1 trades)")
    p.add_argument("--glft-adj2", type=float, default=0.05, help="skew multiplier (tutorial 0.05)")
    p.add_argument("--order-qty", type=float, default=0.001, help="BTC per order")
    p.add_argument("--max-position-orders", type=float, default=20.0, help="max |position| in orders")
    p.add_argument("--flashmm", default=None, help="flashmm executable (default <repo>/.venv/bin/flashmm, "
                                                   "then /tmp/probe-venv/bin/flashmm)")
    p.add_argument("--skip-flashmm", action="store_true", help="only the hftbacktest side")
    p.add_argument("--timeout-install", type=float, default=1200.0)
    p.add_argument("--timeout-convert", type=float, default=900.0)
    p.add_argument("--timeout-run", type=float, default=900.0)
    p.add_argument("--timeout-flashmm", type=float, default=900.0)
    p.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    data_dir = (args.data_dir or default_data_dir()) / BINANCE_FOLDER
    files = [data_dir / name for name in FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"data missing: {', '.join(missing)} (set --data-dir or FLASHMM_DATA_DIR)", file=sys.stderr)
        return 2
    provenance = (data_dir / "PROVENANCE.md").read_text().strip() if (data_dir / "PROVENANCE.md").exists() else ""

    report: dict[str, Any] = {
        "benchmark": "backtest throughput, FlashMM vs hftbacktest",
        "command_line": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench_vs_hftbacktest.py", *argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"files": [str(f) for f in files], "provenance": provenance,
                 "from_hftbacktest_examples": "nkaz001/hftbacktest" in provenance},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "config": {"quote_interval_ms": args.quote_interval_ms, "latency_ms": args.latency_ms,
                   "hftbt_depth": args.hftbt_depth, "glft_window_s": args.glft_window_s,
                   "grid_num": args.grid_num, "order_qty": args.order_qty, "glft_gamma": args.glft_gamma,
                   "glft_adj1": args.glft_adj1, "glft_adj2": args.glft_adj2,
                   "max_position": args.order_qty * args.max_position_orders, "repeat": args.repeat,
                   "tick_size": 0.01, "lot_size": 0.00001, "queue_model": "RiskAdverseQueueModel",
                   "exchange_model": "NoPartialFillExchange", "fees": "maker -0.005%, taker 0.07% (tutorial's)"},
        "versions": {"python_driver": platform.python_version()},
    }
    _log("counting raw frames")
    report["raw_frames"] = count_frames(files)

    # hftbacktest side
    rc = 0
    try:
        ver = ensure_venv(args.hftbt_venv, args.hftbt_spec, args.skip_install, args.reinstall, args.timeout_install)
        report["versions"]["hftbacktest"] = ver
        report["hftbacktest"] = hftbt_side(args, files, args.hftbt_venv)
        b = report["hftbacktest"]["backtest"]
        report["versions"].update({"hftbacktest": b["hftbacktest_version"], "numba": b["numba_version"],
                                   "numpy_in_hftbt_venv": b["numpy_version"], "python_hftbt_venv": b["python"]})
        report["hftbacktest_messages_per_s"] = report["raw_frames"]["frames"] / b["wall_s"]
        c = report["hftbacktest"]["conversion"]
        build_loop = min(r["build_s"] + r["loop_s"] for r in b["runs"])
        e2e = c["convert_s"] + b["npz_load_s"] + build_loop
        report["hftbacktest"]["end_to_end"] = {
            "wall_s": e2e, "rows_per_s": b["rows"] / e2e,
            "what": "binancefutures.convert (raw gz -> event array, in memory) + np.load of the npz + backtester "
                    "construction + loop (best run); excludes the spot->futures field adapter, npz saving "
                    "and JIT compilation",
        }
        report["hftbacktest_status"] = {"ok": True}
    except StepError as e:
        report["hftbacktest_status"] = {"error": str(e)}
        rc = 1

    # FlashMM side
    if args.skip_flashmm:
        report["flashmm_status"] = {"skipped": True}
    else:
        try:
            report["flashmm"] = flashmm_side(args, files)
            report["flashmm_status"] = {"ok": True}
        except StepError as e:
            report["flashmm_status"] = {"error": str(e)}
            rc = rc or 3

    if "hftbacktest" in report and "flashmm" in report:
        hb, fr = report["hftbacktest"]["backtest"], report["flashmm"]["result"]
        def _ratio(a, b):
            try:
                return float(a) / float(b) if float(b) else None
            except (TypeError, ValueError):
                return None
        report["ratio_flashmm_over_hftbacktest"] = {
            "rows_per_s": _ratio(fr.get("rows_per_s"), hb["rows_per_s"]),
            "messages_per_s": _ratio(fr.get("messages_per_s"), report["hftbacktest_messages_per_s"]),
            "wall_s": _ratio(fr.get("wall_s"), hb["wall_s"]),
            "rows_per_s_median": _ratio(fr.get("rows_per_s_median"), hb["rows_per_s_median"]),
        }
        fe = report["flashmm"].get("end_to_end")
        if fe:
            he = report["hftbacktest"]["end_to_end"]
            report["ratio_flashmm_over_hftbacktest"]["end_to_end_rows_per_s"] = _ratio(fe["rows_per_s"],
                                                                                       he["rows_per_s"])
            report["ratio_flashmm_over_hftbacktest"]["end_to_end_wall_s"] = _ratio(fe["wall_s"], he["wall_s"])

    report["notes"] = [
        "rows: hftbacktest's are the rows of its converted event array: one per depth level in a diff or "
        "snapshot, one per trade, one DEPTH_CLEAR per snapshot side; correct_event_order splits an event whose "
        "exchange and local orders differ into an exchange-only and a local-only row (see conversion."
        "source_events / rows_exch_only). bookTicker frames (73% of the frames) never reach it. FlashMM's rows "
        "are its own event array's: one per level, trade, or BBO side, so it keeps the bookTicker frames as BBO "
        "rows. Row counts therefore differ; messages/s divides the same recording's frame count "
        "(raw_frames.frames) for hftbacktest by its loop time, FlashMM reports its own message count.",
        "wall s (backtest loop): hftbacktest's is the strategy call only (the njit GLFT loop driving the Rust "
        "backtester); npz loading, backtester construction and JIT compilation (jit_warmup_s, on a slice) are "
        "excluded. FlashMM's is the wall_s that `flashmm bench backtest` reports (the replay with a loaded event "
        "array, no model). 'raw gz -> result' adds the parsing: hftbacktest's converter + np.load + "
        "construction; FlashMM's load_s (only when its cache missed).",
        ADAPTER_NOTE,
        "Strategy: hftbacktest's GLFT tutorial (examples/GLFT Market Making Model and Grid Trading.ipynb, "
        "gridtrading_glft_mm): trading-intensity fit (A, k) from market-trade arrival depth, volatility from "
        "100 ms mid changes, c1/c2 from GLFT eqs. 4.6/4.7, GTX limit orders keyed by price tick, cancels for "
        "what left the grid. Changes, all options: calibration window --glft-window-s (tutorial 600 s; the "
        "recording is ~650 s), recalibration every 5 s, grid_num 1 (tutorial 20), adj1 0.1 (tutorial 1.0 "
        "quotes ~$50 away on BTCUSDT at tick 0.01 and never fills here), skew by position/order_qty, "
        "non-finite log-intensity bins skipped in the fit, no Recorder (state_values read at the end). "
        "It quotes nothing until the first calibration window has elapsed. FlashMM's strategy is its own.",
        "Execution models differ: hftbacktest uses constant order latency, RiskAdverseQueueModel and no "
        "partial fills; FlashMM uses its replay venue's fill model. Fills are reported for sanity, not parity.",
        "Both sides run single-threaded on the same machine; hftbacktest's core is compiled Rust driven by "
        "numba-compiled Python, FlashMM is Python.",
    ]
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
        _log(f"wrote {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
