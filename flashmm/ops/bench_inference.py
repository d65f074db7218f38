"""Inference latency and footprint of a model file (`flashmm bench inference --json OUT`).

Single-sample latency (one (window, N_INPUTS) window, as the engine calls it) for:
- `eager`: the architecture rebuilt in Python with the file's weights (what training ran);
- `exported`: the `torch.export` program's module on a tensor (what the file holds);
- `predict_proba`: the engine's path, `LoadedModel.predict_proba` (numpy in, copy into a preallocated
  tensor, inference mode, numpy out);
- `aoti` (optional): the program compiled ahead of time by AOTInductor (C++ via gcc), with its compile
  time, package size and the largest output difference from the exported program.
Also batch throughput, the file size, the process RSS before and after loading, and `noop_reference`: an
empty call timed the same way, the machine's own latency tail at the time (on a busy shared machine the p99
of any call is set by the scheduler).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from flashmm.model import artifact
from flashmm.model.inputs import N_INPUTS


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _latency(fn: Callable[[], Any], n: int, warmup: int = 300) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = np.empty(n, dtype=np.int64)
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        fn()
        ts[i] = pc() - t0
    us = ts / 1e3
    return {"n": n, "p50_us": round(float(np.percentile(us, 50)), 1), "p90_us": round(float(np.percentile(us, 90)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1), "max_us": round(float(us.max()), 1),
            "mean_us": round(float(us.mean()), 1)}


def bench_inference(model_path: str | os.PathLike = "models/flashmm.pt2", json_out: str | os.PathLike | None = None,
                    *, n: int = 5000, aoti: bool = True, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """Measure the model file at `model_path`; write the result to `json_out` when given. `threads`: torch's
    intra-op threads, 1 as the engine serves (model.predictor.load_predictor): on a busy 2-core machine a pool
    of 2 measured p99 in the hundreds of milliseconds (its threads wait for each other), one thread ~0.3 ms."""
    from flashmm.research.train import rebuild_eager

    torch.set_num_threads(threads)

    path = Path(model_path)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    m = artifact.load(path)
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()
    meta = m.meta
    w = m.window
    rng = np.random.default_rng(seed)
    mean = np.asarray(meta.get("feature_mean", np.zeros(N_INPUTS)), dtype=np.float32)
    std = np.asarray(meta.get("feature_std", np.ones(N_INPUTS)), dtype=np.float32)
    xs = (rng.standard_normal((256, w, N_INPUTS)).astype(np.float32) * std + mean).astype(np.float32)
    x1 = torch.from_numpy(xs[:1].copy())
    eager = rebuild_eager(m)
    exported = m.module
    with torch.inference_mode():
        ref = exported(torch.from_numpy(xs)).numpy()
        eager_diff = float(np.abs(eager(torch.from_numpy(xs)).numpy() - ref).max())

    def run_eager() -> None:
        with torch.inference_mode():
            eager(x1)

    def run_exported() -> None:
        with torch.inference_mode():
            exported(x1)

    win = xs[0]
    res: dict[str, Any] = {
        "benchmark": "inference",
        "model": str(path),
        "sha256": m.sha256,
        "architecture": meta.get("architecture"),
        "params": meta.get("params"),
        "file_bytes": meta.get("file_bytes"),
        "window": w,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "load_s": round(load_s, 3),
        "rss_mb_before_load": round(rss0, 1),
        "rss_mb_model_loaded": round(rss_loaded, 1),
        "eager_vs_exported_max_abs_diff": eager_diff,
        "single_sample": {
            "eager": _latency(run_eager, n),
            "exported": _latency(run_exported, n),
            "predict_proba": _latency(lambda: m.predict_proba(win), n),
        },
    }
    # the machine's own tail: plain Python work as long as the engine's call, timed the same way; on a busy shared
    # machine its p99 is the scheduler's (a preempted process), and so is most of the model's
    p50 = res["single_sample"]["predict_proba"]["p50_us"]
    t0 = time.perf_counter()
    sum(range(100_000))
    k = max(1, int(100_000 * p50 / 1e6 / max(time.perf_counter() - t0, 1e-9)))
    res["single_sample"]["cpu_reference"] = {**_latency(lambda: sum(range(k)), n), "work": f"sum(range({k}))"}
    big = np.repeat(xs, 40, axis=0)  # 10240 windows
    t0 = time.perf_counter()
    m.predict_proba_batch(big)
    res["batch_windows_per_s"] = round(len(big) / (time.perf_counter() - t0))
    if aoti:
        try:
            with tempfile.TemporaryDirectory() as td:
                pkg = Path(td) / "model_aoti.pt2"
                t0 = time.perf_counter()
                artifact.compile_aoti(path, pkg)
                compile_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                runner = artifact.load_aoti(pkg)
                aoti_load_s = time.perf_counter() - t0
                with torch.inference_mode():
                    diff = float(np.abs(runner(torch.from_numpy(xs)).numpy() - ref).max())

                def run_aoti() -> None:
                    with torch.inference_mode():
                        runner(x1)

                res["aoti"] = {"compile_s": round(compile_s, 1), "package_bytes": pkg.stat().st_size,
                               "load_s": round(aoti_load_s, 3), "max_abs_diff_vs_exported": diff,
                               "single_sample": _latency(run_aoti, n), "rss_mb_after": round(_rss_mb(), 1)}
        except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op: report, do not fail the bench
            res["aoti"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    res["rss_mb_end"] = round(_rss_mb(), 1)
    res["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashmm.ops.bench_inference")
    ap.add_argument("--model", default="models/flashmm.pt2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--no-aoti", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the engine serves)")
    a = ap.parse_args(argv)
    r = bench_inference(a.model, a.json, n=a.n, aoti=not a.no_aoti, threads=a.threads)
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
