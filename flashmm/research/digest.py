"""A replay's results, digested to the last bit: every order action the engine sent (with the venue time it
left), every fill (price, size, fee, maker flag, the mid it was valued at), the PnL and its split, the
fill-quality and spread figures, the counters and the per-second histories.

Two runs of the same engine on the same data with the same configuration must give the same digest: a
change that is meant to be only faster (the book, the replay's queue model, the histograms) must not move
it. tests/test_replay_pins.py compares against tests/pins/replay_results.json; a deliberate change of
behaviour (a new strategy) regenerates that file with `python scripts/pin_replay_results.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from flashmm.config import Config
from flashmm.core.domain import CancelOrder, OrderAction
from flashmm.core.engine import Engine
from flashmm.data.events import EventSet
from flashmm.model.predictor import NoModelPredictor
from flashmm.telemetry.logging import AuditLog
from flashmm.venues.replay import ReplayVenue


@dataclass(frozen=True)
class PinCase:
    """One pinned replay: a data set (a folder under the data directory) and what differs from the default
    configuration. Always model-free: the shipped model's floats come from torch kernels that may differ
    between CPUs, while everything here is integer ticks and IEEE double arithmetic done by FlashMM itself."""

    name: str
    folder: str
    strategy: str = "glft"  # [strategy].model: glft (the default configuration) | symmetric (the baseline)
    quote_interval_ms: float | None = None
    use_book_ticker: bool = True

    def config(self) -> Config:
        cfg = Config()
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": "none"})})
        # the tick-to-quote latency breaker measures this machine's wall time: a 250 ms stall (a GC pause, a busy
        # machine) in one 10 s window of a sparse recording tripped it and changed the orders. An unpaced replay
        # now skips it (Venue.paced); the pins also switch it off, so pins made from code without that fix
        # (main, before it merges) are reproducible too
        cfg = cfg.model_copy(update={"risk": cfg.risk.model_copy(update={"latency_widen_ms": 1e12})})
        strat: dict[str, Any] = {"model": self.strategy}
        if self.quote_interval_ms is not None:
            strat["quote_interval_ms"] = self.quote_interval_ms
        return cfg.model_copy(update={
            "strategy": cfg.strategy.model_copy(update=strat),
            "replay": cfg.replay.model_copy(update={"use_book_ticker": self.use_book_ticker}),
        })


SPOT = "binance-spot-btcusdt-20240808"
PIN_CASES: tuple[PinCase, ...] = (
    PinCase("binance-spot", SPOT),
    PinCase("binance-spot-symmetric", SPOT, strategy="symmetric"),
    PinCase("binance-spot-requote-100ms", SPOT, quote_interval_ms=100.0),
    PinCase("binance-spot-depth-only", SPOT, use_book_ticker=False),
    PinCase("binance-usdm", "binance-usdm-btcusdt-20240808"),
    PinCase("binance-cm", "binance-cm-btcusd-perp-20240808"),
    PinCase("bitstamp", "bitstamp-btcusd-20150501"),
    PinCase("bitstamp-symmetric", "bitstamp-btcusd-20150501", strategy="symmetric"),
    PinCase("lobster", "lobster-aapl-20120621-head"),
)


class _RecordingReplay(ReplayVenue):
    """The replay venue, with every action the engine submits kept with the venue time it was sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[int, OrderAction]] = []

    def submit(self, actions: Any) -> None:
        now = self.clock.now_ns()
        self.sent.extend((now, a) for a in actions)
        super().submit(actions)


def _action_row(ts: int, a: OrderAction) -> str:
    if isinstance(a, CancelOrder):
        return f"{ts} C {a.client_id}"
    return f"{ts} P {a.client_id} {int(a.side)} {a.price_ticks} {a.lots} {int(a.order_type)} {int(a.post_only)}"


def _h(rows: list[str]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def replay_digest(cfg: Config, data: EventSet) -> dict[str, Any]:
    """Run the engine over `data` as `flashmm backtest` does (model-free) and digest what it did."""
    venue = _RecordingReplay(data, cfg.replay)
    engine = Engine(cfg, venue, predictor=NoModelPredictor("pinned replay: model-free"), audit=AuditLog(None),
                    history_len=None)

    async def go() -> None:
        await engine.run(None)
        await engine.shutdown(timeout_s=5.0)

    asyncio.run(go())
    p = engine.portfolio
    mid = engine.book.mid_ticks() if engine.book.two_sided() else 0.0
    pnl = p.pnl_quote(mid)
    orders = [_action_row(ts, a) for ts, a in venue.sent]
    fills = [f"{f.ts_ns} {f.client_id} {f.side} {f.price_ticks!r} {f.lots} {f.fee_quote!r} {int(f.is_maker)} "
             f"{f.mid_ticks!r}" for f in p.fills]
    counters = engine.all_counters()
    fq = engine.fill_quality
    sp = engine.spreads
    metrics = [f"pnl {pnl.total!r} {pnl.spread_capture!r} {pnl.inventory!r} {pnl.fees!r}",
               f"position {p.position_lots} volume {p.volume_lots} cash {p.cash_flow!r} fees {p.fees_paid!r}",
               f"spreads {sp.market_sum!r} {sp.ours_sum!r} {sp.market_ticks_sum!r} {sp.touch_ns!r} {sp.time_ns}",
               f"effective {fq.effective_n} {fq.effective_sum!r}",
               *(f"horizon {i} {fq.n[i]} {fq.sums[i]!r} {fq.sq[i]!r}" for i in range(len(fq.n))),
               f"max_abs_inventory_pct {engine.max_abs_inventory_pct!r}",
               *(f"breaker {b.name} {b.trips} {b.state}" for b in engine.risk.views()),
               *(f"{k} {v}" for k, v in sorted(counters.items()))]
    history = [f"{ts} {a!r} {b!r} {m!r}" for ts, a, b, m in zip(engine.sample_ts, engine.pnl_history,
                                                                 engine.inventory_history, engine.mid_history,
                                                                 strict=True)]
    return {
        "rows": venue.rows_done,
        "orders_sent": len(orders),
        "fills": len(fills),
        "pnl_quote": repr(pnl.total),
        "position_lots": p.position_lots,
        "breaker_trips": {b.name: b.trips for b in engine.risk.views() if b.trips},
        "digest": {"orders": _h(orders), "fills": _h(fills), "metrics": _h(metrics), "history": _h(history)},
    }


def feature_digest(data: EventSet) -> dict[str, Any]:
    """The feature vector after every market update of a recording (the engine's book and features, fed its
    events in order), digested to the last bit. The fills of a replay depend on these floats only through the
    quotes they move; this checks the floats themselves: the compiled build (whose features are C doubles) must
    give the interpreter's every time, not only where a last-digit difference happens to change a quote."""
    from flashmm.config import ReplayConfig
    from flashmm.core.book import L2Book
    from flashmm.core.domain import BookDiff, BookSnapshot, BookTop, Trade
    from flashmm.core.features import FeatureEngine

    venue = ReplayVenue(data, ReplayConfig())
    book, features = L2Book(), FeatureEngine()
    h = hashlib.sha256()
    apply = {BookTop: book.apply_top, BookDiff: book.apply_diff, BookSnapshot: book.apply_snapshot}
    updates = 0

    async def go() -> None:
        nonlocal updates
        await venue.start()
        while (batch := await venue.next_batch()) is not None:
            for ev in batch:
                if type(ev) is Trade:
                    features.on_trade(ev)
                    h.update(features.values.tobytes())
                elif type(ev) in apply and apply[type(ev)](ev):
                    features.on_book(book, ev.ts_ns)
                    h.update(features.values.tobytes())
                    updates += 1

    asyncio.run(go())
    return {"book_updates": updates, "features": h.hexdigest()}
