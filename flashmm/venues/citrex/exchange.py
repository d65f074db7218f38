"""The exchange inside FlashMM's Citrex double: products, a price-time-priority order book per product, signed
requests checked as a venue must check them, accounts with positions, balances and health.

Every request is taken exactly as the official client sends it (citrex-sdk 1.2.2; the shapes and keys of
flashmm/venues/citrex/signing.py and api.py) and answered with the client's types. What the live venue does
is not published beyond that client, so where the double has to choose, it says so here:

* Signatures: the EIP-712 signer is recovered and must be the body's ``account`` (401 "invalid signature").
  Authenticated reads check the ``SignedAuthentication`` signature the same way.
* Orders: ``price`` a positive multiple of the product's ``increment``; ``quantity`` a multiple of
  ``minQuantity`` (the double's rule: the client's types give no quantity step) and at most ``maxQuantity``;
  ``expiration`` in the future (ms); a nonce used before by the account is refused. ``LIMIT_MAKER`` must be
  GTC and is refused when it would cross ("post only order would cross the book"); ``MARKET`` is IOC or FOK
  with ``price`` its worst price; ``LIMIT_REDUCE_ONLY`` may only reduce the position; FOK fills whole or is
  refused. Matching: price-time priority, the maker's price; an IOC/MARKET rest is cancelled (status
  CANCELLED). Self-trades are allowed. Order ids: keccak-256 of the signature.
* Cancel-and-replace: the new order must be LIMIT_MAKER + GTC (as the client forces); it is validated first,
  and only if it is acceptable is the old order cancelled and the new one placed.
* Accounts are credited with a starting margin balance when first seen (as sei-devnode funds its accounts).
  Positions: signed quantity, average entry price; realised PnL and fees settle into the USDC balance. Fees:
  the taker pays ``takerFee`` x notional; the maker pays ``makerFee`` x notional, or receives it when the
  product is ``isMakerRebate``; a trade records what each side paid (``makerFees`` negative for a rebate).
  Margin: initial weights of the product (10 % of notional at the default 0.9/1.1); an order that would
  leave negative initial health is refused ("insufficient margin"). No funding payments, no liquidations.
* Errors are ``{"error": message, "success": false}`` with HTTP 400 (validation), 401 (signature) or 404.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from sortedcontainers import SortedDict

from flashmm.venues.citrex.signing import WEI, Domain, OrderType, TimeInForce, recover

__all__ = ["DEFAULT_PRODUCTS", "Exchange", "ProductSpec", "USDC_ADDRESS"]

USDC_ADDRESS = "0x3894085Ef7Ff0f0aeDf52E2A2704928d1Ec074F1"  # lib/index.js:298, mainnet margin asset
MAX_LOOKBACK = 500  # lib/index.js getTradeHistory: "Maximum value is 500"
DEPTH_LIMITS = (5, 10, 20)  # lib/index.js getOrderBook: "Can be 5, 10 or 20"


@dataclass
class ProductSpec:
    id: int
    symbol: str
    base_asset: str
    increment: int
    min_quantity: int
    max_quantity: int
    maker_fee: int
    taker_fee: int
    is_maker_rebate: bool
    mark_price: int
    base_address: str
    initial_long_weight: int = 900_000_000_000_000_000
    initial_short_weight: int = 1_100_000_000_000_000_000
    maintenance_long_weight: int = 950_000_000_000_000_000
    maintenance_short_weight: int = 1_050_000_000_000_000_000
    active: bool = True

    def as_json(self) -> dict[str, Any]:
        """The client's Product, in the key order of its test data (vitest/utils.ts productsData)."""
        return {"id": self.id, "type": "PERP", "symbol": self.symbol, "active": self.active,
                "baseAsset": self.base_asset, "quoteAsset": "USDC", "minQuantity": str(self.min_quantity),
                "maxQuantity": str(self.max_quantity), "increment": str(self.increment),
                "takerFee": str(self.taker_fee), "makerFee": str(self.maker_fee), "isMakerRebate": self.is_maker_rebate,
                "initialLongWeight": str(self.initial_long_weight),
                "initialShortWeight": str(self.initial_short_weight),
                "maintenanceLongWeight": str(self.maintenance_long_weight),
                "maintenanceShortWeight": str(self.maintenance_short_weight), "baseAssetAddress": self.base_address,
                "quoteAssetAddress": USDC_ADDRESS.lower(), "markPrice": str(self.mark_price)}


def default_products() -> list[ProductSpec]:
    """ethperp and btcperp with the official client's test values (vitest/utils.ts productsData); seiperp is
    the double's own (its id and fees are not published): a 0.0001 USDC tick, 1 SEI minimum, 1 bp maker
    rebate, 5 bps taker fee."""
    return [
        ProductSpec(1004, "seiperp", "SEI", 10**14, 10**18, 10**24, 10**14, 5 * 10**14, True, 4 * 10**17,
                    "0xe30fedd158a2e3b13e9badaeabafc5516e95e8c7"),
        ProductSpec(1002, "ethperp", "WETH", 10**13, 10**14, 10**23, 5 * 10**13, 2 * 10**14, True,
                    3_399_999_999_999_999_999_772, "0x4200000000000000000000000000000000000023"),
        ProductSpec(1003, "btcperp", "WBTC", 10**14, 10**15, 10**24, 3 * 10**14, 5 * 10**14, True,
                    72_581_488_537_710_140_836_821, "0xdc2f16a474a969056e6a559629b46d01f8675a1a"),
    ]


DEFAULT_PRODUCTS = default_products()


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Order:
    id: str
    product: ProductSpec
    account: str  # as sent (checksummed)
    sub: int
    is_buy: bool
    order_type: int
    tif: int
    price: int
    quantity: int
    residual: int
    nonce: int
    expiry_ms: int
    created_ms: int
    signature: str
    status: str = "OPEN"
    seq: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return self.account.lower(), self.sub

    def as_json(self) -> dict[str, Any]:
        """The client's Order, in the key order of its test data (vitest/utils.ts marketFOKOrder)."""
        return {"id": self.id, "productId": self.product.id, "productSymbol": self.product.symbol,
                "account": self.account, "subAccountId": self.sub, "isBuy": self.is_buy, "orderType": self.order_type,
                "timeInForce": self.tif, "price": str(self.price), "quantity": str(self.quantity),
                "nonce": self.nonce, "sender": self.account, "signature": self.signature, "expiry": self.expiry_ms,
                "createdAt": self.created_ms, "status": self.status, "residualQuantity": str(self.residual)}


@dataclass
class Position:
    quantity: int = 0  # signed, 1e18-scaled
    entry_price: int = 0  # 1e18-scaled


@dataclass
class Account:
    address: str  # as first seen
    sub: int
    balance: int  # USDC, 1e18-scaled
    positions: dict[int, Position] = field(default_factory=dict)


class _Book:
    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # price -> deque of orders (FIFO)
        self.asks: SortedDict = SortedDict()

    def side(self, is_buy: bool) -> SortedDict:
        return self.bids if is_buy else self.asks

    def best(self, is_buy: bool) -> int | None:
        levels = self.side(is_buy)
        if not levels:
            return None
        return levels.peekitem(-1)[0] if is_buy else levels.peekitem(0)[0]

    def add(self, o: Order) -> None:
        self.side(o.is_buy).setdefault(o.price, deque()).append(o)

    def remove(self, o: Order) -> None:
        levels = self.side(o.is_buy)
        q = levels.get(o.price)
        if q is not None:
            try:
                q.remove(o)
            except ValueError:
                pass
            if not q:
                del levels[o.price]


def _int_field(body: dict[str, Any], key: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Rejected(400, f"invalid {key}")
    return v


def _big_field(body: dict[str, Any], key: str) -> int:
    v = body.get(key)
    if not isinstance(v, str) or not v.isdigit() or len(v) > 40:
        raise Rejected(400, f"invalid {key}: a decimal string of the 1e18-scaled value is expected")
    return int(v)


def _address_field(body: dict[str, Any], key: str = "account") -> str:
    v = body.get(key)
    if not isinstance(v, str) or len(v) != 42 or v[:2] not in ("0x", "0X"):
        raise Rejected(400, f"invalid {key}")
    try:
        bytes.fromhex(v[2:])
    except ValueError:
        raise Rejected(400, f"invalid {key}") from None
    return v


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": message, "success": False}


class Exchange:
    def __init__(self, domain: Domain, products: list[ProductSpec] | None = None,
                 starting_balance: int = 100_000 * WEI, now_ms: Callable[[], int] | None = None) -> None:
        self.domain = domain
        self.products = {p.id: p for p in (products or default_products())}
        self.by_symbol = {p.symbol: p for p in self.products.values()}
        self.starting_balance = starting_balance
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.books = {pid: _Book() for pid in self.products}
        self.orders: dict[str, Order] = {}
        self.open_by_account: dict[tuple[str, int], dict[str, Order]] = {}
        self.accounts: dict[tuple[str, int], Account] = {}
        self.nonces: dict[tuple[str, int], set[int]] = {}
        self.trades: dict[int, deque[dict[str, Any]]] = {pid: deque(maxlen=20_000) for pid in self.products}
        self._expiries: list[tuple[int, int, str]] = []
        self._seq = itertools.count(1)
        self.forced_signature_failures = 0  # fault injection: refuse the next N signatures
        self.counts: dict[str, int] = {}

    # ---- accounts ------------------------------------------------------------------------------------
    def account(self, address: str, sub: int) -> Account:
        key = (address.lower(), sub)
        acct = self.accounts.get(key)
        if acct is None:
            acct = self.accounts[key] = Account(address, sub, self.starting_balance)
        return acct

    def fund(self, address: str, sub: int, amount: int) -> None:
        self.account(address, sub).balance += amount

    def position(self, address: str, sub: int, product_id: int) -> int:
        acct = self.accounts.get((address.lower(), sub))
        pos = acct.positions.get(product_id) if acct else None
        return pos.quantity if pos else 0

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # ---- signature -------------------------------------------------------------------------------------
    def _verify(self, primary: str, message: dict[str, Any], signature: Any, account: str) -> None:
        if self.forced_signature_failures > 0:
            self.forced_signature_failures -= 1
            self._count("signature_forced")
            raise Rejected(401, "invalid signature (injected fault)")
        if not isinstance(signature, str):
            raise Rejected(401, "invalid signature: missing")
        try:
            signer = recover(self.domain, primary, message, signature)
        except ValueError as exc:
            self._count("signature_bad")
            raise Rejected(401, f"invalid signature: {exc}") from None
        if signer.lower() != account.lower():
            self._count("signature_wrong_signer")
            raise Rejected(401, "invalid signature: the signer is not the account")

    def _product(self, v: Any) -> ProductSpec:
        if isinstance(v, bool) or not isinstance(v, int) or v not in self.products:
            raise Rejected(400, "unknown product")
        p = self.products[v]
        if not p.active:
            raise Rejected(400, "product is not active")
        return p

    # ---- orders ------------------------------------------------------------------------------------------
    def _parse_order(self, body: Any) -> tuple[Order, Account]:
        if not isinstance(body, dict):
            raise Rejected(400, "invalid body")
        account = _address_field(body)
        sub = _int_field(body, "subAccountId", 0, 255)
        product = self._product(body.get("productId"))
        is_buy = body.get("isBuy")
        if not isinstance(is_buy, bool):
            raise Rejected(400, "invalid isBuy")
        otype = _int_field(body, "orderType", 0, 255)
        tif = _int_field(body, "timeInForce", 0, 255)
        if otype not in {int(t) for t in OrderType}:
            raise Rejected(400, "invalid orderType")
        if tif not in {int(t) for t in TimeInForce}:
            raise Rejected(400, "invalid timeInForce")
        expiration = _int_field(body, "expiration")
        nonce = _int_field(body, "nonce")
        price = _big_field(body, "price")
        quantity = _big_field(body, "quantity")
        message = {"account": account, "subAccountId": sub, "productId": product.id, "isBuy": is_buy,
                   "orderType": otype, "timeInForce": tif, "expiration": expiration, "price": price,
                   "quantity": quantity, "nonce": nonce}
        if price >= 2**128 or quantity >= 2**128:
            raise Rejected(400, "invalid price or quantity")
        self._verify("Order", message, body.get("signature"), account)
        acct = self.account(account, sub)
        now = self.now_ms()
        if expiration <= now:
            raise Rejected(400, "order expiration is in the past")
        if nonce in self.nonces.get((account.lower(), sub), ()):
            raise Rejected(400, "nonce already used")
        if price <= 0 or price % product.increment:
            raise Rejected(400, f"price must be a positive multiple of the increment {product.increment}")
        if quantity < product.min_quantity or quantity % product.min_quantity:
            raise Rejected(400, f"quantity must be a multiple of minQuantity {product.min_quantity}")
        if quantity > product.max_quantity:
            raise Rejected(400, f"quantity above maxQuantity {product.max_quantity}")
        if otype == OrderType.LIMIT_MAKER and tif != TimeInForce.GTC:
            raise Rejected(400, "a post only (LIMIT_MAKER) order must be GTC")
        if otype == OrderType.MARKET and tif == TimeInForce.GTC:
            raise Rejected(400, "a market order must be IOC or FOK")
        oid = "0x" + keccak(bytes.fromhex(body["signature"][2:])).hex()
        o = Order(oid, product, account, sub, is_buy, otype, tif, price, quantity, quantity, nonce, expiration, now,
                  body["signature"], seq=next(self._seq))
        return o, acct

    def _check_order(self, o: Order, acct: Account) -> None:
        book = self.books[o.product.id]
        best_opp = book.best(not o.is_buy)
        crosses = best_opp is not None and (o.price >= best_opp if o.is_buy else o.price <= best_opp)
        if o.order_type == OrderType.LIMIT_MAKER and crosses:
            raise Rejected(400, "post only order would cross the book")
        if o.order_type == OrderType.LIMIT_REDUCE_ONLY:
            pos = acct.positions.get(o.product.id, Position()).quantity
            if pos == 0 or (pos > 0) == o.is_buy or o.quantity > abs(pos):
                raise Rejected(400, "reduce only order would increase the position")
        if o.tif == TimeInForce.FOK and self._fillable(o) < o.quantity:
            raise Rejected(400, "fill or kill order cannot be filled in full")
        if self._initial_health(acct, extra=(o.product, o.quantity, o.price)) < 0:
            raise Rejected(400, "insufficient margin for this order")

    def place(self, body: Any) -> tuple[int, dict[str, Any]]:
        self._sweep()
        try:
            o, acct = self._parse_order(body)
            self._check_order(o, acct)
        except Rejected as r:
            self._count("order_rejected")
            return _error(r.status, r.message)
        return 200, self._execute(o, acct)

    def _execute(self, o: Order, acct: Account) -> dict[str, Any]:
        self.nonces.setdefault(o.key, set()).add(o.nonce)
        self._match(o)
        if o.residual > 0:
            if o.tif == TimeInForce.GTC and o.order_type != OrderType.MARKET:
                o.status = "OPEN"
                self.books[o.product.id].add(o)
                self.orders[o.id] = o
                self.open_by_account.setdefault(o.key, {})[o.id] = o
                heapq.heappush(self._expiries, (o.expiry_ms, o.seq, o.id))
            else:
                o.status = "CANCELLED"  # the rest of an IOC / market order
        else:
            o.status = "FILLED"
        self._count("order_placed")
        return o.as_json()

    def _fillable(self, o: Order) -> int:
        book = self.books[o.product.id]
        levels = book.side(not o.is_buy)
        prices = levels.irange(maximum=o.price) if o.is_buy else levels.irange(minimum=o.price, reverse=True)
        total = 0
        for p in prices:
            total += sum(m.residual for m in levels[p])
            if total >= o.quantity:
                break
        return total

    def _match(self, taker: Order) -> None:
        book = self.books[taker.product.id]
        levels = book.side(not taker.is_buy)
        now = self.now_ms()
        while taker.residual > 0 and levels:
            price, queue = levels.peekitem(-1) if not taker.is_buy else levels.peekitem(0)
            if (taker.is_buy and price > taker.price) or (not taker.is_buy and price < taker.price):
                break
            maker = queue[0]
            if maker.expiry_ms <= now:
                self._close(maker, "EXPIRED")
                continue
            qty = min(taker.residual, maker.residual)
            self._trade(taker, maker, price, qty, now)
            if maker.residual == 0:
                self._close(maker, "FILLED")

    def _trade(self, taker: Order, maker: Order, price: int, qty: int, now: int) -> None:
        p = taker.product
        notional = qty * price // WEI
        taker_fee = notional * p.taker_fee // WEI
        maker_fee = notional * p.maker_fee // WEI
        maker_paid = -maker_fee if p.is_maker_rebate else maker_fee
        taker.residual -= qty
        maker.residual -= qty
        for order, paid in ((taker, taker_fee), (maker, maker_paid)):
            acct = self.account(order.account, order.sub)
            self._apply_fill(acct, p.id, qty if order.is_buy else -qty, price)
            acct.balance -= paid
        p.mark_price = price
        self.trades[p.id].append({
            "price": str(price), "quantity": str(qty), "createdAt": now, "uid": str(uuid.uuid4()),
            "takerAccount": taker.account.lower(), "takerSubaccountId": taker.sub,
            "makerAccount": maker.account.lower(), "makerSubaccountId": maker.sub,
            "takerID": taker.id, "makerID": maker.id, "takerIsBuyer": taker.is_buy,
            "takerFees": str(taker_fee), "makerFees": str(maker_paid)})
        self._count("trades")

    @staticmethod
    def _apply_fill(acct: Account, product_id: int, delta: int, price: int) -> None:
        pos = acct.positions.setdefault(product_id, Position())
        q = pos.quantity
        if q == 0 or (q > 0) == (delta > 0):  # opening or adding: average the entry price
            new = q + delta
            pos.entry_price = (abs(q) * pos.entry_price + abs(delta) * price) // abs(new)
            pos.quantity = new
            return
        closing = min(abs(delta), abs(q))
        realised = closing * (price - pos.entry_price) // WEI * (1 if q > 0 else -1)
        acct.balance += realised
        new = q + delta
        pos.quantity = new
        if new == 0:
            pos.entry_price = 0
        elif (new > 0) != (q > 0):  # flipped: the rest opens at this price
            pos.entry_price = price

    def _close(self, o: Order, status: str) -> None:
        o.status = status
        self.books[o.product.id].remove(o)
        self.orders.pop(o.id, None)
        mine = self.open_by_account.get(o.key)
        if mine is not None:
            mine.pop(o.id, None)

    def _sweep(self) -> None:
        """Expire resting orders whose expiration has passed."""
        now = self.now_ms()
        while self._expiries and self._expiries[0][0] <= now:
            _, _, oid = heapq.heappop(self._expiries)
            o = self.orders.get(oid)
            if o is not None and o.expiry_ms <= now:
                self._close(o, "EXPIRED")
                self._count("expired")

    # ---- cancels -------------------------------------------------------------------------------------------
    def _who_and_what(self, body: Any) -> tuple[str, int, ProductSpec]:
        """(account, sub-account, product) of a signed cancel body."""
        if not isinstance(body, dict):
            raise Rejected(400, "invalid body")
        return _address_field(body), _int_field(body, "subAccountId", 0, 255), self._product(body.get("productId"))

    def cancel(self, body: Any) -> tuple[int, dict[str, Any]]:
        self._sweep()
        try:
            account, sub, product = self._who_and_what(body)
            oid = body.get("orderId")
            if not isinstance(oid, str) or not oid:
                raise Rejected(400, "invalid orderId")
            self._verify("CancelOrder", {"account": account, "subAccountId": sub, "productId": product.id,
                                         "orderId": oid}, body.get("signature"), account)
            o = self.orders.get(oid)
            if o is None or o.key != (account.lower(), sub) or o.product.id != product.id:
                raise Rejected(404, "order not found")
        except Rejected as r:
            self._count("cancel_rejected")
            return _error(r.status, r.message)
        self._close(o, "CANCELLED")
        self._count("cancelled")
        return 200, {"success": True}

    def cancel_all(self, body: Any) -> tuple[int, dict[str, Any]]:
        self._sweep()
        try:
            account, sub, product = self._who_and_what(body)
            self._verify("CancelOrders", {"account": account, "subAccountId": sub, "productId": product.id},
                         body.get("signature"), account)
        except Rejected as r:
            self._count("cancel_all_rejected")
            return _error(r.status, r.message)
        for o in list(self.open_by_account.get((account.lower(), sub), {}).values()):
            if o.product.id == product.id:
                self._close(o, "CANCELLED")
                self._count("cancelled")
        return 200, {"success": True}

    def cancel_and_replace(self, body: Any) -> tuple[int, dict[str, Any]]:
        self._sweep()
        try:
            if not isinstance(body, dict):
                raise Rejected(400, "invalid body")
            old_id = body.get("idToCancel")
            if not isinstance(old_id, str) or not old_id:
                raise Rejected(400, "invalid idToCancel")
            new, acct = self._parse_order(body.get("newOrder"))
            if new.order_type != OrderType.LIMIT_MAKER or new.tif != TimeInForce.GTC:
                raise Rejected(400, "a replacement order must be LIMIT_MAKER and GTC")
            old = self.orders.get(old_id)
            if old is None or old.key != new.key or old.product.id != new.product.id:
                raise Rejected(404, "order to cancel not found")
            # judged as if the old order were gone (it is cancelled first when the new one is accepted)
            self.books[old.product.id].remove(old)
            try:
                self._check_order(new, acct)
            except Rejected:
                self.books[old.product.id].add(old)
                self._restore_fifo(old)
                raise
        except Rejected as r:
            self._count("replace_rejected")
            return _error(r.status, r.message)
        self._close(old, "CANCELLED")
        self._count("replaced")
        return 200, self._execute(new, acct)

    def _restore_fifo(self, o: Order) -> None:
        """Put a re-added order back at its original queue position."""
        q = self.books[o.product.id].side(o.is_buy)[o.price]
        ordered = sorted(q, key=lambda x: x.seq)
        q.clear()
        q.extend(ordered)

    # ---- reads -------------------------------------------------------------------------------------------
    def _auth(self, query: dict[str, str], need_signature: bool = True) -> tuple[str, int]:
        account = query.get("account", "")
        if len(account) != 42 or account[:2] not in ("0x", "0X"):
            raise Rejected(400, "invalid account")
        try:
            bytes.fromhex(account[2:])
            sub = int(query.get("subAccountId", ""))
        except ValueError:
            raise Rejected(400, "invalid account or subAccountId") from None
        if not 0 <= sub <= 255:
            raise Rejected(400, "invalid subAccountId")
        if need_signature:
            self._verify("SignedAuthentication", {"account": account, "subAccountId": sub}, query.get("signature"),
                         account)
        return account, sub

    def _symbol_filter(self, query: dict[str, str]) -> ProductSpec | None:
        sym = query.get("symbol")
        if sym is None:
            return None
        p = self.by_symbol.get(sym)
        if p is None:
            raise Rejected(400, "unknown symbol")
        return p

    def open_orders(self, query: dict[str, str]) -> tuple[int, Any]:
        self._sweep()
        try:
            account, sub = self._auth(query)
            only = self._symbol_filter(query)
        except Rejected as r:
            return _error(r.status, r.message)
        mine = self.open_by_account.get((account.lower(), sub), {})
        return 200, [o.as_json() for o in sorted(mine.values(), key=lambda x: x.seq)
                     if only is None or o.product.id == only.id]

    def positions(self, query: dict[str, str]) -> tuple[int, Any]:
        try:
            account, sub = self._auth(query)
            only = self._symbol_filter(query)
        except Rejected as r:
            return _error(r.status, r.message)
        acct = self.accounts.get((account.lower(), sub))
        out = []
        for pid, pos in (acct.positions.items() if acct else ()):
            p = self.products[pid]
            if pos.quantity == 0 or (only is not None and only.id != pid):
                continue
            pnl = pos.quantity * (p.mark_price - pos.entry_price) // WEI
            margin = abs(pos.quantity) * p.mark_price // WEI * (WEI - p.initial_long_weight) // WEI
            out.append({"account": acct.address.lower(), "subAccountId": sub, "productId": pid,
                        "productSymbol": p.symbol, "quantity": str(pos.quantity),
                        "avgEntryPrice": str(pos.entry_price), "initCumFunding": "0", "pnl": str(pnl),
                        "margin": str(margin), "returnOnMargin": "<nil>", "liquidationPrice": "0",
                        "accruedFunding": "0", "markPrice": str(p.mark_price), "currentCumFunding": "0"})
        return 200, out

    def balances(self, query: dict[str, str]) -> tuple[int, Any]:
        try:
            account, sub = self._auth(query)
        except Rejected as r:
            return _error(r.status, r.message)
        acct = self.account(account, sub)
        return 200, [{"account": account.lower(), "subaccount": sub, "asset": USDC_ADDRESS.lower(),
                      "quantity": str(acct.balance), "pendingWithdrawal": "0"}]

    def _margins(self, acct: Account, extra: tuple[ProductSpec, int, int] | None = None) -> dict[str, int]:
        upnl = init = maint = gross = 0
        for pid, pos in acct.positions.items():
            p = self.products[pid]
            notional = abs(pos.quantity) * p.mark_price // WEI
            upnl += pos.quantity * (p.mark_price - pos.entry_price) // WEI
            gross += notional
            long = pos.quantity > 0
            init += notional * abs(WEI - (p.initial_long_weight if long else p.initial_short_weight)) // WEI
            maint += notional * abs(WEI - (p.maintenance_long_weight if long else p.maintenance_short_weight)) // WEI
        for o in self.open_by_account.get((acct.address.lower(), acct.sub), {}).values():
            init += o.residual * o.price // WEI * abs(WEI - o.product.initial_long_weight) // WEI
        if extra is not None:
            p, qty, price = extra
            init += qty * price // WEI * abs(WEI - p.initial_long_weight) // WEI
        equity = acct.balance + upnl
        return {"equity": equity, "upnl": upnl, "init": init, "maint": maint, "gross": gross}

    def _initial_health(self, acct: Account, extra: tuple[ProductSpec, int, int] | None = None) -> int:
        m = self._margins(acct, extra)
        return m["equity"] - m["init"]

    def account_health(self, query: dict[str, str]) -> tuple[int, Any]:
        try:
            account, sub = self._auth(query, need_signature=False)  # the client sends no signature here
        except Rejected as r:
            return _error(r.status, r.message)
        acct = self.account(account, sub)
        m = self._margins(acct)
        equity = m["equity"]
        ratio = (lambda used: used * WEI // equity if equity > 0 else 0)
        value = {"equity": equity, "initialAccountMarginRatio": ratio(m["init"]),
                 "maintenanceAccountMarginRatio": ratio(m["maint"]), "initialHealth": equity - m["init"],
                 "maintenanceHealth": equity - m["maint"], "leverage": ratio(m["gross"]), "totalPnl": m["upnl"],
                 "initialMarginUsed": m["init"], "maintenanceMarginUsed": m["maint"],
                 "initialMarginAvailable": equity - m["init"], "maintenanceMarginAvailable": equity - m["maint"],
                 "pendingWithdrawal": 0}
        return 200, {"error": "", "success": True, "value": {k: str(v) for k, v in value.items()}}

    def products_json(self) -> list[dict[str, Any]]:
        return [p.as_json() for p in self.products.values()]

    def depth(self, query: dict[str, str]) -> tuple[int, Any]:
        self._sweep()
        p = self.by_symbol.get(query.get("symbol", ""))
        if p is None:
            return _error(400, "unknown symbol")
        try:
            limit = int(query.get("limit", "5"))
            granularity = int(query.get("granularity", "10"))
        except ValueError:
            return _error(400, "invalid limit or granularity")
        if limit not in DEPTH_LIMITS or not 0 <= granularity <= 18:
            return _error(400, "limit must be 5, 10 or 20 and granularity 0..18")
        unit = 10**granularity
        book = self.books[p.id]
        out: dict[str, list[list[str]]] = {}
        for name, levels, is_bid in (("asks", book.asks, False), ("bids", book.bids, True)):
            agg: dict[int, int] = {}
            order: list[int] = []
            for price in (reversed(levels.keys()) if is_bid else levels.keys()):
                bucket = price // unit * unit if is_bid else -(-price // unit) * unit  # never crosses
                if bucket not in agg:
                    if len(order) == limit:
                        break
                    order.append(bucket)
                    agg[bucket] = 0
                agg[bucket] += sum(o.residual for o in levels[price])
            rows, cum = [], 0
            for b in order:
                cum += agg[b]
                rows.append([str(b), str(agg[b]), str(cum)])
            out[name] = rows
        return 200, out

    def trade_history(self, query: dict[str, str]) -> tuple[int, Any]:
        p = self.by_symbol.get(query.get("symbol", ""))
        if p is None:
            return _error(400, "unknown symbol")
        try:
            lookback = int(query.get("lookback", "10"))
        except ValueError:
            return _error(400, "invalid lookback")
        if not 1 <= lookback <= MAX_LOOKBACK:
            return _error(400, f"lookback must be 1..{MAX_LOOKBACK}")
        trades = self.trades[p.id]
        newest = list(itertools.islice(reversed(trades), lookback))
        return 200, {"success": True, "trades": newest}

    def best_prices(self, product_id: int) -> tuple[int | None, int | None]:
        book = self.books[product_id]
        return book.best(True), book.best(False)
