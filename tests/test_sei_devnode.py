"""The Sei node double's x/dex chain, driven as a client drives it: signed txs over HTTP JSON-RPC, ABCI queries,
WebSocket subscriptions, all on 127.0.0.1. Blocks are produced by hand unless a test is about timing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any

import orjson
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_q
from cosmpy.protos.cosmos.bank.v1beta1 import query_pb2 as bank_q
from cosmpy.protos.cosmos.bank.v1beta1.tx_pb2 import MsgSend
from cosmpy.protos.cosmos.base.abci.v1beta1 import abci_pb2
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxBody, TxRaw
from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2 as wasm_q
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from flashmm.venues.sei import schema
from flashmm.venues.sei import tx as sei_tx
from flashmm.venues.sei.devnode import DEFAULT_CONTRACT, DevNode, decode_address
from flashmm.venues.sei.schema import OrderStatus, OrderType, PositionDirection

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
LONG, SHORT = PositionDirection.LONG, PositionDirection.SHORT
BALANCE = Decimal("1000000")


def run(coro_fn, **node_kwargs) -> Any:
    """Run ``coro_fn(node)`` against a started node (manual blocks, no scripted participants), bounded in time."""
    kwargs = {"manual_blocks": True, "takers": 0, "makers": 0, **node_kwargs}

    async def main():
        node = DevNode(**kwargs)
        await node.start()
        try:
            return await asyncio.wait_for(coro_fn(node), TIMEOUT)
        finally:
            await node.stop()

    return asyncio.run(main())


async def rpc(node: DevNode, method: str, params: Any = None) -> dict[str, Any]:
    """One JSON-RPC call over HTTP POST; the whole response object."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode() + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10.0)
    finally:
        writer.close()
    return orjson.loads(data.partition(b"\r\n\r\n")[2])


async def query(node: DevNode, path: str, request: Any, response_cls: Any = None, height: int | str = "0",
                raw_data: str | None = None) -> tuple[dict[str, Any], Any]:
    """abci_query: (the response object, the decoded value or None)."""
    data = raw_data if raw_data is not None else request.SerializeToString().hex()
    resp = await rpc(node, "abci_query", {"path": path, "data": data, "height": str(height), "prove": False})
    r = resp["result"]["response"]
    decoded = None
    if r["code"] == 0 and response_cls is not None:
        decoded = response_cls.FromString(base64.b64decode(r["value"]))
    return r, decoded


def dex(method: str) -> str:
    return schema.query_path(method)


class Trader:
    """A client account: signs with the key the node funded, tracks its sequence like a connector."""

    def __init__(self, node: DevNode, key: str | None = None, **fund) -> None:
        self.node = node
        self.key = key or node.new_account(**fund)
        self.signer = sei_tx.Signer(self.key, node.chain_id)
        self.address = self.signer.address
        self.number = -1
        self.sequence = 0

    async def load(self) -> Trader:
        _, resp = await query(self.node, "/cosmos.auth.v1beta1.Query/Account",
                              auth_q.QueryAccountRequest(address=self.address), auth_q.QueryAccountResponse)
        base = auth_pb2.BaseAccount.FromString(resp.account.value)
        self.number, self.sequence = base.account_number, base.sequence
        return self

    def order(self, direction: PositionDirection, price: str, qty: str, order_type: OrderType = OrderType.LIMIT,
              **kw) -> Any:
        return schema.new_order(account=self.address, contract_addr=kw.pop("contract", DEFAULT_CONTRACT),
                                price=Decimal(price), quantity=Decimal(qty), price_denom=kw.pop("price_denom", "USDC"),
                                asset_denom="SEI", direction=direction, order_type=order_type, **kw)

    def place(self, *orders: Any) -> Any:
        return schema.MsgPlaceOrders(creator=self.address, orders=list(orders), contractAddr=DEFAULT_CONTRACT)

    def cancel(self, *ids: int) -> Any:
        return schema.MsgCancelOrders(creator=self.address, contractAddr=DEFAULT_CONTRACT, cancellations=[
            schema.Cancellation(id=i, creator=self.address, contractAddr=DEFAULT_CONTRACT, price="0") for i in ids])

    def build(self, msgs: list[Any], *, sequence: int | None = None, fee: int | None = None, gas: int | None = None,
              chain_id: str | None = None, account_number: int | None = None) -> bytes:
        n_orders = sum(len(m.orders) for m in msgs if hasattr(m, "orders"))
        n_cancels = sum(len(m.cancellations) for m in msgs if hasattr(m, "cancellations"))
        gas_limit, min_fee = sei_tx.fee_for(n_orders, n_cancels, 0.02)
        gas_limit = gas if gas is not None else gas_limit
        if gas is not None and fee is None:
            min_fee = sei_tx.min_fee_usei(gas_limit, n_orders, n_cancels, 0.02)
        signer = self.signer if chain_id is None else sei_tx.Signer(self.key, chain_id)
        return sei_tx.build_tx(signer, msgs, self.number if account_number is None else account_number,
                               self.sequence if sequence is None else sequence, gas_limit,
                               min_fee if fee is None else fee)

    async def broadcast(self, raw: bytes) -> dict[str, Any]:
        resp = await rpc(self.node, "broadcast_tx_sync", {"tx": base64.b64encode(raw).decode()})
        result = resp["result"]
        if result["code"] == 0:
            self.sequence += 1
        return result

    async def send(self, *msgs: Any, **kw) -> dict[str, Any]:
        result = await self.broadcast(self.build(list(msgs), **kw))
        assert result["code"] == 0, result
        return result


async def tx_result(node: DevNode, tx_hash: str) -> dict[str, Any]:
    resp = await rpc(node, "tx", {"hash": tx_hash})
    assert "result" in resp, resp
    return resp["result"]


def attrs(tx_res: dict[str, Any], event_type: str, key: str) -> list[str]:
    """Decoded values of one attribute over a tx result's (base64) events."""
    out = []
    for ev in tx_res["events"]:
        if ev["type"] == event_type:
            for a in ev["attributes"]:
                if base64.b64decode(a["key"]).decode() == key:
                    out.append(base64.b64decode(a["value"]).decode())
    return out


async def match_result(node: DevNode, height: int | str = "0") -> Any:
    r, resp = await query(node, dex("GetMatchResult"),
                          schema.QueryGetMatchResultRequest(contractAddr=DEFAULT_CONTRACT),
                          schema.QueryGetMatchResultResponse, height)
    assert r["code"] == 0, r
    return resp.result


async def books(node: DevNode, height: int | str = "0") -> tuple[list[Any], list[Any]]:
    _, longs = await query(node, dex("LongBookAll"), schema.QueryAllLongBooksRequest(
        contractAddr=DEFAULT_CONTRACT, priceDenom="USDC", assetDenom="SEI"), schema.QueryAllLongBooksResponse, height)
    _, shorts = await query(node, dex("ShortBookAll"), schema.QueryAllShortBooksRequest(
        contractAddr=DEFAULT_CONTRACT, priceDenom="USDC", assetDenom="SEI"), schema.QueryAllShortBooksResponse, height)
    return list(longs.LongBook), list(shorts.ShortBook)


async def contract_position(node: DevNode, address: str) -> dict[str, str]:
    r, resp = await query(node, "/cosmwasm.wasm.v1.Query/SmartContractState",
                          wasm_q.QuerySmartContractStateRequest(
                              address=DEFAULT_CONTRACT,
                              query_data=orjson.dumps({"get_position": {"account": address}})),
                          wasm_q.QuerySmartContractStateResponse)
    assert r["code"] == 0, r
    return json.loads(resp.data)


def w(value: str) -> str:
    return schema.dec_to_wire(Decimal(value))


def q18(x: Decimal) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-18), rounding=ROUND_HALF_EVEN)


# ---- CheckTx: signature, sequence, fee, parsing ------------------------------------------------------


def test_default_contract_is_a_valid_sei_address():
    assert DEFAULT_CONTRACT.startswith("sei1")
    assert decode_address(DEFAULT_CONTRACT) is not None
    assert decode_address(DEFAULT_CONTRACT[:-1] + ("q" if DEFAULT_CONTRACT[-1] != "q" else "p")) is None


def test_signature_checked_with_account_number_and_chain_id():
    async def body(node: DevNode):
        t = await Trader(node).load()
        assert t.number == 1 and t.sequence == 0  # first account created, nothing signed yet
        msg = t.place(t.order(LONG, "0.3990", "10"))

        wrong_chain = await t.broadcast(t.build([msg], chain_id="pacific-1"))
        assert wrong_chain["code"] == 4 and wrong_chain["codespace"] == "sdk"
        assert wrong_chain["log"] == ("signature verification failed; please verify account number (1) and "
                                      "chain-id (arctic-1): unauthorized")
        wrong_number = await t.broadcast(t.build([msg], account_number=7))
        assert wrong_number["code"] == 4

        good = t.build([msg])
        raw = TxRaw.FromString(good)
        body_msg = TxBody.FromString(raw.body_bytes)
        body_msg.memo = "tampered"
        raw.body_bytes = body_msg.SerializeToString()
        tampered = await t.broadcast(raw.SerializeToString())
        assert tampered["code"] == 4

        assert t.sequence == 0  # rejected txs consumed nothing
        ok = await t.broadcast(good)
        assert ok == {"code": 0, "data": "", "log": "", "codespace": "", "hash": sei_tx.tx_hash(good)}
        again = await rpc(node, "broadcast_tx_sync", {"tx": base64.b64encode(good).decode()})
        assert again["error"]["data"] == "tx already exists in cache"
        # CheckTx took the fee and the sequence; the account query says which sequence to sign next
        await t.load()
        assert t.sequence == 1
        r, bal = await query(node, "/cosmos.bank.v1beta1.Query/Balance",
                             bank_q.QueryBalanceRequest(address=t.address, denom="usei"), bank_q.QueryBalanceResponse)
        fee = sei_tx.fee_for(1, 0, 0.02)[1]
        assert bal.balance.amount == str(10**12 - fee)
        assert node.stats["txs_ok"] == 1 and node.stats["txs_rejected_code_4"] == 3

    run(body)


def test_sequence_mismatch_answers_32_with_the_expected_number():
    async def body(node: DevNode):
        t = await Trader(node).load()
        msg = t.place(t.order(LONG, "0.3990", "10"))
        await t.send(msg)
        stale = await t.broadcast(t.build([t.place(t.order(LONG, "0.3991", "10"))], sequence=0))
        assert stale["code"] == 32 and stale["codespace"] == "sdk"
        assert stale["log"] == "account sequence mismatch, expected 1, got 0: incorrect account sequence"
        ahead = await t.broadcast(t.build([msg], sequence=5))
        assert ahead["log"] == "account sequence mismatch, expected 1, got 5: incorrect account sequence"
        await node.produce_block()
        # after a block the committed sequence is still the one to sign with
        await t.load()
        assert t.sequence == 1
        await t.send(t.place(t.order(LONG, "0.3992", "10")))

    run(body)


def test_fee_below_minimum_answers_13_and_the_exact_minimum_passes():
    async def body(node: DevNode):
        t = await Trader(node).load()
        msgs = [t.place(t.order(LONG, "0.3990", "10"), t.order(SHORT, "0.4010", "10")), t.cancel(99)]
        gas_limit, _ = sei_tx.fee_for(2, 1)
        required = sei_tx.min_fee_usei(gas_limit, 2, 1, Decimal("0.02"))
        assert (gas_limit, required) == (155_000, 3_100 + 16_300)  # 155000 gas x 0.02 + (2 x 55000 + 53000) x 0.1
        low = await t.broadcast(t.build(msgs, fee=required - 1))
        assert low["code"] == 13
        assert low["log"] == f"insufficient fees; got: {required - 1}usei required: {required}usei: insufficient fee"
        assert (await t.broadcast(t.build(msgs, fee=required)))["code"] == 0

    run(body)


def test_unparseable_unknown_type_unknown_account_and_bad_addresses():
    async def body(node: DevNode):
        garbage = await rpc(node, "broadcast_tx_sync", {"tx": base64.b64encode(b"\xff\x01garbage").decode()})
        assert garbage["result"]["code"] == 2 and garbage["result"]["log"] == "tx parse error"
        not_b64 = await rpc(node, "broadcast_tx_sync", {"tx": "***"})
        assert not_b64["error"]["code"] == -32602

        t = await Trader(node).load()
        send = MsgSend(from_address=t.address, to_address=t.address)
        bank = await t.broadcast(t.build([send]))
        assert bank["code"] == 2
        assert bank["log"] == "unable to resolve type URL /cosmos.bank.v1beta1.MsgSend: tx parse error"

        stranger = Trader(node, key="22" * 32)  # never funded: no account
        stranger.number = 0
        unknown = await stranger.broadcast(stranger.build([stranger.place(stranger.order(LONG, "0.4", "1"))]))
        assert unknown["code"] == 9
        assert unknown["log"] == f"fee payer address: {stranger.address} does not exist: unknown address"

        bad_creator = schema.MsgPlaceOrders(creator="sei1notanaddress", contractAddr=DEFAULT_CONTRACT,
                                            orders=[t.order(LONG, "0.4", "1")])
        assert (await t.broadcast(t.build([bad_creator])))["code"] == 7
        empty = schema.MsgPlaceOrders(creator=t.address, contractAddr=DEFAULT_CONTRACT)
        assert (await t.broadcast(t.build([empty])))["code"] == 18
        assert t.sequence == 0 and node.stats["txs_ok"] == 0

    run(body)


# ---- DeliverTx ---------------------------------------------------------------------------------------


def test_tick_violation_fails_in_delivertx_with_seis_message_and_still_costs_sequence_and_fee():
    async def body(node: DevNode):
        t = await Trader(node).load()
        off_tick = await t.send(t.place(t.order(LONG, "0.39995", "10")))  # CheckTx does not know the pair's ticks
        bad_qty = await t.send(t.place(t.order(SHORT, "0.4010", "1.5")))
        fok = await t.send(t.place(t.order(LONG, "0.4", "1", OrderType.FOKMARKET)))
        low_gas = await t.send(t.place(t.order(LONG, "0.3990", "10")), gas=20_000)
        other_pair = await t.send(t.place(t.order(LONG, "0.3990", "10", price_denom="USDT")))
        height = await node.produce_block()

        r = await tx_result(node, off_tick["hash"])
        assert r["height"] == str(height)
        res = r["tx_result"]
        assert res["code"] == 1 and res["codespace"] == "dex"
        assert res["log"] == "price needs to be non-zero and multiple of price tick size"
        assert attrs(res, "place_order", "order_id") == []  # no dex events on a failed tx
        assert attrs(res, "tx", "fee_payer") == [t.address]
        assert (await tx_result(node, bad_qty["hash"]))["tx_result"]["log"] == (
            "quantity needs to be non-zero and multiple of quantity tick size")
        assert (await tx_result(node, fok["hash"]))["tx_result"]["log"] == "order type FOKMARKET is not supported"
        gas = (await tx_result(node, low_gas["hash"]))["tx_result"]
        assert gas["code"] == 11 and gas["codespace"] == "sdk" and gas["gas_used"] == gas["gas_wanted"] == "20000"
        pair = (await tx_result(node, other_pair["hash"]))["tx_result"]
        assert pair["code"] == 16 and "is not registered" in pair["log"]

        assert node.book_levels() == {"long": {}, "short": {}}
        assert node.stats["txs_failed"] == 5
        await t.load()
        assert t.sequence == 5  # every failed tx consumed its sequence
        # the next order gets id 1: failed txs assigned no ids
        placed = await t.send(t.place(t.order(LONG, "0.3990", "10")))
        await node.produce_block()
        assert attrs((await tx_result(node, placed["hash"]))["tx_result"], "place_order", "order_id") == ["1"]

    run(body)


def test_place_order_ids_in_message_order_pushed_before_the_block_header():
    async def body(node: DevNode):
        t = await Trader(node).load()
        async with connect(node.ws_url) as ws:
            for i, q in enumerate((f"tm.event='Tx' AND message.sender='{t.address}'", "tm.event='NewBlockHeader'")):
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "subscribe",
                                            "params": {"query": q}}).decode())
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["result"] == {}
            sent = await t.send(
                t.place(t.order(LONG, "0.3990", "10"), t.order(LONG, "0.3980", "10"), t.order(SHORT, "0.4020", "5")),
                t.place(t.order(SHORT, "0.4030", "5"), t.order(SHORT, "0.4040", "5")),
            )
            missing = await rpc(node, "tx", {"hash": sent["hash"]})
            assert missing["error"]["code"] == -32603
            assert missing["error"]["data"] == f"tx ({sent['hash']}) not found"
            height = await node.produce_block()

            tx_push = json.loads(await asyncio.wait_for(ws.recv(), 5))
            header_push = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert tx_push["id"] == 1 and header_push["id"] == 2  # the Tx event comes first
        ev = tx_push["result"]["events"]
        assert ev["tm.event"] == ["Tx"] and ev["tx.hash"] == [sent["hash"]] and ev["tx.height"] == [str(height)]
        assert ev["place_order.order_id"] == ["1", "2", "3", "4", "5"]
        assert ev["message.action"] == [schema.TYPE_URL_PLACE_ORDERS] * 2
        assert ev["message.sender"] == [t.address, t.address]
        result = tx_push["result"]["data"]["value"]["TxResult"]
        assert result["height"] == str(height) and result["result"]["code"] == 0
        assert header_push["result"]["data"]["value"]["header"]["height"] == str(height)

        r = await tx_result(node, sent["hash"])
        assert attrs(r["tx_result"], "place_order", "order_id") == ["1", "2", "3", "4", "5"]
        data = abci_pb2.TxMsgData.FromString(base64.b64decode(r["tx_result"]["data"]))
        ids = [list(schema.MsgPlaceOrdersResponse.FromString(d.data).orderIds) for d in data.data]
        assert ids == [[1, 2, 3], [4, 5]]
        status = (await rpc(node, "status"))["result"]
        assert status["sync_info"]["latest_block_height"] == str(height)

    run(body)


# ---- book queries and the auction --------------------------------------------------------------------


def test_book_queries_show_levels_by_price_with_fifo_allocations():
    async def body(node: DevNode):
        a, b = await Trader(node).load(), await Trader(node).load()
        await a.send(a.place(a.order(LONG, "0.3990", "10"), a.order(LONG, "0.3980", "7")))
        await b.send(b.place(b.order(LONG, "0.3990", "4"), b.order(SHORT, "0.4010", "3")))
        await node.produce_block()
        await a.send(a.place(a.order(LONG, "0.3990", "2")))
        await node.produce_block()

        longs, shorts = await books(node)
        assert [schema.dec_from_wire(lb.price) for lb in longs] == [Decimal("0.398"), Decimal("0.399")]
        level = longs[1].entry
        assert level.price == w("0.399") and level.quantity == w("16")
        assert [(x.orderId, x.quantity, x.account) for x in level.allocations] == [
            (1, w("10"), a.address), (3, w("4"), b.address), (5, w("2"), a.address)]  # arrival order
        assert [(s.price, s.entry.quantity) for s in shorts] == [(w("0.401"), w("3"))]

        _, orders = await query(node, dex("GetOrders"), schema.QueryGetOrdersRequest(
            contractAddr=DEFAULT_CONTRACT, account=a.address), schema.QueryGetOrdersResponse)
        assert [(o.id, o.status, o.quantity, o.positionDirection) for o in orders.orders] == [
            (1, OrderStatus.PLACED, w("10"), LONG), (2, OrderStatus.PLACED, w("7"), LONG),
            (5, OrderStatus.PLACED, w("2"), LONG)]
        _, other = await query(node, dex("LongBookAll"), schema.QueryAllLongBooksRequest(
            contractAddr=a.address),
            schema.QueryAllLongBooksResponse)
        assert list(other.LongBook) == []  # another contract has no book here

    run(body)


def test_market_orders_fill_makers_at_level_prices_and_takers_share_one_vwap():
    async def body(node: DevNode):
        maker, t1, t2, t3 = [await Trader(node).load() for _ in range(4)]
        await maker.send(maker.place(maker.order(SHORT, "0.4001", "10"), maker.order(SHORT, "0.4002", "12"),
                                     maker.order(SHORT, "0.4005", "10")))
        await node.produce_block()
        await t1.send(t1.place(t1.order(LONG, "0", "3", OrderType.MARKET)))
        await t2.send(t2.place(t2.order(LONG, "0.4002", "20", OrderType.MARKET)))  # worst price stops it at 0.4002
        await t3.send(t3.place(t3.order(SHORT, "0", "4", OrderType.MARKET)))  # no bids: nothing to fill
        height = await node.produce_block()

        mr = await match_result(node)
        assert mr.height == height and mr.contractAddr == DEFAULT_CONTRACT
        assert [(o.id, o.status, o.orderType) for o in mr.orders] == [
            (4, OrderStatus.PLACED, OrderType.MARKET), (5, OrderStatus.PLACED, OrderType.MARKET),
            (6, OrderStatus.PLACED, OrderType.MARKET)]
        with localcontext() as ctx:
            ctx.prec = 50
            vwap = q18((10 * Decimal("0.4001") + 12 * Decimal("0.4002")) / 22)  # 0.4001545454...
        makers = [(s.orderId, s.quantity, s.executionCostOrProceed, s.orderType, s.positionDirection)
                  for s in mr.settlements if s.account == maker.address]
        assert makers == [
            (1, w("3"), w("0.4001"), "LIMIT", "SHORT"),  # t1's 3
            (1, w("7"), w("0.4001"), "LIMIT", "SHORT"),  # t2 takes the rest of the level FIFO...
            (2, w("12"), w("0.4002"), "LIMIT", "SHORT"),  # ...then the next level, at its own price
        ]
        takers = {s.account: s for s in mr.settlements if s.account != maker.address}
        assert set(takers) == {t1.address, t2.address}
        assert takers[t1.address].executionCostOrProceed == takers[t2.address].executionCostOrProceed == (
            schema.dec_to_wire(vwap))
        assert vwap == Decimal("0.400154545454545455")
        assert takers[t2.address].quantity == w("19") and takers[t2.address].expectedCostOrProceed == w("0.4002")
        assert takers[t1.address].expectedCostOrProceed == "0" and takers[t1.address].orderType == "MARKET"
        assert [s.settlementId for s in mr.settlements] == [1, 2, 3, 4, 5]
        assert all(s.height == height and s.timestamp > 1_700_000_000 for s in mr.settlements)
        # unfilled market orders (t2's last 1, all of t3) are cancelled and listed
        assert [(c.id, c.initiator, c.creator) for c in mr.cancellations] == [
            (5, schema.CancellationInitiator.USER, t2.address), (6, schema.CancellationInitiator.USER, t3.address)]
        assert node.book_levels()["short"] == {Decimal("0.4005"): Decimal("10")}

        pos = await contract_position(node, t2.address)
        assert pos == {"position": "19.000000000000000000",
                       "balance": schema.dec_to_json(BALANCE - q18(19 * vwap))}
        assert await contract_position(node, maker.address) == {
            "position": "-22.000000000000000000",
            "balance": schema.dec_to_json(BALANCE + 10 * Decimal("0.4001") + 12 * Decimal("0.4002"))}

    run(body)


def test_crossing_limits_settle_at_the_midpoint_fifo():
    async def body(node: DevNode):
        seller, other_seller, buyer = [await Trader(node).load() for _ in range(3)]
        await seller.send(seller.place(seller.order(SHORT, "0.4000", "4")))
        await node.produce_block()
        await other_seller.send(other_seller.place(other_seller.order(SHORT, "0.4000", "3")))
        await buyer.send(buyer.place(buyer.order(LONG, "0.4003", "10")))
        height = await node.produce_block()

        mr = await match_result(node)
        got = [(s.account, s.orderId, s.quantity, s.executionCostOrProceed, s.expectedCostOrProceed)
               for s in mr.settlements]
        assert got == [
            (buyer.address, 3, w("4"), w("0.40015"), w("0.4003")),
            (seller.address, 1, w("4"), w("0.40015"), w("0.4")),  # the older ask first
            (buyer.address, 3, w("3"), w("0.40015"), w("0.4003")),
            (other_seller.address, 2, w("3"), w("0.40015"), w("0.4")),
        ]
        assert node.book_levels() == {"long": {Decimal("0.4003"): Decimal("3")}, "short": {}}
        await node.produce_block()

        # the past height still answers its own match result and book
        past = await match_result(node, height)
        assert len(past.settlements) == 4 and past.height == height
        assert len((await match_result(node)).settlements) == 0
        longs_then, shorts_then = await books(node, height - 1)
        assert longs_then == [] and [s.price for s in shorts_then] == [w("0.4")]
        response, _ = await query(node, dex("GetMatchResult"),
                                  schema.QueryGetMatchResultRequest(contractAddr=DEFAULT_CONTRACT), None, height)
        assert response["height"] == str(height)

    run(body)


def test_cancel_and_place_in_one_tx_apply_in_one_block():
    async def body(node: DevNode):
        t, other = await Trader(node).load(), await Trader(node).load()
        await t.send(t.place(t.order(LONG, "0.3990", "10")))
        await node.produce_block()
        sent = await t.send(t.cancel(1), t.place(t.order(LONG, "0.3995", "10")))
        steal = await other.send(other.cancel(1))
        height = await node.produce_block()

        res = (await tx_result(node, sent["hash"]))["tx_result"]
        assert attrs(res, "cancel_order", "cancellation_id") == ["1"]
        assert attrs(res, "place_order", "order_id") == ["2"]
        assert attrs(res, "message", "action") == [schema.TYPE_URL_CANCEL_ORDERS, schema.TYPE_URL_PLACE_ORDERS]
        stolen = (await tx_result(node, steal["hash"]))["tx_result"]
        assert stolen["code"] == 1 and stolen["log"] == "cannot cancel orders created by others"

        mr = await match_result(node)
        assert mr.height == height
        assert [c.id for c in mr.cancellations] == [1]
        assert [(o.id, o.status) for o in mr.orders] == [(2, OrderStatus.PLACED)]
        assert node.book_levels()["long"] == {Decimal("0.3995"): Decimal("10")}
        # a filled or unknown id is ignored and not listed
        await t.send(t.cancel(1, 77))
        await node.produce_block()
        assert list((await match_result(node)).cancellations) == []
        assert node.book_levels()["long"] == {Decimal("0.3995"): Decimal("10")}

    run(body)


def test_long_order_beyond_the_balance_fails_to_place():
    async def body(node: DevNode):
        t = await Trader(node, balance=Decimal("1")).load()
        sent = await t.send(t.place(t.order(LONG, "0.4000", "100"), t.order(SHORT, "0.4100", "100")))
        await node.produce_block()
        assert attrs((await tx_result(node, sent["hash"]))["tx_result"], "place_order", "order_id") == ["1", "2"]
        mr = await match_result(node)
        assert [(o.id, o.status, o.statusDescription) for o in mr.orders] == [
            (1, OrderStatus.FAILED_TO_PLACE, "insufficient balance to place order"), (2, OrderStatus.PLACED, "")]
        assert node.book_levels() == {"long": {}, "short": {Decimal("0.41"): Decimal("100")}}

    run(body)


# ---- queries: heights, pruning, malformed input ------------------------------------------------------


def test_pruned_future_malformed_and_unknown_queries_answer_codes():
    async def body(node: DevNode):
        t = await Trader(node).load()
        sent = await t.send(t.place(t.order(LONG, "0.3990", "10")))
        for _ in range(5):
            await node.produce_block()
        assert node.height == 6
        req = schema.QueryGetMatchResultRequest(contractAddr=DEFAULT_CONTRACT)
        pruned, _ = await query(node, dex("GetMatchResult"), req, height=2)
        assert pruned["code"] == 1 and pruned["log"] == "height 2 is pruned" and pruned["value"] is None
        kept, _ = await query(node, dex("GetMatchResult"), req, height=4)
        assert kept["code"] == 0 and kept["height"] == "4"
        future, _ = await query(node, dex("GetMatchResult"), req, height=7)
        assert future["code"] == 26
        malformed, _ = await query(node, dex("LongBookAll"), None, raw_data="0aff01")
        assert malformed["code"] == 2
        unknown, _ = await query(node, "/seiprotocol.seichain.dex.Query/GetOrderbook", req)
        assert unknown["code"] == 6 and "unknown query path" in unknown["log"]
        other_contract, _ = await query(node, dex("GetMatchResult"),
                                        schema.QueryGetMatchResultRequest(contractAddr=t.address))
        assert other_contract["code"] == 22
        bad_json, _ = await query(node, "/cosmwasm.wasm.v1.Query/SmartContractState",
                                  wasm_q.QuerySmartContractStateRequest(address=DEFAULT_CONTRACT, query_data=b"{oops"))
        assert bad_json["code"] == 2
        no_account, _ = await query(node, "/cosmos.auth.v1beta1.Query/Account",
                                    auth_q.QueryAccountRequest(address=DEFAULT_CONTRACT))
        assert no_account["code"] == 22
        not_hex = await rpc(node, "abci_query", {"path": dex("LongBookAll"), "data": "zz"})
        assert not_hex["error"]["code"] == -32602
        # txs of pruned blocks are gone from the index too; the node still serves
        gone = await rpc(node, "tx", {"hash": sent["hash"]})
        assert gone["error"]["data"] == f"tx ({sent['hash']}) not found"
        assert (await rpc(node, "status"))["result"]["sync_info"]["latest_block_height"] == "6"

    run(body, history_blocks=3)


# ---- fault injection ---------------------------------------------------------------------------------


def test_skip_blocks_leaves_a_height_gap_for_a_subscriber():
    async def body(node: DevNode):
        async with connect(node.ws_url) as ws:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "subscribe",
                                        "params": {"query": "tm.event='NewBlockHeader'"}}).decode())
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["result"] == {}

            async def next_height() -> int:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return int(msg["result"]["data"]["value"]["header"]["height"])

            await node.produce_block()
            assert await next_height() == 2
            node.skip_blocks(2)
            for _ in range(3):
                await node.produce_block()
            assert await next_height() == 5  # 3 and 4 were committed but never pushed
        assert node.stats["blocks_not_pushed"] == 2
        _, mr = await query(node, dex("GetMatchResult"), schema.QueryGetMatchResultRequest(
            contractAddr=DEFAULT_CONTRACT), schema.QueryGetMatchResultResponse, 3)
        assert mr.result.height == 3  # the skipped heights are queryable: a client can catch up

    run(body)


def test_force_codes_answer_seis_texts_and_accept_nothing():
    async def body(node: DevNode):
        t = await Trader(node).load()
        raw = t.build([t.place(t.order(LONG, "0.3990", "10"))])
        node.force_codes(32, 2)
        for _ in range(2):
            r = await t.broadcast(raw)
            assert r["code"] == 32
            assert r["log"] == "account sequence mismatch, expected 0, got 0: incorrect account sequence"
        node.force_codes(13)
        r = await t.broadcast(raw)
        fee = sei_tx.fee_for(1, 0)[1]
        assert r["code"] == 13 and r["log"].startswith(f"insufficient fees; got: {fee}usei required: ")
        assert (await t.broadcast(raw))["code"] == 0  # the same bytes, now accepted
        assert node.stats["forced_codes"] == 3
        async with connect(node.ws_url) as ws:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "health"}).decode())
            await asyncio.wait_for(ws.recv(), 5)
            assert node.drop_sockets() == 1
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("the socket should have been dropped")
            except ConnectionClosed:
                pass

    run(body)


# ---- scripted participants ---------------------------------------------------------------------------


def test_scripted_makers_and_takers_trade_through_the_rpc():
    async def body(node: DevNode):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (node.stats["settlements"] < 10 or node.height < 15) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert node.stats["settlements"] >= 10 and node.height >= 15
        # every order arrived as a signed tx through broadcast_tx_sync
        assert node.stats["broadcasts"] >= node.stats["txs_ok"] > 0
        assert node.stats["orders_placed"] > 0 and node.stats.get("participant_errors", 0) == 0
        levels = node.book_levels()
        assert levels["long"] and levels["short"]
        assert max(levels["long"]) < min(levels["short"])  # two-sided and not crossed after the auction
        takers = [p.signer.address for p in node._participants if p.kind == "taker"]
        assert any(node.position(a)[0] != 0 for a in takers)
        mid = (max(levels["long"]) + min(levels["short"])) / 2
        assert abs(mid - node.fair_price) / node.fair_price < Decimal("0.01")

    run(body, manual_blocks=False, block_ms=50, takers=2, makers=1, taker_rate_per_s=10.0)


def test_timed_blocks_advance_status_without_traffic():
    async def body(node: DevNode):
        await node.wait_for_block(3)
        status = (await rpc(node, "status"))["result"]
        assert int(status["sync_info"]["latest_block_height"]) >= 4
        produced = await rpc(node, "devnode_produce_block")  # the test-only method works in timed mode too
        assert int(produced["result"]["height"]) >= 5

    run(body, manual_blocks=False, block_ms=20)


# ---- CLI ---------------------------------------------------------------------------------------------


def test_cli_prints_its_json_line_funds_keys_and_stops_on_sigterm():
    fund_key = "33" * 32
    funded_by_env = sei_tx.Signer(fund_key, "arctic-1").address
    funded_by_flag = sei_tx.Signer("44" * 32, "arctic-1").address
    env = {**os.environ, "FLASHMM_SEI_PRIVATE_KEY": fund_key}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashmm.venues.sei.devnode", "--port", "0", "--manual-blocks", "--takers", "0",
         "--makers", "0", "--fund", funded_by_flag],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = asyncio.run(asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30))
        info = json.loads(line)
        assert set(info) == {"url", "ws_url", "chain_id", "contract", "height"}
        assert info["chain_id"] == "arctic-1" and info["contract"] == DEFAULT_CONTRACT and info["height"] == 1
        assert info["url"].startswith("http://127.0.0.1:") and info["ws_url"].endswith("/websocket")

        def call(method: str, params: dict) -> dict:
            req = urllib.request.Request(info["url"], data=orjson.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return orjson.loads(resp.read())["result"]

        for address, number in ((funded_by_flag, 1), (funded_by_env, 2)):
            r = call("abci_query", {"path": "/cosmos.auth.v1beta1.Query/Account",
                                    "data": auth_q.QueryAccountRequest(address=address).SerializeToString().hex()})
            account = auth_q.QueryAccountResponse.FromString(base64.b64decode(r["response"]["value"])).account
            assert auth_pb2.BaseAccount.FromString(account.value).account_number == number
        assert call("devnode_produce_block", {}) == {"height": "2"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert fund_key not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_key_without_printing_it():
    env = {**os.environ, "FLASHMM_SEI_PRIVATE_KEY": "not-a-key-secret"}
    proc = subprocess.run(
        [sys.executable, "-m", "flashmm.venues.sei.devnode", "--port", "0", "--takers", "0", "--makers", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "FLASHMM_SEI_PRIVATE_KEY" in proc.stderr and "not-a-key-secret" not in proc.stderr + proc.stdout
