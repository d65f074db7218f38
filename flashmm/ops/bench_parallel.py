"""`flashmm bench parallel`: the same backtests one by one on one core, then on every core (research/parallel.py).

Reports both wall times, the speed-up with and without the start of Ray (or the pool), the machine's load
before each phase, and whether every trading figure came out identical (it must).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from flashmm import speedups
from flashmm.config import Config
from flashmm.research.parallel import Job, ParallelRunner, available_cores, trading_figures
from flashmm.telemetry.logging import configure_logging


def _variant(cfg: Config, k: int) -> Config:
    """Configuration k of a sweep-like load: risk aversion x (1 + k/4); k = 0 is `cfg` itself."""
    if k == 0:
        return cfg
    s = cfg.strategy.model_copy(update={"risk_aversion": cfg.strategy.risk_aversion * (1 + k / 4)})
    return cfg.model_copy(update={"strategy": s})


def bench_parallel(cfg: Config, data_groups: list[list[str]], json_path: str | Path, workers: int | None = None,
                   backend: str = "auto", configs: int = 1) -> dict[str, Any]:
    from flashmm.data.loader import load_configured

    configure_logging("error")
    t0 = time.perf_counter()
    data = [load_configured(cfg, g) for g in data_groups]
    load_s = time.perf_counter() - t0
    jobs = [Job(_variant(cfg, k), d, label=f"{Path(data[d].files[0]).parent.name} cfg{k}")
            for k in range(configs) for d in range(len(data))]

    load_serial = os.getloadavg()
    t0 = time.perf_counter()
    with ParallelRunner(data, 1, "serial") as runner:
        serial = runner.run(jobs)
    serial_s = time.perf_counter() - t0

    load_parallel = os.getloadavg()
    t0 = time.perf_counter()
    with ParallelRunner(data, workers, backend) as runner:
        n_workers = runner.resolved_workers()
        runner.start()  # timed apart from the backtests
        t1 = time.perf_counter()
        parallel = runner.run(jobs)
        parallel_s = time.perf_counter() - t1
        used = runner.used_backend
    total_parallel_s = time.perf_counter() - t0
    load_after = os.getloadavg()

    failed = [r.error for r in serial + parallel if not r.ok]
    identical = not failed and all(trading_figures(a.section) == trading_figures(b.section)
                                   for a, b in zip(serial, parallel, strict=True))
    rows = sum(r.section["events"] for r in serial if r.ok)
    result = {
        "benchmark": "parallel",
        "command": " ".join(["flashmm"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("flashmm") else "",
        "backend": used,
        "workers": n_workers,
        "cores": available_cores(),
        "tasks": len(jobs),
        "configs_per_data_set": configs,
        "data_sets": [{"name": Path(d.files[0]).parent.name, "source": d.source, "rows": len(d.events),
                       "duration_s": round(d.duration_s, 3)} for d in data],
        "rows_replayed": rows,
        "load_s": round(load_s, 3),
        "serial_wall_s": round(serial_s, 3),
        "parallel_wall_s": round(parallel_s, 3),
        "parallel_startup_s": round(total_parallel_s - parallel_s, 3),
        "parallel_wall_with_startup_s": round(total_parallel_s, 3),
        "speedup": round(serial_s / parallel_s, 3) if parallel_s else None,
        "speedup_with_startup": round(serial_s / total_parallel_s, 3) if total_parallel_s else None,
        "efficiency": round(serial_s / parallel_s / n_workers, 3) if parallel_s else None,
        "serial_rows_per_s": round(rows / serial_s, 1) if serial_s else None,
        "parallel_rows_per_s": round(rows / parallel_s, 1) if parallel_s else None,
        "task_wall_s": {"serial": [r.wall_s for r in serial], "parallel": [r.wall_s for r in parallel]},
        "longest_task_s": max((r.wall_s for r in serial), default=0.0),
        "identical_results": identical,
        "failed": failed,
        "loadavg_1_5_15": {"before_serial": [round(x, 2) for x in load_serial],
                           "before_parallel": [round(x, 2) for x in load_parallel],
                           "after": [round(x, 2) for x in load_after]},
        "python": platform.python_version(),
        "hot_path": speedups.summary_line(),  # compiled or pure Python (flashmm/speedups.py)
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "note": "serial: one job after another in this process (torch single-threaded, as in every worker); "
                "parallel: the same jobs as Ray tasks or processes, one per worker; parallel_wall_s excludes "
                "starting Ray (parallel_startup_s) but includes each worker's first imports and model load; "
                "a speed-up is bounded by the longest single task (longest_task_s) and by other load on the "
                "machine (loadavg).",
    }
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def print_result(r: dict[str, Any], json_path: str) -> None:
    print(f"{r['tasks']} backtests ({r['rows_replayed']:,} rows): one core {r['serial_wall_s']} s, "
          f"{r['workers']} workers ({r['backend']}) {r['parallel_wall_s']} s (+{r['parallel_startup_s']} s start): "
          f"speed-up {r['speedup']}x ({r['speedup_with_startup']}x with the start), identical results: "
          f"{r['identical_results']}; load before {r['loadavg_1_5_15']['before_serial'][0]} / "
          f"{r['loadavg_1_5_15']['before_parallel'][0]} -> {json_path}")
