"""Offline building, signing, decoding and verifying of Sei (Cosmos SDK) transactions with cosmpy.

cosmpy only builds and signs here; broadcasting is the connector's own CometBFT JSON-RPC
(`broadcast_tx_sync` with the base64 of `build_tx`'s bytes). SIGN_MODE_DIRECT: the signature is
secp256k1 (low-S, 64 bytes r||s) over SHA-256 of SignDoc{body_bytes, auth_info_bytes, chain_id,
account_number}.

Fees (`fee_for`), see ../shared/SEI.md:
  fee_usei = ceil(gas_limit x gas_price) + ceil((55000 x orders + 53000 x cancels) x 0.1)
The second term is x/dex's own charge, due in usei on top of the normal gas fee (a tx short of it is
refused with code 13). `gas_limit` is our execution-gas estimate:
  BASE_GAS (100000: ante handler, secp256k1 signature check, tx size at 10 gas/byte, account
  reads/writes; a plain Cosmos bank send typically stays under 100k) + GAS_PER_ORDER (20000) per order
  + GAS_PER_CANCEL (15000) per cancel. These are conservative planning numbers, not measurements
  of a sei-chain node; a node double should check fees with `min_fee_usei`, the same formula.

Keys: `load_private_key` takes a hex secp256k1 key from env `FLASHMM_SEI_PRIVATE_KEY`, else decrypts the
keystore named by `FLASHMM_SEI_KEYSTORE` (AES-256-GCM + scrypt, see flashmm/venues/keystore.py; `flashmm keystore create`
writes one) with the passphrase from `FLASHMM_SEI_KEYSTORE_PASSPHRASE` or an interactive prompt. The key and
passphrase are registered for log redaction and never appear in a repr, log line or exception message.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from typing import Any, Callable, NamedTuple

import ecdsa
from cosmpy.aerial.tx import SigningCfg, Transaction, TxFee
from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PrivateKey, PublicKey
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey as ProtoPubKey
from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import AuthInfo, SignDoc, TxBody, TxRaw
from google.protobuf.message import DecodeError

from flashmm.venues.keystore import SEI_KEYS
from flashmm.venues.keystore import load_private_key as _load_private_key
from flashmm.venues.keystore import parse_private_key_hex as _parse_private_key_hex

DENOM = "usei"
PUBKEY_TYPE_URL = "/cosmos.crypto.secp256k1.PubKey"

BASE_GAS = 100_000
GAS_PER_ORDER = 20_000
GAS_PER_CANCEL = 15_000
DEX_GAS_PER_ORDER = 55_000
DEX_GAS_PER_CANCEL = 53_000
DEX_GAS_PRICE_USEI = Decimal("0.1")
DEFAULT_GAS_PRICE_USEI = 0.02  # pacific-1 / arctic-1 minimum; atlantic-2 needs 0.08

ENV_PRIVATE_KEY = SEI_KEYS.private_key
ENV_KEYSTORE = SEI_KEYS.keystore
ENV_KEYSTORE_PASSPHRASE = SEI_KEYS.passphrase

_SECP256K1_ORDER = ecdsa.SECP256k1.order


# ------------------------------------------------------------------------------------------- keys


class Signer:
    """A secp256k1 account key: `.address` (bech32), `.public_key` (33-byte compressed).

    The repr shows the address only.
    """

    __slots__ = ("_key", "address", "chain_id", "public_key")

    def __init__(self, private_key_hex: str, chain_id: str, prefix: str = "sei") -> None:
        # cosmpy's PrivateKey(str) expects base64, so hand it the raw bytes.
        self._key = PrivateKey(_parse_private_key_hex(private_key_hex))
        self.chain_id = chain_id
        pub = self._key.public_key
        self.public_key: bytes = pub.public_key_bytes
        self.address: str = str(Address(pub, prefix=prefix))

    def __repr__(self) -> str:
        return f"Signer(address={self.address!r}, chain_id={self.chain_id!r})"

    __str__ = __repr__

    def __reduce__(self):  # never pickle the key by accident
        raise TypeError("Signer cannot be pickled")


def address_from_pubkey(pubkey: bytes, prefix: str = "sei") -> str:
    """Bech32 account address of a compressed secp256k1 public key (RIPEMD-160 of SHA-256)."""
    return str(Address(PublicKey(pubkey), prefix=prefix))


def load_private_key(passphrase_prompt: Callable[[], str] | None = None) -> str:
    """The Sei signing key as 64 hex characters: env FLASHMM_SEI_PRIVATE_KEY, else the keystore at
    FLASHMM_SEI_KEYSTORE (see flashmm.venues.keystore.load_private_key)."""
    return _load_private_key(SEI_KEYS, passphrase_prompt)


# ------------------------------------------------------------------------------------------- fees


def fee_for(n_orders: int, n_cancels: int, gas_price_usei: float = DEFAULT_GAS_PRICE_USEI) -> tuple[int, int]:
    """(gas_limit, fee_usei) for a tx placing `n_orders` and cancelling `n_cancels` (see module docstring)."""
    if n_orders < 0 or n_cancels < 0:
        raise ValueError("order and cancel counts must be non-negative")
    gas_limit = BASE_GAS + GAS_PER_ORDER * n_orders + GAS_PER_CANCEL * n_cancels
    return gas_limit, min_fee_usei(gas_limit, n_orders, n_cancels, gas_price_usei)


def min_fee_usei(gas_limit: int, n_orders: int, n_cancels: int, gas_price_usei: float | Decimal) -> int:
    """The least fee a node accepts: ceil(gas_limit x gas_price) + the x/dex charge."""
    price = Decimal(str(gas_price_usei))
    if price < 0:
        raise ValueError("gas price must be non-negative")
    gas_fee = math.ceil(Decimal(gas_limit) * price)
    dex_fee = math.ceil((DEX_GAS_PER_ORDER * n_orders + DEX_GAS_PER_CANCEL * n_cancels) * DEX_GAS_PRICE_USEI)
    return gas_fee + dex_fee


# -------------------------------------------------------------------------------------- build/sign


def build_tx(
    signer: Signer,
    msgs: list,
    account_number: int,
    sequence: int,
    gas_limit: int,
    fee_usei: int,
    memo: str = "",
) -> bytes:
    """Signed TxRaw bytes (SIGN_MODE_DIRECT, deterministic RFC 6979 signature) ready for broadcast."""
    if not msgs:
        raise ValueError("a transaction needs at least one message")
    if fee_usei < 0 or gas_limit <= 0:
        raise ValueError("fee must be non-negative and gas limit positive")
    tx = Transaction()
    for msg in msgs:
        tx.add_message(msg)
    fee = TxFee(amount=f"{fee_usei}{DENOM}" if fee_usei else None, gas_limit=gas_limit)
    tx.seal(SigningCfg.direct(signer._key.public_key, sequence), fee=fee, memo=memo)
    tx.sign(signer._key, chain_id=signer.chain_id, account_number=account_number, deterministic=True)
    tx.complete()
    # cosmpy's Tx {1 body, 2 auth_info, 3 signatures} serializes to the same bytes as TxRaw
    # {1 body_bytes, 2 auth_info_bytes, 3 signatures}, with body/auth_info bytes equal to what was signed.
    return tx.tx.SerializeToString()


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT tx hash: uppercase hex SHA-256 of the tx bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


# ------------------------------------------------------------------------------------------ decode


class DecodedTx(NamedTuple):
    messages: list[tuple[str, bytes]]  # (type_url, serialized message), in body order
    pubkey: bytes  # compressed secp256k1 public key of the single signer
    sequence: int
    fee_usei: int  # sum of the fee coins in usei (other denoms are ignored)
    gas_limit: int
    signature: bytes


def _parse(tx_bytes: bytes) -> tuple[Any, Any, Any]:
    try:
        raw = TxRaw.FromString(tx_bytes)
        body = TxBody.FromString(raw.body_bytes)
        auth = AuthInfo.FromString(raw.auth_info_bytes)
    except DecodeError as e:
        raise ValueError(f"tx parse error: {e}") from None
    return raw, body, auth


def decode_tx(tx_bytes: bytes) -> DecodedTx:
    """Decode TxRaw bytes of a single-signer secp256k1 tx; ValueError when malformed."""
    raw, body, auth = _parse(tx_bytes)
    if len(auth.signer_infos) != 1 or len(raw.signatures) != 1:
        raise ValueError("expected exactly one signer and one signature")
    info = auth.signer_infos[0]
    if info.public_key.type_url != PUBKEY_TYPE_URL:
        raise ValueError(f"unsupported public key type {info.public_key.type_url!r}")
    try:
        pubkey = ProtoPubKey.FromString(info.public_key.value).key
    except DecodeError as e:
        raise ValueError(f"tx parse error: {e}") from None
    fee_usei = 0
    for coin in auth.fee.amount:
        if coin.denom == DENOM:
            if not coin.amount.isdigit():
                raise ValueError(f"bad fee amount {coin.amount!r}")
            fee_usei += int(coin.amount)
    return DecodedTx(
        messages=[(m.type_url, m.value) for m in body.messages],
        pubkey=pubkey,
        sequence=info.sequence,
        fee_usei=fee_usei,
        gas_limit=auth.fee.gas_limit,
        signature=raw.signatures[0],
    )


def memo_of(tx_bytes: bytes) -> str:
    """The memo of a TxRaw."""
    return _parse(tx_bytes)[1].memo


def verify_tx_signature(tx_bytes: bytes, chain_id: str, account_number: int) -> bool:
    """True when the single signature is a valid low-S secp256k1 signature of the tx's SignDoc."""
    try:
        raw, _, _ = _parse(tx_bytes)
        decoded = decode_tx(tx_bytes)
    except ValueError:
        return False
    sig = decoded.signature
    if len(sig) != 64:
        return False
    s = int.from_bytes(sig[32:], "big")
    if s > _SECP256K1_ORDER // 2:  # Cosmos SDK rejects high-S (malleable) signatures
        return False
    sign_doc = SignDoc(
        body_bytes=raw.body_bytes,
        auth_info_bytes=raw.auth_info_bytes,
        chain_id=chain_id,
        account_number=account_number,
    ).SerializeToString()
    try:
        key = ecdsa.VerifyingKey.from_string(decoded.pubkey, curve=ecdsa.SECP256k1, hashfunc=hashlib.sha256)
        return bool(key.verify(sig, sign_doc, sigdecode=ecdsa.util.sigdecode_string))
    except (ecdsa.BadSignatureError, ecdsa.MalformedPointError, ValueError):
        return False
