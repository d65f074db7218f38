"""The strategy comparison (flashmm.research.compare, scripts/compare_strategies.py) without hftbacktest:
the converter to hftbacktest's rows checked by hand, the market timeline, the fill metrics by hand, and the
script's arguments and JSON with the hftbacktest side skipped. The full run (hftbacktest in a throwaway venv)
is a benchmark script, not a test."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from flashmm.core.domain import Instrument
from flashmm.data.events import (
    EVENT_DTYPE,
    FLAG_EMPTY,
    FLAG_END,
    KIND_BBO,
    KIND_DIFF,
    KIND_SNAP,
    KIND_TRADE,
    EventWriter,
)
from flashmm.data.loader import load_events
from flashmm.research.compare import (
    FILL_DTYPE,
    HFTBT_EVENT_DTYPE,
    MarketTimeline,
    bootstrap_ci,
    compare_tops,
    market_timeline,
    max_abs_inventory,
    pnl_split,
    realised_spread,
    score_fills,
    to_hftbacktest,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "compare_strategies.py"
INST = Instrument("TEST", "B", "Q", Decimal("0.5"), Decimal("0.25"))
ONE = Instrument("LIN", "B", "Q", Decimal(1), Decimal(1))  # tick 1, lot 1: ticks and lots read as prices and units
INV = Instrument("INV_PERP", "BTC", "USD", Decimal(1), Decimal(1), Decimal(100), True)  # 100-USD contracts
S = 1_000_000_000
# hftbacktest 2.4's flags, written out: EXCH_EVENT | LOCAL_EVENT = 0xC0000000, BUY 1 << 29, SELL 1 << 28
EL, BUY, SELL = 0xC0000000, 1 << 29, 1 << 28


def _events() -> np.ndarray:
    w = EventWriter()
    w.message(1000, KIND_SNAP, [(1, 100, 5), (1, 99, 7), (-1, 101, 3), (-1, 102, 4)], 10, 10)
    w.message(1500, KIND_BBO, [(1, 100, 6), (-1, 101, 3)], 12, 0)  # a top newer than the book (id 12)
    w.message(2000, KIND_DIFF, [(1, 100, 0), (-1, 103, 2), (-1, 102, 4)], 11, 11)  # older than that top
    w.message(2500, KIND_TRADE, [(1, 101, 1)], 900, 0)
    w.message(2600, KIND_TRADE, [(0, 100, 2)], 901, 0)
    w.message(2800, KIND_BBO, [(1, 101, 1), (-1, 102, 4)], 13, 0)  # the top moves up a tick
    w.message(2900, KIND_BBO, [(1, 99, 1), (-1, 100, 4)], 9, 0)  # older than the book: ignored
    ev = w.array()
    # an empty diff (kept by the Binance reader so the sequence chain stays whole) and an empty snapshot
    extra = np.array([(3000, KIND_DIFF, 0, FLAG_EMPTY | FLAG_END, 0, 0, 12, 12),
                      (4000, KIND_SNAP, 0, FLAG_EMPTY | FLAG_END, 0, 0, 20, 20)], dtype=EVENT_DTYPE)
    return np.concatenate([ev, extra])


def test_converter_writes_what_flashmms_book_did_as_hftbacktest_rows_checked_by_hand():
    rows, counts = to_hftbacktest(_events(), INST)
    assert rows.dtype == HFTBT_EVENT_DTYPE and rows.dtype.itemsize == 64  # hftbacktest's event_dtype layout
    expected = [  # (ev, ts, px, qty): px = ticks x 0.5, qty = lots x 0.25
        (EL | 3, 1000, 0.0, 0.0),  # snapshot: clear both sides (no side flag) ...
        (EL | 4 | BUY, 1000, 50.0, 1.25),  # ... then its levels as DEPTH_SNAPSHOT_EVENT
        (EL | 4 | BUY, 1000, 49.5, 1.75),
        (EL | 4 | SELL, 1000, 50.5, 0.75),
        (EL | 4 | SELL, 1000, 51.0, 1.0),
        (EL | 1 | BUY, 1500, 50.0, 1.5),  # the top resized the best bid 5 -> 6 lots; the ask is unchanged
        # the diff is older than the top: its bid at the top's price is skipped, 102 keeps its size,
        # and only the new ask level at 103 changes the book
        (EL | 1 | SELL, 2000, 51.5, 0.5),
        (EL | 2 | BUY, 2500, 50.5, 0.25),  # a buyer-aggressor trade
        (EL | 2, 2600, 50.0, 0.5),  # an unknown aggressor: no side flag
        # the top moved up: the ask at 101 is gone (it was below the new ask), a bid appears at 101
        (EL | 1 | BUY, 2800, 50.5, 0.25),
        (EL | 1 | SELL, 2800, 50.5, 0.0),
        # the stale top and the empty diff change nothing; the empty snapshot is its clear row alone
        (EL | 3, 4000, 0.0, 0.0),
    ]
    got = sorted(rows.tolist(), key=lambda r: (r[1], r[0] & 0xFF != 3, -(r[0] & BUY)))
    want = sorted([(ev, ts, ts, px, qty, 0, 0, 0.0) for ev, ts, px, qty in expected],
                  key=lambda r: (r[1], r[0] & 0xFF != 3, -(r[0] & BUY)))
    assert [(int(a), b, c, float(d), float(e)) for a, b, c, d, e, *_ in got] == \
        [(a, b, c, d, e) for a, b, c, d, e, *_ in want]
    assert rows["order_id"].sum() == 0 and rows["ival"].sum() == 0 and rows["fval"].sum() == 0
    assert np.all(np.diff(rows["local_ts"]) >= 0)
    assert {k: counts[k] for k in ("rows_in", "rows_out", "snapshots", "snapshot_levels", "diff_levels_in",
                                   "diff_level_changes", "tops_in", "tops_applied", "top_level_changes", "trades",
                                   "trades_unknown_aggressor", "unusable_book_messages")} == {
        "rows_in": 17, "rows_out": 12, "snapshots": 2, "snapshot_levels": 4, "diff_levels_in": 3,
        "diff_level_changes": 1, "tops_in": 3, "tops_applied": 2, "top_level_changes": 3, "trades": 2,
        "trades_unknown_aggressor": 1, "unusable_book_messages": 1}
    assert counts["book_rejects"] == {"diff_levels_behind_top": 1, "top_older_than_book": 1}
    # without the best bid/offer ([replay].use_book_ticker = false) the diff applies in full
    rows2, counts2 = to_hftbacktest(_events(), INST, use_top=False)
    diff_rows = rows2[rows2["local_ts"] == 2000]
    assert sorted((float(r["px"]), float(r["qty"])) for r in diff_rows) == [(50.0, 0.0), (51.5, 0.5)]
    assert counts2["bbo_not_used"] == 3 and counts2["tops_applied"] == 0


def test_converter_on_a_slice_of_the_real_binance_recording_matches_the_raw_frames(data_dir, tmp_path):
    folder = data_dir / "binance-spot-btcusdt-20240808"
    es = load_events([folder], tmp_path)
    ev = es.events[: np.flatnonzero(es.events["flags"] & FLAG_END)[3000] + 1]  # the first 3,001 messages
    rows, counts = to_hftbacktest(ev, es.instrument)
    assert counts["tops_applied"] > 0  # bookTicker frames move the top between the 100 ms diffs
    assert not {"sequence_gap", "crossed_after_diff", "snapshot_crossed"} & set(counts["book_rejects"])
    assert counts["rows_out"] == len(rows) == (counts["snapshots"] + counts["snapshot_levels"] + counts["trades"]
                                               + counts["diff_level_changes"] + counts["top_level_changes"])
    assert np.all(np.diff(rows["local_ts"]) >= 0) and np.array_equal(rows["exch_ts"], rows["local_ts"])
    # the first trade and the 100th depth diff after the snapshot, against the raw websocket frames themselves
    trade_frame = diff_frame = None
    diffs_after_snapshot = -1
    with gzip.open(sorted(folder.glob("*.gz"))[0], "rt") as fh:
        for line in fh:
            recv, _, raw = line.partition(" ")
            msg = json.loads(raw)
            stream = msg.get("stream", "")
            if "lastUpdateId" in msg:
                diffs_after_snapshot = 0
            if trade_frame is None and stream.endswith("@trade"):
                trade_frame = (int(recv), msg["data"])
            if "@depth" in stream and diffs_after_snapshot >= 0:
                diffs_after_snapshot += 1
                if diffs_after_snapshot == 100:
                    diff_frame = (int(recv), msg["data"])
            if trade_frame and diff_frame:
                break
    t_ts, t = trade_frame
    r = rows[(rows["ev"] & 0xFF) == 2][0]
    assert int(r["exch_ts"]) == t_ts  # FlashMM's one timestamp: the recorder's receive time
    assert float(r["px"]) == pytest.approx(float(t["p"]), abs=1e-9) and float(r["qty"]) == pytest.approx(float(t["q"]))
    assert int(r["ev"]) == EL | 2 | (SELL if t["m"] else BUY)  # m = buyer is maker: the seller aggressed
    # the diff's rows are the levels of the raw frame that changed FlashMM's book (depth diffs only here:
    # with the best bid/offer, levels the top already moved past are left out as the engine leaves them)
    d_ts, d = diff_frame
    rows_depth_only, _ = to_hftbacktest(ev, es.instrument, use_top=False)
    diff_rows = rows_depth_only[((rows_depth_only["ev"] & 0xFF) == 1) & (rows_depth_only["local_ts"] == d_ts)]
    raw_levels = {(BUY, round(float(p), 2)): float(q) for p, q in d["b"]}
    raw_levels |= {(SELL, round(float(p), 2)): float(q) for p, q in d["a"]}
    assert 0 < len(diff_rows) <= len(raw_levels)
    for x in diff_rows:
        assert raw_levels[(int(x["ev"]) & (BUY | SELL), round(float(x["px"]), 2))] == pytest.approx(float(x["qty"]))


def test_market_timeline_follows_the_book_and_goes_unusable_after_a_gap():
    w = EventWriter()
    w.message(1 * S, KIND_SNAP, [(1, 100, 5), (-1, 102, 4)], 10, 10)
    w.message(2 * S, KIND_DIFF, [(1, 101, 1)], 11, 11)
    w.message(3 * S, KIND_TRADE, [(1, 102, 1)], 1, 0)
    w.message(4 * S, KIND_DIFF, [(-1, 102, 0), (-1, 103, 2)], 13, 13)  # 12 is missing: a gap
    w.message(5 * S, KIND_SNAP, [(1, 99, 5), (-1, 100, 4)], 20, 20)
    tl, stats = market_timeline(w.array(), INST)
    assert tl.ts_ns.tolist() == [1 * S, 2 * S, 4 * S, 5 * S]  # book messages only
    assert tl.bid.tolist() == [100, 101, -1, 99] and tl.ask.tolist() == [102, 102, -1, 100]
    assert stats["unusable_book_messages"] == 1 and stats["book_rejects"] == {"sequence_gap": 1}
    assert tl.mid(np.array([2 * S]))[0] == pytest.approx(101.5)  # ticks; at a message: after it
    assert tl.mid(np.array([2 * S]), strict=True)[0] == pytest.approx(101)  # just before it
    assert np.isnan(tl.mid(np.array([S // 2, 4 * S]))).all()  # before any book; stale
    chk = compare_tops(tl, np.array([2 * S, 3 * S, 4 * S, 6 * S]), np.array([101, 101, 101, 99]),
                       np.array([102, 103, 102, 100]))
    assert (chk["samples"], chk["both_usable"], chk["equal"], chk["different"]) == (4, 3, 2, 1)
    assert chk["usable_only_in_other"] == 1 and chk["first_differences"][0]["other"] == [101, 103]


def _timeline() -> MarketTimeline:
    # tick 1: mid 100.5 until t=4 s, then 102 (bid 101 / ask 103) until the end at t=10 s
    return MarketTimeline(np.array([0, 4 * S, 10 * S]), np.array([100, 101, 101]), np.array([101, 103, 103]), 1.0)


def _fills(*rows) -> np.ndarray:
    return np.array(list(rows), dtype=FILL_DTYPE).reshape(len(rows))


def test_realised_spread_by_hand():
    tl = _timeline()
    fills = _fills((1 * S, 1, 100.0, 1.0, 0.0),  # buy at 100 with mid 100.5; 5 s later mid 102
                   (2 * S, -1, 101.0, 3.0, 0.0),  # sell 3 at 101 with mid 100.5; 5 s later mid 102
                   (6 * S, 1, 101.0, 1.0, 0.0))  # 6 + 5 > 10 s, the end of the data: not scored
    rs = realised_spread(fills, tl, horizon_s=5.0)
    a = 2 * (102 - 100) / 100.5 * 1e4  # +398.0 bps
    b = 2 * -1 * (102 - 101) / 100.5 * 1e4  # -199.0 bps
    assert rs["bps"] == pytest.approx((a * 1 + b * 3) / 4)
    assert (rs["fills_scored"], rs["fills_unscored"]) == (2, 1)
    lo, hi = rs["ci95"]
    assert b <= lo <= rs["bps"] <= hi <= a
    # the mid at the fill is the one just before it: a fill at the instant the book moves uses the old mid
    at_move = realised_spread(_fills((4 * S, 1, 100.0, 1.0, 0.0)), _timeline(), horizon_s=5.0)
    assert at_move["bps"] == pytest.approx(2 * (102 - 100) / 100.5 * 1e4)
    assert realised_spread(_fills(), tl)["bps"] is None


def test_bootstrap_interval_of_a_constant_is_that_constant_and_widens_with_spread():
    assert bootstrap_ci(np.full(10, 2.5), np.ones(10)) == pytest.approx((2.5, 2.5))
    x = np.array([-1.0, 1.0] * 50)
    lo, hi = bootstrap_ci(x, np.ones(100))
    assert -0.4 < lo < 0 < hi < 0.4  # about +-1.96 x 1/sqrt(100)


def test_pnl_split_and_max_inventory_by_hand():
    tl = _timeline()
    fills = _fills((1 * S, 1, 100.0, 2.0, 0.02),  # buy 2 at 100 (mid 100.5), fee 0.02
                   (5 * S, -1, 103.0, 1.0, 0.0))  # sell 1 at 103 (mid 102)
    p = pnl_split(fills, tl, 102.0, ONE)
    assert p["spread_capture"] == pytest.approx(2 * 0.5 + 1 * 1.0)
    assert p["total"] == pytest.approx((-200 + 103) + 1 * 102 - 0.02)  # cash + position x end mid - fees
    assert p["fees"] == pytest.approx(-0.02)
    assert p["inventory"] == pytest.approx(p["total"] - p["spread_capture"] - p["fees"])
    # 2 held while the mid went 100.5 -> 102 (one of them sold at the 102 mid: its edge is spread capture)
    assert p["inventory"] == pytest.approx(2 * (102 - 100.5))
    # position 2 from t=1 s (mid 100.5, then 102 at 4 s) until 5 s: max |2 x 102| = 204
    assert p["settle"] == pytest.approx({k: p[k] for k in ("total", "spread_capture", "inventory", "fees")})
    assert max_abs_inventory(fills, tl, 0, 10 * S, ONE) == pytest.approx(204.0)
    m = score_fills(fills, tl, 0, 10 * S, ONE, capital=10_000.0, orders_placed=8)
    assert m["max_abs_inventory_pct"] == pytest.approx(2.04) and m["orders_per_fill"] == 4.0
    assert m["fills"] == 2 and m["position_end_lots"] == 1.0 and m["end_mid"] == 102.0


def test_inverse_contract_pnl_settles_in_the_base_and_exposure_is_the_face_value_by_hand():
    tl = _timeline()
    fills = _fills((1 * S, 1, 100.0, 2.0, 0.0),  # buy 2 contracts (200 USD) at 100, mid 100.5
                   (5 * S, -1, 103.0, 1.0, 0.0))  # sell 1 at 103, mid 102; 1 held to the end (mid 102)
    p = pnl_split(fills, tl, 102.0, INV)
    btc = 100 * (1 / 100 - 1 / 103) + 100 * (1 / 100 - 1 / 102)  # n x 100 USD x (1/entry - 1/exit)
    assert p["settle_currency"] == "BTC" and p["settle"]["total"] == pytest.approx(btc)
    edge = (200 / 100 - 200 / 100.5) + (100 / 102 - 100 / 103)  # each fill against the mid, in BTC
    assert p["settle"]["spread_capture"] == pytest.approx(edge)
    assert p["total"] == pytest.approx(btc * 102) and p["spread_capture"] == pytest.approx(edge * 102)
    # exposure is the contracts' face value whatever the price: 2 x 100 USD at most
    assert max_abs_inventory(fills, tl, 0, 10 * S, INV) == pytest.approx(200.0)


def test_scores_do_not_depend_on_the_order_the_engine_reported_its_fills_in():
    tl = _timeline()
    fills = _fills(*[(1 * S, 1 if i % 2 else -1, 100.0 + i % 3, 1.0 + i, 0.0) for i in range(12)],
                   (2 * S, 1, 101.0, 2.0, 0.0), (3 * S, -1, 100.0, 1.0, 0.0))
    a = score_fills(fills, tl, 0, 10 * S, ONE, capital=10_000.0, orders_placed=20)
    b = score_fills(fills[::-1].copy(), tl, 0, 10 * S, ONE, capital=10_000.0, orders_placed=20)
    assert a["realised_spread"]["ci95"] == b["realised_spread"]["ci95"]
    assert a["pnl"]["settle"] == pytest.approx(b["pnl"]["settle"])


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT))


def test_script_with_hftbacktest_skipped_writes_the_comparison_json(data_dir, tmp_path):
    out, md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    r = _script("--data", str(data_dir / "lobster-aapl-20120621-head"), "--skip-hftbacktest", "--model", "none",
                "--json", str(out), "--markdown", str(md), "--bootstrap", "200")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["matched"]["quote_interval_ms"] == 100.0
    assert rep["matched"]["order_usd"] == 200.0 and rep["matched"]["latency_ms"] == 50.0
    assert "hftbacktest_status" not in rep and len(rep["machine"]["loadavg_start"]) == 3
    (ds,) = rep["data_sets"]
    assert ds["name"] == "lobster-aapl-20120621-head" and ds["scored_s"] == pytest.approx(0.3 * ds["duration_s"], rel=1e-3)
    assert set(ds["strategies"]) == {"flashmm", "symmetric"}
    for s in ("flashmm", "symmetric"):
        res = ds["strategies"][s]
        m = res["metrics"]
        assert set(m) >= {"pnl", "fills", "realised_spread", "max_abs_inventory_pct", "orders_per_fill"}
        assert set(m["pnl"]) == {"total", "spread_capture", "inventory", "fees", "settle", "settle_currency"}
        assert set(m["realised_spread"]) >= {"bps", "ci95", "fills_scored", "fills_unscored", "method"}
        own = res["engine_own"]
        # one accounting for every engine, and it agrees with FlashMM's own report
        assert m["fills"] == own["fills"] > 0
        assert m["pnl"]["total"] == pytest.approx(own["pnl_usdc"], abs=0.01)
        assert m["max_abs_inventory_pct"] == pytest.approx(own["max_abs_inventory_pct"], abs=1e-3)
    assert res["strategy"] == "symmetric" and ds["strategies"]["flashmm"]["strategy"] == "glft"
    table = md.read_text().splitlines()
    assert len(table) == 4 and "FlashMM default" in table[2] and "FlashMM symmetric" in table[3]
    assert "FlashMM default" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--from-fraction", "1.5"], "--from-fraction must be in (0, 1)"),
    (["--strategies", "glft", "--skip-hftbacktest"], "leaves no strategy"),
    (["--strategies", "nope"], "invalid choice"),
    (["--data", "/nonexistent/data-set"], "no such file or folder"),
])
def test_script_refuses_bad_arguments_with_exit_2(args, message):
    r = _script(*args, "--skip-hftbacktest", timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_default_data_sets_are_every_market_folder_but_the_lobster_fixture(data_dir):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import compare_strategies
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    sets, excluded = compare_strategies.discover(data_dir)
    names = [Path(s[0]).name for s in sets]
    assert "binance-spot-btcusdt-20240808" in names and "bitstamp-btcusd-20150501" in names
    assert "lobster-aapl-20120621-head" not in names and "parser fixture" in excluded["lobster-aapl-20120621-head"]
    # a data set with no trades is refused with its reason, not scored as an empty success
    es = load_events([data_dir / "lobster-aapl-20120621-head"], None)
    es.events = es.events[es.events["kind"] != KIND_TRADE]
    with pytest.raises(compare_strategies.DataSetSkipped, match="no trades"):
        compare_strategies.check_comparable(es, "no-trades")


def test_the_throughput_benchmark_still_starts_after_the_venv_helpers_moved():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vs_hftbacktest.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--hftbt-venv" in r.stdout, r.stderr


def test_the_throughput_table_sets_both_sides_medians_and_runs_side_by_side(capsys):
    """print_table with FlashMM's --repeat keys (wall_s_runs, rows_per_s_median): the medians' row and ratio and
    the timed-run counts are printed beside hftbacktest's (a report from one run of the script, abridged)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_vs_hftbacktest", ROOT / "scripts" / "bench_vs_hftbacktest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    runs = [{"loop_s": s, "orders_submitted": 100, "fills": 3} for s in (0.030, 0.028, 0.029)]
    report = {
        "config": {"quote_interval_ms": 100.0}, "versions": {"hftbacktest": "2.4.4"},
        "hftbacktest": {"backtest": {"rows": 300_000, "wall_s": 0.028, "wall_s_median": 0.029,
                                     "rows_per_s": 300_000 / 0.028, "rows_per_s_median": 300_000 / 0.029,
                                     "runs": runs}},
        "flashmm": {"result": {"rows": 450_000, "wall_s": 0.40, "wall_s_runs": [0.42, 0.40, 0.44], "repeat": 3,
                               "rows_per_s": 450_000 / 0.40, "rows_per_s_median": 450_000 / 0.42}},
        "ratio_flashmm_over_hftbacktest": {"rows_per_s": (450_000 / 0.40) / (300_000 / 0.028),
                                           "rows_per_s_median": (450_000 / 0.42) / (300_000 / 0.029)},
    }
    mod.print_table(report)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "median of the runs" in line)
    assert "1,071,429" in row and "10,344,828" in row and "0.104" in row  # FlashMM's and hftbacktest's medians
    row = next(line for line in out.splitlines() if "loop wall s, median" in line)
    assert "0.42" in row and "0.029" in row
    row = next(line for line in out.splitlines() if "timed runs" in line)
    assert [c.strip() for c in row.split("│")[2:4]] == ["3", "3"]
