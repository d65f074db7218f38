"""Backtests on every real data set, both strategies; bad data end to end; record -> replay."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from flashmm.config import Config, ReplayConfig
from flashmm.data.readers import read_flashmm
from flashmm.research.backtest import max_drawdown, run_backtest, sharpe_annualised

DATA_SETS = {
    "binance-spot": "binance-spot-btcusdt-20240808",
    "binance-usdm": "binance-usdm-btcusdt-20240808",
    "binance-cm": "binance-cm-btcusd-perp-20240808",
    "bitstamp": "bitstamp-btcusd-20150501",
    "lobster": "lobster-aapl-20120621-head",
}


def cached(path) -> Config:
    return Config(replay=ReplayConfig(cache_dir=str(path)))


@pytest.fixture(scope="module")
def reports(data_dir, tmp_path_factory) -> dict[str, dict]:
    """One backtest run per strategy over every real data set."""
    cfg = cached(tmp_path_factory.mktemp("cache"))
    out = {}
    for strategy in ("flashmm", "symmetric"):
        path = tmp_path_factory.mktemp("reports") / f"{strategy}.json"
        run_backtest(cfg, [[str(data_dir / d)] for d in DATA_SETS.values()], strategy, path, show_progress=False)
        out[strategy] = json.loads(path.read_text())
    return out


@pytest.mark.parametrize("source", list(DATA_SETS))
@pytest.mark.parametrize("strategy", ["flashmm", "symmetric"])
def test_each_real_data_set_backtests_with_sane_metrics(reports, source, strategy):
    sec = next(s for s in reports[strategy]["data_sets"] if s["data"]["source"] == source)
    assert sec["strategy"] == ("glft" if strategy == "flashmm" else "symmetric")
    assert sec["events"] == sec["data"]["rows"] > 0 and sec["messages"] == sec["data"]["messages"]
    # quoting both sides for a real part of the run (AAPL's 2,000 USD limit is 3 shares: one side often closes)
    assert 0.3 * min(sec["data"]["duration_s"], 60) < sec["quoting_time_s"] <= sec["data"]["duration_s"] + 1
    assert sec["orders_placed"] > 0
    b = sec["pnl_breakdown"]
    assert abs(b["spread_capture"] + b["inventory"] + b["fees"] - sec["pnl_usdc"]) < 1e-3
    assert sec["instrument"]["symbol"] == sec["data"]["symbol"]
    # quotes never add beyond the 2 % limit; the inventory breaker flattens at 105 % of it (price drift)
    assert sec["inventory"]["max_abs_inventory_pct"] <= 2.0 * 1.05
    assert sec["orders_placed"] == sec["orders_filled"] + sec["orders_cancelled"] + sec["orders_rejected"]
    assert sec["market_spread_bps"] > 0 and sec["our_spread_bps"] > 0
    # the seed KPI only where the market's spread is two ticks or more (and not at one tick most of the time);
    # said why where it is not. The Binance books sit at one tick: null on all three (spot's mean is 2.4 ticks)
    if sec["market_spread_ticks"] < 2.0 or sec["data"]["source"].startswith("binance"):
        assert sec["spread_improvement_pct"] is None
    else:
        assert sec["spread_improvement_pct"] is not None
    assert (sec["spread_improvement_note"] == "") == (sec["spread_improvement_pct"] is not None)
    # quotes are post-only: no fill of ours took liquidity (nothing here flattened)
    assert sec["taker_share_pct"] in (None, 0.0) and sec["post_only_rejects"] >= 0
    assert sec["max_drawdown_usdc"] >= 0
    assert sec["rows_per_s"] > 0 and sec["replay_speed_vs_real_time"] > 1
    if strategy == "symmetric":
        assert sec["prediction_hit_rate"] is None and sec["model"] == "none: symmetric"
    r = sec["realised_spread_bps"]
    assert (r["fills"] > 0) == (r["5s"] is not None) and r["fills"] <= sec["fills"]
    if r["fills"] >= 2:
        assert r["ci95"][0] <= r["5s"] <= r["ci95"][1]
    for h in ("1s", "5s", "30s"):
        assert h in sec["markout_bps"]
    if sec["fills"]:
        # effective = realised + adverse selection, fill by fill, so also on average over the same fills
        assert sec["effective_spread_bps"] is not None and sec["orders_per_fill"] >= 1.0
    for key in ("spread_improvement_pct", "sharpe", "fill_rate", "order_to_fill_ratio", "wall_s", "sharpe_method",
                "time_at_touch_pct", "adverse_selection_bps", "mid_gap_at_fills_bps", "pnl_settle"):
        assert key in sec


def test_fills_happen_on_the_liquid_recordings(reports):
    """The replay fills quotes on every liquid recording: the symmetric baseline's fixed +-2.5 bps more than ten
    times on each Binance set; FlashMM, which stands where its measured fills earned their margin, at least once
    (8 to 37 fills there with today's defaults)."""
    for strategy, least in (("flashmm", 1), ("symmetric", 11)):
        for sec in reports[strategy]["data_sets"]:
            if sec["data"]["source"].startswith("binance"):
                assert sec["fills"] >= least, (strategy, sec["data"]["source"], sec["fills"])


def test_the_symmetric_baseline_quotes_its_fixed_spread(reports):
    # 2 x 2.5 bps, rounded outward to ticks (and never inside the book): at least 5 bps on every data set
    for sec in reports["symmetric"]["data_sets"]:
        assert sec["our_spread_bps"] >= 5.0 - 1e-6


def test_sharpe_and_drawdown_by_hand():
    pnl = np.array([0.0, 1.0, 3.0, 2.0, 5.0, 1.0])
    assert max_drawdown(pnl) == 4.0  # peak 5 -> 1
    r = np.diff(pnl) / 100.0
    assert sharpe_annualised(pnl, 100.0) == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(525600))
    assert sharpe_annualised(pnl[:3], 100.0) is None


def test_a_gap_in_real_data_pauses_quoting_until_resync_and_never_crashes(data_dir, tmp_path):
    src = data_dir / DATA_SETS["binance-spot"] / "btcusdt_20240808.gz"
    with gzip.open(src, "rb") as f:
        lines = [next(f) for _ in range(20000)]
    depth = [i for i, x in enumerate(lines) if b"depth@100ms" in x]
    del lines[depth[200]]  # a lost depth frame: the book must go stale and stay so (no later snapshot)
    lines.insert(5000, b"garbage that is not a frame\n")
    bad = tmp_path / "btcusdt_20240808.gz"
    with gzip.open(bad, "wb") as f:
        f.writelines(lines)
    report = run_backtest(Config(), [[str(bad)]], "flashmm", tmp_path / "r.json", show_progress=False)
    sec = report["data_sets"][0]
    assert sec["data"]["reader_rejects"].get("malformed_line") == 1
    assert sec["book_rejects"].get("sequence_gap") == 1
    assert sec["book_rejects"].get("diff_while_stale", 0) > 100  # every later diff refused, counted
    assert sec["breakers"]["feed"]["state"] == "tripped"
    assert sec["orders_placed"] > 0  # it quoted before the gap ...
    # ... and quoted for less than the whole recording, since quoting stops at the gap
    assert sec["quoting_time_s"] < 0.9 * sec["data"]["duration_s"]


def test_record_the_simulated_market_then_replay_it(tmp_path):
    out = tmp_path / "sim.npz"
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "record", "--duration", "120", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    es = read_flashmm(out)
    assert es.source == "flashmm" and es.instrument.symbol == "SEI/USDC"
    assert 119 <= es.duration_s <= 121 and es.meta["diffs"] == 300 and es.meta["snapshots"] == 1
    report = run_backtest(Config(), [[str(out)]], "flashmm", tmp_path / "r.json", show_progress=False)
    sec = report["data_sets"][0]
    assert sec["events"] == len(es.events) and sec["orders_placed"] > 0
    assert sec["book_rejects"] == {}


def test_the_daemon_runs_on_replay(data_dir, tmp_path):
    env = dict(os.environ, FLASHMM_REPLAY__CACHE_DIR=json.dumps(str(tmp_path / "cache")),
               FLASHMM_LOGGING__AUDIT_FILE='""')
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--venue", "replay",
                        "--data", str(data_dir / DATA_SETS["lobster"]), "--speed", "50", "--summary", "s.json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["venue"] == "replay" and s["symbol"] == "AAPL" and s["quotes"] > 0
    assert 45 <= s["uptime_s"] <= 50 and s["open_orders"] == 0


def test_replay_without_data_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--venue", "replay"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--data" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "backtest", "--data", str(tmp_path / "nope"),
                        "--report", "r.json"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_backtest_plot_draws_the_charts_in_the_terminal(data_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "backtest", "--data", str(data_dir / DATA_SETS["lobster"]),
                        "--report", "r.json", "--plot", "--cache-dir", str(tmp_path / "c")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)  # plotext colours its text
    assert "AAPL (lobster): PnL (USD) by second" in out and "inventory, % of capital" in out
    assert "spreads, bps" in out and "report -> r.json" in out


def test_eval_model_prints_its_figures_beside_every_baseline(tmp_path):
    r = subprocess.run([sys.executable, "-m", "flashmm.cli", "eval-model", "--data", "sim:240:5", "--part", "all",
                        "--json", "e.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for label in ("model", "sign of imbalance", "logistic regression", "majority class", "always flat"):
        assert label in out, out
    assert "directional None" not in out and "n/a" not in out.split("model", 1)[1].splitlines()[0]
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["pooled"]["baselines"]["imbalance_sign"]["n"] == result["pooled"]["n"] > 0


def test_a_replay_raises_the_young_collection_threshold_and_puts_it_back():
    import gc

    from flashmm.research.backtest import _REPLAY_GC_THRESHOLD0, replay_gc

    before = gc.get_threshold()
    with replay_gc():
        during = gc.get_threshold()
    assert during == (max(before[0], _REPLAY_GC_THRESHOLD0), before[1], before[2])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), replay_gc():
        raise RuntimeError("a replay that fails")
    assert gc.get_threshold() == before
