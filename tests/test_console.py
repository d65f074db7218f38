"""The console: deterministic snapshots, and Pilot tests of every key against the real engine."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from flashmm.config import Config, ConsoleConfig, SimConfig
from flashmm.core.domain import OrderType
from flashmm.core.engine import Engine, EngineSnapshot
from tests.conftest import RecordingSimVenue, _continue, make_engine, run_for
from tui import panels
from tui.app import FixedSource, FlashMMApp
from tui.screens import ConfirmScreen, HelpScreen

FIXED_LATENCY = {s: {"count": 750, "p50": v, "p95": v * 1.5, "p99": v * 2, "p999": v * 3, "max": v * 4, "mean": v}
                 for s, v in (("book", 7.0), ("features", 24.0), ("predict", 1.5), ("quote", 17.0), ("risk", 23.0),
                              ("orders", 10.0), ("submit", 4.0), ("tick_to_quote", 105.0))}
FIXED_T2Q = (("<50us", 0), ("50-100us", 310), ("100-200us", 380), ("200-400us", 55), ("400-800us", 5),
             ("0.8-1.6ms", 0), ("1.6-5ms", 0), (">=5ms", 0))


def fixed_snapshot() -> EngineSnapshot:
    """A real snapshot of a seeded run, with the only wall-clock-dependent fields (latency) fixed. The deep
    preset (a busy one-tick book) fills every panel within 300 s; the pictures were made on it."""
    engine, _ = make_engine(Config(sim=SimConfig(preset="deep")), seed=7)
    run_for(engine, 300)
    snap = engine.snapshot()
    return dataclasses.replace(snap, latency_us=FIXED_LATENCY, t2q_hist=FIXED_T2Q)


@pytest.fixture(scope="module")
def snap() -> EngineSnapshot:
    return fixed_snapshot()


# ---- snapshots (no timers, no worker: live=False) -------------------------------------------------------

def test_main_screen_snapshot_160x45(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), terminal_size=(160, 45))


def test_main_screen_snapshot_100x30(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), terminal_size=(100, 30))


def test_help_screen_snapshot(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["question_mark"], terminal_size=(160, 45))


def test_kill_modal_snapshot(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["k"], terminal_size=(160, 45))


# ---- keys against the real engine --------------------------------------------------------------------------

def _resting(engine: Engine):
    return [o for o in engine.oms.orders.values() if o.order_type is OrderType.LIMIT]


def _header(app: FlashMMApp) -> str:
    return panels.header(app.snap, 160, app.quitting)[0].plain


async def _started(seconds: float = 30, seed: int = 7):
    engine, venue = make_engine(seed=seed)
    await engine.venue.start()
    engine.start_ns = engine.clock.now_ns()
    engine.mode = engine.mode.RUNNING
    await _continue(engine, seconds)
    return engine, venue


def test_p_pauses_with_no_resting_orders_and_p_again_resumes():
    async def go():
        engine, venue = await _started()
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            assert _resting(engine)
            await pilot.press("p")
            assert "PAUSED" in _header(app)  # shown at once, before the next refresh
            await _continue(engine, 3)
            assert not _resting(engine) and venue.market.account_state().open_orders == {}
            await pilot.press("p")
            await _continue(engine, 3)
            assert _resting(engine)
            app.pull(force=True)
            assert "RUNNING" in _header(app)
        assert [e["action"] for e in engine.audit.entries] == ["pause", "resume"]
        assert all(e["who"] == "console" for e in engine.audit.entries)
    asyncio.run(go())


def test_w_widens_and_shift_w_tightens():
    async def go():
        engine, _ = await _started()
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("w", "w")
            assert engine.widen == pytest.approx(2.25)
            assert "WIDENED ×2.25" in _header(app)
            await pilot.press("W")
            assert engine.widen == pytest.approx(1.5)
            await pilot.press("W")
            assert engine.widen == 1.0
    asyncio.run(go())


def test_f_asks_then_flattens_the_position_to_zero():
    async def go():
        engine, venue = await _started(seconds=10, seed=3)
        for _ in range(30):
            if engine.portfolio.position_lots:
                break
            await _continue(engine, 10)
        assert engine.portfolio.position_lots != 0
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("f")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert not engine.flatten_reason  # declined: nothing happened
            await pilot.press("f", "y")
            await _continue(engine, 5)
            assert engine.portfolio.position_lots == 0 and venue.market.position_lots == 0
            app.pull(force=True)
            assert "PAUSED" in _header(app)
    asyncio.run(go())


def test_k_asks_then_kills_and_nothing_is_placed_afterwards():
    async def go():
        engine, venue = await _started(seconds=60)
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmScreen) and not engine.killed
            await pilot.press("y")
            assert engine.killed and "KILLED" in _header(app)
            await _continue(engine, 5)  # the kill's own flatten completes
            mark = venue.mark()
            await _continue(engine, 30)
            assert venue.places_since(mark) == []
            assert not _resting(engine)
    asyncio.run(go())


def test_ctrl_k_kills_at_once_even_over_a_modal():
    async def go():
        engine, _ = await _started()
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("ctrl+k")
            assert engine.killed
            assert not isinstance(app.screen, HelpScreen)
            assert "KILLED" in _header(app)
    asyncio.run(go())


def test_q_cancels_every_order_waits_for_the_venue_and_exits_0():
    async def go():
        engine, venue = await _started()
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            assert _resting(engine)
            await pilot.press("q")
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.return_code == 0
        assert not engine.oms.orders and venue.market.account_state().open_orders == {}
    asyncio.run(go())


def test_keys_are_remappable_by_binding_id():
    async def go():
        engine, _ = await _started()
        app = FlashMMApp(engine, console=ConsoleConfig(key_pause="x"), live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("p")
            assert not engine.paused
            await pilot.press("x")
            assert engine.paused
    asyncio.run(go())


def test_help_lists_every_binding_with_its_id(snap):
    async def go():
        app = FlashMMApp(FixedSource(snap), console=ConsoleConfig(key_widen="plus"), live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("question_mark")
            screen = app.screen
            assert isinstance(screen, HelpScreen)
            ids = {bid for _, _, bid in screen.rows}
            assert ids == {"pause", "widen", "tighten", "flatten", "kill", "kill_now", "quit", "help"}
            assert ("plus", "Widen", "widen") in screen.rows
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
    asyncio.run(go())


# ---- the engine worker ----------------------------------------------------------------------------------------

class FailingVenue(RecordingSimVenue):
    """Fails once, on a chosen batch; works again afterwards (so orders can still be cancelled)."""

    fail_at = 200

    async def next_batch(self):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.fail_at:
            raise RuntimeError("venue connection reset (injected)")
        return await super().next_batch()


def test_engine_failure_keeps_the_console_up_shows_faulted_and_cancels_orders():
    async def go():
        from flashmm.config import Config

        cfg = Config()
        venue = FailingVenue(cfg.sim, cfg.instrument.instrument(), 7, speed=float("inf"))
        engine = Engine(cfg, venue)
        app = FlashMMApp(engine, live=True)
        async with app.run_test(size=(160, 45)) as pilot:
            for _ in range(500):
                await pilot.pause(0.01)
                if app.engine_error:
                    break
            await app.workers.wait_for_complete()
            assert "injected" in app.engine_error
            app.pull(force=True)
            assert "FAULTED" in _header(app) and "injected" in _header(app)
            assert app.is_running
            assert not engine.oms.orders and venue.market.account_state().open_orders == {}
            assert venue.submitted  # it had been trading
    asyncio.run(go())


def test_the_pull_skips_unchanged_engine_state():
    async def go():
        engine, _ = await _started()
        app = FlashMMApp(engine, live=False)
        async with app.run_test(size=(160, 45)):
            n = app.pulls
            app.pull()
            app.pull()
            assert app.pulls == n  # nothing changed: no snapshot taken
            await _continue(engine, 1)
            app.pull()
            assert app.pulls == n + 1
    asyncio.run(go())
