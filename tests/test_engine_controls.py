"""Operator controls and breakers, on the real engine over the seeded simulated market."""

from __future__ import annotations

import pytest

import json

from flashmm.config import Config, RiskConfig, StrategyConfig
from flashmm.core.domain import OrderType, Side
from flashmm.core.engine import Mode
from tests.conftest import make_engine, run_for


def _limit_orders(engine):
    return [o for o in engine.oms.orders.values() if o.order_type is OrderType.LIMIT]


def test_engine_quotes_both_sides_on_the_simulated_market():
    engine, venue = make_engine()
    run_for(engine, 20)
    sides = {o.side for o in _limit_orders(engine)}
    assert sides == {Side.BUY, Side.SELL}
    assert engine.current_mode is Mode.RUNNING
    bid = max(o.price_ticks for o in _limit_orders(engine) if o.side is Side.BUY)
    ask = min(o.price_ticks for o in _limit_orders(engine) if o.side is Side.SELL)
    assert bid < ask


def test_pause_leaves_no_resting_orders_and_resume_quotes_again(tmp_path):
    engine, venue = make_engine(audit_path=str(tmp_path / "audit.jsonl"))
    run_for(engine, 20)
    assert _limit_orders(engine)
    engine.pause("test", "unit test")
    t_pause = venue.mark()
    run_for(engine, 5)
    assert engine.current_mode is Mode.PAUSED
    assert not engine.oms.orders
    assert venue.market.account_state().open_orders == {}
    assert venue.places_since(t_pause) == []
    engine.resume("test", "unit test")
    run_for(engine, 5)
    assert _limit_orders(engine)
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["pause", "resume"]
    assert all(x["who"] == "test" and x["why"] == "unit test" for x in lines)


def test_after_kill_nothing_is_ever_placed_again_except_reducing_flatten_orders(tmp_path):
    engine, venue = make_engine(audit_path=str(tmp_path / "audit.jsonl"))
    run_for(engine, 120)
    pos_at_kill = engine.portfolio.position_lots
    engine.kill("test", "unit test")
    t_kill = venue.mark()
    run_for(engine, 60)
    placed = venue.places_since(t_kill)
    assert all(p.order_type is OrderType.MARKET for p in placed)
    if pos_at_kill == 0:
        assert placed == []
    else:
        assert all(int(p.side) == (-1 if pos_at_kill > 0 else 1) for p in placed)
        assert sum(p.lots for p in placed) == abs(pos_at_kill) or engine.portfolio.position_lots != 0
    assert engine.current_mode is Mode.KILLED
    assert engine.resume("test", "try")  # refused, but audited
    t_after = venue.mark()
    run_for(engine, 30)
    assert [p for p in venue.places_since(t_after) if p.order_type is OrderType.LIMIT] == []
    assert not _limit_orders(engine)
    audit = [json.loads(x)["action"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit == ["kill", "resume"]


def test_flatten_returns_position_to_zero_then_pauses():
    engine, venue = make_engine(seed=3)
    # trade until there is a position worth flattening
    for _ in range(30):
        run_for(engine, 10)
        if abs(engine.portfolio.position_lots) > 0:
            break
    assert engine.portfolio.position_lots != 0
    engine.flatten("test", "unit test")
    run_for(engine, 10)
    assert engine.portfolio.position_lots == 0
    assert venue.market.position_lots == 0
    assert engine.current_mode is Mode.PAUSED
    assert not engine.oms.orders


def test_widen_multiplies_half_spread_and_tighten_undoes_it_capped():
    engine, _ = make_engine()
    run_for(engine, 10)
    base = engine.last_proposal.half_spread_ticks
    engine.widen_spread()
    run_for(engine, 1)
    assert engine.current_mode is Mode.WIDENED
    assert abs(engine.last_proposal.half_spread_ticks / 1.5 - engine.propose(
        engine.book.mid_ticks(), 1.0, None).half_spread_ticks) < 1e-9
    for _ in range(20):
        engine.widen_spread()
    assert engine.widen == engine.cfg.controls.widen_max
    down = []
    for _ in range(30):
        engine.tighten()
        down.append(engine.widen)
    assert engine.widen == 1.0
    # the way down walks the same rungs as the way up (1.5^k below the cap): even steps after the cap
    assert down[:6] == pytest.approx([1.5**5, 1.5**4, 1.5**3, 1.5**2, 1.5, 1.0])
    run_for(engine, 1)
    assert engine.current_mode is Mode.RUNNING
    assert base > 0


def test_inventory_never_exceeds_the_position_limit_under_small_limits():
    cfg = Config(risk=RiskConfig(max_position_usdc=400.0))
    engine, venue = make_engine(cfg, seed=5)
    run_for(engine, 600)
    # resting exposure is capped at the limit at the time of placement; the mid may drift a little after
    assert engine.max_abs_inventory_pct <= 100 * 400.0 / cfg.risk.capital_usdc * 1.01
    assert engine.portfolio.fills


def test_extreme_move_breaker_kills_trading():
    cfg = Config(risk=RiskConfig(extreme_move_bps=1.0, extreme_window_s=5.0))
    engine, venue = make_engine(cfg)
    run_for(engine, 30)
    assert engine.killed
    assert engine.risk.breakers["extreme_market"].trips == 1
    t = venue.mark()
    run_for(engine, 10)
    assert [p for p in venue.places_since(t) if p.order_type is OrderType.LIMIT] == []


def test_no_model_is_shown_as_fallback():
    # a model that is wanted ([strategy].alpha = model) but missing trips the breaker, visibly
    engine, _ = make_engine(Config(strategy=StrategyConfig(alpha="model")))
    run_for(engine, 2)
    snap = engine.snapshot()
    assert snap.predictor == "FALLBACK (no model)"
    model = next(b for b in snap.breakers if b.name == "model")
    assert model.state == "tripped" and "model-free" in model.reason
    assert snap.prediction is None
    # with the online alpha (the default) no model is loaded, and that is no fault
    engine, _ = make_engine()
    run_for(engine, 2)
    snap = engine.snapshot()
    assert next(b for b in snap.breakers if b.name == "model").state == "ok"
    assert snap.strategy["alpha"] == "online"


def test_stale_book_pulls_quotes():
    engine, venue = make_engine()
    run_for(engine, 10)
    assert _limit_orders(engine)
    engine.book.mark_stale("test: feed gap")
    run_for(engine, 2)
    assert engine.risk.breakers["feed"].state == "tripped"
    assert not _limit_orders(engine)


def test_drawdown_stop_pauses_until_the_operator_resumes():
    # keeps quoting whatever the measured edge, so that only the drawdown stop decides here
    cfg = Config(risk=RiskConfig(max_drawdown_usdc=0.01), strategy=StrategyConfig(stand_aside_without_edge=False))
    engine, venue = make_engine(cfg, seed=3)
    for _ in range(60):
        run_for(engine, 10)
        if engine.risk.breakers["drawdown"].state == "tripped":
            break
    assert engine.risk.breakers["drawdown"].state == "tripped"
    assert engine.current_mode is Mode.PAUSED
    run_for(engine, 30)  # sticky: no automatic recovery
    assert engine.risk.breakers["drawdown"].state == "tripped" and not _limit_orders(engine)
    m = venue.mark()
    result = engine.resume("test", "reviewed the drawdown")
    assert "acknowledged drawdown" in result
    run_for(engine, 2)
    assert engine.risk.breakers["drawdown"].state == "cooling_down"
    assert [p for p in venue.places_since(m) if p.order_type is OrderType.LIMIT] == []
    run_for(engine, cfg.risk.breaker_cooldown_s + 2)
    # after the cooldown it quotes again (with a 0.01 USDC limit it may well trip again afterwards)
    assert [p for p in venue.places_since(m) if p.order_type is OrderType.LIMIT]


def test_retune_notes_follow_the_rounded_half_spread_exactly():
    """The re-tune note compares the half-spread rounded to 0.01 bps with the last noted one; a change well
    inside the threshold returns before rounding. The notes and the last noted value must be those of the rule
    applied to every rounded value — here on steps drawn around the threshold, where rounding decides."""
    import random
    from types import SimpleNamespace

    engine, _ = make_engine()
    rng = random.Random(5)
    mid = 100_000.0
    ref_last = None
    ref_notes = []
    half = 2.0
    for _ in range(4000):
        thr = max(0.25, 0.2 * (ref_last[0] if ref_last else half))
        half = max(0.05, half + rng.choice((-1, 1)) * (thr + rng.uniform(-0.02, 0.02)) * rng.choice((0.2, 1.0, 1.0)))
        engine.widen = rng.choice((1.0, 1.0, 1.5))
        engine.has_edge = rng.random() > 0.05
        proposal = SimpleNamespace(half_spread_ticks=half * mid / 1e4 * engine.widen)
        engine._note_retune(proposal, mid)
        half_bps = round(proposal.half_spread_ticks * 1e4 / mid / engine.widen, 2)  # the rule, every time
        state = (engine.has_edge, engine.regime.regime)
        if ref_last is None:
            ref_last = (half_bps, state)
        elif state != ref_last[1] or abs(half_bps - ref_last[0]) > max(0.25, 0.2 * ref_last[0]):
            ref_notes.append((ref_last[0], half_bps))
            ref_last = (half_bps, state)
        assert engine._retune_last == ref_last
    notes = [(f["was_bps"], f["half_spread_bps"]) for name, f in engine._logs_after_cycle if name == "retune"]
    assert notes == ref_notes and len(notes) > 1000
