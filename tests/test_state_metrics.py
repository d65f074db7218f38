"""Portfolio PnL split, the success metrics, the latency histogram and the microstructure features, each on
a hand-worked example."""

from __future__ import annotations

import numpy as np
import pytest

from flashmm.config import default_instrument
from flashmm.core.book import L2Book
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import BookDiff, BookSnapshot, Fill, Side, Trade
from flashmm.core.features import F, FeatureEngine
from flashmm.core.metrics import (
    FillQuality,
    RollingRange,
    TimeWeightedSpreads,
    fill_rate,
    inventory_pct,
    mean_ci95,
    orders_per_fill,
    spread_bps,
    spread_improvement,
    spread_improvement_pct,
    taker_share_pct,
    time_at_touch_pct,
)
from flashmm.core.state import Portfolio
from flashmm.telemetry.histogram import LatencyHistogram

# ---- Portfolio ---------------------------------------------------------------------------------------


def test_pnl_split_on_a_hand_example():
    # SEI/USDC, tick 0.0001, lot 1. Buy 100 lots at 3999 ticks while the mid is 4000, paying a 0.02 fee,
    # then 0.005 of gas; the mid moves to 4010.
    #   cash flow       = -3999 * 0.0001 * 100           = -39.99
    #   spread capture  = (4000 - 3999) * 0.0001 * 100   = +0.01
    #   position value  = 4010 * 0.0001 * 100            = 40.10
    #   gross           = 40.10 - 39.99                  = 0.11
    #   inventory       = gross - spread capture         = 0.10  (10 ticks * 0.0001 * 100)
    #   fees            = -(0.02 + 0.005)                = -0.025
    #   total           = 0.11 - 0.025                   = 0.085
    pf = Portfolio(default_instrument())
    pf.on_fill(Fill(1, Side.BUY, 3999.0, 100, 0.02, True, 0, False), mid_ticks=4000.0)
    pf.on_fee(0.005)
    pnl = pf.pnl(4010.0)
    assert pf.position_lots == 100
    assert pnl.spread_capture == pytest.approx(0.01)
    assert pnl.inventory == pytest.approx(0.10)
    assert pnl.fees == pytest.approx(-0.025)
    assert pnl.total == pytest.approx(0.085)
    assert pnl.total == pytest.approx(pnl.spread_capture + pnl.inventory + pnl.fees, abs=1e-12)
    assert pf.fills[0].mid_ticks == 4000.0 and pf.volume_lots == 100
    assert pf.pnl_total_quote(4010.0) == pf.pnl_quote(4010.0).total  # the drawdown breaker's shortcut, exactly


def test_pnl_split_round_trip_sell_above_mid():
    # then sell the 100 lots at 4012 while the mid is 4010: spread capture +2 ticks * 100 = 0.02 more,
    # the position is flat so inventory no longer moves with the mid.
    #   cash flow = -39.99 + 40.12 = 0.13; spread capture 0.01 + 0.02 = 0.03; inventory = 0.13 - 0.03 = 0.10
    pf = Portfolio(default_instrument())
    pf.on_fill(Fill(1, Side.BUY, 3999.0, 100, 0.0, True, 0, True), mid_ticks=4000.0)
    pf.on_fill(Fill(2, Side.SELL, 4012.0, 100, -0.01, True, 0, True), mid_ticks=4010.0)  # a rebate
    for mid in (4010.0, 3000.0):
        pnl = pf.pnl(mid)
        assert pnl.spread_capture == pytest.approx(0.03)
        assert pnl.inventory == pytest.approx(0.10)
        assert pnl.fees == pytest.approx(0.01)
        assert pnl.total == pytest.approx(0.14)
    assert pf.position_lots == 0 and pf.max_abs_position_lots == 100 and pf.volume_lots == 200


def test_realised_and_unrealised_by_hand_through_a_flip():
    # Buy 100 at 4000, buy 100 at 4020 (average 4010), sell 150 at 4030: 150 closed at +20 ticks = +0.30
    # realised, 50 left long at 4010; sell 100 at 4000: 50 closed at -10 ticks (-0.05), the position flips
    # to 50 short entered at 4000. At a mid of 3990 the short is +10 ticks * 50 = +0.05 unrealised.
    # Fees 0.04 paid in all come off the realised side.
    pf = Portfolio(default_instrument())
    for side, px, lots in ((Side.BUY, 4000.0, 100), (Side.BUY, 4020.0, 100), (Side.SELL, 4030.0, 150),
                           (Side.SELL, 4000.0, 100)):
        pf.on_fill(Fill(1, side, px, lots, 0.01, True, 0, True), mid_ticks=px)
    realised, unrealised = pf.realised_unrealised(3990.0)
    assert pf.position_lots == -50
    assert realised == pytest.approx(0.30 - 0.05 - 0.04)
    assert unrealised == pytest.approx(0.05)
    assert realised + unrealised == pytest.approx(pf.pnl(3990.0).total)


def test_realised_and_unrealised_on_an_inverse_contract_add_up_in_its_base():
    from decimal import Decimal

    from flashmm.core.domain import Instrument

    inst = Instrument("BTCUSD_PERP", "BTC", "USD", Decimal("0.1"), Decimal("1"), Decimal("100"), True)
    pf = Portfolio(inst)
    pf.on_fill(Fill(1, Side.BUY, 600_000.0, 10, 0.0, True, 0, False), 600_000.0)  # 10 contracts at 60,000
    pf.on_fill(Fill(2, Side.SELL, 620_000.0, 4, 0.0, True, 0, False), 620_000.0)  # 4 closed at 62,000
    realised, unrealised = pf.realised_unrealised(610_000.0)
    assert realised == pytest.approx(4 * 100 * (1 / 60_000 - 1 / 62_000), rel=1e-9)  # BTC, by hand
    assert unrealised == pytest.approx(6 * 100 * (1 / 60_000 - 1 / 61_000), rel=1e-9)
    assert realised + unrealised == pytest.approx(pf.pnl(610_000.0).total, rel=1e-12)


def test_cost_basis_rebuilt_from_a_journal_after_restart_and_adopted_positions():
    pf = Portfolio(default_instrument())
    pf.on_fill(Fill(1, Side.BUY, 4000.0, 100, 0.0, True, 0, True), mid_ticks=4000.0)
    pf.on_fill(Fill(2, Side.SELL, 4010.0, 40, 0.0, True, 0, True), mid_ticks=4010.0)
    restored = Portfolio(default_instrument())
    restored.position_lots, restored.cash_flow = pf.position_lots, pf.cash_flow
    restored.rebuild_cost_basis(pf.fills)
    assert restored.realised_unrealised(4005.0) == pytest.approx(pf.realised_unrealised(4005.0))
    assert restored.realised_unrealised(4005.0)[0] == pytest.approx(0.04)  # 40 lots closed at +10 ticks
    adopted = Portfolio(default_instrument())
    adopted.adopt_position(200, 4000.0)  # held before this run: entered at the mid of adoption
    assert adopted.realised_unrealised(4001.0) == pytest.approx((0.0, 0.02))


# ---- metrics -------------------------------------------------------------------------------------------


def test_spread_improvement_pct():
    assert spread_improvement_pct(10.0, 8.0) == pytest.approx(20.0)  # 100 * (10 - 8) / 10
    assert spread_improvement_pct(10.0, 15.0) == pytest.approx(-50.0)  # wider than the market
    assert spread_improvement_pct(0.0, 5.0) == 0.0


def test_inventory_pct_and_small_metrics():
    assert inventory_pct(2_000.0, 100_000.0) == pytest.approx(2.0)
    assert inventory_pct(-1_500.0, 100_000.0) == pytest.approx(-1.5)
    assert fill_rate(3, 12) == 0.25 and fill_rate(3, 0) == 0.0
    assert spread_bps(2.0, 4000.0) == pytest.approx(5.0)  # 1e4 * 2 / 4000


def test_time_weighted_spreads_by_hand():
    tw = TimeWeightedSpreads()
    tw.observe(0, 10.0, 5.0)  # holds for 1 s
    tw.observe(1 * NS_PER_S, 20.0, 8.0)  # holds for 3 s
    tw.observe(4 * NS_PER_S, None, 3.0)  # not quoting both sides: 4 s..6 s excluded
    tw.observe(6 * NS_PER_S, 30.0, 30.0)  # holds for 1 s
    tw.observe(7 * NS_PER_S, 1.0, 1.0)  # closes the last interval; its own values have no time yet
    # market = (10*1 + 20*3 + 30*1) / 5 = 100 / 5 = 20; ours = (5*1 + 8*3 + 30*1) / 5 = 59 / 5 = 11.8
    assert tw.time_ns == 5 * NS_PER_S
    assert tw.market_bps == pytest.approx(20.0)
    assert tw.ours_bps == pytest.approx(11.8)
    assert TimeWeightedSpreads().market_bps == 0.0


def test_spread_improvement_is_null_with_a_reason_on_a_one_tick_book():
    assert spread_improvement(10.0, 8.0, 4.0) == (pytest.approx(20.0), "")
    value, why = spread_improvement(0.0016, 1.5, 1.01)  # BTCUSDT: one tick of 0.0016 bps
    assert value is None and "1.01 ticks < 2" in why
    assert spread_improvement(0.0, 0.0, 0.0) == (None, "no time quoting both sides")
    # a mean above two ticks from rare wide moments on a book at one tick most of the time: still a one-tick book
    value, why = spread_improvement(0.004, 9.9, 2.49, one_tick_share=0.9)
    assert value is None and "one tick 90 %" in why
    assert spread_improvement(10.0, 8.0, 4.0, one_tick_share=0.4) == (pytest.approx(20.0), "")


def test_time_at_touch_market_ticks_taker_share_and_orders_per_fill_by_hand():
    tw = TimeWeightedSpreads()
    tw.observe(0, 10.0, 12.0, 4.0, 1.0)  # both sides at the touch for 2 s
    tw.observe(2 * NS_PER_S, 10.0, 14.0, 2.0, 0.5)  # one side for 2 s
    tw.observe(4 * NS_PER_S, 10.0, 20.0, 2.0, 0.0)  # neither for 4 s
    tw.observe(8 * NS_PER_S, None, None)
    # touch = (1*2 + 0.5*2 + 0*4) / 8 = 3 / 8; market ticks = (4*2 + 2*2 + 2*4) / 8 = 2.5
    assert time_at_touch_pct(tw.touch_ns, tw.time_ns) == pytest.approx(37.5)
    assert tw.market_ticks == pytest.approx(2.5)
    assert tw.one_tick_share == 0.0  # never at one tick
    tw.observe(9 * NS_PER_S, 10.0, 12.0, 1.0)  # one tick for 3 s (8 s .. 9 s were not quoted)
    tw.observe(12 * NS_PER_S, None, None)
    assert tw.one_tick_share == pytest.approx(3 / 11)
    assert time_at_touch_pct(0.0, 0.0) is None
    assert taker_share_pct(1, 4) == 25.0 and taker_share_pct(0, 0) is None
    assert orders_per_fill(30, 4) == 7.5 and orders_per_fill(3, 0) is None


def test_fill_quality_by_hand():
    fq = FillQuality()
    s = NS_PER_S
    # a buy at 99 with the mid at 100, then a sell at 102 with the mid at 101
    fq.on_fill(0, 1, 99.0, 100.0)
    fq.on_fill(1 * s, -1, 102.0, 101.0)
    assert fq.effective() == pytest.approx((2e4 * 1 / 100 + 2e4 * 1 / 101) / 2)  # 2*side*(mid0-p)/mid0
    fq.resolve(1 * s, 100.5)  # the buy's 1 s horizon: mid 100.5
    assert fq.markout(1.0) == pytest.approx(1e4 * (100.5 - 99) / 99)
    fq.resolve(2 * s, 101.5)  # the sell's 1 s horizon
    assert fq.markout(1.0) == pytest.approx((1e4 * 1.5 / 99 + 1e4 * -(101.5 - 102) / 102) / 2)
    fq.resolve(5 * s, 98.0)  # the buy's 5 s horizon: the market fell 2 below its mid
    rs, ci, n = fq.realised(5.0)
    assert n == 1 and ci is None and rs == pytest.approx(2e4 * (98.0 - 99.0) / 100.0)  # 2*side*(mid5-p)/mid0
    assert fq.adverse_selection(5.0) == pytest.approx(2e4 * (100.0 - 98.0) / 100.0)  # effective - realised
    fq.resolve(6 * s, 103.0)  # the sell's 5 s horizon
    rs, ci, n = fq.realised(5.0)
    values = [2e4 * (98.0 - 99.0) / 100.0, 2e4 * -(103.0 - 102.0) / 101.0]
    assert n == 2 and rs == pytest.approx(np.mean(values))
    half = 1.96 * np.std(values, ddof=1) / np.sqrt(2)
    assert ci == pytest.approx([rs - half, rs + half])
    assert fq.markout(30.0) is None and fq.pending()
    d = fq.as_dict()
    assert d["realised_spread_bps"]["fills"] == 2 and d["markout_bps"]["30s"] is None
    assert mean_ci95(0, 0.0, 0.0) == (None, None)


def test_rolling_range_keeps_the_min_and_max_of_the_window():
    rr = RollingRange()
    s = NS_PER_S
    assert rr.push(0, 100.0, -5 * s) == (100.0, 100.0)
    assert rr.push(1 * s, 103.0, -4 * s) == (100.0, 103.0)
    assert rr.push(2 * s, 101.0, -3 * s) == (100.0, 103.0)
    assert rr.push(6 * s, 102.0, 1 * s) == (101.0, 103.0)  # 100 at t=0 left the window
    assert rr.push(7 * s, 99.0, 2 * s) == (99.0, 102.0)  # 103 at t=1 left too
    values = np.random.default_rng(3).normal(100, 1, 500)
    for i, v in enumerate(values):  # against a brute-force window of 20
        lo, hi = rr.push(100 * s + i, float(v), 100 * s + i - 19)
        w = values[max(0, i - 19): i + 1]
        assert (lo, hi) == (w.min(), w.max())


# ---- LatencyHistogram ----------------------------------------------------------------------------------


def test_histogram_is_exact_below_128_ns():
    h = LatencyHistogram()
    for v in (5, 17, 17, 100, 127, 64):
        h.record(v)
    # sorted: 5, 17, 17, 64, 100, 127; nearest rank ceil(q/100 * 6)
    assert h.percentile(0) == 5.0
    assert h.percentile(50) == 17.0  # rank 3
    assert h.percentile(51) == 64.0  # rank 4
    assert h.percentile(80) == 100.0  # rank ceil(4.8) = 5
    assert h.percentile(100) == 127.0
    assert (h.count, h.min, h.max, h.total) == (6, 5, 127, 330)
    assert h.mean() == pytest.approx(55.0)


def test_histogram_percentiles_within_two_percent_of_numpy():
    rng = np.random.default_rng(1)
    sample = rng.lognormal(mean=11.0, sigma=1.2, size=20_000).astype(np.int64) + 200  # ~60 us median, long tail
    h = LatencyHistogram()
    for v in sample.tolist():
        h.record(v)
    for q in (1, 10, 50, 90, 95, 99, 99.9):
        want = float(np.percentile(sample, q, method="inverted_cdf"))
        assert h.percentile(q) == pytest.approx(want, rel=0.02), q
    # the top bucket's midpoint, clamped to the observed maximum
    assert h.percentile(100) <= h.max == int(sample.max())
    assert h.percentile(100) == pytest.approx(float(sample.max()), rel=0.02)
    assert h.mean() == pytest.approx(float(sample.mean()))


def test_histogram_merge_and_reset():
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in (10, 20):
        a.record(v)
    for v in (5, 1_000_000):
        b.record(v)
    a.merge(b)
    assert (a.count, a.min, a.max) == (4, 5, 1_000_000)
    assert a.percentile(50) == 10.0
    a.reset()
    assert a.count == 0 and a.percentile(50) == 0.0


def test_histogram_bucketing_in_bulk_equals_value_by_value():
    from flashmm.telemetry.histogram import _bucket, _buckets

    rng = np.random.default_rng(3)
    values = np.concatenate([np.arange(-200, 5_000), rng.integers(0, 2**62, 50_000),
                             (2 ** rng.integers(0, 62, 5_000)).astype(np.int64),
                             (2 ** rng.integers(1, 62, 5_000)).astype(np.int64) - 1,
                             np.array([2**47 - 1, 2**47, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1], dtype=np.int64)])
    assert np.array_equal(_buckets(values), np.array([_bucket(int(v)) for v in values]))


def test_a_percentile_of_a_few_unfolded_values_is_the_folded_histograms():
    """Up to 128 values not folded yet (the engine's 10 s windows, read once each) are sorted by bucket instead of
    folded: the same answer as the folded histogram's, every quantile, and nothing is lost (a later fold)."""
    rng = np.random.default_rng(5)
    for trial in range(400):
        k = int(rng.integers(1, 129))
        values = rng.choice([rng.integers(-50, 300, k), rng.integers(0, 2_000_000, k),
                             rng.integers(0, 2**62, k)])[:k].tolist()
        few, folded = LatencyHistogram(), LatencyHistogram()
        for v in values:
            few.record(v)
            folded.record(v)
        folded.counts  # noqa: B018 - reading the counts folds
        for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
            assert few.percentile(q) == folded.percentile(q), (trial, q, values)
        assert few.summary_us() == folded.summary_us() and np.array_equal(few.counts, folded.counts)


def test_histogram_folds_its_recent_values_before_any_read_and_past_its_buffer():
    sample = [3, 250, 90_000, 1_000_000, 7, 4096 * 3]
    h, ref = LatencyHistogram(), LatencyHistogram()
    for v in sample:
        h.record(v)
    assert h.count == 6 and h.total == sum(sample) and (h.min, h.max) == (3, 1_000_000)
    for i in range(10_000):  # more than one buffer's worth, interleaved with reads
        h.record(i * 37)
        if i % 3_333 == 0:
            assert h.count == 7 + i
    for v in sample + [i * 37 for i in range(10_000)]:
        ref.record(v)
    assert np.array_equal(h.counts, ref.counts) and h.summary_us() == ref.summary_us()
    h.record(5)
    h.count = 99  # set from outside (interval histograms built from counts): the pending value is folded first
    assert h.count == 99 and h.min == 0


# ---- FeatureEngine -------------------------------------------------------------------------------------


def _book(bids, asks, seq: int = 1) -> L2Book:
    book = L2Book()
    assert book.apply_snapshot(BookSnapshot(seq, bids, asks, 0))
    return book


def test_imbalance_features_by_hand_bid_heavy():
    book = _book([(100, 30), (99, 10), (98, 10)], [(101, 10), (102, 20), (103, 10)])
    fe = FeatureEngine()
    fe.on_book(book, NS_PER_S)
    v = fe.as_dict()
    assert v["spread_ticks"] == 1.0
    assert v["imbalance_1"] == pytest.approx(0.5)  # (30 - 10) / 40
    assert v["imbalance_3"] == pytest.approx(10 / 90)  # (50 - 40) / 90
    assert v["imbalance_5"] == pytest.approx(10 / 90)  # only three levels a side
    # microprice = (100*10 + 101*30) / 40 = 100.75; mid 100.5
    assert v["microprice_offset_ticks"] == pytest.approx(0.25)
    assert (v["bid_queue_lots"], v["ask_queue_lots"]) == (30.0, 10.0)
    assert fe.mid_ticks == 100.5


def test_imbalance_features_by_hand_ask_heavy():
    book = _book([(100, 10), (99, 5)], [(101, 30), (102, 5), (103, 5), (104, 5), (105, 5), (106, 100)])
    fe = FeatureEngine()
    fe.on_book(book, NS_PER_S)
    assert fe.values[F["imbalance_1"]] == pytest.approx(-0.5)  # (10 - 30) / 40
    assert fe.values[F["imbalance_3"]] == pytest.approx((15 - 40) / 55)
    assert fe.values[F["imbalance_5"]] == pytest.approx((15 - 50) / 65)  # level 6 (100 lots) excluded
    assert fe.values[F["microprice_offset_ticks"]] == pytest.approx(-0.25)  # (100*30 + 101*10) / 40 = 100.25


def test_features_exact_on_either_side_of_the_c_integer_range():
    """Prices and sizes below 2**26 take the C-integer path in the compiled build, larger ones (here beyond 2**53,
    where a double cannot hold them) the unbounded one; a sequence crossing the boundary both ways gives what exact
    integer arithmetic gives: the microprice as one correctly rounded division, the order-flow sum exact."""
    big = 1 << 60
    tops = [(100, 30, 101, 10), (big, (1 << 30) + 1, big + 1, 3), (100, 30, 101, 12), (99, 5, 101, 12),
            ((1 << 26) - 2, (1 << 26) - 1, (1 << 26) - 1, 7), (1 << 26, 1, (1 << 26) + 1, 1), (100, 1, 102, 2)]
    fe = FeatureEngine()
    ofi, prev = 0, None
    for i, (bp, bq, ap, aq) in enumerate(tops):
        fe.on_book(_book([(bp, bq), (bp - 1, 2)], [(ap, aq), (ap + 1, 3)], seq=i + 1), NS_PER_S)  # dt = 0: no decay
        if prev is not None:
            pbp, pbq, pap, paq = prev
            ofi += (bq if bp >= pbp else 0) - (pbq if bp <= pbp else 0) - (aq if ap <= pap else 0) + (paq if ap >= pap else 0)
        prev = (bp, bq, ap, aq)
        mid = (bp + ap) / 2.0
        assert fe.mid_ticks == mid
        assert fe.values[F["spread_ticks"]] == float(ap - bp)
        assert fe.values[F["microprice_offset_ticks"]] == (bp * aq + ap * bq) / (bq + aq) - mid
        assert fe.values[F["imbalance_1"]] == (bq - aq) / (bq + aq)
        assert fe.values[F["imbalance_3"]] == (bq + 2 - aq - 3) / (bq + 2 + aq + 3)
        assert fe.values[F["order_flow_imbalance"]] == float(ofi) / ((tops[0][1] + tops[0][3]) / 2.0)
        assert (fe.values[F["bid_queue_lots"]], fe.values[F["ask_queue_lots"]]) == (float(bq), float(aq))


def test_stale_or_one_sided_book_is_ignored():
    fe = FeatureEngine()
    fe.on_book(L2Book(), NS_PER_S)
    fe.on_book(_book([(100, 1)], []), NS_PER_S)
    assert not fe.ready and not fe.values.any()


def test_trade_flow_imbalance_positive_after_buys():
    fe = FeatureEngine()
    fe.on_trade(Trade(101.0, 10, Side.BUY, NS_PER_S))
    fe.on_trade(Trade(100.0, 5, Side.SELL, NS_PER_S))
    fe.on_trade(Trade(100.5, 1_000, None, NS_PER_S))  # no aggressor: ignored
    assert fe.values[F["trade_flow_imbalance"]] == pytest.approx(5 / 15)  # (10 - 5) / (10 + 5)
    fe2 = FeatureEngine()
    fe2.on_trade(Trade(100.0, 7, Side.SELL, NS_PER_S))
    assert fe2.values[F["trade_flow_imbalance"]] == pytest.approx(-1.0)


def test_volatility_positive_after_the_mid_moves():
    book = _book([(100, 10)], [(101, 10)])
    fe = FeatureEngine()
    fe.on_book(book, NS_PER_S)
    assert fe.volatility_ticks == 0.0
    # mid 100.5 -> 101.5 over 1 s: variance sum 1^2 over 1 s of time -> 1 tick per sqrt(s)
    assert book.apply_diff(BookDiff(2, 2, [(100, 0), (101, 10)], [(101, 0), (102, 10)], 2 * NS_PER_S))
    fe.on_book(book, 2 * NS_PER_S)
    assert fe.volatility_ticks == pytest.approx(1.0)
    assert fe.values[F["momentum_ticks"]] > 0  # the mid is above its moving average
