#!/usr/bin/env python3
"""Soak benchmark: the daemon on the simulated market for hours of venue time at full speed.

    scripts/bench_soak.py --hours 6 --json OUT [--seed S] [--sample-s 60] [--period-s 3600]
                          [--model models/flashmm.pt2|none|PATH] [--config config.toml]
                          [--redis] [--influx] [--no-gc-objects] [--log-dir DIR]

Reports RSS over time (and its least-squares slope over the second half, MB/hour), asyncio tasks,
threads and file descriptors, tick-to-quote p50/p99 per period, and every order placed, acknowledged,
rejected, cancelled and filled with the accounting identities and their residuals. The logic lives in
flashmm/ops/soak.py; the thresholds are in the JSON. `--redis` runs a private redis-server (state store),
`--influx` a loopback metrics sink (the exporter thread and publisher task run as in production).

Exit status: 0 every flag passed; 1 a flag failed (the JSON says which); 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flashmm.config import ConfigError, load_config  # noqa: E402
from flashmm.ops.soak import check_grid, run_soak  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0, help="simulated hours (default 6)")
    p.add_argument("--json", required=True, help="where to write the report")
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated market (default 7)")
    p.add_argument("--sample-s", type=float, default=60.0, help="venue seconds between samples (default 60)")
    p.add_argument("--period-s", type=float, default=3600.0, help="venue seconds per reported period (default 3600)")
    p.add_argument("--model", default="models/flashmm.pt2",
                   help="model file, or none for model-free pricing (default: the shipped models/flashmm.pt2)")
    p.add_argument("--config", help="config.toml (default: built-in defaults); venue, seed and logs are overridden")
    p.add_argument("--redis", action="store_true", help="run the Redis state store against a private redis-server")
    p.add_argument("--influx", action="store_true", help="run the InfluxDB exporter against a loopback sink")
    p.add_argument("--no-gc-objects", action="store_true", help="skip counting gc-tracked objects per sample")
    p.add_argument("--log-dir", help="keep the daemon's log, audit log and summary here (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    model = args.model
    if model not in ("", "none") and Path(model).resolve() == (ROOT / "models" / "flashmm.pt2").resolve():
        model = ""  # the shipped model, found wherever the package is installed
    if model not in ("", "none") and not Path(model).is_file():
        print(f"bench_soak: model file {model} not found", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
        check_grid(args.hours * 3600.0, args.sample_s, args.period_s, cfg.sim.block_ms)
    except (ConfigError, ValueError) as exc:
        print(f"bench_soak: {exc}", file=sys.stderr)
        return 2
    result = run_soak(cfg, args.hours, args.json, seed=args.seed, sample_s=args.sample_s, period_s=args.period_s,
                      model=model, redis=args.redis, influx=args.influx, gc_objects=not args.no_gc_objects,
                      log_dir=args.log_dir, command=shlex.join(["scripts/bench_soak.py", *sys.argv[1:]]))
    tr, flags = result["trend"], result["flags"]
    print(f"soak: {result['simulated_s_completed'] / 3600:.2f} simulated h in {result['wall_s']:.1f} s wall "
          f"({result['speedup_vs_real_time']}x), model {result['model']}")
    print(f"  RSS {tr['rss_first_sample_mb']} -> {tr['rss_last_sample_mb']} MB, second-half slope "
          f"{tr['rss_slope_mb_per_h']} MB/h; tasks {tr['task_counts_seen']}; fds {tr['fd_counts_seen']}")
    print(f"  tick-to-quote p99 per period (us): {tr['p99_per_period_us']} (change {tr['p99_relative_change']})")
    acc = result["end"]["accounting"]
    print(f"  orders: {acc['counts']}; residual {acc['total_abs_residual']} {acc['broken'] or ''}")
    print(f"  flags: {flags}")
    print(f"  report: {args.json}")
    return 0 if flags["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
