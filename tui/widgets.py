"""Line-API panels: each keeps the last snapshot and renders its lines on demand.

A panel formats only when it is repainted after a new snapshot, and its render_line is a list lookup,
so a 10 Hz refresh costs a few formatter calls and no per-tick messages.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from flashmm.core.engine import EngineSnapshot

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
        self._texts: list[Text] | None = None
        self._built_for = (0, 0)

    def show(self, snap: EngineSnapshot) -> None:
        """Take a new snapshot; repaint only the lines whose text or style changed."""
        self.snap = snap
        width, height = self.content_region.width, self.content_region.height
        if width <= 0 or self._texts is None or self._strips is None or self._built_for != (width, height):
            # first paint, resized, or a full rebuild still pending (a second snapshot before the render):
            # everything is rebuilt on render. Patching rows into an unbuilt list misaligned them (rows of
            # the first frame stayed on screen: seen on the Sei venue, whose first snapshots come fast)
            self._strips = None
            self.refresh()
            return
        new = self.formatter(snap, width, height)
        old = self._texts
        console = self.app.console
        strips = self._strips or []
        for y, t in enumerate(new):
            if y >= len(old) or t != old[y]:
                strip = Strip(list(t.render(console, end="")))
                if y < len(strips):
                    strips[y] = strip
                else:
                    strips.append(strip)
                self._refresh_rows(y)
        if len(new) < len(old):
            del strips[len(new):]
            self._refresh_rows(len(new), len(old) - len(new))
        self._texts = new
        self._strips = strips

    def _refresh_rows(self, y: int, count: int = 1) -> None:
        """Mark content rows y..y+count dirty. Textual translates refresh regions by the content offset
        itself; adding the border here too repainted row y+1 instead of y, leaving stale first-frame
        rows on screen (seen in tmux on the Sei venue; tests/test_console.py now checks the screen)."""
        self.refresh(Region(0, y, self.size.width, count))

    def _build(self, width: int, height: int) -> list[Strip]:
        if self.snap is None:
            self._texts = None
            return []
        console = self.app.console
        self._texts = self.formatter(self.snap, width, height)
        return [Strip(list(t.render(console, end=""))) for t in self._texts]

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
