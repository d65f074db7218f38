"""The Citrex connector against the Citrex double, in process on 127.0.0.1: acks and fills, post-only rejected
when it would cross, 429 backoff, endpoint failover, a lost answer looked up by nonce, a stale feed reported,
fills of orders it did not place, reconciliation reads that match what the engine has processed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from flashmm.config import CitrexConfig, Config, RiskConfig
from flashmm.core.domain import (
    REJECT_POST_ONLY,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    Fill,
    OrderAck,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    VenueStatus,
)
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.base import VenueStartError
from flashmm.venues.citrex.devnode import CitrexDevNode
from flashmm.venues.citrex.signing import CitrexSigner, Domain
from flashmm.venues.citrex.venue import CitrexVenue, classify_rejection, fetch_product

KEY = "5" * 64
LOT = 10**18


def _cfg(urls: list[str], **citrex) -> Config:
    cc = {"endpoints": urls, "poll_interval_s": 0.1, "request_timeout_s": 0.5, "fill_grace_s": 0.5,
          "rate_limit_backoff_s": 0.2, "endpoint_failures_to_open": 2, "endpoint_cooldown_s": 2.0, **citrex}
    return Config(citrex=CitrexConfig(**cc), risk=RiskConfig(feed_stale_s=0.6))


class Harness:
    """The venue and everything it has delivered, as the engine would take it."""

    def __init__(self, venue: CitrexVenue) -> None:
        self.venue = venue
        self.events: list = []

    async def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; last events: {self.events[-8:]}"
            try:
                batch = await asyncio.wait_for(self.venue.next_batch(), left)
            except TimeoutError:
                continue
            if batch:
                self.events.extend(batch)

    def of(self, kind: type, cid: int | None = None) -> list:
        return [e for e in self.events if isinstance(e, kind) and (cid is None or getattr(e, "client_id", None) == cid)]


async def _venue(node: CitrexDevNode, **citrex) -> Harness:
    cfg = _cfg(node.urls, **citrex)
    venue = CitrexVenue(cfg, CitrexSigner(KEY, Domain()), await fetch_product(cfg.citrex))
    await venue.start()
    return Harness(venue)


def _run(coro_fn, **node_kwargs):
    configure_logging("error")

    async def main():
        async with CitrexDevNode(**{"makers": 1, "takers": 0, "maker_interval_s": 0.2, **node_kwargs}) as node:
            await asyncio.sleep(0.3)  # the maker's ladder
            return await asyncio.wait_for(coro_fn(node), 30)

    return asyncio.run(main())


def _quote(cid: int, side: Side, price_ticks: int, lots: int) -> PlaceOrder:
    """A quote as the order manager sends it: a post-only limit order."""
    return PlaceOrder(cid, side, price_ticks, lots, OrderType.LIMIT, post_only=True)


def _best(node: CitrexDevNode) -> tuple[int, int]:
    bid, ask = node.exchange.best_prices(node.product.id)
    return bid // node.product.increment, ask // node.product.increment


def test_a_quote_is_acked_and_a_taker_fills_it_at_our_price():
    async def scenario(node):
        h = await _venue(node)
        node.participants.set_active(False, None)  # the ladder stays put
        bid, ask = _best(node)
        h.venue.submit([_quote(1, Side.BUY, bid + 1, 30)])  # inside the spread: first in line
        await h.until(lambda: h.of(OrderAck, 1))
        (resting,) = node.exchange.open_by_account[(h.venue.signer.address.lower(), 1)].values()
        order_id = resting.id
        assert abs(resting.expiry_ms - time.time() * 1000 - 600_000) < 5_000  # the dead man's switch
        assert resting.order_type == 1  # post-only: LIMIT_MAKER
        status, order = node.participants.take_now("sell", 20)
        assert status == 200
        await h.until(lambda: h.of(Fill, 1))
        (fill,) = h.of(Fill, 1)
        assert (fill.side, fill.lots, fill.price_ticks, fill.is_maker, fill.done) == (Side.BUY, 20, bid + 1, True, False)
        assert fill.fee_quote < 0  # the double's maker rebate
        state = await h.venue.account_state()
        assert state.position_lots == 20 == node.exchange.position(h.venue.signer.address, 1, node.product.id) // LOT
        assert state.open_orders[1].remaining_lots == 10
        h.venue.submit([CancelOrder(1)])
        await h.until(lambda: h.of(CancelAck, 1))
        st = h.venue.status()
        assert st["cancels_sent"] == 1 and st["order_ack_ms"]["count"] == 1 and st["order_ack_ms"]["p50"] > 0
        # once the engine has the cancel, the order is forgotten but for its id (late trades still map)
        assert h.venue._by_nonce == {} and h.venue._closing == {} and list(h.venue._retired) == [order_id]
        await h.venue.stop()

    _run(scenario)


def test_a_post_only_quote_that_would_cross_is_rejected_and_counted():
    async def scenario(node):
        h = await _venue(node)
        node.participants.set_active(False, None)
        _, ask = _best(node)
        h.venue.submit([_quote(7, Side.BUY, ask, 5)])  # post-only at the best ask: LIMIT_MAKER, refused
        await h.until(lambda: h.of(OrderReject, 7))
        (rej,) = h.of(OrderReject, 7)
        assert rej.reason.startswith("post_only_would_cross:") and rej.code == REJECT_POST_ONLY  # not a venue error
        assert h.venue.status()["reject_post_only_would_cross"] == 1
        assert node.exchange.position(h.venue.signer.address, 1, node.product.id) == 0
        await h.venue.stop()

    _run(scenario)
    assert classify_rejection("Post-only order would cross") == "post_only_would_cross"
    assert classify_rejection("something else") == "rejected"


def test_429_pauses_every_request_for_its_retry_after():
    async def scenario(node):
        h = await _venue(node)
        lst = node.listeners[0]
        from flashmm.venues.citrex.devnode import _Rule

        lst.faults.rules.append(_Rule("status", 1, "order", 429, 0.4))
        bid, _ = _best(node)
        t0 = time.monotonic()
        h.venue.submit([_quote(1, Side.BUY, bid - 3, 5)])
        await h.until(lambda: h.of(OrderReject, 1))
        assert h.of(OrderReject, 1)[0].reason.startswith("rate_limited")
        polls_before = node.stats["by_path"].get("GET /v1/depth", 0)
        h.venue.submit([_quote(2, Side.BUY, bid - 3, 5)])  # waits out the pause, then goes
        await h.until(lambda: h.of(OrderAck, 2))
        waited = time.monotonic() - t0
        st = h.venue.status()
        assert waited >= 0.4 and st["rate_limited"] == 1 and st["http_429"] == 1
        # polls paused too: at most the ones already in flight went out during the 0.4 s
        assert node.stats["by_path"].get("GET /v1/depth", 0) - polls_before <= 5
        await h.venue.stop()
        return waited

    waited = _run(scenario)
    assert waited < 2.0


def test_endpoint_failover_and_the_dead_endpoints_breaker():
    async def scenario(node):
        h = await _venue(node)
        node.close_listener(0)  # the first endpoint goes away mid-run
        bid, _ = _best(node)
        await asyncio.sleep(0.5)
        h.venue.submit([_quote(1, Side.BUY, bid - 2, 5)])
        await h.until(lambda: h.of(OrderAck, 1))
        st = h.venue.status()
        assert st["endpoints"][0]["state"] == "open" and st["endpoints"][1]["state"] == "closed"
        assert st["endpoints"][1]["calls"] > 0 and st["connected"]
        assert not h.of(VenueStatus)  # the feed never went stale: the second endpoint took over at once
        await h.venue.stop()

    _run(scenario, ports=[0, 0])


def test_a_lost_answer_is_looked_up_by_nonce_not_sent_twice():
    async def scenario(node):
        h = await _venue(node)
        from flashmm.venues.citrex.devnode import _Rule

        node.listeners[0].faults.rules.append(_Rule("delay", 1, "order", delay_s=0.8))  # > request_timeout_s
        bid, _ = _best(node)
        h.venue.submit([_quote(1, Side.BUY, bid - 2, 5)])
        await h.until(lambda: h.of(OrderAck, 1) or h.of(OrderReject, 1))
        assert h.of(OrderAck, 1) and h.venue.status()["lookups"] == 1
        assert node.stats["by_path"]["POST /v1/order"] == 1  # once
        await h.venue.stop()

    _run(scenario)


def test_a_silent_feed_is_reported_at_once_and_resnapshotted_after():
    async def scenario(node):
        h = await _venue(node)
        from flashmm.venues.citrex.devnode import _Rule

        node.listeners[0].faults.rules.append(_Rule("status", 6, "depth", 503))
        t0 = time.monotonic()
        await h.until(lambda: h.of(VenueStatus))
        stale_after = time.monotonic() - t0
        assert not h.of(VenueStatus)[0].connected
        n = len(h.of(BookSnapshot))
        await h.until(lambda: len(h.of(BookSnapshot)) > n, timeout=10)  # recovered: a fresh snapshot
        await h.venue.stop()
        return stale_after

    stale_after = _run(scenario)
    assert stale_after < 1.5  # feed_stale_s 0.6 plus a watchdog tick and a poll timeout at most


def test_fills_of_an_order_it_did_not_place_are_never_dropped():
    async def scenario(node):
        h = await _venue(node)
        node.participants.set_active(False, None)
        bid, _ = _best(node)
        other = CitrexSigner(KEY, Domain())  # the same key, another client: an order this process never sent
        body = other.order(node.product.id, True, 1, 0, (bid + 1) * node.product.increment, 8 * LOT,
                           other.nonces.next() + 10**9, int(time.time() * 1000) + 60_000)
        status, doc = node.exchange.place(body)
        assert status == 200
        node.participants.take_now("sell", 8)
        await h.until(lambda: any(isinstance(e, Fill) and e.client_id < 0 for e in h.events), timeout=5)
        fill = next(e for e in h.events if isinstance(e, Fill))
        assert fill.lots == 8 and fill.side is Side.BUY
        assert h.venue.status()["unknown_order_fills"] == 1
        state = await h.venue.account_state()
        assert state.position_lots == 8
        await h.venue.stop()

    _run(scenario)


def test_orders_left_by_a_previous_run_are_reported_for_cancelling():
    async def scenario(node):
        other = CitrexSigner(KEY, Domain())
        bid, _ = _best(node)
        node.exchange.place(other.order(node.product.id, True, 1, 0, (bid - 4) * node.product.increment, LOT,
                                        other.nonces.next(), int(time.time() * 1000) + 60_000))
        h = await _venue(node)
        state = await h.venue.account_state()
        (cid,) = state.open_orders
        assert cid < 0  # unknown here: the engine's reconciliation cancels it
        h.venue.submit([CancelOrder(cid)])
        await asyncio.sleep(0.5)
        assert (await h.venue.account_state()).open_orders == {}
        await h.venue.stop()

    _run(scenario)


def test_start_refuses_a_wrong_domain_and_an_unknown_product():
    async def scenario(node):
        cfg = _cfg(node.urls)
        product = await fetch_product(cfg.citrex)
        wrong = CitrexVenue(cfg, CitrexSigner(KEY, Domain(1328)), product)  # signs for testnet
        with pytest.raises(VenueStartError, match="refused our signed authentication"):
            await wrong.start()
        await wrong.stop()
        with pytest.raises(VenueStartError, match="dogeperp.*not listed"):
            await fetch_product(_cfg(node.urls, product="dogeperp").citrex)
        with pytest.raises(VenueStartError, match="poll_interval_s"):
            CitrexVenue(_cfg(node.urls, poll_interval_s=0.7), CitrexSigner(KEY, Domain()), product)
        with pytest.raises(VenueStartError, match="order_expiration_s"):  # quotes would expire before refresh
            CitrexVenue(_cfg(node.urls, order_expiration_s=50), CitrexSigner(KEY, Domain()), product)

    _run(scenario)


def test_market_orders_go_out_ioc_and_their_rest_is_cancelled_after_the_fills():
    async def scenario(node):
        h = await _venue(node)
        node.participants.set_active(False, None)
        _, ask = _best(node)
        h.venue.submit([PlaceOrder(1, Side.BUY, ask + 50, 100_000, OrderType.MARKET)])  # more than the ladder
        await h.until(lambda: h.of(CancelAck, 1))
        fills = h.of(Fill, 1)
        assert fills and all(not f.is_maker for f in fills)
        cancel_at = h.events.index(h.of(CancelAck, 1)[0])
        assert all(h.events.index(f) < cancel_at for f in fills)  # fills first, then the rest cancelled
        bought = sum(f.lots for f in fills)
        assert bought == node.exchange.position(h.venue.signer.address, 1, node.product.id) // LOT
        await h.venue.stop()

    _run(scenario)


def test_reconciliation_sees_a_cancelled_order_open_until_the_engine_has_its_cancel_ack():
    """The venue confirms a cancel before the connector reports it (after the next poll, so fills come first):
    a reconciliation read in between must not call the order missing (the 60 s run counted 4 such mismatches
    and 4 late CancelAcks before this)."""
    async def scenario(node):
        h = await _venue(node)
        bid, _ = _best(node)
        h.venue.submit([_quote(1, Side.BUY, bid - 3, 5)])
        await h.until(lambda: h.of(OrderAck, 1))
        h.venue.submit([CancelOrder(1)])
        while node.stats["by_path"].get("DELETE /v1/order", 0) == 0 or h.venue._sender and not h.venue._sender.done():
            await asyncio.sleep(0.01)
        state = await h.venue.account_state()  # the double has cancelled it; the engine has not been told
        assert node.exchange.open_by_account[(h.venue.signer.address.lower(), 1)] == {}
        assert state.open_orders[1].remaining_lots == 5
        await h.until(lambda: h.of(CancelAck, 1))
        assert 1 not in (await h.venue.account_state()).open_orders
        await h.venue.stop()

    _run(scenario)


def test_a_replace_whose_old_order_just_filled_sends_the_new_quote_alone():
    """Seen in a 60 s run: a taker filled a quote just before its cancel-and-replace arrived, and the venue
    refused the whole request ("order to cancel not found"), which counted as a rejection toward the
    venue_errors breaker. Now the new quote goes out on its own and the fill is reported as usual."""
    async def scenario(node):
        h = await _venue(node)
        node.participants.set_active(False, None)
        bid, _ = _best(node)
        h.venue.submit([_quote(1, Side.BUY, bid + 1, 10)])
        await h.until(lambda: h.of(OrderAck, 1))
        assert node.participants.take_now("sell", 10)[0] == 200  # fills it all, before any poll sees it
        h.venue.submit([CancelOrder(1), _quote(2, Side.BUY, bid, 10)])
        await h.until(lambda: h.of(OrderAck, 2) and h.of(Fill, 1))
        assert not h.of(OrderReject) and h.of(Fill, 1)[0].done
        st = h.venue.status()
        assert st["replaces_sent"] == 1 and st["replace_fallbacks"] == 1
        await h.venue.stop()

    _run(scenario)
