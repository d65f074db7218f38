#!/usr/bin/env python3
"""Regenerates the pinned replay results (tests/pins/replay_results.json) that tests/test_replay_pins.py checks.

    .venv/bin/python scripts/pin_replay_results.py            # rerun every case, rewrite the pins
    .venv/bin/python scripts/pin_replay_results.py --check    # exit 1 if any case differs from its pin
    .venv/bin/python scripts/pin_replay_results.py --only bitstamp --only lobster

Run it when the engine's behaviour changes on purpose (a new strategy, a changed quote cycle): the pins then
describe the new behaviour, and the commit that changes them says why. Never to make a speed-up pass: a
change meant to be only faster must leave every pin as it is (the same orders, fills and PnL to the last bit).
Data: $FLASHMM_DATA_DIR or ../shared/data beside the checkout (the cases are flashmm/research/digest.py
PIN_CASES: every recorded data set, model-free).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flashmm.data.loader import load_configured  # noqa: E402
from flashmm.research.digest import PIN_CASES, replay_digest  # noqa: E402
from flashmm.telemetry.logging import configure_logging  # noqa: E402

PINS = ROOT / "tests" / "pins" / "replay_results.json"


def data_dir() -> Path:
    d = Path(os.environ.get("FLASHMM_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not d.is_dir():
        sys.exit(f"pin_replay_results: data folder {d} is missing (set FLASHMM_DATA_DIR)")
    return d


def compute(names: list[str] | None = None, cache_dir: str = "", verbose: bool = True) -> dict[str, dict]:
    configure_logging("error")
    out = {}
    for case in PIN_CASES:
        if names and case.name not in names:
            continue
        cfg = case.config()
        if cache_dir:
            cfg = cfg.model_copy(update={"replay": cfg.replay.model_copy(update={"cache_dir": cache_dir})})
        data = load_configured(cfg, [str(data_dir() / case.folder)])
        t0 = time.process_time()
        out[case.name] = replay_digest(cfg, data)
        if verbose:
            r = out[case.name]
            print(f"{case.name:28s} {r['rows']:>9,} rows {r['orders_sent']:>7,} orders {r['fills']:>5,} fills "
                  f"PnL {r['pnl_quote']:>22s}  ({time.process_time() - t0:.2f} s cpu)", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the pins instead of rewriting them")
    ap.add_argument("--only", action="append", help="a case name (repeatable); default all")
    ap.add_argument("--cache-dir", default="", help="parsed-recording cache (default [replay].cache_dir)")
    ap.add_argument("--source", default="", help="what code produced the pins, recorded in the file (default: "
                                                 "this checkout's commit)")
    a = ap.parse_args()
    results = compute(a.only, a.cache_dir)
    if a.check:
        pins = orjson.loads(PINS.read_bytes())["cases"]
        bad = [n for n, r in results.items() if pins.get(n) != r]
        for n in bad:
            print(f"DIFFERS: {n}\n  pinned {pins.get(n)}\n  now    {results[n]}", file=sys.stderr)
        return 1 if bad else 0
    old = orjson.loads(PINS.read_bytes())["cases"] if PINS.exists() else {}
    cases = {**old, **results} if a.only else results
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    source = a.source or (commit + ("+uncommitted" if dirty else "") if commit else "unknown")
    doc = {"about": "Replay results pinned by scripts/pin_replay_results.py (see its docstring); checked by "
                    "tests/test_replay_pins.py. Regenerate only for a deliberate change of behaviour.",
           "generated_from": source,
           "cases": dict(sorted(cases.items()))}
    PINS.parent.mkdir(parents=True, exist_ok=True)
    PINS.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {PINS.relative_to(ROOT)} ({len(cases)} cases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
