"""Hypothesis fuzzing of everything Citrex-side that reads outside input: every answer parser, the REST client over
raw HTTP, the connector's intake of polled trades and books, and the double's request handlers (its JSON bodies,
query strings and raw HTTP). The rule, as in tests/test_fuzz.py: accepted, or refused with the module's own
error (ParseError / APIError, RateLimited / TransportError, an HTTP 4xx answer) — never another exception, a
hang or a dead server. Deterministic (derandomize, no database); FLASHMM_FUZZ_SCALE=N searches N times more."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flashmm.config import CitrexConfig, Config
from flashmm.core.domain import BookDiff, BookSnapshot, Fill, Trade
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.citrex import api
from flashmm.venues.citrex.devnode import CitrexDevNode
from flashmm.venues.citrex.exchange import Exchange
from flashmm.venues.citrex.rest import CitrexREST, OutcomeUnknown, RateLimited, TransportError
from flashmm.venues.citrex.signing import CitrexSigner, Domain, OrderType, TimeInForce
from flashmm.venues.citrex.venue import CitrexVenue
from flashmm.venues.transport import EndpointPool
from tests.test_citrex_api import (
    BALANCES,
    ETH_BOOK,
    HEALTH,
    MARKET_FOK_ORDER,
    OPEN_ORDERS,
    POSITIONS,
    PRODUCTS,
    TRADE_HISTORY,
)

_SCALE = int(os.environ.get("FLASHMM_FUZZ_SCALE", "0") or 0)
FUZZ = settings(derandomize=_SCALE == 0, database=None, deadline=None, print_blob=_SCALE > 0,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(n: int) -> settings:
    return settings(FUZZ, max_examples=n * max(_SCALE, 1))


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["", "0", "-1", "1e18", "0x", "99" * 30, "<nil>",
                                                           "0x" + "ab" * 20, "12.5", " 7"]))
JSON = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                 st.dictionaries(st.text(max_size=8), c, max_size=4)), max_leaves=12)


def _mutate(doc: Any) -> st.SearchStrategy:
    """A valid answer with one field (at any depth) replaced, removed, or the whole thing replaced."""
    paths: list[tuple] = []

    def walk(x: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, path + (k,))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, path + (i,))

    walk(doc, ())

    def apply(path: tuple, value: Any, delete: bool) -> Any:
        if not path:
            return value
        d = json.loads(json.dumps(doc))
        target = d
        for p in path[:-1]:
            target = target[p]
        if delete and isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
        return d

    return st.builds(apply, st.sampled_from(paths), JSON, st.booleans())


PARSERS = [
    (api.parse_products, PRODUCTS), (api.parse_depth, ETH_BOOK), (api.parse_trade_history, TRADE_HISTORY),
    (api.parse_order, MARKET_FOK_ORDER), (api.parse_orders, OPEN_ORDERS), (api.parse_positions, POSITIONS),
    (api.parse_balances, BALANCES), (api.parse_account_health, HEALTH),
    (api.parse_server_time, {"serverTime": 1709829760000}), (lambda d: api.parse_success(d, "x"), {"success": True}),
]


@fuzz(60)
@given(data=st.data(), which=st.integers(0, len(PARSERS) - 1))
@example(data=None, which=2)
def test_every_answer_parser_returns_records_or_its_own_error(data, which):
    parser, valid = PARSERS[which]
    doc = valid if data is None else data.draw(st.one_of(_mutate(valid), JSON))
    try:
        parser(doc)
    except (api.ParseError, api.APIError):
        pass


@fuzz(80)
@given(body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40)),
       status=st.sampled_from([200, 201, 400, 404, 429, 500, 503, 999]),
       framing=st.sampled_from(["length", "chunked", "close", "bad-length", "none"]),
       retry_after=st.sampled_from([None, "0.1", "soon", "-4"]), method=st.sampled_from(["GET", "POST", "DELETE"]))
def test_the_rest_client_answers_or_raises_its_own_errors(body, status, framing, retry_after, method):
    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                head = f"HTTP/1.1 {status} X\r\n" + (f"Retry-After: {retry_after}\r\n" if retry_after else "")
                if framing == "length":
                    head += f"Content-Length: {len(body)}\r\n\r\n"
                    payload = body
                elif framing == "chunked":
                    head += "Transfer-Encoding: chunked\r\n\r\n"
                    payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
                elif framing == "close":
                    head += "Connection: close\r\n\r\n"
                    payload = body
                elif framing == "bad-length":
                    head += "Content-Length: zz\r\n\r\n"
                    payload = body
                else:
                    head += "\r\n"
                    payload = body
                writer.write(head.encode() + payload)
                await writer.drain()
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        rest = CitrexREST(EndpointPool([f"http://127.0.0.1:{port}/v1"]), timeout_s=0.5)
        try:
            await rest.request(method, "order", body=b"{}" if method != "GET" else None)
        except (RateLimited, TransportError, OutcomeUnknown):
            pass
        finally:
            await rest.close()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 10))


U128 = st.integers(1, 2**128 - 1)
TRADES = st.lists(st.builds(
    api.TradeRecord, uid=st.text(min_size=1, max_size=6), price=U128, quantity=U128,
    created_at_ms=st.integers(0, 2**53), taker_account=st.sampled_from(["0x" + "11" * 20, "0x" + "22" * 20]),
    taker_sub=st.integers(0, 3), maker_account=st.sampled_from(["0x" + "11" * 20, "0x" + "33" * 20]),
    maker_sub=st.integers(0, 3), taker_id=st.sampled_from(["0xa", "0xb", "0xc"]),
    maker_id=st.sampled_from(["0xa", "0xb", "0xd"]), taker_is_buyer=st.booleans(),
    taker_fees=st.integers(-(2**100), 2**100), maker_fees=st.integers(-(2**100), 2**100)), max_size=8)
LEVELS = st.lists(st.tuples(U128, st.integers(0, 2**128)), max_size=6)


@fuzz(80)
@given(polls=st.lists(st.tuples(TRADES, LEVELS, LEVELS), min_size=1, max_size=5))
def test_the_connectors_intake_of_any_polled_trades_and_books(polls):
    """Whatever trades and levels a poll returns (after parsing), the connector's events are well formed: fills and
    trades with positive lots, books in sequence, never an exception."""
    configure_logging("error")
    product = api.parse_products(PRODUCTS)[0]
    signer = CitrexSigner("9" * 64, Domain())
    venue = CitrexVenue(Config(citrex=CitrexConfig(endpoints=["http://127.0.0.1:9/v1"])), signer, product)
    venue._account = "0x" + "11" * 20  # noqa: SLF001 - the fuzzed trades name this account
    venue._by_id["0xa"] = 1  # noqa: SLF001 - one order of ours is known
    seq = 0
    for trades, bids, asks in polls:
        depth = api.Depth(sorted(dict(bids).items(), reverse=True), sorted(dict(asks).items()))
        fresh = venue._new_trades(trades)  # noqa: SLF001
        events = venue._on_trades(fresh, 1) + venue._market_events(fresh, depth, 1)  # noqa: SLF001
        for e in events:
            if isinstance(e, (Fill, Trade)):
                assert e.lots > 0
            if isinstance(e, (BookSnapshot, BookDiff)):
                assert (e.seq if isinstance(e, BookSnapshot) else e.first_seq) == seq + 1
                seq += 1
                levels = e.bids + e.asks
                assert all(p > 0 and q >= 0 for p, q in levels)


ORDER_KEYS = ["expiration", "nonce", "price", "quantity", "signature", "account", "isBuy", "orderType", "productId",
              "subAccountId", "timeInForce"]


def _valid_order() -> dict:
    s = CitrexSigner("4" * 64, Domain())
    return s.order(1004, True, OrderType.LIMIT_MAKER, TimeInForce.GTC, 3990 * 10**14, 10**18, 1,
                   int(time.time() * 1000) + 10**9)


@fuzz(100)
@given(data=st.data(), handler=st.sampled_from(["place", "cancel", "cancel_all", "cancel_and_replace"]))
def test_the_doubles_signed_request_handlers_answer_every_body(data, handler):
    ex = Exchange(Domain())
    valid = _valid_order()
    if handler == "cancel_and_replace":
        valid = {"idToCancel": "0x01", "newOrder": valid}
    body = data.draw(st.one_of(_mutate(valid), JSON))
    status, doc = getattr(ex, handler)(body)
    assert status in (200, 400, 401, 404)
    assert status == 200 or doc["success"] is False and doc["error"]


@fuzz(60)
@given(query=st.dictionaries(st.sampled_from(["account", "subAccountId", "signature", "symbol", "limit",
                                              "granularity", "lookback"]),
                             st.one_of(st.text(max_size=70), st.sampled_from(["seiperp", "1", "20", "14", "500",
                                                                               "0x" + "ab" * 20, "-1", "99999"]))),
       read=st.sampled_from(["open_orders", "positions", "balances", "account_health", "depth", "trade_history"]))
def test_the_doubles_reads_answer_every_query(query, read):
    status, _ = getattr(Exchange(Domain()), read)(query)
    assert status in (200, 400, 401)


@fuzz(40)
@given(raw=st.one_of(st.binary(max_size=200), st.builds(
    lambda m, p, h, b: f"{m} {p} HTTP/1.1\r\n{h}\r\n".encode() + b,
    st.sampled_from(["GET", "POST", "DELETE", "PUT", "X"]),
    st.sampled_from(["/v1/order", "/v1/depth?symbol=seiperp", "/v1/openOrders", "/v1/x", "/devnode/faults", "*"]),
    st.sampled_from(["Content-Length: 5\r\n", "Content-Length: -1\r\n", "Transfer-Encoding: chunked\r\n", ""]),
    st.binary(max_size=40))))
def test_the_double_survives_raw_http_garbage(raw):
    configure_logging("error")

    async def main() -> None:
        async with CitrexDevNode([0], makers=0, takers=0) as node:
            port = node.listeners[0].port
            with contextlib.suppress(Exception):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(raw)
                await w.drain()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(r.read(4096), 0.2)
                w.close()
            r, w = await asyncio.open_connection("127.0.0.1", port)  # still serving
            w.write(b"GET /v1/time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await w.drain()
            assert (await asyncio.wait_for(r.read(), 5)).startswith(b"HTTP/1.1 200")
            w.close()

    asyncio.run(asyncio.wait_for(main(), 15))
