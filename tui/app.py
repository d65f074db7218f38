"""The FlashMM console: the engine in a worker on the app's loop, a 10 Hz snapshot pull, operator keys.

The app talks to a *source*: the real `Engine` live, or a fixed snapshot in tests. A source has
`version`, `snapshot()`, the controls (`toggle_pause`, `widen_spread`, `tighten`, `flatten`, `kill`),
and `run(duration_s)`, `stop()`, `shutdown()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Sparkline
from textual.worker import Worker, WorkerFailed

from flashmm.config import ConsoleConfig
from flashmm.core.engine import EngineSnapshot
from tui import panels
from tui.screens import ConfirmScreen, HelpScreen
from tui.widgets import HeaderBar, LinesPanel

WHO = "console"


class FlashMMApp(App[int]):
    CSS_PATH = Path(__file__).with_name("flashmm.tcss")
    TITLE = "FlashMM"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume", id="pause"),
        Binding("w", "widen", "Widen", id="widen"),
        Binding("W", "tighten", "Tighten", id="tighten"),
        Binding("f", "flatten", "Flatten", id="flatten"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("ctrl+k", "kill_now", "Kill now", id="kill_now", priority=True),
        Binding("q", "quit_safely", "Quit", id="quit"),
        Binding("question_mark", "help", "Keys", id="help"),
    ]

    def __init__(self, source: Any, *, duration_s: float | None = None, console: ConsoleConfig | None = None,
                 live: bool = True, background: list[Any] | None = None) -> None:
        super().__init__()
        self.background = background or []  # coroutine factories run beside the engine (e.g. metrics export)
        self.source = source
        self.duration_s = duration_s
        self.console_cfg = console or ConsoleConfig()
        self.live = live
        self.snap: EngineSnapshot | None = None
        self.quitting = False
        self.engine_error = ""
        self._last_version = -1
        self._engine_worker: Worker | None = None
        self._chart_keys: dict[str, tuple[int, float | None]] = {}
        self.pulls = 0

    # ---- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(lambda s, w, h: panels.header(s, w, self.quitting), id="header")
        with Horizontal(id="main"):
            yield LinesPanel(panels.ladder, "Order book", id="ladder")
            with Vertical(id="middle"):
                yield LinesPanel(panels.quotes, "Our quotes", id="quotes")
                yield LinesPanel(panels.inventory, "Inventory & skew", id="inventory")
                with Vertical(id="pnl-box"):
                    yield LinesPanel(panels.pnl, "PnL", id="pnl")
                    yield Sparkline([], id="pnl-chart")
            with Vertical(id="right"):
                with Vertical(id="model-box"):
                    yield LinesPanel(panels.model, "Model", id="model")
                    yield Sparkline([], id="confidence-chart")
                yield LinesPanel(panels.latency, "Latency", id="latency")
                yield LinesPanel(panels.breakers, "Circuit breakers", id="breakers")
        yield LinesPanel(panels.event_log, "Events", id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.set_keymap(self.console_cfg.keymap())
        self.pull(force=True)
        if self.live:
            # trading starts once the first frame is on screen, so the initial layout never delays a block
            self.call_after_refresh(self._start_engine)

    def _start_engine(self) -> None:
        self._engine_worker = self.run_worker(self._engine_main(), name="engine", group="engine", exit_on_error=False)
        for make in self.background:
            self.run_worker(make(), group="background", exit_on_error=False)
        self.set_interval(1.0 / self.console_cfg.refresh_hz, self.pull)

    # ---- the pull -------------------------------------------------------------------------------------
    def pull(self, force: bool = False) -> None:
        """Take a snapshot if the engine changed since the last one, and repaint."""
        if not force and self.source.version == self._last_version:
            return
        snap = self.source.snapshot(depth=self.console_cfg.book_levels)
        self._last_version = snap.version
        self.snap = snap
        self.pulls += 1
        with self.batch_update():
            for panel in self.query(LinesPanel):
                panel.show(snap)
            # the histories grow once per venue second: repaint the charts only when they changed
            for chart_id, series in (("#pnl-chart", snap.pnl_history), ("#confidence-chart", snap.confidence_history)):
                key = (len(series), series[-1] if series else None)
                if self._chart_keys.get(chart_id) != key:
                    self._chart_keys[chart_id] = key
                    self.query_one(chart_id, Sparkline).data = list(series[-120:])

    # ---- the engine worker ----------------------------------------------------------------------------
    async def _engine_main(self) -> None:
        try:
            await self.source.run(self.duration_s)
        except Exception as exc:  # the console stays up, shows FAULTED, and every order is cancelled
            self.engine_error = f"{type(exc).__name__}: {exc}"
            try:
                await self.source.shutdown()
            finally:
                self.pull(force=True)
            return
        if not self.quitting:  # the run ended by itself (--duration, or the venue ended)
            self.quitting = True
            clean = await self.source.shutdown()
            self.exit(0 if clean else 1)

    # ---- controls -------------------------------------------------------------------------------------
    def _control(self, name: str, why: str) -> None:
        getattr(self.source, name)(WHO, why)
        self.pull(force=True)  # the effect shows in the header and the log at once

    def action_toggle_pause(self) -> None:
        self._control("toggle_pause", "key")

    def action_widen(self) -> None:
        self._control("widen_spread", "key")

    def action_tighten(self) -> None:
        self._control("tighten", "key")

    def action_flatten(self) -> None:
        pos = self.snap.position_lots if self.snap else 0
        self.push_screen(ConfirmScreen("Flatten?", f"Cancel all orders, close the position ({pos:+,} lots) with a "
                                       "marketable order within the slippage cap, then pause."),
                         callback=lambda yes: self._control("flatten", "key, confirmed") if yes else None)

    def action_kill(self) -> None:
        self.push_screen(ConfirmScreen("KILL trading?", "Cancel all orders, flatten, and disable trading until "
                                       "restart. This cannot be undone from the console."),
                         callback=lambda yes: self._control("kill", "key, confirmed") if yes else None)

    def action_kill_now(self) -> None:
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()
        self._control("kill", "ctrl+k (immediate)")

    def action_help(self) -> None:
        rows = []
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            key = self.console_cfg.keymap().get(b.id or "", b.key)
            rows.append((key, b.description, b.id or ""))
        self.push_screen(HelpScreen(rows))

    def action_quit_safely(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        self.pull(force=True)
        self.run_worker(self._quit(), name="quit", exit_on_error=False)

    async def _quit(self) -> None:
        self.source.stop()
        if self._engine_worker is not None:
            try:
                await self._engine_worker.wait()
            except WorkerFailed:
                pass
        clean = await self.source.shutdown()
        self.exit(0 if clean else 1)


class FixedSource:
    """A source that always shows the same snapshot and records the controls sent to it (tests, demos)."""

    def __init__(self, snap: EngineSnapshot) -> None:
        self.snap = snap
        self.version = snap.version
        self.calls: list[tuple[str, str, str]] = []

    def snapshot(self, depth: int = 10) -> EngineSnapshot:
        return self.snap

    def _record(self, name: str, who: str, why: str) -> str:
        self.calls.append((name, who, why))
        return name

    def toggle_pause(self, who: str, why: str) -> str:
        return self._record("toggle_pause", who, why)

    def widen_spread(self, who: str, why: str) -> str:
        return self._record("widen_spread", who, why)

    def tighten(self, who: str, why: str) -> str:
        return self._record("tighten", who, why)

    def flatten(self, who: str, why: str) -> str:
        return self._record("flatten", who, why)

    def kill(self, who: str, why: str) -> str:
        return self._record("kill", who, why)

    async def run(self, duration_s: float | None = None) -> None:
        return None

    def stop(self) -> None:
        return None

    async def shutdown(self) -> bool:
        return True
