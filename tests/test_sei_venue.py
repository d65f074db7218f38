"""The Sei venue connector end to end against the node double (127.0.0.1, manual blocks, bounded in time).

Each test drives the real connector (WebSocket feed, JSON-RPC client, cosmpy-signed transactions) against
the real node double, whose checks (signature, sequence, fee, ticks) and batch auction decide the outcome.
"""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal

import pytest

from flashmm.config import Config
from flashmm.core.domain import (
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    Fill,
    OrderAck,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
    VenueStatus,
)
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.sei import schema as S
from flashmm.venues.sei.devnode import DevNode
from flashmm.venues.sei.tx import Signer, build_tx, fee_for
from flashmm.venues.sei.venue import SeiVenue

CHAIN = "arctic-1"
MM_KEY = "1" * 64
TIMEOUT = 10.0


def _cfg(node: DevNode, **sei: object) -> Config:
    cfg = Config()
    values = {"endpoints": [node.url], "chain_id": CHAIN, "feed_silence_s": 5.0, "reconnect_min_s": 0.05,
              "reconnect_max_s": 0.2, **sei}
    return cfg.model_copy(update={"sei": cfg.sei.model_copy(update=values)})


class Harness:
    """A node double with manual blocks, our funded account and a connected SeiVenue."""

    def __init__(self, node: dict | None = None, **sei: object) -> None:
        self.sei = sei
        self.node_kwargs = node or {}
        self.events: list = []

    async def __aenter__(self) -> "Harness":
        configure_logging("error")
        self.node = DevNode(manual_blocks=True, takers=0, makers=0, chain_id=CHAIN, **self.node_kwargs)
        await self.node.start()
        self.signer = Signer(MM_KEY, CHAIN)
        self.node.fund(self.signer.address)
        self.cfg = _cfg(self.node, **self.sei)
        self.venue = SeiVenue(self.cfg, self.signer)
        await self.venue.start()
        first = await self.batch()
        assert isinstance(first[0], BookSnapshot)
        await self._wait_connected()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.venue.stop()
        await self.node.stop()

    async def _wait_connected(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not self.venue._connected:
                await asyncio.sleep(0.01)

    async def batch(self) -> list:
        async with asyncio.timeout(TIMEOUT):
            b = await self.venue.next_batch()
        self.events.extend(b)
        return b

    async def block(self) -> list:
        """Commit one block; return the venue's batch for it (status batches are collected on the way)."""
        await asyncio.sleep(0.05)  # our broadcast (sent on submit) reaches the mempool first
        h = await self.node.produce_block()
        out: list = []
        while True:
            b = await self.batch()
            out.extend(b)
            if any(_book_seq(e) >= h for e in b):
                return out

    def submit(self, *actions) -> None:
        self.venue.submit(list(actions))

    async def taker(self, side: Side, qty: int, limit: Decimal = Decimal(0), key: str | None = None,
                    order_type: S.OrderType = S.OrderType.MARKET) -> str:
        """Another account sends an order through the node's JSON-RPC (a real signed tx)."""
        key = key or self.node.new_account()
        signer = Signer(key, CHAIN)
        acct = await self._account(signer.address)
        order = S.new_order(account=signer.address, contract_addr=self.cfg.sei.contract_addr, price=limit,
                            quantity=Decimal(qty), price_denom="USDC", asset_denom="SEI",
                            direction=S.PositionDirection.LONG if side is Side.BUY else S.PositionDirection.SHORT,
                            order_type=order_type)
        msg = S.MsgPlaceOrders(creator=signer.address, contractAddr=self.cfg.sei.contract_addr, orders=[order])
        gas, fee = fee_for(1, 0)
        raw = build_tx(signer, [msg], acct[0], acct[1], gas, fee)
        res = await self.venue.rpc.call("broadcast_tx_sync", {"tx": base64.b64encode(raw).decode()})
        assert res["code"] == 0, res
        return key

    async def _account(self, address: str) -> tuple[int, int]:
        from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
        from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth

        raw = await self.venue.rpc.abci_query("/cosmos.auth.v1beta1.Query/Account", auth.QueryAccountRequest(address=address))
        acct = auth_pb2.BaseAccount()
        auth.QueryAccountResponse.FromString(raw).account.Unpack(acct)
        return acct.account_number, acct.sequence


def run(coro_fn, node: dict | None = None, **sei):
    async def main():
        async with Harness(node, **sei) as h:
            await coro_fn(h)

    asyncio.run(asyncio.wait_for(main(), 60))


def _book_seq(e) -> int:
    if isinstance(e, BookDiff):
        return e.last_seq
    return e.seq if isinstance(e, BookSnapshot) else -1


def of(kind, events):
    return [e for e in events if isinstance(e, kind)]


def px(ticks: int) -> Decimal:
    return Decimal("0.0001") * ticks


def test_quote_is_acknowledged_with_the_nodes_order_ids():
    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10), PlaceOrder(2, Side.SELL, 4010, 10))
        events = await h.block()
        acks = of(OrderAck, events)
        assert [a.client_id for a in acks] == [1, 2]
        assert acks[1].venue_order_id == acks[0].venue_order_id + 1  # place_order.order_id, in message order
        levels = h.node.book_levels()
        assert levels["long"][px(3990)] == Decimal(10) and levels["short"][px(4010)] == Decimal(10)
        state = await h.venue.account_state()
        assert set(state.open_orders) == {1, 2} and state.position_lots == 0

    run(body)


def test_a_taker_crossing_fills_us_at_our_price_and_moves_inventory():
    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await h.block()
        await h.taker(Side.SELL, 4)
        events = await h.block()
        fills = of(Fill, events)
        assert len(fills) == 1
        f = fills[0]
        assert (f.client_id, f.side, f.price_ticks, f.lots, f.done, f.is_maker) == (1, Side.BUY, 3990.0, 4, False, True)
        trades = of(Trade, events)
        assert [(t.price_ticks, t.lots, t.aggressor) for t in trades] == [(3990.0, 4, Side.SELL)]
        state = await h.venue.account_state()
        assert state.position_lots == 4
        assert state.open_orders[1].remaining_lots == 6
        assert h.node.position(h.signer.address)[0] == Decimal(4)

    run(body)


def test_cancel_and_replace_go_in_one_transaction_and_one_block():
    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await h.block()
        sent = h.venue.stats.txs_sent
        h.submit(CancelOrder(1), PlaceOrder(2, Side.BUY, 3991, 10))
        events = await h.block()
        assert h.venue.stats.txs_sent == sent + 1
        assert [e.client_id for e in of(CancelAck, events)] == [1]
        assert [e.client_id for e in of(OrderAck, events)] == [2]
        levels = h.node.book_levels()["long"]
        assert px(3990) not in levels and levels[px(3991)] == Decimal(10)

    run(body)


def test_crossing_limit_orders_settle_at_the_midpoint():
    async def body(h: Harness):
        await h.taker(Side.SELL, 5, limit=px(3996), order_type=S.OrderType.LIMIT)  # arrives first
        h.submit(PlaceOrder(1, Side.BUY, 4000, 5))
        events = await h.block()
        fills = of(Fill, events)
        assert [(f.price_ticks, f.lots, f.done) for f in fills] == [(3998.0, 5, True)]
        assert [(t.price_ticks, t.lots, t.aggressor) for t in of(Trade, events)] == [(3998.0, 5, None)]

    run(body)


def test_sequence_mismatch_is_recovered_by_re_signing():
    async def body(h: Harness):
        h.venue.sequence += 3  # as if another process had used the key: the node answers code 32
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        events = await h.block()
        assert [a.client_id for a in of(OrderAck, events)] == [1]
        assert h.venue.stats.sequence_recoveries == 1
        h.node.force_codes(32)
        h.submit(PlaceOrder(2, Side.BUY, 3989, 10))
        events = await h.block()
        assert [a.client_id for a in of(OrderAck, events)] == [2]
        assert h.venue.stats.sequence_recoveries == 2

    run(body)


def test_fee_rejection_is_reported_not_crashed_on():
    async def body(h: Harness):
        h.node.force_codes(13)
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await asyncio.sleep(0.2)
        events = await h.block()
        rejects = of(OrderReject, events)
        assert [r.client_id for r in rejects] == [1] and "insufficient_fee" in rejects[0].reason
        assert h.venue.stats.rejects["insufficient_fee"] == 1
        h.submit(PlaceOrder(2, Side.BUY, 3990, 10))  # the venue goes on
        assert [a.client_id for a in of(OrderAck, await h.block())] == [2]

    run(body)


def test_tick_violation_is_rejected_by_the_node_and_reported():
    async def body(h: Harness):
        # our instrument has a finer tick than the pair: the local check passes, the node's DeliverTx fails
        h.venue.instrument = h.venue.instrument.__class__("SEI/USDC", "SEI", "USDC", Decimal("0.00005"), Decimal(1))
        h.venue._p_tick = Decimal("0.00005")
        h.submit(PlaceOrder(1, Side.BUY, 7981, 10))  # 0.39905: not a multiple of 0.0001
        events = await h.block()
        rejects = of(OrderReject, events)
        assert [r.client_id for r in rejects] == [1]
        assert S.PRICE_TICK_ERROR in rejects[0].reason
        assert h.venue.stats.rejects.get("dex_validation") == 1
        h.submit(PlaceOrder(2, Side.BUY, 7980, 10))  # 0.3990: fine
        assert [a.client_id for a in of(OrderAck, await h.block())] == [2]

    run(body)


def test_local_tick_check_rejects_before_sending():
    async def body(h: Harness):
        sent = h.venue.stats.txs_sent
        h.submit(PlaceOrder(1, Side.BUY, 3990, 0))
        events = await h.block()
        assert [r.client_id for r in of(OrderReject, events)] == [1]
        assert h.venue.stats.txs_sent == sent and h.venue.stats.local_rejects == 1

    run(body)


def test_socket_drop_resubscribes_and_resnapshots_without_divergence():
    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await h.block()
        reconnects = h.venue.stats.reconnects
        assert h.node.drop_sockets() == 1
        status = await h.batch()
        assert isinstance(status[0], VenueStatus) and not status[0].connected
        await h.taker(Side.SELL, 3)  # a fill happens while we are away
        await h.node.produce_block()
        await h._wait_connected()
        events = []
        async with asyncio.timeout(TIMEOUT):
            while not of(BookSnapshot, events):
                events.extend(await h.batch())
        assert h.venue.stats.reconnects == reconnects + 1
        assert [(f.client_id, f.lots) for f in of(Fill, events)] == [(1, 3)]  # not lost
        snap = of(BookSnapshot, events)[-1]
        node = h.node.book_levels()
        assert {p: lots for p, lots in snap.bids} == {int(p / Decimal("0.0001")): int(q) for p, q in node["long"].items()}
        assert {p: lots for p, lots in snap.asks} == {int(p / Decimal("0.0001")): int(q) for p, q in node["short"].items()}
        h.submit(PlaceOrder(2, Side.SELL, 4010, 10))  # and trading goes on
        assert [a.client_id for a in of(OrderAck, await h.block())] == [2]

    run(body)


def test_height_gap_fetches_every_missed_block_and_resnapshots():
    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await h.block()
        h.node.skip_blocks(2)
        await h.taker(Side.SELL, 2)
        await h.node.produce_block()  # pushed to nobody
        await h.taker(Side.SELL, 3)
        await h.node.produce_block()  # pushed to nobody
        events = await h.block()
        assert [(f.lots) for f in of(Fill, events)] == [2, 3]
        assert of(BookSnapshot, events) and h.venue.stats.gaps == 1 and h.venue.stats.missed_heights == 2
        assert (await h.venue.account_state()).position_lots == 5

    run(body)


def test_market_order_rest_is_cancelled_and_reported():
    async def body(h: Harness):
        await h.taker(Side.SELL, 3, limit=px(4000), order_type=S.OrderType.LIMIT)
        await h.block()
        h.submit(PlaceOrder(1, Side.BUY, 4100, 10, OrderType.MARKET))
        events = await h.block()
        assert [(f.client_id, f.lots, f.is_maker) for f in of(Fill, events)] == [(1, 3, False)]
        assert [c.client_id for c in of(CancelAck, events)] == [1]
        assert (await h.venue.account_state()).position_lots == 3

    run(body)


def test_wrong_chain_refuses_to_start():
    async def main():
        configure_logging("error")
        node = DevNode(manual_blocks=True, takers=0, makers=0, chain_id="pacific-1")
        await node.start()
        try:
            venue = SeiVenue(_cfg(node), Signer(MM_KEY, CHAIN))
            with pytest.raises(Exception, match="pacific-1"):
                await venue.start()
            await venue.stop()
        finally:
            await node.stop()

    asyncio.run(main())


def test_failover_to_the_next_endpoint_when_the_first_is_down():
    async def main():
        configure_logging("error")
        node = DevNode(manual_blocks=True, takers=0, makers=0, chain_id=CHAIN)
        await node.start()
        try:
            signer = Signer(MM_KEY, CHAIN)
            node.fund(signer.address)
            dead = "http://127.0.0.1:9"  # discard port: refused
            venue = SeiVenue(_cfg(node, endpoints=[dead, node.url]), signer)
            await venue.start()
            assert isinstance((await asyncio.wait_for(venue.next_batch(), TIMEOUT))[0], BookSnapshot)
            venue.submit([PlaceOrder(1, Side.BUY, 3990, 10)])
            await asyncio.sleep(0.3)
            await node.produce_block()
            acks = []
            async with asyncio.timeout(TIMEOUT):
                while not acks:
                    acks = of(OrderAck, await venue.next_batch())
            states = {e["endpoint"]: e for e in venue.pool.status()}
            assert states[dead]["errors"] >= 1 and states[node.url]["errors"] == 0
            await venue.stop()
        finally:
            await node.stop()

    asyncio.run(main())


def test_engine_without_state_store_starts_from_the_venues_position():
    """A live account already holding a position (a previous run, no Redis journal): the engine takes the
    venue's record as its starting position, says so, and does not pause on a mismatch."""
    from flashmm.core.engine import Engine

    async def body(h: Harness):
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        await h.block()
        await h.taker(Side.SELL, 7)
        await h.block()
        assert (await h.venue.account_state()).position_lots == 7
        await h.taker(Side.SELL, 50, limit=px(4010), order_type=S.OrderType.LIMIT)  # someone's ask
        await h.block()
        await h.venue.stop()  # the first process ends; its order stays on the book
        venue = SeiVenue(h.cfg, h.signer)
        engine = Engine(h.cfg, venue)
        task = asyncio.create_task(engine.run(None))
        try:
            async with asyncio.timeout(TIMEOUT):
                while not engine.counters.get("positions_adopted"):
                    await h.node.produce_block()
                    await asyncio.sleep(0.1)
                for _ in range(3):
                    await h.node.produce_block()
                    await asyncio.sleep(0.1)
        finally:
            engine.stop()
            await task
            await engine.shutdown(5.0)
        assert engine.portfolio.position_lots == 7
        assert engine.risk.breakers["venue_errors"].trips == 0
        assert any("started with the venue's position 7 lots" in e.text for e in engine.events_log)

    run(body)


def test_pings_are_answered_so_a_quiet_node_keeps_the_connection():
    """The node pings every 0.2 s and drops a client silent for 0.6 s; with no block for 2 s the only
    traffic is pings, and the connection must survive on our pongs alone."""
    async def body(h: Harness):
        await asyncio.sleep(2.0)
        assert h.venue._connected and h.venue.stats.reconnects == 0 and h.node.rpc.clients == 1
        h.submit(PlaceOrder(1, Side.BUY, 3990, 10))
        assert [a.client_id for a in of(OrderAck, await h.block())] == [1]

    run(body, node={"ping_interval": 0.2, "read_timeout": 0.6}, feed_silence_s=5.0)
