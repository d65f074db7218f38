"""Paper trading on Citrex: the public feed of the double, our orders filled by the replay's queue model, and no
signed request (no order, no cancel, no authenticated read) ever leaving FlashMM."""

from __future__ import annotations

import asyncio
import time

from flashmm.config import CitrexConfig, Config, RiskConfig
from flashmm.core.domain import CancelOrder, Fill, OrderAck, OrderType, PlaceOrder, Side
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.citrex.devnode import CitrexDevNode
from flashmm.venues.citrex.venue import CitrexPaperVenue, fetch_product


def _quote(cid: int, side: Side, price_ticks: int, lots: int) -> PlaceOrder:
    return PlaceOrder(cid, side, price_ticks, lots, OrderType.LIMIT, post_only=True)


def test_paper_orders_fill_against_the_public_feed_and_nothing_signed_leaves():
    configure_logging("error")

    async def main():
        async with CitrexDevNode([0], makers=1, takers=2, taker_rate_per_s=4.0, maker_interval_s=0.3) as node:
            await asyncio.sleep(0.4)
            cfg = Config(citrex=CitrexConfig(endpoints=[node.url], poll_interval_s=0.1, paper_latency_ms=20),
                         risk=RiskConfig(feed_stale_s=0.6))
            venue = CitrexPaperVenue(cfg, await fetch_product(cfg.citrex))
            await venue.start()
            events: list = []

            async def pump(until, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while not until() and time.monotonic() < deadline:
                    try:
                        events.extend(await asyncio.wait_for(venue.next_batch(), 0.5) or [])
                    except TimeoutError:
                        pass

            await pump(lambda: venue.mirror.two_sided(), 3)
            bid, ask = venue.mirror.best_bid()[0], venue.mirror.best_ask()[0]
            venue.submit([_quote(1, Side.BUY, bid + 1, 50), _quote(2, Side.SELL, ask - 1, 50)])
            fills = lambda: [e for e in events if isinstance(e, Fill)]  # noqa: E731
            await pump(lambda: {f.client_id for f in fills()} == {1, 2}, 15)
            venue.submit([CancelOrder(c) for c in (1, 2) if not any(f.client_id == c and f.done for f in fills())])
            await pump(lambda: False, 0.3)
            state = await venue.account_state()
            status = venue.status()
            await venue.stop()
            return events, state, status, dict(node.stats)

    events, state, status, stats = asyncio.run(main())
    acks = [e.client_id for e in events if isinstance(e, OrderAck)]
    fills = [e for e in events if isinstance(e, Fill)]
    assert sorted(acks) == [1, 2]
    assert {f.client_id for f in fills} == {1, 2}, "the takers' trades should have filled both quotes"
    assert all(f.is_maker for f in fills) and all(f.fee_quote <= 0 for f in fills)  # the product's maker rebate
    assert state.position_lots == sum(int(f.side) * f.lots for f in fills)
    assert state.open_orders == {}  # filled, or cancelled by the queue model on our cancel
    assert status["mode"] == "paper" and status["paper_fills"] == len(fills)
    # nothing signed left FlashMM: only public reads reached the venue
    assert stats["signed_requests"] == 0
    assert set(stats["by_path"]) <= {"GET /v1/products", "GET /v1/depth", "GET /v1/trade-history"}, stats["by_path"]
