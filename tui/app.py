"""The FlashMM console: pulls snapshots from a source ~10 times a second and sends it the operator's
commands. The source is the engine in this process (`flashmm-tui`) or a daemon's control socket
(`flashmm-tui --attach`); see tui/source.py. The engine never runs inside the app: it runs beside it on the
same loop (or in the daemon), and every way out goes through the session's one shutdown path
(flashmm/control/shutdown.py): q, ctrl+q and ctrl+c ask for it here (after a warning when a position is
open); signals reach it directly; a console that crashes is followed by it.
"""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from flashmm.config import ConsoleConfig
from flashmm.control.view import OperatorView
from flashmm.core.engine import EngineSnapshot
from tui import panels
from tui.screens import (
    ConfirmScreen,
    ConsoleCommands,
    HelpScreen,
    ParamsScreen,
    PathScreen,
    QuitAttachedScreen,
)
from tui.source import FixedSource  # noqa: F401  (tests import it from here)
from tui.widgets import Blotter, HeaderBar, LinesPanel

TABS = ("orders", "fills", "events")


class _TerminalGuard:
    """Textual writes the screen through a thread fed by a 30-item queue. When the terminal stops draining
    (an ssh link that stalls) or goes away (SIGHUP; the writer thread dies on EIO, and the SIGCONT that comes
    with a lost session restarts application mode with a fresh writer), `put` blocks the event loop, and an
    in-process engine shares that loop: seen in tmux, kill-session left the process hung in WriterThread.
    Every writer of this process is made never to block: output the terminal cannot take is dropped and
    counted, and the console repaints everything once the terminal drains again."""

    def __init__(self) -> None:
        self.dropped = 0
        self.installed = False

    def install(self) -> None:
        if self.installed:
            return
        from textual.drivers import _writer_thread

        guard = self

        def write(writer: Any, text: str) -> None:
            try:
                writer._queue.put_nowait(text)
            except queue.Full:
                guard.dropped += 1

        def stop(writer: Any) -> None:
            try:
                writer._queue.put_nowait(None)
            except queue.Full:
                pass
            writer.join(timeout=1.0)

        _writer_thread.WriterThread.write = write  # type: ignore[method-assign]
        _writer_thread.WriterThread.stop = stop  # type: ignore[method-assign]
        self.installed = True


_terminal = _TerminalGuard()
_terminal.install()


class FlashMMApp(App[int]):
    CSS_PATH = Path(__file__).with_name("flashmm.tcss")
    TITLE = "FlashMM"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-medium"), (140, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-mid"), (40, "-tall")]
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume", id="pause"),
        Binding("w", "widen", "Widen", id="widen"),
        Binding("W", "tighten", "Tighten", id="tighten"),
        Binding("f", "flatten", "Flatten", id="flatten"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("ctrl+k", "kill_now", "Kill now", id="kill_now", priority=True, show=False),
        Binding("s", "params", "Params", id="params"),
        Binding("1", "tab('orders')", "Orders", id="tab_orders", show=False),
        Binding("2", "tab('fills')", "Fills", id="tab_fills", show=False),
        Binding("3", "tab('events')", "Events", id="tab_events", show=False),
        Binding("d", "detach", "Detach", id="detach"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Keys", id="help"),
        # Textual's own quit keys go to the same safe quit (ctrl+c is a key in a raw terminal, not SIGINT)
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, source: Any, *, console: ConsoleConfig | None = None, live: bool = True) -> None:
        super().__init__()
        self.source = source
        self.console_cfg = console or ConsoleConfig()
        self.live = live
        self.snap: EngineSnapshot | None = None
        self.quitting = False
        self.report: Any = None  # the shutdown path's report (in-process) once it ran
        self.exit_note = ""  # printed after the terminal is restored (attached consoles)
        self._last_version = -1
        self.pulls = 0
        self._panels: list[LinesPanel] = []
        self._slow_panels: list[LinesPanel] = []
        self._blotters: list[Blotter] = []
        self.tab = "orders"
        self._dropped_seen = 0
        self.first_frame = asyncio.Event()  # trading starts once the first frame is on screen

    # ---- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(lambda s, w, h: panels.header(s, w, self.quitting, self.source.link), id="header")
        yield Static("", id="waiting")
        with Horizontal(id="main"):
            yield LinesPanel(panels.ladder, "Order book", id="ladder")
            with Vertical(id="middle"):
                yield LinesPanel(panels.quotes, "Our quotes · spread", id="quotes")
                yield LinesPanel(panels.inventory, "Position", id="inventory")
                yield LinesPanel(panels.strip, "Summary", id="strip")
            with Vertical(id="right"):
                yield LinesPanel(panels.breakers, "Circuit breakers · limits", id="breakers")
        with Horizontal(id="charts"):
            # figures that need not move at 10 Hz repaint twice a second
            yield LinesPanel(panels.pnl, "PnL", id="pnl", every_s=0.5)
            yield LinesPanel(panels.charts, "Spread, order rate · fill quality", id="trends", every_s=0.5)
            yield LinesPanel(panels.latency, "Latency µs  p50 / p99", id="latency", every_s=0.5)
            yield LinesPanel(panels.model, "Model", id="model", every_s=0.5)
        with Vertical(id="blotters", classes="-show-orders"):
            yield LinesPanel(self._tabs, "", id="tabs")
            with Horizontal(id="blotter-row"):
                yield Blotter("orders", "Orders (1)", id="orders-blotter")
                yield Blotter("fills", "Fills (2)", id="fills-blotter")
                yield Blotter("events", "Events (3)", id="events-blotter")
        yield Footer()

    def _tabs(self, snap: EngineSnapshot, width: int, height: int) -> list[Any]:
        from rich.text import Text

        o = panels.op(snap)
        counts = {"orders": f"{len(o.orders)} live" if o else "", "fills": f"{o.fills[-1].seq:,}" if o and o.fills else "0",
                  "events": f"{len(snap.log)}"}
        t = Text()
        for i, name in enumerate(TABS):
            label = f" {i + 1} {name.capitalize()} {counts[name]} "
            t.append(label, "bold reverse" if name == self.tab else "dim")
            t.append(" ")
        t.append(" ↑↓ PgUp/PgDn scroll · g newest", "dim")
        return [t]

    def on_mount(self) -> None:
        self._panels = list(self.query(LinesPanel))
        self._slow_panels = [p for p in self._panels if p.every_s]
        self._blotters = list(self.query(Blotter))
        self.set_keymap(self.console_cfg.keymap())
        self.pull(force=True)
        if self.live:
            self.set_interval(1.0 / self.console_cfg.refresh_hz, self.pull)
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        self.first_frame.set()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "detach" and not self.source.attached:
            return False  # not shown, does nothing: an in-process console has nothing to detach from
        return True

    # ---- the pull -------------------------------------------------------------------------------------
    def operator_view(self) -> OperatorView | None:
        return panels.op(self.snap) if self.snap is not None else None

    def pull(self, force: bool = False) -> None:
        """Take a snapshot if the source changed since the last one, and repaint."""
        if _terminal.dropped != self._dropped_seen:
            writer = getattr(self._driver, "_writer_thread", None)
            if writer is not None and writer._queue.qsize():
                return  # the terminal is not taking output: nothing to draw until it drains
            self._dropped_seen = _terminal.dropped
            self.refresh(repaint=True, layout=True)  # frames were lost: draw everything again
            self.screen.refresh()
        now = time.monotonic()
        if not force and self.source.version == self._last_version:
            for panel in self._slow_panels:  # a slow panel still owes the last snapshot
                if panel.pending is not None:
                    panel.show(panel.pending, now)
            return
        snap = self.source.snapshot(depth=self.console_cfg.book_levels)
        self._last_version = self.source.version  # after: taking the snapshot may have moved it
        stopped = getattr(self.source, "stopped", None)
        if self.source.attached and self.quitting and stopped is not None:
            self.exit_note = _stopped_note(stopped)
            self.exit(0)
            return
        waiting = self.query_one("#waiting", Static)
        if snap is None:
            if not waiting.display:
                waiting.display = True
            waiting.update(f"{self.source.link[1]}\n\nq leaves.")
            return
        if waiting.display:  # (setting it unchanged would still lay the screen out again)
            waiting.display = False
        self.snap = snap
        self.pulls += 1
        with self.batch_update():
            for panel in self._panels:
                panel.show(snap, None if force else now)
            for blotter in self._blotters:
                blotter.show(snap)
        stopped = getattr(self.source, "stopped", None)
        if self.source.attached and self.quitting and stopped is not None:  # we asked the daemon to stop: it did
            self.exit_note = _stopped_note(stopped)
            self.exit(0)

    # ---- commands -------------------------------------------------------------------------------------
    async def send(self, name: str, args: dict[str, Any] | None = None, why: str = "key") -> Any:
        reply = await self.source.command(name, args, why)
        self.notify(reply.result, title=name, severity="information" if reply.ok else "warning",
                    timeout=3 if reply.ok else 6)
        self.pull(force=True)  # the effect shows in the header and the log at once
        return reply

    def _refused(self, name: str) -> str:
        o = self.operator_view()
        return dict(o.refused).get(name, "") if o is not None else ""

    async def action_toggle_pause(self) -> None:
        await self.send("toggle_pause")

    async def action_widen(self) -> None:
        await self.send("widen")

    async def action_tighten(self) -> None:
        await self.send("tighten")

    async def action_flatten(self) -> None:
        why = self._refused("flatten")
        if why:  # nothing to confirm: say why at once (and the engine audits the refusal)
            await self.send("flatten")
            return
        o = self.operator_view()
        body = "Cancel all orders, close the position with a marketable order within the slippage cap, then pause."
        if o is not None and self.snap is not None:
            body = f"{panels.flatten_text(self.snap, o).plain}\n\n{body}"

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.send("flatten", why="key, confirmed")

        self.push_screen(ConfirmScreen("Flatten?", body), callback=answered)

    async def action_kill(self) -> None:
        if self._refused("kill"):
            await self.send("kill")
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.send("kill", why="key, confirmed")

        self.push_screen(ConfirmScreen("KILL trading?", "Cancel all orders, flatten, and disable trading until "
                                       "restart. This cannot be undone from the console."), callback=answered)

    async def action_kill_now(self) -> None:
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()
        await self.send("kill", why="ctrl+k (immediate)")

    def action_params(self, select: str = "") -> None:
        o = self.operator_view()
        if o is None or not o.params:
            self.notify("no parameters to show yet", severity="warning")
            return

        async def answered(choice: tuple[str, str] | None) -> None:
            if choice:
                key, raw = choice
                await self.send("set", {"key": key, "value": raw}, why="parameter form, confirmed")

        self.push_screen(ParamsScreen(o.params, select), callback=answered)

    def action_save_params(self) -> None:
        default = f"var/params-{time.strftime('%Y%m%dT%H%M%S')}.toml"

        async def answered(path: str | None) -> None:
            if path:
                await self.send("save", {"path": str(Path(path).expanduser().resolve())}, why="command palette")

        self.push_screen(PathScreen("Save the running parameters as a config file (load it with --config):",
                                    default), callback=answered)

    def action_tab(self, name: str) -> None:
        if name not in TABS:
            return
        self.tab = name
        box = self.query_one("#blotters")
        for t in TABS:
            box.set_class(t == name, f"-show-{t}")
        self.query_one(f"#{name}-blotter", Blotter).focus()
        if self.snap is not None:
            self.query_one("#tabs", LinesPanel).show(self.snap)
            self.query_one(f"#{name}-blotter", Blotter).show(self.snap)

    def action_help(self) -> None:
        keymap = self.console_cfg.keymap()
        rows = []
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            if not b.id:
                continue
            key = keymap.get(b.id, b.key)
            shown = self.get_key_display(Binding(key, b.action, b.description))
            rows.append((shown, _DESCRIPTIONS.get(b.id, b.description), b.id))
        rows.append(("ctrl+q ^c", "the same as q", ""))
        extra = ("This console is attached: d detaches, q asks whether to detach or stop the daemon; signals "
                 "(a dropped ssh connection) detach it." if self.source.attached else
                 "Signals (SIGHUP/SIGTERM/SIGINT) stop it the same safe way.")
        self.push_screen(HelpScreen(rows, extra))

    # ---- leaving ---------------------------------------------------------------------------------------
    async def action_detach(self) -> None:
        if not self.source.attached:
            self.notify("not attached: this console runs the engine (q stops it; --attach to a daemon to detach)",
                        severity="warning")
            return
        await self.source.detach()
        self.exit_note = f"detached from {self.source.path}: the daemon keeps trading"
        self.exit(0)

    async def action_help_quit(self) -> None:  # Textual's ctrl+c default: the same safe quit
        await self.action_quit()

    async def action_quit(self) -> None:
        """q, ctrl+q, ctrl+c and the palette's quit: never an exit without the shutdown path."""
        if self.report is not None:  # the session already ended (a fault kept the console up)
            self.exit(self.report.code, return_code=self.report.code)
            return
        if self.quitting:
            return
        if isinstance(self.screen, ModalScreen):
            return
        if self.source.attached:
            await self._quit_attached()
            return
        snap = self.snap
        if snap is not None and snap.position_lots != 0:
            o = self.operator_view()
            u = panels.units(snap)
            pos = f"{panels.qty(u, snap.position_lots, True)} {u.base} ({snap.position_usdc:+,.2f} {u.quote})"
            body = (f"A position of {pos} is open. Quitting cancels every order but does NOT close the position.\n"
                    f"Flatten first with f{' — ' + panels.flatten_text(snap, o).plain if o else ''}.")

            def answered(yes: bool | None) -> None:
                if yes:
                    self._stop("q with a position open, confirmed")

            self.push_screen(ConfirmScreen("Quit with a position open?", body, "y = quit anyway",
                                           "n / escape = stay"), callback=answered)
            return
        self._stop("q")

    def _stop(self, cause: str) -> None:
        self.quitting = True
        if not self.source.stop(f"console: {cause}"):
            self.exit(0)  # a source with no shutdown path (a fixed snapshot)
        self.pull(force=True)

    async def _quit_attached(self) -> None:
        snap = self.snap
        if self.source.stopped is not None or not self.source.connected:
            await self.source.detach()
            self.exit_note = f"left {self.source.path} ({self.source.link[1]})"
            self.exit(0)
            return
        pos = "flat"
        if snap is not None and snap.position_lots:
            u = panels.units(snap)
            pos = f"position {panels.qty(u, snap.position_lots, True)} {u.base} stays open"

        async def answered(what: str | None) -> None:
            if what == "detach":
                await self.action_detach()
            elif what == "stop":
                reply = await self.send("stop", why="q in an attached console: stop the daemon")
                if reply.ok:
                    self.quitting = True  # leave when the daemon reports it stopped

        self.push_screen(QuitAttachedScreen(str(self.source.path), pos), callback=answered)

    def session_over(self, report: Any) -> None:
        """The in-process session ran its shutdown path. A fault keeps the console up to be read."""
        self.report = report
        self.pull(force=True)
        if report.cause.startswith("engine fault") and not self.quitting:
            self.notify(f"{report.cause}. Every order was cancelled ({'confirmed' if report.clean else 'NOT confirmed'});"
                        f" summary written. q exits ({report.code}).", severity="error", timeout=30)
            return
        self.exit(report.code, return_code=report.code)


_DESCRIPTIONS = {
    "pause": "pause (cancel all, keep running) / resume",
    "widen": "widen the spread one step (x1.5, capped)",
    "tighten": "tighten one step",
    "flatten": "flatten the position (preview, confirm)",
    "kill": "kill: cancel all, flatten, no trading until restart",
    "kill_now": "kill at once, from anywhere, over any dialog",
    "params": "change a parameter while trading (form)",
    "tab_orders": "orders blotter",
    "tab_fills": "fills blotter",
    "tab_events": "event log",
    "detach": "attached: detach, the daemon keeps trading",
    "quit": "stop safely: cancel all, confirm, summary, exit",
    "help": "this help",
}


def _stopped_note(report: dict[str, Any]) -> str:
    files = ", ".join(report.get("summary_files") or [])
    return (f"the daemon stopped: {report.get('cause')} -> exit {report.get('code')} ({report.get('meaning', '')})"
            + (f"; summary {files}" if files else ""))
