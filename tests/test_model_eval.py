"""The prediction model's target and its honest evaluation: the target is the online alpha's (the mid's move
over the quote horizon, bps), the online alpha replayed over a recording equals the engine's own, the move
view's scores and paired block-bootstrap intervals worked by hand, the regression baselines, and recordings
of FlashMM's own trading (our orders in the recorded book). Small data, seconds each."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from flashmm.config import Config, StrategyConfig
from flashmm.core.book import L2Book
from flashmm.data.readers import DataError
from flashmm.model.inputs import MODEL_INPUTS, N_INPUTS
from flashmm.research import train as train_mod
from flashmm.research.dataset import Dataset, _market_events, samples_from_events, samples_from_sim
from flashmm.research.evaluate import (
    EvalSet,
    LinearMove,
    block_bootstrap,
    block_ids,
    move_scores,
    source_samples,
)
from tests.conftest import make_engine

IMB = MODEL_INPUTS.index("imbalance_1")


# ---- the target ---------------------------------------------------------------------------------------


def test_the_models_target_is_the_online_alphas():
    """Same horizon as [strategy].alpha_horizon_s (1 s), and the move in bps from the window's end."""
    assert train_mod.HORIZON_STEPS * train_mod.CADENCE_MS / 1000.0 == StrategyConfig().alpha_horizon_s
    s = samples_from_sim(30, 3, train_mod.CADENCE_MS)
    d = train_mod.windows(s, train_mod.WINDOW, train_mod.HORIZON_STEPS, train_mod.BAND_BPS)
    i = np.searchsorted(s.times_ns, d.times_ns)
    j = i + train_mod.HORIZON_STEPS
    assert np.all(s.times_ns[j] - s.times_ns[i] == int(1e9))  # exactly one second later on the grid
    np.testing.assert_allclose(d.move_bps, (s.mid_ticks[j] - s.mid_ticks[i]) / s.mid_ticks[i] * 1e4)
    # band 0: the classes are down / unchanged / up
    assert np.array_equal(d.y, np.where(d.move_bps > 0, 2, np.where(d.move_bps < 0, 0, 1)))


def test_online_alpha_replayed_by_the_dataset_equals_the_engines():
    """The baseline the model is compared with is the engine's own online alpha: with the engine following the
    same seeded market (paused, so its orders are not in the book), the alpha it would price with at each grid
    point equals the dataset's column, prequential values included."""
    seconds = 90
    engine, _ = make_engine(seed=7)
    engine.pause("test", "observe only")
    seen: list[tuple[int, float]] = []

    async def go():
        await engine.venue.start()
        end = engine.clock.now_ns() + seconds * 10**9
        while engine.clock.now_ns() < end:
            engine.on_batch(await engine.venue.next_batch())
            seen.append((engine.clock.now_ns(), engine.online_alpha.predict(engine.alpha_x)))

    asyncio.run(go())
    s = samples_from_sim(seconds, 7, 250.0)
    assert s.online_alpha_bps is not None and len(s.online_alpha_bps) == len(s.times_ns)
    times = np.array([t for t, _ in seen])
    vals = np.array([v for _, v in seen])
    k = np.searchsorted(times, s.times_ns, side="right") - 1  # the last batch at or before each grid point
    ok = k >= 0
    np.testing.assert_allclose(s.online_alpha_bps[ok], vals[k[ok]], rtol=1e-9, atol=1e-12)
    assert np.count_nonzero(s.online_alpha_bps) > 20  # warmed up: real predictions, not only zeros
    assert s.meta["online_alpha"]["points"] > 0


def test_the_alpha_inputs_read_after_an_unusable_book_are_those_of_the_last_usable_state():
    """The engine builds the online alpha's inputs only when the alpha records a point or something reads them
    (Engine.alpha_x). A trade that arrives while the book is unusable moves the features without the batch
    setting new inputs: what is read afterwards is still the last usable state's, as when they were built on
    every update."""
    from flashmm.core.alpha import alpha_inputs
    from flashmm.core.domain import Side, Trade

    from flashmm.core.alpha import OnlineAlpha

    engine, _ = make_engine(seed=7)
    engine.pause("test", "observe only")
    engine.online_alpha = OnlineAlpha(cadence_ms=5_000.0)  # (the sim's updates come every 0.4 s: most record nothing)

    async def go():  # to a market update the alpha records nothing at: its inputs are then not built
        await engine.venue.start()
        for _ in range(2000):
            engine.on_batch(await engine.venue.next_batch())
            if engine._alpha_mid and engine.clock.now_ns() > engine.start_ns + 10**9:
                return
        raise AssertionError("no market update without an alpha grid point")

    engine.start_ns = engine.clock.now_ns()
    asyncio.run(go())
    assert engine.book.two_sided() and not engine.book.stale and engine.features.ready
    expected = alpha_inputs(engine.features, engine.book.mid_ticks())
    engine.book.stale, engine.book.stale_reason = True, "test"
    engine.on_batch([Trade(float(engine.book.bids.best()), 50, Side.BUY, engine.clock.now_ns())])
    assert alpha_inputs(engine.features, engine.book.mid_ticks()) != expected  # the trade moved the features
    assert engine.alpha_x == expected


# ---- the move view ------------------------------------------------------------------------------------


def test_move_scores_by_hand():
    pred = np.array([1.0, -2.0, 0.0, 0.5, 3.0, -1.0])
    move = np.array([2.0, 1.0, -1.0, 0.0, 4.0, -3.0])
    s = move_scores(pred, move)
    # moves: all but the 4th; hits: right, wrong, tie (half), right, right -> 3.5 / 5
    assert s["n"] == 6 and s["n_moves"] == 5
    assert s["directional_accuracy"] == pytest.approx(3.5 / 5)
    assert s["ic"] == pytest.approx(np.corrcoef(pred, move)[0, 1])
    # sign-traded: +2, -1, 0, 0, +4, +3 over 6 windows
    assert s["bps_per_window"] == pytest.approx(8 / 6)
    assert move_scores(np.zeros(6), move)["ic"] is None  # no variance, no correlation
    assert move_scores(np.zeros(6), move)["directional_accuracy"] == 0.5


def test_block_bootstrap_intervals_are_paired_and_per_data_set():
    rng = np.random.default_rng(1)
    n = 4000
    times = np.arange(n, dtype=np.int64) * 250_000_000
    sources = np.array(["a"] * 2000 + ["b"] * 2000, dtype=object)
    signal = rng.normal(size=n)
    move = signal + rng.normal(scale=1.0, size=n)
    good, noisy = signal, signal + rng.normal(scale=3.0, size=n)
    blocks = block_ids(times, sources, 10.0)
    assert blocks.max() + 1 == 100  # 50 blocks of 40 windows per source
    assert len(set(blocks[sources == "a"]) & set(blocks[sources == "b"])) == 0
    r = block_bootstrap({"model": good, "same": good.copy(), "noisy": noisy}, move, blocks, sources,
                        reference="model", reps=300)
    m = r["predictors"]["model"]
    for key in ("directional_accuracy", "ic", "bps_per_window"):
        lo, hi = m[f"{key}_ci95"]
        assert lo <= m[key] <= hi
    same = r["differences"]["same"]
    assert same["directional_accuracy"] == 0 and same["directional_accuracy_ci95"] == [0.0, 0.0]
    assert not same["beats"]  # equal is not better
    noisy_d = r["differences"]["noisy"]
    assert noisy_d["beats"] and noisy_d["ic_ci95"][0] > 0 and noisy_d["directional_accuracy_ci95"][0] > 0
    # the reverse comparison never "beats"
    rev = block_bootstrap({"noisy": noisy, "model": good}, move, blocks, sources, reference="noisy", reps=300)
    assert not rev["differences"]["model"]["beats"]
    # too few blocks for an interval
    few = block_bootstrap({"model": good[:200]}, move[:200], block_ids(times[:200], sources[:200], 10.0),
                          sources[:200], reference="model", reps=100)
    assert few["n_blocks"] == 5 and few["predictors"]["model"]["ic_ci95"] is None


def test_linear_regression_baseline_fits_the_move():
    rng = np.random.default_rng(2)
    n = 3000
    x = rng.normal(size=(n, 8, N_INPUTS)).astype(np.float32)
    move = 2.0 * x[:, -1, IMB] - 0.5 * x[:, -1, 0] + rng.normal(scale=0.3, size=n)
    d = Dataset(x, np.ones(n, dtype=np.int64), np.arange(n, dtype=np.int64), move, "syn")
    lin = LinearMove(ridge=1e-6).fit(d)
    pred = lin.predict(x)
    assert np.corrcoef(pred, move)[0, 1] > 0.98
    # the fit is on standardised inputs: beta / sd gives the raw slopes back
    assert lin.beta[1 + IMB] / lin.sd[IMB] == pytest.approx(2.0, abs=0.05)
    assert lin.beta[1] / lin.sd[0] == pytest.approx(-0.5, abs=0.05)


def test_eval_set_carries_the_online_alpha_through_splits():
    s = samples_from_sim(90, 4, 250.0)
    split = train_mod.split_samples(s, fractions=(0.6, 0.1))
    for part in (split.train, split.val, split.test):
        assert len(part.online_alpha_bps) == len(part)
        i = np.searchsorted(s.times_ns, part.data.times_ns)
        np.testing.assert_array_equal(part.online_alpha_bps, s.online_alpha_bps[i])
    assert isinstance(split.test, EvalSet)


# ---- recordings of FlashMM's own trading --------------------------------------------------------------


def test_a_trading_recording_holds_our_orders_in_the_book(tmp_path):
    """`flashmm record --trade`: the recorded book is the one the engine saw, our resting orders included."""
    from flashmm.data.loader import load_events
    from flashmm.data.readers import write_flashmm
    from flashmm.data.record import TradingRecorder
    from tests.conftest import run_for

    rec = TradingRecorder(Config(), 11)
    run_for(rec.engine, 40)
    ours = [o for o in rec.engine.oms.orders.values() if o.state.name in ("OPEN", "PARTIALLY_FILLED")]
    assert ours, "the engine has resting orders"
    es = rec.event_set()
    assert es.meta["engine_trading"] and es.meta["engine"]["orders_placed"] > 0
    book = L2Book()
    from flashmm.core.domain import BookDiff, BookSnapshot, BookTop

    for ev in _market_events(es.events):
        if isinstance(ev, BookSnapshot):
            book.apply_snapshot(ev)
        elif isinstance(ev, BookDiff):
            book.apply_diff(ev)
        elif isinstance(ev, BookTop):
            book.apply_top(ev)
    for o in ours:
        side = book.bids if o.side.name == "BUY" else book.asks
        assert side.get(o.price_ticks, 0) >= o.lots - o.filled_lots, (o.side, o.price_ticks)
    # the book the engine itself holds is the recorded one
    assert dict(book.bids) == dict(rec.engine.book.bids) and dict(book.asks) == dict(rec.engine.book.asks)
    # the file round-trips and samples as its own source
    path = tmp_path / "own.npz"
    write_flashmm(es, path)
    s = samples_from_events(load_events([path], tmp_path / "cache"), 250.0)
    assert s.source == "sim-trading-thin-seed11" and len(s.times_ns) > 100


def test_source_specs():
    s = source_samples("sim-trading:20:3", 250.0, None)
    assert s.source == "sim-trading-thin-seed3" and len(s.times_ns) > 50 and s.meta["engine"]["orders_placed"] > 0
    deep = source_samples("sim-trading:20:3:deep", 250.0, None)
    assert deep.source == "sim-trading-deep-seed3" and deep.meta["preset"] == "deep"
    assert source_samples("sim:20:3:deep", 250.0, None).source == "sim-deep-seed3"
    # the presets are different markets: the deep book sits at one tick, the thin one wider
    spread = MODEL_INPUTS.index("spread_bps")
    assert np.median(deep.x[:, spread]) < np.median(s.x[:, spread])
    for bad in ("sim-trading:x:3", "sim:10", "sim:-5:1", "sim:10:1:nope", "sim:10:1:deep:x"):
        with pytest.raises(DataError):
            source_samples(bad, 250.0, None)
