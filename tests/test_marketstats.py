"""MarketStatsCollector on hand-made sequences (expected values computed by hand), the Binance sync rule
on a tiny synthetic recording, and the real Binance spot BTCUSDT recording (which must be present)."""

from __future__ import annotations

import gzip
import math
import os
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from flashmm.core.book import L2Book
from flashmm.core.domain import BookDiff, BookSnapshot, Instrument, Side, Trade
from flashmm.research.marketstats import (
    MarketStatsCollector,
    _wquantile,
    binance_market_stats,
    binance_spot_btcusdt,
)

S = 1_000_000_000
INST = Instrument("TEST", "B", "Q", Decimal("0.01"), Decimal("0.1"))
REPO = Path(__file__).resolve().parent.parent


def _feed(col: MarketStatsCollector, book: L2Book, ev) -> None:
    if isinstance(ev, BookSnapshot):
        book.apply_snapshot(ev)
        col.on_book(book, ev.ts_ns)
    elif isinstance(ev, BookDiff):
        assert book.apply_diff(ev) or book.stale
        col.on_book(book, ev.ts_ns)
    else:
        col.on_trade(ev)


def _three_states():
    """spread 1 for 3 s (mid 100.5), spread 2 for 1 s (mid 101), spread 1 for 2 s (mid 101.5); end at 6 s.
    Levels more than 10 ticks from the best (bid 89, ask 113) must not count in depth10."""
    return [
        BookSnapshot(10, [(100, 5), (99, 7), (89, 50)], [(101, 3), (102, 4), (113, 100)], 0),
        Trade(101.0, 10, Side.BUY, S // 2),
        Trade(100.0, 2, Side.SELL, 3 * S // 2),
        Trade(101.0, 4, None, 5 * S // 2),
        BookDiff(11, 11, [], [(101, 0)], 3 * S),  # ask 101 removed: best ask 102
        BookDiff(12, 12, [(101, 2)], [], 4 * S),  # bid 101 joins: best bid 101
        Trade(102.0, 4, Side.BUY, 5 * S),
    ]


def test_time_weighted_spread_depth_trades_and_vol():
    col, book = MarketStatsCollector(INST), L2Book()
    for ev in _three_states():
        _feed(col, book, ev)
    r = col.result(end_ns=6 * S)

    assert r["duration_s"] == pytest.approx(6.0)
    assert r["book_updates"] == 3 and r["stale_updates"] == 0
    assert r["valid_time_s"] == pytest.approx(6.0)
    # spreads 1 (3 s), 2 (1 s), 1 (2 s)
    assert r["spread_ticks_median"] == 1.0
    assert r["spread_ticks_mean"] == pytest.approx(7 / 6)
    assert r["spread_ticks_p90"] == 2.0  # weight of spread 1 is 5/6 < 0.9
    assert r["spread_one_tick_frac"] == pytest.approx(5 / 6)
    # bps: 1/101.5 (2 s), 1/100.5 (3 s), 2/101 (1 s) -> cumulative 2, 5, 6 s: the median is 1/100.5
    assert r["spread_bps_median"] == pytest.approx(1e4 / 100.5)
    # best: (5+3)/2, (5+4)/2, (2+4)/2 -> 11.5/3
    assert r["depth_best_lots"] == pytest.approx(11.5 / 3)
    # within 10 ticks: bids 12, 12, 14; asks 7, 4, 4 -> (38/3 + 5) / 2
    assert r["depth10_lots"] == pytest.approx(53 / 6)
    # trades: lots 10, 2, 4, 4
    assert r["trades"] == 4
    assert r["trade_rate_per_s"] == pytest.approx(4 / 6)
    assert r["trade_size_mean_lots"] == pytest.approx(5.0)
    assert r["trade_size_median_lots"] == pytest.approx(4.0)
    assert r["trade_size_median_over_mean"] == pytest.approx(0.8)
    # (101*10 + 100*2 + 101*4 + 102*4) ticks*lots / 4 * 0.01 * 0.1
    assert r["trade_notional_mean_quote"] == pytest.approx(2022 / 4 * 0.001)
    assert r["trades_known_side"] == 3
    assert r["buy_aggressor_frac"] == pytest.approx(2 / 3)
    assert r["depth_best_in_mean_trades"] == pytest.approx(11.5 / 3 / 5)
    assert r["depth10_in_mean_trades"] == pytest.approx(53 / 6 / 5)
    # 1 s grid 0..6 s: mids 100.5, 100.5, 100.5, 101 (the update at exactly 3 s counts), 101.5, 101.5, 101.5
    # changes 0, 0, .5, .5, 0, 0: mean 1/6, sum of squared deviations 4/36 + 2*(1/3)^2 = 1/3 -> var 1/15
    assert r["vol_samples"] == 6
    assert r["vol_ticks_per_sqrt_s"] == pytest.approx(math.sqrt(1 / 15))
    r1, r2 = math.log(101 / 100.5), math.log(101.5 / 101)
    m = (r1 + r2) / 6
    assert r["vol_bps_per_sqrt_s"] == pytest.approx(math.sqrt((r1 * r1 + r2 * r2 - 6 * m * m) / 5) * 1e4)
    assert r["mid_changes"] == 2
    assert r["mid_changes_per_s"] == pytest.approx(2 / 6)


def test_last_state_runs_to_the_last_event_without_end():
    col, book = MarketStatsCollector(INST), L2Book()
    for ev in _three_states():
        _feed(col, book, ev)
    r = col.result()  # the last event is the trade at 5 s: the last state lasts 1 s
    assert r["duration_s"] == pytest.approx(5.0)
    assert r["spread_ticks_mean"] == pytest.approx((3 + 2 + 1) / 5)
    assert r["trade_rate_per_s"] == pytest.approx(4 / 5)


def test_stale_states_are_skipped_and_their_time_excluded():
    col, book = MarketStatsCollector(INST), L2Book()
    evs = [
        BookSnapshot(10, [(100, 5)], [(101, 5)], 0),              # spread 1, valid 0..1 s
        BookDiff(13, 13, [(100, 1)], [], 1 * S),                  # gap (11, 12 missing): stale
        BookDiff(14, 14, [(100, 2)], [], 2 * S),                  # still stale
        BookSnapshot(20, [(99, 5)], [(102, 5)], 3 * S),           # spread 3, valid 3..5 s
    ]
    for ev in evs:
        _feed(col, book, ev)
    r = col.result(end_ns=5 * S)
    assert r["stale_updates"] == 2 and r["book_updates"] == 2
    assert r["valid_time_s"] == pytest.approx(3.0)
    assert r["spread_ticks_median"] == 3.0  # 2 s of 3 ticks vs 1 s of 1 tick
    assert r["spread_ticks_mean"] == pytest.approx(7 / 3)
    assert r["spread_one_tick_frac"] == pytest.approx(1 / 3)
    # grid 0..5 s: mid valid at 0, 3, 4, 5 only; the changes 0->1, 1->2, 2->3 touch a stale point
    assert r["vol_samples"] == 2
    assert r["vol_ticks_per_sqrt_s"] == 0.0
    # the jump across the stale period is not a mid change
    assert r["mid_changes"] == 0


def test_empty_collector_returns_none_not_errors():
    r = MarketStatsCollector(INST).result()
    assert r["duration_s"] == 0.0 and r["spread_ticks_median"] is None and r["trade_rate_per_s"] is None
    assert r["vol_bps_per_sqrt_s"] is None and r["buy_aggressor_frac"] is None


def test_weighted_quantile_is_the_lower_one():
    import numpy as np

    assert _wquantile(np.array([2.0, 1.0]), np.array([1.0, 1.0]), 0.5) == 1.0
    assert _wquantile(np.array([2.0, 1.0]), np.array([1.0, 1.0]), 0.51) == 2.0
    assert _wquantile(np.array([5.0, 1.0, 3.0]), np.array([0.0, 0.2, 0.8]), 0.9) == 3.0


# ---- the Binance sync rule on a synthetic recording -----------------------------------------------


def _line(ts_ns: int, obj) -> bytes:
    return str(ts_ns).encode() + b" " + orjson.dumps(obj) + b"\n"


def _depth(U, u, b, a):
    data = {"e": "depthUpdate", "E": 0, "U": U, "u": u, "b": b, "a": a}
    return {"stream": "btcusdt@depth@100ms", "data": data}


def _trade(t, p, q, m):
    return {"stream": "btcusdt@trade", "data": {"t": t, "p": p, "q": q, "T": 0, "m": m}}


def test_binance_sync_rule_buffer_drop_gap(tmp_path):
    inst = binance_spot_btcusdt()
    lines = [
        _line(1 * S, _depth(1, 5, [["100.00", "1.0"]], [])),                 # u <= lastUpdateId: dropped
        # straddles lastUpdateId + 1 = 11: buffered, applied when the snapshot arrives
        _line(2 * S, _depth(6, 12, [["100.01", "0.5"]], [["100.03", "0"]])),
        _line(3 * S, {"lastUpdateId": 10,
                      "bids": [["100.00", "2.00000"], ["99.99", "1"]],
                      "asks": [["100.03", "1.5"], ["100.04", "3"]]}),
        _line(4 * S, _trade(1, "100.02", "0.25", True)),
        _line(5 * S, {"stream": "btcusdt@bookTicker",
                      "data": {"u": 15, "b": "100.01", "B": "0.5", "a": "100.02", "A": "0.7"}}),
        _line(5 * S, _depth(13, 15, [], [["100.02", "0.7"]])),
        _line(6 * S, _trade(2, "100.02", "0.5", False)),
        _line(7 * S, _depth(17, 18, [["100.01", "0"]], [])),                 # 16 missing: gap, stale
        _line(8 * S, _depth(19, 20, [], [])),                                # stale: skipped
    ]
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as fh:
        fh.writelines(lines)
    r = binance_market_stats([p], inst)
    c = r["counts"]
    assert c["diffs_dropped_before_sync"] == 1 and c["diffs_applied"] == 2 and c["snapshots"] == 1
    assert r["sync"] == {"U": 6, "u": 12, "lastUpdateId": 10}
    assert r["gaps"] == 1 and r["stale_updates"] == 2
    # valid states: 3 s (snapshot + buffered diff: 100.01 / 100.04, spread 3) until 5 s (100.01 / 100.02)
    # until the gap at 7 s; the last event is at 8 s
    assert r["book_updates"] == 3
    assert r["valid_time_s"] == pytest.approx(4.0)
    assert r["spread_ticks_mean"] == pytest.approx((3 * 2 + 1 * 2) / 4)
    # depth over the 3 valid updates: the snapshot itself (2.0 / 1.5), then the buffered diff, then 13..15
    best_sums = (200000 + 150000) + (50000 + 300000) + (50000 + 70000)
    assert r["depth_best_lots"] == pytest.approx(best_sums / 2 / 3)
    assert r["buy_aggressor_frac"] == 0.5  # m=true: the seller was the aggressor
    assert r["trade_size_mean_lots"] == pytest.approx(37500)
    assert r["bbo_crosscheck"] == {"compared": 1, "mismatched": 0}
    assert r["duration_s"] == pytest.approx(5.0)  # from the snapshot (the first event fed) to the last frame


# ---- the real recording -----------------------------------------------------------------------------


def _data_dir() -> Path:
    env = os.environ.get("FLASHMM_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def test_real_binance_spot_btcusdt():
    folder = _data_dir() / "binance-spot-btcusdt-20240808"
    files = sorted(folder.glob("*.gz")) if folder.is_dir() else []
    if len(files) != 2:
        pytest.fail(f"recorded data missing: expected btcusdt_20240808.gz and btcusdt_20240809.gz "
                    f"in {folder} "
                    f"(set FLASHMM_DATA_DIR to the shared data folder)")
    r = binance_market_stats(files, binance_spot_btcusdt())
    assert r["source"] == ["btcusdt_20240808.gz", "btcusdt_20240809.gz"]
    c = r["counts"]
    # the whole recording, as one stream: one snapshot, no gap, nothing stale or rejected
    assert c["snapshots"] == 1 and c["depth_diffs"] == 6495 and c["trades"] == 19904 and c["bad_lines"] == 0
    assert c["diffs_dropped_before_sync"] == 2 and c["diffs_applied"] == 6493
    assert r["sync"] == {"U": 50093239208, "u": 50093239224, "lastUpdateId": 50093239218}
    assert r["gaps"] == 0 and r["stale_updates"] == 0 and r["one_sided_updates"] == 0
    assert r["book_rejects"] == {}
    # the book agrees with every bookTicker frame that names one of its update ids
    assert r["bbo_crosscheck"]["compared"] > 1000 and r["bbo_crosscheck"]["mismatched"] == 0
    assert 645 < r["duration_s"] < 655
    # spread: one tick almost always; the mean is pulled up by short wide states after sweeps
    assert r["spread_ticks_median"] == 1.0 and r["spread_ticks_p90"] == 1.0
    assert 0.985 < r["spread_one_tick_frac"] < 0.999
    assert 1.5 < r["spread_ticks_mean"] < 4.0
    assert r["spread_bps_median"] == pytest.approx(1e4 * 0.01 / 61700, rel=0.01)  # one tick at ~61.7k
    # depth ~2.3 BTC at the best, little more within 10 ticks
    assert 150_000 < r["depth_best_lots"] < 300_000
    assert r["depth_best_lots"] <= r["depth10_lots"] < 1.2 * r["depth_best_lots"]
    assert 70 < r["depth_best_in_mean_trades"] < 140
    # trades: ~30/s, mean 0.022 BTC (~1.36k USDT), median 0.00067 BTC, a few more sells than buys
    assert 25 < r["trade_rate_per_s"] < 36
    assert 1900 < r["trade_size_mean_lots"] < 2500
    assert r["trade_size_median_lots"] == 67.0
    assert 0.02 < r["trade_size_median_over_mean"] < 0.04
    assert 1200 < r["trade_notional_mean_quote"] < 1500
    assert r["trades_known_side"] == 19904
    assert 0.42 < r["buy_aggressor_frac"] < 0.49
    # volatility ~1.2 bps/sqrt(s); the mid moves in dollar-sized jumps about once a second
    assert r["vol_samples"] == 650
    assert 0.9 < r["vol_bps_per_sqrt_s"] < 1.6
    assert r["vol_ticks_per_sqrt_s"] == pytest.approx(r["vol_bps_per_sqrt_s"] * 1e-4 * 61700 / 0.01, rel=0.02)
    assert 0.8 < r["mid_changes_per_s"] < 1.5


@pytest.mark.parametrize("preset, seconds", [("deep", 20.0), ("thin", 600.0)])  # thin: a trade every ~50 s
def test_sim_market_stats_runs_and_is_sane(preset, seconds):
    from flashmm.config import SimConfig
    from flashmm.research.marketstats import sim_market_stats

    r = sim_market_stats(seconds, seed=7, sim_config=SimConfig(preset=preset))
    assert r["duration_s"] == pytest.approx(seconds, abs=1.0)
    assert r["book_updates"] > seconds and r["trades"] > 0  # one book update per 400 ms block
    assert r["gaps"] == 0 and r["stale_updates"] == 0
    assert r["spread_ticks_median"] >= 1.0
    assert r["trade_rate_per_s"] > 0 and r["vol_samples"] >= seconds - 2
