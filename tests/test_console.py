"""The console: deterministic snapshots at 80x24, 100x30 and 160x45, every column at 160x45, and Pilot tests
of every key against the real engine through its control interface and shutdown path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from flashmm.config import Config, ConsoleConfig, SimConfig, StrategyConfig
from flashmm.control.commands import LocalControl
from flashmm.control.shutdown import Session
from flashmm.control.view import LimitRow
from flashmm.core.domain import OrderType
from flashmm.core.engine import Engine, EngineSnapshot
from flashmm.telemetry.logging import AuditLog, configure_logging
from tests.conftest import RecordingSimVenue, _continue, make_engine
from tui import panels
from tui.app import FixedSource, FlashMMApp
from tui.screens import ConfirmScreen, ConsoleCommands, HelpScreen, ParamsScreen
from tui.source import LocalSource
from tui.widgets import Blotter, LinesPanel

FIXED_LATENCY = {s: {"count": 750, "p50": v, "p95": v * 1.5, "p99": v * 2, "p999": v * 3, "max": v * 4, "mean": v}
                 for s, v in (("book", 7.0), ("features", 24.0), ("predict", 1.5), ("quote", 17.0), ("risk", 23.0),
                              ("orders", 10.0), ("submit", 4.0), ("tick_to_quote", 105.0))}
FIXED_T2Q = (("<50us", 0), ("50-100us", 310), ("100-200us", 380), ("200-400us", 55), ("400-800us", 5),
             ("0.8-1.6ms", 0), ("1.6-5ms", 0), (">=5ms", 0))


def fixed_snapshot() -> EngineSnapshot:
    """A real snapshot of a seeded run (venue time only) on the deep preset (a busy one-tick book that fills
    every panel), with the wall-clock fields fixed: latency figures, the latency breaker's window and the age
    of the last batch."""
    engine, _ = make_engine(Config(sim=SimConfig(preset="deep")), seed=3)
    ctl = LocalControl(engine)

    async def go():
        await engine.venue.start()
        engine.start_ns = engine.clock.now_ns()
        engine.mode = engine.mode.RUNNING
        for _ in range(300):
            await _continue(engine, 1)
            ctl.tick()

    asyncio.run(go())
    snap = ctl.snapshot()
    o = snap.extra["operator"]
    limits = tuple(dataclasses.replace(x, value=0.2 if x.unit == "ms" and "t2q" in x.measure else
                                       (400.0 if x.unit == "ms" else x.value)) if x.breaker in ("latency", "feed")
                   else x for x in o.limits)
    limits = tuple(dataclasses.replace(x, value=0.1) if x.breaker == "feed" else x for x in limits)
    o = dataclasses.replace(o, last_data_age_s=0.1, limits=limits)
    return dataclasses.replace(snap, latency_us=FIXED_LATENCY, t2q_hist=FIXED_T2Q, extra={"operator": o})


@pytest.fixture(scope="module")
def snap() -> EngineSnapshot:
    return fixed_snapshot()


# ---- snapshots (no timers: live=False) ---------------------------------------------------------------------

def test_main_screen_snapshot_160x45(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), terminal_size=(160, 45))


def test_main_screen_snapshot_100x30(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), terminal_size=(100, 30))


def test_main_screen_snapshot_80x24(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), terminal_size=(80, 24))


def test_fills_tab_snapshot_160x45(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["2"], terminal_size=(160, 45))


def test_help_screen_snapshot(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["question_mark"], terminal_size=(160, 45))


def test_flatten_preview_modal_snapshot(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["f"], terminal_size=(160, 45))


def test_params_form_snapshot(snap_compare, snap):
    assert snap_compare(FlashMMApp(FixedSource(snap), live=False), press=["s"], terminal_size=(160, 45))


def test_every_column_of_every_panel_is_shown_at_160x45(snap):
    async def go():
        app = FlashMMApp(FixedSource(snap), live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            shown = {}
            for tab in ("1", "2", "3"):
                await pilot.press(tab)
                await pilot.pause()
                for w in list(app.query(LinesPanel)) + list(app.query(Blotter)):
                    if w.display and w.region.width:
                        w.refresh()
                        await pilot.pause()
                        shown[w.id] = w.dropped
            return shown

    shown = asyncio.run(go())
    expected = {"ladder", "quotes", "inventory", "breakers", "pnl", "trends", "latency", "model", "orders-blotter",
                "fills-blotter", "events-blotter"}
    assert expected <= set(shown), set(shown)
    assert {k: v for k, v in shown.items() if v} == {}


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_small_terminals_drop_panels_and_columns_but_never_cut_a_number(snap, size):
    """Every line a panel draws fits its width, the key figures are all on screen, whole columns go first."""
    async def go():
        app = FlashMMApp(FixedSource(snap), live=False)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            out = {}
            for w in app.query(LinesPanel):
                if w.display and w.region.width and w._texts is not None:
                    out[w.id] = ([t.plain for t in w._texts], w.content_region.width)
            return out

    panels_shown = asyncio.run(go())
    assert {"ladder", "quotes", "strip"} <= set(panels_shown)
    for pid, (lines, width) in panels_shown.items():
        assert all(len(x) <= width for x in lines), (pid, width, [x for x in lines if len(x) > width])
    text = "\n".join(x for lines, _ in panels_shown.values() for x in lines)
    o = snap.extra["operator"]
    assert f"PnL {snap.pnl.total:+,.2f}" in text  # PnL, position, mid: whole figures
    assert f"mid {panels.px(snap, snap.mid_ticks)}" in text
    assert f"pos {panels.qty(o.units, snap.position_lots, True)} SEI" in text
    for b in snap.breakers:
        if b.state != "ok":
            assert b.name in text


def test_units_come_from_the_instrument_and_distances_turn_to_bps_on_tiny_ticks(snap):
    o = snap.extra["operator"]
    btc = dataclasses.replace(o.units, base="BTC", quote="USDT", lot_size="0.00001", bps_per_tick=0.0016)
    s2 = dataclasses.replace(snap, extra={"operator": dataclasses.replace(o, units=btc)})
    text = "\n".join(t.plain for t in panels.quotes(s2, 70, 12) + panels.inventory(s2, 70, 7) + panels.pnl(s2, 60, 9))
    assert "USDC" not in text and "USDT" in text and "BTC" in text
    assert "bp" in panels.dist(btc, 1912.5) and panels.dist(btc, 1912.5) == "3.06bp"
    assert panels.qty(btc, 250) == "0.00250"


def test_a_slow_figure_is_red(snap):
    slow = dict(snap.latency_us, tick_to_quote={**snap.latency_us["tick_to_quote"], "p99": 8000.0})
    line = panels.latency(dataclasses.replace(snap, latency_us=slow), 30, 9)[0]
    p99_span = [s for s in line.spans if "red" in str(s.style)]
    assert p99_span and line.plain[p99_span[0].start:p99_span[0].end].strip() == "8,000.0"
    ok = panels.latency(snap, 30, 9)[0]
    assert not [s for s in ok.spans if "red" in str(s.style)]
    o = snap.extra["operator"]
    over = dataclasses.replace(o, limits=(LimitRow("drawdown", "below peak", 600.0, 500.0, "USDC"),))
    lines = panels.breakers(dataclasses.replace(snap, extra={"operator": over}), 70, 12)
    row = next(t for t in lines if t.plain.startswith("drawdown"))
    assert any("red" in str(s.style) and "600.00" in row.plain[s.start:s.end] for s in row.spans)


# ---- keys against the real engine ---------------------------------------------------------------------------

def _resting(engine: Engine):
    return [o for o in engine.oms.orders.values() if o.order_type is OrderType.LIMIT]


def _header(app: FlashMMApp) -> str:
    return panels.header(app.snap, 200, app.quitting)[0].plain


# the busy one-tick market and quoting throughout: these tests act on resting orders and fills
QUOTING = Config(sim=SimConfig(preset="deep"), strategy=StrategyConfig(stand_aside_without_edge=False))


async def _started(seconds: float = 30, seed: int = 7, audit: str | None = None):
    engine, venue = make_engine(cfg=QUOTING, seed=seed, audit_path=audit)
    await engine.venue.start()
    engine.start_ns = engine.clock.now_ns()
    engine.mode = engine.mode.RUNNING
    await _continue(engine, seconds)
    return engine, venue


def _app(engine: Engine, **kw) -> FlashMMApp:
    return FlashMMApp(LocalSource(LocalControl(engine)), live=False, **kw)


def test_p_pauses_with_no_resting_orders_and_p_again_resumes():
    async def go():
        engine, venue = await _started()
        app = _app(engine)
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
        assert all(e["who"].startswith("console (pid") for e in engine.audit.entries)
    asyncio.run(go())


def test_w_widens_and_shift_w_tightens():
    async def go():
        engine, _ = await _started()
        app = _app(engine)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("w", "w")
            assert engine.widen == pytest.approx(2.25)
            assert "WIDENED ×2.25" in _header(app)
            await pilot.press("W")
            assert engine.widen == pytest.approx(1.5)
            await pilot.press("W")
            assert engine.widen == 1.0
    asyncio.run(go())


def test_f_shows_the_preview_asks_then_flattens_the_position_to_zero():
    async def go():
        engine, venue = await _started(seconds=10, seed=3)
        for _ in range(30):
            if engine.portfolio.position_lots:
                break
            await _continue(engine, 10)
        assert engine.portfolio.position_lots != 0
        app = _app(engine)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("f")
            assert isinstance(app.screen, ConfirmScreen)
            side = "SELL" if engine.portfolio.position_lots > 0 else "BUY"
            assert f"flatten → {side} {abs(engine.portfolio.position_lots):,} SEI worst" in app.screen.body
            await pilot.press("n")
            assert not engine.flatten_reason  # declined: nothing happened
            await pilot.press("f", "y")
            await _continue(engine, 5)
            assert engine.portfolio.position_lots == 0 and venue.market.position_lots == 0
            app.pull(force=True)
            assert "PAUSED" in _header(app)
    asyncio.run(go())


def test_k_asks_then_kills_and_keys_that_make_no_sense_are_refused_with_a_reason():
    async def go():
        engine, venue = await _started(seconds=60)
        app = _app(engine)
        notes: list[str] = []
        async with app.run_test(size=(160, 45)) as pilot:
            app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmScreen) and not engine.killed
            await pilot.press("y")
            assert engine.killed and "KILLED" in _header(app)
            await _continue(engine, 5)  # the kill's own flatten completes
            mark = venue.mark()
            notes.clear()
            await pilot.press("w", "p", "f")
            assert not isinstance(app.screen, ConfirmScreen)  # f asks nothing: it is refused at once
            await _continue(engine, 30)
            assert venue.places_since(mark) == [] and engine.widen == 1.0
            assert not _resting(engine)
        assert notes == ["refused: killed: no quotes to widen", "refused: killed: trading is disabled until restart",
                         "refused: killed and flat: nothing to flatten"], notes
        assert [e["action"] for e in engine.audit.entries][-3:] == ["widen", "toggle_pause", "flatten"]
    asyncio.run(go())


def test_ctrl_k_kills_at_once_even_over_a_modal():
    async def go():
        engine, _ = await _started()
        app = _app(engine)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("ctrl+k")
            assert engine.killed
            assert not isinstance(app.screen, HelpScreen)
            assert "KILLED" in _header(app)
    asyncio.run(go())


def test_keys_are_remappable_by_binding_id():
    async def go():
        engine, _ = await _started()
        app = _app(engine, console=ConsoleConfig(key_pause="x"))
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("p")
            assert not engine.paused
            await pilot.press("x")
            assert engine.paused
    asyncio.run(go())


def test_help_lists_every_binding_with_readable_keys(snap):
    async def go():
        app = FlashMMApp(FixedSource(snap), console=ConsoleConfig(key_widen="plus"), live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("question_mark")
            screen = app.screen
            assert isinstance(screen, HelpScreen)
            ids = {bid for _, _, bid in screen.rows}
            assert ids >= {"pause", "widen", "tighten", "flatten", "kill", "kill_now", "quit", "help", "params",
                           "detach", "tab_orders", "tab_fills", "tab_events"}
            keys = {bid: key for key, _, bid in screen.rows}
            assert keys["help"] == "?" and keys["widen"] == "+" and keys["kill_now"] in ("^k", "ctrl+k")
            assert not any("question_mark" in key for key, _, _ in screen.rows)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
    asyncio.run(go())


def test_the_parameter_form_checks_as_you_type_then_sets_after_confirmation(tmp_path):
    async def go():
        engine, venue = await _started(audit=str(tmp_path / "audit.jsonl"))
        app = _app(engine)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("s")
            assert isinstance(app.screen, ParamsScreen)
            form = app.screen
            for _ in range(3):  # down to "levels per side"
                await pilot.press("down")
            await pilot.press("tab")
            await pilot.press("0", "enter")
            assert "must be >= 1, <= 10" in str(form.query_one("#why").render())
            assert isinstance(app.screen, ParamsScreen)
            await pilot.press("backspace", "1", "enter")
            assert isinstance(app.screen, ConfirmScreen) and "strategy.order_levels: 2 → 1" in app.screen.body
            await pilot.press("y")
            await pilot.pause()
            assert engine.cfg.strategy.order_levels == 1
            app.pull(force=True)
            assert "1 param changed" in _header(app)  # shown as modified
            await _continue(engine, 3)
            assert {o.level for o in _resting(engine)} == {0}
        entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert entries[-1]["action"] == "set" and entries[-1]["why"] == "parameter form, confirmed"
    asyncio.run(go())


def test_the_command_palette_offers_the_actions_and_each_parameter(snap):
    async def go():
        app = FlashMMApp(FixedSource(snap), live=False)
        async with app.run_test(size=(160, 45)):
            provider = ConsoleCommands(app.screen)
            names = [name for name, _, _ in provider._commands()]
            return names

    names = asyncio.run(go())
    assert {"Pause / resume quoting", "Flatten…", "Kill…", "Set a parameter…", "Save parameters to a file…"} <= set(names)
    assert any("γ risk aversion" in n and "strategy.risk_aversion" in n for n in names)


def test_the_pull_skips_unchanged_engine_state():
    async def go():
        engine, _ = await _started()
        app = _app(engine)
        async with app.run_test(size=(160, 45)):
            n = app.pulls
            app.pull()
            app.pull()
            assert app.pulls == n  # nothing changed: no snapshot taken
            await _continue(engine, 1)
            app.pull()
            assert app.pulls == n + 1
    asyncio.run(go())


def test_blotters_keep_the_rows_in_view_while_new_ones_arrive():
    async def go():
        engine, _ = await _started(seconds=120, seed=3)
        app = _app(engine)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("2")
            blotter = app.query_one("#fills-blotter", Blotter)
            app.pull(force=True)
            await pilot.pause()
            assert len(blotter.items) > 20
            blotter.scroll_to(y=10, animate=False)
            await pilot.pause()
            seen = blotter.items[int(blotter.scroll_y)].seq
            before = engine.counters["fills"]
            for _ in range(40):
                await _continue(engine, 1)
                if engine.counters["fills"] > before:
                    break
            app.pull(force=True)
            await pilot.pause()
            assert engine.counters["fills"] > before
            assert blotter.items[int(blotter.scroll_y)].seq == seen  # the same fill stays at the top of the view
    asyncio.run(go())


# ---- leaving: the shutdown path ------------------------------------------------------------------------------

def _session(venue_cls=RecordingSimVenue, **control):
    d = Path(tempfile.mkdtemp(prefix="fm", dir="/tmp"))
    configure_logging("error")
    cfg = QUOTING.model_copy(update={"control": QUOTING.control.model_copy(
        update={"socket": "", "summary_dir": str(d / "s"), **control})})
    venue = venue_cls(cfg.sim, cfg.instrument.instrument(), 7, speed=20)
    engine = Engine(cfg, venue, audit=AuditLog(str(d / "audit.jsonl")))
    return Session(cfg, engine, via="console", run_id="t", summary_path=str(d / "run.json")), venue, d


async def _in_console(session: Session, keys: list[str], position: bool = False):
    """The console wired as flashmm-tui wires it: press `keys` once trading, then wait for the shutdown path."""
    await session.open_control()
    session.start_engine()
    app = FlashMMApp(LocalSource(session.control, session.request_stop))
    async with app.run_test(size=(160, 45)) as pilot:
        e = session.engine
        while not e.oms.orders or (position and e.portfolio.position_lots == 0):
            await asyncio.sleep(0.05)
        await pilot.press(*keys)
        report = await asyncio.wait_for(session.wait(), 30)
        app.session_over(report)
        await pilot.pause()
    return app, report


@pytest.mark.parametrize("key", ["q", "ctrl+q", "ctrl+c"])
def test_q_ctrl_q_and_ctrl_c_take_the_shutdown_path(key):
    session, venue, d = _session()

    async def go():
        session.engine.portfolio.position_lots = 0
        return await _in_console(session, [key, "y"])  # "y" answers the position question if there is one

    app, report = asyncio.run(go())
    assert report.cause.startswith("console: q") and report.code == 0 and app.return_code == 0
    assert report.clean and venue.market.account_state().open_orders == {}
    s = json.loads((d / "run.json").read_text())
    assert s["exit"]["via"] == "console" and s["open_orders"] == 0
    audit = [json.loads(x) for x in (d / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["action"] == "shutdown" and audit[-1]["who"].startswith("console (pid")


def test_q_with_a_position_open_warns_and_n_stays():
    async def go():
        engine, _ = await _started(seconds=10, seed=3)
        for _ in range(30):
            if engine.portfolio.position_lots:
                break
            await _continue(engine, 10)
        stops: list[str] = []
        app = FlashMMApp(LocalSource(LocalControl(engine), lambda cause, who: stops.append(cause) or True), live=False)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmScreen) and "does NOT close the position" in app.screen.body
            await pilot.press("n")
            assert stops == [] and not app.quitting
            await pilot.press("q", "y")
            assert stops == ["console: q with a position open, confirmed"]
    asyncio.run(go())


class FailingVenue(RecordingSimVenue):
    fail_at = 200

    async def next_batch(self):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.fail_at:
            raise RuntimeError("venue connection reset (injected)")
        return await super().next_batch()


def test_an_engine_fault_cancels_everything_keeps_the_console_up_and_q_exits_1():
    session, venue, d = _session(FailingVenue)

    async def go():
        await session.open_control()
        session.start_engine()
        app = FlashMMApp(LocalSource(session.control, session.request_stop))
        async with app.run_test(size=(160, 45)) as pilot:
            report = await asyncio.wait_for(session.wait(), 30)
            app.session_over(report)
            await pilot.pause()
            assert app.is_running  # kept up to be read
            app.pull(force=True)
            assert "FAULTED" in _header(app) and "injected" in _header(app)
            await pilot.press("q")
            await pilot.pause()
        return app, report

    app, report = asyncio.run(go())
    assert report.code == 1 and app.return_code == 1
    assert report.clean and venue.market.account_state().open_orders == {} and venue.submitted
    assert json.loads((d / "run.json").read_text())["fault"].startswith("RuntimeError")
