"""Benchmarks with JSON output (`flashmm bench ...`). Figures in the README come from these."""

from __future__ import annotations

import asyncio
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from flashmm.config import Config
from flashmm.engine import Engine
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.sim import SimVenue


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench_latency(cfg: Config, seconds: float, json_path: str | Path) -> dict[str, Any]:
    """Run the engine on the simulated market with no pacing for `seconds` of venue time."""
    configure_logging("error")
    venue = SimVenue(cfg.sim, cfg.instrument.instrument(), cfg.run.seed, speed=float("inf"))
    engine = Engine(cfg, venue)
    t0 = time.perf_counter()
    cpu0 = time.process_time()

    async def go() -> None:
        await engine.run(seconds)
        await engine.shutdown()

    asyncio.run(go())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    s = engine.summary()
    lat = {name: h.summary_us() for name, h in engine.hist.items()}
    result = {
        "benchmark": "latency",
        "command": " ".join(["flashmm"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("flashmm") else "",
        "venue": "sim",
        "seed": cfg.run.seed,
        "simulated_s": seconds,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "speedup_vs_real_time": round(seconds / wall, 1),
        "blocks": engine.counters["batches"],
        "events": engine.counters["events"],
        "events_per_s": round(engine.counters["events"] / wall, 1),
        "quote_cycles": engine.tick_to_quote.count,
        "tick_to_quote_us": engine.tick_to_quote.summary_us(),
        "stage_latency_us": lat,
        "rss_mb": round(_rss_mb(), 1),
        "fills": s["fills"],
        "orders_placed": s["orders_placed"],
        "targets": {"tick_to_quote_p99_us": 1000, "rss_mb": 400},
        "meets_targets": engine.tick_to_quote.percentile(99) / 1e3 <= 1000 and _rss_mb() <= 400,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "note": "events/s counts all venue events; wall time includes the simulated market itself "
                "(matching and other traders), which is not part of tick-to-quote.",
    }
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result
