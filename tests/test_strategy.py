"""Quoting: the GLFT and Avellaneda-Stoikov closed forms against hand-computed values, and the Quoter's
inventory skew, size skew, levels, tick rounding, post-only clamp, widen and minimum edge.

Every Quoter test uses SEI/USDC (tick 0.0001, lot 1) at mid 4000 ticks = 0.40 USDC, so a 200 USDC
order is 200 / 0.40 = 500 lots (one "order-size unit") and the 2000 USDC position limit is 5000 lots.
"""

from __future__ import annotations

import math

import pytest

from flashmm.config import RiskConfig, StrategyConfig, default_instrument
from flashmm.core.domain import Side
from flashmm.core.strategy import Quoter, avellaneda_stoikov, glft_coefficients, glft_depths
from flashmm.model.predictor import Prediction

# gamma = 0.05, A = 1, k = 3, delta = 1:
# c1 = ln(1 + 0.05/3) / 0.05 = 0.016529302 / 0.05 = 0.330586039
# c2 = sqrt(0.05 / (2*1*1*3) * (1 + 0.05/3)^(3/0.05 + 1)) = sqrt(0.008333333 * 2.740902975)
#    = sqrt(0.022840858) = 0.151131923
C1 = 0.330586039
C2 = 0.151131923
# sigma = 0.5: half = c1 + 0.5*0.5*c2 = 0.330586 + 0.037783 = 0.368369; skew = 0.5*c2 = 0.075566
HALF_S05 = 0.368369020
SKEW_S05 = 0.075565961
# sigma = 2: half = c1 + 0.5*2*c2 = 0.481717962; skew = 2*c2 = 0.302263846
HALF_S2 = 0.481717962
SKEW_S2 = 0.302263846

MID = 4000.0
WIDE_BID, WIDE_ASK = 3990, 4010  # a wide market so post-only does not bind unless a test wants it


def test_glft_coefficients_by_hand():
    c1, c2 = glft_coefficients(0.05, 1.0, 3.0)
    assert c1 == pytest.approx(C1, rel=1e-8)
    assert c2 == pytest.approx(C2, rel=1e-8)


def test_glft_coefficients_with_another_delta():
    # gamma = 0.1, A = 2, k = 1, delta = 2: xi*delta = 0.2
    # c1 = ln(1.2) / 0.2 = 0.182321557 / 0.2 = 0.911607784
    # c2 = sqrt(0.1 / (2*2*2*1) * 1.2^(1/0.2 + 1)) = sqrt(0.0125 * 1.2^6) = sqrt(0.0125 * 2.985984) = 0.193196
    c1, c2 = glft_coefficients(0.1, 2.0, 1.0, delta=2.0)
    assert c1 == pytest.approx(0.911607784, rel=1e-8)
    assert c2 == pytest.approx(math.sqrt(0.0125 * 2.985984), rel=1e-12)
    assert c2 == pytest.approx(0.193196, rel=1e-5)


def test_glft_depths_by_hand():
    # sigma = 0.5, q = 2: bid depth = half + skew*q = 0.368369 + 0.151132 = 0.519501
    #                     ask depth = half - skew*q = 0.368369 - 0.151132 = 0.217237
    half, skew, bid_depth, ask_depth = glft_depths(0.5, 2.0, 0.05, 1.0, 3.0)
    assert half == pytest.approx(HALF_S05, rel=1e-8)
    assert skew == pytest.approx(SKEW_S05, rel=1e-8)
    assert bid_depth == pytest.approx(0.519501, abs=1e-6)
    assert ask_depth == pytest.approx(0.217237, abs=1e-6)
    # flat inventory: symmetric
    _, _, b0, a0 = glft_depths(0.5, 0.0, 0.05, 1.0, 3.0)
    assert b0 == a0 == pytest.approx(HALF_S05, rel=1e-8)


def test_avellaneda_stoikov_by_hand():
    # sigma = 0.5, q = 2, gamma = 0.1, k = 3, T = 60 s
    # shift = -q gamma sigma^2 T = -2 * 0.1 * 0.25 * 60 = -3.0
    # half = gamma sigma^2 T / 2 + ln(1 + gamma/k) / gamma = 0.75 + ln(1.033333)/0.1 = 0.75 + 0.327898 = 1.077898
    shift, half = avellaneda_stoikov(0.5, 2.0, 0.1, 3.0, 60.0)
    assert shift == pytest.approx(-3.0, rel=1e-12)
    assert half == pytest.approx(1.077898, abs=1e-6)
    shift_short, half_short = avellaneda_stoikov(0.5, -2.0, 0.1, 3.0, 60.0)
    assert shift_short == pytest.approx(3.0) and half_short == pytest.approx(half)


def _quoter(maker_fee_bps: float = 0.0, **overrides) -> Quoter:
    # the config is per bps; at MID = 4000 ticks one tick is 2.5 bps, so gamma 0.02/bps = 0.05/tick and
    # k 1.2/bps = 3/tick: the hand-computed tick values below are unchanged
    # the closed forms alone: no cap on price improvement (tested on its own below)
    kw = dict(model="glft", risk_aversion=0.02, arrival_intensity=1.0, arrival_decay=1.2, order_levels=1,
              order_amount_usdc=200.0, min_edge_bps=0.0, post_only=True, inventory_size_skew=True,
              max_improve_ticks=-1)
    kw.update(overrides)
    return Quoter(StrategyConfig(**kw), RiskConfig(max_position_usdc=2000.0), default_instrument(), maker_fee_bps)


def _prices(p) -> tuple[dict[int, int], dict[int, int]]:
    bids = {lv.level: lv.price_ticks for lv in p.levels if lv.side is Side.BUY}
    asks = {lv.level: lv.price_ticks for lv in p.levels if lv.side is Side.SELL}
    return bids, asks


def _sizes(p) -> tuple[dict[int, int], dict[int, int]]:
    bids = {lv.level: lv.lots for lv in p.levels if lv.side is Side.BUY}
    asks = {lv.level: lv.lots for lv in p.levels if lv.side is Side.SELL}
    return bids, asks


def test_base_lots_is_order_amount_over_price():
    assert _quoter().base_lots(MID) == 500  # 200 / (4000 * 0.0001)


def test_flat_inventory_quotes_symmetrically_around_mid():
    p = _quoter().propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    assert p.reservation_ticks == MID and p.inventory_skew_ticks == 0.0
    assert p.half_spread_ticks == pytest.approx(HALF_S05, rel=1e-8)
    # bid floor(4000 - 0.368) = 3999, ask ceil(4000.368) = 4001
    assert _prices(p) == ({0: 3999}, {0: 4001})
    assert _sizes(p) == ({0: 500}, {0: 500})


def test_long_inventory_lowers_reservation_and_pushes_the_bid_farther():
    # position 1000 lots = q 2 units; sigma 2: shift = -skew*q = -0.302264 * 2 = -0.604528
    # r = 3999.395472; bid = floor(r - 0.481718) = floor(3998.9138) = 3998; ask = ceil(3999.8772) = 4000
    p = _quoter().propose(MID, WIDE_BID, WIDE_ASK, 2.0, 1000, None)
    assert p.inventory_skew_ticks == pytest.approx(-2 * SKEW_S2, rel=1e-8)
    assert p.reservation_ticks == pytest.approx(MID - 2 * SKEW_S2, rel=1e-12)
    assert p.reservation_ticks < MID
    bids, asks = _prices(p)
    assert (bids[0], asks[0]) == (3998, 4000)
    assert MID - bids[0] > asks[0] - MID


def test_short_inventory_raises_reservation_and_pushes_the_ask_farther():
    # r = 4000.604528; bid = floor(4000.1228) = 4000; ask = ceil(4001.0862) = 4002
    p = _quoter().propose(MID, WIDE_BID, WIDE_ASK, 2.0, -1000, None)
    assert p.inventory_skew_ticks == pytest.approx(2 * SKEW_S2, rel=1e-8)
    assert p.reservation_ticks > MID
    bids, asks = _prices(p)
    assert (bids[0], asks[0]) == (4000, 4002)
    assert asks[0] - MID > MID - bids[0]


def test_avellaneda_stoikov_model_in_the_quoter():
    # q = 1000/500 = 2: r = 4000 - 3 = 3997, half 1.077898: bid floor(3995.922) = 3995, ask ceil(3998.078) = 3999
    q = _quoter(model="avellaneda_stoikov", risk_aversion=0.04, arrival_decay=1.2, horizon_s=60.0)  # 0.1/tick, 3/tick
    p = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 1000, None)
    assert p.reservation_ticks == pytest.approx(3997.0)
    assert p.half_spread_ticks == pytest.approx(1.077898, abs=1e-6)
    assert _prices(p) == ({0: 3995}, {0: 3999})


def test_size_skew_shrinks_the_side_that_adds_to_inventory():
    q = _quoter()
    # long 1000 of a 5000 limit: u = 0.2, bids 500 * 0.8 = 400, asks untouched
    assert _sizes(q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 1000, None)) == ({0: 400}, {0: 500})
    # short 1000: asks 400
    assert _sizes(q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, -1000, None)) == ({0: 500}, {0: 400})
    # at the limit (and beyond) no bids at all
    for pos in (5000, 7000):
        bids, asks = _sizes(q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, pos, None))
        assert bids == {} and asks == {0: 500}
    bids, asks = _sizes(q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, -5000, None))
    assert asks == {} and bids == {0: 500}
    # switched off: both full size
    off = _quoter(inventory_size_skew=False)
    assert _sizes(off.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 1000, None)) == ({0: 500}, {0: 500})


def test_levels_are_spaced_by_level_spacing_and_grow_by_the_multiplier():
    q = _quoter(order_levels=3, level_spacing_bps=5.0, level_size_multiplier=1.5)
    p = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    # half 0.368: bids floor(3999.63 - 2i) = 3999, 3997, 3995; asks ceil(4000.37 + 2i) = 4001, 4003, 4005
    assert _prices(p) == ({0: 3999, 1: 3997, 2: 3995}, {0: 4001, 1: 4003, 2: 4005})
    # sizes 500, 500*1.5 = 750, 500*2.25 = 1125
    assert _sizes(p) == ({0: 500, 1: 750, 2: 1125}, {0: 500, 1: 750, 2: 1125})


def test_prices_are_rounded_away_from_the_reservation_bid_floored_ask_ceiled():
    q = _quoter(min_edge_bps=3.0)
    # mid 4000.5: min half = 4000.5 * 3 / 1e4 = 1.20015 > GLFT half at the vol floor (0.338)
    # bid = floor(4000.5 - 1.20015) = floor(3999.29985) = 3999; ask = ceil(4001.70015) = 4002
    p = q.propose(4000.5, WIDE_BID, WIDE_ASK, 0.1, 0, None)
    assert p.half_spread_ticks == pytest.approx(1.20015)
    assert _prices(p) == ({0: 3999}, {0: 4002})


def test_min_edge_bps_floors_the_half_spread_including_the_maker_fee():
    # min half = 4000 * 3 / 1e4 = 1.2 > GLFT 0.368
    p = _quoter(min_edge_bps=3.0).propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    assert p.half_spread_ticks == pytest.approx(1.2)
    assert _prices(p) == ({0: 3998}, {0: 4002})  # floor(3998.8), ceil(4001.2)
    # a 1 bps maker fee adds to the floor: 4000 * (1 + 3) / 1e4 = 1.6
    p = _quoter(maker_fee_bps=1.0, min_edge_bps=3.0).propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    assert p.half_spread_ticks == pytest.approx(1.6)
    # a floor below the model half does nothing: 4000 * 0.5 / 1e4 = 0.2 < 0.368
    p = _quoter(min_edge_bps=0.5).propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    assert p.half_spread_ticks == pytest.approx(HALF_S05, rel=1e-8)


def test_widen_multiplies_the_half_spread():
    q = _quoter()
    p = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, widen=4.0)
    # 4 * 0.368369 = 1.473476: bid floor(3998.5265) = 3998, ask ceil(4001.4735) = 4002
    assert p.half_spread_ticks == pytest.approx(4 * HALF_S05, rel=1e-8)
    assert _prices(p) == ({0: 3998}, {0: 4002})
    # widen applies after the minimum-edge floor: 2 * 1.2 = 2.4
    p = _quoter(min_edge_bps=3.0).propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, widen=2.0)
    assert p.half_spread_ticks == pytest.approx(2.4)


def test_post_only_never_crosses_the_best_opposite_price():
    up = Prediction(0.0, 0.0, 1.0)  # confidence 1, direction +1
    down = Prediction(1.0, 0.0, 0.0)
    best_bid, best_ask = 3999, 4001
    # prediction shift +10: r = 4010; unclamped bids floor(4009.63) = 4009 and 4008 would cross 4001
    q = _quoter(order_levels=2, prediction_skew_bps=25.0)
    p = q.propose(MID, best_bid, best_ask, 0.5, 0, up)
    assert p.prediction_skew_ticks == pytest.approx(10.0)
    bids, asks = _prices(p)
    assert bids == {0: 4000, 1: 3999}  # best_ask - 1 - i*spacing
    assert asks == {0: 4011, 1: 4012}
    assert all(b < best_ask for b in bids.values())
    p = q.propose(MID, best_bid, best_ask, 0.5, 0, down)
    bids, asks = _prices(p)
    assert asks == {0: 4000, 1: 4001}  # best_bid + 1 + i*spacing
    assert all(a > best_bid for a in asks.values())
    # without post-only the same inputs cross: the clamp above is what prevents it
    loose = _quoter(order_levels=2, prediction_skew_bps=25.0, post_only=False)
    bids, _ = _prices(loose.propose(MID, best_bid, best_ask, 0.5, 0, up))
    assert bids == {0: 4009, 1: 4008}


# ---- fair value, measured half-spread, queue awareness, standing aside ----------------------------------


def test_the_fair_value_is_the_mid_shifted_by_the_alpha():
    q = _quoter()
    flat = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    up = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, alpha_bps=5.0)  # +5 bps = +2 ticks at 2.5 bps a tick
    assert up.prediction_skew_ticks == pytest.approx(2.0)
    assert up.reservation_ticks == pytest.approx(flat.reservation_ticks + 2.0)
    (b0, a0), (b1, a1) = (_prices(flat)[0][0], _prices(flat)[1][0]), (_prices(up)[0][0], _prices(up)[1][0])
    assert (b1, a1) == (b0 + 2, a0 + 2)
    half = _quoter(alpha_weight=0.5).propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, alpha_bps=5.0)
    assert half.prediction_skew_ticks == pytest.approx(1.0)
    sym = _quoter(model="symmetric").propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, alpha_bps=5.0, adverse_bps=9.0)
    assert sym.prediction_skew_ticks == 0.0 and sym.adverse_ticks == 0.0  # the baseline ignores both


def test_the_adverse_selection_term_widens_glft_and_a_measured_half_spread_replaces_it():
    q = _quoter()
    base = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None)
    wide = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, adverse_bps=5.0)  # 2 ticks
    assert wide.adverse_ticks == pytest.approx(2.0)
    assert wide.half_spread_ticks == pytest.approx(base.half_spread_ticks + 2.0)
    assert q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, adverse_bps=-3.0).adverse_ticks == 0.0  # never tighter
    measured = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, adverse_bps=5.0, half_bps=10.0)  # 4 ticks
    assert measured.half_spread_ticks == pytest.approx(4.0)
    assert measured.adverse_ticks == pytest.approx(4.0 - base.glft_half_ticks)
    tight = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, half_bps=0.1)  # never tighter than GLFT
    assert tight.half_spread_ticks == pytest.approx(base.half_spread_ticks)


def test_inside_the_spread_a_quote_betters_the_market_by_at_most_the_cap():
    best_bid, best_ask = 3980, 4020  # 40 ticks wide; GLFT wants 3999 / 4001
    capped = _quoter(max_improve_ticks=1).propose(MID, best_bid, best_ask, 0.5, 0, None)
    assert _prices(capped) == ({0: 3981}, {0: 4019})  # first in the queue, the rest of the way kept as edge
    join = _quoter(max_improve_ticks=0).propose(MID, best_bid, best_ask, 0.5, 0, None)
    assert _prices(join) == ({0: 3980}, {0: 4020})
    free = _quoter(max_improve_ticks=-1).propose(MID, best_bid, best_ask, 0.5, 0, None)
    assert _prices(free) == ({0: 3999}, {0: 4001})
    outside = _quoter(max_improve_ticks=1).propose(MID, 3999, 4001, 0.5, 0, None, half_bps=25.0)  # 10 ticks out
    assert _prices(outside) == ({0: 3990}, {0: 4010})  # behind the touch: the cap does not pull it in


def test_without_an_edge_only_the_side_that_reduces_the_position_is_quoted():
    q = _quoter()
    assert q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 0, None, reduce_only=True).levels == ()
    long = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, 300, None, reduce_only=True)
    assert [(lv.side, lv.lots) for lv in long.levels] == [(Side.SELL, 300)]  # no more than the position
    short = q.propose(MID, WIDE_BID, WIDE_ASK, 0.5, -2000, None, reduce_only=True)
    assert [(lv.side, lv.lots) for lv in short.levels] == [(Side.BUY, 500)]  # one order's size at most
