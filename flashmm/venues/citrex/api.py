"""Citrex's REST answers as FlashMM reads them: one parser per endpoint, each turning JSON into typed records
or raising :class:`ParseError` (a ValueError) that names the endpoint and the field.

Shapes are the official client's types (citrex-sdk 1.2.2 `lib/types.d.ts`: Product, OrderBookResponse,
Trade/TradeHistoryResponse, Order, Position, Balance, AccountHealth, ServerTimeResponse) as its tests serialise
them (repository citrex-markets/citrex-sdk `vitest/utils.ts`, `src/__tests__/*`): every 1e18-scaled
quantity (`bigint` in the types) travels as a decimal string, times and ids as JSON numbers, order ids as
0x-hex strings. A bigint field is read exactly (decimal digits or a JSON integer, never a float), so no price
or size is ever rounded on the way in. An endpoint that answers `{"error": ...}` instead of its shape is an
:class:`APIError` (the client does the same: `if (error)` / `if (!Array.isArray(response))`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flashmm.core.domain import Instrument
from flashmm.venues.citrex.signing import from_wei

__all__ = [
    "APIError", "AccountHealth", "Balance", "Depth", "OrderRecord", "ParseError", "PositionRecord", "Product",
    "TradeRecord", "api_error", "parse_account_health", "parse_balances", "parse_depth", "parse_order",
    "parse_orders", "parse_positions", "parse_product", "parse_products", "parse_server_time", "parse_success",
    "parse_trade_history",
]

_INT = re.compile(r"-?[0-9]{1,80}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class ParseError(ValueError):
    """An answer that does not have the shape of the official client's type."""


class APIError(Exception):
    """The venue answered with an error object (`{"error": "...", "success": false}`)."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def api_error(doc: Any, status: int = 200) -> APIError | None:
    """The APIError carried by an answer, or None (an empty `error` string means none, as in account-health)."""
    if isinstance(doc, dict) and doc.get("error"):
        return APIError(str(doc["error"])[:500], status)
    return None


# ------------------------------------------------------------------------------------------- field readers


def _obj(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ParseError(f"{where}: expected an object, got {type(doc).__name__}")
    return doc


def _list(doc: Any, where: str) -> list[Any]:
    if not isinstance(doc, list):
        raise ParseError(f"{where}: expected a list, got {type(doc).__name__}")
    return doc


def _big(d: dict[str, Any], key: str, where: str, signed: bool = False) -> int:
    """A bigint field: a decimal string (as the client's tests serialise bigints) or a JSON integer."""
    v = d.get(key)
    return _bigv(v, f"{where}.{key}", signed)


def _bigv(v: Any, where: str, signed: bool = False) -> int:
    if isinstance(v, bool):
        raise ParseError(f"{where}: expected an integer, got a boolean")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and _INT.fullmatch(v):
        n = int(v)
    else:
        raise ParseError(f"{where}: expected an integer or a string of digits, got {str(v)[:40]!r}")
    if n < 0 and not signed:
        raise ParseError(f"{where}: negative value {n}")
    return n


def _num(d: dict[str, Any], key: str, where: str) -> int:
    """A JSON number that must be an integer (ids, millisecond times, nonces)."""
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        raise ParseError(f"{where}.{key}: expected an integer, got {str(v)[:40]!r}")
    return v


def _str(d: dict[str, Any], key: str, where: str, max_len: int = 200) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise ParseError(f"{where}.{key}: expected a non-empty string, got {str(v)[:40]!r}")
    return v


def _opt_str(d: dict[str, Any], key: str, default: str = "") -> str:
    v = d.get(key)
    return v if isinstance(v, str) else default


def _bool(d: dict[str, Any], key: str, where: str) -> bool:
    v = d.get(key)
    if not isinstance(v, bool):
        raise ParseError(f"{where}.{key}: expected true or false, got {str(v)[:40]!r}")
    return v


def _address(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not _ADDRESS.fullmatch(v):
        raise ParseError(f"{where}.{key}: expected a 0x address, got {str(v)[:50]!r}")
    return v.lower()


def _small(d: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    """A small non-negative integer field (sub-account ids, enums)."""
    if key not in d and default is not None:
        return default
    v = _num(d, key, where)
    if not 0 <= v <= 2**32:
        raise ParseError(f"{where}.{key}: out of range: {v}")
    return v


# ------------------------------------------------------------------------------------------- products


@dataclass(frozen=True, slots=True)
class Product:
    """lib/types.d.ts `Product`; all amounts 1e18-scaled integers."""

    id: int
    symbol: str
    type: str
    active: bool
    base_asset: str
    quote_asset: str
    increment: int  # price tick
    min_quantity: int
    max_quantity: int
    maker_fee: int  # fraction of notional x 1e18
    taker_fee: int
    is_maker_rebate: bool  # the maker fee is paid to the maker
    mark_price: int

    def instrument(self) -> Instrument:
        """Tick = `increment`. Citrex's products carry no quantity step, so FlashMM's lot is `minQuantity`:
        every order is a whole number of minimum quantities. Citrex perpetuals are linear (quantity in the base,
        price, margin and PnL in the quote asset, USDC): multiplier 1, not inverse."""
        return Instrument(self.symbol, self.base_asset, self.quote_asset, _plain(from_wei(self.increment)),
                          _plain(from_wei(self.min_quantity)), multiplier=Decimal(1), inverse=False)

    @property
    def maker_fee_bps(self) -> float:
        """Maker fee in bps of notional, negative when it is a rebate (isMakerRebate)."""
        bps = float(Decimal(self.maker_fee).scaleb(-18) * 10_000)
        return -bps if self.is_maker_rebate else bps

    @property
    def taker_fee_bps(self) -> float:
        return float(Decimal(self.taker_fee).scaleb(-18) * 10_000)

    @property
    def depth_granularity(self) -> int:
        """The `granularity` to ask `depth` for (decimals removed from prices): the largest power of ten that
        divides the tick, so no two price levels are ever merged."""
        g, inc = 0, self.increment
        while inc and inc % 10 == 0 and g < 18:
            inc //= 10
            g += 1
        return g


def _plain(d: Decimal) -> Decimal:
    """The same value without trailing zeros, so prices print at the tick's own precision (0.0001, not
    0.000100000000000000); whole numbers stay plain (10, not 1E+1)."""
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def parse_product(doc: Any) -> Product:
    where = "products"
    d = _obj(doc, where)
    p = Product(
        id=_small(d, "id", where), symbol=_str(d, "symbol", where, 40), type=_opt_str(d, "type"),
        active=_bool(d, "active", where), base_asset=_str(d, "baseAsset", where, 40),
        quote_asset=_str(d, "quoteAsset", where, 40), increment=_big(d, "increment", where),
        min_quantity=_big(d, "minQuantity", where), max_quantity=_big(d, "maxQuantity", where),
        maker_fee=_big(d, "makerFee", where), taker_fee=_big(d, "takerFee", where),
        is_maker_rebate=_bool(d, "isMakerRebate", where), mark_price=_big(d, "markPrice", where))
    if p.increment <= 0 or p.min_quantity <= 0 or p.max_quantity < p.min_quantity:
        raise ParseError(f"{where}: product {p.symbol}: increment and minQuantity must be > 0 and "
                         f"maxQuantity >= minQuantity")
    return p


def parse_products(doc: Any) -> list[Product]:
    err = api_error(doc)
    if err:
        raise err
    return [parse_product(x) for x in _list(doc, "products")]


# ------------------------------------------------------------------------------------------- market data


@dataclass(frozen=True, slots=True)
class Depth:
    bids: list[tuple[int, int]]  # (price, quantity), 1e18-scaled, best first
    asks: list[tuple[int, int]]


def parse_depth(doc: Any) -> Depth:
    """`depth`: {asks: [[price, quantity, cumulative], ...], bids: [...]} (OrderBookRow = [bigint x 3])."""
    err = api_error(doc)
    if err:
        raise err
    d = _obj(doc, "depth")
    sides: list[list[tuple[int, int]]] = []
    for name in ("bids", "asks"):
        rows = _list(d.get(name), f"depth.{name}")
        out: list[tuple[int, int]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) < 2:
                raise ParseError(f"depth.{name}[{i}]: expected [price, quantity, cumulative]")
            price = _bigv(row[0], f"depth.{name}[{i}].price")
            qty = _bigv(row[1], f"depth.{name}[{i}].quantity")
            if price <= 0:
                raise ParseError(f"depth.{name}[{i}]: price must be > 0")
            out.append((price, qty))
        sides.append(out)
    bids, asks = sides
    if any(bids[i][0] <= bids[i + 1][0] for i in range(len(bids) - 1)) or \
            any(asks[i][0] >= asks[i + 1][0] for i in range(len(asks) - 1)):
        raise ParseError("depth: levels are not sorted best first without repeats")
    return Depth(bids, asks)


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """lib/types.d.ts `Trade` (accounts lower-cased)."""

    uid: str
    price: int
    quantity: int
    created_at_ms: int
    taker_account: str
    taker_sub: int
    maker_account: str
    maker_sub: int
    taker_id: str
    maker_id: str
    taker_is_buyer: bool
    taker_fees: int  # 1e18-scaled quote currency; negative = paid to the account
    maker_fees: int


def parse_trade(doc: Any, where: str = "trade-history.trades[]") -> TradeRecord:
    d = _obj(doc, where)
    t = TradeRecord(
        uid=_str(d, "uid", where), price=_big(d, "price", where), quantity=_big(d, "quantity", where),
        created_at_ms=_num(d, "createdAt", where), taker_account=_address(d, "takerAccount", where),
        taker_sub=_small(d, "takerSubaccountId", where, 0), maker_account=_address(d, "makerAccount", where),
        maker_sub=_small(d, "makerSubaccountId", where, 0), taker_id=_str(d, "takerID", where),
        maker_id=_str(d, "makerID", where), taker_is_buyer=_bool(d, "takerIsBuyer", where),
        taker_fees=_big(d, "takerFees", where, signed=True), maker_fees=_big(d, "makerFees", where, signed=True))
    if t.price <= 0 or t.quantity <= 0:
        raise ParseError(f"{where}: trade {t.uid}: price and quantity must be > 0")
    return t


def parse_trade_history(doc: Any) -> list[TradeRecord]:
    """`trade-history`: {success, trades: Trade[] | null}; `null` is no trades (as the client reads it)."""
    err = api_error(doc)
    if err:
        raise err
    d = _obj(doc, "trade-history")
    trades = d.get("trades")
    if trades is None:
        return []
    return [parse_trade(x) for x in _list(trades, "trade-history.trades")]


def parse_server_time(doc: Any) -> int:
    err = api_error(doc)
    if err:
        raise err
    return _num(_obj(doc, "time"), "serverTime", "time")


# ------------------------------------------------------------------------------------------- account


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """lib/types.d.ts `Order`."""

    id: str
    product_id: int
    product_symbol: str
    account: str
    sub_account_id: int
    is_buy: bool
    order_type: int
    time_in_force: int
    price: int
    quantity: int
    residual: int
    nonce: int
    expiry_ms: int
    created_at_ms: int
    status: str


def parse_order(doc: Any, where: str = "order") -> OrderRecord:
    err = api_error(doc)
    if err:
        raise err
    d = _obj(doc, where)
    o = OrderRecord(
        id=_str(d, "id", where), product_id=_small(d, "productId", where),
        product_symbol=_opt_str(d, "productSymbol"), account=_address(d, "account", where),
        sub_account_id=_small(d, "subAccountId", where), is_buy=_bool(d, "isBuy", where),
        order_type=_small(d, "orderType", where), time_in_force=_small(d, "timeInForce", where),
        price=_big(d, "price", where), quantity=_big(d, "quantity", where),
        residual=_big(d, "residualQuantity", where), nonce=_num(d, "nonce", where),
        expiry_ms=_num(d, "expiry", where), created_at_ms=_num(d, "createdAt", where),
        status=_str(d, "status", where, 20))
    if o.residual > o.quantity:
        raise ParseError(f"{where}: order {o.id}: residualQuantity above quantity")
    return o


def parse_orders(doc: Any) -> list[OrderRecord]:
    """`openOrders`: Order[] (or an error object)."""
    err = api_error(doc)
    if err:
        raise err
    return [parse_order(x, "openOrders[]") for x in _list(doc, "openOrders")]


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """lib/types.d.ts `Position`; `quantity` is signed (negative = short)."""

    account: str
    sub_account_id: int
    product_id: int
    product_symbol: str
    quantity: int
    avg_entry_price: int
    margin: int
    pnl: int
    liquidation_price: int
    mark_price: int


def parse_positions(doc: Any) -> list[PositionRecord]:
    """`positionRisk`: Position[] (or an error object)."""
    err = api_error(doc)
    if err:
        raise err
    out = []
    for x in _list(doc, "positionRisk"):
        where = "positionRisk[]"
        d = _obj(x, where)
        out.append(PositionRecord(
            account=_address(d, "account", where), sub_account_id=_small(d, "subAccountId", where),
            product_id=_small(d, "productId", where), product_symbol=_opt_str(d, "productSymbol"),
            quantity=_big(d, "quantity", where, signed=True),
            avg_entry_price=_big(d, "avgEntryPrice", where, signed=True),
            margin=_big(d, "margin", where, signed=True), pnl=_big(d, "pnl", where, signed=True),
            liquidation_price=_big(d, "liquidationPrice", where, signed=True),
            mark_price=_big(d, "markPrice", where, signed=True)))
    return out


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    quantity: int
    pending_withdrawal: int


def parse_balances(doc: Any) -> list[Balance]:
    """`balances`: [{asset, quantity, pendingWithdrawal, ...}] (or an error object)."""
    err = api_error(doc)
    if err:
        raise err
    out = []
    for x in _list(doc, "balances"):
        d = _obj(x, "balances[]")
        out.append(Balance(_address(d, "asset", "balances[]"), _big(d, "quantity", "balances[]", signed=True),
                           _big(d, "pendingWithdrawal", "balances[]", signed=True)))
    return out


HEALTH_FIELDS = ("equity", "initialAccountMarginRatio", "maintenanceAccountMarginRatio", "initialHealth",
                 "maintenanceHealth", "leverage", "totalPnl", "initialMarginUsed", "maintenanceMarginUsed",
                 "initialMarginAvailable", "maintenanceMarginAvailable", "pendingWithdrawal")


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """lib/types.d.ts `AccountHealth.value`: every field a signed 1e18-scaled integer."""

    values: dict[str, int]

    def usdc(self, name: str) -> float:
        return float(from_wei(abs(self.values[name]))) * (-1 if self.values[name] < 0 else 1)


def parse_account_health(doc: Any) -> AccountHealth:
    """`account-health`: {success, error, value: {...}}."""
    err = api_error(doc)
    if err:
        raise err
    v = _obj(_obj(doc, "account-health").get("value"), "account-health.value")
    return AccountHealth({k: _big(v, k, "account-health.value", signed=True) for k in HEALTH_FIELDS})


def parse_success(doc: Any, where: str) -> bool:
    """DELETE order / openOrders: {success: true} or {error, success: false}."""
    err = api_error(doc)
    if err:
        raise err
    d = _obj(doc, where)
    ok = d.get("success")
    if ok is not True:
        raise APIError(f"{where}: the venue did not confirm (success={ok!r})")
    return True
