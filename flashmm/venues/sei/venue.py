"""The Sei venue: x/dex (as of sei-chain v5.5) over CometBFT RPC, orders signed with cosmpy.

x/dex was removed from Sei in v5.8 (September 2024); this connector serves networks that still run it: a
local sei-chain <= v5.5.5, a fork, or FlashMM's own node double (`flashmm sei-devnode`), against which it
is tested end to end.

One block is one batch for the engine, as on the embedded simulator:

* **Feed** (one WebSocket, 2 of the node's 5 subscriptions): ``NewBlockHeader`` gives height and liveness;
  ``Tx AND message.sender=<us>`` gives our transactions' results (acks by tx hash and
  ``place_order.order_id``). The pair's trades need no subscription: x/dex emits no fill events, so
  every block's ``GetMatchResult`` (queried at that height) is the one source of trades and of our fills,
  and the book is read with ``LongBookAll``/``ShortBookAll`` at the same height and published as a diff.
  A height gap (skipped pushes, a reconnect) fetches the match result of every missed height, so no fill
  is lost, and re-snapshots the book at the latest height. Pings are answered by the websockets library;
  silence beyond ``[sei].feed_silence_s`` or a dropped socket reconnects with jittered exponential
  backoff, trying the next endpoint; the engine is told at once (``VenueStatus``) so quotes come down.
* **Orders**: each block's actions go out as one transaction, cancellations first
  (``MsgCancelOrders`` then ``MsgPlaceOrders``), fee from the gas table in ``tx.fee_for`` (it covers
  x/dex's per-order charge). Account number and sequence are cached; on code 32 the expected sequence
  is taken from the node's message and the tx re-signed. Every other rejection is a typed
  :class:`SeiTxError`, counted per reason and logged, and becomes ``OrderReject``/``CancelReject``.
  Our client id travels in the order's ``data`` field ("flashmm:<id>:<run tag>"), so the venue's record
  of open orders maps back to client ids after a restart, and an order of this account that another
  process placed (another instance on the key, a wallet) is never taken for one of ours: orders open at
  start, and FlashMM orders and transactions landing in the first ``tx_timeout_blocks`` blocks after it (a
  killed run's, still in a mempool), are a previous run's and are known again (cancellable); any later
  order or transaction of the account unsent by this process is reported in ``AccountState.foreign`` /
  ``foreign_activity`` (the engine pauses and alerts; it never cancels those orders).
* **Stalls**: a node that stops answering (transport errors, timeouts) or answers an account query with an
  error raises ``VenueUnavailableError`` from ``account_state`` (the engine pauses, never faults); a node
  whose height went backwards (restarted on a fresh chain, or rolled back) is detected at the reconnect:
  the connector says so (``VenueStatus``), rejects the transactions that can no longer land, forgets the
  old chain's orders, reloads the account's sequence and re-snapshots at the new height.
* **Account**: open orders from ``GetOrders``; the position from the pair contract's own state
  (``SmartContractState {"get_position": {"account": ..}}``: x/dex pairs were served by CosmWasm
  contracts that held positions; the query shape is the node double's, documented in devnode.py).
* **Fees**: gas is paid in usei; it is reported as a ``FeeCharge`` valued at the pair's mid when the
  pair's base is SEI (the default), else counted in ``unpriced_gas_usei``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import re
import uuid
from collections.abc import Sequence
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import websockets

from flashmm.config import Config, SeiConfig
from flashmm.core.clock import WallClock
from flashmm.core.domain import (
    AccountState,
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    FeeCharge,
    Fill,
    Instrument,
    OrderAck,
    OrderAction,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
    VenueOrder,
    VenueStatus,
)
from flashmm.telemetry.logging import get_logger
from flashmm.venues.base import Venue, VenueStartError, VenueUnavailableError
from flashmm.venues.sei import schema as S
from flashmm.venues.sei.rpc_client import (
    ABCIError,
    EndpointPool,
    RPCCallError,
    RPCClient,
    TransportError,
    _redact_url,
)
from flashmm.venues.sei.tx import Signer, build_tx, fee_for

__all__ = ["SeiTxError", "SeiVenue", "SeiVenueError", "tx_error"]

CLIENT_ID_PREFIX = "flashmm:"
_SEQ_RE = re.compile(r"expected (\d+), got (\d+)")


class SeiVenueError(VenueStartError):
    """The venue cannot start (no endpoint answers, wrong chain, unknown account)."""


class SeiTxError(Exception):
    """A transaction the node refused; `kind` names the reason for counters and logs."""

    kind = "rejected"

    def __init__(self, code: int, codespace: str, log: str) -> None:
        super().__init__(f"{self.kind} (code {code}{'/' + codespace if codespace else ''}): {log}")
        self.code = code
        self.codespace = codespace
        self.log = log


class TxParseError(SeiTxError):
    kind = "tx_parse_error"


class UnauthorizedError(SeiTxError):
    kind = "unauthorized"


class UnknownAccountError(SeiTxError):
    kind = "unknown_account"


class OutOfGasError(SeiTxError):
    kind = "out_of_gas"


class InsufficientFeeError(SeiTxError):
    kind = "insufficient_fee"


class InsufficientFundsError(SeiTxError):
    kind = "insufficient_funds"


class SequenceMismatchError(SeiTxError):
    kind = "sequence_mismatch"

    @property
    def expected(self) -> int | None:
        m = _SEQ_RE.search(self.log)
        return int(m.group(1)) if m else None


class DexValidationError(SeiTxError):
    kind = "dex_validation"


class MempoolError(SeiTxError):
    kind = "mempool"


_SDK_CODES: dict[int, type[SeiTxError]] = {
    2: TxParseError, 4: UnauthorizedError, 5: InsufficientFundsError, 9: UnknownAccountError,
    11: OutOfGasError, 13: InsufficientFeeError, 19: MempoolError, 20: MempoolError, 32: SequenceMismatchError,
}


def tx_error(code: int, codespace: str, log: str) -> SeiTxError:
    """The typed error of a non-zero tx result code (Cosmos SDK codespace `sdk`; anything else is the
    module's own validation, e.g. x/dex tick checks)."""
    if codespace in ("", "sdk") and code in _SDK_CODES:
        return _SDK_CODES[code](code, codespace, log)
    if codespace and codespace != "sdk":
        return DexValidationError(code, codespace, log)
    return SeiTxError(code, codespace, log)


@dataclass(slots=True)
class _Live:
    """One of our orders as the connector knows it."""

    cid: int
    side: Side
    order_type: OrderType
    price_ticks: int
    lots: int
    remaining: int
    oid: int | None = None
    acked: bool = False


@dataclass(slots=True)
class _InFlight:
    hash: str
    places: list[PlaceOrder]
    cancels: list[tuple[int, int]]  # (client id, venue order id)
    sent_height: int
    fee_usei: int
    looked_up: int = 0  # times `tx` was asked for it


@dataclass
class SeiStats:
    blocks: int = 0
    gaps: int = 0
    missed_heights: int = 0
    resnapshots: int = 0
    reconnects: int = 0
    txs_sent: int = 0
    txs_delivered: int = 0
    txs_failed: int = 0
    txs_lost: int = 0
    sequence_recoveries: int = 0
    fills: int = 0
    local_rejects: int = 0
    foreign_orders: int = 0  # orders of this account another client placed while we run
    foreign_txs: int = 0  # transactions signed with our key that this process did not send
    height_resets: int = 0  # the node's height went backwards (fresh chain, rollback)
    unpriced_gas_usei: int = 0
    rejects: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rejects"}
        d.update({f"reject_{k}": v for k, v in self.rejects.items()})
        return d


def _direction(side: Side) -> S.PositionDirection:
    return S.PositionDirection.LONG if side is Side.BUY else S.PositionDirection.SHORT


def _event_map(result: dict[str, Any]) -> dict[str, list[str]]:
    ev = result.get("events")
    if not isinstance(ev, dict):
        return {}
    return {str(k): [str(x) for x in v] for k, v in ev.items() if isinstance(v, list)}


class SeiVenue(Venue):
    name = "sei"
    wall_clock_feed = True

    def __init__(self, cfg: Config, signer: Signer, instrument: Instrument | None = None) -> None:
        self.cfg = cfg
        self.sc: SeiConfig = cfg.sei
        self.signer = signer
        self.account_id = f"sei:{self.sc.chain_id}:{signer.address}"  # one process per account (ops/lease)
        self.instrument = instrument or cfg.instrument.instrument()
        self.clock = WallClock()
        self.maker_fee_bps = 0.0  # x/dex charges gas per order, not a fee on notional
        self.pool = EndpointPool(list(self.sc.endpoints), self.sc.endpoint_failures_to_open, self.sc.endpoint_cooldown_s)
        self.rpc = RPCClient(self.pool, self.sc.request_timeout_s)
        self.log = get_logger("sei")
        self.stats = SeiStats()
        self.height = 0  # last block whose batch was queued
        self.engine_height = 0  # last block whose batch the engine took: account state is read at this height
        self.account_number = -1
        self.sequence = -1
        self._queue: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        self._out: list[Event] = []  # events for the next block's batch
        self._published: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        self._live: dict[int, _Live] = {}  # client id -> order
        self._by_oid: dict[int, int] = {}  # venue order id -> client id
        self._foreign: dict[int, tuple[Side, int]] = {}  # venue orders of ours without a client id: oid -> (side, price)
        self.run_tag = uuid.uuid4().hex[:8]  # in each order's data: what this process sent
        self._appeared: set[int] = set()  # client ids (-order id) of orders another client placed while we run
        self._sent_hashes: set[str] = set()  # every tx this process signed and tried to broadcast (bounded)
        self._sent_order: deque[str] = deque()
        self._foreign_txs: list[str] = []  # txs of our account we never sent, since the last account read
        self._start_height = 0
        self._pending: list[OrderAction] = []
        self._inflight: dict[str, _InFlight] = {}
        self._delivered: dict[int, list[_InFlight]] = {}  # height -> our txs delivered in it (cancels to settle)
        self._sent_height = -1
        self._feed_task: asyncio.Task | None = None
        self._flush_task: asyncio.Task | None = None
        self._stopped = False
        self._ws: Any = None
        self._connected = False
        self.ws_endpoint = ""  # redacted
        self._block_lock = asyncio.Lock()
        self._need_snapshot = False  # after a reconnect the book is re-read whole, gap or not
        self._had_blocks = False
        self._p_tick = self.instrument.price_tick
        self._q_tick = self.instrument.lot_size

    # ================================================================== Venue interface ================
    async def start(self) -> None:
        try:
            status = await self.rpc.call("status")
        except (TransportError, RPCCallError) as exc:
            raise SeiVenueError(f"no Sei RPC endpoint answered status: {exc}") from None
        network = str(status.get("node_info", {}).get("network", ""))
        if network != self.sc.chain_id:
            raise SeiVenueError(f"the node serves chain {network!r}, [sei].chain_id is {self.sc.chain_id!r}")
        await self._load_account()
        latest = int(status["sync_info"]["latest_block_height"])
        await self._catch_up(latest, initial=True)
        self._start_height = latest
        await self._known_at_start(latest)
        self._feed_task = asyncio.create_task(self._feed_loop(), name="sei-feed")
        self.log.info("started", address=self.signer.address, chain_id=self.sc.chain_id, height=latest,
                      account_number=self.account_number, sequence=self.sequence)

    async def next_batch(self) -> list[Event] | None:
        batch = await self._queue.get()  # cancel-safe: the engine's feed timer may cancel this wait
        if batch:  # a block's batch ends with its book event: the height the engine has now seen
            last = batch[-1]
            if isinstance(last, BookDiff):
                self.engine_height = last.last_seq
            elif isinstance(last, BookSnapshot):
                self.engine_height = last.seq
        return batch

    def order_cost_quote(self, mid_ticks: float) -> float:
        """x/dex's per-order and per-cancel charges and the gas of one order and one cancel (tx.fee_for's
        table; the base gas of a transaction is shared by the block's actions and left out), in usei valued at
        the mid (the pair's base is SEI)."""
        usei = fee_for(1, 1, self.sc.gas_price_usei)[1] - fee_for(0, 0, self.sc.gas_price_usei)[1]
        return usei / 1e6 * mid_ticks * self.instrument.tick_f

    def submit(self, actions: Sequence[OrderAction]) -> None:
        self._pending.extend(actions)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def account_state(self) -> AccountState:
        """The account at the height the engine has seen. A node that does not answer, or answers with an
        error (a height it no longer or not yet has), raises VenueUnavailableError: the engine pauses."""
        at = min(self.engine_height or self.height, self.height)
        self.reconcile_soon = False
        try:
            resp = await self._open_orders(at)
            position, _balance = await self.position(at)
        except (TransportError, ABCIError, RPCCallError, TimeoutError) as exc:
            raise VenueUnavailableError(f"account query at height {at}: {exc}") from None
        orders: dict[int, VenueOrder] = {}
        for o in resp.orders:
            side, price, remaining = self._order_fields(o)
            cid = self._client_id(o, side, price, remaining, at_start=False)
            orders[cid] = VenueOrder(cid, side, price, remaining)
        foreign = frozenset(c for c in orders if c in self._appeared)
        activity = ""
        if self._foreign_txs:
            n, shown = len(self._foreign_txs), ", ".join(h[:12] for h in self._foreign_txs[:3])
            activity = f"{n} transaction(s) signed with this account's key that this process did not send ({shown})"
            self._foreign_txs = []
        return AccountState(self.instrument.qty_to_lots(position), orders, foreign, activity)

    async def _open_orders(self, height: int) -> Any:
        req = S.QueryGetOrdersRequest(contractAddr=self.sc.contract_addr, account=self.signer.address)
        return S.QueryGetOrdersResponse.FromString(await self.rpc.abci_query(S.query_path("GetOrders"), req, height))

    def _order_fields(self, o: Any) -> tuple[Side, int, int]:
        side = Side.BUY if o.positionDirection == S.PositionDirection.LONG else Side.SELL
        return (side, self.instrument.price_to_ticks_floor(S.dec_from_wire(o.price)),
                self.instrument.qty_to_lots(S.dec_from_wire(o.quantity)))

    async def _known_at_start(self, height: int) -> None:
        """Orders of this account open when we start are a previous run's: known again (cancellable, their
        fills counted), never reported as another client's."""
        resp = await self._open_orders(height)
        for o in resp.orders:
            side, price, remaining = self._order_fields(o)
            self._client_id(o, side, price, remaining, at_start=True)
        if resp.orders:
            self.log.info("orders_open_at_start", count=len(resp.orders))

    def _client_id(self, o: Any, side: Side, price: int, remaining: int, at_start: bool) -> int:
        """The engine's id of a venue order: ours (sent by this process, or open at start with our prefix)
        by its client id; anything else as -order id, and, when it appeared while we run, reported foreign."""
        oid = int(o.id)
        cid = self._by_oid.get(oid)
        if cid is not None:
            return cid
        parsed, tag = self._parse_data(o.data)
        if parsed is not None and tag == self.run_tag:
            cid = parsed  # ours: its tx result not seen yet (or given up as lost and included after all)
        elif (at_start or self._settling()) and parsed is not None and parsed not in self._live:
            cid = parsed  # a previous run's, open at start (or landing just after): known again, cancellable
            self._live[cid] = _Live(cid, side, OrderType.LIMIT, price, remaining, remaining, oid, True)
        else:
            cid = -oid  # not placed by FlashMM, or by another process: cancellable as -id, never taken for ours
            self._foreign[oid] = (side, price)
            if not at_start and not (parsed is not None and self._settling()):
                self._note_foreign(oid, o.data)
        self._by_oid[oid] = cid
        return cid

    def _settling(self) -> bool:
        """The first [sei].tx_timeout_blocks blocks after start: a previous run's transactions (still in a
        mempool when it died) may land, so FlashMM orders of another run and transactions we did not send are
        taken for that run's, not for another client's."""
        return self.height - self._start_height <= self.sc.tx_timeout_blocks

    def _note_foreign(self, oid: int, data: str) -> None:
        if -oid in self._appeared:
            return
        self._appeared.add(-oid)
        self.reconcile_soon = True
        self.stats.foreign_orders += 1
        self.log.error("foreign_order", order_id=oid, data=str(data)[:64],
                       reason="an order of this account that this process did not send")

    async def position(self, height: int = 0) -> tuple[Decimal, Decimal]:
        """(position in the asset, balance in the price denom) as the pair's contract records them."""
        from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2 as wasm

        query = orjson.dumps({"get_position": {"account": self.signer.address}})
        req = wasm.QuerySmartContractStateRequest(address=self.sc.contract_addr, query_data=query)
        raw = await self.rpc.abci_query("/cosmwasm.wasm.v1.Query/SmartContractState", req, height)
        data = orjson.loads(wasm.QuerySmartContractStateResponse.FromString(raw).data)
        return Decimal(str(data["position"])), Decimal(str(data["balance"]))

    async def stop(self) -> None:
        self._stopped = True
        for task in (self._feed_task, self._flush_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await self.rpc.close()
        self._queue.put_nowait(None)

    def link(self) -> tuple[bool, str]:
        host = self.ws_endpoint.split("://", 1)[-1] or "-"
        state = "" if self._connected else "DISCONNECTED, reconnecting "
        return self._connected, f"{state}height {self.height} via {host} · {len(self._inflight)} tx in flight"

    def status(self) -> dict[str, Any]:
        return {"height": self.height, "connected": self._connected, "ws_endpoint": self.ws_endpoint,
                "sequence": self.sequence, "inflight_txs": len(self._inflight), "endpoints": self.pool.status(),
                **self.stats.as_dict()}

    # ================================================================== account =======================
    async def _load_account(self) -> None:
        from cosmpy.protos.cosmos.auth.v1beta1 import auth_pb2
        from cosmpy.protos.cosmos.auth.v1beta1 import query_pb2 as auth

        try:
            raw = await self.rpc.abci_query("/cosmos.auth.v1beta1.Query/Account",
                                            auth.QueryAccountRequest(address=self.signer.address))
        except ABCIError as exc:
            raise SeiVenueError(f"account {self.signer.address} is not known to the chain: {exc.log}") from None
        account = auth_pb2.BaseAccount()
        auth.QueryAccountResponse.FromString(raw).account.Unpack(account)
        self.account_number = int(account.account_number)
        self.sequence = int(account.sequence)

    # ================================================================== feed ==========================
    async def _feed_loop(self) -> None:
        failures = 0
        while not self._stopped:
            for ep in self.pool.candidates():
                if self._stopped:
                    return
                try:
                    await self._run_socket(ep)
                    reason = "feed closed"
                except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake,
                        websockets.InvalidURI, ValueError, orjson.JSONDecodeError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                except (TransportError, ABCIError, RPCCallError) as exc:
                    reason = f"resync failed: {exc}"
                if self._stopped:
                    return
                self.pool.fail(ep, reason)
                self._disconnected(reason)
                failures = 1 if self._had_blocks else failures + 1  # a socket that worked resets the backoff
                delay = min(self.sc.reconnect_max_s, self.sc.reconnect_min_s * 2 ** min(failures - 1, 10))
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))

    def _disconnected(self, reason: str) -> None:
        """Tell the engine at once (it pulls quotes on a disconnected venue); the next socket re-snapshots."""
        was = self._connected
        self._connected = False
        self._ws = None
        self._need_snapshot = True
        if was:
            self.stats.reconnects += 1
            self.log.warning("feed_disconnected", reason=reason, height=self.height)
            self._queue.put_nowait([VenueStatus(False, self.height, reason, self.clock.now_ns())])

    async def _run_socket(self, ep: Any) -> None:
        self._had_blocks = False
        # close_timeout: a stalled node never answers the closing handshake; exit must not wait 10 s for it
        async with websockets.connect(ep.ws_url, open_timeout=self.sc.request_timeout_s, ping_interval=None,
                                      close_timeout=min(1.0, self.sc.request_timeout_s),
                                      max_size=64 * 1024 * 1024) as ws:
            self._ws = ws
            self.ws_endpoint = _redact_url(ep.url)
            queries = {1: "tm.event='NewBlockHeader'",
                       2: f"tm.event='Tx' AND message.sender='{self.signer.address}'"}
            for qid, q in queries.items():
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": qid, "method": "subscribe", "params": {"query": q}}))
            acked: set[int] = set()
            while len(acked) < len(queries):
                msg = orjson.loads(await asyncio.wait_for(ws.recv(), self.sc.request_timeout_s))
                if msg.get("error"):
                    raise ValueError(f"subscribe refused: {msg['error']}")
                if msg.get("id") in queries and msg.get("result") == {}:
                    acked.add(msg["id"])
            self._connected = True
            self.pool.ok(ep)
            self.log.info("feed_connected", endpoint=_redact_url(ep.url), subscriptions=len(queries))
            # whatever happened while we were away: fetch every missed block, re-snapshot the book
            status = await self.rpc.call("status")
            latest = int(status["sync_info"]["latest_block_height"])
            if latest < self.height:
                await self._height_went_back(latest)
            await self._catch_up(latest, initial=False)
            while not self._stopped:
                raw = await asyncio.wait_for(ws.recv(), self.sc.feed_silence_s)
                await self._on_ws_message(raw)

    async def _height_went_back(self, latest: int) -> None:
        """The node is behind the height we saw: a fresh chain (a restarted node double, a reset testnet) or a
        rollback. Nothing we saw above `latest` exists there: the account's sequence is reloaded (raises until
        the account is known there; the feed loop retries with backoff), transactions in flight can no longer
        land (their orders rejected, their cancels refused), the old chain's orders are forgotten (the engine's
        reconciliation closes them: the venue no longer has them) and the book is re-snapshotted at `latest`."""
        was = self.height
        self.log.error("node_height_backwards", was=was, now=latest, endpoint=self.ws_endpoint,
                       action="feed paused; account reloaded; orders of the old chain forgotten; resnapshot")
        await self._load_account()
        self.stats.height_resets += 1
        now = self.clock.now_ns()
        reason = f"node height went back from {was} to {latest}: chain reset or rollback"
        out: list[Event] = [VenueStatus(False, latest, reason, now)]
        for inflight in self._inflight.values():
            for p in inflight.places:
                if p.client_id in self._live and not self._live[p.client_id].acked:
                    self._count_reject("chain_reset")
                    out.append(OrderReject(p.client_id, f"{reason}: transaction never included", now))
            out.extend(CancelReject(cid, f"{reason}: transaction never included", now) for cid, _ in inflight.cancels)
        self._inflight.clear()
        self._delivered.clear()
        self._live.clear()
        self._by_oid.clear()
        self._foreign.clear()
        self._appeared.clear()
        self.height = self.engine_height = latest
        self._sent_height = -1
        self._need_snapshot = True
        self.reconcile_soon = True  # the engine closes the old chain's orders now, not at the next 5 s round
        self._queue.put_nowait(out)

    async def _on_ws_message(self, raw: str | bytes) -> None:
        try:
            msg = orjson.loads(raw)
            result = msg.get("result") if isinstance(msg, dict) else None
        except orjson.JSONDecodeError:
            result = None
        if not isinstance(result, dict) or "data" not in result:
            self.stats.rejects["feed_message"] = self.stats.rejects.get("feed_message", 0) + 1
            self.log.warning("feed_message_rejected", message=str(raw)[:200])
            return
        events = _event_map(result)
        kind = (events.get("tm.event") or [""])[0]
        try:
            if kind == "NewBlockHeader":
                value = result["data"]["value"]
                await self._on_header(int(value["header"]["height"]))
            elif kind == "Tx":
                self._on_tx_event(result["data"]["value"]["TxResult"], events)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.stats.rejects["feed_message"] = self.stats.rejects.get("feed_message", 0) + 1
            self.log.warning("feed_message_rejected", error=f"{type(exc).__name__}: {exc}", message=str(raw)[:200])

    async def _on_header(self, height: int) -> None:
        self._had_blocks = True
        if height <= self.height:
            return
        await self._catch_up(height, initial=False)

    # ================================================================== blocks ========================
    async def _catch_up(self, latest: int, initial: bool) -> None:
        """Deliver blocks up to `latest`: each missed height's match result (fills are never skipped), then
        the book: a diff when this is the next block, a fresh snapshot after a gap, a reconnect or at start."""
        async with self._block_lock:
            if not initial and latest <= self.height and not self._need_snapshot:
                return
            latest = max(latest, self.height)
            gap = not initial and latest > self.height + 1
            if gap:
                self.stats.gaps += 1
                self.stats.missed_heights += latest - self.height - 1
                self.log.warning("height_gap", last=self.height, latest=latest)
            resnapshot = initial or gap or self._need_snapshot
            if not initial:
                for h in range(self.height + 1, latest + 1):
                    await self._match_result(h)
            longs, shorts = await asyncio.gather(self._book_side("LongBookAll", latest),
                                                 self._book_side("ShortBookAll", latest))
            now = self.clock.now_ns()
            self.height = max(self.height, latest)
            self._need_snapshot = False
            if resnapshot:
                self.stats.resnapshots += 1
                self._published = {Side.BUY: longs, Side.SELL: shorts}
                self._out.append(BookSnapshot(latest, list(longs.items()), list(shorts.items()), now))
            else:
                bids = _diff(self._published[Side.BUY], longs)
                asks = _diff(self._published[Side.SELL], shorts)
                self._published = {Side.BUY: longs, Side.SELL: shorts}
                self._out.append(BookDiff(latest, latest, bids, asks, now))
            self.stats.blocks += 1
            self._check_lost_txs()
            batch, self._out = self._out, []
            self._queue.put_nowait(batch)
        if self._pending:
            self.submit([])

    async def _book_side(self, method: str, height: int) -> dict[int, int]:
        req_cls, resp_cls = S.QUERIES[method]
        req = req_cls(contractAddr=self.sc.contract_addr, priceDenom=self.sc.price_denom, assetDenom=self.sc.asset_denom)
        resp = resp_cls.FromString(await self.rpc.abci_query(S.query_path(method), req, height))
        levels: dict[int, int] = {}
        for lvl in (resp.LongBook if method == "LongBookAll" else resp.ShortBook):
            price = self.instrument.price_to_ticks(S.dec_from_wire(lvl.price))
            lots = self.instrument.qty_to_lots(S.dec_from_wire(lvl.entry.quantity))
            if lots > 0:
                levels[price] = levels.get(price, 0) + lots
        return levels

    async def _match_result(self, height: int) -> None:
        req = S.QueryGetMatchResultRequest(contractAddr=self.sc.contract_addr)
        try:
            raw = await self.rpc.abci_query(S.query_path("GetMatchResult"), req, height)
        except ABCIError as exc:
            # pruned: fills of that block can no longer be read; the position check against the contract
            # (reconcile) is what catches any difference, and it pauses trading
            self.stats.rejects["match_result_unavailable"] = self.stats.rejects.get("match_result_unavailable", 0) + 1
            self.log.error("match_result_unavailable", height=height, error=str(exc))
            return
        result = S.QueryGetMatchResultResponse.FromString(raw).result
        self._apply_match_result(height, result)

    def _apply_match_result(self, height: int, result: Any) -> None:
        now = self.clock.now_ns()
        me = self.signer.address
        out = self._out
        # orders placed in this block: acks for any whose Tx event we did not see, failures
        for o in result.orders:
            if o.account != me:
                continue
            cid, tag = self._parse_data(o.data)
            mine = cid is not None and tag == self.run_tag
            live = self._live.get(cid) if mine else None
            if live is None:
                # not sent by this process (a previous run's tx still in a mempool, another client of this
                # key), or ours given up as lost: known from now on, so its fills count and it can be cancelled
                if o.status != S.OrderStatus.FAILED_TO_PLACE and int(o.id) not in self._by_oid:
                    leftover = cid is not None and not mine and self._settling()  # a previous run's, landing now
                    self._adopt(o, cid if mine or (leftover and cid not in self._live) else None, leftover)
                continue
            if o.status == S.OrderStatus.FAILED_TO_PLACE:
                self._reject_place(live.cid, f"failed to place: {o.statusDescription}", "failed_to_place", now)
            elif not live.acked:
                self._ack(live, int(o.id), now)
        # settlements: the block's trades, and our fills
        market_qty = {Side.BUY: Decimal(0), Side.SELL: Decimal(0)}
        market_notional = {Side.BUY: Decimal(0), Side.SELL: Decimal(0)}
        limit_long_qty = limit_long_notional = Decimal(0)
        for s in result.settlements:
            qty = S.dec_from_wire(s.quantity)
            price = S.dec_from_wire(s.executionCostOrProceed)
            side = Side.BUY if s.positionDirection.upper() == "LONG" else Side.SELL
            if s.orderType.upper() == "MARKET":
                market_qty[side] += qty
                market_notional[side] += qty * price
            elif side is Side.BUY:
                limit_long_qty += qty
                limit_long_notional += qty * price
            if s.account != me:
                continue
            cid = self._by_oid.get(int(s.orderId))
            if cid is None:  # never dropped: the position must follow the venue's record
                cid = -int(s.orderId)
                self._count_reject("fill_unknown_order")
                self.log.warning("fill_for_unknown_order", order_id=int(s.orderId), height=height)
            live = self._live.get(cid)
            lots = self.instrument.qty_to_lots(qty)
            if live is not None:
                live.remaining -= lots
                done = live.remaining <= 0
                if done:
                    self._live.pop(cid, None)
            else:
                done = True
            self.stats.fills += 1
            out.append(Fill(cid, side, float(price / self._p_tick), lots, 0.0,
                            s.orderType.upper() != "MARKET", now, done))
        # cancellations applied (a market order's unfilled rest may be listed here too)
        cancelled: set[int] = set()
        for c in result.cancellations:
            if c.creator != me:
                continue
            cid = self._by_oid.get(int(c.id))
            cancelled.add(int(c.id))
            if cid is None:
                self._foreign.pop(int(c.id), None)
                continue
            live = self._live.pop(cid, None)
            if live is not None:
                out.append(CancelAck(cid, now))
        # our market orders of this block that did not fill completely: the rest was cancelled (step 5)
        for inflight in self._delivered.pop(height, []):
            for p in inflight.places:
                live = self._live.get(p.client_id)
                if live is not None and live.order_type is OrderType.MARKET:
                    self._live.pop(p.client_id, None)
                    out.append(CancelAck(p.client_id, now))
            for cid, oid in inflight.cancels:
                if oid in cancelled:
                    continue
                if cid in self._live:  # still resting: the cancellation did not apply; the engine may retry
                    out.append(CancelReject(cid, "cancellation not applied by the venue", now))
                elif cid >= 0 and not any(isinstance(e, CancelAck) and e.client_id == cid for e in out):
                    out.append(CancelReject(cid, "order not found (filled or never placed)", now))
        # trades: takers at their side's clearing price, plus limit-limit crosses at the midpoint
        for side in (Side.BUY, Side.SELL):
            if market_qty[side] > 0:
                px = market_notional[side] / market_qty[side]
                out.append(Trade(float(px / self._p_tick), self.instrument.qty_to_lots(market_qty[side]), side, now))
        cross_qty = limit_long_qty - market_qty[Side.SELL]
        if cross_qty > 0:
            cross_px = (limit_long_notional - market_notional[Side.SELL]) / cross_qty
            out.append(Trade(float(cross_px / self._p_tick), self.instrument.qty_to_lots(cross_qty), None, now))

    # ================================================================== our transactions ==============
    def _on_tx_event(self, tx_result: Any, events: dict[str, list[str]]) -> None:
        """Our transaction's result. Everything is parsed before the in-flight record is taken, so a
        malformed push leaves it for the `tx` lookup instead of losing it."""
        hashes = events.get("tx.hash") or []
        if not hashes:
            raise ValueError("Tx event without tx.hash")
        if not isinstance(tx_result, dict) or not isinstance(tx_result.get("result") or {}, dict):
            raise ValueError("TxResult is not an object")
        res = tx_result.get("result") or {}
        height = int(tx_result.get("height") or (events.get("tx.height") or ["0"])[0])
        code = int(res.get("code") or 0)
        ids = [str(int(x)) for x in events.get("place_order.order_id") or []]
        tx_hash = hashes[0].upper()
        inflight = self._inflight.pop(tx_hash, None)
        if inflight is None:
            if tx_hash not in self._sent_hashes and self._settling():  # a previous run's, landing late
                self.log.info("previous_run_transaction", hash=tx_hash, height=height)
            elif tx_hash not in self._sent_hashes:  # signed with our key, never sent by us: another client
                self.stats.foreign_txs += 1
                self.reconcile_soon = True
                if len(self._foreign_txs) < 100:
                    self._foreign_txs.append(tx_hash)
                self.log.error("foreign_transaction", hash=tx_hash, height=height, code=code)
            return  # or already settled by a lookup
        self._delivered_tx(inflight, height, code, str(res.get("codespace") or ""), str(res.get("log") or ""), ids)

    def _delivered_tx(self, inflight: _InFlight, height: int, code: int, codespace: str, log: str,
                      order_ids: list[str]) -> None:
        now = self.clock.now_ns()
        self._charge_fee(inflight.fee_usei, now)
        if code:
            err = tx_error(code, codespace, log)
            self.stats.txs_failed += 1
            self._count_reject(err.kind)
            self.log.warning("tx_failed", hash=inflight.hash, height=height, error=str(err))
            for p in inflight.places:
                self._reject_place(p.client_id, str(err), None, now)
            for cid, _ in inflight.cancels:
                self._out.append(CancelReject(cid, str(err), now))
            return
        self.stats.txs_delivered += 1
        if len(order_ids) != len(inflight.places):
            self.log.error("tx_order_ids_mismatch", hash=inflight.hash, placed=len(inflight.places), ids=len(order_ids))
        for p, oid in zip(inflight.places, order_ids):
            live = self._live.get(p.client_id)
            if live is not None and not live.acked:
                self._ack(live, int(oid), now)
        self._delivered.setdefault(height, []).append(inflight)

    def _ack(self, live: _Live, oid: int, now: int) -> None:
        live.oid = oid
        live.acked = True
        self._by_oid[oid] = live.cid
        self._out.append(OrderAck(live.cid, oid, now))

    def _reject_place(self, cid: int, reason: str, kind: str | None, now: int) -> None:
        self._live.pop(cid, None)
        if kind:
            self._count_reject(kind)
        self._out.append(OrderReject(cid, reason, now))

    def _count_reject(self, kind: str) -> None:
        self.stats.rejects[kind] = self.stats.rejects.get(kind, 0) + 1

    def _charge_fee(self, fee_usei: int, now: int) -> None:
        if fee_usei <= 0:
            return
        bid = max(self._published[Side.BUY], default=None)
        ask = min(self._published[Side.SELL], default=None)
        if self.instrument.base.upper() == "SEI" and bid is not None and ask is not None:
            mid = (bid + ask) / 2 * float(self._p_tick)
            self._out.append(FeeCharge(fee_usei / 1e6 * mid, "gas", now))
        else:
            self.stats.unpriced_gas_usei += fee_usei

    def _check_lost_txs(self) -> None:
        """Txs broadcast but not seen delivered: look them up by hash (their Tx event may have been lost in
        a gap); after tx_timeout_blocks, give them up."""
        for inflight in list(self._inflight.values()):
            age = self.height - inflight.sent_height
            if age >= 2 and inflight.looked_up < 1:
                inflight.looked_up += 1
                asyncio.get_running_loop().create_task(self._lookup(inflight))
            elif age >= self.sc.tx_timeout_blocks:
                self._inflight.pop(inflight.hash, None)
                self.stats.txs_lost += 1
                self.log.error("tx_lost", hash=inflight.hash, sent_height=inflight.sent_height, height=self.height)
                now = self.clock.now_ns()
                reason = f"transaction {inflight.hash[:12]} not included within {self.sc.tx_timeout_blocks} blocks"
                for p in inflight.places:
                    if p.client_id in self._live and not self._live[p.client_id].acked:
                        self._reject_place(p.client_id, reason, "tx_lost", now)
                for cid, _ in inflight.cancels:
                    self._out.append(CancelReject(cid, reason, now))

    async def _lookup(self, inflight: _InFlight) -> None:
        try:
            res = await self.rpc.call("tx", {"hash": inflight.hash})
        except (RPCCallError, TransportError):
            return  # not (yet) committed; the timeout decides
        try:
            txr = res.get("tx_result") or {}
            ids: list[str] = []
            for ev in txr.get("events") or []:
                if ev.get("type") == "place_order":
                    for a in ev.get("attributes") or []:
                        if _attr(a.get("key")) == "order_id":
                            ids.append(str(int(_attr(a.get("value")))))
            height = int(res.get("height") or 0)
            code = int(txr.get("code") or 0)
        except (AttributeError, TypeError, ValueError) as exc:
            self._count_reject("tx_lookup_malformed")
            self.log.warning("tx_lookup_malformed", hash=inflight.hash, error=f"{type(exc).__name__}: {exc}")
            return  # left in flight: the timeout decides
        if self._inflight.pop(inflight.hash, None) is None:
            return
        self._delivered_tx(inflight, height, code, str(txr.get("codespace") or ""), str(txr.get("log") or ""), ids)
        if height <= self.height:  # its block was already delivered: settle its cancellations now
            self._delivered.pop(height, None)

    async def _flush(self) -> None:
        """Send the pending actions as one transaction (cancellations first), once per block."""
        await asyncio.sleep(0)  # let the engine finish submitting this cycle's actions
        if not self._pending or self._sent_height >= self.height or self._stopped:
            return
        actions, self._pending = self._pending, []
        now = self.clock.now_ns()
        cancels: list[tuple[int, int, Side, int]] = []
        places: list[PlaceOrder] = []
        keep: list[OrderAction] = []
        for a in actions:
            if isinstance(a, CancelOrder):
                live = self._live.get(a.client_id)
                if a.client_id < 0 and -a.client_id in self._foreign:
                    side, price = self._foreign[-a.client_id]
                    cancels.append((a.client_id, -a.client_id, side, price))
                elif live is None:
                    self._out.append(CancelReject(a.client_id, "order not found (filled or never placed)", now))
                elif live.oid is None:
                    unsent = next((p for p in places if p.client_id == a.client_id), None)
                    if unsent is not None:  # placed and cancelled before it was sent: neither goes out
                        places.remove(unsent)
                        self._live.pop(a.client_id, None)
                        self._out.append(CancelAck(a.client_id, now))
                    else:
                        keep.append(a)  # its place is in flight: cancel once acked
                else:
                    cancels.append((a.client_id, live.oid, live.side, live.price_ticks))
            elif isinstance(a, PlaceOrder):
                reason = self._check_place(a)
                if reason:
                    self.stats.local_rejects += 1
                    self._count_reject("tick")
                    self.log.warning("order_rejected_locally", client_id=a.client_id, reason=reason)
                    self._out.append(OrderReject(a.client_id, reason, now))
                    continue
                self._live[a.client_id] = _Live(a.client_id, a.side, a.order_type, a.price_ticks, a.lots, a.lots)
                places.append(a)
        self._pending = keep + self._pending
        if not cancels and not places:
            return
        msgs = []
        if cancels:
            msgs.append(S.MsgCancelOrders(creator=self.signer.address, contractAddr=self.sc.contract_addr, cancellations=[
                S.Cancellation(id=oid, initiator=int(S.CancellationInitiator.USER), creator=self.signer.address,
                               contractAddr=self.sc.contract_addr, priceDenom=self.sc.price_denom,
                               assetDenom=self.sc.asset_denom, positionDirection=int(_direction(side)),
                               price=S.dec_to_wire(self.instrument.ticks_to_price(price)))
                for _, oid, side, price in cancels]))
        if places:
            msgs.append(S.MsgPlaceOrders(creator=self.signer.address, contractAddr=self.sc.contract_addr, orders=[
                S.new_order(account=self.signer.address, contract_addr=self.sc.contract_addr,
                            price=self.instrument.ticks_to_price(p.price_ticks), quantity=self.instrument.lots_to_qty(p.lots),
                            price_denom=self.sc.price_denom, asset_denom=self.sc.asset_denom, direction=_direction(p.side),
                            order_type=S.OrderType.MARKET if p.order_type is OrderType.MARKET else S.OrderType.LIMIT,
                            data=f"{CLIENT_ID_PREFIX}{p.client_id}:{self.run_tag}")
                for p in places]))
        gas_limit, fee = fee_for(len(places), len(cancels), self.sc.gas_price_usei)
        self._sent_height = self.height
        err = await self._broadcast(msgs, gas_limit, fee, places, [(c, o) for c, o, _, _ in cancels])
        if err is not None:
            now = self.clock.now_ns()
            for p in places:
                self._reject_place(p.client_id, str(err), None, now)
            for cid, _, _, _ in cancels:
                self._out.append(CancelReject(cid, str(err), now))
            self._queue.put_nowait(self._take_out())

    def _take_out(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    async def _broadcast(self, msgs: list, gas_limit: int, fee: int, places: list[PlaceOrder],
                         cancels: list[tuple[int, int]]) -> Exception | None:
        """Sign and broadcast; recover the sequence on code 32 (twice at most). Returns the error that
        rejected the tx, or None when the node accepted it into its mempool."""
        for _attempt in range(3):
            tx_bytes = build_tx(self.signer, msgs, self.account_number, self.sequence, gas_limit, fee)
            self._remember_sent(hashlib.sha256(tx_bytes).hexdigest().upper())  # even if the answer never comes
            try:
                res = await self.rpc.call("broadcast_tx_sync", {"tx": base64.b64encode(tx_bytes).decode()})
            except (TransportError, RPCCallError) as exc:
                self._count_reject("broadcast_failed")
                self.log.error("broadcast_failed", error=str(exc))
                # a timed-out broadcast may still have reached a mempool: re-read the sequence before the next tx
                with contextlib.suppress(Exception):
                    await self._load_account()
                return exc
            self.stats.txs_sent += 1
            code = int(res.get("code") or 0)
            if code == 0:
                self.sequence += 1
                h = str(res.get("hash", "")).upper()
                self._inflight[h] = _InFlight(h, places, cancels, self.height, fee)
                return None
            err = tx_error(code, str(res.get("codespace") or ""), str(res.get("log") or ""))
            if isinstance(err, SequenceMismatchError) and err.expected is not None:
                self.stats.sequence_recoveries += 1
                self.log.warning("sequence_mismatch", had=self.sequence, expected=err.expected)
                self.sequence = err.expected
                continue
            self._count_reject(err.kind)
            self.log.warning("tx_rejected", code=code, kind=err.kind, log=err.log)
            return err
        return SeiTxError(32, "sdk", "sequence still mismatched after recovery")

    def _remember_sent(self, tx_hash: str) -> None:
        self._sent_hashes.add(tx_hash)
        self._sent_order.append(tx_hash)
        if len(self._sent_order) > 20_000:
            self._sent_hashes.discard(self._sent_order.popleft())

    def _check_place(self, p: PlaceOrder) -> str | None:
        if p.lots <= 0:
            return S.QUANTITY_TICK_ERROR
        if p.client_id in self._live:
            return f"duplicate client order id {p.client_id}"
        if p.order_type is OrderType.MARKET and p.price_ticks == 0:
            return None  # a market order with no worst price
        if p.price_ticks < 0:
            return S.PRICE_TICK_ERROR
        return S.check_order(self.instrument.ticks_to_price(p.price_ticks), self.instrument.lots_to_qty(p.lots),
                             self._p_tick, self._q_tick)

    def _adopt(self, o: Any, cid: int | None, leftover: bool = False) -> None:
        """Track an order of our account that this process did not place (client id from its data, else -id);
        reported as another client's unless it is a previous run's landing just after start (`leftover`)."""
        oid = int(o.id)
        side = Side.BUY if o.positionDirection == S.PositionDirection.LONG else Side.SELL
        price = self.instrument.price_to_ticks_floor(S.dec_from_wire(o.price))
        lots = self.instrument.qty_to_lots(S.dec_from_wire(o.quantity))
        order_type = OrderType.MARKET if o.orderType == S.OrderType.MARKET else OrderType.LIMIT
        if cid is None:
            cid = -oid
            self._foreign[oid] = (side, price)
            if not leftover:
                self._note_foreign(oid, o.data)
        else:
            self._live[cid] = _Live(cid, side, order_type, price, lots, lots, oid, True)
            self.log.warning("order_adopted", order_id=oid, client_id=cid)
        self._by_oid[oid] = cid

    @staticmethod
    def _parse_data(data: str) -> tuple[int | None, str | None]:
        """(client id, run tag) of an order's data: "flashmm:<id>:<tag>", or "flashmm:<id>" (no tag: a
        build before run tags); (None, None) for anything else."""
        if not data.startswith(CLIENT_ID_PREFIX):
            return None, None
        cid, _, tag = data[len(CLIENT_ID_PREFIX):].partition(":")
        try:
            return int(cid), (tag or None)
        except ValueError:
            return None, None


def _diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, v) for p, v in new.items() if old.get(p) != v]
    out.extend((p, 0) for p in old if p not in new)
    return out


def _attr(v: Any) -> str:
    """A Tx event attribute: base64 on Sei (SEI.md), plain text on older CometBFT."""
    if not isinstance(v, str):
        return ""
    try:
        return base64.b64decode(v, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return v
