"""Pure formatters: an `EngineSnapshot` (and the panel's size) in, rich `Text` lines out.

They hold no state and touch no widget, so they are cheap to test and the widgets stay thin. Tables fit
their width by dropping whole columns (lowest priority first), never by cutting numbers; the columns a
formatter dropped are listed on the `Lines` it returns (a test checks none are dropped at 160x45).
Units come from the instrument: prices and PnL in its quote currency, sizes in base units, distances in
ticks, or in bps where a tick is a tiny fraction of the price.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.text import Text

from flashmm.control.view import FillRow, OperatorView, OrderRow, Sample, Units
from flashmm.core.engine import EngineSnapshot, LogLine

MODE_STYLE = {
    "RUNNING": "bold black on green",
    "WIDENED": "bold black on cyan",
    "PAUSED": "bold black on yellow",
    "FLATTENING": "bold white on magenta",
    "KILLED": "bold white on red",
    "FAULTED": "bold white on red",
    "STOPPED": "bold white on grey37",
    "STARTING": "bold white on grey37",
    "STOPPING": "bold white on grey37",
    "QUITTING": "bold white on grey37",
    "DISCONNECTED": "bold white on red",
}
STATE_STYLE = {"ok": "green", "tripped": "bold red", "cooling_down": "yellow"}
LOG_STYLE = {"fill": "cyan", "control": "bold yellow", "breaker": "magenta", "venue": "blue", "engine": "white"}
BUY, SELL = "green", "red"


class Lines(list):
    """Formatted lines, and the columns dropped to fit the width."""

    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Col:
    key: str
    width: int
    align: str = ">"  # > right, < left
    keep: int = 5  # higher is kept longer when the width is short
    label: str = ""  # the heading, when it differs from the key
    grow: bool = False  # takes the width left over (a text column)

    @property
    def name(self) -> str:
        return self.label or self.key


def fit(cols: Sequence[Col], width: int) -> tuple[list[Col], tuple[str, ...]]:
    """The columns that fit in `width` (one space between), dropping the least important first."""
    shown = list(cols)
    dropped: list[str] = []
    while shown and sum(c.width for c in shown) + len(shown) - 1 > width:
        victim = min(shown, key=lambda c: c.keep)
        shown.remove(victim)
        dropped.append(victim.key)
    spare = width - (sum(c.width for c in shown) + len(shown) - 1)
    if spare > 0:
        shown = [Col(c.key, c.width + spare, c.align, c.keep, c.label) if c.grow else c for c in shown]
    return shown, tuple(dropped)


def _cell(value: str, c: Col) -> str:
    if len(value) <= c.width:
        return f"{value:{c.align}{c.width}}"
    return value[: c.width - 1] + "…"  # text only: number columns are sized for their figures


def row(cols: Sequence[Col], values: dict[str, str]) -> str:
    return " ".join(_cell(values.get(c.key, ""), c) for c in cols)


def head(cols: Sequence[Col]) -> Text:
    return Text(" ".join(_cell(c.name, c) for c in cols), "bold dim")


# ---- units ---------------------------------------------------------------------------------------------
def op(snap: EngineSnapshot) -> OperatorView | None:
    return snap.extra.get("operator")


def units(snap: EngineSnapshot) -> Units:
    o = op(snap)
    if o is not None:
        return o.units
    return Units("", "", snap.price_tick, "1", 1e4 / snap.mid_ticks if snap.mid_ticks else 0.0)


def _decimals(text: str) -> int:
    return max(0, -Decimal(text).normalize().as_tuple().exponent) if text else 0


def px(snap: EngineSnapshot, ticks: float) -> str:
    """A price in ticks as a decimal string; half ticks (midpoints) get one more digit."""
    d = _decimals(snap.price_tick)
    if ticks != int(ticks):
        d += 1
    return f"{ticks * float(snap.price_tick):,.{d}f}"


def qty(u: Units, lots: float, sign: bool = False) -> str:
    """A size in base units (lots x lot size)."""
    d = _decimals(u.lot_size)
    return f"{lots * float(u.lot_size):{'+' if sign else ''},.{d}f}"


def dist(u: Units, ticks: float) -> str:
    """A distance from the mid: ticks, or bps where ticks are tiny."""
    if u.tiny_ticks:
        return f"{ticks * u.bps_per_tick:.2f}bp"
    return f"{ticks:.1f}t"


def money(v: float, width: int = 0, sign: bool = True) -> str:
    text = f"{v:+,.4f}" if sign else f"{v:,.4f}"
    return f"{text:>{width}}" if width else text


def clock(ts_ns: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts_ns / 1e9))


def duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def age(ns: int) -> str:
    s = ns / 1e9
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _nan(v: float) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ---- header ---------------------------------------------------------------------------------------------
def mode_label(snap: EngineSnapshot, quitting: bool = False) -> str:
    o = op(snap)
    if snap.mode == "FAULTED":
        return "FAULTED"
    if o is not None and o.stopping:
        return "STOPPED" if o.stop_report else "STOPPING"
    if quitting:
        return "QUITTING"
    if snap.mode == "WIDENED":
        return f"WIDENED ×{snap.widen:.2f}"
    return snap.mode


def header(snap: EngineSnapshot, width: int, quitting: bool = False, link: tuple[bool, str] = (True, "")) -> list[Text]:
    """One line. The least important parts go first when the terminal is narrow; the mode, an attached
    console's link to its daemon and a fault always stay (cut at the end if they must be)."""
    mode = mode_label(snap, quitting)
    attached_ok, attached = link
    parts: list[tuple[str, str, int]] = [  # (text, style, keep: 10 = never dropped)
        (" FlashMM ", "bold white on dark_blue", 10),
        (f" {snap.venue} {snap.symbol} ", "bold", 10),
        (f" {mode} ", MODE_STYLE.get(mode.split()[0], "bold"), 10),
    ]
    if attached:
        parts.append((f" {attached} ", "bold black on bright_cyan" if attached_ok else "bold white on red", 10))
    if snap.widen > 1.0 and snap.mode != "WIDENED":
        parts.append((f" ×{snap.widen:.2f} ", "cyan", 6))
    o = op(snap)
    changed = sum(1 for r in o.params if r.modified and r.key != "spread_multiplier") if o is not None else 0
    if changed:  # parameters changed while trading: `s` shows which (marked *)
        parts.append((f" {changed} param{'s' if changed > 1 else ''} changed ", "bold black on yellow", 8))
    connected, venue_link = snap.venue_link
    if venue_link:
        parts.append((f" {venue_link} ", "green" if connected else "bold white on red", 7 if connected else 10))
    if snap.fault:
        parts.append((f" {snap.fault} ", "bold red", 10))
    parts.append((f" {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(snap.ts_ns / 1e9))} UTC ", "", 3))
    parts.append((f" up {duration(snap.uptime_s)} ", "", 4))
    parts.append((f" model: {snap.predictor} ", "green" if snap.prediction is not None
                  else "default" if snap.predictor.startswith("none") else "yellow", 5))
    if o is not None and o.clients:
        parts.append((f" {o.clients} attached ", "dim", 2))
    while sum(len(t) + 1 for t, _, _ in parts) > width and any(k < 10 for _, _, k in parts):
        parts.remove(min((p for p in parts if p[2] < 10), key=lambda p: p[2]))
    t = Text()
    for i, (text, style, _) in enumerate(parts):
        if i:
            t.append("│", "dim")
        t.append(text, style)
    t.truncate(width)
    return [t]


# ---- book and quotes ----------------------------------------------------------------------------------
def ladder(snap: EngineSnapshot, width: int, height: int) -> Lines:
    u = units(snap)
    rows = max(1, (height - 2) // 2)
    pw = max(len(px(snap, p)) for p, _, _ in (snap.asks[:rows] + snap.bids[:rows])) if snap.asks or snap.bids else 8
    qw = max(6, width - pw - 10)
    out = Lines()
    out.append(Text(f"{'price':>{pw}} {'size ' + u.base:>{qw}} {'ours':>7}"[:width], "bold dim"))
    for p, q, ours in reversed(snap.asks[:rows]):
        t = Text(f"{px(snap, p):>{pw}} {qty(u, q):>{qw}}", SELL)
        if ours:
            t.append(f" ◀{qty(u, ours):>6}", "bold yellow")
        out.append(t)
    if snap.book_stale:
        out.append(Text(f" BOOK STALE: {snap.stale_reason}"[:width], "bold white on red"))
    elif snap.bids and snap.asks:
        spread = snap.asks[0][0] - snap.bids[0][0]
        bps = 1e4 * spread / snap.mid_ticks if snap.mid_ticks else 0.0
        ticks = f"{spread}t " if not u.tiny_ticks else ""
        text = f" mid {px(snap, snap.mid_ticks)}  spread {ticks}{bps:.2f}bps"
        if len(text) > width:
            text = f" mid {px(snap, snap.mid_ticks)} {ticks}{bps:.1f}bp"
        out.append(Text(text, "bold"))
    else:
        out.append(Text(" no two-sided book", "yellow"))
    for p, q, ours in snap.bids[:rows]:
        t = Text(f"{px(snap, p):>{pw}} {qty(u, q):>{qw}}", BUY)
        if ours:
            t.append(f" ◀{qty(u, ours):>6}", "bold yellow")
        out.append(t)
    return out


_ORDER_STATE = {"pending": "pending", "open": "open", "partially_filled": "partial", "filled": "filled",
                "cancelled": "cancelled", "rejected": "rejected"}
_STATE_ABBR = {"pending": "pend", "open": "open", "partially_filled": "part", "filled": "fill",
               "cancelled": "canc", "rejected": "rej"}


def quotes(snap: EngineSnapshot, width: int, height: int) -> Lines:
    u = units(snap)
    o = op(snap)
    cols = [Col("side", 4, "<", 10), Col("lvl", 3, ">", 6), Col("price", 9, ">", 10),
            Col("size", 9, ">", 9, f"size {u.base}"), Col("dist", 7, ">", 7), Col("bps", 5, ">", 4),
            Col("age", 5, ">", 5), Col("queue≈", 8, ">", 2), Col("st", 5, "<", 3)]
    shown, dropped = fit(cols, width)
    out = Lines([head(shown)])
    out.dropped = dropped
    mid = snap.mid_ticks
    orders = [x for x in snap.orders if x.level >= 0] + [x for x in snap.orders if x.level < 0]
    body = max(1, height - 1 - (1 if o is not None else 0))
    if len(orders) > body:
        body -= 1  # room for the "more" line
    for x in orders[:body]:
        side = "BUY" if int(x.side) > 0 else "SELL"
        d = abs(x.price_ticks - mid) if mid else 0.0
        vals = {"side": side, "lvl": str(x.level) if x.level >= 0 else "mkt", "price": px(snap, x.price_ticks),
                "size": qty(u, x.lots - x.filled_lots), "dist": dist(u, d), "bps": f"{1e4 * d / mid if mid else 0.0:.1f}",
                "age": age(x.age_ns), "queue≈": qty(u, x.queue_ahead) if x.queue_ahead >= 0 else "?",
                "st": _STATE_ABBR.get(x.state, x.state)[:4] + ("✕" if x.cancel_requested else "")}
        out.append(Text(row(shown, vals), BUY if side == "BUY" else SELL))
    if len(orders) > body:
        out.append(Text(f"+{len(orders) - body} more in the orders blotter (1)", "dim"))
    if len(out) == 1:
        out.append(Text(f"no resting orders ({mode_label(snap).lower()})", "dim"))
    # our spread beside the market's, now and over the run; then what the quoter is working with
    if o is not None:
        out.append(spread_line(o, width))
    room = height - len(out)
    if room > 0 and snap.strategy:
        out += strategy_lines(snap, width)[:room]
    return out


def strategy_lines(snap: EngineSnapshot, width: int) -> list[Text]:
    """The quoter's state (Engine.strategy_state): fair value's alpha, half-spread and where it comes from,
    the adverse-selection term, regime, the fitted intensity; NO EDGE when no measured distance earns."""
    st = snap.strategy
    parts: list[Text] = []
    alpha = st.get("alpha")
    if alpha and alpha != "none":
        live = st.get("alpha_live") or {}
        hit = live.get("hit_rate")
        parts.append(Text(f"alpha {_q(st.get('alpha_bps'), '+.2f')} bps ({alpha}"
                          + (f", hit {hit:.0%} vs imbalance {live.get('hit_rate_imbalance_sign', 0):.0%}" if hit else "")
                          + ")"))
    parts.append(Text(f"half-spread {_q(st.get('half_spread_bps'), '.2f')} bps ({st.get('half_spread_source', '?')})"))
    if not st.get("has_edge", True):
        parts.append(Text("NO EDGE: reducing only", "bold white on red"))
    parts.append(Text(f"adverse {_q(st.get('adverse_selection_estimate_bps'), '.2f')} bps"))
    parts.append(Text(f"regime {st.get('regime', '?')} σ {_q(st.get('sigma_bps'), '.2f')}"))
    parts.append(Text(f"A {_q(st.get('intensity_a_per_s'), '.2f')}/s k {_q(st.get('intensity_k_per_bps'), '.2f')}/bp", "dim"))
    return _pack_parts(parts, width)


def _pack_parts(parts: list[Text], width: int, sep: str = " · ") -> list[Text]:
    """Parts joined on as few lines as fit; a part never split (one wider than the line is left out)."""
    lines: list[Text] = []
    cur = Text()
    for p in parts:
        if len(p) > width:
            continue
        if len(cur) and len(cur) + len(sep) + len(p) > width:
            lines.append(cur)
            cur = Text()
        if len(cur):
            cur.append(sep, "dim")
        cur.append_text(p)
    if len(cur):
        lines.append(cur)
    return lines


def spread_line(o: OperatorView, width: int) -> Text:
    t = Text()
    if _nan(o.our_spread_bps) or _nan(o.market_spread_bps):
        t.append("spread: not quoting both sides", "dim")
    else:
        imp = 100.0 * (o.market_spread_bps - o.our_spread_bps) / o.market_spread_bps if o.market_spread_bps > 0 else 0.0
        t.append("spread ours ", "bold")
        t.append(f"{o.our_spread_bps:.2f}", "bold")
        t.append(f" vs market {o.market_spread_bps:.2f} bps ")
        t.append(f"({imp:+.0f} %)", "green" if imp >= 40 else ("red" if imp < 0 else "yellow"))
    if o.market_spread_avg_bps > 0 and len(t) + 28 <= width:
        t.append(f"  run avg {o.our_spread_avg_bps:.2f}/{o.market_spread_avg_bps:.2f}", "dim")
    return t


# ---- position ---------------------------------------------------------------------------------------------
def gauge(value: float, limit: float, width: int) -> Text:
    """A centred bar from -limit to +limit with the value marked."""
    inner = max(9, width - 2)
    half = inner // 2
    frac = max(-1.0, min(1.0, value / limit)) if limit else 0.0
    pos = half + round(frac * half)
    t = Text("[", "dim")
    for i in range(inner):
        if (half <= i <= pos) or (pos <= i <= half):
            t.append("█", "bold red" if abs(frac) >= 0.9 else ("yellow" if abs(frac) >= 0.5 else "green"))
        elif i == half:
            t.append("│", "dim")
        else:
            t.append("·", "dim")
    t.append("]", "dim")
    return t


def inventory(snap: EngineSnapshot, width: int, height: int) -> Lines:
    u = units(snap)
    o = op(snap)
    lim = snap.max_position_usdc
    out = Lines([gauge(snap.position_usdc, lim, width)])
    q = u.quote or "quote"
    out.append(Text(f"-{lim:,.0f}".ljust(max(1, width // 2)) + f"+{lim:,.0f} {q}".rjust(max(1, width - width // 2)), "dim"))
    pos = Text(f"position {qty(u, snap.position_lots, True)} {u.base} ", "bold")
    pos.append(f"{snap.position_usdc:+,.2f} {q}  ")
    pct = abs(snap.position_usdc) / lim * 100 if lim else 0.0
    pos.append(f"{snap.inventory_pct:+.3f}% of capital, {pct:.0f}% of limit",
               "bold red" if pct >= 90 else ("yellow" if pct >= 50 else ""))
    out.append(pos)
    if snap.reservation_ticks:
        off = snap.reservation_ticks - snap.mid_ticks
        out.append(Text(f"reservation {dist(u, off)} vs mid, skew {dist(u, snap.inventory_skew_ticks)}, "
                        f"half-spread {dist(u, snap.half_spread_ticks)}"))
    else:
        out.append(Text("not quoting", "dim"))
    if o is not None:
        out.append(flatten_text(snap, o))
    return out


def flatten_text(snap: EngineSnapshot, o: OperatorView) -> Text:
    f = o.flatten
    u = o.units
    if f.side == 0:
        return Text(f"flatten: {f.note}", "dim")
    side = "SELL" if f.side < 0 else "BUY"
    t = Text("flatten → ", "bold")
    t.append(f"{side} {qty(u, f.lots)} {u.base}", BUY if f.side > 0 else SELL)
    if f.worst_price_ticks:
        t.append(f" worst {px(snap, f.worst_price_ticks)}, est. cost {f.est_cost_quote:,.4f} {u.quote}")
    if f.note:
        t.append(f" ({f.note})", "yellow")
    return t


# ---- PnL, charts ------------------------------------------------------------------------------------------
SPARK = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int) -> str:
    """The last `width` values (NaN as blanks) scaled to eight levels."""
    vals = list(values)[-width:]
    finite = [v for v in vals if not _nan(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    return "".join(" " if _nan(v) else SPARK[0 if span <= 0 else min(7, int((v - lo) / span * 7.999))] for v in vals)


def time_axis(samples: Sequence[Sample], width: int, indent: int) -> Text:
    """Start and end times of the charted samples (venue time), with the span between."""
    if not samples:
        return Text("")
    shown = list(samples)[-width:]
    a, b = clock(shown[0].ts_ns), clock(shown[-1].ts_ns)
    span = duration((shown[-1].ts_ns - shown[0].ts_ns) / 1e9)
    inner = max(1, min(width, len(shown)) - len(a) - len(b))
    mid = f" {span} " if inner >= len(span) + 4 else ""
    fill = max(1, inner - len(mid))
    return Text(" " * indent + a + "─" * (fill // 2) + mid + "─" * (fill - fill // 2) + b, "dim")


def pnl(snap: EngineSnapshot, width: int, height: int) -> Lines:
    o = op(snap)
    q = o.units.quote if o is not None else ""
    p = snap.pnl
    out = Lines()

    def line(label: str, v: float, extra: str = "") -> Text:
        t = Text(f"{label:<11}")
        t.append(f"{v:>+12,.4f} {q}", "green" if v >= 0 else "red")
        if extra and len(label) + 14 + len(q) + len(extra) <= width:
            t.append(extra, "dim")
        return t

    out.append(line("total", p.total))
    if o is not None:
        out.append(line("realised", o.realised, "  closed trades, net of fees"))
        out.append(line("unrealised", o.unrealised, "  open position vs its entry"))
    split = f"= capture {p.spread_capture:+,.2f} · inventory {p.inventory:+,.2f} · fees {p.fees:+,.2f}"
    out.append(Text(split if len(split) <= width else f"= capture {p.spread_capture:+,.2f} · inv {p.inventory:+,.2f}",
                    "dim"))
    c = snap.counters
    out.append(Text(f"fills {c.get('fills', 0):,} · placed {c.get('orders_placed', 0):,} · "
                    f"cancelled {c.get('orders_cancelled', 0):,}"[:width], "dim"))
    if o is not None and height - len(out) >= 3 and o.history:
        w = max(8, width - 12)
        hist = o.history
        r = [s.realised for s in hist]
        un = [s.unrealised for s in hist]
        out.append(Text(f"{'realised':<11} ", "dim") + Text(spark(r, w), "green" if r[-1] >= r[max(0, len(r) - w)] else "red"))
        out.append(Text(f"{'unrealised':<11} ", "dim") + Text(spark(un, w), "cyan"))
        out.append(time_axis(hist, w, 12))
    return out


def charts(snap: EngineSnapshot, width: int, height: int) -> Lines:
    """Our spread beside the market's over time, and the order rate against its limit."""
    o = op(snap)
    out = Lines()
    if o is None or not o.history:
        out.append(Text("no history yet (one sample a venue second)", "dim"))
        return out
    w = max(8, width - 24)
    hist = o.history
    ours = [s.ours_bps for s in hist]
    market = [s.market_bps for s in hist]
    finite = [v for v in ours + market if not _nan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)

    def scaled(vals: list[float]) -> str:  # both rows on one scale, so they compare
        shown = vals[-w:]
        span = hi - lo
        return "".join(" " if _nan(v) else SPARK[0 if span <= 0 else min(7, int((v - lo) / span * 7.999))] for v in shown)

    last_o = next((v for v in reversed(ours) if not _nan(v)), math.nan)
    last_m = next((v for v in reversed(market) if not _nan(v)), math.nan)
    out.append(Text(f"{'ours':<7}{'—' if _nan(last_o) else f'{last_o:.2f}':>7} bps ", "bold") + Text(scaled(ours), "cyan"))
    out.append(Text(f"{'market':<7}{'—' if _nan(last_m) else f'{last_m:.2f}':>7} bps ", "dim") + Text(scaled(market), "white"))
    rate = [s.placed_per_s for s in hist]
    lim = o.rate.limit_per_s
    r_now = rate[-1] if rate else 0.0
    out.append(Text(f"{'orders':<7}{r_now:>7.1f} /s  ", "red" if r_now > 0.8 * lim else "")
               + Text(spark(rate + [0.0, lim], w + 2)[:-2] if rate else "", "yellow"))
    out.append(time_axis(hist, w, 19))
    out += quality_lines(snap, width)[: max(0, height - len(out))]
    return out


def _q(v: Any, fmt: str) -> str:
    return "—" if v is None or _nan(v) else format(v, fmt)


def quality_lines(snap: EngineSnapshot, width: int) -> list[Text]:
    """The engine's fill-quality metrics (Engine.fill_metrics): improvement against the market's spread,
    effective and realised spread, adverse selection, markouts, time at the touch, taker share. Each figure
    is one part; parts are packed into lines and never split (a part that fits nowhere is left out)."""
    q = snap.quality or {}
    imp = q.get("spread_improvement_pct")
    parts: list[Text] = []
    if imp is None:
        note = q.get("spread_improvement_note") or "not quoting both sides"
        parts.append(Text(f"improvement n/a: {note}"[: max(20, width)], "dim"))
    else:
        parts.append(Text("improvement ") + Text(f"{imp:+.1f} %", "green" if imp >= 40 else ("red" if imp < 0 else "yellow")))
    rs = q.get("realised_spread_bps") or {}
    marks = " ".join(f"{k} {_q(v, '+.2f')}" for k, v in (q.get("markout_bps") or {}).items())
    parts += [Text(f"realised 5s {_q(rs.get('5s'), '.2f')} bps"),  # most important first: what fits stays
              Text(f"adverse {_q(q.get('adverse_selection_bps'), '.2f')} bps"),
              Text(f"markouts {marks}"),
              Text(f"effective {_q(q.get('effective_spread_bps'), '.2f')} bps"),
              Text(f"at touch {_q(q.get('time_at_touch_pct'), '.0f')} %"),
              Text(f"taker {_q(q.get('taker_share_pct'), '.1f')} %"), Text(f"orders/fill {_q(q.get('orders_per_fill'), '.1f')}"),
              Text(f"post-only rejects {q.get('post_only_rejects', 0)}", "dim")]
    return _pack_parts(parts, width)


# ---- risk -------------------------------------------------------------------------------------------------
def _fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.1f}s"
    if unit == "ms":
        return f"{v:,.1f}ms"
    if unit in ("USDC", "USDT", "USD"):
        return f"{v:,.2f}"
    if unit == "bps":
        return f"{v:,.1f}bp"
    return f"{v:,.0f}"


_BREAKER_STATE = {"ok": "ok", "tripped": "TRIPPED", "cooling_down": "cooling"}


def breakers(snap: EngineSnapshot, width: int, height: int) -> Lines:
    """Each breaker: state, trips, its measure now against its threshold, since, reason."""
    o = op(snap)
    cols = [Col("breaker", 14, "<", 10), Col("state", 8, "<", 9), Col("trips", 5, ">", 4), Col("now", 9, ">", 8),
            Col("limit", 9, ">", 7), Col("reason", 10, "<", 1, "since · reason", grow=True)]
    shown, dropped = fit(cols, width)
    out = Lines([head(shown)])
    out.dropped = dropped
    limits: dict[str, list[Any]] = {}
    if o is not None:
        for lim in o.limits:
            limits.setdefault(lim.breaker, []).append(lim)
    for b in snap.breakers:
        lims = limits.get(b.name) or [None]
        for i, lim in enumerate(lims):
            since = f"{clock(b.since_ns)} " if i == 0 and b.since_ns and b.state != "ok" else ""
            vals = {"breaker": b.name if i == 0 else "", "state": _BREAKER_STATE.get(b.state, b.state) if i == 0 else "",
                    "trips": str(b.trips) if i == 0 else "",
                    "now": _fmt_value(lim.value, lim.unit) if lim else "",
                    "limit": _fmt_value(lim.threshold + (0.5 if lim.breaker == "venue_errors" else 0.0), lim.unit) if lim else "",
                    "reason": since + ((b.reason if i == 0 else "") or (lim.measure if lim else ""))}
            t = Text()
            for j, c in enumerate(shown):
                cell = _cell(vals[c.key], c)
                style = ""
                if c.key == "state":
                    style = STATE_STYLE.get(b.state, "")
                elif c.key == "now" and lim is not None and lim.over:
                    style = "bold red"
                t.append(("" if j == 0 else " ") + cell, style)
            out.append(t)
    if o is not None:
        r = o.rate
        t = Text("order rate ")
        t.append(f"{r.placed_per_s:.1f}/s", "bold red" if r.placed_per_s > 0.8 * r.limit_per_s else "bold")
        t.append(f" of {r.limit_per_s:g}/s (burst {r.burst}, tokens {r.tokens:g}, refused {r.rate_limited:,})")
        out.append(Text(t.plain[:width]) if len(t) > width else t)
    return out


def latency(snap: EngineSnapshot, width: int, height: int) -> Lines:
    o = op(snap)
    target = o.t2q_target_us if o is not None else 1000.0
    out = Lines()  # the panel's title names the columns (p50 / p99, µs)
    t2q = snap.latency_us.get("tick_to_quote", {})
    t = Text(f"{'tick→quote':<12}{t2q.get('p50', 0):>9,.1f}", "bold")
    p99 = t2q.get("p99", 0)
    t.append(f"{p99:>9,.1f}", "bold red" if p99 > target else "bold green")
    if width >= 42:
        t.append(f"  target ≤{target:,.0f}", "dim")
    out.append(t)
    stages = [(k, v) for k, v in snap.latency_us.items() if k != "tick_to_quote"]
    for stage, s in stages[: max(0, height - len(out))]:
        out.append(Text(f"{stage:<12}{s.get('p50', 0):>9,.1f}{s.get('p99', 0):>9,.1f}"))
    bins = [(lab, n) for lab, n in snap.t2q_hist if n or not lab.startswith((">=", "1.6", "0.8"))]
    total = sum(n for _, n in snap.t2q_hist) or 1
    bar_w = max(4, width - 12)
    for label, n in bins[: max(0, height - len(out))]:
        tt = Text(f"{label:>10} ", "dim")
        tt.append("█" * max(1 if n else 0, round(bar_w * n / total)), "red" if label.startswith((">=", "1.6")) else "cyan")
        out.append(tt)
    return out


def model(snap: EngineSnapshot, width: int, height: int) -> Lines:
    pred = snap.prediction
    out = Lines()
    if pred is None and snap.predictor.startswith("none"):  # the configuration prices without a model
        out += [Text(snap.predictor[:width], "bold"), Text("no model loaded: not asked for", "dim")]
    elif pred is None:
        out += [Text("FALLBACK (no model)", "bold black on yellow"), Text("model-free pricing: no prediction skew", "dim")]
    else:
        out.append(Text(snap.predictor[:width], "bold green"))
        bar_w = max(4, width - 13)
        for label, v in (("down", pred.p_down), ("flat", pred.p_flat), ("up", pred.p_up)):
            t = Text(f"{label:<5}{v:>6.1%} ")
            t.append("█" * round(bar_w * v), "red" if label == "down" else "green" if label == "up" else "white")
            out.append(t)
        out.append(Text(f"confidence {pred.confidence:.2f}"))
    out.append(Text(f"live hit rate {snap.hit_rate:.1%}" if snap.hit_rate is not None else "live hit rate n/a", "dim"))
    return out


# ---- the one-line strip for narrow terminals ---------------------------------------------------------------
def strip(snap: EngineSnapshot, width: int, height: int) -> Lines:
    """What the hidden panels would say, in a few lines (terminals under 140 columns or 30 rows)."""
    o = op(snap)
    u = units(snap)
    q = u.quote
    parts1 = [Text(f"pos {qty(u, snap.position_lots, True)} {u.base} ({snap.inventory_pct:+.2f}%)"),
              Text(f"PnL {snap.pnl.total:+,.2f} {q}", "green" if snap.pnl.total >= 0 else "red")]
    if o is not None:
        parts1.append(Text(f"realised {o.realised:+,.2f} · unrealised {o.unrealised:+,.2f}", "dim"))
    parts2: list[Text] = []
    if o is not None:
        if not _nan(o.our_spread_bps) and not _nan(o.market_spread_bps):
            parts2.append(Text(f"spread {o.our_spread_bps:.2f} vs {o.market_spread_bps:.2f}bp"))
        r = o.rate
        parts2.append(Text(f"orders {r.placed_per_s:.1f}/{r.limit_per_s:g}/s",
                           "bold red" if r.placed_per_s > 0.8 * r.limit_per_s else ""))
    p99 = snap.latency_us.get("tick_to_quote", {}).get("p99", 0.0)
    parts2.append(Text("t2q p99 ") + Text(f"{p99:,.0f}µs", "bold red" if p99 > (o.t2q_target_us if o else 1000.0)
                                         else "green"))
    bad = [b for b in snap.breakers if b.state != "ok"]
    breakers_line = Text("breakers: ", "dim")
    if bad:
        for i, b in enumerate(bad):
            breakers_line.append(("" if not i else ", ") + f"{b.name} {_BREAKER_STATE.get(b.state, b.state)}",
                                 STATE_STYLE.get(b.state, ""))
    else:
        breakers_line.append("all ok", "green")
    out = Lines(_pack(parts1, width) + _pack(parts2, width) + [breakers_line])
    if o is not None and len(out) < height:
        out.append(flatten_text(snap, o))
    return Lines(out[: max(1, height)])


def _pack(parts: list[Text], width: int) -> list[Text]:
    """Parts joined by ' │ ' on as few lines as fit; a part never split."""
    lines: list[Text] = []
    cur = Text()
    for p in parts:
        if len(cur) and len(cur) + 3 + len(p) > width:
            lines.append(cur)
            cur = Text()
        if len(cur):
            cur.append(" │ ", "dim")
        cur.append_text(p)
    if len(cur):
        lines.append(cur)
    return lines


# ---- blotters (scrollable; newest first) -------------------------------------------------------------------
ORDER_COLS = [Col("client id", 7, ">", 9, "client"), Col("venue id", 9, ">", 3, "venue id"), Col("side", 4, "<", 10),
              Col("type", 6, "<", 2), Col("lvl", 3, ">", 4), Col("price", 10, ">", 10), Col("size", 9, ">", 9),
              Col("filled", 9, ">", 6), Col("age", 8, ">", 5, "age/at"), Col("state", 10, "<", 8),
              Col("note", 6, "<", 1, grow=True)]
FILL_COLS = [Col("time", 8, "<", 9), Col("side", 4, "<", 10), Col("price", 10, ">", 10), Col("size", 9, ">", 9),
             Col("fee", 9, ">", 6), Col("m/t", 5, "<", 5), Col("vs mid", 8, ">", 3), Col("markout 5s", 10, ">", 4),
             Col("client id", 7, ">", 2, "client")]


def order_item(snap: EngineSnapshot, r: OrderRow, shown: Sequence[Col]) -> Text:
    u = units(snap)
    side = "BUY" if r.side > 0 else "SELL"
    state = r.state + (" ✕" if r.cancel_requested else "")
    vals = {"client id": str(r.client_id), "venue id": r.venue_id or "—", "side": side, "type": r.order_type,
            "lvl": str(r.level) if r.level >= 0 else "—", "price": px(snap, r.price_ticks), "size": qty(u, r.lots),
            "filled": qty(u, r.filled_lots), "age": age(snap.ts_ns - r.created_ns) if not r.seq else clock(r.created_ns),
            "state": state, "note": r.reason}
    vals["state"] = _ORDER_STATE.get(r.state, r.state) + ("✕" if r.cancel_requested and not r.seq else "")
    live = r.seq == 0
    style = (BUY if side == "BUY" else SELL) if live else "dim"
    return Text(row(shown, vals), style)


def fill_item(snap: EngineSnapshot, f: FillRow, shown: Sequence[Col]) -> Text:
    u = units(snap)
    side = "BUY" if f.side > 0 else "SELL"
    edge = f.side * (f.mid_ticks - f.price_ticks)  # our edge against the mid at the fill, in ticks
    vals = {"time": clock(f.ts_ns), "side": side, "price": px(snap, f.price_ticks), "size": qty(u, f.lots),
            "fee": f"{f.fee_quote:,.4f}", "m/t": "maker" if f.is_maker else "taker",
            "vs mid": dist(u, edge) if not u.tiny_ticks else f"{edge * u.bps_per_tick:+.2f}",
            "markout 5s": "…" if f.markout_bps is None else ("—" if _nan(f.markout_bps) else f"{f.markout_bps:+.2f}bp"),
            "client id": str(f.client_id)}
    t = Text(row(shown, vals), BUY if side == "BUY" else SELL)
    return t


def event_item(x: LogLine, width: int) -> Text:
    return Text(f"{clock(x.ts_ns)} {x.kind:<7} ", "dim") + Text(x.text, LOG_STYLE.get(x.kind, ""))
