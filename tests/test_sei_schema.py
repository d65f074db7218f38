"""x/dex schema, Dec encoding, tick checks and offline tx signing for the Sei venue (../shared/SEI.md).

Expected bytes are written out by hand. A protobuf tag is one varint: (field_number << 3) | wire_type,
wire type 0 = varint, 2 = length-delimited (strings, bytes, sub-messages); a LEN field is tag, length, bytes.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flashmm.venues.sei import schema as s
from flashmm.venues.sei import tx as t

PRICE_0_4125 = "412500000000000000"  # 0.4125 x 10^18, 18 characters
QTY_10 = "10000000000000000000"  # 10 x 10^18, 20 characters
KEY_ONE = "00" * 31 + "01"  # private key 1: its public key is the curve generator G
G_COMPRESSED = "0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"


# ---------------------------------------------------------------------------------- hand bytes


def test_order_encodes_to_hand_computed_bytes_and_back():
    order = s.Order(
        id=1,
        account="sei1a",
        price=PRICE_0_4125,
        quantity=QTY_10,
        priceDenom="USDC",
        assetDenom="SEI",
        orderType=s.OrderType.LIMIT,  # 0: proto3 default, not written
        positionDirection=s.PositionDirection.SHORT,
        nominal="0",
        triggerPrice="0",
        triggerStatus=True,
    )
    expected = (
        b"\x08\x01"  # field 1 id, varint: tag 1<<3|0 = 0x08; value 1
        # field 2 status = PLACED (0): default, omitted
        + b"\x1a\x05" + b"sei1a"  # field 3 account, LEN: tag 3<<3|2 = 0x1a; length 5
        # field 4 contractAddr empty: omitted
        + b"\x2a\x12" + PRICE_0_4125.encode()  # field 5 price, LEN: 5<<3|2 = 0x2a; length 18 = 0x12
        + b"\x32\x14" + QTY_10.encode()  # field 6 quantity: 6<<3|2 = 0x32; length 20 = 0x14
        + b"\x3a\x04" + b"USDC"  # field 7 priceDenom: 7<<3|2 = 0x3a
        + b"\x42\x03" + b"SEI"  # field 8 assetDenom: 8<<3|2 = 0x42
        # field 9 orderType LIMIT (0): omitted
        + b"\x50\x01"  # field 10 positionDirection, varint: 10<<3|0 = 80 = 0x50; SHORT = 1
        + b"\x6a\x01" + b"0"  # field 13 nominal: 13<<3|2 = 106 = 0x6a
        + b"\x72\x01" + b"0"  # field 14 triggerPrice: 14<<3|2 = 114 = 0x72
        + b"\x78\x01"  # field 15 triggerStatus, varint: 15<<3|0 = 120 = 0x78; true = 1
    )
    assert order.SerializeToString() == expected
    assert s.Order.FromString(expected) == order


def test_multi_byte_varints_and_enums():
    # id 300 = 0b1_0010_1100 -> low 7 bits 0101100 with continuation bit: 0xac, then 300 >> 7 = 2: 0x02
    # orderType MARKET = 1 -> field 9 varint tag 9<<3|0 = 0x48
    o = s.Order(id=300, orderType=s.OrderType.MARKET, status=s.OrderStatus.FULFILLED)
    assert o.SerializeToString() == b"\x08\xac\x02" + b"\x10\x03" + b"\x48\x01"  # status: field 2 tag 0x10
    assert s.Order.FromString(b"\x48\x06").orderType == s.OrderType.STOPLIMIT


def test_cancellation_bytes():
    c = s.Cancellation(
        id=7,
        initiator=s.CancellationInitiator.USER,  # 0: omitted
        creator="c",
        contractAddr="k",
        positionDirection=s.PositionDirection.SHORT,
        price=PRICE_0_4125,
    )
    expected = (
        b"\x08\x07"  # field 1 id
        + b"\x1a\x01c"  # field 3 creator: 3<<3|2 = 0x1a
        + b"\x22\x01k"  # field 4 contractAddr: 4<<3|2 = 0x22
        + b"\x38\x01"  # field 7 positionDirection, varint: 7<<3|0 = 0x38
        + b"\x42\x12" + PRICE_0_4125.encode()  # field 8 price: 8<<3|2 = 0x42
    )
    assert c.SerializeToString() == expected
    assert s.Cancellation.FromString(expected) == c


def test_msg_place_orders_with_nested_order_and_cosmos_coin_funds():
    msg = s.MsgPlaceOrders(creator="c", orders=[s.Order(id=1)], contractAddr="k")
    msg.funds.add(denom="usei", amount="5")
    expected = (
        b"\x0a\x01c"  # field 1 creator: 1<<3|2 = 0x0a
        + b"\x12\x02" + b"\x08\x01"  # field 2 orders: 2<<3|2 = 0x12; the Order {id: 1} is 2 bytes
        + b"\x1a\x01k"  # field 3 contractAddr
        # field 4 funds: 4<<3|2 = 0x22; Coin {1 denom "usei": 0a 04 ..., 2 amount "5": 12 01 35} = 9 bytes
        + b"\x22\x09" + b"\x0a\x04usei" + b"\x12\x015"
    )
    assert msg.SerializeToString() == expected
    assert s.MsgPlaceOrders.FromString(expected) == msg
    assert msg.funds[0].DESCRIPTOR.full_name == "cosmos.base.v1beta1.Coin"
    assert "cosmos/base/v1beta1/coin.proto" in s.FILE_DESCRIPTOR_PROTO.dependency
    # the exported Coin is the private pool's class
    assert s.MsgPlaceOrders(funds=[s.Coin(denom="usei", amount="5")]).funds[0].amount == "5"


def test_msg_cancel_orders_and_response():
    msg = s.MsgCancelOrders(creator="c", cancellations=[s.Cancellation(id=2)], contractAddr="k")
    assert msg.SerializeToString() == b"\x0a\x01c" + b"\x12\x02\x08\x02" + b"\x1a\x01k"
    # orderIds: repeated uint64, proto3 packs it: tag 1<<3|2 = 0x0a, length 3, varints 17, 300 (ac 02)
    resp = s.MsgPlaceOrdersResponse(orderIds=[17, 300])
    assert resp.SerializeToString() == b"\x0a\x03\x11\xac\x02"
    assert list(s.MsgPlaceOrdersResponse.FromString(b"\x0a\x03\x11\xac\x02").orderIds) == [17, 300]


def test_book_query_request_leaves_pagination_reserved():
    req = s.QueryAllLongBooksRequest(contractAddr="k", priceDenom="USDC", assetDenom="SEI")
    # fields 2, 3, 4: tags 0x12, 0x1a, 0x22; field 1 (pagination) is never written
    assert req.SerializeToString() == b"\x12\x01k" + b"\x1a\x04USDC" + b"\x22\x03SEI"
    assert "pagination" not in s.QueryAllLongBooksRequest.DESCRIPTOR.fields_by_name
    assert list(s.QueryAllShortBooksRequest.DESCRIPTOR.fields_by_name) == ["contractAddr", "priceDenom", "assetDenom"]
    with pytest.raises(ValueError):
        s.QueryAllLongBooksRequest(pagination=b"")


def test_book_response_round_trip():
    entry = s.OrderEntry(
        price=PRICE_0_4125,
        quantity=QTY_10,
        allocations=[s.Allocation(orderId=5, quantity=QTY_10, account="a")],
        priceDenom="USDC",
        assetDenom="SEI",
    )
    long_book = s.LongBook(price=PRICE_0_4125, entry=entry)
    # LongBook: 1 price (0x0a, 18), 2 entry (0x12, length of the entry)
    eb = entry.SerializeToString()
    assert long_book.SerializeToString() == b"\x0a\x12" + PRICE_0_4125.encode() + b"\x12" + bytes([len(eb)]) + eb
    # Allocation {1 orderId 5: 08 05, 2 quantity: 12 14 <20>, 3 account: 1a 01 61}
    alloc = s.Allocation(orderId=5, quantity=QTY_10, account="a").SerializeToString()
    assert alloc == b"\x08\x05" + b"\x12\x14" + QTY_10.encode() + b"\x1a\x01a"
    resp = s.QueryAllLongBooksResponse(LongBook=[long_book])
    assert s.QueryAllLongBooksResponse.FromString(resp.SerializeToString()) == resp
    short = s.QueryAllShortBooksResponse(ShortBook=[s.ShortBook(price="1", entry=entry)])
    assert s.QueryAllShortBooksResponse.FromString(short.SerializeToString()) == short


def test_match_result_and_orders_queries():
    settlement = s.SettlementEntry(
        account="a", priceDenom="USDC", assetDenom="SEI", quantity=QTY_10,
        executionCostOrProceed=PRICE_0_4125, expectedCostOrProceed=PRICE_0_4125,
        positionDirection="LONG", orderType="LIMIT", orderId=9, timestamp=1, height=2, settlementId=3,
    )
    # the last four uint64 fields 9..12: tags 0x48, 0x50, 0x58, 0x60
    assert settlement.SerializeToString().endswith(b"\x48\x09\x50\x01\x58\x02\x60\x03")
    mr = s.MatchResult(height=12, contractAddr="k", orders=[s.Order(id=1)], settlements=[settlement],
                       cancellations=[s.Cancellation(id=2)])
    resp = s.QueryGetMatchResultResponse(result=mr)
    assert s.QueryGetMatchResultResponse.FromString(resp.SerializeToString()).result == mr
    assert s.QueryGetMatchResultRequest(contractAddr="k").SerializeToString() == b"\x0a\x01k"
    assert s.QueryGetOrdersRequest(contractAddr="k", account="a").SerializeToString() == b"\x0a\x01k\x12\x01a"
    orders = s.QueryGetOrdersResponse(orders=[s.Order(id=1), s.Order(id=2)])
    assert orders.SerializeToString() == b"\x0a\x02\x08\x01" + b"\x0a\x02\x08\x02"
    # Pair: 3 priceTicksize, 4 quantityTicksize (Dec strings)
    pair = s.Pair(priceDenom="USDC", assetDenom="SEI", priceTicksize="1", quantityTicksize="2")
    assert pair.SerializeToString() == b"\x0a\x04USDC\x12\x03SEI\x1a\x011\x22\x012"


def test_enums_match_the_field_table():
    values = {e.name: {v.name: v.number for v in e.values} for e in s.FILE_DESCRIPTOR.enum_types_by_name.values()}
    assert values == {
        "PositionDirection": {"LONG": 0, "SHORT": 1},
        "OrderType": {"LIMIT": 0, "MARKET": 1, "FOKMARKET": 3, "FOKMARKETBYVALUE": 4, "STOPLOSS": 5, "STOPLIMIT": 6},
        "OrderStatus": {"PLACED": 0, "FAILED_TO_PLACE": 1, "CANCELLED": 2, "FULFILLED": 3},
        "CancellationInitiator": {"USER": 0, "LIQUIDATED": 1},
    }


def test_type_urls_and_query_paths():
    assert s.type_url(s.MsgPlaceOrders()) == "/seiprotocol.seichain.dex.MsgPlaceOrders"
    assert s.type_url(s.MsgCancelOrders) == "/seiprotocol.seichain.dex.MsgCancelOrders"
    assert s.TYPE_URL_PLACE_ORDERS == "/seiprotocol.seichain.dex.MsgPlaceOrders"
    assert s.query_path("LongBookAll") == "/seiprotocol.seichain.dex.Query/LongBookAll"
    assert set(s.QUERIES) == {"LongBookAll", "ShortBookAll", "GetMatchResult", "GetOrders"}


def test_private_pool_does_not_touch_the_default_pool():
    from google.protobuf import descriptor_pool

    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("seiprotocol.seichain.dex.Order")


def test_new_order_sends_non_nullable_decs_as_zero():
    o = s.new_order(account="a", contract_addr="k", price=D("0.4125"), quantity=D(10), price_denom="USDC",
                    asset_denom="SEI", direction=s.PositionDirection.LONG)
    assert (o.price, o.quantity, o.nominal, o.triggerPrice) == (PRICE_0_4125, QTY_10, "0", "0")
    assert o.orderType == s.OrderType.LIMIT and o.positionDirection == s.PositionDirection.LONG


# ------------------------------------------------------------------------------------------ Dec


@pytest.mark.parametrize(
    ("value", "wire", "json"),
    [
        (D("0.4125"), "412500000000000000", "0.412500000000000000"),
        (D(0), "0", "0.000000000000000000"),
        (D("0.000"), "0", "0.000000000000000000"),
        (D(1), "1000000000000000000", "1.000000000000000000"),
        (D("0.000000000000000001"), "1", "0.000000000000000001"),
        (D("12.5"), "12500000000000000000", "12.500000000000000000"),
        (D("1E+2"), "100" + "0" * 18, "100.000000000000000000"),
        (D("0.1000000000000000000000"), "100000000000000000", "0.100000000000000000"),  # trailing zeros only
        (7, "7" + "0" * 18, "7.000000000000000000"),
        ("0.5", "5" + "0" * 17, "0.500000000000000000"),
    ],
)
def test_dec_wire_and_json(value, wire, json):
    assert s.dec_to_wire(value) == wire
    assert s.dec_to_json(value) == json
    assert s.dec_from_wire(wire) == D(value)
    assert s.dec_from_json(json) == D(value)


@pytest.mark.parametrize("bad", [D(-1), D("-0.1"), D("NaN"), D("sNaN"), D("Infinity"), D("1E-19"),
                                 D("0.4125000000000000001"), "abc", "-3"])
def test_dec_rejections(bad):
    with pytest.raises(ValueError):
        s.dec_to_wire(bad)
    with pytest.raises(ValueError):
        s.dec_to_json(bad)


def test_dec_rejects_floats():
    with pytest.raises(TypeError):
        s.dec_to_wire(0.1)


@pytest.mark.parametrize("bad", ["1.5", " 1", "1e3", "abc", "+1", "-", "٣"])
def test_dec_from_wire_rejects_non_integer_text(bad):
    with pytest.raises(ValueError):
        s.dec_from_wire(bad)


def test_dec_from_wire_empty_is_zero_and_negative_is_opt_in():
    assert s.dec_from_wire("") == 0
    with pytest.raises(ValueError):
        s.dec_from_wire("-5")
    assert s.dec_from_wire("-5", allow_negative=True) == D("-5E-18")
    with pytest.raises(ValueError):
        s.dec_from_json("-0.5")


@given(st.integers(min_value=0, max_value=10**40))
def test_dec_round_trips(atto):
    value = D(f"{atto}E-18")  # exact (scaleb would round to the 28-digit context)
    assert s.dec_to_wire(value) == str(atto)
    assert s.dec_from_wire(s.dec_to_wire(value)) == value
    assert s.dec_from_json(s.dec_to_json(value)) == value


# ---------------------------------------------------------------------------------------- ticks


def test_tick_checks():
    pt, qt = D("0.0001"), D("0.1")
    assert s.check_order(D("0.4125"), D(10), pt, qt) is None
    assert s.check_order(D("0.41255"), D(10), pt, qt) == "price needs to be non-zero and multiple of price tick size"
    assert s.check_order(D(0), D(10), pt, qt) == s.PRICE_TICK_ERROR
    assert s.check_order(D("-0.4125"), D(10), pt, qt) == s.PRICE_TICK_ERROR
    assert s.check_order(D("0.4125"), D(0), pt, qt) == (
        "quantity needs to be non-zero and multiple of quantity tick size")
    assert s.check_order(D("0.4125"), D("10.05"), pt, qt) == s.QUANTITY_TICK_ERROR
    assert s.check_order(D("0.41255"), D(0), pt, qt) == s.PRICE_TICK_ERROR  # price is checked first
    # a quotient of 38 digits (beyond Decimal's default 28-digit context) is still exact
    assert s.check_order(D("1E20"), D("0.1"), D("1E-18"), qt) is None
    assert s.check_order(D("100000000000000000000.0000000000000000001"), D("0.1"), D("1E-18"), qt) == (
        s.PRICE_TICK_ERROR)
    with pytest.raises(ValueError):
        s.check_order(D(1), D(1), D(0), qt)


# -------------------------------------------------------------------------------- signed txs


CHAIN = "arctic-1"


def _place_msg(signer):
    return s.MsgPlaceOrders(
        creator=signer.address,
        contractAddr="sei1contract",
        orders=[s.new_order(account=signer.address, contract_addr="sei1contract", price=D("0.4125"),
                            quantity=D(10), price_denom="USDC", asset_denom="SEI",
                            direction=s.PositionDirection.LONG)],
    )


@pytest.fixture
def signer():
    return t.Signer("11" * 32, CHAIN)


def test_signed_tx_decodes_to_the_same_messages(signer):
    cancel = s.MsgCancelOrders(creator=signer.address, contractAddr="sei1contract",
                               cancellations=[s.Cancellation(id=4, creator=signer.address, price=PRICE_0_4125)])
    place = _place_msg(signer)
    gas, fee = t.fee_for(1, 1)
    raw = t.build_tx(signer, [cancel, place], account_number=42, sequence=7, gas_limit=gas, fee_usei=fee, memo="mm")
    d = t.decode_tx(raw)
    assert [u for u, _ in d.messages] == ["/seiprotocol.seichain.dex.MsgCancelOrders",
                                          "/seiprotocol.seichain.dex.MsgPlaceOrders"]
    assert s.MsgCancelOrders.FromString(d.messages[0][1]) == cancel
    assert s.MsgPlaceOrders.FromString(d.messages[1][1]) == place
    assert (d.pubkey, d.sequence, d.fee_usei, d.gas_limit) == (signer.public_key, 7, fee, gas)
    assert len(d.signature) == 64
    assert t.memo_of(raw) == "mm"
    assert tuple(d) == (d.messages, d.pubkey, d.sequence, d.fee_usei, d.gas_limit, d.signature)  # a 6-tuple
    assert t.address_from_pubkey(d.pubkey) == signer.address


def test_signing_is_deterministic(signer):
    a = t.build_tx(signer, [_place_msg(signer)], 1, 0, 120_000, 7_900)
    b = t.build_tx(signer, [_place_msg(signer)], 1, 0, 120_000, 7_900)
    assert a == b


def test_signature_verifies_only_with_the_right_chain_and_account(signer):
    raw = t.build_tx(signer, [_place_msg(signer)], account_number=42, sequence=7, gas_limit=120_000, fee_usei=7_900)
    assert t.verify_tx_signature(raw, CHAIN, 42)
    assert not t.verify_tx_signature(raw, "pacific-1", 42)
    assert not t.verify_tx_signature(raw, CHAIN, 43)
    # any change to the signed bytes breaks it: splice in the auth info of the same tx at sequence 8
    other = t.build_tx(signer, [_place_msg(signer)], account_number=42, sequence=8, gas_limit=120_000, fee_usei=7_900)
    from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw

    spliced = TxRaw.FromString(raw)
    spliced.auth_info_bytes = TxRaw.FromString(other).auth_info_bytes  # sequence 8, signature for 7
    assert not t.verify_tx_signature(spliced.SerializeToString(), CHAIN, 42)
    assert not t.verify_tx_signature(b"\xff\xff", CHAIN, 42)


def test_high_s_signature_is_rejected(signer):
    from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw

    raw = TxRaw.FromString(t.build_tx(signer, [_place_msg(signer)], 42, 7, 120_000, 7_900))
    sig = raw.signatures[0]
    n = t._SECP256K1_ORDER
    high = sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")  # also a valid ECDSA signature
    raw.signatures[0] = high
    assert not t.verify_tx_signature(raw.SerializeToString(), CHAIN, 42)


def test_tx_hash_is_upper_hex_sha256():
    assert t.tx_hash(b"") == "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
    assert t.tx_hash(b"abc") == hashlib.sha256(b"abc").hexdigest().upper()


def test_decode_rejects_garbage():
    with pytest.raises(ValueError):
        t.decode_tx(b"\xff\xff")


def test_zero_fee_tx_has_no_fee_coin(signer):
    raw = t.build_tx(signer, [_place_msg(signer)], 1, 0, 100_000, 0)
    assert t.decode_tx(raw).fee_usei == 0


# ----------------------------------------------------------------------------------------- fees


def test_fee_table_by_hand():
    # 1 order: gas 100000 + 20000 = 120000; 120000 x 0.02 = 2400; dex 55000 x 0.1 = 5500; 7900
    assert t.fee_for(1, 0) == (120_000, 7_900)
    # 3 orders, 2 cancels: gas 100000 + 60000 + 30000 = 190000 -> 3800; dex (165000 + 106000) x 0.1 = 27100
    assert t.fee_for(3, 2) == (190_000, 30_900)
    # nothing dex: 100000 x 0.02 = 2000
    assert t.fee_for(0, 0) == (100_000, 2_000)
    # atlantic-2 minimum 0.08, 1 order + 1 cancel: gas 135000 -> 10800; dex 5500 + 5300 = 10800
    assert t.fee_for(1, 1, gas_price_usei=0.08) == (135_000, 21_600)
    # fractional gas fee rounds up: 100000 x 0.000015 = 1.5 -> 2
    assert t.fee_for(0, 0, gas_price_usei=0.000015) == (100_000, 2)
    assert t.min_fee_usei(120_000, 1, 0, 0.02) == 7_900
    with pytest.raises(ValueError):
        t.fee_for(-1, 0)


# ----------------------------------------------------------------------------------------- keys


def test_signer_from_key_one_has_the_generator_as_public_key():
    sg = t.Signer(KEY_ONE, CHAIN)
    assert sg.public_key.hex().upper() == G_COMPRESSED
    assert sg.address.startswith("sei1")
    assert t.Signer("0x" + KEY_ONE, CHAIN).address == sg.address
    assert t.Signer(KEY_ONE, CHAIN, prefix="cosmos").address.startswith("cosmos1")


def test_signer_repr_shows_the_address_only(signer):
    text = repr(signer) + str(signer)
    assert signer.address in text
    assert "11" * 8 not in text
    assert not hasattr(signer, "__dict__")


@pytest.mark.parametrize("bad", ["", "zz" * 32, "11" * 31, "00" * 32, "ff" * 32])
def test_bad_private_keys_are_rejected_without_echoing_them(bad):
    with pytest.raises(ValueError) as e:
        t.Signer(bad, CHAIN)
    if bad:
        assert bad not in str(e.value)


def test_load_private_key_from_env(monkeypatch):
    monkeypatch.delenv(t.ENV_KEYSTORE, raising=False)
    monkeypatch.setenv(t.ENV_PRIVATE_KEY, "0x" + "AB" * 32)
    assert t.load_private_key() == "ab" * 32


def test_load_private_key_errors(monkeypatch):
    monkeypatch.delenv(t.ENV_PRIVATE_KEY, raising=False)
    monkeypatch.delenv(t.ENV_KEYSTORE, raising=False)
    with pytest.raises(RuntimeError, match="FLASHMM_SEI_PRIVATE_KEY"):
        t.load_private_key()
    monkeypatch.setenv(t.ENV_KEYSTORE, "/nonexistent/keystore.json")
    with pytest.raises(RuntimeError, match="not found"):  # KeystoreError, before any passphrase is asked
        t.load_private_key()
    monkeypatch.delenv(t.ENV_KEYSTORE)  # one key source at a time (both set is refused: test_sei_keystore.py)
    monkeypatch.setenv(t.ENV_PRIVATE_KEY, "cd" * 31)  # malformed: error must not echo it
    with pytest.raises(ValueError) as e:
        t.load_private_key()
    assert "cd" * 31 not in str(e.value)
