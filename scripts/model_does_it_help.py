#!/usr/bin/env python3
"""Does the model earn its place in the strategy? Held-out backtests with alpha = model, online and none.

Runs, on the later 30 % of each recording (the model's test slice: it trained on the first 60 %), the three
commands the README shows, one per alpha ([strategy].alpha from the environment, as any key can be):

    FLASHMM_STRATEGY__ALPHA=model flashmm backtest --data D1 --data D2 ... --trade-from-fraction 0.7 --report model.json
    flashmm backtest --data D1 ... --trade-from-fraction 0.7 --report online.json   # the default alpha
    FLASHMM_STRATEGY__ALPHA=none flashmm backtest --data D1 ... --trade-from-fraction 0.7 --report none.json

(the model is loaded only where it prices: alpha = model), then writes the table
into the model card (models/README.md, between its "does it help" markers) and --json. The engine follows each
recording from its start (book, features and the online alpha warm) and trades from 70 % on.

    scripts/model_does_it_help.py [--data-dir DIR] [--out-dir DIR] [--json PATH] [--no-card] [--from-json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- does-it-help:begin -->"
END = "<!-- does-it-help:end -->"
SETS = ("binance-spot-btcusdt-20240808", "binance-usdm-btcusdt-20240808", "binance-cm-btcusd-perp-20240808",
        "bitstamp-btcusd-20150501")
FROM = 0.7
RUNS = (("model", {"FLASHMM_STRATEGY__ALPHA": "model"}, []),
        ("online", {}, []),
        ("none", {"FLASHMM_STRATEGY__ALPHA": "none"}, []))


def _shown(p: Path) -> str:
    """A path as a person would type it from here (relative when shorter)."""
    rel = os.path.relpath(p)
    return rel if len(rel) < len(str(p)) else str(p)


def commands(data_dir: Path, out_dir: Path) -> list[tuple[str, dict[str, str], list[str], Path]]:
    out = []
    for alpha, env, extra in RUNS:
        report = out_dir / f"{alpha}.json"
        args = ["backtest"] + [a for s in SETS for a in ("--data", _shown(data_dir / s))] + [
            "--trade-from-fraction", f"{FROM:g}"] + extra + ["--report", _shown(report)]
        out.append((alpha, env, args, report))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("FLASHMM_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out-dir", default=str(Path(tempfile.gettempdir()) / "flashmm-does-it-help"),
                    help="where the backtest reports go (default: a folder in the system's temporary directory)")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-card", action="store_true")
    ap.add_argument("--from-json", help="write the card from an earlier --json result instead of running")
    args = ap.parse_args()
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        result.setdefault("prediction_verdict", prediction_verdict())
        write_card(result)
        return 0
    data = Path(args.data_dir)
    if not data.is_dir():
        print(f"data folder {data} is missing", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports, shown = {}, []
    for alpha, env, cli_args, report in commands(data, out_dir):
        shown_cmd = " ".join([f"{k}={v}" for k, v in env.items()] + ["flashmm"] + cli_args)
        print(shown_cmd, flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "flashmm.cli", *cli_args], env={**os.environ, **env},
                           stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            print(f"backtest with alpha = {alpha} failed (exit {r.returncode})", file=sys.stderr)
            return r.returncode
        reports[alpha] = json.loads(report.read_text())
        shown.append({"alpha": alpha, "command": shown_cmd, "wall_s": round(time.perf_counter() - t0, 1)})
    rows = []
    for i, name in enumerate(SETS):
        for alpha in reports:
            s = reports[alpha]["data_sets"][i]
            rs = s["realised_spread_bps"]
            rows.append({"data": name, "alpha": alpha, "pnl": s["pnl_usdc"], "quote": s["instrument"]["quote"],
                         "pnl_breakdown": s["pnl_breakdown"], "fills": s["fills"],
                         "realised_spread_5s_bps": rs["5s"], "realised_spread_ci95": rs["ci95"],
                         "adverse_selection_bps": s["adverse_selection_bps"], "orders_per_fill": s["orders_per_fill"],
                         "max_abs_inventory_pct": s["inventory"]["max_abs_inventory_pct"],
                         "prediction_hit_rate": s.get("prediction_hit_rate"),
                         "traded_s": round(s["data"]["duration_s"] * (1 - s["traded_from_fraction"]), 1)})
    result = {"commands": shown, "trade_from_fraction": FROM, "rows": rows, "verdict": verdict(rows),
              "prediction_verdict": prediction_verdict()}
    for r in rows:
        ci = r["realised_spread_ci95"]
        print(f"{r['data']:<34} {r['alpha']:<7} PnL {r['pnl']:+10.4f} {r['quote']:<5} fills {r['fills']:>5}  realised 5 s "
              f"{_f(r['realised_spread_5s_bps'], '+.2f')}{f' [{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else ''} bps")
    print(result["verdict"]["text"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if not args.no_card:
        write_card(result)
    return 0


def verdict(rows: list[dict]) -> dict:
    by = {}
    for r in rows:
        by.setdefault(r["data"], {})[r["alpha"]] = r["pnl"]
    vs_online = sum(1 for v in by.values() if v["model"] > v["online"])
    vs_none = sum(1 for v in by.values() if v["model"] > v["none"])
    n = len(by)
    earns = vs_online >= 3 and vs_none >= 3
    text = (f"With alpha = model the strategy made more than with the online alpha (the default) on {vs_online} of {n} "
            f"data sets and more than with no alpha on {vs_none} of {n}: the backtest half of the bar (at least three "
            f"of four) is {'met' if earns else 'not met'}.")
    return {"more_than_online": vs_online, "more_than_none": vs_none, "n": n, "met": earns, "text": text}


def prediction_verdict() -> dict | None:
    """The shipped model's own held-out verdict (in its file, written by training): does it beat the sign of the
    imbalance, the linear and the logistic regression by more than the interval on the recorded test slices?"""
    sys.path.insert(0, str(ROOT))
    from flashmm.model.artifact import ModelError, load

    try:
        return load(ROOT / "models" / "flashmm.pt2").meta.get("verdict")
    except ModelError:
        return None


def _f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def write_card(result: dict) -> None:
    lines = [BEGIN, "", "## Does it help the strategy? (held-out backtests)", "",
             "`scripts/model_does_it_help.py` runs these commands (the later 30 % of each recording: the model's test "
             "slice; the engine follows the market from the start and trades from 70 % on; 50 ms latency, maker 0 / "
             "taker 2 bps, the built-in configuration otherwise):", "", "```"]
    lines += [c["command"] for c in result["commands"]]
    lines += ["```", "",
              "PnL in the instrument's quote currency (COIN-M: its BTC PnL valued at the mid); realised spread at 5 s per "
              "fill with its 95 % interval, bps.", "",
              "| data | alpha | PnL | spread capture / inventory / fees | fills | realised spread 5 s, bps [95 %] | "
              "orders per fill | max abs inventory % |",
              "|---|---|---:|---|---:|---|---:|---:|"]
    for r in result["rows"]:
        b = r["pnl_breakdown"]
        ci = r["realised_spread_ci95"]
        lines.append(f"| {r['data']} | {r['alpha']} | {r['pnl']:+.4f} {r['quote']} | {b['spread_capture']:+.4f} / "
                     f"{b['inventory']:+.4f} / {b['fees']:+.4f} | {r['fills']} | {_f(r['realised_spread_5s_bps'], '+.2f')}"
                     f"{f' [{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else ''} | {_f(r['orders_per_fill'], '.1f')} | "
                     f"{_f(r['max_abs_inventory_pct'], '.3f')} |")
    lines += ["", "Verdict, computed from the table: " + result["verdict"]["text"]]
    pv = result.get("prediction_verdict")
    if pv is not None:
        both = pv.get("beats_required") and result["verdict"]["met"]
        lines += ["", f"**The model {'earns' if both else 'does not earn'} its place**: it must beat the sign of the "
                  "imbalance and the regressions by more than the interval on held-out data (Held-out results above: "
                  f"{'met' if pv.get('beats_required') else 'not met'}) and make more than without it on at least "
                  f"three of four data sets here ({'met' if result['verdict']['met'] else 'not met'})."
                  + ("" if both else " The default stays `[strategy].alpha = \"online\"`; the model stays an option "
                     "(`alpha = \"model\"`).")]
    lines += ["", END]
    card = ROOT / "models" / "README.md"
    text = card.read_text() if card.exists() else ""
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    card.write_text(text)
    print(f"model card updated: {card}")


if __name__ == "__main__":
    sys.exit(main())
