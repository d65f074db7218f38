"""Each Citrex endpoint's parser on the official client's own test data.

The answers below are the mocks of the client repository citrex-markets/citrex-sdk, `vitest/utils.ts`
(commit 337285b1d66c30f84ebc119417f5994ecac67d7c), serialised as its tests serialise them
(`JSON.stringify`, with bigints as decimal strings: vitest/vitest.setup.ts), and the error shapes its tests
use (`{"error": "A known error occurred", "success": false}`, `trades: null`).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from flashmm.venues.citrex import api

ADDRESS = "0xb47B0b1e44B932Ae9Bb01817E7010A553A965Ea8"
PRODUCTS = [
    {"id": 1003, "type": "PERP", "symbol": "btcperp", "active": True, "baseAsset": "WBTC", "quoteAsset": "USDC",
     "minQuantity": "1000000000000000", "maxQuantity": "1000000000000000000000000", "increment": "100000000000000",
     "takerFee": "500000000000000", "makerFee": "300000000000000", "isMakerRebate": True,
     "initialLongWeight": "900000000000000000", "initialShortWeight": "1100000000000000000",
     "maintenanceLongWeight": "950000000000000000", "maintenanceShortWeight": "1050000000000000000",
     "baseAssetAddress": "0xdc2f16a474a969056e6a559629b46d01f8675a1a",
     "quoteAssetAddress": "0xb8be1401e65dc08bfb8f832fc1a27a16ca821b05", "markPrice": "72581488537710140836821"},
    {"id": 1002, "type": "PERP", "symbol": "ethperp", "active": True, "baseAsset": "WETH", "quoteAsset": "USDC",
     "minQuantity": "100000000000000", "maxQuantity": "100000000000000000000000", "increment": "10000000000000",
     "takerFee": "200000000000000", "makerFee": "50000000000000", "isMakerRebate": True,
     "initialLongWeight": "950000000000000000", "initialShortWeight": "1050000000000000000",
     "maintenanceLongWeight": "970000000000000000", "maintenanceShortWeight": "1030000000000000000",
     "baseAssetAddress": "0x4200000000000000000000000000000000000023",
     "quoteAssetAddress": "0xb8be1401e65dc08bfb8f832fc1a27a16ca821b05", "markPrice": "3399999999999999999772"},
]
ETH_BOOK = {
    "asks": [["3810200000000000000000", "2410000000000000000", "2410000000000000000"],
             ["3819800000000000000000", "2970000000000000000", "5380000000000000000"],
             ["3820500000000000000000", "1880000000000000000", "7260000000000000000"]],
    "bids": [["3801000000000000000000", "2850000000000000000", "2850000000000000000"],
             ["3800000000000000000000", "1340000000000000000", "4190000000000000000"],
             ["3796400000000000000000", "3630000000000000000", "7820000000000000000"]],
}
TRADE_HISTORY = {"success": True, "trades": [
    {"price": "3356500000000000000000", "quantity": "3890600000000000000", "createdAt": 1719304034692,
     "uid": "a77fc690-a9a3-41ec-b457-afced3b87e39", "takerAccount": "0xb571978d4348ccb9950fe1963c81258d489de5ab",
     "takerSubaccountId": 0, "makerAccount": "0x6efff71013eeb8ab151e847664f2b76fdbf096cd", "makerSubaccountId": 0,
     "takerID": "0x5840b28f86da670fed0f76dcfee90dd7937d1c98669848ddf7ebdf8731d703f4",
     "makerID": "0x0b78249df1ef346cece15763c3c88232702c88505a850de236a847f0c33f16a6", "takerIsBuyer": True,
     "takerFees": "1305879890000000000", "makerFees": "0"},
    {"price": "3370000000000000000000", "quantity": "2228000000000000000", "createdAt": 1719296533167,
     "uid": "8bb39aa9-3c00-411b-bbd8-613eb14b4721", "takerAccount": "0xb571978d4348ccb9950fe1963c81258d489de5ab",
     "takerSubaccountId": 0, "makerAccount": "0x6efff71013eeb8ab151e847664f2b76fdbf096cd", "makerSubaccountId": 0,
     "takerID": "0x9e967c752ee9df26388e7dfd736820a2f82fdbc82cb8820de09de070ec8ea350",
     "makerID": "0xf9ef7a387966e73152eb91779437a730d9ed49af0b25fec855782803dbbb2ac0", "takerIsBuyer": False,
     "takerFees": "750836000000000000", "makerFees": "0"},
]}
MARKET_FOK_ORDER = {
    "id": "0x08d4079c501e5fbb2153c7fe785ea4648ffcdac411d93511edcb5b18aecc158f", "productId": 1002,
    "productSymbol": "ethperp", "account": ADDRESS, "subAccountId": 1, "isBuy": True, "orderType": 2,
    "timeInForce": 1, "price": "3536200000000000000000", "quantity": "1000000000000000", "nonce": 1712421760000,
    "sender": ADDRESS, "signature": "0x4e6a845046760ac9007f8ecf2e632dcc40cfd4fee6239fd7242f2c0e46a02d4b3a8dc8aa"
                                    "26298138c2f137a402e81f267a462edb4ab2dca0534b99179dc787da1c",
    "expiry": 1712421760000, "createdAt": 1712829961877, "status": "FILLED", "residualQuantity": "0"}
REPLACEMENT_ORDER = {**MARKET_FOK_ORDER, "orderType": 1, "timeInForce": 0, "price": "3455000000000000000000",
                     "status": "OPEN", "residualQuantity": "1000000000000000"}
OPEN_ORDERS = [
    {**REPLACEMENT_ORDER, "id": "0x08d4079c501e5fbb2153c7fe785ea4648ffcdac411d93511edcb5b18aecc158fu",
     "productId": 1006, "productSymbol": "blastperp", "orderType": 0, "price": "4698000000000000000",
     "quantity": "6500000000000000000", "residualQuantity": "6500000000000000000"},
    REPLACEMENT_ORDER,
]
POSITIONS = [
    {"account": "0x23a90125d8b71a6f18c905d1cce0579b3e589f90", "subAccountId": 1, "productId": 1002,
     "productSymbol": "ethperp", "quantity": "200000000000000000", "avgEntryPrice": "3015500000000000000000",
     "initCumFunding": "-111231678929171498671", "pnl": "-3304396381014467820", "margin": "18093000000000000000",
     "returnOnMargin": "<nil>", "liquidationPrice": "2603153505535656747970", "accruedFunding": "736486652336197441",
     "markPrice": "2998978018094927660897", "currentCumFunding": "-114914112190852485879"},
]
BALANCES = [{"account": "0x23a90125d8b71a6f18c905d1cce0579b3e589f90", "subaccount": 1,
             "asset": "0xb8be1401e65dc08bfb8f832fc1a27a16ca821b05", "quantity": "100000000000000000000",
             "pendingWithdrawal": "0"}]
HEALTH = {"error": "", "success": True, "value": {
    "equity": "521853167994700001958", "initialAccountMarginRatio": "29850665588517496",
    "maintenanceAccountMarginRatio": "14925332794258748", "initialHealth": "506275503590581770462",
    "maintenanceHealth": "514064335792640886211", "leverage": "20000000000000000000",
    "totalPnl": "41880167994700001958", "initialMarginUsed": "15577664404118231496",
    "maintenanceMarginUsed": "7788832202059115748", "initialMarginAvailable": "506275503590581770462",
    "maintenanceMarginAvailable": "514064335792640886210", "pendingWithdrawal": "40000000000000000000"}}
KNOWN_ERROR = {"error": "A known error occurred", "success": False}


def test_products_give_the_instrument_and_fees():
    btc, eth = api.parse_products(PRODUCTS)
    assert (btc.id, btc.symbol, btc.increment, btc.min_quantity) == (1003, "btcperp", 10**14, 10**15)
    inst = btc.instrument()
    assert inst.price_tick == Decimal("0.0001") and inst.lot_size == Decimal("0.001")
    assert str(inst.price_tick) == "0.0001" and str(inst.ticks_to_price(4003)) == "0.4003"  # printed at the tick
    assert (inst.base, inst.quote) == ("WBTC", "USDC")
    assert btc.maker_fee_bps == pytest.approx(-3.0) and btc.taker_fee_bps == pytest.approx(5.0)  # a rebate
    assert eth.maker_fee_bps == pytest.approx(-0.5) and eth.taker_fee_bps == pytest.approx(2.0)
    assert btc.depth_granularity == 14 and eth.depth_granularity == 13
    assert api.parse_product(PRODUCTS[1]) == eth


def test_depth_rows_are_exact_and_best_first():
    d = api.parse_depth(ETH_BOOK)
    assert d.bids[0] == (3_801 * 10**18, 2_850_000_000_000_000_000)
    assert d.asks[-1] == (3_820_500_000_000_000_000_000, 1_880_000_000_000_000_000)
    with pytest.raises(api.ParseError, match="sorted"):
        api.parse_depth({"asks": ETH_BOOK["bids"], "bids": ETH_BOOK["bids"]})


def test_trade_history():
    trades = api.parse_trade_history(TRADE_HISTORY)
    assert [t.uid for t in trades] == ["a77fc690-a9a3-41ec-b457-afced3b87e39", "8bb39aa9-3c00-411b-bbd8-613eb14b4721"]
    t = trades[0]
    assert t.price == 3_356_500_000_000_000_000_000 and t.quantity == 3_890_600_000_000_000_000
    assert t.taker_is_buyer and not trades[1].taker_is_buyer
    assert t.taker_fees == 1_305_879_890_000_000_000 and t.maker_fees == 0
    assert t.maker_id.startswith("0x0b7824") and t.maker_account == "0x6efff71013eeb8ab151e847664f2b76fdbf096cd"
    assert api.parse_trade_history({"success": True, "trades": None}) == []  # the client reads null as none


def test_orders_and_open_orders():
    o = api.parse_order(MARKET_FOK_ORDER)
    assert (o.status, o.residual, o.order_type, o.time_in_force, o.nonce) == ("FILLED", 0, 2, 1, 1712421760000)
    assert o.account == ADDRESS.lower()
    orders = api.parse_orders(OPEN_ORDERS)
    assert [x.product_id for x in orders] == [1006, 1002]
    assert orders[0].id.endswith("158fu")  # the mock's id is not hex: ids are opaque strings
    assert orders[1].residual == 10**15 and orders[1].price == 3455 * 10**18


def test_positions_balances_health_and_time():
    (p,) = api.parse_positions(POSITIONS)
    assert (p.product_id, p.quantity, p.avg_entry_price) == (1002, 2 * 10**17, 3_015_500_000_000_000_000_000)
    assert p.pnl == -3_304_396_381_014_467_820
    (b,) = api.parse_balances(BALANCES)
    assert b.quantity == 100 * 10**18 and b.pending_withdrawal == 0
    h = api.parse_account_health(HEALTH)
    assert h.values["equity"] == 521_853_167_994_700_001_958
    assert h.usdc("initialMarginAvailable") == pytest.approx(506.27550359058177)
    assert api.parse_server_time({"serverTime": 1709829760000}) == 1709829760000
    assert api.parse_success({"success": True}, "DELETE order")


@pytest.mark.parametrize("parser", [api.parse_products, api.parse_depth, api.parse_trade_history, api.parse_order,
                                    api.parse_orders, api.parse_positions, api.parse_balances,
                                    api.parse_account_health, api.parse_server_time,
                                    lambda d: api.parse_success(d, "DELETE order")])
def test_an_error_answer_is_an_api_error_with_its_message(parser):
    with pytest.raises(api.APIError, match="A known error occurred"):
        parser(KNOWN_ERROR)


def test_wrong_shapes_are_parse_errors_naming_the_field():
    with pytest.raises(api.ParseError, match=r"products\.increment"):
        api.parse_product({**PRODUCTS[0], "increment": 1e14})  # a float would lose precision: refused
    with pytest.raises(api.ParseError, match="residualQuantity above quantity"):
        api.parse_order({**MARKET_FOK_ORDER, "residualQuantity": "2000000000000000"})
    with pytest.raises(api.ParseError, match="takerAccount"):
        api.parse_trade_history({"trades": [{**TRADE_HISTORY["trades"][0], "takerAccount": "nobody"}]})
    with pytest.raises(api.APIError, match="did not confirm"):
        api.parse_success({"success": False}, "DELETE order")
