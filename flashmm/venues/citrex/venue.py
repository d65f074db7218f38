"""The Citrex venues: live trading (`--venue citrex`) and paper trading (`--venue citrex --paper`).

Citrex is Sei's order book today: perpetuals on Sei EVM, matched off-chain, settled on chain. Its official
client (citrex-sdk 1.2.2) speaks REST only, so that is what FlashMM speaks (no WebSocket feed is shown there):

* **Market data** by polling, every ``[citrex].poll_interval_s``: ``depth`` (``limit`` 5/10/20, with the
  ``granularity`` that merges no two ticks) and ``trade-history`` (the product's last ``lookback`` trades,
  deduplicated by ``uid``). Each poll is one batch for the engine: the new trades, our fills among them, then
  the book as a diff against what was published (a snapshot after a failure). A page of trades with none seen
  before is counted as a possible gap (fills in it may be missed; the position check of reconciliation
  catches that). The feed is honest about polling: the poll interval must be below ``[risk].feed_stale_s``,
  and when no poll has succeeded for ``feed_stale_s`` the venue says so at once (``VenueStatus``: quotes come
  down) instead of letting order acknowledgements keep the engine's feed timer alive.
* **Orders** (live only) as the official client signs and sends them (signing.py): a post-only quote is an
  EIP-712 ``Order`` of type ``LIMIT_MAKER`` + GTC, a marketable order (flatten) ``MARKET`` + IOC with the
  engine's worst price; a changed quote is one ``order/cancel-and-replace`` (which forces LIMIT_MAKER + GTC,
  as the client does); pulling every quote at once is one ``DELETE openOrders`` (cancel-all for the
  product). Cancels go out before places; nonces are microsecond timestamps, strictly increasing. An
  order whose answer was lost (a timeout after the bytes left) is looked up by its nonce in ``openOrders``,
  never sent twice. HTTP 429 pauses all requests (``Retry-After`` or our own doubling backoff); order
  rejections are typed by reason (post_only_would_cross, price_tick, quantity, insufficient_margin,
  signature, nonce, ...) and counted.
* **Fills** are our account's trades in ``trade-history`` (``makerAccount``/``takerAccount`` and the order
  ids ``makerID``/``takerID``); a trade on an order id not yet acknowledged waits ``fill_grace_s`` for its
  ack, then counts as a fill of an unknown order: never dropped. A cancel or an order that ended at the venue
  is reported to the engine only after the next poll, so fills made before it ended come first.
* **Account** for reconciliation: ``openOrders``, ``positionRisk`` (authenticated reads with the
  ``SignedAuthentication`` signature), read so that they match what the engine has processed; ``balances``
  and ``account-health`` are read every ``account_info_interval_s`` for the status.

Paper trading uses the same public feed (no key; no signed request is ever built) and fills our orders with
the replay's queue model (flashmm/venues/replay.py ``QueueFillModel``) against the polled book and trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flashmm.config import CitrexConfig, Config
from flashmm.core.book import L2Book
from flashmm.core.clock import WallClock
from flashmm.core.domain import (
    REJECT_POST_ONLY,
    AccountState,
    BookDiff,
    BookSnapshot,
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    FeeCharge,
    Fill,
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
from flashmm.telemetry.histogram import LatencyHistogram
from flashmm.telemetry.logging import get_logger
from flashmm.venues.base import Venue, VenueStartError
from flashmm.venues.citrex import api
from flashmm.venues.citrex.rest import CitrexREST, OutcomeUnknown, RateLimited, TransportError
from flashmm.venues.citrex.signing import CitrexSigner, TimeInForce, body_bytes
from flashmm.venues.citrex.signing import OrderType as CxOrderType
from flashmm.venues.transport import EndpointPool, redact_url

__all__ = ["CitrexPaperVenue", "CitrexVenue", "classify_rejection", "fetch_product"]

_OPEN = ("OPEN", "PENDING")
# Rejection reasons by what the venue's message says. The live venue's wording is not published; the double
# uses these words. Anything else is counted as "rejected", with the venue's message in the reason.
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (REJECT_POST_ONLY, ("post only", "post-only", "postonly", "would cross", "limit maker", "limit_maker")),
    ("signature", ("signature",)),
    ("nonce", ("nonce",)),
    ("insufficient_margin", ("margin", "insufficient", "balance")),
    ("expired", ("expir",)),
    ("not_found", ("not found", "unknown order", "does not exist", "not open")),
    ("price_tick", ("increment", "tick", "price")),
    ("quantity", ("quantity", "size")),
    ("product", ("product",)),
)


def classify_rejection(message: str) -> str:
    m = message.lower()
    for kind, words in _KINDS:
        if any(w in m for w in words):
            return kind
    return "rejected"


class CitrexVenueError(VenueStartError):
    """The venue cannot start (no endpoint answers, unknown product, signature refused)."""


def _pool(cc: CitrexConfig) -> EndpointPool:
    return EndpointPool(list(cc.endpoints), cc.endpoint_failures_to_open, cc.endpoint_cooldown_s, "citrex.rest")


async def fetch_product(cc: CitrexConfig, rest: CitrexREST | None = None) -> api.Product:
    """The configured product from GET products (the instrument comes from the venue, never from code)."""
    own = rest is None
    rest = rest or CitrexREST(_pool(cc), cc.request_timeout_s)
    try:
        status, doc = await rest.request("GET", "products")
        products = api.parse_products(doc)
    except (TransportError, RateLimited) as exc:
        raise CitrexVenueError(f"Citrex: GET products failed: {exc}") from None
    except (api.APIError, api.ParseError) as exc:
        raise CitrexVenueError(f"Citrex: GET products: {exc}") from None
    finally:
        if own:
            await rest.close()
    by_symbol = {p.symbol: p for p in products}
    p = by_symbol.get(cc.product)
    if p is None:
        listed = ", ".join(sorted(by_symbol)) or "none"
        raise CitrexVenueError(f"Citrex: product {cc.product!r} is not listed ([citrex].product; listed: {listed})")
    if not p.active:
        raise CitrexVenueError(f"Citrex: product {cc.product!r} is not active")
    return p


# ================================================================================================ feed


@dataclass
class FeedStats:
    polls: int = 0
    poll_errors: int = 0
    snapshots: int = 0
    trades: int = 0
    trade_gaps: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    backoff_s: float = 0.0
    book_off_tick: int = 0
    book_sizes_rounded: int = 0
    trades_off_tick: int = 0
    rejects: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        self.rejects[kind] = self.rejects.get(kind, 0) + n

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rejects"}
        d["backoff_s"] = round(self.backoff_s, 3)
        d.update({f"reject_{k}": v for k, v in self.rejects.items()})
        return d


class _PolledVenue(Venue):
    """What live and paper trading share: the product, the REST client, the polled public feed, the
    rate-limit pause and the staleness watchdog."""

    wall_clock_feed = True

    def __init__(self, cfg: Config, product: api.Product, account: str = "", log_name: str = "citrex") -> None:
        self.cfg = cfg
        self.cc: CitrexConfig = cfg.citrex
        if self.cc.poll_interval_s >= cfg.risk.feed_stale_s:
            raise CitrexVenueError(
                f"[citrex].poll_interval_s ({self.cc.poll_interval_s:g} s) must be below [risk].feed_stale_s "
                f"({cfg.risk.feed_stale_s:g} s): the feed breaker would trip between two polls")
        refresh = cfg.strategy.order_refresh_time_s
        if self.cc.order_expiration_s < 2 * refresh:
            raise CitrexVenueError(
                f"[citrex].order_expiration_s ({self.cc.order_expiration_s:g} s) must be at least twice "
                f"[strategy].order_refresh_time_s ({refresh:g} s): a resting quote would expire before its refresh")
        self.product = product
        self.instrument = product.instrument()
        self.maker_fee_bps = product.maker_fee_bps
        self.taker_fee_bps = product.taker_fee_bps
        self.clock = WallClock()
        self.rest = CitrexREST(_pool(self.cc), self.cc.request_timeout_s, self.cc.max_concurrent_requests + 4)
        self.log = get_logger(log_name)
        self.stats = FeedStats()
        self._account = account.lower()  # our account in trade-history ("" in paper mode)
        self._inc = product.increment
        self._lot = product.min_quantity
        self._queue: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        self._published: dict[Side, dict[int, int]] = {Side.BUY: {}, Side.SELL: {}}
        self._seq = 0
        self._need_snapshot = True
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._first_trades = True
        self._connected = False
        self._last_ok = 0.0  # monotonic time of the last successful poll
        self._last_ok_wall_ns = 0
        self._polls_started = 0
        self._polls_done = 0
        self._backoff_until = 0.0
        self._backoff_s = 0.0
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        self._trade_lock = asyncio.Lock()
        self._endpoint = redact_url(self.cc.endpoints[0])

    # ---- Venue interface -------------------------------------------------------------------------------
    async def next_batch(self) -> list[Event] | None:
        return await self._queue.get()

    def link(self) -> tuple[bool, str]:
        age = (time.monotonic() - self._last_ok) * 1000 if self._last_ok else float("nan")
        state = "" if self._connected else "DISCONNECTED, retrying "
        host = self._endpoint.split("://", 1)[-1].split("/", 1)[0]
        return self._connected, (f"{state}poll {self.cc.poll_interval_s * 1000:.0f} ms, data {age:.0f} ms old via "
                                 f"{host}")

    def _status_common(self) -> dict[str, Any]:
        age = round((time.monotonic() - self._last_ok) * 1000, 1) if self._last_ok else None
        return {"product": self.product.symbol, "product_id": self.product.id, "connected": self._connected,
                "poll_interval_ms": self.cc.poll_interval_s * 1000, "data_age_ms": age,
                "requests": self.rest.calls, "transport_errors": self.rest.transport_errors,
                "http_429": self.rest.rate_limited, "endpoints": self.rest.pool.status(), **self.stats.as_dict()}

    async def _stop_common(self) -> None:
        self._stopped = True
        for task in self._tasks:
            if not task.done():
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.rest.close()
        self._queue.put_nowait(None)

    # ---- rate limit ------------------------------------------------------------------------------------
    def _rate_limited(self, exc: RateLimited) -> None:
        """Pause every request: the venue's Retry-After, else our doubling backoff."""
        self.stats.rate_limited += 1
        if exc.retry_after_s is not None:
            wait = exc.retry_after_s
        else:
            self._backoff_s = min(self.cc.rate_limit_backoff_max_s, max(self.cc.rate_limit_backoff_s,
                                                                        self._backoff_s * 2))
            wait = self._backoff_s
        until = time.monotonic() + wait
        if until > self._backoff_until:
            self.stats.backoff_s += until - max(self._backoff_until, time.monotonic())
            self._backoff_until = until
        self.log.warning("rate_limited", wait_s=round(wait, 3), retry_after=exc.retry_after_s)

    async def _wait_backoff(self) -> None:
        while (delay := self._backoff_until - time.monotonic()) > 0 and not self._stopped:
            await asyncio.sleep(delay)

    def _request_ok(self) -> None:
        self._backoff_s = 0.0

    # ---- the public feed ---------------------------------------------------------------------------------
    async def _get(self, path: str, query: str = "") -> Any:
        await self._wait_backoff()
        try:
            status, doc = await self.rest.request("GET", path, query)
        except RateLimited as exc:
            self._rate_limited(exc)
            raise
        err = api.api_error(doc, status)
        if err is None and status >= 400:
            err = api.APIError(f"HTTP {status}", status)
        if err is not None:
            raise err
        self._request_ok()
        return doc

    def _trades_query(self) -> str:
        q = f"symbol={self.product.symbol}&lookback={self.cc.trade_lookback}"
        return q  # the live venue adds account and subAccountId, as the client does

    async def _fetch_trades(self) -> list[api.TradeRecord]:
        return api.parse_trade_history(await self._get("trade-history", self._trades_query()))

    async def _fetch_depth(self) -> api.Depth:
        p = self.product
        return api.parse_depth(await self._get(
            "depth", f"symbol={p.symbol}&limit={self.cc.depth_levels}&granularity={p.depth_granularity}"))

    def _new_trades(self, trades: list[api.TradeRecord]) -> list[api.TradeRecord]:
        """Trades not seen before, oldest first; the first poll's trades are history (not emitted)."""
        fresh = [t for t in trades if t.uid not in self._seen]
        if (len(trades) >= self.cc.trade_lookback and trades and len(fresh) == len(trades)
                and not self._first_trades):
            self.stats.trade_gaps += 1
            self.log.warning("trade_gap", lookback=self.cc.trade_lookback,
                             detail="a full page of trades with none seen before: some may be missing")
        for t in fresh:
            self._seen.add(t.uid)
            self._seen_order.append(t.uid)
        while len(self._seen_order) > 20 * self.cc.trade_lookback:
            self._seen.discard(self._seen_order.popleft())
        if self._first_trades:
            self._first_trades = False
            return []
        fresh.sort(key=lambda t: t.created_at_ms)  # the venue lists newest first
        return fresh

    def _book_levels(self, rows: list[tuple[int, int]]) -> dict[int, int]:
        levels: dict[int, int] = {}
        for price, qty in rows:
            if price % self._inc:
                self.stats.book_off_tick += 1  # a level off the tick cannot be a price we trade at
                continue
            lots, rest = divmod(qty, self._lot)
            if rest:
                self.stats.book_sizes_rounded += 1  # others' sizes below our lot: shown as whole lots
            if lots > 0:
                levels[price // self._inc] = levels.get(price // self._inc, 0) + lots
        return levels

    def _market_events(self, trades: list[api.TradeRecord], depth: api.Depth, now: int) -> list[Event]:
        out: list[Event] = []
        for t in trades:
            lots = t.quantity // self._lot
            if lots <= 0:
                continue  # a trade below our lot moves no lot-sized queue; it is still counted
            out.append(Trade(t.price / self._inc, lots, Side.BUY if t.taker_is_buyer else Side.SELL, now))
        self.stats.trades += len(trades)
        bids, asks = self._book_levels(depth.bids), self._book_levels(depth.asks)
        self._seq += 1
        if self._need_snapshot:
            self._need_snapshot = False
            self.stats.snapshots += 1
            out.append(BookSnapshot(self._seq, list(bids.items()), list(asks.items()), now))
        else:
            out.append(BookDiff(self._seq, self._seq, _diff(self._published[Side.BUY], bids),
                                _diff(self._published[Side.SELL], asks), now))
        self._published = {Side.BUY: bids, Side.SELL: asks}
        return out

    async def _poll_once(self) -> None:
        """One poll: depth and trades, our fills among them, the book; queued for the engine as one batch.
        Under the trade lock, so batches leave in sequence-number order whoever polls (the account read too)."""
        self._polls_started += 1
        async with self._trade_lock:
            depth, trades = await asyncio.gather(self._fetch_depth(), self._fetch_trades())
            now = self.clock.now_ns()
            fresh = self._new_trades(trades)
            events = self._on_trades(fresh, now)
            events += self._market_events(fresh, depth, now)
            self.stats.polls += 1
            self._polls_done = self._polls_started
            self._after_poll(events, now)
            self._queue.put_nowait(events)

    def _on_trades(self, fresh: list[api.TradeRecord], now: int) -> list[Event]:
        """Our fills among the new trades (live); the queue model's (paper)."""
        return []

    def _after_poll(self, events: list[Event], now: int) -> None:
        """Events that must follow this poll's fills (live: orders that ended at the venue)."""

    async def _poll_loop(self) -> None:
        interval = self.cc.poll_interval_s
        failures = 0
        while not self._stopped:
            t0 = time.monotonic()
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed must outlive any one bad answer
                failures += 1
                self.stats.poll_errors += 1
                kind = ("rate_limited" if isinstance(exc, RateLimited) else "parse" if isinstance(exc, api.ParseError)
                        else "api" if isinstance(exc, api.APIError) else "transport"
                        if isinstance(exc, TransportError) else "internal")
                self.stats.count(f"poll_{kind}")
                if kind == "internal":
                    self.log.exception("poll_failed", error=f"{type(exc).__name__}: {exc}"[:300], failures=failures)
                else:
                    self.log.warning("poll_failed", error=str(exc)[:300], failures=failures)
                self._need_snapshot = True  # what was published may be out of date by the next success
                self._check_stale()
                await asyncio.sleep(min(interval * 2 ** min(failures - 1, 5), 2.0) * random.uniform(0.8, 1.2))
                continue
            failures = 0
            self._last_ok = time.monotonic()
            self._last_ok_wall_ns = self.clock.now_ns()
            if not self._connected:
                self._connected = True
                self.log.info("feed_connected", endpoint=self._endpoint)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    def _check_stale(self) -> None:
        """No successful poll for feed_stale_s: tell the engine now (it pulls quotes)."""
        stale_s = self.cfg.risk.feed_stale_s
        if self._connected and time.monotonic() - self._last_ok >= stale_s:
            self._connected = False
            self._need_snapshot = True
            self.stats.reconnects += 1
            reason = f"no market data from Citrex for {stale_s:g} s (polls failing)"
            self.log.warning("feed_stale", reason=reason)
            self._queue.put_nowait([VenueStatus(False, self._seq, reason, self.clock.now_ns())])

    async def _watchdog(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.cc.poll_interval_s / 2)
            self._check_stale()

    async def _start_feed(self) -> None:
        """The first poll (a snapshot) before anything else starts; then the poll loop and the watchdog."""
        try:
            await self._poll_once()
        except (TransportError, RateLimited, api.APIError, api.ParseError) as exc:
            raise CitrexVenueError(f"Citrex: market data for {self.product.symbol} unavailable: {exc}") from None
        self._last_ok = time.monotonic()
        self._last_ok_wall_ns = self.clock.now_ns()
        self._connected = True
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._poll_loop(), name="citrex-poll"),
                        loop.create_task(self._watchdog(), name="citrex-watchdog")]

    async def _check_product(self) -> None:
        fresh = await fetch_product(self.cc, self.rest)
        if (fresh.id, fresh.increment, fresh.min_quantity) != (self.product.id, self.product.increment,
                                                               self.product.min_quantity):
            raise CitrexVenueError(f"Citrex: product {fresh.symbol} changed since the instrument was read "
                                   f"(id/increment/minQuantity); restart")
        self.product = fresh


def _diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, v) for p, v in new.items() if old.get(p) != v]
    out.extend((p, 0) for p in old if p not in new)
    return out


# ================================================================================================ live


@dataclass(slots=True)
class _Order:
    cid: int
    side: Side
    order_type: OrderType
    post_only: bool
    price_ticks: int
    lots: int
    nonce: int
    quantity_wei: int
    venue_id: str | None = None
    handle: int = 0
    filled_wei: int = 0
    lots_sent: int = 0  # lots reported in Fill events (cumulative floor of filled_wei)
    lots_delivered: int = 0  # lots in Fill events the engine has taken
    acked: bool = False
    ended: bool = False  # the venue says it ended (cancelled, expired, filled); closed after the next poll


@dataclass
class LiveStats:
    orders_sent: int = 0
    cancels_sent: int = 0
    replaces_sent: int = 0
    replace_fallbacks: int = 0  # cancel-and-replace found its old order gone: the new one sent alone
    cancel_alls_sent: int = 0
    acks: int = 0
    fills: int = 0
    fractional_fills: int = 0
    unknown_order_fills: int = 0
    lookups: int = 0
    account_reads: int = 0
    account_unavailable: int = 0
    account_unsettled: int = 0


class CitrexVenue(_PolledVenue):
    name = "citrex"

    def __init__(self, cfg: Config, signer: CitrexSigner, product: api.Product) -> None:
        super().__init__(cfg, product, signer.address, "citrex")
        self.signer = signer
        # one process per account and sub-account (flashmm/ops/lease.py: the instance lock)
        self.account_id = f"citrex:{cfg.citrex.chain_id}:{signer.address.lower()}:{signer.sub_account_id}"
        self.live = LiveStats()
        self._orders: dict[int, _Order] = {}  # client id -> our order, until it is done
        self._by_id: dict[str, int] = {}  # venue order id -> client id
        self._by_nonce: dict[int, int] = {}  # nonce -> client id, while the order lives
        self._retired: deque[str] = deque()  # ids of finished orders, oldest first: their late trades still map
        self._foreign: dict[int, str] = {}  # negative client id -> venue id of an order we did not place
        self._foreign_by_id: dict[str, int] = {}
        self._next_foreign = 1
        self._next_handle = 1
        self._pending: list[OrderAction] = []
        self._cancel_after_ack: set[int] = set()
        self._inflight = 0
        self._sender: asyncio.Task | None = None
        self._sem = asyncio.Semaphore(self.cc.max_concurrent_requests)
        self._unmatched: list[tuple[float, api.TradeRecord, bool]] = []  # (deadline, trade, we are the maker)
        self._ends: list[tuple[int, int]] = []  # (poll count that must complete first, client id)
        self._closing: dict[int, _Order] = {}  # done or ended here; its last Fill / CancelAck not yet taken
        self._submitted_ns: dict[int, int] = {}  # client id -> when the engine handed the order over
        self.ack_latency = LatencyHistogram()  # handed over -> acknowledged by the venue (signing + HTTP)
        self._ingested_pos = 0  # signed lots of our fills reported to the engine's queue
        self._delivered_pos = 0  # ... and taken by the engine
        self._own_fills_seen = 0
        self._account_info: dict[str, Any] = {}
        self._account_lock = asyncio.Lock()
        self._expiration_ms = int(self.cc.order_expiration_s * 1000)

    # ---- Venue interface -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._check_product()
        try:
            server_ms = api.parse_server_time(await self._get("time"))
            skew_ms = server_ms - time.time_ns() // 1_000_000
            self._account_info["clock_skew_ms"] = skew_ms
            if abs(skew_ms) > 5000:  # nonces and expirations are our own timestamps
                self.log.warning("clock_skew", skew_ms=skew_ms)
        except (TransportError, RateLimited, api.APIError, api.ParseError) as exc:
            raise CitrexVenueError(f"Citrex: GET time failed: {exc}") from None
        try:  # an authenticated read proves the venue accepts our signatures (domain, chain id, contract)
            orders = api.parse_orders(await self._get("openOrders", self.signer.auth_query(self.product.symbol)))
        except api.APIError as exc:
            raise CitrexVenueError(f"Citrex refused our signed authentication ({exc.message}): check "
                                   f"[citrex].chain_id and verifying_contract") from None
        except (TransportError, RateLimited, api.ParseError) as exc:
            raise CitrexVenueError(f"Citrex: GET openOrders failed: {exc}") from None
        for o in orders:
            if o.product_id == self.product.id and o.status in _OPEN:
                self._foreign_cid(o.id)
        await self._start_feed()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._account_info_loop(), name="citrex-account"))
        self.log.info("started", address=self.signer.address, product=self.product.symbol,
                      product_id=self.product.id, tick=str(self.instrument.price_tick),
                      lot=str(self.instrument.lot_size), maker_fee_bps=self.maker_fee_bps,
                      taker_fee_bps=self.taker_fee_bps, open_orders_found=len(self._foreign))

    async def next_batch(self) -> list[Event] | None:
        batch = await self._queue.get()
        if batch:
            for ev in batch:
                if isinstance(ev, Fill):
                    self._delivered_pos += int(ev.side) * ev.lots
                    o = self._orders.get(ev.client_id) or self._closing.get(ev.client_id)
                    if o is not None:
                        o.lots_delivered += ev.lots
                    if ev.done:
                        self._retire(ev.client_id)
                elif isinstance(ev, CancelAck):
                    self._retire(ev.client_id)
        return batch

    def submit(self, actions: Sequence[OrderAction]) -> None:
        now = time.perf_counter_ns()
        for a in actions:
            if isinstance(a, PlaceOrder):
                self._submitted_ns[a.client_id] = now
        self._pending.extend(actions)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_pending(), name="citrex-orders")

    async def account_state(self) -> AccountState:
        async with self._account_lock:
            return await self._account_state()

    async def stop(self) -> None:
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._sender), self.cc.request_timeout_s)
        if self._sender is not None:
            self._tasks.append(self._sender)
        await self._stop_common()

    def link(self) -> tuple[bool, str]:
        ok, text = super().link()
        return ok, f"{text} · {self._inflight} requests in flight"

    def status(self) -> dict[str, Any]:
        ack = self.ack_latency
        return {**self._status_common(), "address": self.signer.address, "sub_account_id": self.signer.sub_account_id,
                "live_orders": len(self._orders), "requests_in_flight": self._inflight,
                "order_ack_ms": {"count": ack.count, "p50": round(ack.percentile(50) / 1e6, 2),
                                 "p99": round(ack.percentile(99) / 1e6, 2)} if ack.count else {},
                **self.live.__dict__, "account": dict(self._account_info)}

    # ---- feed hooks ------------------------------------------------------------------------------------
    def _trades_query(self) -> str:
        # as the client's getTradeHistory (lib/index.js:687): symbol, lookback, account, subAccountId
        return (f"symbol={self.product.symbol}&lookback={self.cc.trade_lookback}&account={self.signer.address}"
                f"&subAccountId={self.signer.sub_account_id}")

    def _on_trades(self, fresh: list[api.TradeRecord], now: int) -> list[Event]:
        out: list[Event] = []
        me, sub = self._account, self.signer.sub_account_id
        for t in fresh:
            if t.maker_account == me and t.maker_sub == sub:
                self._own_fill(t, True, now, out)
            if t.taker_account == me and t.taker_sub == sub:
                self._own_fill(t, False, now, out)
        # trades on ids still unknown after the grace period: fills of orders we did not place (never dropped)
        deadline = time.monotonic()
        keep = []
        for d, t, maker in self._unmatched:
            oid = t.maker_id if maker else t.taker_id
            if oid in self._by_id or oid in self._foreign_by_id:
                self._own_fill(t, maker, now, out)
            elif d <= deadline:
                self._foreign_cid(oid)
                self.live.unknown_order_fills += 1
                self.log.warning("fill_for_unknown_order", order_id=oid, trade=t.uid)
                self._own_fill(t, maker, now, out)
            else:
                keep.append((d, t, maker))
        self._unmatched = keep
        return out

    def _own_fill(self, t: api.TradeRecord, maker: bool, now: int, out: list[Event]) -> None:
        oid = t.maker_id if maker else t.taker_id
        side = (Side.SELL if t.taker_is_buyer else Side.BUY) if maker else (Side.BUY if t.taker_is_buyer else Side.SELL)
        fee = float(api.from_wei(abs(t.maker_fees if maker else t.taker_fees))) * (
            -1 if (t.maker_fees if maker else t.taker_fees) < 0 else 1)
        cid = self._by_id.get(oid)
        if cid is None:
            cid = self._foreign_by_id.get(oid)
            if cid is None:
                self._unmatched.append((time.monotonic() + self.cc.fill_grace_s, t, maker))
                return
        self._own_fills_seen += 1
        o = self._orders.get(cid)
        if o is None:  # an order we no longer track (foreign, or ended): its fill still moves the position
            lots, rest = divmod(t.quantity, self._lot)
            done = True
        else:
            o.filled_wei += t.quantity
            total = min(o.filled_wei, o.quantity_wei) // self._lot
            lots, o.lots_sent = total - o.lots_sent, total
            rest = t.quantity % self._lot
            done = o.filled_wei >= o.quantity_wei
            if done:  # open in the engine's view until it takes this fill (next_batch retires it)
                self._closing[cid] = self._orders.pop(cid)
        if rest:
            self.live.fractional_fills += 1
        if lots <= 0:
            if fee:
                out.append(FeeCharge(fee, "fee of a fill below one lot", now))
            return
        self.live.fills += 1
        self._ingested_pos += int(side) * lots
        out.append(Fill(cid, side, t.price / self._inc, lots, fee, maker, now, done))

    def _after_poll(self, events: list[Event], now: int) -> None:
        """Orders that ended at the venue are closed once a poll that began after the end has completed, so
        the fills made before the end reach the engine first."""
        keep = []
        for after, cid in self._ends:
            if self._polls_done <= after:
                keep.append((after, cid))
                continue
            o = self._orders.pop(cid, None)
            if o is not None:
                events.append(CancelAck(cid, now))
                self._closing[cid] = o
            elif cid < 0:
                venue_id = self._foreign.pop(cid, None)
                if venue_id is not None:
                    self._retired.append(venue_id)
        self._ends = keep

    def _end_after_poll(self, cid: int) -> None:
        o = self._orders.get(cid)
        if o is not None:
            o.ended = True
        self._ends.append((self._polls_started, cid))

    # ---- orders ------------------------------------------------------------------------------------------
    async def _send_pending(self) -> None:
        await asyncio.sleep(0)  # let the engine finish submitting this cycle's actions
        while self._pending and not self._stopped:
            await self._wait_backoff()
            actions, self._pending = self._pending, []
            now = self.clock.now_ns()
            cancels: list[int] = []
            places: list[PlaceOrder] = []
            for a in actions:
                if isinstance(a, CancelOrder):
                    unsent = next((p for p in places if p.client_id == a.client_id), None)
                    if unsent is not None:  # placed and cancelled before it was sent: neither goes out
                        places.remove(unsent)
                        self._submitted_ns.pop(a.client_id, None)
                        self._emit([CancelAck(a.client_id, now)])
                    else:
                        cancels.append(a.client_id)
                else:
                    places.append(a)
            await self._send(cancels, places)

    async def _send(self, cancel_ids: list[int], places: list[PlaceOrder]) -> None:
        now = self.clock.now_ns()
        cancels: list[tuple[int, str]] = []  # (client id, venue id)
        for cid in cancel_ids:
            if cid < 0 and cid in self._foreign:
                cancels.append((cid, self._foreign[cid]))
                continue
            o = self._orders.get(cid)
            if o is None:
                self._emit([CancelReject(cid, "order not found (filled or never placed)", now)])
            elif o.ended:
                pass  # closing after the next poll already
            elif o.venue_id is None:
                self._cancel_after_ack.add(cid)  # its place is in flight: cancel once acknowledged
            else:
                cancels.append((cid, o.venue_id))
        checked: list[PlaceOrder] = []
        for p in places:
            reason = self._check_place(p)
            if reason:
                self.stats.count("local")
                self.log.warning("order_rejected_locally", client_id=p.client_id, reason=reason)
                self._submitted_ns.pop(p.client_id, None)
                self._emit([OrderReject(p.client_id, reason, now)])
            else:
                checked.append(p)
        # pulling every resting order and placing nothing: one cancel-all for the product
        live_acked = {cid for cid, o in self._orders.items() if o.venue_id is not None and not o.ended}
        in_flight = any(o.venue_id is None for o in self._orders.values())
        cancelled = {cid for cid, _ in cancels}
        if (self.cc.cancel_all_on_pull and not checked and len(cancels) > 1 and not in_flight
                and live_acked <= cancelled):
            await self._limited(self._cancel_all(cancels))
            return
        # a cancel and a post-only place on the same side: one cancel-and-replace
        pairs: list[tuple[tuple[int, str], PlaceOrder]] = []
        if self.cc.cancel_replace:
            rest: list[tuple[int, str]] = []
            for c in cancels:
                o = self._orders.get(c[0])
                match = next((p for p in checked if o is not None and p.side is o.side and self._post_only(p)), None)
                if match is not None:
                    checked.remove(match)
                    pairs.append((c, match))
                else:
                    rest.append(c)
            cancels = rest
        await asyncio.gather(*(self._limited(self._cancel(cid, vid)) for cid, vid in cancels))
        await asyncio.gather(*(self._limited(self._replace(c, p)) for c, p in pairs),
                             *(self._limited(self._place(p)) for p in checked))

    async def _limited(self, coro: Any) -> None:
        async with self._sem:
            self._inflight += 1
            try:
                await coro
            finally:
                self._inflight -= 1

    @staticmethod
    def _post_only(p: PlaceOrder) -> bool:
        """Quotes come post-only from the order manager ([strategy].post_only); a marketable order never is."""
        return p.order_type is OrderType.LIMIT and p.post_only

    def _check_place(self, p: PlaceOrder) -> str | None:
        if p.lots <= 0:
            return "quantity: must be at least one lot"
        if p.client_id in self._orders:
            return f"duplicate client order id {p.client_id}"
        if p.price_ticks <= 0:
            return ("price: a Citrex market order needs a worst price (the client derives one from its slippage)"
                    if p.order_type is OrderType.MARKET else "price: must be positive")
        if p.lots * self._lot > self.product.max_quantity:
            return f"quantity: above the product's maxQuantity {api.from_wei(self.product.max_quantity)}"
        return None

    def _new_order(self, p: PlaceOrder) -> _Order:
        nonce = self.signer.nonces.next()
        o = _Order(p.client_id, p.side, p.order_type, self._post_only(p), p.price_ticks, p.lots, nonce,
                   p.lots * self._lot)
        self._orders[p.client_id] = o
        self._by_nonce[nonce] = p.client_id
        return o

    def _order_body(self, o: _Order) -> dict[str, Any]:
        if o.order_type is OrderType.MARKET:
            otype, tif = CxOrderType.MARKET, TimeInForce.IOC  # the rest of a marketable order is cancelled
        else:
            otype, tif = (CxOrderType.LIMIT_MAKER if o.post_only else CxOrderType.LIMIT), TimeInForce.GTC
        return self.signer.order(self.product.id, o.side is Side.BUY, otype, tif, o.price_ticks * self._inc,
                                 o.quantity_wei, o.nonce, self._expiration())

    def _expiration(self) -> int:
        """Milliseconds since the epoch at which an order sent now expires ([citrex].order_expiration_s)."""
        return time.time_ns() // 1_000_000 + self._expiration_ms

    async def _place(self, p: PlaceOrder) -> None:
        o = self._new_order(p)
        body = self._order_body(o)
        self.live.orders_sent += 1
        await self._post_order(o, "order", body_bytes(body))

    async def _replace(self, old: tuple[int, str], p: PlaceOrder) -> None:
        cid_old, vid_old = old
        o = self._new_order(p)
        body = self.signer.replace(vid_old, self.product.id, o.side is Side.BUY, o.price_ticks * self._inc,
                                   o.quantity_wei, o.nonce, self._expiration())
        self.live.replaces_sent += 1
        result = await self._post_order(o, "order/cancel-and-replace", body_bytes(body), replacing=True)
        if result is True:
            self._end_after_poll(cid_old)  # replaced: the old order is gone at the venue
        elif result == "old_gone":  # filled or expired just before: nothing to cancel, the new quote goes alone
            self._end_after_poll(cid_old)
            self.live.replace_fallbacks += 1
            self._by_nonce.pop(o.nonce, None)
            o.nonce = self.signer.nonces.next()  # a fresh nonce: the refused request's is not reused
            self._by_nonce[o.nonce] = o.cid
            self.live.orders_sent += 1
            await self._post_order(o, "order", body_bytes(self._order_body(o)))
        else:  # the new order did not go in: whether the old one was cancelled is unknown, so cancel it plainly
            await self._cancel(cid_old, vid_old)

    async def _post_order(self, o: _Order, path: str, body: bytes, replacing: bool = False) -> bool | str:
        """POST an order; True when the venue took it. When replacing, "old_gone" if only the order to cancel
        was missing (the new one is then neither rejected nor placed here)."""
        try:
            await self._wait_backoff()
            status, doc = await self.rest.request("POST", path, body=body)
        except RateLimited as exc:
            self._rate_limited(exc)
            self._reject(o, "rate_limited", str(exc))
            return False
        except OutcomeUnknown as exc:
            self.log.warning("order_outcome_unknown", client_id=o.cid, nonce=o.nonce, error=str(exc))
            return await self._lookup(o)
        except TransportError as exc:
            self._reject(o, "transport", str(exc))
            return False
        err = api.api_error(doc, status)
        if err is not None or status >= 400:
            message = err.message if err is not None else f"HTTP {status}"
            kind = classify_rejection(message)
            if replacing and kind == "not_found":
                return "old_gone"
            self._reject(o, kind, message)
            return False
        try:
            rec = api.parse_order(doc)
        except api.ParseError as exc:
            self.stats.count("order_answer_malformed")
            self.log.warning("order_answer_malformed", client_id=o.cid, error=str(exc))
            return await self._lookup(o)
        self._request_ok()
        return self._on_order_record(o, rec)

    def _on_order_record(self, o: _Order, rec: api.OrderRecord) -> bool:
        if rec.status == "REJECTED":
            self._reject(o, "rejected", f"the venue answered status REJECTED for order {rec.id}")
            return False
        self._ack(o, rec.id)
        if rec.status not in _OPEN:  # FILLED, CANCELLED or EXPIRED at once (an IOC order): close after its fills
            self._end_after_poll(o.cid)
        return True

    def _ack(self, o: _Order, venue_id: str) -> None:
        if o.acked:
            return
        o.venue_id = venue_id
        o.acked = True
        o.handle = self._next_handle
        self._next_handle += 1
        self._by_id[venue_id] = o.cid
        self.live.acks += 1
        t0 = self._submitted_ns.pop(o.cid, None)
        if t0 is not None:
            self.ack_latency.record(time.perf_counter_ns() - t0)
        self._emit([OrderAck(o.cid, o.handle, self.clock.now_ns())])
        if o.cid in self._cancel_after_ack:
            self._cancel_after_ack.discard(o.cid)
            self.submit([CancelOrder(o.cid)])

    def _reject(self, o: _Order, kind: str, message: str) -> None:
        self._orders.pop(o.cid, None)
        self._submitted_ns.pop(o.cid, None)
        self._by_nonce.pop(o.nonce, None)
        self._cancel_after_ack.discard(o.cid)
        self.stats.count(kind)
        self.log.warning("order_rejected", client_id=o.cid, kind=kind, reason=message[:300])
        self._emit([OrderReject(o.cid, f"{kind}: {message}"[:500], self.clock.now_ns(), kind)])

    async def _lookup(self, o: _Order) -> bool:
        """An order whose answer was lost: find it by its nonce among the open orders; else it did not rest."""
        self.live.lookups += 1
        for attempt in range(3):
            try:
                orders = api.parse_orders(await self._get("openOrders", self.signer.auth_query(self.product.symbol)))
            except RateLimited:
                continue
            except (TransportError, api.APIError, api.ParseError) as exc:
                self.log.warning("order_lookup_failed", client_id=o.cid, error=str(exc), attempt=attempt)
                await asyncio.sleep(self.cc.poll_interval_s)
                continue
            for rec in orders:
                if rec.nonce == o.nonce and rec.product_id == self.product.id:
                    return self._on_order_record(o, rec)
            break
        # not resting: never placed, or filled at once (those fills arrive as fills of an unknown order id)
        self._reject(o, "outcome_unknown", "the order's answer was lost and it is not open at the venue")
        return False

    async def _cancel(self, cid: int, venue_id: str) -> None:
        body = body_bytes(self.signer.cancel(venue_id, self.product.id))
        self.live.cancels_sent += 1
        for _ in range(5):
            await self._wait_backoff()
            try:
                status, doc = await self.rest.request("DELETE", "order", body=body)
            except RateLimited as exc:
                self._rate_limited(exc)
                continue  # a cancel is never given up for a 429: it waits and goes again
            except TransportError as exc:
                self._emit([CancelReject(cid, f"transport: {exc}", self.clock.now_ns())])
                return
            break
        else:
            self._emit([CancelReject(cid, "rate_limited: cancel not sent", self.clock.now_ns())])
            return
        try:
            api.parse_success(doc, "DELETE order")
        except (api.APIError, api.ParseError) as exc:
            message = str(exc)
            kind = classify_rejection(message)
            if kind == "not_found":  # gone at the venue (filled, expired or replaced): closed after the next poll
                self._end_after_poll(cid)
                return
            self.stats.count(f"cancel_{kind}")
            self.log.warning("cancel_rejected", client_id=cid, reason=message[:300])
            self._emit([CancelReject(cid, f"{kind}: {message}"[:500], self.clock.now_ns())])
            return
        self._request_ok()
        self._end_after_poll(cid)

    async def _cancel_all(self, cancels: list[tuple[int, str]]) -> None:
        body = body_bytes(self.signer.cancel_all(self.product.id))
        self.live.cancel_alls_sent += 1
        for _ in range(5):
            await self._wait_backoff()
            try:
                status, doc = await self.rest.request("DELETE", "openOrders", body=body)
                api.parse_success(doc, "DELETE openOrders")
            except RateLimited as exc:
                self._rate_limited(exc)
                continue
            except (TransportError, api.APIError, api.ParseError) as exc:
                self.log.warning("cancel_all_failed", error=str(exc)[:300])
                break
            self._request_ok()
            for cid, _ in cancels:
                self._end_after_poll(cid)
            return
        # one by one instead
        await asyncio.gather(*(self._cancel(cid, vid) for cid, vid in cancels))

    def _emit(self, events: list[Event]) -> None:
        if events:
            self._queue.put_nowait(events)

    def _retire(self, cid: int) -> None:
        """The engine knows this order is finished: forget its nonce; keep its id for late trades, for the
        last 10,000 finished orders (a day of quoting would otherwise grow these maps without end)."""
        o = self._closing.pop(cid, None)
        if o is not None:
            self._by_nonce.pop(o.nonce, None)
            if o.venue_id is not None:
                self._retired.append(o.venue_id)
        while len(self._retired) > 10_000:
            old = self._retired.popleft()
            self._by_id.pop(old, None)
            self._foreign_by_id.pop(old, None)

    def _foreign_cid(self, venue_id: str) -> int:
        cid = self._foreign_by_id.get(venue_id)
        if cid is None:
            cid = -self._next_foreign
            self._next_foreign += 1
            self._foreign[cid] = venue_id
            self._foreign_by_id[venue_id] = cid
        return cid

    # ---- account -----------------------------------------------------------------------------------------
    async def _account_state(self) -> AccountState:
        self.live.account_reads += 1
        query = self.signer.auth_query(self.product.symbol)
        settled = False
        try:
            for _ in range(3):
                before = self._own_fills_seen
                orders_doc, positions_doc = await asyncio.gather(self._get("openOrders", query),
                                                                 self._get("positionRisk", query))
                await self._poll_once()  # trades up to now: our fills the position already holds
                if self._own_fills_seen == before:
                    settled = True
                    break
            orders = api.parse_orders(orders_doc)
            positions = api.parse_positions(positions_doc)
        except (TransportError, RateLimited, api.APIError, api.ParseError) as exc:
            if isinstance(exc, RateLimited):
                self._rate_limited(exc)
            self.live.account_unavailable += 1
            self.log.warning("account_state_unavailable", error=str(exc)[:300],
                             detail="reconciliation reports this connector's own record this round")
            return self._own_record()
        if not settled:
            self.live.account_unsettled += 1
            self.log.warning("account_state_unsettled", detail="our fills kept arriving during the read")
        open_orders: dict[int, VenueOrder] = {}
        for rec in orders:
            if rec.product_id != self.product.id or rec.status not in _OPEN or rec.account != self._account:
                continue
            cid = self._by_id.get(rec.id)
            if cid is None and rec.nonce in self._by_nonce:  # ours, its answer still on the way
                cid = self._by_nonce[rec.nonce]
                o = self._orders.get(cid)
                if o is not None and not o.acked:
                    self._ack(o, rec.id)
            if cid is None:
                cid = self._foreign_cid(rec.id)
            o = self._orders.get(cid)
            remaining = rec.residual // self._lot
            if o is not None:  # fills already queued for the engine are not in its view yet
                remaining += o.lots_sent - o.lots_delivered
            open_orders[cid] = VenueOrder(cid, Side.BUY if rec.is_buy else Side.SELL, rec.price // self._inc,
                                          remaining)
        # orders that ended at the venue but whose end the engine has not yet been told of are still open in its
        # view (and the venue's record as of what the engine has processed): reported as such, not as missing
        for cid, o in [*self._orders.items(), *self._closing.items()]:
            if (o.ended or cid in self._closing) and o.acked and cid not in open_orders:
                open_orders[cid] = VenueOrder(cid, o.side, o.price_ticks, o.lots - o.lots_delivered)
        quantity = sum(p.quantity for p in positions
                       if p.product_id == self.product.id and p.sub_account_id == self.signer.sub_account_id)
        lots = abs(quantity) // self._lot * (1 if quantity >= 0 else -1)
        lots -= self._ingested_pos - self._delivered_pos  # the engine has not yet taken those fills
        return AccountState(lots, open_orders)

    def _own_record(self) -> AccountState:
        """What this connector knows, for a round where the venue could not be read (logged and counted)."""
        orders = {cid: VenueOrder(cid, o.side, o.price_ticks, o.lots - o.lots_delivered)
                  for cid, o in [*self._orders.items(), *self._closing.items()] if o.acked}
        return AccountState(self._delivered_pos, orders)

    async def read_account_info(self) -> None:
        """Balances and account health into the status (as the client's listBalances and getAccountHealth)."""
        balances, health = await asyncio.gather(
            self._get("balances", self.signer.auth_query()),
            self._get("account-health", f"account={self.signer.address}&subAccountId={self.signer.sub_account_id}"))
        b = api.parse_balances(balances)
        h = api.parse_account_health(health)
        self._account_info.update({
            "balances": {x.asset: float(api.from_wei(x.quantity)) for x in b},
            **{k: round(h.usdc(k), 6) for k in ("equity", "initialMarginAvailable", "maintenanceHealth", "totalPnl")},
            "read_at_ns": self.clock.now_ns()})
        if h.values["initialMarginAvailable"] <= 0:
            self.log.warning("margin_exhausted", initial_margin_available=h.usdc("initialMarginAvailable"))

    async def _account_info_loop(self) -> None:
        while not self._stopped:
            try:
                await self.read_account_info()
            except asyncio.CancelledError:
                raise
            except (TransportError, RateLimited, api.APIError, api.ParseError) as exc:
                if isinstance(exc, RateLimited):
                    self._rate_limited(exc)
                self.stats.count("account_info")
                self.log.warning("account_info_failed", error=str(exc)[:300])
            await asyncio.sleep(self.cc.account_info_interval_s)


# ================================================================================================ paper


class CitrexPaperVenue(_PolledVenue):
    """Citrex's public feed, our orders filled by the replay's queue model; no key, nothing signed."""

    name = "citrex-paper"

    def __init__(self, cfg: Config, product: api.Product) -> None:
        super().__init__(cfg, product, "", "citrex.paper")
        from flashmm.venues.replay import QueueFillModel

        self.mirror = L2Book()  # the venue's own copy of the polled book, for queue positions
        self.model = QueueFillModel(self.mirror, self.instrument, self.maker_fee_bps, self.taker_fee_bps)
        self._latency_s = self.cc.paper_latency_ms / 1000
        self._arrivals: list[asyncio.Task] = []
        self.paper = {"orders": 0, "cancels": 0, "fills": 0}

    async def start(self) -> None:
        await self._check_product()
        await self._start_feed()
        self.log.info("started", mode="paper", product=self.product.symbol, tick=str(self.instrument.price_tick),
                      lot=str(self.instrument.lot_size), maker_fee_bps=self.maker_fee_bps,
                      taker_fee_bps=self.taker_fee_bps)

    def submit(self, actions: Sequence[OrderAction]) -> None:
        actions = list(actions)
        self._arrivals = [t for t in self._arrivals if not t.done()]
        self._arrivals.append(asyncio.get_running_loop().create_task(self._arrive(actions)))

    async def _arrive(self, actions: list[OrderAction]) -> None:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        now = self.clock.now_ns()
        model = self.model
        model.out = []
        for a in actions:
            if isinstance(a, PlaceOrder):
                self.paper["orders"] += 1
                model.place(a, now)
            else:
                self.paper["cancels"] += 1
                model.cancel(a, now)
        self.paper["fills"] += sum(isinstance(e, Fill) for e in model.out)
        if model.out:
            self._queue.put_nowait(model.out)

    async def account_state(self) -> AccountState:
        return self.model.account()

    def status(self) -> dict[str, Any]:
        return {**self._status_common(), "mode": "paper", **{f"paper_{k}": v for k, v in self.paper.items()}}

    async def stop(self) -> None:
        for t in self._arrivals:
            t.cancel()
        await self._stop_common()

    def _on_trades(self, fresh: list[api.TradeRecord], now: int) -> list[Event]:
        model = self.model
        model.out = []
        for t in fresh:
            if t.price % self._inc:
                self.stats.trades_off_tick += 1
                continue
            lots = t.quantity // self._lot
            if lots > 0:
                model.on_trade(t.price // self._inc, lots, 1 if t.taker_is_buyer else -1, now)
        out = model.out
        self.paper["fills"] += sum(isinstance(e, Fill) for e in out)
        return out

    def _market_events(self, trades: list[api.TradeRecord], depth: api.Depth, now: int) -> list[Event]:
        events = super()._market_events(trades, depth, now)
        book_ev = events[-1]
        model = self.model
        model.out = []
        if isinstance(book_ev, BookSnapshot):
            self.mirror.apply_snapshot(book_ev)
            model.clear_traded()
        else:
            old_b = {p: self.mirror.bids.get(p, 0) for p, _ in book_ev.bids}
            old_a = {p: self.mirror.asks.get(p, 0) for p, _ in book_ev.asks}
            if self.mirror.apply_diff(book_ev):
                for p, q in book_ev.bids:
                    model.on_level(Side.BUY, p, old_b[p], q)
                for p, q in book_ev.asks:
                    model.on_level(Side.SELL, p, old_a[p], q)
        model.clear_traded()  # trades between polls are attributed within this poll only
        model.on_book_moved(now)
        self.paper["fills"] += sum(isinstance(e, Fill) for e in model.out)
        return model.out + events
