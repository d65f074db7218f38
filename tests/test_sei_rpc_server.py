"""The Sei node double's CometBFT JSON-RPC / WebSocket transport, exercised over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flashmm.venues.sei.rpc_server import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Query,
    QueryError,
    RPCError,
    SeiRPCServer,
)

SENDER = "sei1qy352euf40x77qfrg4ncn27dauqjx3t83x4ummcpydzk0zdtehhse25p74"
TIMEOUT = 5.0


def run(coro_fn, **server_kwargs) -> Any:
    """Run ``coro_fn(server)`` against a started server, bounded in time."""

    async def main():
        server = SeiRPCServer("atlantic-2", **server_kwargs)
        await server.start()
        try:
            return await asyncio.wait_for(coro_fn(server), 20.0)
        finally:
            await server.stop()

    return asyncio.run(main())


async def http_raw(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)  # Connection: close -> read to EOF
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def post(port: int, body: bytes | Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    req = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    ).encode() + raw
    status, resp = await http_raw(port, req)
    return status, (orjson.loads(resp) if resp else None)


def rpc(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


async def ws_call(ws, msg: dict[str, Any]) -> dict[str, Any]:
    await ws.send(orjson.dumps(msg).decode())
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def no_message(ws, wait: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return True
    return False


TX_DATA = {
    "type": "tendermint/event/Tx",
    "value": {"TxResult": {"height": "12", "tx": base64.b64encode(b"tx").decode(), "result": {"events": []}}},
}


def tx_events(sender: str = SENDER, ids: tuple[str, ...] = ("17", "18"), height: str = "12") -> dict:
    return {
        "tm.event": ["Tx"],
        "tx.hash": ["ABCDEF"],
        "tx.height": [height],
        "message.action": ["/seiprotocol.seichain.dex.MsgPlaceOrders"],
        "message.sender": [sender],
        "place_order.order_id": list(ids),
    }


# ---- HTTP -------------------------------------------------------------------------------------------


def test_post_status_and_health():
    async def body(server: SeiRPCServer):
        server.set_latest_block(42, 1_700_000_000_123_456_789)
        status, resp = await post(server.port, rpc("status", id_=7))
        assert status == 200
        assert resp["jsonrpc"] == "2.0" and resp["id"] == 7 and "error" not in resp
        r = resp["result"]
        assert r["node_info"]["network"] == "atlantic-2"
        assert r["sync_info"]["latest_block_height"] == "42"  # int64 as a string
        assert r["sync_info"]["latest_block_time"] == "2023-11-14T22:13:20.123456789Z"
        assert r["sync_info"]["catching_up"] is False
        status, resp = await post(server.port, rpc("health", id_="h"))
        assert (status, resp) == (200, {"jsonrpc": "2.0", "id": "h", "result": {}})

    run(body)


def test_bound_to_loopback_and_real_http_client_keep_alive():
    async def body(server: SeiRPCServer):
        assert server._server.sockets[0].getsockname()[0] == "127.0.0.1"
        assert server.port > 0

        def with_urllib():
            req = urllib.request.Request(
                server.url + "/",
                data=orjson.dumps(rpc("health", id_=3)),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                assert r.status == 200
                assert json.loads(r.read())["result"] == {}
            try:  # a parse error comes back with HTTP 500 and a JSON-RPC body
                urllib.request.urlopen(urllib.request.Request(server.url + "/", data=b"{"), timeout=TIMEOUT)
            except urllib.error.HTTPError as e:
                assert e.code == 500
                assert json.loads(e.read())["error"]["code"] == PARSE_ERROR
            else:
                raise AssertionError("expected HTTP 500")
            # CometBFT URI style
            with urllib.request.urlopen(server.url + "/status", timeout=TIMEOUT) as r:
                resp = json.loads(r.read())
                assert resp["id"] == -1 and resp["result"]["node_info"]["network"] == "atlantic-2"

        await asyncio.to_thread(with_urllib)

        # two requests on one keep-alive connection
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for i in (1, 2):
            raw = orjson.dumps(rpc("health", id_=i))
            writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            length = int(
                next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
            )
            assert orjson.loads(await reader.readexactly(length))["id"] == i
        writer.close()

    run(body)


def test_error_codes():
    async def boom(params):
        raise RuntimeError("kaput")

    async def picky(params):
        if "n" not in params:
            raise RPCError(INVALID_PARAMS, "n is required")
        return {"n": str(params["n"])}

    async def body(server: SeiRPCServer):
        server.register("boom", boom)
        server.register("picky", picky)
        p = server.port

        status, resp = await post(p, b'{"jsonrpc":"2.0","id":1,"method":')
        assert status == 500 and resp["error"]["code"] == PARSE_ERROR
        assert resp["error"]["message"] and resp["error"]["data"]

        _, resp = await post(p, {"jsonrpc": "1.0", "id": 2, "method": "status"})
        assert resp["id"] == 2 and resp["error"]["code"] == INVALID_REQUEST
        _, resp = await post(p, {"jsonrpc": "2.0", "id": 3})
        assert resp["id"] == 3 and resp["error"]["code"] == INVALID_REQUEST
        _, resp = await post(p, [1])
        assert resp[0]["error"]["code"] == INVALID_REQUEST

        _, resp = await post(p, rpc("no_such_method", id_=4))
        assert resp == {
            "jsonrpc": "2.0",
            "id": 4,
            "error": {"code": METHOD_NOT_FOUND, "message": "Method not found", "data": resp["error"]["data"]},
        }
        _, resp = await post(p, rpc("subscribe", {"query": "tm.event='Tx'"}, id_=5))  # WebSocket only
        assert resp["error"]["code"] == METHOD_NOT_FOUND

        _, resp = await post(p, rpc("picky", "not-an-object", id_=6))
        assert resp["error"]["code"] == INVALID_PARAMS
        _, resp = await post(p, rpc("picky", {}, id_=7))
        assert resp["error"] == {"code": INVALID_PARAMS, "message": "Invalid params", "data": "n is required"}
        _, resp = await post(p, rpc("picky", {"n": 5}, id_=8))
        assert resp["result"] == {"n": "5"}

        _, resp = await post(p, rpc("boom", id_=9))
        assert resp["id"] == 9
        assert resp["error"] == {"code": INTERNAL_ERROR, "message": "Internal error", "data": "kaput"}

        # a batch answers each member in order; a notification (no id) gets no answer
        _, resp = await post(
            p, [rpc("health", id_=10), {"jsonrpc": "2.0", "method": "health"}, rpc("nope", id_=11)]
        )
        assert [r["id"] for r in resp] == [10, 11] and resp[1]["error"]["code"] == METHOD_NOT_FOUND

    run(body)


# ---- WebSocket subscriptions ------------------------------------------------------------------------


def test_subscribe_ack_and_event_carry_the_request_id():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            q = f"tm.event='Tx' AND message.sender='{SENDER}'"
            ack = await ws_call(ws, rpc("subscribe", {"query": q}, id_=41))
            assert ack == {"jsonrpc": "2.0", "id": 41, "result": {}}
            # ordinary RPC works over the socket too
            assert (await ws_call(ws, rpc("health", id_=42)))["result"] == {}
            assert server.publish(tx_events(), TX_DATA) == 1
            msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert msg["jsonrpc"] == "2.0" and msg["id"] == 41
            assert msg["result"]["query"] == q
            assert msg["result"]["data"] == TX_DATA
            assert msg["result"]["events"]["place_order.order_id"] == ["17", "18"]
            assert msg["result"]["events"]["tm.event"] == ["Tx"]
            # tm.event is derived from data.type when the publisher leaves it out
            ev = tx_events()
            del ev["tm.event"]
            assert server.publish(ev, TX_DATA) == 1
            assert json.loads(await ws.recv())["result"]["events"]["tm.event"] == ["Tx"]
            # another sender: not delivered
            assert server.publish(tx_events(sender="sei1other"), TX_DATA) == 0
            assert await no_message(ws)

    run(body)


def test_query_grammar_delivery():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            queries = {
                1: "tm.event='Tx' AND tx.height >= 12",
                2: "tx.height>12",
                3: "message.action CONTAINS 'MsgPlaceOrders'",
                4: "place_order.order_id EXISTS",
                5: "tm.event = 'NewBlockHeader'",
            }
            for i, q in queries.items():
                assert (await ws_call(ws, rpc("subscribe", {"query": q}, id_=i)))["result"] == {}

            assert server.publish(tx_events(height="12"), TX_DATA) == 3  # 1, 3, 4
            got = sorted([json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["id"] for _ in range(3)])
            assert got == [1, 3, 4]
            assert await no_message(ws)

            cancel = {"tm.event": ["Tx"], "tx.height": ["13"], "message.action": ["/x.MsgCancelOrders"]}
            assert server.publish(cancel, TX_DATA) == 2  # 1, 2
            got = sorted([json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["id"] for _ in range(2)])
            assert got == [1, 2]

            header = {"type": "tendermint/event/NewBlockHeader", "value": {"header": {"height": "14"}}}
            assert server.publish({}, header) == 1
            msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert msg["id"] == 5 and msg["result"]["data"]["type"] == "tendermint/event/NewBlockHeader"
            assert await no_message(ws)

    run(body)


@pytest.mark.parametrize(
    ("query", "events", "expected"),
    [
        ("tm.event='Tx'", {"tm.event": ["Tx"]}, True),
        ("tm.event='Tx'", {"tm.event": ["NewBlock"]}, False),
        ("tm.event = 'Tx' AND tx.height = 5", {"tm.event": ["Tx"], "tx.height": ["5"]}, True),
        ("tx.height = 5", {"tx.height": ["5.0"]}, True),  # numbers compare as numbers
        ("tx.height < 10", {"tx.height": ["9"]}, True),
        ("tx.height < 10", {"tx.height": ["10"]}, False),
        ("tx.height <= 10", {"tx.height": ["10"]}, True),
        ("tx.height > 9.5", {"tx.height": ["10"]}, True),
        ("tx.height >= 100", {"tx.height": ["99"]}, False),
        ("tx.height > 1", {"tx.height": ["abc"]}, False),  # not a number: no match
        ("transfer.amount > 5", {"transfer.amount": ["1", "7"]}, True),  # any value of the key
        ("message.sender CONTAINS 'sei1q'", {"message.sender": [SENDER]}, True),
        ("message.sender CONTAINS 'zzz'", {"message.sender": [SENDER]}, False),
        ("place_order.order_id EXISTS", {"place_order.order_id": ["1"]}, True),
        ("place_order.order_id EXISTS", {"cancel_order.cancellation_id": ["1"]}, False),
        ("tm.event='Tx' AND place_order.order_id EXISTS", {"tm.event": ["Tx"]}, False),
        ("block.time > TIME 2024-01-01T00:00:00Z", {"block.time": ["2024-05-01T12:00:00.123456789Z"]}, True),
        ("block.date = DATE 2024-05-01", {"block.date": ["2024-05-01"]}, True),
    ],
)
def test_query_evaluator(query, events, expected):
    assert Query(query).matches(events) is expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "tm.event",
        "tm.event=",
        "tm.event='Tx' AND",
        "tm.event='Tx' OR tx.height=1",
        "tx.height < 'a'",
        "x CONTAINS 5",
        "tm.event='Tx' tx.height=1",
        'tm.event="Tx"',
        "= 'x'",
    ],
)
def test_query_parse_errors(bad):
    with pytest.raises(QueryError):
        Query(bad)


def test_query_normal_form():
    assert str(Query("tm.event='Tx'   AND  tx.height>5")) == "tm.event = 'Tx' AND tx.height > 5"


def test_subscription_limits_and_unsubscribe():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            for i in range(5):
                ack = await ws_call(ws, rpc("subscribe", {"query": f"tx.height = {i}"}, id_=i))
                assert ack["result"] == {}
            sixth = await ws_call(ws, rpc("subscribe", {"query": "tx.height = 99"}, id_=99))
            assert sixth["id"] == 99 and sixth["error"]["code"] == INTERNAL_ERROR
            assert "max_subscriptions_per_client 5" in sixth["error"]["data"]

            # unsubscribe frees a slot; the removed query gets nothing any more
            r = await ws_call(ws, rpc("unsubscribe", {"query": "tx.height=0"}, id_=100))
            assert r == {"jsonrpc": "2.0", "id": 100, "result": {}}
            assert server.publish({"tx.height": ["0"]}, TX_DATA) == 0
            assert await no_message(ws)
            assert server.publish({"tx.height": ["1"]}, TX_DATA) == 1
            assert json.loads(await ws.recv())["id"] == 1
            r = await ws_call(ws, rpc("unsubscribe", {"query": "tx.height = 0"}, id_=101))
            assert r["error"]["code"] == INTERNAL_ERROR and "not found" in r["error"]["data"]

            # query length: 512 characters pass the length check, 513 do not
            ok = "a" * (512 - len(" EXISTS")) + " EXISTS"
            assert len(ok) == 512
            assert (await ws_call(ws, rpc("subscribe", {"query": ok}, id_=102)))["result"] == {}
            r = await ws_call(ws, rpc("unsubscribe_all", id_=103))
            assert r["result"] == {}
            too_long = "a" * (513 - len(" EXISTS")) + " EXISTS"
            r = await ws_call(ws, rpc("subscribe", {"query": too_long}, id_=104))
            assert r["error"]["code"] == INTERNAL_ERROR and "maximum query length" in r["error"]["data"]

            r = await ws_call(ws, rpc("subscribe", {"query": "tm.event='Tx' OR x=1"}, id_=105))
            assert r["error"]["code"] == INTERNAL_ERROR and "failed to parse query" in r["error"]["data"]
            r = await ws_call(ws, rpc("subscribe", {"query": 5}, id_=106))
            assert r["error"]["code"] == INVALID_PARAMS
            assert (await ws_call(ws, rpc("subscribe", {"query": "a EXISTS"}, id_=107)))["result"] == {}
            r = await ws_call(ws, rpc("subscribe", {"query": "a  EXISTS"}, id_=108))
            assert r["error"]["data"] == "already subscribed"
            assert (await ws_call(ws, rpc("unsubscribe_all", id_=109)))["result"] == {}
            assert (await ws_call(ws, rpc("unsubscribe_all", id_=110)))["error"]["code"] == INTERNAL_ERROR
            assert server.publish({"a": ["1"], "tx.height": ["1"]}, TX_DATA) == 0

        # limits are per client: a second connection has its own five
        async with connect(server.ws_url) as a, connect(server.ws_url) as b:
            for ws in (a, b):
                for i in range(5):
                    assert (await ws_call(ws, rpc("subscribe", {"query": f"k = {i}"}, id_=i)))["result"] == {}
            assert server.publish({"k": ["3"]}, TX_DATA) == 2

    run(body)


def test_ws_parse_error_and_wrong_path():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            await ws.send("{not json")
            msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert msg["error"]["code"] == PARSE_ERROR
            assert (await ws_call(ws, rpc("status", id_=1)))["result"]["node_info"]["network"] == "atlantic-2"
        with pytest.raises(InvalidStatus):
            async with connect(server.url.replace("http", "ws") + "/elsewhere", open_timeout=TIMEOUT):
                pass

    run(body)


# ---- liveness and fault injection -------------------------------------------------------------------


async def raw_ws_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(b"0123456789abcdef").decode()
    writer.write(
        (
            f"GET /websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def test_silent_client_dropped_while_ponging_client_stays():
    async def body(server: SeiRPCServer):
        loop = asyncio.get_running_loop()
        # the websockets client answers pings by itself; its own pings are off so only pongs keep it alive
        async with connect(server.ws_url, ping_interval=None) as alive:
            reader, writer = await raw_ws_handshake(server.port)  # never writes anything again
            assert server.clients == 2
            t0 = loop.time()
            pings = 0
            while True:  # read (pings) until the server drops us
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), TIMEOUT)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                pings += chunk.count(b"\x89")  # FIN + PING opcode
            elapsed = loop.time() - t0
            writer.close()
            assert pings >= 2
            assert 0.5 <= elapsed < 2.0
            await asyncio.sleep(0.3)
            # the ponging client outlived several timeouts and still works
            assert server.clients == 1
            assert (await ws_call(alive, rpc("health", id_=1)))["result"] == {}

    run(body, ping_interval=0.15, read_timeout=0.6)


def test_drop_all_clients_closes_socket():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            assert (await ws_call(ws, rpc("subscribe", {"query": "tm.event='Tx'"}, id_=1)))["result"] == {}
            assert server.drop_all_clients() == 1
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        for _ in range(50):
            if server.clients == 0:
                break
            await asyncio.sleep(0.01)
        assert server.clients == 0
        assert server.publish(tx_events(), TX_DATA) == 0
        # the server keeps accepting: a reconnect resubscribes and gets events
        async with connect(server.ws_url) as ws:
            assert (await ws_call(ws, rpc("subscribe", {"query": "tm.event='Tx'"}, id_=2)))["result"] == {}
            assert server.publish(tx_events(), TX_DATA) == 1
            assert json.loads(await ws.recv())["id"] == 2

    run(body)


def test_pause_pushes_drop_and_buffer():
    async def body(server: SeiRPCServer):
        async with connect(server.ws_url) as ws:
            assert (await ws_call(ws, rpc("subscribe", {"query": "tx.height EXISTS"}, id_=1)))["result"] == {}
            server.pause_pushes(True)
            assert server.publish(tx_events(height="1"), TX_DATA) == 0
            assert (await ws_call(ws, rpc("health", id_=2)))["id"] == 2  # RPC still answers
            server.pause_pushes(False)
            assert await no_message(ws)  # lost
            assert server.dropped_while_paused == 1

            server.pause_pushes(True, buffer=True)
            server.publish(tx_events(height="2"), TX_DATA)
            server.publish(tx_events(height="3"), TX_DATA)
            assert await no_message(ws)
            server.pause_pushes(False)
            heights = [json.loads(await ws.recv())["result"]["events"]["tx.height"] for _ in range(2)]
            assert heights == [["2"], ["3"]]

    run(body)


def test_stop_closes_everything_and_is_idempotent():
    async def main():
        server = SeiRPCServer()
        await server.start()
        ws = await connect(server.ws_url)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # idle HTTP keep-alive
        await asyncio.wait_for(server.stop(), 5.0)
        await server.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()

    asyncio.run(main())
