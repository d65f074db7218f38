"""The soak benchmark (flashmm/ops/soak.py, scripts/bench_soak.py) on a few simulated minutes: its JSON shape,
the order accounting identities (exact, every period and after shutdown), and that those identities do
catch a lost message. No timing is asserted: the thresholds are the benchmark's, reported, not tested."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flashmm.core.domain import OrderAck
from flashmm.ops.soak import THRESHOLDS, SoakProbe, accounting, check_grid, interval_summary, slope_per_hour
from flashmm.telemetry.histogram import LatencyHistogram
from tests.conftest import ROOT, make_engine

HOURS, SAMPLE_S, PERIOD_S = 0.1, 20, 120  # 6 simulated minutes, 18 samples, 3 periods


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[int, dict]:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    # the deep preset: a busy market for the accounting to check (the thin default placed 62 orders in these
    # 6 minutes)
    env = dict(os.environ, FLASHMM_SIM__PRESET='"deep"')
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_soak.py"), "--hours", str(HOURS),
                        "--sample-s", str(SAMPLE_S), "--period-s", str(PERIOD_S), "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode in (0, 1), r.stderr  # 1 = a flag failed (a few minutes cannot show a flat RSS slope)
    return r.returncode, json.loads(out.read_text())


def test_the_daemon_ran_the_whole_span_and_the_json_has_its_shape(report):
    rc, d = report
    assert d["benchmark"] == "soak" and d["daemon_exit_code"] == 0
    assert d["simulated_s_completed"] == HOURS * 3600
    assert d["model"] != "none"  # the shipped model by default
    assert [s["sim_s"] for s in d["samples"]] == [SAMPLE_S * (i + 1) for i in range(int(HOURS * 3600 / SAMPLE_S))]
    assert [p["sim_end_s"] for p in d["periods"]] == [PERIOD_S, 2 * PERIOD_S, 3 * PERIOD_S]
    for s in d["samples"]:
        assert s["rss_mb"] > 0 and s["hwm_mb"] >= s["rss_mb"] and s["tasks"] >= 2 and s["fds"] > 0
        assert s["gc_objects"] > 0
    for p in d["periods"]:
        # the daemon's own tasks: the run itself and its status line loop
        assert {"run_daemon", "run_daemon.<locals>.status_loop"} <= set(p["task_kinds"])
    assert d["thresholds"] == THRESHOLDS
    assert set(d["flags"]) == {"completed", "rss_slope_ok", "tasks_no_growth", "fds_no_growth", "p99_stable",
                               "every_order_accounted_for", "no_orders_left_open", "position_matches_venue", "passed"}
    assert d["log_files_bytes"]["flashmm.log"] > 0  # fills logged at info, as in production


def test_flags_follow_the_stated_thresholds_and_the_exit_code(report):
    rc, d = report
    tr, flags = d["trend"], d["flags"]
    assert flags["rss_slope_ok"] == (tr["rss_slope_mb_per_h"] < THRESHOLDS["rss_slope_mb_per_h_max"])
    assert flags["p99_stable"] == (abs(tr["p99_relative_change"]) <= THRESHOLDS["p99_relative_change_max"])
    assert tr["p99_per_period_us"] == [p["tick_to_quote_us"]["p99"] for p in d["periods"]]
    assert flags["passed"] == all(v for k, v in flags.items() if k != "passed")
    assert rc == (0 if flags["passed"] else 1)
    half = [s["rss_mb"] for s in d["samples"] if s["sim_s"] >= HOURS * 3600 / 2]
    assert tr["second_half_samples"] == len(half)


def test_every_order_is_accounted_for_every_period_and_after_shutdown(report):
    _, d = report
    end = d["end"]
    acc = end["accounting"]
    for ident in acc["identities"]:
        assert ident["lhs"] == ident["rhs"] and ident["residual"] == 0, ident
    assert acc["total_abs_residual"] == 0 and acc["broken"] == []
    assert all(p["accounting_residual"] == 0 and p["identities_broken"] == [] for p in d["periods"])
    c = acc["counts"]
    assert c["placed"] > 100 and c["cancelled"] > 0 and c["filled_complete"] > 0  # the run did trade
    assert c["placed"] == c["filled_complete"] + c["cancelled"] + c["rejected"]  # nothing left open
    assert c["open"] == 0 and end["venue_vs_engine"]["venue_open_orders"] == 0
    assert end["venue_vs_engine"]["position_difference_lots"] == 0
    assert abs(end["venue_vs_engine"]["cash_difference_usdc"]) < 1e-6
    assert d["flags"]["every_order_accounted_for"] and d["flags"]["no_orders_left_open"]


def test_per_period_figures_add_up_to_the_run(report):
    _, d = report
    total = d["tick_to_quote_us_whole_run"]["count"]
    assert sum(p["tick_to_quote_us"]["count"] for p in d["periods"]) == total  # no quote cycle lost or doubled
    assert sum(p["in_period"]["quote_cycles"] for p in d["periods"]) == total
    assert sum(p["in_period"]["placed"] for p in d["periods"]) == d["end"]["accounting"]["counts"]["placed"]
    assert sum(s["t2q_count"] for s in d["samples"]) == total
    for p in d["periods"]:
        lat = p["tick_to_quote_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def test_the_identities_catch_a_lost_acknowledgement():
    """A venue answer that never reaches the engine must show as a residual, not vanish."""
    engine, venue = make_engine()
    probe = SoakProbe(duration_s=60, sample_s=20, period_s=60, gc_objects=False)
    probe.attach(engine)
    counted = venue.next_batch  # the probe's wrapper: it has seen every event
    lost: list[OrderAck] = []

    async def lossy() -> list | None:
        batch = await counted()
        if batch and not lost:
            for i, ev in enumerate(batch):
                if isinstance(ev, OrderAck):
                    lost.append(batch.pop(i))
                    break
        return batch

    venue.next_batch = lossy
    asyncio.run(engine.run(60))
    assert lost and len(probe.periods) == 1
    acc = accounting(engine, probe.wire)
    assert "acks_known" in acc["broken"] and acc["total_abs_residual"] > 0
    ident = next(i for i in acc["identities"] if i["name"] == "acks_known")
    assert ident["residual"] == 1  # wire acks: one more than the engine saw
    assert probe.periods[0]["accounting_residual"] > 0


def test_interval_percentiles_are_those_of_the_interval_alone():
    h = LatencyHistogram()
    for v in range(1_000, 2_000_000, 997):  # an earlier interval, slow
        h.record(v)
    before = (h.counts.copy(), h.total)
    only = LatencyHistogram()
    for v in range(100_000, 300_000, 101):
        h.record(v)
        only.record(v)
    got = interval_summary(h.counts.copy(), before[0], h.total - before[1])
    want = only.summary_us()
    assert got["count"] == want["count"]
    for k in ("p50", "p99", "p999"):
        assert got[k] == pytest.approx(want[k], rel=0.02)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-9)
    assert interval_summary(h.counts, h.counts.copy(), 0)["count"] == 0


def test_slope_is_per_hour_and_needs_points():
    xs = [1800.0 + 60 * i for i in range(30)]
    assert slope_per_hour(xs, [100 + 2.0 * x / 3600 for x in xs]) == pytest.approx(2.0)
    assert slope_per_hour(xs, list(np.full(30, 5.0))) == pytest.approx(0.0, abs=1e-9)
    assert slope_per_hour(xs[:2], [1.0, 2.0]) is None


def test_grid_that_does_not_fit_is_refused_clearly():
    check_grid(6 * 3600, 60, 3600, 400)
    with pytest.raises(ValueError, match="block"):
        check_grid(3600, 7, 3600, 400)
    with pytest.raises(ValueError, match="sample_s"):
        check_grid(3600, 40, 100, 400)
    with pytest.raises(ValueError, match="whole number of periods"):
        check_grid(5000, 60, 3600, 400)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_soak.py"), "--hours", "1", "--sample-s", "7",
                        "--json", "/dev/null"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "not a multiple" in r.stderr
