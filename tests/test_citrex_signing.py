"""Citrex EIP-712 signing and request bodies against the official client's own test snapshots.

The repository citrex-markets/citrex-sdk (src/__tests__/client.orders.test.ts and client.account-data.test.ts,
commit 221db150d0215fcf88211cccecf3fc12c071d48c) pins the exact request bodies and signatures its client
produced for its test key. Those snapshots were made with the Rysk SDK's EIP-712 domain (the fork's origin):
{name "rysk", version "0.0.0", chainId 421614, verifyingContract 0x27809a3B...157C}; FlashMM's signer, given
that domain, must reproduce them byte for byte. (The npm build signs with {name "ciao", chainId 1329}: that
is checked against the installed client itself in test_citrex_sdk_crosscheck.py.)
"""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from flashmm.venues.citrex.signing import (
    CitrexSigner,
    Domain,
    NonceClock,
    OrderType,
    TimeInForce,
    body_bytes,
    recover,
    to_wei,
)

KEY = "0xa608cd43cbc3d59bc51443f475b96a4654e956d6cc91783598a8e76a34000174"  # vitest/utils.ts privateKey
ADDRESS = "0xb47B0b1e44B932Ae9Bb01817E7010A553A965Ea8"  # vitest/utils.ts address
RYSK = Domain(421614, "0x27809a3Bd3cf44d855f1BE668bFD16D34bcE157C", name="rysk")
ORDER_ID = "0x3505c6219b1f51cf216e432b153f8637c1fa9342520bd7c780bd80dafe0eed94"
REPLACED_ID = "0x08d4079c501e5fbb2153c7fe785ea4648ffcdac411d93511edcb5b18aecc158f"


@pytest.fixture
def signer() -> CitrexSigner:
    return CitrexSigner(KEY, RYSK, 1)


def test_the_address_is_the_clients(signer):
    assert signer.address == ADDRESS


def test_market_order_body_equals_the_client_snapshot(signer):
    # client.orders.test.ts "should allow a user to successfully place a market order": price 3450 with
    # the default 2.5 % slippage at increment 0.1 -> 3536.2, FOK, nonce and expiration from its fake clock
    body = signer.order(1002, True, OrderType.MARKET, TimeInForce.FOK, to_wei("3536.2"), to_wei("0.001"),
                        1709829780000000, 1712421770000)
    assert body_bytes(body) == (
        b'{"expiration":1712421770000,"nonce":1709829780000000,"price":"3536200000000000000000",'
        b'"quantity":"1000000000000000","signature":"0xab9a2fc1f10e2d0e81f7a3831f35c2dce96008281774ad2a85c0dc'
        b'02ecd47935024c20f9b9241495b46d9007c5520b12f15dd186fdaf846777a8dc287ac148f31b","account":"'
        + ADDRESS.encode() + b'","isBuy":true,"orderType":2,"productId":1002,"subAccountId":1,"timeInForce":1}')


def test_limit_ioc_order_body_equals_the_client_snapshot(signer):
    # "should allow a user to successfully place an order with all args passed (limit order)"
    body = signer.order(1002, True, OrderType.LIMIT, TimeInForce.IOC, to_wei(3450), to_wei("0.001"), 123,
                        1800000000000)
    assert body["signature"] == ("0x2cd5bdcf7586bb615e3ea7e0b696a6cdc31a564dbab23114475705003081a9cd18e1f9634421ff"
                                 "b650d4992d71009482bb061dc326ff3a42cd013d8eec082cb31c")
    assert body_bytes(body).startswith(b'{"expiration":1800000000000,"nonce":123,"price":"3450000000000000000000",')


def test_cancel_bodies_equal_the_client_snapshots(signer):
    assert body_bytes(signer.cancel(ORDER_ID, 1002)) == (
        b'{"account":"' + ADDRESS.encode() + b'","orderId":"' + ORDER_ID.encode() + b'","productId":1002,'
        b'"subAccountId":1,"signature":"0x98f70a0f2849a47f01e28b3ae9c0cbfd1f27f7209ca1ce71a524caf6100df88513ec8'
        b'31a84d37fb0913065d74e7fd8cdd4094d9f10e5db7a9a823d2b91f643a81c"}')
    assert body_bytes(signer.cancel_all(1002)) == (
        b'{"account":"' + ADDRESS.encode() + b'","productId":1002,"subAccountId":1,"signature":"0xdf4d943971097'
        b'7064a05cc2fe92df9c516615e3b49ca359165ada4f8eb19e8b738e2cafc2ea8c04cee08afeffcfc7bfeb962becdb376e2db8c'
        b'87717bf0c8b2011b"}')


def test_cancel_and_replace_bodies_equal_the_client_snapshots(signer):
    # default args: nonce = 1709829760000000, expiration = now + 30 days (fake clock at 1709829760000)
    body = signer.replace(REPLACED_ID, 1002, True, to_wei(3455), to_wei("0.001"), 1709829760000000, 1712421760000)
    assert body_bytes(body) == (
        b'{"idToCancel":"' + REPLACED_ID.encode() + b'","newOrder":{"expiration":1712421760000,"nonce":'
        b'1709829760000000,"price":"3455000000000000000000","quantity":"1000000000000000","signature":"0xd8601fb'
        b'78e8a22a37b53c8c5365b45d53344832524276faeaa890bcd3e38e50746a1d08b38008931c81c8b186ef02da49e172540ffc'
        b'ee7b8554534d4687ec6831c","account":"' + ADDRESS.encode() + b'","isBuy":true,"orderType":1,'
        b'"productId":1002,"subAccountId":1,"timeInForce":0}}')
    body = signer.replace(REPLACED_ID, 1002, True, to_wei(3455), to_wei("0.001"), 123, 1800000000000)
    assert body["newOrder"]["signature"] == ("0xe85e19f4ac1f9389e9d4e89be1bdac251c207feb8c816d815a7c0c5caa140478"
                                             "2abc79e01a56ec949b536d2a50ef3fb9cc844e5069a32d80721cfc975a4e10cd1c")
    assert body["newOrder"]["orderType"] == OrderType.LIMIT_MAKER and body["newOrder"]["timeInForce"] == 0


def test_authenticated_read_query_equals_the_client_snapshot(signer):
    # client.account-data.test.ts: balances?account=..&signature=..&subAccountId=1 (and &symbol= for positions)
    sig = ("0xc95135c26cf468885196ee0ef87cfbc80ee88b7c41df7498c9b73cdcc2cca17946f0cd1dc60b1a2fbd5c3fddfc3559613085d2"
           "8be218b52fc704f278ad664a901b")
    assert signer.auth_query() == f"account={ADDRESS}&signature={sig}&subAccountId=1"
    assert signer.auth_query("blastperp") == f"account={ADDRESS}&signature={sig}&subAccountId=1&symbol=blastperp"


def test_a_signature_recovers_its_signer_and_no_other():
    s = CitrexSigner(KEY, Domain())
    msg = {"account": s.address, "subAccountId": 1, "productId": 1004}
    sig = s.sign("CancelOrders", msg)
    assert recover(Domain(), "CancelOrders", msg, sig) == s.address
    assert recover(Domain(1328), "CancelOrders", msg, sig) != s.address  # another chain: another signer
    assert recover(Domain(), "CancelOrders", {**msg, "productId": 1005}, sig) != s.address
    for bad in ("", "0x1234", "0x" + "00" * 65, "0x" + "zz" * 65, 5):
        with pytest.raises(ValueError):
            recover(Domain(), "CancelOrders", msg, bad)  # type: ignore[arg-type]


def test_units_are_exact_18_decimal_integers():
    assert to_wei("0.4123") == 412_300_000_000_000_000
    assert to_wei(Decimal("3536.2")) == 3_536_200_000_000_000_000_000
    assert to_wei("0.000000000000000001") == 1
    for bad in ("0.0000000000000000001", "-1", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            to_wei(bad)


def test_order_numbers_out_of_their_eip712_types_are_refused():
    s = CitrexSigner(KEY, Domain())
    with pytest.raises(ValueError, match="price"):
        s.order(1, True, OrderType.LIMIT, TimeInForce.GTC, 2**128, 1, 1, 1)
    with pytest.raises(ValueError, match="nonce"):
        s.order(1, True, OrderType.LIMIT, TimeInForce.GTC, 1, 1, -1, 1)
    with pytest.raises(ValueError, match="sub-account"):
        CitrexSigner(KEY, Domain(), 256)


def test_nonces_are_microsecond_timestamps_strictly_increasing():
    clock = NonceClock()
    nonces = [clock.next() for _ in range(1000)]
    assert all(b > a for a, b in zip(nonces, nonces[1:]))
    assert 1.7e15 < nonces[0] < 1e16  # microseconds since the epoch, as the client's Date.now() * 1000


def test_the_signer_never_shows_or_pickles_its_key():
    s = CitrexSigner(KEY, Domain())
    assert KEY[2:] not in repr(s) and KEY[2:] not in str(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(ValueError, match="private key") as e:
        CitrexSigner("zz" * 32, Domain())
    assert "zz" * 32 not in str(e.value)
