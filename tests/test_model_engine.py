"""The model inside the engine: grid sampling as in training, live hit rate, drift, failures."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from flashmm.config import Config, ModelConfig
from flashmm.model.inputs import MODEL_INPUTS, N_INPUTS
from flashmm.model.predictor import ModelPredictor, NoModelPredictor, load_predictor
from flashmm.research.dataset import samples_from_sim
from tests.conftest import make_engine, run_for


class FakeModel:
    """A stand-in for a loaded artifact: fixed probabilities, records the windows it saw."""

    def __init__(self, p=(0.1, 0.2, 0.7), mean=None, std=None, val_acc=0.6, raise_after=None):
        self.p = np.asarray(p, dtype=np.float32)
        self.windows: list[np.ndarray] = []
        self.calls = 0
        self.raise_after = raise_after
        self.meta = {"window": 4, "cadence_ms": 500, "horizon_s": 2.0, "band_bps": 1.0, "architecture": "fake",
                     "inputs": list(MODEL_INPUTS), "val_directional_accuracy": val_acc,
                     "feature_mean": list(mean if mean is not None else np.zeros(N_INPUTS)),
                     "feature_std": list(std if std is not None else np.full(N_INPUTS, 1e6))}

    def predict_proba(self, window: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.raise_after is not None and self.calls > self.raise_after:
            raise RuntimeError("injected model failure")
        self.windows.append(window.copy())
        return self.p


def _engine_with(model: FakeModel, cfg: Config | None = None, **model_cfg):
    cfg = cfg or Config()
    # the model prices only when [strategy].alpha says so (its default is the online alpha)
    cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"alpha": "model"})})
    engine, venue = make_engine(cfg)
    engine.predictor = ModelPredictor(model, ModelConfig(**model_cfg), "fake.pt2")
    engine.risk.breakers["model"].clear(0)
    engine.risk.breakers["model"].clear(10**18)  # start from ok: a model is loaded
    return engine, venue


def test_live_windows_equal_the_training_samples_of_the_same_market():
    """No train/serve skew: with the engine paused (its orders off the book), the windows the live
    predictor builds are exactly the dataset builder's samples of the same seeded market."""
    engine, _ = make_engine(seed=7)
    p = ModelPredictor(FakeModel(), ModelConfig(), "fake.pt2")
    p.precompute = lambda features, book, now_ns: None  # record only the windows of the hot-path calls
    engine.predictor = p
    engine.pause("test", "observe only")

    async def go():
        await engine.venue.start()
        end = engine.clock.now_ns() + 60 * 10**9
        while engine.clock.now_ns() < end:
            engine.on_batch(await engine.venue.next_batch())
            p.predict(engine.features, engine.book, engine.clock.now_ns())

    asyncio.run(go())
    samples = samples_from_sim(60, 7, 500)
    t_last = p._next_ns - p.cadence_ns  # the last grid point the live predictor passed
    i = int(np.searchsorted(samples.times_ns, t_last))
    assert samples.times_ns[i] == t_last
    np.testing.assert_allclose(p.model.windows[-1], samples.x[i - 3: i + 1], rtol=1e-6, atol=1e-6)


def test_prediction_skews_the_reservation_price_by_confidence():
    model = FakeModel(p=(0.1, 0.2, 0.7))  # up, confidence 0.7, direction +0.6
    engine, _ = _engine_with(model)
    run_for(engine, 30)
    prop = engine.last_proposal
    # prediction_skew_bps 2.5 at ~2.5 bps a tick: 1 tick x 0.7 x 0.6 = 0.42 tick (within rounding of the mid)
    bpt = 1e4 / engine.book.mid_ticks()
    assert prop.prediction_skew_ticks == pytest.approx(2.5 / bpt * 0.7 * 0.6, rel=1e-6)  # float32 probabilities
    snap = engine.snapshot()
    assert snap.prediction is not None and snap.prediction.p_up == pytest.approx(0.7, rel=1e-6)
    assert "fake" in snap.predictor


def test_hit_rate_scores_directional_calls_after_the_horizon():
    p = ModelPredictor(FakeModel(), ModelConfig(), "fake.pt2")
    # by hand: three 'up' calls at mid 100.0; after 2 s the mid is 100.05 (+5 bps, up: hit),
    # 99.95 (-5 bps: miss), 100.0 (flat: not scored)
    p._pending.extend([(2_000, 100.0, 0.6), (4_000, 100.0, 0.6), (6_000, 100.0, 0.6)])
    p._score(2_000, 100.05)
    p._score(4_000, 99.95)
    p._score(6_000, 100.0)
    assert list(p._outcomes) == [1, 0]
    assert p.hit_rate() == 0.5


def test_the_drift_monitor_averages_exactly_its_last_window_and_the_hit_rate_its_last_calls():
    """The monitor keeps its window as one contiguous slice and a running hit count (it ran on every quote cycle,
    where rebuilding an array from a deque of 500 rows was the predict stage's p95): the same figures as the
    plain computation over the last drift_window rows and calls, bit for bit, across wrap-arounds."""
    cfg = ModelConfig(drift_window=10, drift_min_samples=10)
    p = ModelPredictor(FakeModel(), cfg, "fake.pt2")
    rng = np.random.default_rng(2)
    rows, outcomes = [], []
    p._have, p._next_ns = True, 0
    for step in range(37):
        p._state[:] = rng.normal(size=N_INPUTS).astype(np.float32) * 100
        rows.append(p._state.copy())
        p.on_market(p._next_ns + 1)  # one grid point passes: the current state is recorded
        want = np.mean(np.asarray(rows[-10:], dtype=np.float64), axis=0)
        assert np.array_equal(np.mean(p.input_window(), axis=0), want), step
        move = float(rng.choice([-5.0, 5.0]))
        p._pending.append((step, 100.0, 0.6))
        p._score(step, 100.0 * (1 + move / 1e4))
        outcomes.append(1 if move > 0 else 0)
        assert p.hit_rate() == sum(outcomes[-10:]) / len(outcomes[-10:])
    assert p.drift() == p.drift()  # the cached z-scores serve the next cycle unchanged


def test_drift_breaker_trips_on_a_shifted_feed_and_pricing_falls_back():
    # training statistics that the simulated market's spread (~2.5-5 bps) is far from: mean 50 bps, sd 1
    mean = np.zeros(N_INPUTS)
    mean[0] = 50.0
    std = np.full(N_INPUTS, 1e6)
    std[0] = 1.0
    # the hit-rate check is kept out of reach (a fixed fake model's calls are scored too): the inputs trip it
    engine, _ = _engine_with(FakeModel(mean=mean, std=std), drift_min_samples=20, drift_hit_rate_drop_pct=100.0)
    run_for(engine, 60)
    b = engine.risk.breakers["model"]
    assert b.state == "tripped" and "spread_bps" in b.reason
    assert engine.last_proposal.prediction_skew_ticks == 0.0  # model-free pricing while drifted


def test_no_drift_on_matching_statistics():
    engine, _ = _engine_with(FakeModel(), drift_min_samples=20)
    run_for(engine, 60)
    assert engine.risk.breakers["model"].state == "ok"
    assert engine.last_proposal.prediction_skew_ticks != 0.0


def test_a_model_that_raises_mid_run_falls_back_and_trading_goes_on():
    # quoting must not depend on the measured edge here (with it, this market has no edge at times and the
    # strategy stands aside, model or not)
    cfg = Config()
    cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"stand_aside_without_edge": False})})
    engine, venue = _engine_with(FakeModel(raise_after=20), cfg)
    run_for(engine, 60)
    quotes = engine.counters["quotes"]
    run_for(engine, 30)
    b = engine.risk.breakers["model"]
    assert b.state == "tripped" and "injected model failure" in b.reason
    assert engine.model_errors > 0
    # still quoting, model-free: quote cycles with quotes, orders resting (the order manager may keep the
    # orders it has rather than place new ones, so new placements are not the test)
    assert engine.counters["quotes"] > quotes and engine.oms.orders
    assert engine.last_proposal.prediction_skew_ticks == 0.0


def test_missing_model_file_is_the_fallback_or_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pt2"
    pred = load_predictor(ModelConfig(path=str(missing)))
    assert isinstance(pred, NoModelPredictor) and str(missing) in pred.reason
    from flashmm.model.predictor import ModelLoadError

    with pytest.raises(ModelLoadError, match="nope.pt2"):
        load_predictor(ModelConfig(path=str(missing), required=True))
    assert isinstance(load_predictor(ModelConfig(path="none")), NoModelPredictor)


def test_the_answer_computed_ahead_is_the_one_the_model_would_give():
    """Speculative inference after the orders are out must equal inference on the hot path."""
    class Echo(FakeModel):
        def predict_proba(self, window):  # depends on every input of the window
            s = float(np.tanh(window.sum() / 100.0))
            return np.asarray([(1 - s) / 3, 1 / 3, (1 + s) / 3], dtype=np.float32)

    ahead, _ = _engine_with(Echo())
    run_for(ahead, 120)
    assert ahead.predictor.speculative_hits > 50  # most cycles used the answer computed ahead
    plain, _ = _engine_with(Echo())
    plain.predictor.precompute = lambda features, book, now_ns: None  # never compute ahead
    run_for(plain, 120)
    assert plain.predictor.speculative_hits == 0
    assert ahead.last_prediction == plain.last_prediction
    assert ahead.portfolio.position_lots == plain.portfolio.position_lots  # identical trading
    assert [f.price_ticks for f in ahead.portfolio.fills] == [f.price_ticks for f in plain.portfolio.fills]


def test_the_answer_computed_ahead_serves_a_grid_finer_than_the_blocks():
    """A 250 ms grid under 400 ms blocks (the shipped model on the deep preset): a block passes one or two grid
    points, so the answer is computed ahead for both; nearly every cycle uses one, and trading is identical to
    computing every answer on the hot path (it used to miss whenever two points passed: predict p50 264 us)."""
    class Echo(FakeModel):
        def __init__(self):
            super().__init__()
            self.meta["cadence_ms"] = 250

        def predict_proba(self, window):
            s = float(np.tanh(window.sum() / 100.0))
            return np.asarray([(1 - s) / 3, 1 / 3, (1 + s) / 3], dtype=np.float32)

    cfg = Config(sim={"preset": "deep"})  # 400 ms blocks
    assert cfg.sim.block_ms == 400
    ahead, _ = _engine_with(Echo(), cfg)
    run_for(ahead, 120)
    p = ahead.predictor
    assert p.predictions > 200 and p.speculative_hits >= 0.9 * p.predictions, (p.speculative_hits, p.predictions)
    plain, _ = _engine_with(Echo(), cfg)
    plain.predictor.precompute = lambda features, book, now_ns: None
    run_for(plain, 120)
    assert ahead.last_prediction == plain.last_prediction
    assert [f.price_ticks for f in ahead.portfolio.fills] == [f.price_ticks for f in plain.portfolio.fills]


class FakeMoveModel(FakeModel):
    """A version 2 model: probabilities and the expected move in bps."""

    has_expected_move = True

    def __init__(self, move_bps: float, **kw):
        super().__init__(p=(0.2, 0.5, 0.3, move_bps), **kw)


@pytest.mark.parametrize("move_bps, want_bps", [(1.2, 1.2), (-0.4, -0.4), (9.0, 3.0), (-9.0, -3.0)])
def test_a_models_expected_move_is_the_fair_value_shift(move_bps, want_bps):
    """alpha = "model" with a model that predicts the move: the fair value moves by that many bps (bounded by
    alpha_cap_bps = 3), and nothing else (no confidence x direction skew on top)."""
    engine, _ = _engine_with(FakeMoveModel(move_bps))
    run_for(engine, 30)
    prop = engine.last_proposal
    assert engine.last_prediction.expected_move_bps == pytest.approx(move_bps, rel=1e-6)
    assert engine.alpha_bps == pytest.approx(want_bps, rel=1e-6)
    assert engine.strategy_state()["alpha_bps"] == pytest.approx(want_bps, abs=1e-4)
    bpt = 1e4 / engine.book.mid_ticks()
    assert prop.prediction_skew_ticks == pytest.approx(want_bps / bpt, rel=1e-6)


def test_the_expected_move_is_not_used_unless_alpha_is_model():
    cfg = Config()
    cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"alpha": "none"})})
    engine, _ = make_engine(cfg)
    engine.predictor = ModelPredictor(FakeMoveModel(2.0), ModelConfig(), "fake.pt2")
    engine.risk.breakers["model"].clear(10**18)
    run_for(engine, 30)
    assert engine.last_prediction is not None and engine.last_prediction.expected_move_bps == pytest.approx(2.0)
    assert engine.alpha_bps == 0.0 and engine.last_proposal.prediction_skew_ticks == 0.0


def test_a_drifted_move_model_prices_without_it():
    mean = np.zeros(N_INPUTS)
    mean[0] = 50.0
    std = np.full(N_INPUTS, 1e6)
    std[0] = 1.0
    engine, _ = _engine_with(FakeMoveModel(1.5, mean=mean, std=std), drift_min_samples=20)
    run_for(engine, 60)
    assert engine.risk.breakers["model"].state == "tripped"
    assert engine.alpha_bps == 0.0 and engine.last_proposal.prediction_skew_ticks == 0.0


def test_hit_rate_of_a_move_model_scores_every_mid_change():
    """As the online alpha's live score: the sign of the expected move against any realised change of the mid
    (no band); an unchanged mid is not scored."""
    p = ModelPredictor(FakeMoveModel(0.5), ModelConfig(), "fake.pt2")
    assert p.has_move
    p._pending.extend([(1, 100.0, 0.5), (2, 100.0, 0.5), (3, 100.0, -0.2), (4, 100.0, 0.5)])
    p._score(1, 100.001)  # +0.1 bps, inside a 1 bps band: still a move, a hit
    p._score(2, 99.9)  # down: a miss
    p._score(3, 99.99)  # predicted down, went down: a hit
    p._score(4, 100.0)  # unchanged: not scored
    assert list(p._outcomes) == [1, 0, 1]
