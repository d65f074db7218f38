"""`flashmm record`: a venue's market data (book snapshots, diffs, trades) to FlashMM's own format.

Two kinds of recording:
- `record(venue, ...)`: the market as it is, nobody of ours in it (`flashmm record`).
- `record_trading(cfg, ...)` (`flashmm record --trade`): FlashMM's engine trades on the simulated venue while
  the market events it receives are recorded, so the book carries our own resting orders and the tape our
  fills, as the live engine sees them. A model trained on such recordings has seen its inputs with our quotes
  in the book (the market-only recordings never show them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flashmm.core.domain import BookDiff, BookSnapshot, Event, Trade
from flashmm.data.events import KIND_DIFF, KIND_SNAP, KIND_TRADE, EventSet, EventWriter
from flashmm.data.readers import write_flashmm
from flashmm.venues.base import Venue

_NOTE = "trade prices rounded to the nearest tick (x/dex clears at VWAP / midpoints)"


def _write_market(w: EventWriter, batch: Sequence[Event], counts: dict[str, int]) -> None:
    """The batch's market events (our own order events are not market data and are not kept)."""
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


async def record(venue: Venue, duration_s: float, out: Path | None) -> EventSet:
    """Record `duration_s` of venue time (written to `out` when given)."""
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
            _write_market(w, batch, counts)
    finally:
        await venue.stop()
    es = EventSet(w.array(), venue.instrument, "flashmm", [f"recorded from {venue.name}"],
                  meta={"venue": venue.name, "duration_s": duration_s, **counts, "note": _NOTE})
    if out is not None:
        write_flashmm(es, out)
    return es


class TradingRecorder:
    """FlashMM's engine (configuration `cfg`) on the simulated venue of `cfg.sim`, unpaced, with every batch's
    market events written as the engine receives them: book snapshots and diffs with our resting orders in them,
    and every trade, ours included. Run `engine` (e.g. `engine.run(seconds)`), then take `event_set()`."""

    def __init__(self, cfg: Any, seed: int) -> None:
        from flashmm.core.engine import Engine
        from flashmm.model.predictor import predictor_for
        from flashmm.telemetry.logging import AuditLog
        from flashmm.venues.sim import SimVenue

        self.cfg, self.seed = cfg, seed
        self.writer = w = EventWriter()
        self.counts = counts = {"snapshots": 0, "diffs": 0, "trades": 0}

        class TappedSimVenue(SimVenue):
            async def next_batch(self) -> list[Event] | None:
                batch = await super().next_batch()
                if batch is not None:
                    _write_market(w, batch, counts)
                return batch

        self.venue = TappedSimVenue(cfg.sim, cfg.instrument.instrument(), seed, speed=float("inf"))
        self.engine = Engine(cfg, self.venue, predictor=predictor_for(cfg), audit=AuditLog(None), seed=seed,
                             history_len=600)

    def event_set(self) -> EventSet:
        s = self.engine.summary()
        return EventSet(self.writer.array(), self.venue.instrument, "flashmm",
                        [f"recorded from {self.venue.name} with FlashMM trading"],
                        meta={"venue": self.venue.name, "duration_s": s.get("uptime_s"), "seed": self.seed,
                              "preset": self.cfg.sim.preset,
                              **self.counts, "note": _NOTE, "engine_trading": True, "alpha": self.cfg.strategy.alpha,
                              "engine": {k: s.get(k) for k in ("fills", "orders_placed", "pnl_usdc",
                                                               "max_abs_inventory_pct")}})


def record_trading(cfg: Any, duration_s: float, seed: int, out: Path | None = None) -> EventSet:
    """`TradingRecorder` for `duration_s` of venue time, then every order cancelled (the engine's shutdown, its
    events recorded too). Returns the recording (written to `out` when given); its meta carries the engine's
    figures (fills, orders placed, PnL)."""
    from flashmm.telemetry.logging import configure_logging

    configure_logging("warning" if cfg.logging.file else "error", cfg.logging.file)  # not a line per fill
    rec = TradingRecorder(cfg, seed)

    async def go() -> None:
        try:
            await rec.engine.run(duration_s)
        finally:
            await rec.engine.shutdown()

    asyncio.run(go())
    es = rec.event_set()
    es.meta["duration_s"] = duration_s
    if out is not None:
        write_flashmm(es, out)
    return es
