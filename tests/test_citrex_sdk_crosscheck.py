"""FlashMM's Citrex requests equal the official client's, byte for byte, on the wire.

The official TypeScript client, npm `citrex-sdk@1.2.2`, is installed with npm into a temporary folder and run
under node (tests/citrex_sdk_probe.mjs). It and FlashMM's Citrex venue each talk to their own instance of the
Citrex double on 127.0.0.1 (the double records every request as it arrived); both make the same calls with the
same key, nonces and expirations: every signed type FlashMM uses (Order as LIMIT_MAKER, LIMIT and MARKET,
cancel-and-replace, CancelOrder, CancelOrders, SignedAuthentication) and every read. Method, path, query
string, body bytes (so signatures) and Content-Type must be equal. node and npm come from Debian
(scripts/test installs them when missing); a missing node or a failed install fails the test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flashmm.config import CitrexConfig, Config, RiskConfig
from flashmm.core.domain import CancelOrder, OrderType, PlaceOrder, Side
from flashmm.telemetry.logging import configure_logging
from flashmm.venues.citrex.devnode import CitrexDevNode
from flashmm.venues.citrex.signing import MAINNET_VERIFYING_CONTRACT, CitrexSigner, Domain
from flashmm.venues.citrex.venue import CitrexVenue, fetch_product

SDK = "citrex-sdk@1.2.2"
KEY = "0xa608cd43cbc3d59bc51443f475b96a4654e956d6cc91783598a8e76a34000174"  # the client's test key (vitest/utils.ts)
PROBE = Path(__file__).with_name("citrex_sdk_probe.mjs")
EXP = 1_900_000_000_000  # ms: an expiration in the future, the same on both sides
NONCES = [1_795_000_000_000_001 + i for i in range(6)]  # microsecond timestamps, the same on both sides
PID, SYMBOL = 1004, "seiperp"  # the double's SEI perpetual: tick 0.0001 (granularity 14), lot 1 SEI


@pytest.fixture(scope="session")
def citrex_sdk(tmp_path_factory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the cross-check with the official client "
                    "(scripts/test installs them from Debian)")
    d = tmp_path_factory.mktemp("citrex-sdk")
    (d / "package.json").write_text('{"private": true}\n')
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", SDK],
                       cwd=d, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"npm install {SDK} failed: {r.stderr[-2000:]}")
    shutil.copy(PROBE, d / PROBE.name)
    return d


def _sdk_calls() -> list[dict]:
    order = {"productId": PID, "expiration": EXP}
    return [
        {"op": "getProducts", "name": "products"},
        {"op": "getServerTime", "name": "time"},
        {"op": "placeOrder", "name": "q1", "args": {**order, "isBuy": True, "orderType": 1, "timeInForce": 0,
                                                    "price": 0.399, "quantity": 500, "nonce": NONCES[0]}},
        {"op": "placeOrder", "name": "q2", "args": {**order, "isBuy": False, "orderType": 1, "timeInForce": 0,
                                                    "price": 0.401, "quantity": 500, "nonce": NONCES[1]}},
        {"op": "cancelAndReplaceOrder", "name": "r1", "ref": "q1",
         "args": {**order, "isBuy": True, "price": 0.3991, "quantity": 400, "nonce": NONCES[2]}},
        {"op": "cancelOrder", "name": "c2", "ref": "q2", "productId": PID},
        {"op": "placeOrder", "name": "q3", "args": {**order, "isBuy": False, "orderType": 0, "timeInForce": 0,
                                                    "price": 0.402, "quantity": 300, "nonce": NONCES[3]}},
        {"op": "placeOrder", "name": "q4", "args": {**order, "isBuy": False, "orderType": 1, "timeInForce": 0,
                                                    "price": 0.403, "quantity": 200, "nonce": NONCES[4]}},
        {"op": "cancelOpenOrdersForProduct", "name": "all", "productId": PID},
        {"op": "placeOrder", "name": "m1", "args": {**order, "isBuy": True, "orderType": 2, "timeInForce": 2,
                                                    "price": 0.4125, "priceIncrement": str(10**14), "slippage": 0,
                                                    "quantity": 25, "nonce": NONCES[5]}},
        {"op": "listOpenOrders", "name": "oo", "symbol": SYMBOL},
        {"op": "listPositions", "name": "pos", "symbol": SYMBOL},
        {"op": "listBalances", "name": "bal"},
        {"op": "getAccountHealth", "name": "health"},
        {"op": "getOrderBook", "name": "depth", "symbol": SYMBOL, "limit": 20, "granularity": 14},
        {"op": "getTradeHistory", "name": "trades", "symbol": SYMBOL, "lookback": 100},
    ]


class _Nonces:
    def __init__(self, values: list[int]) -> None:
        self._it = iter(values)

    def next(self) -> int:
        return next(self._it)


def _place(cid: int, side: Side, price_ticks: int, lots: int, post_only: bool = True,
           order_type: OrderType = OrderType.LIMIT) -> PlaceOrder:
    return PlaceOrder(cid, side, price_ticks, lots, order_type, post_only)


async def _flashmm(url: str) -> dict:
    """FlashMM's venue making the same calls through its public interface (start, submit, account_state)."""
    cfg = Config(citrex=CitrexConfig(endpoints=[url], poll_interval_s=0.9, depth_levels=20, trade_lookback=100),
                 risk=RiskConfig(feed_stale_s=5.0))
    signer = CitrexSigner(KEY, Domain(1329, MAINNET_VERIFYING_CONTRACT), 1)
    signer.nonces = _Nonces(NONCES)  # the client's test pins nonces the same way
    venue = CitrexVenue(cfg, signer, await fetch_product(cfg.citrex))
    venue._expiration = lambda: EXP  # noqa: SLF001 - a fixed expiration, as the client's calls pass one

    async def send(*actions) -> None:
        venue.submit(list(actions))
        await asyncio.sleep(0)
        while venue._sender is not None and not venue._sender.done():  # noqa: SLF001
            await venue._sender  # noqa: SLF001

    await venue.start()
    await send(_place(1, Side.BUY, 3990, 500))
    await send(_place(2, Side.SELL, 4010, 500))
    await send(CancelOrder(1), _place(3, Side.BUY, 3991, 400))  # one cancel-and-replace
    await send(CancelOrder(2))
    await send(_place(4, Side.SELL, 4020, 300, post_only=False))  # a plain LIMIT, GTC
    await send(_place(5, Side.SELL, 4030, 200))
    await send(CancelOrder(3), CancelOrder(4), CancelOrder(5))  # every resting order at once: one cancel-all
    await send(_place(6, Side.BUY, 4125, 25, post_only=False, order_type=OrderType.MARKET))
    await venue.account_state()
    await venue.read_account_info()
    status = venue.status()
    await venue.stop()
    return status


def _by_call(log: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in log:
        out.setdefault((r["method"], r["path"]), []).append(r)
    return out


def test_flashmm_requests_equal_the_official_clients_on_the_wire(citrex_sdk: Path, tmp_path: Path):
    configure_logging("error")

    async def main():
        async with CitrexDevNode([0], makers=0, takers=0) as sdk_node, CitrexDevNode([0], makers=0, takers=0) as ours:
            spec = tmp_path / "spec.json"
            spec.write_text(json.dumps({"key": KEY, "capture": sdk_node.url, "sub_account_id": 1,
                                        "verifying_contract": MAINNET_VERIFYING_CONTRACT, "calls": _sdk_calls()}))
            result = tmp_path / "sdk.json"
            proc = await asyncio.create_subprocess_exec("node", PROBE.name, str(spec), str(result), cwd=citrex_sdk,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, (out + err).decode()[-2000:]
            status = await _flashmm(ours.url)
            return json.loads(result.read_text()), list(sdk_node.requests_log), list(ours.requests_log), status

    sdk_out, sdk_log, our_log, status = asyncio.run(main())
    # the npm build signs with domain "ciao" on Sei mainnet, as FlashMM does
    assert sdk_out["domain"] == {"name": "ciao", "version": "0.0.0", "chainId": 1329,
                                 "verifyingContract": MAINNET_VERIFYING_CONTRACT}
    assert sdk_out["address"] == CitrexSigner(KEY, Domain()).address
    assert [r["name"] for r in sdk_out["results"] if r["error"]] == [], sdk_out["results"]
    assert status["orders_sent"] == 5 and status["replaces_sent"] == 1 and status["cancel_alls_sent"] == 1
    assert not {k: v for k, v in status.items() if k.startswith("reject_")}, status

    sdk, ours = _by_call(sdk_log), _by_call(our_log)
    compared = 0
    for key, n in ((("POST", "/v1/order"), 5), (("POST", "/v1/order/cancel-and-replace"), 1),
                   (("DELETE", "/v1/order"), 1), (("DELETE", "/v1/openOrders"), 1)):
        assert len(sdk.get(key, [])) == n and len(ours.get(key, [])) == n, (key, sdk.get(key), ours.get(key))
        for a, b in zip(sdk[key], ours[key], strict=True):
            assert b["body"] == a["body"], f"{key}: FlashMM sent\n{b['body']}\nthe official client sent\n{a['body']}"
            assert b["query"] == a["query"] == ""
            assert b["content_type"] == a["content_type"] == "text/plain;charset=UTF-8"
            assert json.loads(b["body"]).get("signature") or json.loads(b["body"])["newOrder"]["signature"]
            compared += 1
    for path in ("products", "time", "depth", "trade-history", "openOrders", "positionRisk", "balances",
                 "account-health"):
        key = ("GET", f"/v1/{path}")
        assert sdk.get(key) and ours.get(key), key
        assert ours[key][0]["query"] == sdk[key][0]["query"], (key, ours[key][0]["query"], sdk[key][0]["query"])
        assert ours[key][0]["body"] == sdk[key][0]["body"] == ""
        compared += 1
    assert compared == 16
    # signed reads carry the same SignedAuthentication signature
    assert "signature=0x" in ours[("GET", "/v1/openOrders")][0]["query"]
