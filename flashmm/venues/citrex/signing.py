"""Citrex's EIP-712 typed data, signatures and request bodies, exactly as the official client makes them.

Every name, type, unit and key order here is taken from the official TypeScript client as npm ships it,
`citrex-sdk@1.2.2`, file `lib/index.js` (the build of the public repository citrex-markets/citrex-sdk,
`src/index.ts`, `src/ABI/EIP712.ts`, `src/enums.ts`); line numbers below are that file's. A test installs
that package from npm and runs it under node: FlashMM's signatures and request bodies equal the client's
byte for byte (tests/test_citrex_sdk_crosscheck.py); another reproduces the repository's own test snapshots
(tests/test_citrex_signing.py).

* Domain (lib/index.js:1248-1253): ``{name: "ciao", version: "0.0.0", chainId, verifyingContract}``.
  citrex-sdk is a fork of the Rysk SDK: its CHANGELOG for 1.2.2 reads "Fixed wrong name in EIP712 domain",
  and the repository's test snapshots were still made with Rysk's domain ``{name: "rysk", chainId: 421614}``.
  FlashMM signs with what the npm build signs with: "ciao".
* chainId: viem's ``sei`` (1329) on mainnet, ``seiTestnet`` (1328) on testnet (lib/index.js CHAINS, 1241).
* verifyingContract: the client reads it from the environment, ``ORDER_DISPATCH_MAINNET_ADDRESS``
  (lib/index.js:308-311); the package's README.md gives 0x993543DC8BdFCba9fc7355d822108eF49dB6b9F9 for
  mainnet (FlashMM's [citrex].verifying_contract default; no testnet value is published there).
* Types (lib/index.js:90-228): Order, CancelOrders, CancelOrder, SignedAuthentication (Withdraw and
  Referral are not used by FlashMM).
* Units: prices and quantities are 18-decimal integers, ``parseEther(value.toString())`` (``#toWei``,
  lib/index.js:447); FlashMM converts exact decimals (never floats) with :func:`to_wei`.
* Nonce: ``Math.floor((Date.now() + performance.now()) * 1e3)`` (``#getNonce``, lib/index.js:420), a
  microsecond-scale timestamp; FlashMM's :class:`NonceClock` gives microseconds since the epoch, strictly
  increasing per key (the client's formula adds the process's uptime and can repeat within a microsecond).
* Expiration: ``Date.now() + THIRTY_DAYS`` in milliseconds (THIRTY_DAYS = 2592e6, lib/index.js:307, 1111).
* Bodies: ``JSON.stringify`` of the objects built in placeOrder (1130-1160), cancelOrder (828-840),
  cancelOpenOrdersForProduct (790-800), cancelAndReplaceOrder (724-764); key order as there, no spaces,
  ``expiration``/``nonce``/``productId``/``subAccountId``/``orderType``/``timeInForce`` as JSON numbers,
  ``price``/``quantity`` as decimal strings. Authenticated reads (listOpenOrders, listPositions,
  listBalances) carry ``account``, ``signature`` (SignedAuthentication), ``subAccountId`` and optionally
  ``symbol`` as query parameters in that order (URLSearchParams, lib/index.js:1028-1080, 979-995).
"""

from __future__ import annotations

import enum
import threading
import time
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature, ValidationError

from flashmm.venues.keystore import parse_private_key_hex

__all__ = [
    "DOMAIN_NAME", "DOMAIN_VERSION", "MAINNET_CHAIN_ID", "TESTNET_CHAIN_ID", "MAINNET_VERIFYING_CONTRACT",
    "THIRTY_DAYS_MS", "TYPES", "CitrexSigner", "Domain", "NonceClock", "OrderType", "OrderStatus", "TimeInForce",
    "body_bytes", "from_wei", "recover", "to_wei",
]

DOMAIN_NAME = "ciao"  # lib/index.js:1249
DOMAIN_VERSION = "0.0.0"  # lib/index.js:1250
MAINNET_CHAIN_ID = 1329  # viem/chains `sei`
TESTNET_CHAIN_ID = 1328  # viem/chains `seiTestnet`
MAINNET_VERIFYING_CONTRACT = "0x993543DC8BdFCba9fc7355d822108eF49dB6b9F9"  # citrex-sdk 1.2.2 README.md
THIRTY_DAYS_MS = 2_592_000_000  # lib/index.js:307
WEI = 10**18
MAX_UINT64 = 2**64 - 1
MAX_UINT128 = 2**128 - 1


class OrderType(enum.IntEnum):  # lib/enums.js
    LIMIT = 0
    LIMIT_MAKER = 1  # post-only; cancel-and-replace forces it (lib/index.js:734-741)
    MARKET = 2
    LIMIT_REDUCE_ONLY = 7


class TimeInForce(enum.IntEnum):  # lib/enums.js
    GTC = 0
    FOK = 1
    IOC = 2


class OrderStatus(enum.StrEnum):  # lib/enums.js
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FILLED = "FILLED"
    OPEN = "OPEN"
    PENDING = "PENDING"
    REJECTED = "REJECTED"


def _fields(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "type": t} for n, t in pairs]


# lib/index.js:90-228 (src/ABI/EIP712.ts), in the client's field order (EIP-712 hashes fields in this order)
TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": _fields(("name", "string"), ("version", "string"), ("chainId", "uint256"),
                            ("verifyingContract", "address")),
    "Order": _fields(("account", "address"), ("subAccountId", "uint8"), ("productId", "uint32"), ("isBuy", "bool"),
                     ("orderType", "uint8"), ("timeInForce", "uint8"), ("expiration", "uint64"),
                     ("price", "uint128"), ("quantity", "uint128"), ("nonce", "uint64")),
    "CancelOrders": _fields(("account", "address"), ("subAccountId", "uint8"), ("productId", "uint32")),
    "CancelOrder": _fields(("account", "address"), ("subAccountId", "uint8"), ("productId", "uint32"),
                           ("orderId", "string")),
    "SignedAuthentication": _fields(("account", "address"), ("subAccountId", "uint8")),
}


class Domain:
    """The EIP-712 domain: {name, version, chainId, verifyingContract}."""

    __slots__ = ("chain_id", "name", "verifying_contract", "version")

    def __init__(self, chain_id: int = MAINNET_CHAIN_ID, verifying_contract: str = MAINNET_VERIFYING_CONTRACT,
                 name: str = DOMAIN_NAME, version: str = DOMAIN_VERSION) -> None:
        if not (isinstance(verifying_contract, str) and verifying_contract[:2] in ("0x", "0X")
                and len(verifying_contract) == 42):
            raise ValueError(f"verifying contract must be a 0x-prefixed 20-byte address, got {verifying_contract!r}")
        try:
            bytes.fromhex(verifying_contract[2:])
        except ValueError:
            raise ValueError(f"verifying contract is not hex: {verifying_contract!r}") from None
        self.chain_id = int(chain_id)
        self.verifying_contract = verifying_contract
        self.name = name
        self.version = version

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "chainId": self.chain_id,
                "verifyingContract": self.verifying_contract}


def _signable(domain: Domain, primary_type: str, message: Mapping[str, Any]) -> Any:
    # eth-account derives the primary type from the types it is given, so it gets the domain and the one
    # struct signed; no Citrex type references another, so the hash is the same as over the client's full set
    types = {"EIP712Domain": TYPES["EIP712Domain"], primary_type: TYPES[primary_type]}
    return encode_typed_data(full_message={"types": types, "primaryType": primary_type, "domain": domain.as_dict(),
                                           "message": dict(message)})


def recover(domain: Domain, primary_type: str, message: Mapping[str, Any], signature: str) -> str:
    """The checksummed address that signed `message` (ValueError for a malformed signature or message)."""
    if not isinstance(signature, str) or signature[:2] not in ("0x", "0X") or len(signature) != 132:
        raise ValueError("signature must be 65 bytes as 0x-prefixed hex")
    try:
        sig = bytes.fromhex(signature[2:])
        return Account.recover_message(_signable(domain, primary_type, message), signature=sig)
    except (ValueError, TypeError, OverflowError, BadSignature, ValidationError) as exc:
        raise ValueError(f"signature does not recover: {type(exc).__name__}") from None


def to_wei(value: Decimal | str | int) -> int:
    """An exact decimal as an 18-decimal integer (viem's parseEther); ValueError if it has more than 18
    decimals, is negative or not finite (a price or quantity is never rounded silently)."""
    try:
        d = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"not a decimal: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"not a finite non-negative decimal: {value!r}")
    scaled = d.scaleb(18)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than 18 decimals")
    return int(scaled)


def from_wei(value: int) -> Decimal:
    return Decimal(value).scaleb(-18)


class NonceClock:
    """Microseconds since the epoch, strictly increasing (two orders in one microsecond get distinct nonces)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return self._last


class CitrexSigner:
    """The account key: signs Citrex's typed data and builds the request bodies the official client sends.

    Its repr shows the address only, and it refuses to be pickled (the key never leaves by accident)."""

    __slots__ = ("_auth", "_key", "address", "domain", "nonces", "sub_account_id")

    def __init__(self, private_key_hex: str, domain: Domain, sub_account_id: int = 1) -> None:
        raw = parse_private_key_hex(private_key_hex)
        if not 0 <= sub_account_id <= 255:  # uint8 (the client's README: "1-255")
            raise ValueError(f"sub-account id must be 0..255, got {sub_account_id}")
        self._key = raw
        self.address: str = Account.from_key(raw).address  # EIP-55 checksummed, as viem's account.address
        self.domain = domain
        self.sub_account_id = sub_account_id
        self.nonces = NonceClock()
        self._auth = ""

    def __repr__(self) -> str:
        return f"CitrexSigner(address={self.address!r}, sub_account_id={self.sub_account_id})"

    __str__ = __repr__

    def __reduce__(self):  # never pickle the key by accident
        raise TypeError("CitrexSigner cannot be pickled")

    def sign(self, primary_type: str, message: Mapping[str, Any]) -> str:
        """0x-prefixed r || s || v (v = 27/28), lower-case hex, as viem's signTypedData returns it."""
        signed = Account.sign_message(_signable(self.domain, primary_type, message), self._key)
        return "0x" + bytes(signed.signature).hex()

    # ---- request bodies (dicts in the client's key order; `body_bytes` serialises them as JSON.stringify) ----
    def order(self, product_id: int, is_buy: bool, order_type: OrderType, time_in_force: TimeInForce,
              price_wei: int, quantity_wei: int, nonce: int, expiration_ms: int) -> dict[str, Any]:
        """POST /order body (placeOrder, lib/index.js:1130-1160)."""
        _check_order_numbers(price_wei, quantity_wei, nonce, expiration_ms)
        shared = {"account": self.address, "isBuy": bool(is_buy), "orderType": int(order_type),
                  "productId": int(product_id), "subAccountId": self.sub_account_id,
                  "timeInForce": int(time_in_force)}
        message = {"expiration": expiration_ms, "nonce": nonce, "price": price_wei, "quantity": quantity_wei, **shared}
        signature = self.sign("Order", message)
        return {"expiration": expiration_ms, "nonce": nonce, "price": str(price_wei), "quantity": str(quantity_wei),
                "signature": signature, **shared}

    def replace(self, id_to_cancel: str, product_id: int, is_buy: bool, price_wei: int, quantity_wei: int,
                nonce: int, expiration_ms: int) -> dict[str, Any]:
        """POST /order/cancel-and-replace body: the new order is always LIMIT_MAKER + GTC (lib/index.js:724-764)."""
        new_order = self.order(product_id, is_buy, OrderType.LIMIT_MAKER, TimeInForce.GTC, price_wei, quantity_wei,
                               nonce, expiration_ms)
        return {"idToCancel": id_to_cancel, "newOrder": new_order}

    def cancel(self, order_id: str, product_id: int) -> dict[str, Any]:
        """DELETE /order body (cancelOrder, lib/index.js:828-840)."""
        message = {"account": self.address, "orderId": str(order_id), "productId": int(product_id),
                   "subAccountId": self.sub_account_id}
        return {**message, "signature": self.sign("CancelOrder", message)}

    def cancel_all(self, product_id: int) -> dict[str, Any]:
        """DELETE /openOrders body (cancelOpenOrdersForProduct, lib/index.js:790-800)."""
        message = {"account": self.address, "productId": int(product_id), "subAccountId": self.sub_account_id}
        return {**message, "signature": self.sign("CancelOrders", message)}

    def auth_query(self, symbol: str | None = None) -> str:
        """Query string of an authenticated read (openOrders, positionRisk, balances): account, signature,
        subAccountId[, symbol]. SignedAuthentication holds no nonce, so its signature is computed once."""
        if not self._auth:
            self._auth = self.sign("SignedAuthentication", {"account": self.address,
                                                            "subAccountId": self.sub_account_id})
        params = [("account", self.address), ("signature", self._auth), ("subAccountId", str(self.sub_account_id))]
        if symbol:
            params.append(("symbol", symbol))
        return urllib.parse.urlencode(params)


def _check_order_numbers(price_wei: int, quantity_wei: int, nonce: int, expiration_ms: int) -> None:
    for name, v, top in (("price", price_wei, MAX_UINT128), ("quantity", quantity_wei, MAX_UINT128),
                         ("nonce", nonce, MAX_UINT64), ("expiration", expiration_ms, MAX_UINT64)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            raise ValueError(f"{name} {v!r} is out of range for its EIP-712 type")


def body_bytes(body: Mapping[str, Any]) -> bytes:
    """JSON as the client's JSON.stringify writes it: compact, keys in insertion order."""
    return orjson.dumps(body)
