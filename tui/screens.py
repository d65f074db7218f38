"""Modal screens: confirmations, the attached console's quit question, the parameter form, the key help,
and the command palette's provider."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from flashmm.control.params import ParamRow, parse_value


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 72; max-width: 100%; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    ConfirmScreen .title { text-style: bold; color: $error; }
    ConfirmScreen .keys { margin-top: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes"),
        Binding("n", "answer(False)", "No", id="confirm_no"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, body: str, yes: str = "y = yes", no: str = "n / escape = no") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.keys = f"{yes}    {no}"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            yield Static(self.body)
            yield Static(self.keys, classes="keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QuitAttachedScreen(ModalScreen[str]):
    """q in an attached console: detach (the daemon keeps trading) or stop the daemon."""

    DEFAULT_CSS = """
    QuitAttachedScreen { align: center middle; }
    QuitAttachedScreen > Vertical { width: 72; max-width: 100%; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
    QuitAttachedScreen .title { text-style: bold; }
    QuitAttachedScreen .keys { margin-top: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("d", "answer('detach')", "Detach", id="quit_detach"),
        Binding("s", "answer('stop')", "Stop the daemon", id="quit_stop"),
        Binding("escape,n", "answer('')", "Stay", show=False),
    ]

    def __init__(self, where: str, position: str) -> None:
        super().__init__()
        self.where = where
        self.position = position

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Leave the console attached to {self.where}?", classes="title")
            yield Static("d  detach: this console closes, the daemon keeps trading\n"
                         "s  STOP the daemon: cancel every order, write the summary, exit "
                         f"({self.position})")
            yield Static("d = detach    s = stop the daemon    escape = stay", classes="keys")

    def action_answer(self, what: str) -> None:
        self.dismiss(what)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 84; max-width: 100%; height: auto; max-height: 100%; border: thick $primary; background: $surface; padding: 1 2; }
    HelpScreen .title { text-style: bold; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help_close")]

    def __init__(self, rows: list[tuple[str, str, str]], extra: str = "") -> None:
        super().__init__()
        self.rows = rows  # (key as shown, description, binding id)
        self.extra = extra

    def compose(self) -> ComposeResult:
        lines = [f"  {key:<10} {desc:<48} {bid}" for key, desc, bid in self.rows]
        with Vertical():
            yield Static("FlashMM keys  (remap any in config.toml [console]: key_<id> = \"...\")", classes="title",
                         markup=False)
            yield Static(f"  {'key':<10} {'what it does':<48} id\n" + "\n".join(lines), markup=False)
            yield Static("\nctrl+p opens the command palette (less common actions: save parameters, tabs...).\n"
                         "Every control is written to the audit log with who and why. " + self.extra
                         + "\nescape closes this.")

    def action_close(self) -> None:
        self.dismiss(None)


def _bounds(text: str) -> list[tuple[str, float]]:
    out = []
    for part in text.split(","):
        part = part.strip()
        for sym in (">=", "<=", ">", "<"):
            if part.startswith(sym):
                try:
                    out.append((sym, float(part[len(sym):])))
                except ValueError:
                    pass
                break
    return out


def check_value(row: ParamRow, raw: str) -> str:
    """'' when `raw` is acceptable for `row` by its type and bounds (the engine validates again), else why."""
    value = parse_value(raw.strip())
    if row.kind == "bool":
        return "" if isinstance(value, bool) else "true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "a number"
    if row.kind == "int" and not isinstance(value, int):
        return "a whole number"
    ops = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
    for sym, bound in _bounds(row.bounds):
        if not ops[sym](float(value), bound):
            return f"must be {row.bounds}"
    return ""


class ParamValidator(Validator):
    def __init__(self, row: ParamRow) -> None:
        super().__init__()
        self.row = row

    def validate(self, value: str) -> ValidationResult:
        why = check_value(self.row, value) if value.strip() else "a value"
        return self.success() if not why else self.failure(why)


class ParamsScreen(ModalScreen[tuple[str, str] | None]):
    """The live parameters with their current value, start value and allowed range; pick one, type a new
    value (checked as you type), confirm. The engine validates with the configuration models again."""

    DEFAULT_CSS = """
    ParamsScreen { align: center middle; }
    ParamsScreen > Vertical { width: 96; max-width: 100%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    ParamsScreen OptionList { height: 1fr; }
    ParamsScreen #about { height: auto; margin: 1 0 0 0; }
    ParamsScreen #why { color: $error; height: 1; }
    ParamsScreen .keys { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="params_close")]

    def __init__(self, rows: tuple[ParamRow, ...], select: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.select = select
        self.current: ParamRow | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Change a parameter while trading (applied at the next quote cycle, audited)", classes="keys")
            yield OptionList(*[Option(self._label(r), id=r.key) for r in self.rows], id="param-list")
            yield Static("", id="about")
            yield Input(placeholder="new value", id="value")
            yield Static("", id="why")
            yield Static("↑↓ choose · tab to the value · enter: review and confirm · escape: close", classes="keys")

    @staticmethod
    def _label(r: ParamRow) -> str:
        mark = "*" if r.modified else " "
        return f"{mark} {r.label:<32} {r.value!s:>12} {r.unit:<5} {r.bounds}"

    def on_mount(self) -> None:
        opts = self.query_one(OptionList)
        index = next((i for i, r in enumerate(self.rows) if r.key == self.select), 0)
        opts.highlighted = index
        self._show(self.rows[index])
        if self.select:
            self.query_one(Input).focus()

    def _show(self, r: ParamRow) -> None:
        self.current = r
        start = f" (started at {r.start!s})" if r.modified else ""
        self.query_one("#about", Static).update(
            f"[b]{r.key}[/b] = {r.value!s} {r.unit}{start}\n{r.description}\nallowed: {r.bounds or 'any'}")
        value = self.query_one(Input)
        value.validators = [ParamValidator(r)]
        value.value = ""

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        r = next((x for x in self.rows if x.key == event.option.id), None)
        if r is not None:
            self._show(r)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        why = self.query_one("#why", Static)
        if event.validation_result is not None and not event.validation_result.is_valid and event.value:
            why.update("; ".join(event.validation_result.failure_descriptions))
        else:
            why.update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        r = self.current
        if r is None:
            return
        if event.validation_result is not None and not event.validation_result.is_valid:
            self.query_one("#why", Static).update("; ".join(event.validation_result.failure_descriptions))
            return
        raw = event.value.strip()

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss((r.key, raw))

        self.app.push_screen(ConfirmScreen(f"Set {r.label}?", f"{r.key}: {r.value!s} → {raw} {r.unit}\n"
                                           "Applied at the next quote cycle and written to the audit log."),
                             callback=answered)

    def action_close(self) -> None:
        self.dismiss(None)


class PathScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PathScreen { align: center middle; }
    PathScreen > Vertical { width: 80; max-width: 100%; height: auto; border: thick $primary; background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="path_close")]

    def __init__(self, title: str, default: str) -> None:
        super().__init__()
        self.title_text = title
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            yield Input(value=self.default, id="path")
            yield Static("enter = save · escape = cancel", classes="keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_close(self) -> None:
        self.dismiss(None)


class ConsoleCommands(Provider):
    """The command palette (ctrl+p): every action, each live parameter by name, the tabs."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app: Any = self.app
        out = [
            ("Pause / resume quoting", "Cancel all orders and stop quoting, or resume", app.action_toggle_pause),
            ("Widen the spread", "One step up the widen ladder", app.action_widen),
            ("Tighten the spread", "One step down the widen ladder", app.action_tighten),
            ("Flatten…", "Close the position with a marketable order within the slippage cap", app.action_flatten),
            ("Kill…", "Cancel all, flatten, disable trading until restart", app.action_kill),
            ("Set a parameter…", "The form of live parameters", app.action_params),
            ("Save parameters to a file…", "The running configuration as a config file", app.action_save_params),
            ("Show the orders blotter", "Tab 1", partial(app.action_tab, "orders")),
            ("Show the fills blotter", "Tab 2", partial(app.action_tab, "fills")),
            ("Show the event log", "Tab 3", partial(app.action_tab, "events")),
            ("Keys", "The key help", app.action_help),
            ("Quit…" if not app.source.attached else "Detach or stop…",
             "Stop safely (cancel all, summary)" if not app.source.attached else "Detach, or stop the daemon",
             app.action_quit),
        ]
        if app.source.attached:
            out.append(("Detach", "Close this console; the daemon keeps trading", app.action_detach))
        o = app.operator_view()
        for r in (o.params if o is not None else ()):
            out.append((f"Set {r.label} ({r.key})", f"now {r.value!s} {r.unit}, allowed {r.bounds}",
                        partial(app.action_params, r.key)))
        return out

    async def discover(self) -> Hits:
        for name, help_text, call in self._commands()[:12]:
            yield DiscoveryHit(name, call, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, call in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), call, help=help_text)
