"""The Citrex double: signature, nonce, tick, size, post-only and expiration rules; price-time matching; accounts;
the REST shapes over real HTTP on 127.0.0.1; fault injection; the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from flashmm.telemetry.logging import configure_logging
from flashmm.venues.citrex import api
from flashmm.venues.citrex.devnode import CitrexDevNode
from flashmm.venues.citrex.exchange import Exchange
from flashmm.venues.citrex.signing import WEI, CitrexSigner, Domain, OrderType, TimeInForce
from flashmm.venues.transport import Endpoint, HTTPConnections
from tests.conftest import ROOT

A, B = "1" * 64, "2" * 64
SEI = 1004
TICK, LOT = 10**14, 10**18
FAR = 4_000_000_000_000


@pytest.fixture
def ex() -> Exchange:
    configure_logging("error")
    return Exchange(Domain())


def _order(s: CitrexSigner, is_buy: bool, ticks: int, lots: int, otype=OrderType.LIMIT_MAKER, tif=TimeInForce.GTC,
           nonce: int | None = None, expiration: int = FAR) -> dict:
    return s.order(SEI, is_buy, otype, tif, ticks * TICK, lots * LOT, nonce or s.nonces.next(), expiration)


def test_a_signature_must_recover_the_account(ex):
    a, b = CitrexSigner(A, Domain()), CitrexSigner(B, Domain())
    body = _order(a, True, 3990, 10)
    status, doc = ex.place({**body, "account": b.address})
    assert status == 401 and "signer is not the account" in doc["error"]
    assert ex.place({**body, "signature": "0x" + "00" * 65})[0] == 401
    other_chain = CitrexSigner(A, Domain(1328))
    assert ex.place(_order(other_chain, True, 3990, 10))[0] == 401  # signed for another domain
    status, doc = ex.place(body)
    assert status == 200 and doc["status"] == "OPEN" and doc["id"].startswith("0x")
    assert ex.place(body)[1]["error"] == "nonce already used"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: {**b, "price": str(3990 * TICK + 1)}, "multiple of the increment"),
    (lambda b: {**b, "quantity": str(LOT // 2)}, "multiple of minQuantity"),
    (lambda b: {**b, "quantity": "1.5"}, "invalid quantity"),
    (lambda b: {**b, "productId": 9}, "unknown product"),
    (lambda b: {**b, "isBuy": "yes"}, "invalid isBuy"),
])
def test_orders_off_the_products_rules_are_refused(ex, edit, message):
    a = CitrexSigner(A, Domain())
    status, doc = ex.place(edit(_order(a, True, 3990, 10)))
    assert status in (400, 401) and (message in doc["error"] or doc["error"].startswith("invalid signature"))
    # the rules hold for correctly signed orders too
    bad = a.order(SEI, True, OrderType.LIMIT_MAKER, TimeInForce.GTC, 3990 * TICK + 1, LOT, a.nonces.next(), FAR)
    assert "increment" in ex.place(bad)[1]["error"]
    expired = _order(a, True, 3990, 1, expiration=int(time.time() * 1000) - 1)
    assert "expiration" in ex.place(expired)[1]["error"]


def test_post_only_is_refused_when_it_would_cross_and_matching_is_price_time(ex):
    a, b, c = (CitrexSigner(k, Domain()) for k in (A, B, "3" * 64))
    first = ex.place(_order(a, False, 4000, 5))[1]
    second = ex.place(_order(b, False, 4000, 5))[1]
    ex.place(_order(a, False, 4001, 5))
    status, doc = ex.place(_order(c, True, 4000, 1))  # LIMIT_MAKER at the best ask
    assert status == 400 and "post only order would cross" in doc["error"]
    status, doc = ex.place(_order(c, True, 4001, 7, OrderType.MARKET, TimeInForce.IOC))
    assert status == 200 and doc["status"] == "FILLED"
    trades = ex.trade_history({"symbol": "seiperp", "lookback": "10"})[1]["trades"]
    assert [(t["makerID"], t["quantity"], t["price"]) for t in reversed(trades)] == [
        (first["id"], str(5 * LOT), str(4000 * TICK)), (second["id"], str(2 * LOT), str(4000 * TICK))]
    assert ex.position(c.address, 1, SEI) == 7 * LOT and ex.position(a.address, 1, SEI) == -5 * LOT
    # fees: the taker pays 5 bps, the maker is paid its 1 bp rebate (recorded as negative)
    t = trades[-1]
    assert int(t["takerFees"]) == 5 * 4000 * TICK * 5 // 10_000 and int(t["makerFees"]) == -(5 * 4000 * TICK // 10_000)


def test_ioc_rest_is_cancelled_fok_is_whole_reduce_only_only_reduces(ex):
    a, b = CitrexSigner(A, Domain()), CitrexSigner(B, Domain())
    ex.place(_order(a, False, 4000, 3))
    doc = ex.place(_order(b, True, 4000, 5, OrderType.LIMIT, TimeInForce.IOC))[1]
    assert doc["status"] == "CANCELLED" and doc["residualQuantity"] == str(2 * LOT)
    ex.place(_order(a, False, 4000, 3))
    assert "fill or kill" in ex.place(_order(b, True, 4000, 5, OrderType.LIMIT, TimeInForce.FOK))[1]["error"]
    assert "reduce only" in ex.place(_order(b, True, 4000, 1, OrderType.LIMIT_REDUCE_ONLY, TimeInForce.IOC))[1]["error"]
    doc = ex.place(_order(b, False, 3990, 1, OrderType.LIMIT_REDUCE_ONLY, TimeInForce.GTC))[1]
    assert doc["status"] == "OPEN"


def test_cancels_and_cancel_and_replace(ex):
    a, b = CitrexSigner(A, Domain()), CitrexSigner(B, Domain())
    o1 = ex.place(_order(a, True, 3990, 5))[1]
    assert ex.cancel(b.cancel(o1["id"], SEI)) == (404, {"error": "order not found", "success": False})  # not b's
    status, doc = ex.cancel_and_replace(a.replace(o1["id"], SEI, True, 3995 * TICK, 4 * LOT, a.nonces.next(), FAR))
    assert status == 200 and doc["status"] == "OPEN" and doc["orderType"] == 1
    assert o1["id"] not in ex.orders and doc["id"] in ex.orders
    # a replacement that would cross is refused and the old order stays, at its place in the queue
    ex.place(_order(b, False, 4000, 5))
    status, err = ex.cancel_and_replace(a.replace(doc["id"], SEI, True, 4000 * TICK, LOT, a.nonces.next(), FAR))
    assert status == 400 and "post only" in err["error"] and doc["id"] in ex.orders
    plain_limit = a.order(SEI, True, OrderType.LIMIT, TimeInForce.GTC, 3990 * TICK, LOT, a.nonces.next(), FAR)
    assert "must be LIMIT_MAKER" in ex.cancel_and_replace({"idToCancel": doc["id"], "newOrder": plain_limit})[1]["error"]
    assert ex.cancel(a.cancel(doc["id"], SEI)) == (200, {"success": True})
    assert ex.cancel(a.cancel(doc["id"], SEI))[1]["error"] == "order not found"
    for p in (3980, 3981, 3982):
        ex.place(_order(a, True, p, 1))
    assert ex.cancel_all(a.cancel_all(SEI)) == (200, {"success": True})
    assert ex.open_orders({"account": a.address, "subAccountId": "1", "signature": a.sign(
        "SignedAuthentication", {"account": a.address, "subAccountId": 1})}) == (200, [])


def test_accounts_are_funded_and_reads_are_authenticated(ex):
    a = CitrexSigner(A, Domain())
    query = dict(part.split("=") for part in a.auth_query("seiperp").split("&"))
    assert api.parse_balances(ex.balances(query)[1])[0].quantity == 100_000 * WEI
    assert ex.open_orders({**query, "signature": "0x" + "11" * 65})[0] == 401
    b = CitrexSigner(B, Domain())
    ex.place(_order(a, False, 4000, 10))
    ex.place(_order(b, True, 4000, 10, OrderType.MARKET, TimeInForce.IOC))
    (pos,) = api.parse_positions(ex.positions(query)[1])
    assert pos.quantity == -10 * LOT and pos.avg_entry_price == 4000 * TICK
    health = api.parse_account_health(ex.account_health({"account": a.address, "subAccountId": "1"})[1])
    assert health.values["initialMarginUsed"] > 0 and health.values["equity"] > 100_000 * WEI  # the rebate


def test_rest_shapes_over_http_and_faults():
    configure_logging("error")

    async def main():
        async with CitrexDevNode([0, 0], makers=1, takers=0, maker_interval_s=0.05) as node:
            http, ep = HTTPConnections(), Endpoint(node.urls[0])
            await asyncio.sleep(0.3)  # the maker posts its ladder
            r = await http.request(ep, "GET", "/depth?symbol=seiperp&limit=5&granularity=14")
            depth = api.parse_depth(orjson.loads(r.body))
            assert r.status == 200 and len(depth.bids) == 5 and len(depth.asks) == 5
            assert depth.bids[0][0] < depth.asks[0][0]
            assert api.parse_products(orjson.loads((await http.request(ep, "GET", "/products")).body))[0].id == SEI
            r = await http.request(ep, "GET", "/depth?symbol=seiperp&limit=7")
            assert r.status == 400
            # faults: the next request answered 429 with Retry-After, then 503, then dropped, then slow
            admin = Endpoint(node.urls[0].removesuffix("/v1"))
            # (a dropped kept-alive connection is retried once on a fresh one: two drops fail the request)
            for fault in ({"status": 429, "retry_after": 0.25}, {"status": 503}, {"drop": 2}, {"delay_s": 0.3}):
                await http.request(admin, "POST", "/devnode/faults", orjson.dumps(fault))
            r = await http.request(ep, "GET", "/time")
            assert r.status == 429 and r.headers["retry-after"] == "0.25"
            assert (await http.request(ep, "GET", "/time")).status == 503
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ValueError)):
                await http.request(ep, "GET", "/time")
            t0 = time.monotonic()
            assert (await http.request(ep, "GET", "/time")).status == 200 and time.monotonic() - t0 >= 0.3
            # faults are per listener: the second listener serves normally meanwhile
            other = Endpoint(node.urls[1])
            await http.request(admin, "POST", "/devnode/faults", orjson.dumps({"status": 500, "count": 5}))
            assert (await http.request(other, "GET", "/time")).status == 200
            await http.close([ep, admin, other])
            return node.stats

    stats = asyncio.run(main())
    assert stats["signed_requests"] == 0  # no request above carried a signature


def test_cli_prints_its_urls_and_stops_on_sigterm(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "flashmm.cli", "citrex-devnode", "--port", "0", "--port", "0",
                             "--makers", "0", "--takers", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["product"] == "seiperp" and info["chain_id"] == 1329 and len(info["urls"]) == 2
        assert all(u.startswith("http://127.0.0.1:") and u.endswith("/v1") for u in info["urls"])
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    bad = subprocess.run([sys.executable, "-m", "flashmm.cli", "citrex-devnode", "--product", "dogeperp"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "unknown product" in bad.stderr
