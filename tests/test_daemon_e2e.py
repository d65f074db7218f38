"""The real daemon as a subprocess: a seeded accelerated run, and SIGTERM mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SUMMARY_KEYS = {
    "events", "quotes", "orders_placed", "orders_cancelled", "fills", "position_base", "position_usdc",
    "inventory_pct", "max_abs_inventory_pct", "pnl_usdc", "pnl_breakdown", "market_spread_bps", "our_spread_bps",
    "spread_improvement_pct", "tick_to_quote_us", "stage_latency_us", "breakers", "uptime_s", "venue", "seed",
}


def _daemon(tmp_path, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, FLASHMM_LOGGING__AUDIT_FILE=json.dumps(str(tmp_path / "audit.jsonl")),
               FLASHMM_RUN__STATUS_INTERVAL_S="0.2")
    return subprocess.Popen([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_seeded_daemon_run_trades_and_writes_an_honest_summary(tmp_path):
    p = _daemon(tmp_path, "--seed", "7", "--duration", "300", "--speed", "200", "--summary", "run.json")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    s = json.loads((tmp_path / "run.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["venue"] == "sim" and s["seed"] == 7
    assert 299 <= s["uptime_s"] <= 302
    # the default thin market: a book update per 400 ms block (750 in 300 s), a trade every ~50 s
    assert s["events"] > 750 and s["quotes"] > 500
    assert s["orders_placed"] > 0 and s["fills"] > 0
    # every order placed ended in exactly one state, or is still open
    assert s["orders_placed"] == s["orders_cancelled"] + s["orders_filled"] + s["orders_rejected"] + s["open_orders"]
    assert s["orders_filled"] > 0 and s["fills"] >= s["orders_filled"]
    assert s["open_orders"] == 0 and s["exit"]["orders_cancelled_cleanly"] is True
    assert abs(s["inventory_pct"]) <= 2.0 * 1.01 and s["max_abs_inventory_pct"] <= 2.0 * 1.01
    b = s["pnl_breakdown"]
    assert abs(b["spread_capture"] + b["inventory"] + b["fees"] - s["pnl_usdc"]) < 1e-3
    assert b["fees"] < 0  # gas and per-order charges are paid
    assert s["market_spread_bps"] > 0 and s["our_spread_bps"] >= s["market_spread_bps"] * 0.5
    t = s["tick_to_quote_us"]
    assert 0 < t["p50"] <= t["p99"] <= t["p999"]
    assert set(s["stage_latency_us"]) == {"book", "features", "predict", "quote", "risk", "orders", "submit"}
    # the quoter prices with the online alpha by default: no model is loaded, and that is no fault
    assert s["model"] == "none: online alpha" and s["breakers"]["model"]["state"] == "ok"
    assert s["strategy_state"]["alpha"] == "online" and s["strategy_state"]["alpha_live"]["points"] > 100
    assert s["breakers"]["feed"]["trips"] == 0
    # structlog JSON on stderr, one object a line
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any(x["event"] == "fill" for x in lines) and any(x["event"] == "stop" for x in lines)
    assert all("run_id" in x for x in lines)


def test_same_seed_gives_the_same_trading(tmp_path):
    runs = []
    for i in range(2):
        d = tmp_path / str(i)
        d.mkdir()
        p = _daemon(d, "--seed", "11", "--duration", "60", "--speed", "1000", "--summary", "run.json")
        p.communicate(timeout=120)
        assert p.returncode == 0
        runs.append(json.loads((d / "run.json").read_text()))
    keys = ("events", "quotes", "orders_placed", "orders_cancelled", "fills", "position_base", "pnl_usdc")
    assert [runs[0][k] for k in keys] == [runs[1][k] for k in keys]


def test_sigterm_cancels_all_orders_and_exits_0_with_summary(tmp_path):
    p = _daemon(tmp_path, "--speed", "5", "--summary", "run.json")
    deadline = time.monotonic() + 60
    assert p.stderr is not None
    # wait for a status line that shows resting orders: the signal then lands mid-run with orders out
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if '"event":"status"' in line and json.loads(line)["open_orders"] > 0:
            break
    else:
        p.kill()
        pytest.fail("daemon never reported resting orders")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err[-2000:]
    s = json.loads((tmp_path / "run.json").read_text())
    assert s["exit"]["signal"] == "SIGTERM"
    assert s["orders_placed"] > 0
    assert s["open_orders"] == 0 and s["exit"]["orders_cancelled_cleanly"] is True
