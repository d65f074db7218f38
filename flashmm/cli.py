"""Command lines: `flashmm-tui` (the console; `--no-ui` is the daemon) and `flashmm` (tools)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from flashmm.config import Config, ConfigError, load_config

# The errors below come from modules that import torch (about 2 s): they are imported where they are
# caught, so `flashmm ctl` (the docker-compose healthcheck, every few seconds) never pays for them.


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return v

    return parse


def _load(path: str | None, **run_overrides: Any) -> Config:
    """Config file (or FLASHMM_CONFIG, or the built-in defaults), then command-line overrides of [run]."""
    path = path or os.environ.get("FLASHMM_CONFIG") or None
    cfg = load_config(path)
    if path is not None:
        from flashmm.ops.security import world_readable_secret_warning

        warning = world_readable_secret_warning(path)
        if warning:
            print(f"flashmm: warning: {warning}", file=sys.stderr)
    run = {k: v for k, v in run_overrides.items() if v is not None}
    if run:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update=run)})
    return cfg


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """How recordings are read: the same three options on every command that reads them."""
    p.add_argument("--symbol", help="the symbol to read from a recording holding several ([replay].symbol)")
    p.add_argument("--instruments", metavar="FILE.toml",
                   help="instrument spec adding to the built-in table (format of flashmm/data/instruments.toml; "
                        "[replay].instruments_file)")
    p.add_argument("--cache-dir", help="where parsed recordings are cached ([replay].cache_dir)")


def _with_data_options(cfg: Config, args: argparse.Namespace) -> Config:
    upd = {k: v for k, v in (("symbol", getattr(args, "symbol", None)),
                             ("instruments_file", getattr(args, "instruments", None)),
                             ("cache_dir", getattr(args, "cache_dir", None))) if v}
    return cfg.model_copy(update={"replay": cfg.replay.model_copy(update=upd)}) if upd else cfg


def tui_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flashmm-tui", description="FlashMM market maker: console, or daemon with --no-ui")
    p.add_argument("--config", help="config.toml path (default: $FLASHMM_CONFIG, else built-in defaults)")
    p.add_argument("--venue", choices=["sim", "replay", "sei", "citrex"],
                   help="market to trade (default from config: sim); sei = x/dex over CometBFT RPC, see [sei]; "
                        "citrex = Sei's order book on Sei EVM, see [citrex]")
    p.add_argument("--paper", action="store_true", default=None,
                   help="paper trading on --venue citrex: its public feed, fills by the replay's queue model, no key")
    p.add_argument("--data", action="append", help="recording to replay (file or folder; repeat for several files)")
    p.add_argument("--seed", type=int, help="seed of the simulated market")
    p.add_argument("--speed", type=_positive(float), help="venue clock speed as a multiple of wall time (sim)")
    p.add_argument("--no-ui", action="store_true", help="run headless (the daemon)")
    p.add_argument("--duration", type=_positive(float), help="stop after S seconds of venue time")
    p.add_argument("--summary", help="write a JSON summary of the run to PATH")
    _add_data_options(p)
    p.add_argument("--attach", nargs="?", const="", metavar="SOCKET",
                   help="attach this console to a running daemon (default socket: [control].socket)")
    p.add_argument("--log-format", choices=["auto", "console", "json"],
                   help="daemon log lines: auto (human-readable on a terminal, JSON otherwise), console, json")
    args = p.parse_args(argv)
    try:
        cfg = _with_data_options(_load(args.config, venue=args.venue, seed=args.seed, speed=args.speed,
                                       paper=args.paper), args)
    except ConfigError as exc:
        print(f"flashmm-tui: {exc}", file=sys.stderr)
        return 2
    if args.attach is not None:
        if args.no_ui or args.duration or args.summary or args.data:
            print("flashmm-tui: --attach takes no --no-ui/--duration/--summary/--data (the daemon owns those)",
                  file=sys.stderr)
            return 2
        from tui.attach import run_attached  # imports the console package only here

        return run_attached(args.attach or cfg.control.socket, cfg.console)
    if cfg.run.venue == "replay" and not args.data:
        print("flashmm-tui: --venue replay needs --data PATH", file=sys.stderr)
        return 2
    from flashmm.data.readers import DataError
    from flashmm.model.predictor import ModelLoadError
    from flashmm.venues.base import VenueStartError
    from flashmm.ops.lease import StartupError  # start-up checks and the instance lock (one line, exit 2)

    try:
        if args.no_ui:
            from flashmm.ops.daemon import run_daemon

            return asyncio.run(run_daemon(cfg, args.duration, args.summary, None, args.data,
                                          log_format=args.log_format))
        from flashmm.ops.daemon import run_console  # imports the console package only here

        return run_console(cfg, args.duration, args.summary, args.data)
    except (DataError, ModelLoadError, VenueStartError, StartupError) as exc:
        print(f"flashmm-tui: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["ctl"]:  # the healthcheck runs every few seconds: import the control client only
        from flashmm.control import ctl

        p = argparse.ArgumentParser(prog="flashmm", description="FlashMM tools")
        ctl.add_cli(p.add_subparsers(dest="command", required=True))
        return ctl.run_cli(p.parse_args(words))
    p = argparse.ArgumentParser(prog="flashmm", description="FlashMM tools")
    sub = p.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks with JSON output")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    lat = bench_sub.add_parser("latency", help="tick-to-quote and per-stage latency on the simulated market at full speed")
    lat.add_argument("--json", required=True, help="write results to PATH")
    lat.add_argument("--seconds", type=_positive(float), default=3600.0, help="simulated seconds (default 3600)")
    lat.add_argument("--seed", type=int, default=7)
    lat.add_argument("--config", help="config.toml path")
    lat.add_argument("--model", help="model file (it then prices: [strategy].alpha = model), or none "
                                     "(default: as configured; the shipped default prices without the model)")
    lat.add_argument("--speed", type=_positive(float), default=float("inf"),
                     help="pace the simulated market at X x real time, the engine sleeping between blocks as a live "
                          "one waits for the market (default: unpaced, as fast as possible)")
    lat.add_argument("--busy-cores", type=int, default=0, metavar="N",
                     help="also run with N CPU-bound neighbour processes spinning, and report quiet and busy side by side")
    ui = bench_sub.add_parser("ui-overhead", help="tick-to-quote headless vs with the console mounted")
    ui.add_argument("--json", required=True, help="write results to PATH")
    ui.add_argument("--seconds", type=_positive(float), default=240.0, help="simulated seconds per run (default 240)")
    ui.add_argument("--speed", type=_positive(float), default=20.0, help="venue clock speed (default 20x)")
    ui.add_argument("--rounds", type=int, default=2, help="headless/console pairs (default 2)")
    ui.add_argument("--seed", type=int, default=7)
    ui.add_argument("--config", help="config.toml path")
    ui.add_argument("--modes", default="headless,console,attached",
                    help="comma-separated: headless, console (in-process), attached (a console on the control socket)")
    bi = bench_sub.add_parser("inference", help="single-sample model latency (eager vs exported), size, RSS")
    bi.add_argument("--model", help="model file (default: the shipped models/flashmm.pt2)")
    bi.add_argument("--json", required=True, help="write results to PATH")
    bi.add_argument("--n", type=int, default=5000, help="samples timed per path")
    bi.add_argument("--seed", type=int, default=7)
    bi.add_argument("--config", help="config.toml path")

    bb = bench_sub.add_parser("backtest", help="replay throughput: rows/s and messages/s, replay speed vs real time")
    bb.add_argument("--data", action="append", required=True, help="one data set (file or folder; repeatable: files of one stream)")
    bb.add_argument("--json", required=True, help="write results to PATH")
    bb.add_argument("--quote-interval-ms", type=float, default=None, help="least time between quote cycles")
    bb.add_argument("--repeat", type=int, default=1,
                    help="time the model-free replay N times: the fastest is the headline, every wall time and the "
                         "median beside it (as hftbacktest's side of scripts/bench_vs_hftbacktest.py)")
    bb.add_argument("--seed", type=int, default=7)
    bb.add_argument("--config", help="config.toml path")
    _add_data_options(bb)

    bt = sub.add_parser("backtest", help="replay recorded markets through the engine and report")
    bt.add_argument("--data", action="append", required=True, nargs="+",
                    help="a data set: a file, the files of one stream, or a folder; repeat --data for several data sets")
    bt.add_argument("--config", help="config.toml path")
    bt.add_argument("--strategy", choices=["flashmm", "symmetric"], default="flashmm")
    bt.add_argument("--report", required=True, help="write the JSON report to PATH")
    bt.add_argument("--plot", action="store_true", help="draw PnL, inventory and spreads in the terminal")
    _add_data_options(bt)
    bt.add_argument("--model", help="model file, or none (default [model].path: the shipped model)")
    bt.add_argument("--trade-from-fraction", type=float, default=0.0,
                    help="follow the market but trade only from this fraction of each recording on (held-out slices)")
    bt.add_argument("--no-prediction-skew", action="store_true",
                    help="run the model but give its prediction no weight (for 'does it help' comparisons)")
    bt.add_argument("--seed", type=int, default=7)
    bt.add_argument("--workers", type=int, default=None,
                    help="data sets backtested at once (default: every core; 1 = one by one in this process)")
    bt.add_argument("--backend", choices=["auto", "ray", "process", "serial"], default="auto",
                    help="auto: Ray tasks when Ray is installed, else a process pool")
    bt.add_argument("--address", help="run the backtests on an existing Ray cluster (HOST:PORT)")

    tr = sub.add_parser("train", help="build the dataset, choose the architecture by validation, export, write the model card")
    tr.add_argument("--data", action="append", required=True, nargs="+",
                    help="data sets (file or folder each; sim:SECONDS:SEED[:PRESET], sim-trading:SECONDS:SEED[:PRESET])")
    tr.add_argument("--out", default="models/flashmm.pt2", help="exported model path (default models/flashmm.pt2)")
    tr.add_argument("--sim-seconds", type=_positive(float), default=1800.0, help="simulated seconds per seed (default 1800)")
    tr.add_argument("--sim-seeds", type=int, nargs="*", default=[101, 102],
                    help="seeds of the simulated market, on each preset (default 101 102; none: leave it out)")
    tr.add_argument("--trading-seconds", type=_positive(float), default=1800.0,
                    help="simulated seconds per seed with FlashMM trading in the market (default 1800)")
    tr.add_argument("--trading-seeds", type=int, nargs="*", default=[201, 202],
                    help="seeds of the simulated market with FlashMM trading, on each preset (default 201 202; none: leave it out)")
    tr.add_argument("--sim-presets", nargs="*", default=["thin", "deep"], choices=["thin", "deep"],
                    help="simulator presets the seeds run on (default both)")
    tr.add_argument("--promote-if-better", action="store_true",
                    help="replace the current model only if the candidate scores better on the same held-back slice")
    _add_data_options(tr)
    tr.add_argument("--seed", type=int, default=7)
    tr.add_argument("--config", help="config.toml path")

    ev = sub.add_parser("eval-model", help="score a model on data (its held-back test slice) with baselines")
    ev.add_argument("--model", help="model file (default: the shipped models/flashmm.pt2)")
    ev.add_argument("--data", action="append", required=True, nargs="+",
                    help="data sets, sim:SECONDS:SEED[:PRESET] or sim-trading:SECONDS:SEED[:PRESET]")
    ev.add_argument("--json", required=True, help="write the results to PATH")
    ev.add_argument("--part", default="test", choices=("test", "val", "all"),
                    help="which time slice of each data set to score (default: the model's held-out test slice)")
    _add_data_options(ev)
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument("--config", help="config.toml path")

    rec = sub.add_parser("record", help="record a venue's market data to FlashMM's own format (.npz)")
    rec.add_argument("--venue", choices=["sim"], default="sim")
    rec.add_argument("--duration", type=_positive(float), required=True, help="seconds of venue time")
    rec.add_argument("--out", required=True, help="output file (.npz)")
    rec.add_argument("--seed", type=int, default=7)
    rec.add_argument("--trade", action="store_true",
                     help="FlashMM's engine trades while recording: the book with our own orders in it, as the live engine sees it")
    rec.add_argument("--config", help="config.toml path")
    bp = bench_sub.add_parser("parallel", help="backtests on every core vs one core: speed-up, identical results")
    bp.add_argument("--data", action="append", required=True, nargs="+", help="a data set; repeat for several")
    bp.add_argument("--json", required=True, help="write results to PATH")
    bp.add_argument("--workers", type=int, default=None, help="parallel workers (default: every core)")
    bp.add_argument("--backend", choices=["auto", "ray", "process"], default="auto")
    bp.add_argument("--configs", type=int, default=1,
                    help="replay each data set with this many configurations (a sweep-like load; default 1)")
    bp.add_argument("--model", help="model file, or none (default [model].path: the shipped model)")
    bp.add_argument("--seed", type=int, default=7)
    bp.add_argument("--config", help="config.toml path")
    _add_data_options(bp)
    from flashmm.research import sweep
    from flashmm.control import ctl
    from flashmm.venues import keystore
    from flashmm.venues.citrex import devnode as citrex_devnode
    from flashmm.venues.sei import devnode

    sweep.add_cli(sub, _add_data_options)
    keystore.add_cli(sub)
    devnode.add_cli(sub)
    citrex_devnode.add_cli(sub)
    ctl.add_cli(sub)  # (dispatched above; listed here for --help)
    args = p.parse_args(argv)
    if args.command == "keystore":
        return keystore.run_cli(args)
    if args.command == "sei-devnode":
        return devnode.run_cli(args)
    if args.command == "citrex-devnode":
        return citrex_devnode.run_cli(args)
    try:
        cfg = _with_data_options(_load(args.config, seed=args.seed), args)
    except ConfigError as exc:
        print(f"flashmm: {exc}", file=sys.stderr)
        return 2
    from flashmm.data.readers import DataError
    from flashmm.model.artifact import ModelError
    from flashmm.model.predictor import ModelLoadError

    try:
        return _tools(args, cfg)
    except (DataError, ModelLoadError, ModelError) as exc:
        print(f"flashmm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # workers are stopped on the way out; nothing half-written is left
        print(f"flashmm: {args.command} interrupted", file=sys.stderr)
        return 130


def _tools(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "train":
        from flashmm.research.train import train

        data = [p for group in args.data for p in group]
        result = train(data, args.out, sim_seconds=args.sim_seconds, sim_seeds=args.sim_seeds,
                       trading_seconds=args.trading_seconds, trading_seeds=args.trading_seeds,
                       sim_presets=args.sim_presets,
                       promote_if_better=args.promote_if_better, command=" ".join(["flashmm"] + sys.argv[1:]), cfg=cfg)
        print(f"{result.architecture}: model -> {result.artifact_path}, card -> {result.card_path}")
        return 0
    if args.command == "eval-model":
        from flashmm.research.evaluate import eval_model, report_lines

        data = [p for group in args.data for p in group]
        from flashmm.model.predictor import shipped_model_path

        r = eval_model(args.model or shipped_model_path(), data, None, args.json, part=args.part, cfg=cfg)
        print("\n".join(report_lines(r)))
        print(f"-> {args.json}")
        return 0
    if args.command == "bench" and args.bench == "inference":
        from flashmm.model.predictor import shipped_model_path
        from flashmm.ops.bench_inference import bench_inference

        r = bench_inference(args.model or shipped_model_path(), args.json, n=args.n)
        print(f"inference -> {args.json}")
        return 0
    if args.command == "bench" and args.bench == "latency":
        from flashmm.ops.bench import bench_latency

        if args.model:
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": args.model})})
            if args.model.strip().lower() != "none":  # a model named here is meant to run: it prices
                cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"alpha": "model"})})
        if args.busy_cores < 0:
            print("flashmm: --busy-cores must be >= 0", file=sys.stderr)
            return 2
        result = bench_latency(cfg, args.seconds, args.json, busy_cores=args.busy_cores, speed=args.speed)
        runs = [("quiet" if args.busy_cores else "", result)] + (
            [(f"{args.busy_cores} busy core{'s' if args.busy_cores > 1 else ''}", result["busy"])]
            if args.busy_cores else [])
        for label, r in runs:
            t = r["tick_to_quote_us"]
            print(f"{label + ': ' if label else ''}tick-to-quote p50 {t['p50']} us, p99 {t['p99']} us, "
                  f"p99.9 {t['p999']} us; {r['events_per_s']:.0f} events/s")
        print(f"RSS {result['rss_mb']:.0f} MB -> {args.json}")
        return 0
    if args.command == "backtest":
        from rich.console import Console

        from flashmm.research.backtest import run_backtest, summary_table

        if args.model:
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": args.model})})
        if args.no_prediction_skew:
            cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"prediction_skew_bps": 0.0})})
        if not 0.0 <= args.trade_from_fraction < 1.0:
            print("flashmm: --trade-from-fraction must be in [0, 1)", file=sys.stderr)
            return 2
        from flashmm.research.parallel import backend_problem

        problem = backend_problem(args.backend, args.address, args.workers)
        if problem:
            print(f"flashmm: {problem}", file=sys.stderr)
            return 2
        report = run_backtest(cfg, args.data, args.strategy, args.report, args.plot,
                              trade_from_fraction=args.trade_from_fraction, workers=args.workers,
                              backend=args.backend, address=args.address)
        Console().print(summary_table(report))
        print(f"report -> {args.report}")
        return 0
    if args.command == "sweep":
        from flashmm.research.sweep import run_cli

        return run_cli(args, cfg)
    if args.command == "bench" and args.bench == "parallel":
        from flashmm.ops.bench_parallel import bench_parallel, print_result
        from flashmm.research.parallel import backend_problem

        problem = backend_problem(args.backend, None, args.workers)
        if problem:
            print(f"flashmm: {problem}", file=sys.stderr)
            return 2
        if args.model:
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": args.model})})
        print_result(bench_parallel(cfg, args.data, args.json, args.workers, args.backend, args.configs), args.json)
        return 0
    if args.command == "record":
        from flashmm.data.record import record, record_trading
        from flashmm.venues.factory import make_venue

        if args.trade:
            es = record_trading(cfg, args.duration, args.seed, Path(args.out))
            e = es.meta["engine"]
            print(f"recorded {len(es.events):,} rows, {es.messages:,} messages over {es.duration_s:.1f} s with FlashMM "
                  f"trading ({e['fills']} fills, {e['orders_placed']} orders, PnL {e['pnl_usdc']:+.2f}) -> {args.out}")
            return 0
        es = asyncio.run(record(make_venue(cfg, speed=float("inf")), args.duration, Path(args.out)))
        print(f"recorded {len(es.events):,} rows, {es.messages:,} messages over {es.duration_s:.1f} s -> {args.out}")
        return 0
    if args.command == "bench" and args.bench == "backtest":
        from flashmm.ops.bench import bench_backtest

        if args.repeat < 1:
            print("flashmm: --repeat must be >= 1", file=sys.stderr)
            return 2
        r = bench_backtest(cfg, args.data, args.json, args.quote_interval_ms, args.repeat)
        best = f" (fastest of {r['repeat']} runs; median {r['rows_per_s_median']:,.0f} rows/s)" if r["repeat"] > 1 else ""
        print(f"{r['rows']:,} rows, {r['messages']:,} messages in {r['wall_s']} s: {r['rows_per_s']:,.0f} rows/s, "
              f"{r['messages_per_s']:,.0f} messages/s, {r['replay_speed_vs_real_time']}x real time{best} "
              f"-> {args.json}")
        return 0
    if args.command == "bench" and args.bench == "ui-overhead":
        from flashmm.ops.bench import bench_ui_overhead

        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        unknown = set(modes) - {"headless", "console", "attached"}
        if unknown or not modes:
            print(f"flashmm: --modes: unknown {sorted(unknown)}", file=sys.stderr)
            return 2
        r = bench_ui_overhead(cfg, args.seconds, args.speed, args.rounds, args.json, modes)
        parts = [f"{m} p99 {r[f'{m}_p99_us']} us" + (f" ({r[f'{m}_p99_difference_us']:+} us)" if f"{m}_p99_difference_us" in r
                 else "") for m in modes]
        print(f"tick-to-quote: {', '.join(parts)} -> {args.json}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
