#!/usr/bin/env python3
"""Does the prediction help? Backtests on real data the model was not trained on, with and without the
prediction skew (the same model loaded both ways, so only the skew differs), and the result written
into the model card (models/README.md, between its "does it help" markers) and to --json.

    scripts/model_does_it_help.py [--data-dir DIR] [--json PATH] [--no-card]

Held-out data: the last 14 % of each recording used in training (training's test slice starts at 85 %
plus an embargo), and the whole LOBSTER AAPL sample, never used in training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flashmm.config import Config  # noqa: E402
from flashmm.research.backtest import run_backtest  # noqa: E402

BEGIN = "<!-- does-it-help:begin -->"
END = "<!-- does-it-help:end -->"
SETS = [("binance-spot-btcusdt-20240808", 0.86), ("binance-usdm-btcusdt-20240808", 0.86),
        ("bitstamp-btcusd-20150501", 0.86), ("lobster-aapl-20120621-head", 0.0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("FLASHMM_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--json", default="")
    ap.add_argument("--no-card", action="store_true")
    args = ap.parse_args()
    data = Path(args.data_dir)
    if not data.is_dir():
        print(f"data folder {data} is missing", file=sys.stderr)
        return 2
    base = Config()
    runs = {"with_skew": base,
            "without_skew": base.model_copy(update={"strategy": base.strategy.model_copy(update={"prediction_skew_bps": 0.0})})}
    rows = []
    for name, frac in SETS:
        for label, cfg in runs.items():
            rep = run_backtest(cfg, [[str(data / name)]], "flashmm", Path("/tmp") / f"dih-{name}-{label}.json",
                               show_progress=False, trade_from_fraction=frac)
            s = rep["data_sets"][0]
            rows.append({"data": name, "held_out_from": frac, "run": label, "pnl_usdc": s["pnl_usdc"],
                         "pnl_breakdown": s["pnl_breakdown"], "fills": s["fills"],
                         "adverse_selection_bps": s["adverse_selection_bps"],
                         "markout_bps": s["markout_bps"], "spread_improvement_pct": s["spread_improvement_pct"],
                         "hit_rate": s["prediction_hit_rate"], "model": s["model"],
                         "model_breaker": s["breakers"]["model"], "quoting_time_s": s["quoting_time_s"]})
            print(f"{name} [{label}]: PnL {s['pnl_usdc']:+.4f}, fills {s['fills']}, adverse "
                  f"{s['adverse_selection_bps']}, spread impr {s['spread_improvement_pct']}, hit {s['prediction_hit_rate']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if not args.no_card:
        write_card(rows)
    return 0


def _f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def write_card(rows: list[dict]) -> None:
    lines = [BEGIN, "", "## Does it help? (backtests on held-out real data)", "",
             "`scripts/model_does_it_help.py` — the same engine and model, with the prediction skew "
             "([strategy].prediction_skew_bps = 2.5) and without it (0); trading only on data the model never "
             "saw (the last 14 % of each training recording, after training's test boundary; the whole LOBSTER "
             "sample). Adverse selection = the mid's move against each fill 2 s later, size-weighted, bps "
             "(lower is better); markout = the fill's edge against that later mid, bps (higher is better).", "",
             "| data (held out from) | skew | PnL USDC | spread capture / inventory / fees | fills | adverse selection bps | markout bps | spread improvement % | live hit rate |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = r["pnl_breakdown"]
        lines.append(f"| {r['data']} ({r['held_out_from']:.0%}) | {'on' if r['run'] == 'with_skew' else 'off'} | "
                     f"{r['pnl_usdc']:+.2f} | {b['spread_capture']:+.2f} / {b['inventory']:+.2f} / {b['fees']:+.2f} | "
                     f"{r['fills']} | {_f(r['adverse_selection_bps'], '+.3f')} | {_f(r['markout_bps'], '+.3f')} | "
                     f"{r['spread_improvement_pct']:+.1f} | {_f(r['hit_rate'], '.1%')} |")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["data"], {})[r["run"]] = r
    better = sum(1 for v in pairs.values() if v["with_skew"]["pnl_usdc"] > v["without_skew"]["pnl_usdc"])
    less_adverse = sum(1 for v in pairs.values() if (v["with_skew"]["adverse_selection_bps"] or 0)
                       < (v["without_skew"]["adverse_selection_bps"] or 0))
    lines += ["", f"Verdict, computed from the table: with the skew, PnL was higher on {better} of {len(pairs)} "
                  f"held-out data sets and adverse selection lower on {less_adverse} of {len(pairs)}."
                  + (" The prediction skew does not help on this evidence; keep it small or off until a model "
                     "shows a gain here." if better <= len(pairs) // 2 else ""), "", END]
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
