"""Value types shared by the engine and the venues.

Prices are integer ticks and sizes integer lots inside the engine (no float equality on prices);
`Instrument` converts to and from decimal strings at venue boundaries. Fill prices may fall between
ticks (x/dex settles crossed orders at the midpoint and takers at a VWAP), so a fill carries its price
as a float number of ticks: it is used for accounting, never compared for equality.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal


class Side(enum.IntEnum):
    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.IntEnum):
    LIMIT = 0
    MARKET = 1


@dataclass(frozen=True, slots=True)
class Instrument:
    """What is traded, as the venue or the data defines it (never from code).

    Linear (spot, USD-M futures): one lot is `lot_size` units of the base; its value in the quote currency is
    price x lot_size x multiplier, and PnL settles in the quote currency.
    Inverse (Binance COIN-M): one lot is `lot_size` contracts of `multiplier` quote currency each (a
    BTCUSD_PERP contract is 100 USD); the exposure in the quote currency is fixed by the contract count, the
    position is worth contracts x multiplier / price of the base, and PnL, margin and fees settle in the base.
    """

    symbol: str
    base: str
    quote: str
    price_tick: Decimal  # quote currency per tick
    lot_size: Decimal  # base currency (linear) or contracts (inverse) per lot
    multiplier: Decimal = Decimal(1)  # linear: units of base per lot unit; inverse: quote currency per contract
    inverse: bool = False
    # the floats the accounting multiplies by on every quote cycle, converted once in __post_init__ (a Decimal
    # product and two conversions per call cost more than the arithmetic around them); the same values
    _tick_f: float = field(init=False, repr=False, compare=False)
    _unit_f: float = field(init=False, repr=False, compare=False)  # lot_size x multiplier

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tick_f", float(self.price_tick))
        object.__setattr__(self, "_unit_f", float(self.lot_size * self.multiplier))

    def price_to_ticks(self, price: Decimal | str) -> int:
        """Exact conversion; a price that is not a multiple of the tick is an error, never rounded."""
        q = Decimal(price) / self.price_tick
        if q != q.to_integral_value():
            raise ValueError(f"price {price} is not a multiple of the tick {self.price_tick}")
        return int(q)

    def price_to_ticks_floor(self, price: Decimal | str) -> int:
        return int((Decimal(price) / self.price_tick).to_integral_value(rounding=ROUND_FLOOR))

    def qty_to_lots(self, qty: Decimal | str) -> int:
        q = Decimal(qty) / self.lot_size
        if q != q.to_integral_value():
            raise ValueError(f"quantity {qty} is not a multiple of the lot {self.lot_size}")
        return int(q)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return self.price_tick * ticks

    def lots_to_qty(self, lots: int) -> Decimal:
        return self.lot_size * lots

    @property
    def tick_f(self) -> float:
        return self._tick_f

    @property
    def lot_f(self) -> float:
        return float(self.lot_size)

    @property
    def settle_currency(self) -> str:
        """The currency PnL, fees and margin are counted in."""
        return self.base if self.inverse else self.quote

    # ---- accounting (floats; never compared for equality) -------------------------------------------
    def exposure(self, price_ticks: float, lots: float) -> float:
        """Signed exposure of `lots` in the quote currency at `price_ticks` (what risk limits, order sizes
        and inventory % are measured in)."""
        if self.inverse:
            return lots * self._unit_f
        return price_ticks * self._tick_f * lots * self._unit_f

    def settle_value(self, price_ticks: float, lots: float) -> float:
        """Signed value of holding `lots` at `price_ticks`, in the settlement currency, such that the PnL of
        a trade bought at p and marked at m is settle_value(m, n) - settle_value(p, n). (Inverse: a long
        position is short the quote currency, hence the minus sign.)"""
        if self.inverse:
            return -lots * self._unit_f / (price_ticks * self._tick_f)
        return self.exposure(price_ticks, lots)

    def notional(self, price_ticks: float, lots: float) -> float:
        """Unsigned settlement-currency value of `lots` at `price_ticks`: what exchange fees are charged on."""
        return abs(self.settle_value(price_ticks, lots))

    def to_quote(self, amount_settle: float, mid_ticks: float) -> float:
        """A settlement-currency amount (PnL, fees) valued in the quote currency at `mid_ticks`."""
        return amount_settle * mid_ticks * self._tick_f if self.inverse else amount_settle

    def lots_for(self, quote_amount: float, mid_ticks: float) -> float:
        """How many lots carry `quote_amount` of exposure at `mid_ticks` (fractional; callers round)."""
        return quote_amount / self.exposure(mid_ticks, 1.0)


# ---- events delivered by venues (one batch per venue step: a block, a frame) ----------------------


@dataclass(slots=True)
class BookSnapshot:
    seq: int
    bids: list[tuple[int, int]]  # (price_ticks, lots), any order
    asks: list[tuple[int, int]]
    ts_ns: int


@dataclass(slots=True)
class BookDiff:
    """Absolute sizes per changed level (0 removes the level); covers sequence numbers first_seq..last_seq."""

    first_seq: int
    last_seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    ts_ns: int


@dataclass(slots=True)
class BookTop:
    """The real-time best bid and offer at update id `seq` (Binance bookTicker): newer than the depth diffs
    that end before `seq`, so it moves the top of the book between them (L2Book.apply_top)."""

    seq: int
    bid_ticks: int
    bid_lots: int
    ask_ticks: int
    ask_lots: int
    ts_ns: int


@dataclass(slots=True)
class Trade:
    price_ticks: float
    lots: int
    aggressor: Side | None  # None when the venue does not say
    ts_ns: int


@dataclass(slots=True)
class OrderAck:
    client_id: int
    venue_order_id: int
    ts_ns: int


REJECT_POST_ONLY = "post_only_would_cross"  # OrderReject.code: a post-only order that would have taken liquidity


@dataclass(slots=True)
class OrderReject:
    client_id: int
    reason: str
    ts_ns: int
    code: str = ""  # a typed reason where the venue gives one (REJECT_POST_ONLY, ...)


@dataclass(slots=True)
class CancelAck:
    client_id: int
    ts_ns: int


@dataclass(slots=True)
class CancelReject:
    client_id: int
    reason: str
    ts_ns: int


@dataclass(slots=True)
class Fill:
    client_id: int
    side: Side
    price_ticks: float
    lots: int
    fee_quote: float  # fee paid in quote currency (negative = rebate)
    is_maker: bool
    ts_ns: int
    done: bool  # the order has no remaining quantity after this fill


@dataclass(slots=True)
class FeeCharge:
    """A charge not tied to a fill (gas, per-order exchange charges), in quote currency."""

    amount_quote: float
    reason: str
    ts_ns: int


@dataclass(slots=True)
class VenueStatus:
    """Venue liveness: connected/disconnected, block height, a reason."""

    connected: bool
    height: int
    reason: str
    ts_ns: int


Event = (
    BookSnapshot | BookDiff | BookTop | Trade | OrderAck | OrderReject | CancelAck | CancelReject | Fill | FeeCharge | VenueStatus
)


# ---- what the engine sends to a venue -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    client_id: int
    side: Side
    price_ticks: int  # worst acceptable price for MARKET (0 = none)
    lots: int
    order_type: OrderType = OrderType.LIMIT
    post_only: bool = False  # rest or be rejected, never take liquidity (Binance GTX / LIMIT_MAKER)


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_id: int


OrderAction = PlaceOrder | CancelOrder


# ---- the venue's own record of our account (reconciliation) -------------------------------------


@dataclass(frozen=True, slots=True)
class VenueOrder:
    client_id: int
    side: Side
    price_ticks: int
    remaining_lots: int


@dataclass(frozen=True, slots=True)
class AccountState:
    """The venue's own record of our account, for reconciliation."""

    position_lots: int
    open_orders: dict[int, VenueOrder] = field(default_factory=dict)
    # client ids (as the venue maps them) of open orders of this account that this process did not send and
    # that appeared while it runs: another client trades the account (the engine pauses, never cancels them)
    foreign: frozenset[int] = frozenset()
    # other activity of this account since the last read that this process did not cause (e.g. transactions
    # signed with our key that we never sent), one line; "" when none
    foreign_activity: str = ""
