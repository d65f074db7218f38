"""`flashmm record`: a venue's market data (book snapshots, diffs, trades) to FlashMM's own format."""

from __future__ import annotations

from pathlib import Path

from flashmm.core.domain import BookDiff, BookSnapshot, Trade
from flashmm.data.events import KIND_DIFF, KIND_SNAP, KIND_TRADE, EventSet, EventWriter
from flashmm.data.readers import write_flashmm
from flashmm.venues.base import Venue


async def record(venue: Venue, duration_s: float, out: Path) -> EventSet:
    """Record `duration_s` of venue time. Our own order events are not market data and are not kept."""
    w = EventWriter()
    await venue.start()
    start = venue.clock.now_ns()
    end = start + int(duration_s * 1e9)
    counts = {"snapshots": 0, "diffs": 0, "trades": 0}
    try:
        while venue.clock.now_ns() < end:
            batch = await venue.next_batch()
            if batch is None:
                break
            trades: list[Trade] = []
            for ev in batch:
                if isinstance(ev, BookSnapshot):
                    w.message(ev.ts_ns, KIND_SNAP, [(1, p, q) for p, q in ev.bids] + [(-1, p, q) for p, q in ev.asks],
                              ev.seq, ev.seq)
                    counts["snapshots"] += 1
                elif isinstance(ev, BookDiff):
                    w.message(ev.ts_ns, KIND_DIFF, [(1, p, q) for p, q in ev.bids] + [(-1, p, q) for p, q in ev.asks],
                              ev.first_seq, ev.last_seq)
                    counts["diffs"] += 1
                elif isinstance(ev, Trade):
                    trades.append(ev)
            for t in trades:  # one message per trade; block-level trade prices may fall between ticks
                side = int(t.aggressor) if t.aggressor is not None else 0
                w.message(t.ts_ns, KIND_TRADE, [(side, round(t.price_ticks), t.lots)], 0)
                counts["trades"] += 1
    finally:
        await venue.stop()
    es = EventSet(w.array(), venue.instrument, "flashmm", [f"recorded from {venue.name}"],
                  meta={"venue": venue.name, "duration_s": duration_s, **counts,
                        "note": "trade prices rounded to the nearest tick (x/dex clears at VWAP / midpoints)"})
    write_flashmm(es, out)
    return es
