"""Line-API widgets: panels that repaint only changed lines, and scrollable blotters that format only the
rows on screen.

A panel formats only when it is repainted after a new snapshot, and its render_line is a list lookup,
so a 10 Hz refresh costs a few formatter calls and no per-tick messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from flashmm.control.view import BLOTTER_FILLS, BLOTTER_ORDERS
from flashmm.core.engine import EngineSnapshot
from tui import panels

Formatter = Callable[[EngineSnapshot, int, int], list[Text]]


class LinesPanel(Widget):
    DEFAULT_CSS = """
    LinesPanel { height: 1fr; border: round $primary-darken-2; border-title-color: $text-accent; }
    """

    def __init__(self, formatter: Formatter, title: str = "", *, id: str | None = None, every_s: float = 0.0) -> None:
        super().__init__(id=id)
        self.formatter = formatter
        self.every_s = every_s  # repaint at most this often (figures that need not move at 10 Hz)
        self._shown_at = 0.0
        self.pending: EngineSnapshot | None = None
        self.border_title = title
        self.snap: EngineSnapshot | None = None
        self._strips: list[Strip] | None = None
        self._texts: list[Text] | None = None
        self._built_for = (0, 0)
        self._style: Any = None
        self.dropped: tuple[str, ...] = ()  # columns the formatter left out to fit (shown in tests)

    def show(self, snap: EngineSnapshot, now: float | None = None) -> None:
        """Take a new snapshot; repaint only the lines whose text or style changed."""
        if self.every_s and now is not None:
            if now - self._shown_at < self.every_s:
                self.pending = snap  # shown by a later pull (App.pull flushes what is due)
                return
            self._shown_at = now
        self.pending = None
        self.snap = snap
        if not self.display:
            self._strips = None  # hidden (narrow terminal): nothing to format until it shows again
            return
        width, height = self.content_region.width, self.content_region.height
        if width <= 0 or self._texts is None or self._strips is None or self._built_for != (width, height):
            # first paint, resized, or a full rebuild still pending (a second snapshot before the render):
            # everything is rebuilt on render. Patching rows into an unbuilt list misaligned them (rows of
            # the first frame stayed on screen: seen on the Sei venue, whose first snapshots come fast)
            self._strips = None
            self.refresh()
            return
        new = self._format(snap, width, height)
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

    def _format(self, snap: EngineSnapshot, width: int, height: int) -> list[Text]:
        lines = self.formatter(snap, width, height)[: max(0, height)]
        self.dropped = getattr(lines, "dropped", ())
        return lines

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
        self._texts = self._format(self.snap, width, height)
        return [Strip(list(t.render(console, end=""))) for t in self._texts]

    def render_line(self, y: int) -> Strip:
        width, height = self.content_region.width, self.content_region.height
        if self._strips is None or self._built_for != (width, height):
            self._strips = self._build(width, height)
            self._built_for = (width, height)
            self._style = self.rich_style  # (walks the DOM: once a build, not once a line)
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, width, self._style)
        return Strip.blank(width, self._style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style = self.rich_style


class HeaderBar(LinesPanel):
    DEFAULT_CSS = """
    HeaderBar { height: 1; border: none; background: $panel; }
    """


class Blotter(ScrollView, can_focus=True):
    """A scrollable table with scrollback, newest first; only the rows on screen are formatted (finished
    rows once, cached by their number). Scrolled down, the view stays on the same rows as new ones arrive."""

    DEFAULT_CSS = """
    Blotter { height: 1fr; border: round $primary-darken-2; border-title-color: $text-accent; overflow-x: hidden; }
    Blotter:focus { border: round $accent; }
    """
    BINDINGS = [Binding("g", "scroll_home", "Newest", show=False), Binding("G", "scroll_end", "Oldest", show=False)]

    def __init__(self, kind: str, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.kind = kind  # orders | fills | events
        self.border_title = title
        self.snap: EngineSnapshot | None = None
        self.items: list[Any] = []
        self.live = 0  # orders: live rows at the top (re-formatted on every snapshot: their age moves)
        self.top_seq = 0
        self.dropped: tuple[str, ...] = ()
        self._cols: list[panels.Col] = []
        self._cache: dict[int, Strip] = {}
        self._cache_width = -1
        self._style: Any = None
        self._key: tuple[Any, ...] = ()

    def _series(self, snap: EngineSnapshot) -> tuple[list[Any], int, int]:
        """(items newest first, live rows, the newest item's number)."""
        o = panels.op(snap)
        if self.kind == "events":
            seq = o.log_seq if o is not None else len(snap.log)
            return list(reversed(snap.log)), 0, seq
        if o is None:
            return [], 0, 0
        if self.kind == "fills":
            return list(reversed(o.fills)), 0, o.fills[-1].seq if o.fills else 0
        done = list(reversed(o.orders_done))
        return list(o.orders) + done, len(o.orders), done[0].seq if done else 0

    def show(self, snap: EngineSnapshot) -> None:
        self.snap = snap
        if not self.display:
            return
        items, live, top = self._series(snap)
        key = (len(items), live, top, snap.ts_ns if live else 0)
        if key == self._key:
            return
        if key[:3] == self._key[:3] and live and int(self.scroll_y) == 0:  # only the live rows' ages moved
            self._key = key
            self.items = items
            self.refresh(Region(0, 1, self.size.width, live))
            return
        shift = (top - self.top_seq) + (live - self.live) if self.scroll_y > 0 and top > self.top_seq and self.top_seq else 0
        self._key = key
        self.items, self.live, self.top_seq = items, live, top
        if self.virtual_size.height != self.capacity + 1:
            # fixed at the scrollback's capacity: a virtual size that followed the rows would re-lay out the
            # whole screen on every new row (Textual's virtual_size is a layout reactive; measured ~70 ms each)
            self.virtual_size = Size(0, self.capacity + 1)
        if shift:
            self.scroll_to(y=self.scroll_y + shift, animate=False)
        self.refresh()

    @property
    def capacity(self) -> int:
        return {"events": 500, "fills": BLOTTER_FILLS}.get(self.kind, BLOTTER_ORDERS + 100)

    def validate_scroll_y(self, value: float) -> float:
        """Never past the last row there is (the virtual size is the capacity, not the rows)."""
        most = max(0, len(self.items) + 1 - self.scrollable_content_region.height)
        return max(0.0, min(float(value), float(most)))

    def validate_scroll_target_y(self, value: float) -> float:
        return self.validate_scroll_y(value)

    def on_show(self) -> None:
        if self.snap is not None:  # it was hidden (another tab, a narrow terminal) while snapshots came
            self._key = ()
            self.show(self.snap)

    def _columns(self, width: int) -> list[panels.Col]:
        if self.kind == "events":
            return []
        cols, self.dropped = panels.fit(panels.ORDER_COLS if self.kind == "orders" else panels.FILL_COLS, width)
        return cols

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if width != self._cache_width:
            self._cache.clear()
            self._cache_width = width
            self._cols = self._columns(width)
            self._style = self.rich_style
        style = self._style
        console = self.app.console
        if y == 0:  # the heading stays put
            if self.kind == "events":
                text = Text(f"{'time':<8} {'kind':<7} newest first · {len(self.items)} kept", "bold dim")
            else:
                u = panels.units(self.snap) if self.snap is not None else None
                text = panels.head(self._cols)
                note = f"  sizes in {u.base}, prices in {u.quote}" if u is not None and u.base else ""
                if note and len(text.plain.rstrip()) + len(note) <= width:
                    text = Text(text.plain.rstrip(), "bold dim")
                    text.append(note, "dim")
            return Strip(list(text.render(console, end=""))).crop_extend(0, width, style)
        i = int(self.scroll_y) + y - 1
        if i >= len(self.items) or self.snap is None:
            if not self.items and y == 1:
                t = Text(f"no {self.kind} yet", "dim")
                return Strip(list(t.render(console, end=""))).crop_extend(0, width, style)
            return Strip.blank(width, style)
        item = self.items[i]
        seq = -1 if i < self.live else (self.top_seq - (i - self.live))
        strip = self._cache.get(seq) if seq >= 0 else None
        if strip is None:
            if self.kind == "events":
                text = panels.event_item(item, width)
            elif self.kind == "fills":
                text = panels.fill_item(self.snap, item, self._cols)
            else:
                text = panels.order_item(self.snap, item, self._cols)
            strip = Strip(list(text.render(console, end="")))
            if seq >= 0 and not (self.kind == "fills" and item.markout_bps is None):
                self._cache[seq] = strip
                if len(self._cache) > 2000:
                    self._cache.clear()
        return strip.crop_extend(0, width, style)
