"""The x/dex protobuf schema (package `seiprotocol.seichain.dex`, sei-chain v5.5.x), owned by this project.

The messages are built at import time from the field table in ../shared/SEI.md: one
`FileDescriptorProto` assembled with `descriptor_pb2`, added to a private `DescriptorPool` (so nothing
collides with whatever else registers protos in the default pool), and turned into classes with
`message_factory.GetMessageClass`. `funds` uses `cosmos.base.v1beta1.Coin`; its file (and that file's
imports) are copied from cosmpy's generated protos into the private pool, and the dependency is declared
in our FileDescriptorProto, so `MsgPlaceOrders.funds` holds the private pool's `Coin` (exported below).

Dec fields (cosmos-sdk `LegacyDec`) are protobuf `string`: in binary protobuf the text is the integer
value x 10^18 (0.4125 -> "412500000000000000", zero -> "0"); in JSON it is "0.412500000000000000".
Use `dec_to_wire` / `dec_from_wire` / `dec_to_json` / `dec_from_json`; never put a plain decimal in a
Dec field. Non-nullable Decs that the caller does not use (`nominal`, `triggerPrice`) must be sent as "0":
`new_order` does that.

Field names keep the chain's camelCase (`contractAddr`, `priceDenom`, ...), so proto JSON names match.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext
from enum import IntEnum
from typing import Any

# cosmpy's generated Coin (registers cosmos/base/v1beta1/coin.proto in the default pool on import).
from cosmpy.protos.cosmos.base.v1beta1 import coin_pb2 as _cosmpy_coin_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "seiprotocol.seichain.dex"
FILE_NAME = "flashmm/sei/dex.proto"
DEC_PRECISION = 18
_DEC_SCALE = 10**DEC_PRECISION
# cosmos-sdk LegacyDec holds at most 256 + 60 bits (about 1.3e77 as a decimal); nothing larger exists on chain
_DEC_MAX_ADJUSTED = 77

# ---------------------------------------------------------------------------------------------- enums


class PositionDirection(IntEnum):
    LONG = 0
    SHORT = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    # 2 is not used by x/dex
    FOKMARKET = 3
    FOKMARKETBYVALUE = 4
    STOPLOSS = 5
    STOPLIMIT = 6


class OrderStatus(IntEnum):
    PLACED = 0
    FAILED_TO_PLACE = 1
    CANCELLED = 2
    FULFILLED = 3


class CancellationInitiator(IntEnum):
    USER = 0
    LIQUIDATED = 1


_ENUMS: tuple[type[IntEnum], ...] = (PositionDirection, OrderType, OrderStatus, CancellationInitiator)

# ------------------------------------------------------------------------------------ field table

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _UINT64, _INT64, _BOOL = _F.TYPE_STRING, _F.TYPE_UINT64, _F.TYPE_INT64, _F.TYPE_BOOL
_MSG, _ENUM = _F.TYPE_MESSAGE, _F.TYPE_ENUM
_DEC = _STRING  # Dec is a string on the wire (see module docstring)
_REP = "repeated"
_COIN = ".cosmos.base.v1beta1.Coin"


def _m(name: str) -> str:
    return f".{PACKAGE}.{name}"


# name -> list of (number, field name, type, type name or None, label) ; plus reserved numbers.
_MESSAGES: dict[str, tuple[list[tuple], list[int]]] = {
    "Order": ([
        (1, "id", _UINT64, None, None),
        (2, "status", _ENUM, _m("OrderStatus"), None),
        (3, "account", _STRING, None, None),
        (4, "contractAddr", _STRING, None, None),
        (5, "price", _DEC, None, None),
        (6, "quantity", _DEC, None, None),
        (7, "priceDenom", _STRING, None, None),
        (8, "assetDenom", _STRING, None, None),
        (9, "orderType", _ENUM, _m("OrderType"), None),
        (10, "positionDirection", _ENUM, _m("PositionDirection"), None),
        (11, "data", _STRING, None, None),
        (12, "statusDescription", _STRING, None, None),
        (13, "nominal", _DEC, None, None),
        (14, "triggerPrice", _DEC, None, None),
        (15, "triggerStatus", _BOOL, None, None),
    ], []),
    "Cancellation": ([
        (1, "id", _UINT64, None, None),
        (2, "initiator", _ENUM, _m("CancellationInitiator"), None),
        (3, "creator", _STRING, None, None),
        (4, "contractAddr", _STRING, None, None),
        (5, "priceDenom", _STRING, None, None),
        (6, "assetDenom", _STRING, None, None),
        (7, "positionDirection", _ENUM, _m("PositionDirection"), None),
        (8, "price", _DEC, None, None),
    ], []),
    "MsgPlaceOrders": ([
        (1, "creator", _STRING, None, None),
        (2, "orders", _MSG, _m("Order"), _REP),
        (3, "contractAddr", _STRING, None, None),
        (4, "funds", _MSG, _COIN, _REP),
    ], []),
    "MsgPlaceOrdersResponse": ([
        (1, "orderIds", _UINT64, None, _REP),
    ], []),
    "MsgCancelOrders": ([
        (1, "creator", _STRING, None, None),
        (2, "cancellations", _MSG, _m("Cancellation"), _REP),
        (3, "contractAddr", _STRING, None, None),
    ], []),
    "Allocation": ([
        (1, "orderId", _UINT64, None, None),
        (2, "quantity", _DEC, None, None),
        (3, "account", _STRING, None, None),
    ], []),
    "OrderEntry": ([
        (1, "price", _DEC, None, None),
        (2, "quantity", _DEC, None, None),
        (3, "allocations", _MSG, _m("Allocation"), _REP),
        (4, "priceDenom", _STRING, None, None),
        (5, "assetDenom", _STRING, None, None),
    ], []),
    "LongBook": ([
        (1, "price", _DEC, None, None),
        (2, "entry", _MSG, _m("OrderEntry"), None),
    ], []),
    "ShortBook": ([
        (1, "price", _DEC, None, None),
        (2, "entry", _MSG, _m("OrderEntry"), None),
    ], []),
    "Pair": ([
        (1, "priceDenom", _STRING, None, None),
        (2, "assetDenom", _STRING, None, None),
        (3, "priceTicksize", _DEC, None, None),
        (4, "quantityTicksize", _DEC, None, None),
    ], []),
    "SettlementEntry": ([
        (1, "account", _STRING, None, None),
        (2, "priceDenom", _STRING, None, None),
        (3, "assetDenom", _STRING, None, None),
        (4, "quantity", _DEC, None, None),
        (5, "executionCostOrProceed", _DEC, None, None),
        (6, "expectedCostOrProceed", _DEC, None, None),
        (7, "positionDirection", _STRING, None, None),
        (8, "orderType", _STRING, None, None),
        (9, "orderId", _UINT64, None, None),
        (10, "timestamp", _UINT64, None, None),
        (11, "height", _UINT64, None, None),
        (12, "settlementId", _UINT64, None, None),
    ], []),
    "MatchResult": ([
        (1, "height", _INT64, None, None),
        (2, "contractAddr", _STRING, None, None),
        (3, "orders", _MSG, _m("Order"), _REP),
        (4, "settlements", _MSG, _m("SettlementEntry"), _REP),
        (5, "cancellations", _MSG, _m("Cancellation"), _REP),
    ], []),
    # Queries. Field 1 of the book requests is cosmos pagination: not supported, so reserved (never sent).
    "QueryAllLongBooksRequest": ([
        (2, "contractAddr", _STRING, None, None),
        (3, "priceDenom", _STRING, None, None),
        (4, "assetDenom", _STRING, None, None),
    ], [1]),
    "QueryAllLongBooksResponse": ([
        (1, "LongBook", _MSG, _m("LongBook"), _REP),
    ], []),
    "QueryAllShortBooksRequest": ([
        (2, "contractAddr", _STRING, None, None),
        (3, "priceDenom", _STRING, None, None),
        (4, "assetDenom", _STRING, None, None),
    ], [1]),
    "QueryAllShortBooksResponse": ([
        (1, "ShortBook", _MSG, _m("ShortBook"), _REP),
    ], []),
    "QueryGetMatchResultRequest": ([
        (1, "contractAddr", _STRING, None, None),
    ], []),
    "QueryGetMatchResultResponse": ([
        (1, "result", _MSG, _m("MatchResult"), None),
    ], []),
    "QueryGetOrdersRequest": ([
        (1, "contractAddr", _STRING, None, None),
        (2, "account", _STRING, None, None),
    ], []),
    "QueryGetOrdersResponse": ([
        (1, "orders", _MSG, _m("Order"), _REP),
    ], []),
}


def _copy_file_into(pool: descriptor_pool.DescriptorPool, fd: Any, done: set[str]) -> None:
    """Add a default-pool file descriptor and, first, everything it imports, to `pool`."""
    if fd.name in done:
        return
    for dep in fd.dependencies:
        _copy_file_into(pool, dep, done)
    pool.AddSerializedFile(fd.serialized_pb)
    done.add(fd.name)


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    fdp.dependency.append(_cosmpy_coin_pb2.DESCRIPTOR.name)  # cosmos/base/v1beta1/coin.proto
    for enum_cls in _ENUMS:
        e = fdp.enum_type.add(name=enum_cls.__name__)
        for member in enum_cls:
            e.value.add(name=member.name, number=int(member))
    for msg_name, (fields, reserved) in _MESSAGES.items():
        m = fdp.message_type.add(name=msg_name)
        for number, name, ftype, type_name, label in fields:
            f = m.field.add(
                name=name,
                number=number,
                type=ftype,
                label=_F.LABEL_REPEATED if label == _REP else _F.LABEL_OPTIONAL,
                json_name=name,
            )
            if type_name is not None:
                f.type_name = type_name
        for number in reserved:
            m.reserved_range.add(start=number, end=number + 1)  # end is exclusive
    return fdp


POOL = descriptor_pool.DescriptorPool()
_copy_file_into(POOL, _cosmpy_coin_pb2.DESCRIPTOR, set())
FILE_DESCRIPTOR_PROTO = _build_file()
FILE_DESCRIPTOR = POOL.Add(FILE_DESCRIPTOR_PROTO)


def _cls(name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Coin = message_factory.GetMessageClass(POOL.FindMessageTypeByName("cosmos.base.v1beta1.Coin"))
Order = _cls("Order")
Cancellation = _cls("Cancellation")
MsgPlaceOrders = _cls("MsgPlaceOrders")
MsgPlaceOrdersResponse = _cls("MsgPlaceOrdersResponse")
MsgCancelOrders = _cls("MsgCancelOrders")
Allocation = _cls("Allocation")
OrderEntry = _cls("OrderEntry")
LongBook = _cls("LongBook")
ShortBook = _cls("ShortBook")
Pair = _cls("Pair")
SettlementEntry = _cls("SettlementEntry")
MatchResult = _cls("MatchResult")
QueryAllLongBooksRequest = _cls("QueryAllLongBooksRequest")
QueryAllLongBooksResponse = _cls("QueryAllLongBooksResponse")
QueryAllShortBooksRequest = _cls("QueryAllShortBooksRequest")
QueryAllShortBooksResponse = _cls("QueryAllShortBooksResponse")
QueryGetMatchResultRequest = _cls("QueryGetMatchResultRequest")
QueryGetMatchResultResponse = _cls("QueryGetMatchResultResponse")
QueryGetOrdersRequest = _cls("QueryGetOrdersRequest")
QueryGetOrdersResponse = _cls("QueryGetOrdersResponse")

# ABCI query method -> (request class, response class); path is query_path(method).
QUERIES: dict[str, tuple[type, type]] = {
    "LongBookAll": (QueryAllLongBooksRequest, QueryAllLongBooksResponse),
    "ShortBookAll": (QueryAllShortBooksRequest, QueryAllShortBooksResponse),
    "GetMatchResult": (QueryGetMatchResultRequest, QueryGetMatchResultResponse),
    "GetOrders": (QueryGetOrdersRequest, QueryGetOrdersResponse),
}


def query_path(method: str) -> str:
    """ABCI query path of an x/dex query method: "/seiprotocol.seichain.dex.Query/LongBookAll"."""
    return f"/{PACKAGE}.Query/{method}"


def type_url(msg: Any) -> str:
    """The `Any` type URL of a message (instance or class): "/seiprotocol.seichain.dex.MsgPlaceOrders"."""
    return "/" + msg.DESCRIPTOR.full_name


TYPE_URL_PLACE_ORDERS = type_url(MsgPlaceOrders)
TYPE_URL_CANCEL_ORDERS = type_url(MsgCancelOrders)

# ------------------------------------------------------------------------------------------- Dec


def _to_decimal(d: Decimal | int | str) -> Decimal:
    if isinstance(d, float):
        raise TypeError("Dec values must be Decimal, int or str, not float (binary floats are inexact)")
    try:
        value = d if isinstance(d, Decimal) else Decimal(d)
    except InvalidOperation as e:
        raise ValueError(f"not a decimal number: {d!r}") from e
    if not value.is_finite():
        raise ValueError(f"Dec must be finite, got {value}")
    if value < 0:
        raise ValueError(f"Dec must be non-negative, got {value}")
    return value


def _to_atto(d: Decimal | int | str) -> int:
    """The exact integer value x 10^18; ValueError if it needs more than 18 decimals or exceeds a chain Dec."""
    value = _to_decimal(d)
    _, digits, exp = value.as_tuple()
    coeff = int("".join(map(str, digits))) if digits else 0
    if coeff == 0:
        return 0
    # checked before any 10**n: "1E+99999999" or "1E-99999999" would compute a huge power for minutes
    if value.adjusted() > _DEC_MAX_ADJUSTED:
        raise ValueError(f"Dec is too large: {value}")
    shift = exp + DEC_PRECISION
    if -shift > len(digits):  # fewer digits than the divisor has zeros: a non-zero remainder
        raise ValueError(f"Dec has more than {DEC_PRECISION} decimals: {value}")
    if shift >= 0:
        return coeff * 10**shift
    q, r = divmod(coeff, 10**-shift)
    if r:
        raise ValueError(f"Dec has more than {DEC_PRECISION} decimals: {value}")
    return q


def dec_to_wire(d: Decimal | int | str) -> str:
    """Binary-protobuf text of a Dec: integer x 10^18 (Decimal("0.4125") -> "412500000000000000")."""
    return str(_to_atto(d))


def dec_from_wire(s: str, *, allow_negative: bool = False) -> Decimal:
    """Inverse of `dec_to_wire`. An empty string (an unset proto3 field) is zero.

    Negative values are rejected unless `allow_negative` (chain data outside orders may be signed).
    """
    if s == "":
        return Decimal(0)
    body = s.removeprefix("-")
    if not body.isascii() or not body.isdigit():
        raise ValueError(f"not a wire Dec (integer text): {s!r}")
    if s.startswith("-") and not allow_negative and int(body) != 0:
        raise ValueError(f"Dec must be non-negative, got {s!r}")
    return Decimal(f"{int(s)}E-{DEC_PRECISION}")  # exact: Decimal(str) does not round, scaleb would


def dec_to_json(d: Decimal | int | str) -> str:
    """JSON text of a Dec: exactly 18 decimals (Decimal("0.4125") -> "0.412500000000000000")."""
    atto = _to_atto(d)
    whole, frac = divmod(atto, _DEC_SCALE)
    return f"{whole}.{frac:018d}"


def dec_from_json(s: str) -> Decimal:
    """Inverse of `dec_to_json` (accepts any non-negative decimal text with at most 18 decimals)."""
    if not isinstance(s, str) or not s or s.strip() != s:
        raise ValueError(f"not a JSON Dec: {s!r}")
    return Decimal(f"{_to_atto(s)}E-{DEC_PRECISION}")


# ------------------------------------------------------------------------------------------ ticks

PRICE_TICK_ERROR = "price needs to be non-zero and multiple of price tick size"
QUANTITY_TICK_ERROR = "quantity needs to be non-zero and multiple of quantity tick size"


def check_order(price: Decimal, qty: Decimal, price_tick: Decimal, qty_tick: Decimal) -> str | None:
    """Sei's tick validation of a placed order: its error message, or None when the order passes.

    Price is checked first. A zero, negative, or off-tick price (quantity) fails with Sei's message.
    Tick sizes must be positive (a pair with a zero tick is a configuration error: ValueError).
    """
    if not (price_tick > 0 and qty_tick > 0):
        raise ValueError("tick sizes must be positive")
    with localcontext() as ctx:  # exact remainders even for price/tick quotients beyond 28 digits
        ctx.prec = 200
        if not (price > 0) or price % price_tick != 0:
            return PRICE_TICK_ERROR
        if not (qty > 0) or qty % qty_tick != 0:
            return QUANTITY_TICK_ERROR
    return None


# ------------------------------------------------------------------------------------- builders


def new_order(
    *,
    account: str,
    contract_addr: str,
    price: Decimal,
    quantity: Decimal,
    price_denom: str,
    asset_denom: str,
    direction: PositionDirection,
    order_type: OrderType = OrderType.LIMIT,
    data: str = "",
) -> Any:
    """An `Order` as a client places it: Decs converted to wire text, `nominal`/`triggerPrice` sent as "0"."""
    return Order(
        account=account,
        contractAddr=contract_addr,
        price=dec_to_wire(price),
        quantity=dec_to_wire(quantity),
        priceDenom=price_denom,
        assetDenom=asset_denom,
        orderType=int(order_type),
        positionDirection=int(direction),
        data=data,
        nominal="0",
        triggerPrice="0",
    )
