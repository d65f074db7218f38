"""The benchmarks keep running and report what they claim (no timing targets asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from flashmm import speedups


def test_bench_latency_writes_its_json(tmp_path):
    out = tmp_path / "lat.json"
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "latency", "--seconds", "60", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["quote_cycles"] == d["tick_to_quote_us"]["count"] > 100
    assert 0 < d["tick_to_quote_us"]["p50"] <= d["tick_to_quote_us"]["p99"] <= d["tick_to_quote_us"]["p999"]
    assert set(d["stage_latency_us"]) == {"book", "features", "predict", "quote", "risk", "orders", "submit"}
    assert d["rss_mb"] > 0 and d["events_per_s"] > 0


def test_bench_ui_overhead_runs_headless_in_process_and_attached(tmp_path):
    out = tmp_path / "ui.json"
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "ui-overhead", "--seconds", "30", "--speed", "15",
                        "--rounds", "1", "--json", str(out)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    modes = [x["mode"] for x in d["runs"]]
    assert modes == ["headless", "console", "attached"]
    head, cons, att = d["runs"]
    assert head["quote_cycles"] == cons["quote_cycles"] == att["quote_cycles"] > 0  # the same seeded run each way
    assert head["fills"] == cons["fills"] == att["fills"]
    assert cons["console_repaints"] > 0 and head["console_repaints"] == 0
    assert att["frames_sent"] > 5 and att["console_frames_received"] >= att["frames_sent"] - 1
    assert att["console_pulls"] > 5 and att["console_merge_gaps"] == 0 and att["frame_build_encode_us_mean"] > 0
    assert d["p99_difference_us"] == round(d["console_p99_us"] - d["headless_p99_us"], 2)
    assert d["attached_p99_difference_us"] == round(d["attached_p99_us"] - d["headless_p99_us"], 2)
    assert all(0 < r["batch_cpu_p50_us"] <= r["batch_cpu_p99_us"] for r in d["runs"])  # CPU time of each batch


# ---- the busy neighbour (flashmm bench latency --busy-cores N) ----------------------------------------------

def _wait_gone(pids, timeout_s: float = 10.0) -> bool:
    import time

    from flashmm.ops.neighbour import alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_busy_neighbours_run_for_the_block_and_are_stopped_and_reaped_after_it():
    from flashmm.ops.neighbour import BusyNeighbours, alive

    with BusyNeighbours(2) as nb:
        pids = nb.pids
        assert len(pids) == 2 and all(alive(p) for p in pids)  # running before the block's first line
    assert not any(alive(p) for p in pids)  # stopped and reaped (no zombie left) when the block ends
    r = nb.report()
    assert r["stopped"] and r["processes"] == 2 and r["pids"] == pids and r["needed_sigkill"] == 0
    assert len(r["cpu_s"]) == 2 and r["wall_s"] >= 0


def test_busy_neighbours_are_stopped_when_the_measurement_fails():
    import pytest

    from flashmm.ops.neighbour import BusyNeighbours, alive

    with pytest.raises(RuntimeError, match="measurement failed"):
        with BusyNeighbours(1) as nb:
            pids = nb.pids
            raise RuntimeError("measurement failed")
    assert pids and not any(alive(p) for p in pids)


def test_busy_neighbours_die_with_a_benchmark_killed_by_sigkill(tmp_path):
    """No `finally` runs on SIGKILL: the neighbours still go (they die with their parent, PR_SET_PDEATHSIG)."""
    import os
    import signal

    code = ("import sys, time\nfrom flashmm.ops.neighbour import BusyNeighbours\n"
            "nb = BusyNeighbours(2)\nnb.start()\nprint(*nb.pids, flush=True)\ntime.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert _wait_gone(pids), "a neighbour outlived the benchmark that started it"
    finally:
        if p.poll() is None:
            p.kill()


def test_bench_latency_with_a_busy_core_reports_quiet_and_busy_side_by_side(tmp_path):
    out = tmp_path / "lat.json"
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "latency", "--seconds", "30", "--busy-cores", "1",
                        "--model", "none", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "quiet: tick-to-quote" in r.stdout and "1 busy core: tick-to-quote" in r.stdout
    d = json.loads(out.read_text())
    busy = d["busy"]
    assert d["busy_cores"] == 1 and busy["quote_cycles"] == d["quote_cycles"] > 10  # the same seeded run twice
    assert busy["fills"] == d["fills"] and busy["orders_placed"] == d["orders_placed"]
    n = busy["neighbours"]
    assert n["processes"] == 1 and n["stopped"] and n["needed_sigkill"] == 0 and len(n["cpu_s"]) == 1
    assert _wait_gone(n["pids"], 1.0)
    side = d["quiet_vs_busy_us"]
    assert side["tick_to_quote"]["p99"] == [d["tick_to_quote_us"]["p99"], busy["tick_to_quote_us"]["p99"]]
    assert set(side) == {"tick_to_quote", "book", "features", "predict", "quote", "risk", "orders", "submit"}
    bad = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "latency", "--seconds", "1", "--busy-cores",
                          "-1", "--json", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--busy-cores" in bad.stderr


# ---- flashmm bench backtest: scripts read its keys ----------------------------------------------------------

BENCH_BACKTEST_KEYS = {"benchmark", "data", "load_s", "cache", "quote_interval_ms", "rows", "messages", "wall_s",
                       "rows_per_s", "messages_per_s", "replay_speed_vs_real_time", "quote_cycles", "fills",
                       "with_model", "rss_mb", "python",
                       "hot_path",  # added with the compiled build (which one ran: flashmm/speedups.py)
                       "repeat", "wall_s_runs", "rows_per_s_median"}  # added with --repeat; none removed
BENCH_BACKTEST_MODEL_KEYS = {"model", "wall_s", "rows_per_s", "messages_per_s", "replay_speed_vs_real_time",
                             "model_runs", "model_runs_computed_ahead"}


def test_bench_backtest_json_keeps_the_keys_scripts_read(data_dir, tmp_path):
    """scripts/bench_vs_hftbacktest.py reads rows, rows_per_s, messages, messages_per_s, wall_s, load_s, cache;
    the README's throughput table the rest. The set of keys is a contract: none removed or renamed, and an
    addition is made here on purpose."""
    out = tmp_path / "b.json"
    env = dict(__import__("os").environ, FLASHMM_REPLAY__CACHE_DIR=json.dumps(str(tmp_path / "cache")))
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "backtest", "--data",
                        str(data_dir / "lobster-aapl-20120621-head"), "--quote-interval-ms", "100", "--repeat", "2",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert set(d) == BENCH_BACKTEST_KEYS and set(d["with_model"]) == BENCH_BACKTEST_MODEL_KEYS
    assert d["rows"] == d["data"]["rows"] > 0 and d["rows_per_s"] > 0 and d["quote_interval_ms"] == 100
    assert d["hot_path"] == speedups.summary_line()
    # --repeat 2: both runs timed, the fastest is the headline, the median beside it
    assert d["repeat"] == 2 and len(d["wall_s_runs"]) == 2 and d["wall_s"] == min(d["wall_s_runs"])
    w = d["wall_s_runs"]
    assert round(d["rows"] / max(w), 1) <= d["rows_per_s_median"] == round(d["rows"] / (sum(w) / 2), 1) \
        <= round(d["rows"] / min(w), 1)
    assert "fastest of 2 runs" in r.stdout


def test_bench_backtest_rejects_a_repeat_below_one(tmp_path):
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "backtest", "--data", str(tmp_path),
                        "--repeat", "0", "--json", str(tmp_path / "b.json")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "--repeat must be >= 1" in r.stderr and not (tmp_path / "b.json").exists()


def test_bench_latency_paced_runs_the_market_at_the_given_speed(tmp_path):
    """--speed X: the engine sleeps between blocks as a live one waits for the market (the realistic case for a
    busy neighbour: a sleeping process is woken ahead of a CPU hog); the JSON says so and how late blocks came."""
    import time

    out = tmp_path / "lat.json"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "bench", "latency", "--seconds", "8", "--speed", "4",
                        "--model", "none", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["speed"] == 4.0 and d["quote_cycles"] > 5 and d["block_lateness_us"]["count"] > 5
    assert d["wall_s"] >= 8 / 4 * 0.9  # paced: 8 simulated seconds took about 2 s of wall time
    assert time.monotonic() - t0 >= 2.0
