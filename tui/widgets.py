"""Line-API panels: each keeps the last snapshot and renders its lines on demand.

A panel formats only when it is repainted after a new snapshot, and its render_line is a list lookup,
so a 10 Hz refresh costs a few formatter calls and no per-tick messages.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from flashmm.engine import EngineSnapshot

Formatter = Callable[[EngineSnapshot, int, int], list[Text]]


class LinesPanel(Widget):
    DEFAULT_CSS = """
    LinesPanel { height: 1fr; border: round $primary-darken-2; border-title-color: $text-accent; }
    """

    def __init__(self, formatter: Formatter, title: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.formatter = formatter
        self.border_title = title
        self.snap: EngineSnapshot | None = None
        self._strips: list[Strip] | None = None
        self._built_for = (0, 0)

    def show(self, snap: EngineSnapshot) -> None:
        self.snap = snap
        self._strips = None
        self.refresh()

    def _build(self, width: int, height: int) -> list[Strip]:
        if self.snap is None:
            return []
        console = self.app.console
        return [Strip(list(t.render(console, end=""))) for t in self.formatter(self.snap, width, height)]

    def render_line(self, y: int) -> Strip:
        width, height = self.content_region.width, self.content_region.height
        if self._strips is None or self._built_for != (width, height):
            self._strips = self._build(width, height)
            self._built_for = (width, height)
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, self.rich_style)
        return Strip.blank(width, self.rich_style)


class HeaderBar(LinesPanel):
    DEFAULT_CSS = """
    HeaderBar { height: 1; border: none; background: $panel; }
    """
