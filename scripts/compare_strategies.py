#!/usr/bin/env python3
"""Strategy comparison you can rerun: FlashMM against hftbacktest's market makers, same data, same rules.

    scripts/compare_strategies.py [--data PATH...]... [--from-fraction 0.7] [--quote-interval-ms 100]
                                  [--config PATH] [--model PATH|none] [--strategies flashmm symmetric glft obi]
                                  [--skip-hftbacktest] [--skip-install] [--json OUT]

In one process tree, on the same data, for each data set (default: every market folder of
$FLASHMM_DATA_DIR or ../shared/data; the 49-second LOBSTER parser fixture only when named with --data):
  flashmm    FlashMM's configuration as given (default: the built-in defaults, shipped model), the engine and
             replay venue `flashmm backtest` runs (research.backtest.run_one, in this process);
  symmetric  FlashMM's baseline, `--strategy symmetric` (fixed half-spread, no skew, no model);
  glft       hftbacktest 2.4's "GLFT Market Making Model and Grid Trading" tutorial strategy;
  obi        hftbacktest 2.4's "Market Making with Alpha - Order Book Imbalance" example, its price
             parameters in bps of the mid (see scripts/hftbt_mm.py).
hftbacktest is never a dependency of FlashMM: it is pip-installed into a throwaway venv (scripts/_hftbt_venv.py,
default /tmp/flashmm-hftbt-venv) and run only as a subprocess of that venv's python (scripts/hftbt_mm.py).

Identical data. The data set is read once by FlashMM's reader (flashmm.data.loader.load_configured, as
`flashmm backtest` reads it) and replayed once through FlashMM's own L2Book as the engine applies it
(snapshots, diffs and, with [replay].use_book_ticker, the real-time best bid/offer); what the book did is
written as hftbacktest's event rows (flashmm.research.compare.book_replay): a snapshot clears the whole book
and lists its levels, every level a diff or a top changed is a depth row, trades are trade rows, one
timestamp for exchange and local time (no feed latency, as in FlashMM's replay). The conversion is checked
on every run: hftbacktest's best bid / ask at each of its steps is compared with FlashMM's book at the same
instant (`conversion_check` in the JSON).

Matched, taken from FlashMM's configuration unless overridden here: order size in quote currency
([strategy].order_amount_usdc), position limit in quote currency ([risk].max_position_usdc; hftbacktest's
strategies cut a side's grid so position + resting orders stay inside it, as FlashMM's risk layer does),
order latency ([replay].latency_ms, decision to venue; responses reach the strategy at once in both),
maker / taker fees ([replay].*_fee_bps), tick, lot and contract terms (the data set's instrument; an inverse
contract is hftbacktest's inverse asset), requote interval (--quote-interval-ms: FlashMM's
[strategy].quote_interval_ms is set to it, hftbacktest steps by it). Fill rules are as close as the engines
allow: hftbacktest's power-1 probabilistic queue model (a cancel ahead of us in proportion to the queue
ahead, as FlashMM's replay splits cancels), post-only quotes in both (GTX; FlashMM's replay rejects a quote
that would cross on arrival). Not matched: hftbacktest fills an order whole once the queue ahead is gone
(its partial-fill exchange in 2.4.4 stops with InvalidOrderStatus, nkaz001/hftbacktest#312), FlashMM fills
what the trade leaves.

Scored on the later part of each recording: FlashMM trades from --from-fraction of it on
(`flashmm backtest --trade-from-fraction`), hftbacktest's strategies follow the market from the start (their
calibration windows warm up) and place orders only from the same instant.

Definitions (one function for every strategy and engine, flashmm.research.compare.score_fills):
  realised spread at 5 s, per fill = 2 x side x (mid(t+5s) - fill price) / mid(t) x 1e4 bps, side +1 buy / -1
    sell, mid(t) the market mid just before the fill, mid(t+5s) the mid 5 s later (FlashMM's L2Book replay
    of the recording); the size-weighted mean over fills and its 95 % percentile-bootstrap interval over
    fills (iid resampling, 2,000 draws; fills cluster, so the interval is if anything too narrow);
  PnL = cash + position at the final mid - fees = spread capture (each fill's edge against mid(t)) +
    inventory (the rest) + fees, by FlashMM's own function (core.state.fill_cash_and_edge), in the
    settlement currency (the base for an inverse contract) and valued in the quote currency at the final mid;
  max |inventory| = max |exposure| / capital ([risk].capital_usdc) x 100 over the scored part (exposure =
    position x mid, or contracts x multiplier for an inverse contract);
  orders per fill = orders placed / fill events.
Each engine's own figures are kept beside them in the JSON (`engine_own`) as a cross-check.

Exit status: 0 everything ran; 1 the hftbacktest side failed (FlashMM's figures are still printed and
written); 2 bad arguments or a data set missing; 3 a FlashMM run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hftbt_venv  # noqa: E402  (the throwaway-venv helpers, shared with bench_vs_hftbacktest.py)
from _hftbt_venv import DEFAULT_VENV, StepError, _clean_env, _log, _run, _tail, _venv_python, ensure_venv  # noqa: E402

_hftbt_venv.LOG_PREFIX = "compare"

STRATEGIES = ("flashmm", "symmetric", "glft", "obi")
FLASHMM_STRATEGIES = ("flashmm", "symmetric")
HFTBT_STRATEGIES = ("glft", "obi")
LABELS = {"flashmm": "FlashMM default", "symmetric": "FlashMM symmetric", "glft": "hftbacktest GLFT",
          "obi": "hftbacktest OBI"}
DEFAULT_WORKDIR = Path("/tmp/flashmm-compare-work")
HFTBT_SPEC = "hftbacktest>=2.4,<2.5"
FIXTURES = {"lobster-aapl-20120621-head": "a 49-second parser fixture: the scored part (the last 30 %) is "
                                          "15 s, too short for 5 s markouts to mean anything; pass it with "
                                          "--data to include it"}


class DataSetSkipped(Exception):
    """A data set that cannot be compared today; the message says why, `short` in a few words."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.short = short


def default_data_dir() -> Path:
    env = os.environ.get("FLASHMM_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def discover(data_dir: Path) -> tuple[list[list[str]], dict[str, str]]:
    """Every market folder of the data directory (sorted), less the fixtures (returned with the reason)."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} is missing (set --data-dir or FLASHMM_DATA_DIR)")
    sets, excluded = [], {}
    for d in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        if d.name in FIXTURES:
            excluded[d.name] = FIXTURES[d.name]
        else:
            sets.append([str(d)])
    return sets, excluded


def check_comparable(es: Any, name: str) -> None:
    """Refuse what cannot be compared honestly (raises DataSetSkipped with the reason)."""
    rejects = sum(es.rejects.values())
    kinds = es.events["kind"] if len(es.events) else np.zeros(0)
    if rejects > es.messages:
        raise DataSetSkipped(f"{name}: the reader rejected more than it kept ({rejects:,} rejects "
                             f"{dict(es.rejects)} against {es.messages:,} messages)", "the reader rejected most of it")
    if not np.any(kinds == 2):  # KIND_TRADE
        raise DataSetSkipped(f"{name}: no trades in the data", "no trades")
    if np.count_nonzero(kinds <= 1) == 0:  # SNAP or DIFF
        raise DataSetSkipped(f"{name}: no book data", "no book data")


# ---- FlashMM side (this process) ---------------------------------------------------------------------
def flashmm_config(args: argparse.Namespace) -> Any:
    from flashmm.config import load_config

    cfg = load_config(args.config or os.environ.get("FLASHMM_CONFIG") or None)
    strat = {"quote_interval_ms": args.quote_interval_ms}
    if args.order_usd is not None:
        strat["order_amount_usdc"] = args.order_usd
    risk = {}
    if args.max_position_usd is not None:
        risk["max_position_usdc"] = args.max_position_usd
    replay = {k: v for k, v in (("latency_ms", args.latency_ms), ("maker_fee_bps", args.maker_fee_bps),
                                ("taker_fee_bps", args.taker_fee_bps)) if v is not None}
    update: dict[str, Any] = {"strategy": cfg.strategy.model_copy(update=strat)}
    if risk:
        update["risk"] = cfg.risk.model_copy(update=risk)
    if replay:
        update["replay"] = cfg.replay.model_copy(update=replay)
    if args.model is not None:
        update["model"] = cfg.model.model_copy(update={"path": args.model})
    return cfg.model_copy(update=update)


def run_flashmm(cfg: Any, strategy: str, es: Any, timeline: Any, t0: int, t1: int, args: argparse.Namespace
                ) -> dict[str, Any]:
    from flashmm.research.backtest import run_one, with_strategy
    from flashmm.research.compare import flashmm_fills, score_fills

    c = with_strategy(cfg, strategy)
    w0 = time.perf_counter()
    section, engine = run_one(c, es, None, args.from_fraction)
    wall = time.perf_counter() - w0
    fills = flashmm_fills(engine.portfolio.fills)
    metrics = score_fills(fills, timeline, t0, t1, es.instrument, c.risk.capital_usdc, section["orders_placed"],
                          args.horizon_s, args.bootstrap, args.seed)
    # FlashMM's own report, kept beside ours (ours: one definition for every engine; its realised spread is
    # the unweighted mean per fill with a normal interval, against the engine's own mid)
    own = {k: section.get(k) for k in (
        "pnl_usdc", "pnl_settle", "pnl_breakdown", "fills", "orders_placed", "orders_filled", "orders_cancelled",
        "orders_rejected", "orders_per_fill", "post_only_rejects", "taker_share_pct", "effective_spread_bps",
        "realised_spread_bps", "adverse_selection_bps", "markout_bps", "time_at_touch_pct", "mid_gap_at_fills_bps",
        "quoting_time_s", "market_spread_bps", "our_spread_bps", "model", "breakers", "book_rejects")}
    own["max_abs_inventory_pct"] = section["inventory"]["max_abs_inventory_pct"]
    own["taker_fills"] = int(sum(1 for f in engine.portfolio.fills if not f.is_maker))
    own["pnl_difference_vs_ours"] = round(float(section["pnl_usdc"]) - metrics["pnl"]["total"], 6)
    return {"engine": "flashmm", "strategy": c.strategy.model, "wall_s": round(wall, 3), "metrics": metrics,
            "engine_own": own}


# ---- hftbacktest side (subprocess of the throwaway venv) ---------------------------------------------
def hftbt_params(args: argparse.Namespace, cfg: Any, es: Any, timeline: Any, t0: int, out_prefix: Path) -> dict:
    inst = es.instrument
    half = args.obi_half_spread_bps or cfg.strategy.symmetric_half_spread_bps
    mids = (timeline.bid[timeline.valid] + timeline.ask[timeline.valid]) / 2.0 * timeline.tick
    warm_s = (t0 - int(es.events["ts_ns"][0])) / 1e9
    tick = float(inst.price_tick)
    return {
        "tick_size": tick, "lot_size": float(inst.lot_size), "inverse": bool(inst.inverse),
        "multiplier": float(inst.multiplier),
        "latency_ns": int(round(cfg.replay.latency_ms * 1e6)), "response_latency_ns": 0,
        "maker_fee_bps": cfg.replay.maker_fee_bps, "taker_fee_bps": cfg.replay.taker_fee_bps,
        # the ROI vectors cover the recording's mids +-10 % (levels beyond are ignored by hftbacktest)
        "roi_lb": float(np.floor(mids.min() * 0.9 / tick) * tick), "roi_ub": float(np.ceil(mids.max() * 1.1 / tick) * tick),
        "queue_model": args.hftbt_queue_model, "exchange": args.hftbt_exchange,
        "interval_ns": int(round(args.quote_interval_ms * 1e6)), "trade_from_ns": int(t0),
        "order_usd": cfg.strategy.order_amount_usdc, "max_position_usd": cfg.risk.max_position_usdc,
        "out_prefix": str(out_prefix),
        "run": [s for s in args.strategies if s in HFTBT_STRATEGIES],
        "strategies": {
            "glft": {"window_s": min(args.glft_window_s, warm_s), "recalib_s": 5.0,
                     "grid_num": args.glft_grid_num or cfg.strategy.order_levels, "gamma": args.glft_gamma,
                     "delta": args.glft_delta, "adj1": args.glft_adj1, "adj2": args.glft_adj2},
            "obi": {"window_s": min(args.obi_window_s, warm_s), "looking_depth": args.obi_looking_depth,
                    # the example's ratios (half spread 80, c1 160, skew 3.5: USD on BTCUSDT) at our half spread
                    "half_spread_bps": half,
                    "c1_bps": args.obi_c1_bps if args.obi_c1_bps is not None else half * 160 / 80,
                    "skew_bps": args.obi_skew_bps if args.obi_skew_bps is not None else half * 3.5 / 80,
                    "grid_num": 1},
        },
    }


def run_hftbacktest(args: argparse.Namespace, cfg: Any, es: Any, rows: np.ndarray, conv: dict[str, Any],
                    timeline: Any, t0: int, t1: int, name: str) -> dict[str, Any]:
    from flashmm.core.state import fill_cash_and_edge
    from flashmm.research.compare import FILL_DTYPE, compare_tops, score_fills

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows_path = work / f"{name}.rows.npy"
    np.save(rows_path, rows)
    prefix = work / name
    p = hftbt_params(args, cfg, es, timeline, t0, prefix)
    params_path = work / f"{name}.params.json"
    params_path.write_text(json.dumps(p, indent=1))
    out_json = work / f"{name}.hftbt.json"
    out_json.unlink(missing_ok=True)
    env = _clean_env()
    env.setdefault("NUMBA_CACHE_DIR", str(work / "numba-cache"))
    py = str(_venv_python(args.hftbt_venv))
    cmd = [py, str(ROOT / "scripts" / "hftbt_mm.py"), "--rows", str(rows_path), "--params", str(params_path),
           "--out", str(out_json)]
    w0 = time.perf_counter()
    proc = _run(cmd, args.timeout_run, f"hftbacktest on {name}", env=env, cwd=str(work))
    wall = time.perf_counter() - w0
    if not out_json.exists():
        raise StepError(f"hftbacktest on {name} wrote no result\n{_tail(proc.stdout + proc.stderr)}")
    res = json.loads(out_json.read_text())
    out: dict[str, Any] = {"conversion": conv, "process_wall_s": round(wall, 3), "versions": {
        k: res[k] for k in ("hftbacktest_version", "numba_version", "numpy_version", "python")},
        "params": p, "strategies": {}}
    inst = es.instrument
    tick, lot = float(inst.price_tick), float(inst.lot_size)
    for strat, r in res["strategies"].items():
        d = np.load(r["npz"])
        f = d["fills"]
        fills = np.zeros(len(f), FILL_DTYPE)
        if len(f):
            fills["ts_ns"] = d["fills_ts"]
            fills["side"] = f[:, 0].astype(np.int8)
            fills["price_ticks"] = np.round(f[:, 1] / tick)
            fills["lots"] = np.round(f[:, 2] / lot)
            # GTX quotes fill as makers only; the fee is on the settlement-currency notional, as FlashMM's replay
            fills["fee"] = [inst.notional(p, n) * cfg.replay.maker_fee_bps / 1e4
                            for p, n in zip(fills["price_ticks"].tolist(), fills["lots"].tolist(), strict=True)]
        metrics = score_fills(fills, timeline, t0, t1, inst, cfg.risk.capital_usdc, r["orders_submitted"],
                              args.horizon_s, args.bootstrap, args.seed)
        check = compare_tops(timeline, d["samp_ts"], d["samp_bid"], d["samp_ask"])
        own = {k: r[k] for k in r if k not in ("npz",)}
        st = r["state"]
        cash = sum(fill_cash_and_edge(inst, int(sd), p, n, p)[0] for sd, p, n in zip(
            fills["side"].tolist(), fills["price_ticks"].tolist(), fills["lots"].tolist(), strict=True))
        # hftbacktest's inverse account keeps the balance with the opposite sign (equity = -balance - ...)
        balance = -st["balance"] if inst.inverse else st["balance"]
        position = metrics["position_end_lots"] * lot
        own["account_check"] = {
            # our fills against hftbacktest's own account (equal unless partial fills are on: #299, #316)
            "position_from_fills": position, "position_hftbacktest": st["position"],
            "cash_from_fills": cash, "balance_hftbacktest": st["balance"],
            "equal": bool(abs(position - st["position"]) <= lot / 2
                          and abs(cash - balance) <= 1e-6 * max(1.0, abs(balance))),
        }
        out["strategies"][strat] = {"engine": "hftbacktest", "wall_s": round(r["wall_s"], 3), "metrics": metrics,
                                    "engine_own": own, "conversion_check": check}
    return out


# ---- output -----------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = "{:+.2f}") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return fmt.format(v + 0.0 if abs(v) >= 0.005 else 0.0)  # no "-0.00"


def table_rows(ds: dict[str, Any]) -> list[list[str]]:
    out = []
    for s in STRATEGIES:
        r = ds.get("strategies", {}).get(s)
        if r is None:
            continue
        if "error" in r:
            out.append([LABELS[s], "FAILED", "", "", "", "", ""])
            continue
        m = r["metrics"]
        pnl = m["pnl"]
        pnl_txt = _f(pnl["total"])
        if ds.get("inverse"):  # PnL settles in the base: show it beside its value in the quote currency
            pnl_txt += f" ({pnl['settle']['total']:+.8f} {pnl['settle_currency']})"
        rs = m["realised_spread"]
        ci = rs["ci95"]
        rs_txt = "n/a" if rs["bps"] is None else (f"{rs['bps']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        out.append([
            LABELS[s], pnl_txt,
            f"{_f(pnl['spread_capture'])} / {_f(pnl['inventory'])} / {_f(pnl['fees'])}",
            f"{m['fills']:,}", rs_txt, _f(m["max_abs_inventory_pct"], "{:.2f}"), _f(m["orders_per_fill"], "{:.1f}"),
        ])
    return out


HEADERS = ["strategy", "PnL (quote ccy)", "spread / inventory / fees", "fills", "realised spread 5 s, bps [95 % CI]",
           "max |inv| %", "orders / fill"]


def print_report(report: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        Console = None
    width = max(150, shutil.get_terminal_size((150, 20)).columns)
    for ds in report["data_sets"]:
        title = f"{ds['name']} — scored {ds.get('scored_s', 0):,.0f} s of {ds.get('duration_s', 0):,.0f} s"
        if "skipped" in ds:
            print(f"{ds['name']}: not compared: {ds['skipped']}")
            continue
        rows = table_rows(ds)
        if Console is None:
            print(title)
            print(" | ".join(HEADERS))
            for r in rows:
                print(" | ".join(r))
        else:
            t = Table(title=title, title_justify="left")
            for i, h in enumerate(HEADERS):
                t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
            for r in rows:
                t.add_row(*r)
            Console(width=width).print(t)
        for s in HFTBT_STRATEGIES:
            o = ds.get("strategies", {}).get(s, {}).get("engine_own")
            if s == "glft" and o:
                print(f"  hftbacktest GLFT calibrated: A {o['A']:.3g}, k {o['k']:.3g} (per half tick), sigma "
                      f"{o['volatility_ticks_per_sqrt_s']:.3g} ticks/sqrt(s); mean half spread quoted "
                      f"{_f(o['mean_half_spread_bps'], '{:.2f}')} bps")
        chk = ds.get("conversion_check")
        if chk:
            print(f"  conversion check: hftbacktest's best bid/ask equal FlashMM's at {chk['equal']:,} of "
                  f"{chk['both_usable']:,} steps ({chk['equal_pct']} %)")
    for name, why in report.get("excluded", {}).items():
        print(f"{name}: excluded: {why}")
    for side in ("hftbacktest_status", "flashmm_status"):
        err = report.get(side, {}).get("error")
        if err:
            print(f"\n{side.split('_')[0]} side FAILED:\n{err}", file=sys.stderr)


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table: one row per data set and strategy."""
    heads = [h.replace("|", "\\|") for h in HEADERS[1:]]
    lines = ["| data (scored part) | strategy | " + " | ".join(heads) + " |",
             "|---|---|" + "---:|" * (len(HEADERS) - 1)]
    for ds in report["data_sets"]:
        if "skipped" in ds:
            lines.append(f"| {ds['name']} | not compared: {ds.get('skipped_short', ds['skipped'])} |"
                         + " |" * (len(HEADERS) - 1))
            continue
        first = True
        for r in table_rows(ds):
            label = f"{ds['name']} ({ds['scored_s']:,.0f} s)" if first else ""
            lines.append(f"| {label} | " + " | ".join(r) + " |")
            first = False
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", nargs="+", default=None,
                   help="a data set (folder or files of one stream); repeat for several. Default: every market "
                        "folder of --data-dir except the LOBSTER fixture")
    p.add_argument("--data-dir", type=Path, default=None, help="default $FLASHMM_DATA_DIR or ../shared/data")
    p.add_argument("--from-fraction", type=float, default=0.7,
                   help="trade and score from this fraction of each recording on (default 0.7)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--config", default=None, help="FlashMM config.toml (default $FLASHMM_CONFIG or the built-ins)")
    p.add_argument("--model", default=None, help="FlashMM model file or none (default: the config's, i.e. shipped)")
    p.add_argument("--quote-interval-ms", type=float, default=100.0,
                   help="requote interval of every strategy (FlashMM's [strategy].quote_interval_ms is set to it; "
                        "hftbacktest steps by it); default 100")
    p.add_argument("--order-usd", type=float, default=None, help="order size, quote currency (default: config)")
    p.add_argument("--max-position-usd", type=float, default=None, help="position limit (default: config)")
    p.add_argument("--latency-ms", type=float, default=None, help="order latency (default: config [replay])")
    p.add_argument("--maker-fee-bps", type=float, default=None)
    p.add_argument("--taker-fee-bps", type=float, default=None)
    p.add_argument("--horizon-s", type=float, default=5.0, help="realised-spread horizon (default 5 s)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws for the 95 %% interval")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--skip-hftbacktest", action="store_true", help="only FlashMM's strategies (no venv, no install)")
    p.add_argument("--hftbt-venv", type=Path, default=DEFAULT_VENV, help=f"throwaway venv (default {DEFAULT_VENV})")
    p.add_argument("--hftbt-spec", default=HFTBT_SPEC, help=f"pip requirement (default {HFTBT_SPEC!r})")
    p.add_argument("--skip-install", action="store_true", help="never run pip; fail if the venv does not work")
    p.add_argument("--reinstall", action="store_true", help="recreate the venv even if it works")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"scratch folder (default {DEFAULT_WORKDIR})")
    p.add_argument("--hftbt-queue-model", choices=("prob1", "prob2", "risk_adverse"), default="prob1",
                   help="prob1 (default: cancels split in proportion, as FlashMM's replay), prob2 (the OBI "
                        "example's), risk_adverse")
    p.add_argument("--hftbt-exchange", choices=("partial", "no_partial"), default="no_partial",
                   help="no_partial (default, the tutorials': an order fills whole) or partial (as FlashMM's "
                        "replay, but hftbacktest 2.4.4's partial-fill exchange stops with InvalidOrderStatus when "
                        "a fill exactly exhausts an order, nkaz001/hftbacktest#312, and its local account "
                        "ignores partial fills, #299/#316)")
    p.add_argument("--glft-window-s", type=float, default=600.0,
                   help="GLFT calibration window (tutorial 600 s), capped at the warm-up before trading starts")
    p.add_argument("--glft-gamma", type=float, default=0.05, help="tutorial 0.05")
    p.add_argument("--glft-delta", type=float, default=1.0, help="tutorial 1")
    p.add_argument("--glft-adj1", type=float, default=1.0, help="half-spread multiplier (tutorial 1.0)")
    p.add_argument("--glft-adj2", type=float, default=0.05, help="skew multiplier (tutorial 0.05)")
    p.add_argument("--glft-grid-num", type=int, default=None,
                   help="orders per side (tutorial 20; default FlashMM's [strategy].order_levels)")
    p.add_argument("--obi-half-spread-bps", type=float, default=None,
                   help="default FlashMM's [strategy].symmetric_half_spread_bps")
    p.add_argument("--obi-c1-bps", type=float, default=None, help="alpha weight, bps per z (default 2 x half spread)")
    p.add_argument("--obi-skew-bps", type=float, default=None,
                   help="bps per order-size unit of position (default half spread x 3.5 / 80)")
    p.add_argument("--obi-looking-depth", type=float, default=0.025, help="example 0.025 (2.5 %% from the mid)")
    p.add_argument("--obi-window-s", type=float, default=3600.0,
                   help="standardisation window (example 1 h), capped at the warm-up")
    p.add_argument("--timeout-install", type=float, default=1200.0)
    p.add_argument("--timeout-run", type=float, default=1800.0)
    p.add_argument("--json", type=Path, default=None, help="write the full report here")
    p.add_argument("--markdown", type=Path, default=None, help="write the README table here")
    args = p.parse_args(argv)
    if not 0.0 < args.from_fraction < 1.0:
        p.error("--from-fraction must be in (0, 1)")
    if args.quote_interval_ms <= 0:
        p.error("--quote-interval-ms must be > 0")
    if args.horizon_s <= 0 or args.bootstrap < 100:
        p.error("--horizon-s must be > 0 and --bootstrap >= 100")
    if args.skip_hftbacktest:
        args.strategies = [s for s in args.strategies if s not in HFTBT_STRATEGIES]
        if not args.strategies:
            p.error("--skip-hftbacktest leaves no strategy to run")
    return args


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "") if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from flashmm.config import ConfigError
    from flashmm.data.loader import load_configured
    from flashmm.data.readers import DataError
    from flashmm.research.compare import book_replay
    from flashmm.telemetry.logging import configure_logging

    configure_logging("error", None)  # fills and breaker changes would flood the terminal
    try:
        cfg = flashmm_config(args)
    except ConfigError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    excluded: dict[str, str] = {}
    if args.data:
        data_sets = args.data
        for group in data_sets:
            for path in group:
                if not Path(path).exists():
                    print(f"compare: {path}: no such file or folder", file=sys.stderr)
                    return 2
    else:
        try:
            data_sets, excluded = discover(args.data_dir or default_data_dir())
        except FileNotFoundError as e:
            print(f"compare: {e}", file=sys.stderr)
            return 2

    load0 = os.getloadavg()
    report: dict[str, Any] = {
        "benchmark": "strategy comparison, FlashMM vs hftbacktest, same data",
        "command_line": shlex.join([Path(sys.argv[0]).name if argv is None else "compare_strategies.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": [round(x, 2) for x in load0]},
        "flashmm_commit": git_commit(),
        "matched": {"order_usd": cfg.strategy.order_amount_usdc, "max_position_usd": cfg.risk.max_position_usdc,
                    "capital_usd": cfg.risk.capital_usdc, "latency_ms": cfg.replay.latency_ms,
                    "response_latency_ms": 0.0, "maker_fee_bps": cfg.replay.maker_fee_bps,
                    "taker_fee_bps": cfg.replay.taker_fee_bps, "quote_interval_ms": args.quote_interval_ms,
                    "tick_and_lot": "the data set's instrument", "from_fraction": args.from_fraction},
        "flashmm_config": {"strategy": cfg.strategy.model_dump(), "model_path": cfg.model.path or "(shipped)",
                           "config_file": args.config or os.environ.get("FLASHMM_CONFIG")},
        "hftbacktest_settings": {"queue_model": args.hftbt_queue_model, "exchange": args.hftbt_exchange,
                                 "spec": args.hftbt_spec},
        "definitions": __doc__.split("Definitions (")[1].split("\n\nExit status")[0],
        "excluded": excluded,
        "data_sets": [],
    }

    rc = 0
    hb_ready = False
    if any(s in HFTBT_STRATEGIES for s in args.strategies):
        try:
            report["hftbacktest_version"] = ensure_venv(args.hftbt_venv, args.hftbt_spec, args.skip_install,
                                                        args.reinstall, args.timeout_install)
            hb_ready = True
            report["hftbacktest_status"] = {"ok": True}
        except StepError as e:
            report["hftbacktest_status"] = {"error": str(e)}
            rc = 1
    for group in data_sets:
        name = Path(group[0]).name if len(group) == 1 else Path(group[0]).parent.name
        ds: dict[str, Any] = {"name": name, "paths": group}
        report["data_sets"].append(ds)
        try:
            es = load_configured(cfg, group)
            check_comparable(es, name)
        except (DataError, DataSetSkipped) as e:
            ds["skipped"] = str(e)
            ds["skipped_short"] = getattr(e, "short", "unreadable")
            _log(f"{name}: not compared: {e}")
            continue
        start = int(es.events["ts_ns"][0])
        t0 = start + int(args.from_fraction * es.duration_s * 1_000_000_000)  # run_one's own formula
        t1 = int(es.events["ts_ns"][-1])
        rows, timeline, book_stats = book_replay(es.events, es.instrument, cfg.replay.use_book_ticker)
        inst = es.instrument
        ds.update({"source": es.source, "symbol": inst.symbol, "tick": str(inst.price_tick),
                   "lot": str(inst.lot_size), "multiplier": str(inst.multiplier), "inverse": inst.inverse,
                   "quote_currency": inst.quote, "settle_currency": inst.settle_currency,
                   "use_book_ticker": cfg.replay.use_book_ticker, "duration_s": round(es.duration_s, 3),
                   "scored_s": round((t1 - t0) / 1e9, 3), "rows": len(es.events), "messages": es.messages,
                   "reader_rejects": dict(es.rejects), "book_replay": book_stats, "strategies": {}})
        _log(f"{name}: {len(es.events):,} rows, {es.duration_s:,.0f} s, scoring the last {ds['scored_s']:,.0f} s")
        for s in args.strategies:
            if s not in FLASHMM_STRATEGIES:
                continue
            try:
                ds["strategies"][s] = run_flashmm(cfg, s, es, timeline, t0, t1, args)
                m = ds["strategies"][s]["metrics"]
                _log(f"{name}: FlashMM {s}: PnL {m['pnl']['total']:+.2f}, {m['fills']} fills")
            except Exception as e:  # one failed run must not lose the others' figures
                ds["strategies"][s] = {"error": f"{type(e).__name__}: {e}"}
                report["flashmm_status"] = {"error": f"{name} {s}: {type(e).__name__}: {e}"}
                rc = rc or 3
        if hb_ready and any(s in HFTBT_STRATEGIES for s in args.strategies):
            try:
                hb = run_hftbacktest(args, cfg, es, rows, book_stats, timeline, t0, t1, name)
                ds["hftbacktest"] = {k: v for k, v in hb.items() if k != "strategies"}
                ds["strategies"].update(hb["strategies"])
                checks = [v["conversion_check"] for v in hb["strategies"].values()]
                if checks:
                    ds["conversion_check"] = min(checks, key=lambda c: c["equal_pct"] if c["equal_pct"] is not None else -1)
                for s, r in hb["strategies"].items():
                    _log(f"{name}: hftbacktest {s}: PnL {r['metrics']['pnl']['total']:+.2f}, {r['metrics']['fills']} fills")
            except StepError as e:
                for s in args.strategies:
                    if s in HFTBT_STRATEGIES:
                        ds["strategies"][s] = {"error": str(e)}
                report["hftbacktest_status"] = {"error": str(e)}
                rc = 1
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
        _log(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(markdown_table(report) + "\n")
        _log(f"wrote {args.markdown}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
