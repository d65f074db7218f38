"""Pure formatters: an `EngineSnapshot` (and the panel's size) in, rich `Text` lines out.

They hold no state and touch no widget, so they are cheap to test and the widgets stay thin.
"""

from __future__ import annotations

import time
from decimal import Decimal

from rich.text import Text

from flashmm.core.engine import EngineSnapshot

MODE_STYLE = {
    "RUNNING": "bold black on green",
    "WIDENED": "bold black on cyan",
    "PAUSED": "bold black on yellow",
    "FLATTENING": "bold white on magenta",
    "KILLED": "bold white on red",
    "FAULTED": "bold white on red",
    "STOPPED": "bold white on grey37",
    "STARTING": "bold white on grey37",
    "QUITTING": "bold white on grey37",
}
STATE_STYLE = {"ok": "green", "tripped": "bold red", "cooling_down": "yellow"}
LOG_STYLE = {"fill": "cyan", "control": "bold yellow", "breaker": "magenta", "venue": "blue", "engine": "white"}


def _decimals(snap: EngineSnapshot) -> int:
    return max(0, -Decimal(snap.price_tick).as_tuple().exponent)


def px(snap: EngineSnapshot, ticks: float) -> str:
    """A price in ticks as a decimal string; half ticks (midpoints) get one more digit."""
    d = _decimals(snap)
    if ticks != int(ticks):
        d += 1
    return f"{ticks * float(snap.price_tick):.{d}f}"


def clock(ts_ns: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts_ns / 1e9))


def duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def mode_label(snap: EngineSnapshot, quitting: bool = False) -> str:
    if quitting:
        return "QUITTING"
    if snap.mode == "WIDENED":
        return f"WIDENED ×{snap.widen:.2f}"
    return snap.mode


def header(snap: EngineSnapshot, width: int, quitting: bool = False) -> list[Text]:
    mode = mode_label(snap, quitting)
    t = Text()
    t.append(" FlashMM ", "bold white on dark_blue")
    t.append(f" {snap.venue} │ {snap.symbol} │ ")
    t.append(f" {mode} ", MODE_STYLE.get(mode.split()[0], "bold"))
    if snap.widen > 1.0 and snap.mode != "WIDENED":
        t.append(f" ×{snap.widen:.2f}", "cyan")
    t.append(f" │ venue {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(snap.ts_ns / 1e9))} UTC")
    t.append(f" │ up {duration(snap.uptime_s)}")
    t.append(f" │ model: {snap.predictor}", "yellow" if snap.prediction is None else "green")
    connected, link = snap.venue_link
    if link:
        t.append(f" │ {link}", "green" if connected else "bold white on red")
    if snap.fault:
        t.append(f" │ {snap.fault}", "bold red")
    return [t]


def ladder(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    rows = max(1, (height - 2) // 2)
    asks = list(snap.asks[:rows])
    bids = list(snap.bids[:rows])
    out: list[Text] = []
    col = Text(f"{'price':>10} {'size':>9}  {'ours':>7}", "bold dim")
    out.append(col)
    for p, q, ours in reversed(asks):
        t = Text(f"{px(snap, p):>10} {q:>9,}", "red")
        if ours:
            t.append(f"  ◀{ours:>6,}", "bold yellow")
        out.append(t)
    if snap.book_stale:
        out.append(Text(f" BOOK STALE: {snap.stale_reason}", "bold white on red"))
    elif snap.bids and snap.asks:
        spread = snap.asks[0][0] - snap.bids[0][0]
        bps = 1e4 * spread / snap.mid_ticks if snap.mid_ticks else 0.0
        out.append(Text(f" mid {px(snap, snap.mid_ticks)}  spread {spread}t {bps:.1f}bps", "bold"))
    else:
        out.append(Text(" no two-sided book", "yellow"))
    for p, q, ours in bids:
        t = Text(f"{px(snap, p):>10} {q:>9,}", "green")
        if ours:
            t.append(f"  ◀{ours:>6,}", "bold yellow")
        out.append(t)
    return out


_STATE_ABBR = {"pending": "pend", "open": "open", "partially_filled": "part"}


def quotes(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    wide = width >= 60  # narrow panels drop the bps and queue columns
    head = f"{'side':<4}{'lvl':>4} {'price':>8} {'size':>6} {'tick':>5} "
    head += f"{'bps':>5} {'age':>5} {'queue≈':>7} st" if wide else f"{'age':>5} st"
    out = [Text(head, "bold dim")]
    mid = snap.mid_ticks
    orders = [o for o in snap.orders if o.level >= 0] + [o for o in snap.orders if o.level < 0]
    for o in orders:
        side = "BUY" if int(o.side) > 0 else "SELL"
        dist = abs(o.price_ticks - mid) if mid else 0.0
        bps = 1e4 * dist / mid if mid else 0.0
        queue = f"{o.queue_ahead:,}" if o.queue_ahead >= 0 else "?"
        state = _STATE_ABBR.get(o.state, o.state) + ("✕" if o.cancel_requested else "")
        lvl = str(o.level) if o.level >= 0 else "mkt"
        row = f"{side:<4}{lvl:>4} {px(snap, o.price_ticks):>8} {o.lots - o.filled_lots:>6,} {dist:>5.1f} "
        row += f"{bps:>5.1f} {o.age_ns / 1e9:>4.1f}s {queue:>7} {state}" if wide else f"{o.age_ns / 1e9:>4.1f}s {state}"
        out.append(Text(row, "green" if side == "BUY" else "red"))
    if len(out) == 1:
        out.append(Text(f"no resting orders ({snap.mode.lower()})", "dim"))
    return out


def gauge(value: float, limit: float, width: int) -> Text:
    """A centred bar from -limit to +limit with the value marked."""
    inner = max(9, width - 2)
    half = inner // 2
    frac = max(-1.0, min(1.0, value / limit)) if limit else 0.0
    pos = half + round(frac * half)
    cells = []
    for i in range(inner):
        if (half <= i <= pos) or (pos <= i <= half):
            style = "bold red" if abs(frac) >= 0.9 else ("yellow" if abs(frac) >= 0.5 else "green")
            cells.append(("█", style))
        elif i == half:
            cells.append(("│", "dim"))
        else:
            cells.append(("·", "dim"))
    t = Text("[", "dim")
    for ch, st in cells:
        t.append(ch, st)
    t.append("]", "dim")
    return t


def inventory(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    lim = snap.max_position_usdc
    out = [gauge(snap.position_usdc, lim, width)]
    out.append(Text(f"-{lim:,.0f}".ljust(max(1, width // 2)) + f"+{lim:,.0f} USDC".rjust(max(1, width - width // 2)), "dim"))
    pos = f"position {snap.position_lots:+,} lots {snap.position_usdc:+,.2f} USDC"
    inv = f"inventory {snap.inventory_pct:+.3f}% (max {snap.max_abs_inventory_pct:.3f}%)"
    if snap.reservation_ticks:
        off = snap.reservation_ticks - snap.mid_ticks
        res = f"reservation {off:+.2f}t vs mid, skew {snap.inventory_skew_ticks:+.2f}t, half-spread {snap.half_spread_ticks:.2f}t"
    else:
        res = "not quoting"
    if len(pos) + len(inv) + 2 <= width:
        out.append(Text(f"{pos}  {inv}"))
    else:
        out += [Text(pos), Text(inv)]
    out.append(Text(res, "" if snap.reservation_ticks else "dim"))
    return out


def pnl(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    p = snap.pnl

    def money(label: str, v: float) -> Text:
        return Text(f"{label:<15}{v:>+12.4f} USDC", "green" if v >= 0 else "red")

    out = [money("total", p.total), money("spread capture", p.spread_capture), money("inventory", p.inventory),
           money("fees", p.fees)]
    c = snap.counters
    out.append(Text(f"fills {c.get('fills', 0):,}  placed {c.get('orders_placed', 0):,}  "
                    f"cancelled {c.get('orders_cancelled', 0):,}", "dim"))
    return out


def latency(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    out = [Text(f"{'stage':<14}{'p50 µs':>9}{'p99 µs':>9}", "bold dim")]
    t2q = snap.latency_us.get("tick_to_quote", {})
    out.append(Text(f"{'tick→quote':<14}{t2q.get('p50', 0):>9.1f}{t2q.get('p99', 0):>9.1f}", "bold"))
    for stage, s in snap.latency_us.items():
        if stage != "tick_to_quote":
            out.append(Text(f"{stage:<14}{s.get('p50', 0):>9.1f}{s.get('p99', 0):>9.1f}"))
    total = sum(n for _, n in snap.t2q_hist) or 1
    bar_w = max(4, width - 12)
    for label, n in snap.t2q_hist:
        if n == 0 and label.startswith((">=", "1.6", "0.8")):
            continue
        t = Text(f"{label:>10} ", "dim")
        t.append("█" * max(1 if n else 0, round(bar_w * n / total)), "cyan")
        out.append(t)
    return out


def model(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    pred = snap.prediction
    if pred is None:
        out = [Text("FALLBACK (no model)", "bold black on yellow"), Text("model-free pricing: no prediction skew", "dim")]
    else:
        out = [Text(snap.predictor, "bold green")]
        bar_w = max(4, width - 16)
        for label, v in (("down", pred.p_down), ("flat", pred.p_flat), ("up", pred.p_up)):
            t = Text(f"{label:<5}{v:>6.1%} ")
            t.append("█" * round(bar_w * v), "red" if label == "down" else "green" if label == "up" else "white")
            out.append(t)
        out.append(Text(f"confidence {pred.confidence:.2f}"))
    out.append(Text(f"live hit rate {snap.hit_rate:.1%}" if snap.hit_rate is not None else "live hit rate n/a", "dim"))
    return out


def breakers(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    out = [Text(f"{'breaker':<15}{'state':<13}{'trips':>5}  {'since':<8}  reason", "bold dim")]
    for b in snap.breakers:
        t = Text(f"{b.name:<15}")
        t.append(f"{b.state:<13}", STATE_STYLE.get(b.state, ""))
        since = clock(b.since_ns) if b.since_ns and b.state != "ok" else "—"
        t.append(f"{b.trips:>5}  {since:<8}  {b.reason}")
        out.append(t)
    return out


def event_log(snap: EngineSnapshot, width: int, height: int) -> list[Text]:
    lines = snap.log[-height:] if height > 0 else ()
    return [Text(f"{clock(x.ts_ns)} {x.kind:<7} ", "dim") + Text(x.text, LOG_STYLE.get(x.kind, "")) for x in lines]
