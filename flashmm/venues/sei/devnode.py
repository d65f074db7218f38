"""The Sei node double: an x/dex chain (sei-chain v5.5.x semantics) behind the CometBFT JSON-RPC transport.

`DevNode` is what FlashMM's Sei connector talks to in tests and on a laptop: real signed transactions in,
CometBFT-shaped answers and WebSocket pushes out, one trading pair served by one order-book contract.
The transport is `rpc_server.SeiRPCServer`; the x/dex messages and Dec encoding are `schema`; signing,
decoding and fees are `tx`; the per-block batch auction is `flashmm.venues.sim.BatchAuctionBook` (shared
with the embedded simulator, run here on integer ticks/lots derived from the pair's tick sizes).
The contract the connector relies on is /tmp/h/devnode-contract.md (copied into the lead's design notes);
protocol facts are ../shared/SEI.md.

Transaction life cycle (as a Cosmos SDK v0.45 node, which sei-chain v5.5 is built on)
  CheckTx (`broadcast_tx_sync`), checks in the ante handler's order; the first failure answers:
    mempool cache: the same tx bytes again -> JSON-RPC error -32603 "tx already exists in cache" (CometBFT);
    decode -> code 2 "tx parse error"; a message of another type -> code 2
    "unable to resolve type URL <url>: tx parse error"; a malformed x/dex message or Dec -> code 2;
    ValidateBasic: creator/contract not bech32 `sei` -> code 7 (invalid address); no orders or
    cancellations -> code 18;
    fee < tx.min_fee_usei(gas_limit, orders, cancels, min_gas_price) -> code 13
      "insufficient fees; got: 4000usei required: 5000usei: insufficient fee";
    gas limit below the ante gas (1000 + 10/tx byte) -> code 11 (out of gas);
    fee payer without an account -> code 9 "fee payer address: sei1.. does not exist: unknown address";
    bank usei < fee -> code 5 (insufficient funds);
    sequence != the account's -> code 32
      "account sequence mismatch, expected 8, got 7: incorrect account sequence";
    signature over SignDoc(account_number, chain_id) -> code 4
      "signature verification failed; please verify account number (N) and chain-id (C): unauthorized".
  On success the fee is taken from bank usei and the sequence is incremented at CheckTx (a rejected tx
  changes nothing), and the tx joins the mempool for the next block.
  DeliverTx (at the next block, mempool order): a tx whose messages fail still consumed its sequence and
  fee, and its messages have no effect (all-or-nothing per tx, ids included). Failures:
    x/dex validation -> codespace "dex" with Sei's own message as the log, exactly (no SDK prefix):
      code 1 for order errors: creator != tx signer, tick violation (`schema.check_order`'s messages),
      FOK/stop order types, a bad direction, more than 10000 orders at one price, cancelling another
      account's resting order ("cannot cancel orders created by others");
      code 16 pair not registered; code 17 contract not found.
      (A real v5.5 node answers plain Go errors as code 1 in codespace "undefined" with a redacted log and
      prefixes logs with "failed to execute message; message index: N: "; the double keeps Sei's text so a
      connector can report it. A real node also refuses a creator that is not the signer already at
      CheckTx, code 8; the contract puts it at DeliverTx and so does the double.)
    gas: gas_used = 1000 + 10/tx byte + 30000 + 10000/order + 8000/cancel (the double's model, well under
      `tx.fee_for`'s limits); gas_limit below it -> code 11 "out of gas ...", gas_used = gas_limit.
  Market orders: `price` is the worst acceptable price, "0" = none; a non-zero price must be on the tick.

Events of a delivered tx (the Tx push and the `tx` method carry the same list; keys/values base64, as Sei):
  `tx` {fee, fee_payer}, `tx` {acc_seq = "addr/seq"}, `tx` {signature}, then per message `message`
  {action = type URL, module = "dex", sender}, `place_order` {order_id} once per order in message order,
  `cancel_order` {cancellation_id = the order id} once per cancellation. A failed tx keeps the `tx` and
  `message` events and carries no dex events. (A real SDK node drops `message` events of a failed tx; the
  contract keeps `message.sender` so a subscription on it also sees the failure. A client of a real node
  should also watch `tx.fee_payer` or poll `tx`.) The flat CometBFT map is derived from that list
  ("type.key" -> values, repeated keys kept) plus `tm.event`, `tx.hash`, `tx.height`.
  Successful DeliverTx data = TxMsgData{data: [MsgData{msg_type, data}]} (SDK v0.45), with
  MsgPlaceOrdersResponse{orderIds} for a placement.

End-block auction (SEI.md), per block: 1 the block's cancellations (only a resting order of the canceller;
unknown or already filled ids are ignored and not listed); 2 LIMIT orders join the book FIFO; 3 MARKET
orders match best price first, makers at their level price, and all takers of one side share one
clearing price, the exact VWAP of that side's taker fills (rounded half-even to 18 decimals, as Dec);
4 crossed limits settle at the midpoint, FIFO; 5 market orders left (partly) unfilled are cancelled and
listed in MatchResult.cancellations with initiator USER (the enum has only USER and LIQUIDATED; this is
no liquidation).
  Contract-side placement check (the order-book contract's, done at end-block as the contract's sudo call
  did): a LONG order with a price needs balance >= price x quantity in the price denom, else the order is
  FAILED_TO_PLACE with statusDescription "insufficient balance to place order" (its id was already given).
  Settlements: one SettlementEntry per fill (makers: per fill at the level price or the midpoint; takers:
  one per market order for its filled quantity at the clearing price); timestamp = block time in unix
  seconds. The contract state moves: LONG position += q, balance -= q x price; SHORT the opposite.
  There is no fill event: fills are read from GetMatchResult (the connector polls it per height).

Queries (`abci_query`): x/dex LongBookAll / ShortBookAll (levels ascending by price, FIFO allocations; another
contract or pair -> an empty list, as a KV prefix scan gives), GetOrders, GetMatchResult, served at any of the
last `history_blocks` (1000) heights; auth Account (BaseAccount in Any; `sequence` is the CheckTx sequence,
the next to sign with), bank Balance, wasm SmartContractState. Auth/bank/wasm answer from the latest state
whatever the height (the double keeps no history of them). Heights: "0" = latest; above latest -> code 26
"cannot query with height in the future; please provide a valid height: invalid height"; older than kept ->
code 1 "height H is pruned" (the contract's text; a real node answers code 18 "failed to load state at
height H; ..."). Unknown path -> code 6 "unknown query path: unknown request"; undecodable request bytes ->
code 2; data that is not hex -> JSON-RPC -32602. Account not found -> code 22 (NotFound, as gRPC maps it).
  SmartContractState with query_data {"get_position":{"account":"sei1..."}} answers JSON
  {"position":"<Dec>","balance":"<Dec>"} (signed Dec JSON text, 18 decimals). This query schema is the
  double's own: it models the order-book contract's account state (x/dex pairs were served by CosmWasm
  contracts that held positions), not a specific Sei contract's API.

Pushes per committed block H (after the commit, so a client can query height H on receipt): the Tx event of
each delivered tx in block order, then NewBlockHeader H, then NewBlock H. `skip_blocks(n)` commits n blocks
without pushing anything for them (a height gap); `force_codes` and `drop_sockets` inject the other faults.

Chain start: height 1 (an empty genesis block, queryable, never pushed); accounts are numbered from 1 in
creation order; order ids and settlement ids count from 1 per node.

Scripted participants (seeded): `makers` each keep a ladder of LIMIT orders around a latent fair price that
follows a random walk (one tx per block at most: cancel stale levels and refill in one tx), `takers` send
MARKET orders at a Poisson rate (`taker_rate_per_s` each), random side, lognormal size, with a worst
acceptable price half of the time. Each is a funded account with its own key (`new_account`) and is a real
client: it reads its account number and its open orders with `abci_query`, signs with `tx.build_tx` and
sends `broadcast_tx_sync` over this node's own HTTP JSON-RPC, recovering its sequence on code 32. The
latent fair price and the block notification are in-process (the makers' private information and clock).

Test-only extensions (not on a real node; for tests and the CLI's --manual-blocks):
  JSON-RPC `devnode_produce_block` {} -> {"height": "H"};
  JSON-RPC `devnode_fund` {"address", "usei"?, "balance"?} -> {}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import math
import os
import random
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, Self

import bech32
import orjson
from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth_query_pb2
from cosmpy.protos.cosmos.bank.v1beta1 import query_pb2 as bank_query_pb2
from cosmpy.protos.cosmos.base.abci.v1beta1 import abci_pb2
from cosmpy.protos.cosmos.base.v1beta1 import coin_pb2
from cosmpy.protos.cosmos.crypto.secp256k1.keys_pb2 import PubKey as ProtoPubKey
from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2 as wasm_query_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from flashmm.core.domain import Side
from flashmm.telemetry.logging import get_logger
from flashmm.venues.sei import schema
from flashmm.venues.sei import tx as sei_tx
from flashmm.venues.sei.rpc_server import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    RPCError,
    SeiRPCServer,
    format_block_time,
)
from flashmm.venues.sei.schema import OrderStatus, OrderType, PositionDirection
from flashmm.venues.sim import BatchAuctionBook, MatchFill, _Market, _Order

__all__ = [
    "DEFAULT_CONTRACT",
    "DevNode",
    "add_cli",
    "run_cli",
]

_log = get_logger("sei-devnode")


def _address_of(raw: bytes, prefix: str = "sei") -> str:
    return bech32.bech32_encode(prefix, bech32.convertbits(raw, 8, 5))


def decode_address(text: str, prefix: str = "sei") -> bytes | None:
    """The 20- or 32-byte payload of a valid bech32 address with `prefix`, else None."""
    if not isinstance(text, str) or not text.startswith(prefix + "1"):
        return None
    hrp, data = bech32.bech32_decode(text)
    if hrp != prefix or data is None:
        return None
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) not in (20, 32):
        return None
    return bytes(raw)


DEFAULT_CONTRACT = _address_of(hashlib.sha256(b"flashmm-devnode-contract").digest()[:20])
DEFAULT_CHAIN_ID = "arctic-1"
DEFAULT_MIN_GAS_PRICE = Decimal("0.02")
HISTORY_BLOCKS = 1000
MAX_ORDERS_PER_PRICE = 10_000

# sdk codespace codes
CODE_OK = 0
CODE_PRUNED = 1
CODE_TX_DECODE = 2
CODE_UNAUTHORIZED = 4
CODE_INSUFFICIENT_FUNDS = 5
CODE_UNKNOWN_REQUEST = 6
CODE_INVALID_ADDRESS = 7
CODE_UNKNOWN_ADDRESS = 9
CODE_OUT_OF_GAS = 11
CODE_INSUFFICIENT_FEE = 13
CODE_INVALID_REQUEST = 18
CODE_KEY_NOT_FOUND = 22
CODE_INVALID_HEIGHT = 26
CODE_WRONG_SEQUENCE = 32
# dex codespace codes
DEX_CODE_INVALID_ORDER = 1
DEX_CODE_PAIR_NOT_REGISTERED = 16
DEX_CODE_CONTRACT_NOT_FOUND = 17

# gas model (see module docstring)
ANTE_GAS_BASE = 1_000
GAS_PER_TX_BYTE = 10
DELIVER_GAS_BASE = 30_000
DELIVER_GAS_PER_ORDER = 10_000
DELIVER_GAS_PER_CANCEL = 8_000

INSUFFICIENT_BALANCE = "insufficient balance to place order"
CANCEL_OTHERS_ERROR = "cannot cancel orders created by others"
BASE_ACCOUNT_TYPE_URL = "/cosmos.auth.v1beta1.BaseAccount"

_DEC18 = Decimal(1).scaleb(-18)
_SIDE = {PositionDirection.LONG: Side.BUY, PositionDirection.SHORT: Side.SELL}
_DIRECTION_NAME = {PositionDirection.LONG: "LONG", PositionDirection.SHORT: "SHORT"}
_ORDER_TYPE_NAME = {OrderType.LIMIT: "LIMIT", OrderType.MARKET: "MARKET"}

# scripted participants
TAKER_RATE_PER_S = 2.0
FAIR_VOL_PER_SQRT_S = 4e-4  # latent fair price: 4 bps per sqrt(second) (log random walk)
MAKER_LEVELS = 5
MAKER_HALF_SPREAD_TICKS = 3
MAKER_LEVEL_STEP_TICKS = 2
MAKER_LEVEL_LOTS = 300
TAKER_MEDIAN_LOTS = 20.0
TAKER_SIZE_SIGMA = 0.8
TAKER_MAX_LOTS = 400
TAKER_WORST_PRICE_FRACTION = 0.01


def _q18(x: Decimal) -> Decimal:
    """Round to Dec's 18 decimals, half to even (Dec's own rounding)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return x.quantize(_DEC18, rounding=ROUND_HALF_EVEN)


def signed_dec_json(x: Decimal) -> str:
    """Dec JSON text that may be negative ("-1.500000000000000000"); positions and balances can be."""
    x = _q18(x)
    return ("-" if x < 0 else "") + schema.dec_to_json(abs(x))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_PARAMS_ERROR = "error converting json params to arguments"


def _fee_log(got: int, required: int) -> str:
    return f"insufficient fees; got: {got}usei required: {required}usei: insufficient fee"


def _sequence_log(expected: int, got: int) -> str:
    return f"account sequence mismatch, expected {expected}, got {got}: incorrect account sequence"


def _out_of_gas_log(location: str, wanted: int, used: int) -> str:
    return f"out of gas in location: {location}; gasWanted: {wanted}, gasUsed: {used}: out of gas"


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


@dataclass
class _Account:
    address: str
    number: int
    sequence: int = 0  # CheckTx sequence: the next one to sign with
    usei: int = 0  # bank balance (gas)
    balance: Decimal = Decimal(0)  # contract deposit in the price denom
    position: Decimal = Decimal(0)  # in the asset denom
    pubkey: bytes | None = None  # known after its first accepted tx


@dataclass(frozen=True, slots=True)
class _OrderInfo:
    """An order as placed (immutable); the book holds its remaining lots."""

    id: int
    account: str
    owner: int  # the account number (the auction book's owner id)
    direction: PositionDirection
    order_type: OrderType
    price: Decimal
    quantity: Decimal
    price_ticks: int
    lots: int
    data: str


@dataclass(slots=True)
class _PendingTx:
    raw: bytes
    hash: str
    decoded: sei_tx.DecodedTx
    sender: str
    msgs: list[tuple[str, Any]]  # (type URL, parsed message)
    n_orders: int
    n_cancels: int


@dataclass(slots=True)
class _TxResult:
    height: int
    index: int
    raw: bytes
    code: int
    codespace: str
    log: str
    gas_wanted: int
    gas_used: int
    events: list[tuple[str, list[tuple[str, str]]]]
    data: bytes

    def events_json(self) -> list[dict[str, Any]]:
        return [
            {"type": typ, "attributes": [{"key": _b64(k.encode()), "value": _b64(v.encode()), "index": True}
                                         for k, v in attrs]}
            for typ, attrs in self.events
        ]

    def result_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "data": _b64(self.data) if self.data else None,
            "log": self.log,
            "info": "",
            "gas_wanted": str(self.gas_wanted),
            "gas_used": str(self.gas_used),
            "events": self.events_json(),
            "codespace": self.codespace,
        }


# One side of a book snapshot: ascending (price_ticks, ((order_id, lots, account), ...)) in FIFO order.
_SideSnapshot = tuple[tuple[int, tuple[tuple[int, int, str], ...]], ...]


@dataclass(frozen=True, slots=True)
class _BlockRecord:
    height: int
    time_ns: int
    hash: str
    long: _SideSnapshot
    short: _SideSnapshot
    match_result: bytes  # serialized MatchResult
    tx_hashes: tuple[str, ...]
    # the contract's account state after this block (address -> (position, balance)), so a client can read
    # its position at the height it has processed, as a real node answers state queries at a height
    positions: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


@dataclass
class _BlockWork:
    """What DeliverTx staged for end-block."""

    cancels: list[tuple[int, int]] = field(default_factory=list)  # (order id, canceller's owner id)
    placed: list[_OrderInfo] = field(default_factory=list)  # every order placed this block, in id order
    at_price: Counter = field(default_factory=Counter)  # (side, ticks) -> orders placed this block


class _TxFailure(Exception):
    def __init__(self, code: int, log: str, codespace: str = "dex") -> None:
        super().__init__(log)
        self.code = code
        self.log = log
        self.codespace = codespace


# --------------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------------


class DevNode:
    """An x/dex chain of one contract and one pair on 127.0.0.1 (see the module docstring).

    `stats` counts: broadcasts, txs_ok (accepted at CheckTx), txs_rejected and txs_rejected_code_<N>,
    forced_codes, txs_delivered_ok, txs_failed (DeliverTx), orders_placed, cancels_requested, cancellations
    (applied), settlements, blocks, blocks_not_pushed, queries, participant_errors, block_errors.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        chain_id: str = DEFAULT_CHAIN_ID,
        block_ms: int = 400,
        manual_blocks: bool = False,
        takers: int = 2,
        makers: int = 1,
        seed: int = 7,
        initial_price: Decimal = Decimal("0.4"),
        contract_addr: str = DEFAULT_CONTRACT,
        price_denom: str = "USDC",
        asset_denom: str = "SEI",
        price_tick: Decimal = Decimal("0.0001"),
        qty_tick: Decimal = Decimal("1"),
        min_gas_price: Decimal = DEFAULT_MIN_GAS_PRICE,
        ping_interval: float = 27.0,
        read_timeout: float = 30.0,
        history_blocks: int = HISTORY_BLOCKS,
        taker_rate_per_s: float = TAKER_RATE_PER_S,
    ) -> None:
        if block_ms <= 0:
            raise ValueError("block_ms must be positive")
        if takers < 0 or makers < 0:
            raise ValueError("participant counts must be non-negative")
        if history_blocks < 1:
            raise ValueError("history_blocks must be at least 1")
        if decode_address(contract_addr) is None:
            raise ValueError(f"contract address {contract_addr!r} is not a valid sei bech32 address")
        if not (price_tick > 0 and qty_tick > 0 and initial_price > 0):
            raise ValueError("tick sizes and the initial price must be positive")
        self.chain_id = chain_id
        self.block_ms = block_ms
        self.manual_blocks = manual_blocks
        self.n_takers = takers
        self.n_makers = makers
        self.seed = seed
        self.contract = contract_addr
        self.price_denom = price_denom
        self.asset_denom = asset_denom
        self.price_tick = Decimal(price_tick)
        self.qty_tick = Decimal(qty_tick)
        self.min_gas_price = Decimal(min_gas_price)
        self.history_blocks = history_blocks
        self.taker_rate_per_s = taker_rate_per_s
        self.rpc = SeiRPCServer(chain_id, port=port, ping_interval=ping_interval, read_timeout=read_timeout)
        self.stats: dict[str, int] = Counter()
        self.height = 1

        self._rng = random.Random(f"devnode:{seed}")
        self._fair_ticks = float(initial_price / self.price_tick)
        self._keys_made = 0
        self._accounts: dict[str, _Account] = {}
        self._by_number: dict[int, _Account] = {}
        self._book = BatchAuctionBook()
        self._orders: dict[int, _OrderInfo] = {}  # every order still in a kept snapshot or in the book
        self._gone: deque[tuple[int, int]] = deque()  # (height it left the book, order id)
        self._next_order_id = 1
        self._next_settlement_id = 1
        self._mempool: list[_PendingTx] = []
        self._seen: dict[str, None] = {}  # mempool cache: hashes of accepted txs (insertion ordered)
        self._txs: dict[str, _TxResult] = {}
        self._blocks: dict[int, _BlockRecord] = {}
        self._forced: deque[int] = deque()
        self._skip = 0
        self._block_event = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._participants: list[_Participant] = []
        self._started = False
        genesis_ns = time.time_ns()
        self._blocks[1] = _BlockRecord(
            1, genesis_ns, hashlib.sha256(f"{chain_id}:genesis".encode()).hexdigest().upper(), (), (),
            schema.MatchResult(height=1, contractAddr=contract_addr).SerializeToString(), (),
        )
        self.rpc.set_latest_block(1, genesis_ns, self._blocks[1].hash)
        for name, handler in (
            ("broadcast_tx_sync", self._rpc_broadcast_tx_sync),
            ("tx", self._rpc_tx),
            ("abci_query", self._rpc_abci_query),
            ("abci_info", self._rpc_abci_info),
            ("devnode_produce_block", self._rpc_produce_block),
            ("devnode_fund", self._rpc_fund),
        ):
            self.rpc.register(name, handler)

    # ---- life cycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.rpc.url

    @property
    def ws_url(self) -> str:
        return self.rpc.ws_url

    @property
    def port(self) -> int:
        return self.rpc.port

    async def start(self) -> None:
        if self._started:
            return
        await self.rpc.start()
        self._started = True
        self._block_event = asyncio.Event()  # bound to the running loop
        for i in range(self.n_makers):
            self._participants.append(_Maker(self, self.new_account(), i))
        for i in range(self.n_takers):
            self._participants.append(_Taker(self, self.new_account(), i))
        if not self.manual_blocks:
            self._tasks.append(asyncio.create_task(self._block_loop(), name="devnode-blocks"))
        for p in self._participants:
            self._tasks.append(asyncio.create_task(p.run(), name=f"devnode-{p.name}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for p in self._participants:
            p.close()
        self._participants.clear()
        await self.rpc.stop()
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- accounts ----------------------------------------------------------------------------------

    def fund(self, address: str, *, usei: int = 10**12, balance: Decimal = Decimal("1000000")) -> None:
        """Create the account if new (next number, sequence 0); add bank usei and contract balance."""
        if decode_address(address) is None:
            raise ValueError(f"not a sei bech32 address: {address!r}")
        if usei < 0 or Decimal(balance) < 0:
            raise ValueError("funding amounts must be non-negative")
        acct = self._accounts.get(address)
        if acct is None:
            acct = _Account(address, number=len(self._accounts) + 1)
            self._accounts[address] = acct
            self._by_number[acct.number] = acct
        acct.usei += int(usei)
        acct.balance += Decimal(balance)

    def new_account(self, **fund_kwargs: Any) -> str:
        """A fresh deterministic private key (hex, from the seed), its account funded. Keep it secret."""
        while True:
            self._keys_made += 1
            key = hashlib.sha256(f"flashmm-devnode-key:{self.seed}:{self._keys_made}".encode()).hexdigest()
            try:
                signer = sei_tx.Signer(key, self.chain_id)
            except ValueError:  # out of the curve's range: astronomically rare, take the next
                continue
            self.fund(signer.address, **fund_kwargs)
            return key

    def position(self, address: str) -> tuple[Decimal, Decimal]:
        """(position in the asset denom, balance in the price denom) held by the contract."""
        acct = self._accounts.get(address)
        if acct is None:
            return Decimal(0), Decimal(0)
        return acct.position, acct.balance

    def book_levels(self) -> dict[str, dict[Decimal, Decimal]]:
        out: dict[str, dict[Decimal, Decimal]] = {}
        for name, side in (("long", Side.BUY), ("short", Side.SELL)):
            out[name] = {
                ticks * self.price_tick: lots * self.qty_tick
                for ticks, lots in sorted(self._book.level_lots[side].items())
            }
        return out

    # ---- fault injection ---------------------------------------------------------------------------

    def force_codes(self, code: int, n: int = 1) -> None:
        """The next `n` broadcast_tx_sync answer `code` (13 and 32 with Sei's log text) and accept nothing."""
        if code <= 0 or n < 0:
            raise ValueError("force_codes needs a non-zero code and n >= 0")
        self._forced.extend([code] * n)

    def skip_blocks(self, n: int) -> None:
        """The next `n` blocks are committed but nothing is pushed for them (subscribers see a height gap)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._skip += n

    def drop_sockets(self) -> int:
        return self.rpc.drop_all_clients()

    # ---- blocks ------------------------------------------------------------------------------------

    async def produce_block(self) -> int:
        """Commit one block now (timed or manual mode); returns its height."""
        return self._commit_block()

    async def wait_for_block(self, above: int) -> int:
        """Wait until a block above height `above` is committed; returns the latest height."""
        while self.height <= above:
            await self._block_event.wait()
        return self.height

    async def _block_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.block_ms / 1000.0
        next_t = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            try:
                self._commit_block()
            except Exception:  # noqa: BLE001 - a bug in one block must not stop the chain; counted and logged
                self.stats["block_errors"] += 1
                _log.exception("devnode_block_failed", height=self.height + 1)
            next_t += period
            if next_t < loop.time():  # fell behind: do not burst blocks to catch up
                next_t = loop.time() + period

    def _commit_block(self) -> int:
        height = self.height + 1
        time_ns = max(time.time_ns(), self._blocks[self.height].time_ns + 1)
        txs, self._mempool = self._mempool, []
        work = _BlockWork()
        results = [self._deliver_tx(ptx, i, height, work) for i, ptx in enumerate(txs)]
        match = self._end_block(height, time_ns, work)
        self._evolve_fair()
        prev = self._blocks[self.height]
        block_hash = hashlib.sha256(
            prev.hash.encode() + height.to_bytes(8, "big") + "".join(p.hash for p in txs).encode()
        ).hexdigest().upper()
        long_snap, short_snap = self._snapshot(prev)
        self._blocks[height] = _BlockRecord(
            height, time_ns, block_hash, long_snap, short_snap, match.SerializeToString(),
            tuple(p.hash for p in txs),
            {a.address: (a.position, a.balance) for a in self._accounts.values()},
        )
        for ptx, res in zip(txs, results, strict=True):
            self._txs[ptx.hash] = res
        self.height = height
        self._prune()
        self.rpc.set_latest_block(height, time_ns, block_hash)
        self.stats["blocks"] += 1
        if self._skip:
            self._skip -= 1
            self.stats["blocks_not_pushed"] += 1
        else:
            self._push_block(height, time_ns, block_hash, prev.hash, txs, results)
        event, self._block_event = self._block_event, asyncio.Event()
        event.set()
        return height

    def _snapshot(self, prev: _BlockRecord) -> tuple[_SideSnapshot, _SideSnapshot]:
        snaps = []
        for side in (Side.BUY, Side.SELL):
            snaps.append(tuple(
                (price, tuple((o.order_id, o.lots, self._orders[o.order_id].account) for o in queue))
                for price, queue in self._book.levels[side].items()
            ))
        # reuse the previous block's tuples when nothing changed (cheap history for quiet blocks)
        long_snap = prev.long if snaps[0] == prev.long else snaps[0]
        short_snap = prev.short if snaps[1] == prev.short else snaps[1]
        return long_snap, short_snap

    def _prune(self) -> None:
        earliest = self.height - self.history_blocks + 1
        for h in [h for h in self._blocks if h < earliest]:
            for tx_hash in self._blocks.pop(h).tx_hashes:
                self._txs.pop(tx_hash, None)
                self._seen.pop(tx_hash, None)
        # an order that left the book at height g is in snapshots < g only
        while self._gone and self._gone[0][0] <= earliest:
            self._orders.pop(self._gone.popleft()[1], None)

    def _evolve_fair(self) -> None:
        dt = self.block_ms / 1000.0
        self._fair_ticks *= math.exp(FAIR_VOL_PER_SQRT_S * math.sqrt(dt) * self._rng.gauss(0.0, 1.0))
        floor_ticks = 4.0 * (MAKER_HALF_SPREAD_TICKS + MAKER_LEVELS * MAKER_LEVEL_STEP_TICKS)
        self._fair_ticks = max(self._fair_ticks, floor_ticks)  # keep the makers' ladder above zero

    @property
    def fair_price(self) -> Decimal:
        """The scripted participants' latent fair price (test introspection)."""
        return _q18(Decimal(repr(self._fair_ticks)) * self.price_tick)

    # ---- pushes ------------------------------------------------------------------------------------

    def _push_block(self, height: int, time_ns: int, block_hash: str, prev_hash: str,
                    txs: list[_PendingTx], results: list[_TxResult]) -> None:
        for ptx, res in zip(txs, results, strict=True):
            flat: dict[str, list[str]] = {
                "tm.event": ["Tx"], "tx.hash": [ptx.hash], "tx.height": [str(height)]}
            for typ, attrs in res.events:
                for k, v in attrs:
                    flat.setdefault(f"{typ}.{k}", []).append(v)
            data = {
                "type": "tendermint/event/Tx",
                "value": {"TxResult": {"height": str(height), "index": res.index, "tx": _b64(ptx.raw),
                                       "result": res.result_json()}},
            }
            self.rpc.publish(flat, data)
        header = self._header(height, time_ns, prev_hash, txs)
        end_block = {"validator_updates": None, "consensus_param_updates": None, "events": None}
        self.rpc.publish({"tm.event": ["NewBlockHeader"]}, {
            "type": "tendermint/event/NewBlockHeader",
            "value": {"header": header, "num_txs": str(len(txs)), "result_begin_block": {},
                      "result_end_block": end_block},
        })
        self.rpc.publish({"tm.event": ["NewBlock"]}, {
            "type": "tendermint/event/NewBlock",
            "value": {
                "block": {
                    "header": header,
                    "data": {"txs": [_b64(p.raw) for p in txs]},
                    "evidence": {"evidence": []},
                    "last_commit": {"height": str(height - 1), "round": 0,
                                    "block_id": {"hash": prev_hash, "parts": {"total": 1, "hash": ""}},
                                    "signatures": []},
                },
                "block_id": {"hash": block_hash, "parts": {"total": 1, "hash": ""}},
                "result_begin_block": {},
                "result_end_block": end_block,
            },
        })

    def _header(self, height: int, time_ns: int, prev_hash: str, txs: list[_PendingTx]) -> dict[str, Any]:
        data_hash = ""
        if txs:
            data_hash = hashlib.sha256(b"".join(bytes.fromhex(p.hash) for p in txs)).hexdigest().upper()
        return {
            "version": {"block": "11", "app": "0"},
            "chain_id": self.chain_id,
            "height": str(height),
            "time": format_block_time(time_ns),
            "last_block_id": {"hash": prev_hash, "parts": {"total": 1, "hash": ""}},
            "last_commit_hash": "",
            "data_hash": data_hash,
            "validators_hash": "",
            "next_validators_hash": "",
            "consensus_hash": "",
            "app_hash": "",
            "last_results_hash": "",
            "evidence_hash": "",
            "proposer_address": self.rpc.node_id.upper(),
        }

    # ---- CheckTx -----------------------------------------------------------------------------------

    async def _rpc_broadcast_tx_sync(self, params: Any) -> dict[str, Any]:
        text = params.get("tx") if isinstance(params, dict) else (params[0] if params else None)
        if not isinstance(text, str):
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: tx must be a base64 string")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: illegal base64 data") from None
        self.stats["broadcasts"] += 1
        tx_hash = sei_tx.tx_hash(raw)
        if tx_hash in self._seen:
            raise RPCError(INTERNAL_ERROR, "tx already exists in cache")
        code, codespace, log = self._check_tx(raw, tx_hash)
        if code:
            self.stats["txs_rejected"] += 1
            self.stats[f"txs_rejected_code_{code}"] += 1
        else:
            self.stats["txs_ok"] += 1
        return {"code": code, "data": "", "log": log, "codespace": codespace, "hash": tx_hash}

    def _check_tx(self, raw: bytes, tx_hash: str) -> tuple[int, str, str]:
        """(code, codespace, log) of CheckTx; on success the tx is in the mempool."""
        if self._forced:
            return self._forced_answer(self._forced.popleft(), raw)
        try:
            decoded = sei_tx.decode_tx(raw)
        except ValueError:
            return CODE_TX_DECODE, "sdk", "tx parse error"
        try:
            msgs = [self._decode_msg(url, value) for url, value in decoded.messages]
            n_orders, n_cancels = self._validate_basic(msgs)
        except _TxFailure as f:
            return f.code, f.codespace, f.log
        required = sei_tx.min_fee_usei(decoded.gas_limit, n_orders, n_cancels, self.min_gas_price)
        if decoded.fee_usei < required:
            return CODE_INSUFFICIENT_FEE, "sdk", _fee_log(decoded.fee_usei, required)
        ante_gas = ANTE_GAS_BASE + GAS_PER_TX_BYTE * len(raw)
        if decoded.gas_limit < ante_gas:
            return CODE_OUT_OF_GAS, "sdk", _out_of_gas_log("txSize", decoded.gas_limit, ante_gas)
        sender = sei_tx.address_from_pubkey(decoded.pubkey)
        acct = self._accounts.get(sender)
        if acct is None:
            return CODE_UNKNOWN_ADDRESS, "sdk", f"fee payer address: {sender} does not exist: unknown address"
        if acct.usei < decoded.fee_usei:
            return (CODE_INSUFFICIENT_FUNDS, "sdk",
                    f"{acct.usei}usei is smaller than {decoded.fee_usei}usei: insufficient funds")
        if decoded.sequence != acct.sequence:
            return CODE_WRONG_SEQUENCE, "sdk", _sequence_log(acct.sequence, decoded.sequence)
        if not sei_tx.verify_tx_signature(raw, self.chain_id, acct.number):
            return (CODE_UNAUTHORIZED, "sdk", f"signature verification failed; please verify account number "
                                              f"({acct.number}) and chain-id ({self.chain_id}): unauthorized")
        acct.usei -= decoded.fee_usei
        acct.sequence += 1
        acct.pubkey = decoded.pubkey
        self._mempool.append(_PendingTx(raw, tx_hash, decoded, sender, msgs, n_orders, n_cancels))
        self._seen[tx_hash] = None
        return CODE_OK, "", ""

    def _forced_answer(self, code: int, raw: bytes) -> tuple[int, str, str]:
        """Fault injection: answer `code` with the text a node gives for it; the tx is not accepted."""
        self.stats["forced_codes"] += 1
        try:
            decoded: sei_tx.DecodedTx | None = sei_tx.decode_tx(raw)
        except ValueError:
            decoded = None
        if code == CODE_WRONG_SEQUENCE:
            got = decoded.sequence if decoded else 0
            acct = self._accounts.get(sei_tx.address_from_pubkey(decoded.pubkey)) if decoded else None
            expected = acct.sequence if acct else 0
            return code, "sdk", _sequence_log(expected, got)
        if code == CODE_INSUFFICIENT_FEE:
            got = decoded.fee_usei if decoded else 0
            n_orders = n_cancels = 0
            if decoded:
                with contextlib.suppress(_TxFailure):
                    n_orders, n_cancels = self._validate_basic(
                        [self._decode_msg(u, v) for u, v in decoded.messages])
            gas_limit = decoded.gas_limit if decoded else 0
            required = max(got + 1, sei_tx.min_fee_usei(gas_limit, n_orders, n_cancels, self.min_gas_price))
            return code, "sdk", _fee_log(got, required)
        return code, "sdk", f"forced code {code} (devnode fault injection)"

    @staticmethod
    def _decode_msg(type_url: str, value: bytes) -> tuple[str, Any]:
        if type_url == schema.TYPE_URL_PLACE_ORDERS:
            cls: Any = schema.MsgPlaceOrders
        elif type_url == schema.TYPE_URL_CANCEL_ORDERS:
            cls = schema.MsgCancelOrders
        else:
            raise _TxFailure(CODE_TX_DECODE, f"unable to resolve type URL {type_url}: tx parse error", "sdk")
        try:
            msg = cls.FromString(value)
        except DecodeError as e:
            raise _TxFailure(CODE_TX_DECODE, f"unable to decode {type_url}: {e}: tx parse error", "sdk") \
                from None
        try:  # Dec fields must be Dec text (a real node fails to unmarshal anything else)
            if type_url == schema.TYPE_URL_PLACE_ORDERS:
                for o in msg.orders:
                    schema.dec_from_wire(o.price, allow_negative=True)
                    schema.dec_from_wire(o.quantity, allow_negative=True)
            else:
                for c in msg.cancellations:
                    schema.dec_from_wire(c.price, allow_negative=True)
        except ValueError as e:
            raise _TxFailure(CODE_TX_DECODE, f"{e}: tx parse error", "sdk") from None
        return type_url, msg

    @staticmethod
    def _validate_basic(msgs: list[tuple[str, Any]]) -> tuple[int, int]:
        """Stateless checks of CheckTx; returns (orders, cancellations) for the fee."""
        if not msgs:
            raise _TxFailure(CODE_INVALID_REQUEST, "must contain at least one message: invalid request",
                             "sdk")
        n_orders = n_cancels = 0
        for url, msg in msgs:
            if decode_address(msg.creator) is None:
                raise _TxFailure(CODE_INVALID_ADDRESS,
                                 f"invalid creator address ({msg.creator!r}): invalid address", "sdk")
            if decode_address(msg.contractAddr) is None:
                raise _TxFailure(CODE_INVALID_ADDRESS,
                                 f"invalid contract address ({msg.contractAddr!r}): invalid address", "sdk")
            if url == schema.TYPE_URL_PLACE_ORDERS:
                if not msg.orders:
                    raise _TxFailure(CODE_INVALID_REQUEST,
                                     "at least one order needs to be placed: invalid request", "sdk")
                n_orders += len(msg.orders)
            else:
                if not msg.cancellations:
                    raise _TxFailure(CODE_INVALID_REQUEST,
                                     "at least one cancellation needs to be made: invalid request", "sdk")
                n_cancels += len(msg.cancellations)
        return n_orders, n_cancels

    # ---- DeliverTx ---------------------------------------------------------------------------------

    def _deliver_tx(self, ptx: _PendingTx, index: int, height: int, work: _BlockWork) -> _TxResult:
        d = ptx.decoded
        events: list[tuple[str, list[tuple[str, str]]]] = [
            ("tx", [("fee", f"{d.fee_usei}usei"), ("fee_payer", ptx.sender)]),
            ("tx", [("acc_seq", f"{ptx.sender}/{d.sequence}")]),
            ("tx", [("signature", _b64(d.signature))]),
        ]
        msg_events = [("message", [("action", url), ("module", "dex"), ("sender", ptx.sender)])
                      for url, _ in ptx.msgs]
        gas_used = (ANTE_GAS_BASE + GAS_PER_TX_BYTE * len(ptx.raw) + DELIVER_GAS_BASE
                    + DELIVER_GAS_PER_ORDER * ptx.n_orders + DELIVER_GAS_PER_CANCEL * ptx.n_cancels)

        def result(code: int, codespace: str, log: str, evs: list, data: bytes, used: int) -> _TxResult:
            return _TxResult(height, index, ptx.raw, code, codespace, log, d.gas_limit, used, evs, data)

        if d.gas_limit < gas_used:
            self.stats["txs_failed"] += 1
            return result(CODE_OUT_OF_GAS, "sdk", _out_of_gas_log("dex", d.gas_limit, gas_used),
                          events + msg_events, b"", d.gas_limit)
        try:
            staged = self._stage_msgs(ptx, work)
        except _TxFailure as f:
            self.stats["txs_failed"] += 1
            used = gas_used - DELIVER_GAS_PER_ORDER * ptx.n_orders - DELIVER_GAS_PER_CANCEL * ptx.n_cancels
            return result(f.code, f.codespace, f.log, events + msg_events, b"", used)
        # all messages passed: apply them (ids and the staged orders/cancels become real)
        msg_data = abci_pb2.TxMsgData()
        for (url, _), msg_event, (orders, cancel_ids) in zip(ptx.msgs, msg_events, staged, strict=True):
            events.append(msg_event)
            if url == schema.TYPE_URL_PLACE_ORDERS:
                for info in orders:
                    events.append(("place_order", [("order_id", str(info.id))]))
                    work.placed.append(info)
                    work.at_price[(_SIDE[info.direction], info.price_ticks)] += 1
                    self._orders[info.id] = info
                resp = schema.MsgPlaceOrdersResponse(orderIds=[o.id for o in orders]).SerializeToString()
            else:
                owner = self._accounts[ptx.sender].number
                for oid in cancel_ids:
                    events.append(("cancel_order", [("cancellation_id", str(oid))]))
                    work.cancels.append((oid, owner))
                resp = b""
            msg_data.data.add(msg_type=url, data=resp)
        if ptx.n_orders:
            self._next_order_id += ptx.n_orders
        self.stats["txs_delivered_ok"] += 1
        self.stats["orders_placed"] += ptx.n_orders
        self.stats["cancels_requested"] += ptx.n_cancels
        return result(CODE_OK, "", "", events, msg_data.SerializeToString(), gas_used)

    def _stage_msgs(self, ptx: _PendingTx, work: _BlockWork) -> list[tuple[list[_OrderInfo], list[int]]]:
        """Validate every message of a tx against the state; nothing changes unless all pass."""
        signer = self._accounts[ptx.sender]
        next_id = self._next_order_id
        at_price: Counter = Counter()
        staged: list[tuple[list[_OrderInfo], list[int]]] = []
        for url, msg in ptx.msgs:
            if msg.creator != ptx.sender:
                raise _TxFailure(DEX_CODE_INVALID_ORDER,
                                 f"creator {msg.creator} does not match the tx signer {ptx.sender}")
            if msg.contractAddr != self.contract:
                raise _TxFailure(DEX_CODE_CONTRACT_NOT_FOUND, f"contract {msg.contractAddr} not found: "
                                 "Error finding contract info")
            if url == schema.TYPE_URL_PLACE_ORDERS:
                orders = []
                for o in msg.orders:
                    info = self._validate_order(o, next_id, signer, work, at_price)
                    at_price[(_SIDE[info.direction], info.price_ticks)] += 1
                    orders.append(info)
                    next_id += 1
                staged.append((orders, []))
            else:
                ids = []
                for c in msg.cancellations:
                    resting = self._book.orders.get(c.id)
                    if resting is not None and resting.owner != signer.number:
                        raise _TxFailure(DEX_CODE_INVALID_ORDER, CANCEL_OTHERS_ERROR)
                    ids.append(int(c.id))
                staged.append(([], ids))
        return staged

    def _validate_order(self, o: Any, order_id: int, signer: _Account, work: _BlockWork,
                        at_price: Counter) -> _OrderInfo:
        if o.priceDenom != self.price_denom or o.assetDenom != self.asset_denom:
            raise _TxFailure(DEX_CODE_PAIR_NOT_REGISTERED,
                             f"pair {{price:{o.priceDenom},asset:{o.assetDenom}}} is not registered")
        try:
            order_type = OrderType(o.orderType)
        except ValueError:
            raise _TxFailure(DEX_CODE_INVALID_ORDER, f"unknown order type {o.orderType}") from None
        if order_type not in (OrderType.LIMIT, OrderType.MARKET):
            raise _TxFailure(DEX_CODE_INVALID_ORDER, f"order type {order_type.name} is not supported")
        try:
            direction = PositionDirection(o.positionDirection)
        except ValueError:
            raise _TxFailure(DEX_CODE_INVALID_ORDER,
                             f"invalid position direction {o.positionDirection}") from None
        price = schema.dec_from_wire(o.price, allow_negative=True)
        quantity = schema.dec_from_wire(o.quantity, allow_negative=True)
        # a market order's price is its worst acceptable price, 0 = none: only a non-zero one is tick-checked
        checked_price = self.price_tick if order_type is OrderType.MARKET and price == 0 else price
        error = schema.check_order(checked_price, quantity, self.price_tick, self.qty_tick)
        if error:
            raise _TxFailure(DEX_CODE_INVALID_ORDER, error)
        ticks = int(price / self.price_tick)
        lots = int(quantity / self.qty_tick)
        side = _SIDE[direction]
        if order_type is OrderType.LIMIT:
            resting = len(self._book.levels[side].get(ticks, ()))
            if resting + work.at_price[(side, ticks)] + at_price[(side, ticks)] >= MAX_ORDERS_PER_PRICE:
                raise _TxFailure(DEX_CODE_INVALID_ORDER,
                                 f"too many orders at price {price}: at most {MAX_ORDERS_PER_PRICE} allowed")
        return _OrderInfo(order_id, signer.address, signer.number, direction, order_type, price, quantity,
                          ticks, lots, o.data)

    # ---- end-block: the auction --------------------------------------------------------------------

    def _end_block(self, height: int, time_ns: int, work: _BlockWork) -> Any:
        mr = schema.MatchResult(height=height, contractAddr=self.contract)
        book = self._book
        timestamp = time_ns // 1_000_000_000
        # 1 cancellations
        for oid, owner in work.cancels:
            resting = book.orders.get(oid)
            if resting is None or resting.owner != owner:
                continue
            book.cancel(oid)
            info = self._orders[oid]
            self._left_book(oid, height)
            mr.cancellations.append(self._cancellation(info))
            self.stats["cancellations"] += 1
        # 2 limit orders join the book FIFO; the contract's balance check can refuse an order
        statuses: dict[int, str] = {}
        markets: list[_Market] = []
        for info in work.placed:
            if self._short_of_balance(info):
                statuses[info.id] = INSUFFICIENT_BALANCE
                self._left_book(info.id, height)
                continue
            statuses[info.id] = ""
            side = _SIDE[info.direction]
            if info.order_type is OrderType.LIMIT:
                book.add_limit(_Order(info.id, info.owner, side, info.price_ticks, info.lots, info.id))
            else:
                markets.append(_Market(info.owner, side, info.price_ticks, info.lots, info.id))
                self._left_book(info.id, height)  # a market order never rests
        for info in work.placed:
            failed = statuses[info.id]
            mr.orders.append(self._order_proto(
                info, OrderStatus.FAILED_TO_PLACE if failed else OrderStatus.PLACED, failed))
        # 3 market orders: makers at their level price, one clearing price per taker side
        maker_fills, taker_results = book.match_markets(markets)
        clearing = self._clearing_prices(maker_fills)
        for f in maker_fills:
            self._settle(mr, self._orders[f.order_id], f.lots, self._ticks_price(f.price), height, timestamp)
            if f.done:
                self._left_book(f.order_id, height)
        for m, lots, _ in taker_results:
            info = self._orders[m.client_id]
            if lots:
                self._settle(mr, info, lots, clearing[m.side], height, timestamp)
            if lots < m.lots:  # 5 the unfilled rest of a market order is cancelled
                mr.cancellations.append(self._cancellation(info))
        # 4 crossed limits settle at the midpoint
        for bid_fill, ask_fill in book.cross_limits():
            for f in (bid_fill, ask_fill):
                price = self._ticks_price(f.price)
                self._settle(mr, self._orders[f.order_id], f.lots, price, height, timestamp)
                if f.done:
                    self._left_book(f.order_id, height)
        return mr

    def _short_of_balance(self, info: _OrderInfo) -> bool:
        if info.direction is not PositionDirection.LONG or info.price == 0:
            return False
        return self._accounts[info.account].balance < info.price * info.quantity

    def _left_book(self, order_id: int, height: int) -> None:
        self._gone.append((height, order_id))

    def _ticks_price(self, ticks: float) -> Decimal:
        """A fill price in ticks (an integer level or a half-tick midpoint, exact in a float) as a Dec."""
        return _q18(Decimal(ticks) * self.price_tick)

    def _clearing_prices(self, maker_fills: Iterable[MatchFill]) -> dict[Side, Decimal]:
        """Exact VWAP of each taker side's fills (makers of the opposite side), rounded to 18 decimals."""
        notional = {Side.BUY: 0, Side.SELL: 0}
        lots = {Side.BUY: 0, Side.SELL: 0}
        for f in maker_fills:
            taker = f.side.opposite
            notional[taker] += int(f.price) * f.lots
            lots[taker] += f.lots
        out: dict[Side, Decimal] = {}
        for side in (Side.BUY, Side.SELL):
            if lots[side]:
                with localcontext() as ctx:
                    ctx.prec = 80
                    out[side] = _q18(Decimal(notional[side]) * self.price_tick / lots[side])
            else:
                out[side] = Decimal(0)
        return out

    def _settle(self, mr: Any, info: _OrderInfo, lots: int, price: Decimal, height: int,
                timestamp: int) -> None:
        q = lots * self.qty_tick
        acct = self._accounts[info.account]
        with localcontext() as ctx:
            ctx.prec = 80
            value = _q18(q * price)
            if info.direction is PositionDirection.LONG:
                acct.position += q
                acct.balance -= value
            else:
                acct.position -= q
                acct.balance += value
        mr.settlements.append(schema.SettlementEntry(
            account=info.account,
            priceDenom=self.price_denom,
            assetDenom=self.asset_denom,
            quantity=schema.dec_to_wire(q),
            executionCostOrProceed=schema.dec_to_wire(price),
            expectedCostOrProceed=schema.dec_to_wire(info.price),
            positionDirection=_DIRECTION_NAME[info.direction],
            orderType=_ORDER_TYPE_NAME[info.order_type],
            orderId=info.id,
            timestamp=timestamp,
            height=height,
            settlementId=self._next_settlement_id,
        ))
        self._next_settlement_id += 1
        self.stats["settlements"] += 1

    def _order_proto(self, info: _OrderInfo, status: OrderStatus, description: str = "",
                     quantity: Decimal | None = None) -> Any:
        return schema.Order(
            id=info.id,
            status=int(status),
            account=info.account,
            contractAddr=self.contract,
            price=schema.dec_to_wire(info.price),
            quantity=schema.dec_to_wire(info.quantity if quantity is None else quantity),
            priceDenom=self.price_denom,
            assetDenom=self.asset_denom,
            orderType=int(info.order_type),
            positionDirection=int(info.direction),
            data=info.data,
            statusDescription=description,
            nominal="0",
            triggerPrice="0",
        )

    def _cancellation(self, info: _OrderInfo) -> Any:
        return schema.Cancellation(
            id=info.id,
            initiator=int(schema.CancellationInitiator.USER),
            creator=info.account,
            contractAddr=self.contract,
            priceDenom=self.price_denom,
            assetDenom=self.asset_denom,
            positionDirection=int(info.direction),
            price=schema.dec_to_wire(info.price),
        )

    # ---- tx / abci_info / test-only methods --------------------------------------------------------

    async def _rpc_tx(self, params: Any) -> dict[str, Any]:
        text = params.get("hash") if isinstance(params, dict) else (params[0] if params else None)
        if not isinstance(text, str):
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: hash must be a string")
        tx_hash = _parse_hash(text)
        if tx_hash is None:
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: bad hash {text!r}")
        res = self._txs.get(tx_hash)
        if res is None:
            raise RPCError(INTERNAL_ERROR, f"tx ({tx_hash}) not found")
        return {"hash": tx_hash, "height": str(res.height), "index": res.index,
                "tx_result": res.result_json(), "tx": _b64(res.raw)}

    async def _rpc_abci_info(self, params: Any) -> dict[str, Any]:
        app_hash = _b64(bytes.fromhex(self._blocks[self.height].hash))
        return {"response": {"data": "sei", "version": "v5.5.5-flashmm-devnode", "app_version": "0",
                             "last_block_height": str(self.height), "last_block_app_hash": app_hash}}

    async def _rpc_produce_block(self, params: Any) -> dict[str, Any]:
        """Test-only: commit a block now."""
        return {"height": str(await self.produce_block())}

    async def _rpc_fund(self, params: Any) -> dict[str, Any]:
        """Test-only: fund an address (creates the account)."""
        if not isinstance(params, dict) or not isinstance(params.get("address"), str):
            raise RPCError(INVALID_PARAMS, "address must be a string")
        try:
            usei = int(params.get("usei", 10**12))
            balance = Decimal(str(params.get("balance", "1000000")))
            self.fund(params["address"], usei=usei, balance=balance)
        except (ValueError, InvalidOperation) as e:
            raise RPCError(INVALID_PARAMS, str(e)) from None
        return {}

    # ---- abci_query --------------------------------------------------------------------------------

    async def _rpc_abci_query(self, params: Any) -> dict[str, Any]:
        if isinstance(params, list):
            params = dict(zip(("path", "data", "height", "prove"), params, strict=False))
        path = params.get("path")
        if not isinstance(path, str):
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: path must be a string")
        data_text = params.get("data", "") or ""
        height_param = params.get("height", "0")
        try:
            if not isinstance(data_text, str):
                raise ValueError("data must be a hex string")
            data = bytes.fromhex(data_text.removeprefix("0x"))
            height = int(height_param if height_param not in (None, "") else 0)
        except (ValueError, TypeError) as e:
            raise RPCError(INVALID_PARAMS, f"{_PARAMS_ERROR}: {e}") from None
        self.stats["queries"] += 1
        code, log, value, at = self._query(path, data, height)
        return {"response": {
            "code": code,
            "log": log,
            "info": "",
            "index": "0",
            "key": None,
            "value": _b64(value) if code == 0 else None,
            "proofOps": None,
            "height": str(at),
            "codespace": "sdk" if code else "",
        }}

    def _query(self, path: str, data: bytes, height: int) -> tuple[int, str, bytes, int]:
        """(code, log, value, height answered)."""
        latest = self.height
        if height < 0:
            return (CODE_INVALID_REQUEST,
                    "cannot query with height < 0; please provide a valid height: invalid request", b"", 0)
        at = height or latest
        if at > latest:
            return (CODE_INVALID_HEIGHT,
                    "cannot query with height in the future; please provide a valid height: invalid height",
                    b"", at)
        if at not in self._blocks:
            return CODE_PRUNED, f"height {at} is pruned", b"", at
        handlers = {
            schema.query_path("LongBookAll"): self._q_long_books,
            schema.query_path("ShortBookAll"): self._q_short_books,
            schema.query_path("GetOrders"): self._q_get_orders,
            schema.query_path("GetMatchResult"): self._q_match_result,
            "/cosmos.auth.v1beta1.Query/Account": self._q_account,
            "/cosmos.bank.v1beta1.Query/Balance": self._q_balance,
            "/cosmwasm.wasm.v1.Query/SmartContractState": self._q_contract_state,
        }
        handler = handlers.get(path)
        if handler is None:
            return CODE_UNKNOWN_REQUEST, f"unknown query path {path}: unknown request", b"", at
        try:
            value = handler(data, self._blocks[at])
        except _QueryFailure as f:
            return f.code, f.log, b"", at
        return CODE_OK, "", value, at

    @staticmethod
    def _parse_request(cls: Any, data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            raise _QueryFailure(CODE_TX_DECODE,
                                f"unable to decode {cls.DESCRIPTOR.name}: {e}: tx parse error") from None

    def _book_side(self, snapshot: _SideSnapshot, entry_cls: Any) -> list[Any]:
        out = []
        for ticks, allocs in snapshot:
            price = schema.dec_to_wire(ticks * self.price_tick)
            total = sum(lots for _, lots, _ in allocs) * self.qty_tick
            out.append(entry_cls(price=price, entry=schema.OrderEntry(
                price=price,
                quantity=schema.dec_to_wire(total),
                allocations=[schema.Allocation(orderId=oid, quantity=schema.dec_to_wire(lots * self.qty_tick),
                                               account=account) for oid, lots, account in allocs],
                priceDenom=self.price_denom,
                assetDenom=self.asset_denom,
            )))
        return out

    def _ours(self, req: Any) -> bool:
        return (req.contractAddr == self.contract and req.priceDenom in ("", self.price_denom)
                and req.assetDenom in ("", self.asset_denom))

    def _q_long_books(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(schema.QueryAllLongBooksRequest, data)
        books = self._book_side(block.long, schema.LongBook) if self._ours(req) else []
        return schema.QueryAllLongBooksResponse(LongBook=books).SerializeToString()

    def _q_short_books(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(schema.QueryAllShortBooksRequest, data)
        books = self._book_side(block.short, schema.ShortBook) if self._ours(req) else []
        return schema.QueryAllShortBooksResponse(ShortBook=books).SerializeToString()

    def _q_get_orders(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(schema.QueryGetOrdersRequest, data)
        found: list[tuple[int, int]] = []
        if req.contractAddr == self.contract:
            for snapshot in (block.long, block.short):
                for _, allocs in snapshot:
                    found.extend((oid, lots) for oid, lots, account in allocs if account == req.account)
        orders = [self._order_proto(self._orders[oid], OrderStatus.PLACED, quantity=lots * self.qty_tick)
                  for oid, lots in sorted(found)]
        return schema.QueryGetOrdersResponse(orders=orders).SerializeToString()

    def _q_match_result(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(schema.QueryGetMatchResultRequest, data)
        if req.contractAddr != self.contract:
            raise _QueryFailure(CODE_KEY_NOT_FOUND, f"match result of contract {req.contractAddr} not found: "
                                "key not found")
        result = schema.MatchResult.FromString(block.match_result)
        return schema.QueryGetMatchResultResponse(result=result).SerializeToString()

    def _q_account(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(auth_query_pb2.QueryAccountRequest, data)
        acct = self._accounts.get(req.address)
        if acct is None:
            raise _QueryFailure(CODE_KEY_NOT_FOUND, "rpc error: code = NotFound desc = "
                                f"account {req.address} not found: key not found")
        base = auth_pb2.BaseAccount(address=acct.address, account_number=acct.number, sequence=acct.sequence)
        if acct.pubkey is not None:
            base.pub_key.Pack(ProtoPubKey(key=acct.pubkey), type_url_prefix="/")
        packed = any_pb2.Any(type_url=BASE_ACCOUNT_TYPE_URL, value=base.SerializeToString())
        return auth_query_pb2.QueryAccountResponse(account=packed).SerializeToString()

    def _q_balance(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(bank_query_pb2.QueryBalanceRequest, data)
        if decode_address(req.address) is None:
            raise _QueryFailure(CODE_INVALID_ADDRESS, f"invalid address {req.address!r}: invalid address")
        if not req.denom:
            raise _QueryFailure(CODE_INVALID_REQUEST, "invalid denom: invalid request")
        acct = self._accounts.get(req.address)
        amount = acct.usei if acct is not None and req.denom == sei_tx.DENOM else 0
        coin = coin_pb2.Coin(denom=req.denom, amount=str(amount))
        return bank_query_pb2.QueryBalanceResponse(balance=coin).SerializeToString()

    def _q_contract_state(self, data: bytes, block: _BlockRecord) -> bytes:
        req = self._parse_request(wasm_query_pb2.QuerySmartContractStateRequest, data)
        if req.address != self.contract:
            raise _QueryFailure(CODE_KEY_NOT_FOUND, f"address {req.address}: no such contract: key not found")
        try:
            query = orjson.loads(req.query_data)
            account = query["get_position"]["account"]
            if not isinstance(account, str):
                raise TypeError("account must be a string")
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise _QueryFailure(CODE_TX_DECODE, f"Error parsing into type QueryMsg: {e}: query wasm contract "
                                "failed") from None
        position, balance = block.positions.get(account, (Decimal(0), Decimal(0)))
        if block.height == self.height:
            position, balance = self.position(account)  # funding between blocks shows at once
        answer = orjson.dumps({"position": signed_dec_json(position), "balance": signed_dec_json(balance)})
        return wasm_query_pb2.QuerySmartContractStateResponse(data=answer).SerializeToString()


class _QueryFailure(Exception):
    def __init__(self, code: int, log: str) -> None:
        super().__init__(log)
        self.code = code
        self.log = log


def _parse_hash(text: str) -> str | None:
    """A tx hash given as hex (with or without 0x) or as base64 of the 32 bytes (CometBFT's JSON bytes)."""
    t = text.removeprefix("0x")
    if len(t) == 64:
        try:
            return bytes.fromhex(t).hex().upper()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex().upper() if len(raw) == 32 else None


# --------------------------------------------------------------------------------------------------
# Scripted participants: real clients of the node's HTTP JSON-RPC
# --------------------------------------------------------------------------------------------------


class _JsonRpcHttp:
    """A minimal keep-alive HTTP/1.1 JSON-RPC client (the participants' only way to reach the chain)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._id = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        for attempt in range(2):
            try:
                return await self._call_once(method, params)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _call_once(self, method: str, params: dict[str, Any]) -> Any:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._id += 1
        body = orjson.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        self._writer.write(
            f"POST / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        resp = orjson.loads(await self._reader.readexactly(length))
        if "error" in resp:
            err = resp["error"]
            raise RuntimeError(f"{method}: {err.get('code')} {err.get('message')}: {err.get('data')}")
        return resp["result"]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class _Participant(ABC):
    """A funded account that signs real txs and sends them through the node's JSON-RPC."""

    kind = "participant"

    def __init__(self, node: DevNode, key_hex: str, index: int) -> None:
        self.node = node
        self.signer = sei_tx.Signer(key_hex, node.chain_id)
        self.name = f"{self.kind}-{index}"
        self.rng = random.Random(f"devnode:{node.seed}:{self.kind}:{index}")
        self.client = _JsonRpcHttp(node.rpc.host, node.port)
        self.account_number = -1
        self.sequence = 0

    def close(self) -> None:
        self.client.close()

    async def run(self) -> None:
        while True:
            try:
                if self.account_number < 0:
                    await self._load_account()
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a participant logs, counts and carries on
                self.node.stats["participant_errors"] += 1
                _log.warning("devnode_participant_error", participant=self.name, error=str(e))
                await asyncio.sleep(self.node.block_ms / 1000.0)

    @abstractmethod
    async def step(self) -> None:
        """One round of this participant's behaviour."""

    async def abci(self, path: str, request: Any) -> bytes:
        res = await self.client.call("abci_query", {"path": path, "data": request.SerializeToString().hex(),
                                                    "height": "0", "prove": False})
        response = res["response"]
        if response["code"] != 0:
            raise RuntimeError(f"abci_query {path}: code {response['code']}: {response['log']}")
        return base64.b64decode(response["value"] or "")

    async def _load_account(self) -> None:
        value = await self.abci("/cosmos.auth.v1beta1.Query/Account",
                                auth_query_pb2.QueryAccountRequest(address=self.signer.address))
        account = auth_query_pb2.QueryAccountResponse.FromString(value).account
        base = auth_pb2.BaseAccount.FromString(account.value)
        self.account_number, self.sequence = base.account_number, base.sequence

    async def send(self, msgs: list[Any], n_orders: int, n_cancels: int) -> bool:
        """Sign and broadcast; on code 32 re-sign once with the sequence the node expects."""
        gas_limit, fee = sei_tx.fee_for(n_orders, n_cancels, self.node.min_gas_price)
        for _ in range(2):
            raw = sei_tx.build_tx(self.signer, msgs, self.account_number, self.sequence, gas_limit, fee)
            res = await self.client.call("broadcast_tx_sync", {"tx": _b64(raw)})
            if res["code"] == CODE_OK:
                self.sequence += 1
                return True
            if res["code"] == CODE_WRONG_SEQUENCE:
                expected = _expected_sequence(res["log"])
                if expected is not None:
                    self.sequence = expected
                    continue
            self.node.stats[f"{self.kind}_txs_refused"] += 1
            return False
        return False

    def order(self, direction: PositionDirection, price_ticks: int, lots: int, order_type: OrderType) -> Any:
        n = self.node
        return schema.new_order(
            account=self.signer.address, contract_addr=n.contract, price=price_ticks * n.price_tick,
            quantity=lots * n.qty_tick, price_denom=n.price_denom, asset_denom=n.asset_denom,
            direction=direction, order_type=order_type,
        )


def _expected_sequence(log: str) -> int | None:
    """The `expected N` of Sei's code-32 log."""
    marker = "expected "
    i = log.find(marker)
    if i < 0:
        return None
    digits = log[i + len(marker):].split(",", 1)[0].strip()
    return int(digits) if digits.isdigit() else None


class _Maker(_Participant):
    """A LIMIT ladder around the latent fair price; per block one tx cancels stale levels and refills."""

    kind = "maker"

    def __init__(self, node: DevNode, key_hex: str, index: int) -> None:
        super().__init__(node, key_hex, index)
        self.offset = index  # makers quote one tick apart so their levels interleave

    async def step(self) -> None:
        seen = self.node.height
        value = await self.abci(schema.query_path("GetOrders"), schema.QueryGetOrdersRequest(
            contractAddr=self.node.contract, account=self.signer.address))
        open_orders = schema.QueryGetOrdersResponse.FromString(value).orders
        cancels, places = self.plan(open_orders)
        msgs: list[Any] = []
        if cancels:
            msgs.append(schema.MsgCancelOrders(creator=self.signer.address, contractAddr=self.node.contract,
                                               cancellations=cancels))
        if places:
            msgs.append(schema.MsgPlaceOrders(creator=self.signer.address, contractAddr=self.node.contract,
                                              orders=places))
        if msgs:
            await self.send(msgs, len(places), len(cancels))
        await self.node.wait_for_block(seen)  # our tx (if any) is in the next block: look again after it

    def plan(self, open_orders: Iterable[Any]) -> tuple[list[Any], list[Any]]:
        n = self.node
        fair = n._fair_ticks
        half = MAKER_HALF_SPREAD_TICKS + self.offset
        desired: dict[tuple[int, int], int] = {}
        for i in range(MAKER_LEVELS):
            size = MAKER_LEVEL_LOTS * (1 + i)
            step = i * MAKER_LEVEL_STEP_TICKS
            desired[(int(PositionDirection.LONG), math.floor(fair - half) - step)] = size
            desired[(int(PositionDirection.SHORT), math.ceil(fair + half) + step)] = size
        have: Counter = Counter()
        cancels = []
        for o in open_orders:
            ticks = int(schema.dec_from_wire(o.price) / n.price_tick)
            key = (o.positionDirection, ticks)
            if key in desired:
                have[key] += int(schema.dec_from_wire(o.quantity) / n.qty_tick)
            else:
                cancels.append(schema.Cancellation(
                    id=o.id, initiator=int(schema.CancellationInitiator.USER), creator=self.signer.address,
                    contractAddr=n.contract, priceDenom=n.price_denom, assetDenom=n.asset_denom,
                    positionDirection=o.positionDirection, price=o.price))
        places = []
        for (direction, ticks), size in desired.items():
            if ticks > 0 and have[(direction, ticks)] < size // 2:
                places.append(self.order(PositionDirection(direction), ticks, size - have[(direction, ticks)],
                                         OrderType.LIMIT))
        return cancels, places


class _Taker(_Participant):
    """Sends MARKET orders at a Poisson rate: random side, lognormal size, a worst price half of the time."""

    kind = "taker"

    async def step(self) -> None:
        await asyncio.sleep(self.rng.expovariate(self.node.taker_rate_per_s))
        n = self.node
        direction = PositionDirection.LONG if self.rng.random() < 0.5 else PositionDirection.SHORT
        lots = max(1, min(TAKER_MAX_LOTS, round(self.rng.lognormvariate(math.log(TAKER_MEDIAN_LOTS),
                                                                           TAKER_SIZE_SIGMA))))
        price_ticks = 0
        if self.rng.random() < 0.5:
            if direction is PositionDirection.LONG:
                price_ticks = math.ceil(n._fair_ticks * (1 + TAKER_WORST_PRICE_FRACTION))
            else:
                price_ticks = max(1, math.floor(n._fair_ticks * (1 - TAKER_WORST_PRICE_FRACTION)))
        msg = schema.MsgPlaceOrders(creator=self.signer.address, contractAddr=n.contract,
                                    orders=[self.order(direction, price_ticks, lots, OrderType.MARKET)])
        await self.send([msg], 1, 0)


# --------------------------------------------------------------------------------------------------
# CLI: `flashmm sei-devnode`
# --------------------------------------------------------------------------------------------------


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `sei-devnode` subcommand on an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "sei-devnode",
        help="run the Sei x/dex node double on 127.0.0.1 (JSON-RPC + WebSocket) until SIGINT/SIGTERM",
        description="Serve the Sei node double. Prints one JSON line "
                    "{url, ws_url, chain_id, contract, height} on start.",
    )
    p.add_argument("--port", type=int, default=26657,
                   help="TCP port on 127.0.0.1 (0 = any free port; default 26657)")
    p.add_argument("--block-ms", type=int, default=400, help="block interval in ms (default 400)")
    p.add_argument("--takers", type=int, default=2, help="scripted market-order senders (default 2)")
    p.add_argument("--makers", type=int, default=1, help="scripted limit-order ladders (default 1)")
    p.add_argument("--seed", type=int, default=7,
                   help="seed of keys, fair price and participants (default 7)")
    p.add_argument("--manual-blocks", action="store_true",
                   help="no timed blocks: produce them with the test-only devnode_produce_block RPC")
    p.add_argument("--chain-id", default=DEFAULT_CHAIN_ID, help=f"chain id (default {DEFAULT_CHAIN_ID})")
    p.add_argument("--fund", action="append", default=[], metavar="ADDRESS",
                   help="fund this sei1... address (repeatable)")
    p.add_argument("--fund-key-env", default=sei_tx.ENV_PRIVATE_KEY, metavar="VAR",
                   help=f"fund the address of the hex key in this environment variable when set "
                        f"(default {sei_tx.ENV_PRIVATE_KEY})")
    p.set_defaults(config=None)  # flashmm's main() reads args.config for every subcommand
    return p


def _cli_error(text: str) -> int:
    print(f"sei-devnode: {text}", file=sys.stderr, flush=True)
    return 2


def run_cli(args: argparse.Namespace) -> int:
    """Run the node until SIGINT/SIGTERM. 0 on a clean stop, 1 if it cannot listen, 2 on bad arguments."""
    if not 0 <= args.port <= 65535:
        return _cli_error(f"--port must be 0..65535, got {args.port}")
    if args.block_ms <= 0:
        return _cli_error(f"--block-ms must be positive, got {args.block_ms}")
    if args.takers < 0 or args.makers < 0:
        return _cli_error("--takers and --makers must be >= 0")
    fund = list(args.fund)
    for address in fund:
        if decode_address(address) is None:
            return _cli_error(f"--fund {address!r} is not a sei bech32 address")
    key_text = os.environ.get(args.fund_key_env, "")
    if key_text.strip():
        try:
            fund.append(sei_tx.Signer(key_text, args.chain_id).address)
        except ValueError:  # the message names the variable, never the key
            return _cli_error(f"${args.fund_key_env} is not a valid hex secp256k1 private key")
    try:
        return asyncio.run(_serve(args, fund))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace, fund: list[str]) -> int:
    node = DevNode(port=args.port, chain_id=args.chain_id, block_ms=args.block_ms,
                   manual_blocks=args.manual_blocks, takers=args.takers, makers=args.makers, seed=args.seed)
    for address in fund:
        node.fund(address)
    try:
        await node.start()
    except OSError as e:
        print(f"sei-devnode: cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr,
              flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(orjson.dumps({"url": node.url, "ws_url": node.ws_url, "chain_id": node.chain_id,
                            "contract": node.contract, "height": node.height}).decode(), flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await node.stop()
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flashmm.venues.sei.devnode")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    return run_cli(parser.parse_args(["sei-devnode", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(_main())
