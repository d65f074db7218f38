"""What the quoter learns online, each on a constructed market whose answer is known: the online alpha, the
trades' intensity curve, adverse selection, the volatility regime, and the measured (virtual-fill) curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashmm.core.alpha import N_ALPHA, OnlineAlpha
from flashmm.core.calibration import AdverseSelection, TradeIntensity, VirtualFills, VolatilityRegime

S = 1_000_000_000


def test_the_online_alpha_learns_a_known_relation_and_scores_itself_out_of_sample():
    rng = np.random.default_rng(5)
    # a grid point every second, the horizon one second: each point's target is the next point's move
    a = OnlineAlpha(horizon_s=1.0, cadence_ms=1000.0, halflife_s=1e6, ridge=1.0, cap_bps=10.0, warmup_points=100)
    mid = 100_000.0
    # the mid moves 2 bps x the level-1 imbalance over the next second (+ noise); nothing else matters
    for step in range(1, 3000):
        imb = float(np.clip(rng.normal(0, 0.5), -1, 1))
        a.observe(step * S, (imb, float(rng.normal()), 0.0, 0.0, 0.0), mid)
        mid *= 1 + (2.0 * imb + rng.normal(0, 0.3)) / 1e4
    c = a.coefficients()
    assert a.ready and c["imbalance_1"] == pytest.approx(2.0, abs=0.25)
    assert abs(c["imbalance_5"]) < 0.2  # the irrelevant input gets (nearly) nothing
    assert a.predict((0.5, 0.0, 0.0, 0.0, 0.0)) == pytest.approx(1.0, abs=0.15)
    sc = a.scores()
    assert sc["points"] > 2500 and sc["hit_rate"] > 0.9 and sc["correlation"] > 0.8
    assert sc["hit_rate_imbalance_sign"] > 0.9  # here the sign of imbalance is the whole story too


def test_the_online_alpha_is_zero_until_warmed_up_and_capped():
    a = OnlineAlpha(warmup_points=50, cap_bps=1.0)
    assert a.predict((1.0,) * N_ALPHA) == 0.0 and not a.ready
    a.n_targets = 50
    a.beta = np.array([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    assert a.predict((1.0, 0, 0, 0, 0)) == 1.0 and a.predict((-1.0, 0, 0, 0, 0)) == -1.0


def test_trade_intensity_fits_an_exponential_curve_and_stays_in_bounds():
    rng = np.random.default_rng(2)
    ti = TradeIntensity(default_a=1.0, default_k=1.0, halflife_s=1e6, min_trades=50, a_bounds=(0.1, 100.0),
                        k_bounds=(0.1, 10.0))
    assert ti.fit(0) == (1.0, 1.0)  # the configured values until enough trades
    mid = 100_000.0
    # 5 trades a second at distances ~ Exp(k = 1.5 per bps): lambda(delta) = 5 exp(-1.5 delta)
    for i in range(20_000):
        dist = rng.exponential(1 / 1.5)
        ti.on_trade(mid * (1 + dist / 1e4 * (1 if i % 2 else -1)), mid, i * S // 5)
    a, k = ti.fit(20_000 * S // 5)
    assert k == pytest.approx(1.5, rel=0.1) and a == pytest.approx(5.0, rel=0.2)
    tight = TradeIntensity(1.0, 1.0, 1e6, 50, a_bounds=(0.5, 2.0), k_bounds=(0.5, 1.2))
    for i in range(200):
        tight.on_trade(mid * (1 + rng.exponential(1 / 1.5) / 1e4), mid, i * S // 5)
    a, k = tight.fit(200 * S // 5)
    assert (a, k) == (2.0, 1.2)  # clipped to the bounds


def test_the_intensity_line_fit_is_numpys_polyfit_to_the_bit():
    """The refit's weighted line (calibration._line_fit) replays np.polyfit(x, y, 1, w=w)'s operations: the same
    slope and intercept to the last bit on fits like the refit's (3 to 12 of the grid's distances, decayed counts)."""
    from flashmm.core.calibration import _DELTAS, _line_fit

    rng = np.random.default_rng(11)
    for _ in range(3000):
        n = int(rng.integers(3, len(_DELTAS) + 1))
        x = np.sort(rng.choice(_DELTAS, n, replace=False))
        counts = rng.exponential(50.0, n) + 1e-6
        y = np.log(counts / rng.uniform(1.0, 1000.0))
        w = np.sqrt(counts)
        slope, intercept = np.polyfit(x, y, 1, w=w)
        assert _line_fit(x, y, w) == (float(slope), float(intercept))


def test_adverse_selection_starts_from_trade_impact_and_moves_to_our_fills():
    asel = AdverseSelection(horizon_s=5.0, halflife_trades=1e9, halflife_fills=1e9, prior_weight_fills=10)
    mid = 100_000.0
    for i in range(100):  # every buy is followed by +1 bps over 5 s, every sell by -1 bps
        side = 1 if i % 2 else -1
        asel.on_trade(side, mid, i * S)
        asel.resolve(i * S + 5 * S, mid * (1 + side * 1e-4))
    assert asel.impact == pytest.approx(1.0, rel=1e-6) and asel.estimate() == pytest.approx(1.0, rel=1e-6)
    for _ in range(10):
        asel.on_our_fill(3.0)
    assert asel.estimate() == pytest.approx((10 * 3.0 + 10 * 1.0) / 20)  # half ours, half the prior
    for _ in range(990):
        asel.on_our_fill(3.0)
    assert asel.estimate() == pytest.approx(3.0, abs=0.03)


@pytest.mark.parametrize("garch", [False, True])
def test_the_regime_detector_sees_calm_volatile_and_trending_markets(garch):
    rng = np.random.default_rng(1)
    reg = VolatilityRegime(short_halflife_s=10, long_halflife_s=600, garch=garch)
    mid = 100_000.0
    t = 0
    regimes = {}
    for phase, (sigma, drift, secs) in {"calm": (1.0, 0.0, 900), "volatile": (4.0, 0.0, 60),
                                         "settle": (1.0, 0.0, 300), "trend": (1.0, 1.2, 60)}.items():
        seen = []
        for _ in range(secs):
            t += S
            mid *= 1 + (drift + rng.normal(0, sigma)) / 1e4
            reg.observe(t, mid)
            seen.append(reg.regime)
        regimes[phase] = seen
    assert regimes["calm"][-200:].count("calm") > 180
    assert regimes["volatile"][-30:].count("volatile") > 25
    assert regimes["trend"][-30:].count("trending") > 15
    assert reg.long_sigma_bps == pytest.approx(1.2, rel=0.5)


def test_virtual_fills_measure_the_realised_spread_per_distance_by_hand():
    vf = VirtualFills(cadence_ms=250.0, latency_s=0.0, life_s=2.0, horizon_s=5.0, halflife_s=1e9, min_fills=1,
                      deltas_bps=(1.0, 5.0, 10.0))
    mid = 10_000.0
    vf.observe(0, mid)  # the grid starts at the next 250 ms
    vf.observe(250_000_000, mid)  # a grid point: virtual bids at 9999, 9995, 9990; asks at 10001, 10005, 10010
    vf.on_trade(9995.0, -1, 300_000_000)  # a sell at 9995 fills the bids at 1 and 5 bps (not the 10 bps one)
    vf.on_trade(10_020.0, 1, 400_000_000)  # a buy through every ask
    vf.observe(5_400_000_000, 10_002.0)  # 5 s later the mid is 10002
    c = vf.curve()
    # bids: 2 x (10002 - 9999) / 10000 = 6 bps; 2 x (10002 - 9995) / 10000 = 14 bps
    # asks: -2 x (10002 - 10001) = -2, -2 x (10002 - 10005) = +6, -2 x (10002 - 10010) = +16 bps
    assert [r["fills"] for r in c] == [2.0, 2.0, 1.0]
    assert c[0]["realised_bps"] == pytest.approx((6 - 2) / 2)
    assert c[1]["realised_bps"] == pytest.approx((14 + 6) / 2)
    assert c[2]["realised_bps"] == pytest.approx(16.0)
    assert vf.best(3.0) == (5.0, True)  # the tightest distance that earned 3 bps
    assert vf.best(50.0) == (10.0, False)  # all measured, none earned 50: the best-earning one, without an edge
    vf.min_fills = 2  # now 10 bps (one fill) is not measured: quote there rather than stand aside
    assert vf.best(50.0) == (10.0, True)


def test_virtual_fills_smooth_the_curve_and_need_enough_fills():
    vf = VirtualFills(min_fills=10, deltas_bps=(1.0, 2.0, 3.0, 4.0))
    vf.time_s = 100.0
    vf.n[:] = [50, 20, 5, 20]
    vf.rs_sum[:] = np.array([-2.0, 1.5, 9.0, 0.5]) * vf.n
    # 3 bps (9.0 on 5 fills) and 4 bps (0.5 on 20) violate the order: pooled to (45 + 10) / 25 = 2.2
    assert list(vf.smoothed()) == pytest.approx([-2.0, 1.5, 2.2, 2.2])
    # 3 bps has only 5 fills and does not count; 2 bps (1.5) is the tightest that earned 1
    assert vf.best(1.0) == (2.0, True)
    assert VirtualFills().best(0.5) == (None, False)
    assert math.isclose(vf.curve()[0]["rate_per_s"], 50 / 2 / 100)


def test_a_virtual_quote_the_mid_moves_toward_is_replaced_before_a_slow_drift_fills_it():
    vf = VirtualFills(cadence_ms=1000.0, latency_s=0.05, life_s=5.0, horizon_s=5.0, halflife_s=1e9, min_fills=1,
                      deltas_bps=(2.0, 10.0), chase_frac=0.2)
    vf.observe(0, 10_000.0)
    vf.observe(1 * S, 10_000.0)  # a grid point: bids at 9998 (2 bps) and 9990 (10 bps)
    # the mid drifts down 1 bps: the 2 bps bid is within 0.2 x 2 = 0.4 bps of being chased, it is replaced;
    # the 10 bps bid (chased only beyond 2 bps) stays
    vf.observe(1_350_000_000, 9_999.0)
    vf.on_trade(9_990.0, -1, 1_450_000_000)  # after the replacement took effect: only the 10 bps bid is there
    vf.observe(6_500_000_000, 9_995.0)
    assert [r["fills"] for r in vf.curve()] == [0.0, 1.0]
    assert vf.curve()[1]["realised_bps"] == pytest.approx(2e4 * (9_995 - 9_990) / 10_000)


# ---- the hot-path versions keep exactly the reference's state (tests/reference_calibration.py) ---------------

import pytest  # noqa: E402


@pytest.mark.parametrize("mid0", [6_170_000.0, 23_500.0, 4_000.0])  # BTCUSDT at 0.01, Bitstamp 2015, the sim
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_virtual_fills_and_intensity_keep_exactly_the_state_of_the_reference_code(mid0, seed):
    """Random markets through both implementations, call by call: the same fills, pending fills, counts, decayed
    sums and live grid points, bit for bit (the faster code skips only work that changes nothing)."""
    import numpy as np

    from flashmm.core import calibration as fast
    from tests import reference_calibration as ref

    rng = np.random.default_rng(seed)
    vf, vr = fast.VirtualFills(min_fills=3.0), ref.VirtualFills(min_fills=3.0)
    tf, tr = fast.TradeIntensity(1.0, 1.0, min_trades=5), ref.TradeIntensity(1.0, 1.0, min_trades=5)
    now, mid = 1_000_000_000, mid0
    for step in range(6_000):
        now += int(rng.exponential(30e6))
        if rng.random() < 0.5:
            mid *= 1 + rng.normal(0, 0.3) / 1e4  # a fraction of a bps per update, now and then a jump
            if rng.random() < 0.01:
                mid *= 1 + rng.normal(0, 8) / 1e4
            vf.observe(now, mid)
            vr.observe(now, mid)
        else:
            dist_bps = abs(rng.normal(0, 3)) if rng.random() < 0.9 else rng.uniform(0, 40)
            aggressor = int(rng.choice([-1, 0, 1]))
            price = mid * (1 - np.sign(aggressor or rng.choice([-1, 1])) * dist_bps / 1e4)
            if rng.random() < 0.3:
                price = float(round(price))  # on the tick grid
            vf.on_trade(price, aggressor, now)
            vr.on_trade(price, aggressor, now)
            tf.on_trade(price, mid, now)
            tr.on_trade(price, mid, now)
        if step % 7 == 0:
            assert vf.fills == vr.fills and list(vf._pending) == list(vr._pending), step
            assert [g[:6] + [list(g[6]), list(g[7])] for g in vf._live] == [
                g[:6] + [list(g[6]), list(g[7])] for g in vr._live], step
            assert np.array_equal(vf.n, vr.n) and np.array_equal(vf.rs_sum, vr.rs_sum) and vf.time_s == vr.time_s
            assert np.array_equal(np.asarray(tf.counts), tr.counts) and tf.time_s == tr.time_s
        if step % 500 == 0:
            assert vf.best(0.0) == vr.best(0.0) and tf.fit(now) == tr.fit(now)
    assert vf.fills > 100 and tf.trades > 1_000


def _smoothed_numpy(vf):
    """The smoothed curve as first written, on numpy arrays and numpy scalars (the reference code's): the oracle
    for the list version."""
    from tests import reference_calibration as ref

    return ref.VirtualFills.smoothed(vf)


def _best_numpy(vf, min_realised_bps):
    """The choice as written before it moved to lists (the reference's, plus the step to the next distance)."""
    import numpy as np

    ok = vf.n >= vf.min_fills
    if not ok.any() or vf.time_s <= 0:
        return None, False
    rs = _smoothed_numpy(vf)
    good = np.flatnonzero(ok & (rs >= min_realised_bps))
    if len(good):
        return float(vf.deltas[good[0]]), True
    widest = int(np.flatnonzero(ok)[-1])
    if widest + 1 < len(vf.deltas):
        return float(vf.deltas[widest + 1]), True
    return float(vf.deltas[int(np.argmax(np.where(ok, rs, -np.inf)))]), False


def test_the_half_spread_choice_on_lists_is_the_numpy_formulation_bit_for_bit():
    """The smoothed curve and the chosen distance are computed on Python floats (numpy's per-call cost on 18
    numbers was most of a quote cycle's time whenever the curve had changed): random curves — empty distances,
    tiny and huge fill counts, every branch of the choice — give the numpy formulation's values, bit for bit."""
    import numpy as np

    from flashmm.core.calibration import VirtualFills

    rng = np.random.default_rng(7)
    branches = {"none": 0, "earned": 0, "next": 0, "no_edge": 0}
    for _ in range(3_000):
        vf = VirtualFills()
        k = len(vf.deltas)
        vf.n = np.where(rng.random(k) < 0.3, 0.0, rng.exponential(40, k) * rng.choice([1, 1e-13, 1e3], k))
        vf.rs_sum = rng.normal(0, 50, k) * vf.n * rng.choice([1, 0], k, p=[0.9, 0.1])
        vf.time_s = float(rng.choice([0.0, 10.0, 100.0]))
        mr = float(rng.choice([-1.0, 0.0, 0.5, 2.0]))
        want, got = _smoothed_numpy(vf), vf.smoothed()
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        choice = vf._best_of(mr)
        assert choice == _best_numpy(vf, mr)
        if choice[0] is None:
            branches["none"] += 1
        elif not choice[1]:
            branches["no_edge"] += 1
        else:
            measured = vf.n >= vf.min_fills
            branches["earned" if measured[list(vf.deltas).index(choice[0])] else "next"] += 1
    assert min(branches.values()) > 20, branches
