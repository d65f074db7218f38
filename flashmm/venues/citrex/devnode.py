"""`flashmm citrex-devnode`: FlashMM's double of the Citrex venue, on 127.0.0.1 only.

It serves the REST endpoints FlashMM uses, at ``http://127.0.0.1:PORT/v1/...``, with the shapes of the official
client's types (citrex-sdk 1.2.2): ``products`` (and ``products/{symbol}``, ``products/product-by-id/{id}``),
``time``, ``depth``, ``trade-history``, ``openOrders`` (GET and DELETE), ``positionRisk``, ``balances``,
``account-health``, ``order`` (POST and DELETE) and ``order/cancel-and-replace``. The exchange behind them
(flashmm/venues/citrex/exchange.py) verifies every signature by recovering its signer, enforces tick, size,
post-only, expiration and nonce rules, matches with price-time priority and keeps positions and balances;
any account that sends a signed request is credited with a starting margin balance.

Scripted participants sign real requests with their own keys and go through the same checks: makers keep a
post-only ladder around a fair price that moves as a random walk; takers send market orders (IOC) at random
times, leaning toward the fair price. Several listeners (``--port`` repeated) serve the same exchange, so a
client's endpoint failover can be exercised.

Fault injection, per listener: answer the next N requests with an HTTP status (429 with ``Retry-After``, 5xx),
drop connections without an answer, answer late (after processing: a slow venue, or a lost answer
when the client times out), refuse the next N signatures. Test-only endpoints live
under ``/devnode/`` (never under ``/v1``) and are labelled as such: ``POST /devnode/faults``,
``GET /devnode/stats``, ``GET /devnode/requests``, ``GET /devnode/account``, ``POST /devnode/participants``,
``POST /devnode/taker``, ``POST /devnode/fair``, ``POST /devnode/fund``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import signal
import sys
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from eth_utils import keccak

from flashmm.telemetry.logging import get_logger
from flashmm.venues.citrex.exchange import Exchange, ProductSpec, default_products
from flashmm.venues.citrex.signing import (
    MAINNET_CHAIN_ID,
    MAINNET_VERIFYING_CONTRACT,
    WEI,
    CitrexSigner,
    Domain,
    OrderType,
    TimeInForce,
)

__all__ = ["CitrexDevNode", "add_cli", "run_cli"]

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class _Rule:
    kind: str  # status | drop | delay
    count: int  # requests left (-1: until cleared)
    path: str = ""  # only paths starting with this (after /v1/)
    status: int = 0
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass
class Faults:
    """Faults of one listener (test-only)."""

    rules: list[_Rule] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)

    def take(self, path: str) -> _Rule | None:
        for rule in self.rules:
            if rule.count != 0 and path.startswith(rule.path):
                if rule.count > 0:
                    rule.count -= 1
                self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
                return rule
        self.rules = [r for r in self.rules if r.count != 0]
        return None


class _Bucket:
    """Requests per second allowed on one listener (429 beyond)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.t = time.monotonic()

    def take(self) -> float | None:
        """None when allowed, else the seconds to wait."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


class _Listener:
    def __init__(self, index: int, port: int, rate_limit: float) -> None:
        self.index = index
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.faults = Faults()
        self.bucket = _Bucket(rate_limit) if rate_limit > 0 else None
        self.writers: set[asyncio.StreamWriter] = set()
        self.requests = 0


class CitrexDevNode:
    def __init__(self, ports: list[int] | None = None, *, seed: int = 7, makers: int = 2, takers: int = 2,
                 product: str = "seiperp", chain_id: int = MAINNET_CHAIN_ID,
                 verifying_contract: str = MAINNET_VERIFYING_CONTRACT, taker_rate_per_s: float = 0.6,
                 maker_interval_s: float = 0.5, starting_balance_usdc: float = 100_000.0, rate_limit: float = 0.0,
                 products: list[ProductSpec] | None = None) -> None:
        self.domain = Domain(chain_id, verifying_contract)
        self.exchange = Exchange(self.domain, products or default_products(),
                                 starting_balance=int(Decimal(str(starting_balance_usdc)) * WEI))
        if product not in self.exchange.by_symbol:
            raise ValueError(f"unknown product {product!r} (the double lists {sorted(self.exchange.by_symbol)})")
        self.product = self.exchange.by_symbol[product]
        self.listeners = [_Listener(i, p, rate_limit) for i, p in enumerate(ports or [0])]
        self.log = get_logger("citrex.devnode")
        self.rng = random.Random(seed)
        self.participants = Participants(self, makers, takers, seed, taker_rate_per_s, maker_interval_s)
        self.requests_log: deque[dict[str, Any]] = deque(maxlen=5000)
        self.request_index = 0
        self.stats: dict[str, Any] = {"requests": 0, "signed_requests": 0, "by_path": {}, "by_status": {}}

    # ---- life ------------------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{lst.port}/v1" for lst in self.listeners]

    @property
    def url(self) -> str:
        return self.urls[0]

    async def start(self) -> None:
        for lst in self.listeners:
            lst.server = await asyncio.start_server(lambda r, w, lst=lst: self._on_connection(lst, r, w),
                                                    "127.0.0.1", lst.port)
            lst.port = lst.server.sockets[0].getsockname()[1]
        self.participants.start()

    async def stop(self) -> None:
        await self.participants.stop()
        for lst in self.listeners:
            if lst.server is not None:
                lst.server.close()
            for w in list(lst.writers):
                w.close()
            if lst.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lst.server.wait_closed(), 2)

    async def __aenter__(self) -> CitrexDevNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def close_listener(self, index: int) -> None:
        """Stop one listener (test-only): its clients see refused connections."""
        lst = self.listeners[index]
        if lst.server is not None:
            lst.server.close()
        for w in list(lst.writers):
            w.transport.abort()

    # ---- HTTP ------------------------------------------------------------------------------------------
    async def _on_connection(self, lst: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lst.writers.add(writer)
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    return
                method, target, headers, body = req
                keep = await self._serve(lst, writer, method, target, headers, body)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError):
            return
        finally:
            lst.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
        line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            h = await reader.readline()
            size += len(h)
            if size > MAX_HEAD:
                raise ValueError("head too large")
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = bytearray()
            while True:
                n = int((await reader.readline()).split(b";")[0].strip() or b"x", 16)
                if n == 0:
                    await reader.readline()
                    break
                if len(chunks) + n > MAX_BODY:
                    raise ValueError("body too large")
                chunks += await reader.readexactly(n)
                await reader.readexactly(2)
            body = bytes(chunks)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if not 0 <= n <= MAX_BODY:
                raise ValueError("bad content-length")
            body = await reader.readexactly(n)
        return parts[0].upper(), parts[1], headers, body

    async def _serve(self, lst: _Listener, writer: asyncio.StreamWriter, method: str, target: str,
                     headers: dict[str, str], body: bytes) -> bool:
        url = urllib.parse.urlsplit(target)
        path = url.path
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        keep = headers.get("connection", "").lower() != "close"
        lst.requests += 1
        if path.startswith("/devnode/"):
            status, doc = await self._admin(lst, method, path[len("/devnode/"):], query, body)
            await self._respond(writer, status, doc, keep)
            return keep
        api_path = path[len("/v1/"):] if path.startswith("/v1/") else None
        self._record(lst, method, path, url.query, headers, body)
        rule = lst.faults.take(api_path) if api_path is not None else None
        if api_path is not None:
            if rule is not None:
                if rule.kind == "drop":
                    writer.transport.abort()
                    return False
                if rule.kind == "status":
                    extra = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else {}
                    await self._respond(writer, rule.status, {"error": f"injected HTTP {rule.status}",
                                                              "success": False}, keep, extra)
                    return keep
            if lst.bucket is not None:
                wait = lst.bucket.take()
                if wait is not None:
                    await self._respond(writer, 429, {"error": "rate limit exceeded", "success": False}, keep,
                                        {"Retry-After": f"{max(0.05, round(wait, 2)):g}"})
                    return keep
        try:
            status, doc = self._route(method, api_path, query, body)
        except Exception as exc:  # noqa: BLE001 - a bug in the double answers 500, never kills it
            self.log.exception("devnode_error", path=path)
            status, doc = 500, {"error": f"internal error: {type(exc).__name__}", "success": False}
        self.stats["by_status"][str(status)] = self.stats["by_status"].get(str(status), 0) + 1
        if rule is not None and rule.kind == "delay":  # processed, answered late (a slow venue, or a lost answer)
            await asyncio.sleep(rule.delay_s)
        await self._respond(writer, status, doc, keep)
        return keep

    def _record(self, lst: _Listener, method: str, path: str, query: str, headers: dict[str, str],
                body: bytes) -> None:
        signed = b'"signature"' in body or "signature=" in query
        self.stats["requests"] += 1
        self.stats["signed_requests"] += int(signed)
        key = f"{method} {path}"
        self.stats["by_path"][key] = self.stats["by_path"].get(key, 0) + 1
        self.request_index += 1
        self.requests_log.append({"index": self.request_index, "listener": lst.index, "method": method,
                                  "path": path, "query": query, "body": body.decode("utf-8", "replace"),
                                  "content_type": headers.get("content-type", ""), "signed": signed})

    async def _respond(self, writer: asyncio.StreamWriter, status: int, doc: Any, keep: bool,
                       extra: dict[str, str] | None = None) -> None:
        payload = orjson.dumps(doc)
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}", f"Connection: {'keep-alive' if keep else 'close'}"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    def _route(self, method: str, path: str | None, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        ex = self.exchange
        if path is None:
            return 404, {"error": "not found", "success": False}
        if method == "GET":
            if path == "products":
                return 200, ex.products_json()
            if path.startswith("products/product-by-id/"):
                try:
                    p = ex.products.get(int(path.rsplit("/", 1)[1]))
                except ValueError:
                    p = None
                return (200, p.as_json()) if p else (404, {"error": "product not found", "success": False})
            if path.startswith("products/"):
                p = ex.by_symbol.get(path.split("/", 1)[1])
                return (200, p.as_json()) if p else (404, {"error": "product not found", "success": False})
            if path == "time":
                return 200, {"serverTime": time.time_ns() // 1_000_000}
            reads = {"depth": ex.depth, "trade-history": ex.trade_history, "openOrders": ex.open_orders,
                     "positionRisk": ex.positions, "balances": ex.balances, "account-health": ex.account_health}
            if path in reads:
                return reads[path](query)
        elif method in ("POST", "DELETE"):
            writes = {("POST", "order"): ex.place, ("POST", "order/cancel-and-replace"): ex.cancel_and_replace,
                      ("DELETE", "order"): ex.cancel, ("DELETE", "openOrders"): ex.cancel_all}
            handler = writes.get((method, path))
            if handler is not None:
                try:
                    doc = orjson.loads(body)
                except orjson.JSONDecodeError:
                    return 400, {"error": "body is not JSON", "success": False}
                return handler(doc)
        return 404, {"error": f"{method} /v1/{path} is not served by the FlashMM Citrex double", "success": False}

    # ---- test-only endpoints ---------------------------------------------------------------------------------
    async def _admin(self, lst: _Listener, method: str, path: str, query: dict[str, str],
                     body: bytes) -> tuple[int, Any]:
        try:
            doc = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return 400, {"error": "body is not JSON"}
        ex = self.exchange
        if path == "stats":
            return 200, {**self.stats, "exchange": ex.counts, "faults_fired": [x.faults.fired for x in self.listeners],
                         "listener_requests": [x.requests for x in self.listeners],
                         "participants": self.participants.counts}
        if path == "requests":
            since = int(query.get("since", "0"))
            return 200, [r for r in self.requests_log if r["index"] > since]
        if path == "account":
            address, sub = query.get("address", ""), int(query.get("subAccountId", "1"))
            p = ex.by_symbol.get(query.get("symbol", self.product.symbol), self.product)
            acct = ex.accounts.get((address.lower(), sub))
            mine = ex.open_by_account.get((address.lower(), sub), {})
            return 200, {"position": str(ex.position(address, sub, p.id)),
                         "open_orders": sum(1 for o in mine.values() if o.product.id == p.id),
                         "balance": str(acct.balance) if acct else None}
        if method != "POST":
            return 404, {"error": "unknown test-only endpoint"}
        if path == "faults":
            targets = self.listeners if doc.get("all") else [lst]
            if "listener" in doc:
                targets = [self.listeners[int(doc["listener"])]]
            for t in targets:
                if doc.get("clear"):
                    t.faults.rules.clear()
                count = int(doc.get("count", 1))
                p = str(doc.get("path", ""))
                if "status" in doc:
                    ra = doc.get("retry_after")
                    t.faults.rules.append(_Rule("status", count, p, int(doc["status"]),
                                                None if ra is None else float(ra)))
                if "drop" in doc:
                    t.faults.rules.append(_Rule("drop", int(doc["drop"]), p))
                if "delay_s" in doc:
                    t.faults.rules.append(_Rule("delay", count, p, delay_s=float(doc["delay_s"])))
            if "bad_signatures" in doc:
                ex.forced_signature_failures = int(doc["bad_signatures"])
            if doc.get("close_listener") is not None:
                self.close_listener(int(doc["close_listener"]))
            return 200, {"ok": True}
        if path == "participants":
            self.participants.set_active(doc.get("makers"), doc.get("takers"))
            return 200, {"makers": self.participants.makers_on, "takers": self.participants.takers_on}
        if path == "taker":
            return self.participants.take_now(str(doc.get("side", "buy")), int(doc.get("lots", 1)))
        if path == "fair":
            self.participants.fair = float(doc["fair"]) / (self.product.increment / WEI)
            return 200, {"fair_ticks": self.participants.fair}
        if path == "fund":
            ex.fund(str(doc["address"]), int(doc.get("subAccountId", 1)), int(Decimal(str(doc["usdc"])) * WEI))
            return 200, {"ok": True}
        return 404, {"error": "unknown test-only endpoint"}


# ================================================================================================ participants


def _key(seed: int, role: str, i: int) -> str:
    return keccak(f"flashmm-citrex-devnode/{seed}/{role}/{i}".encode()).hex()


class Participants:
    """Scripted makers and takers: their own keys, real signatures, the exchange's own checks."""

    def __init__(self, node: CitrexDevNode, makers: int, takers: int, seed: int, taker_rate_per_s: float,
                 maker_interval_s: float) -> None:
        self.node = node
        self.rng = random.Random(seed * 7919 + 1)
        self.makers = [CitrexSigner(_key(seed, "maker", i), node.domain) for i in range(makers)]
        self.takers = [CitrexSigner(_key(seed, "taker", i), node.domain) for i in range(takers)]
        self.manual = CitrexSigner(_key(seed, "manual", 0), node.domain)
        p = node.product
        self.tick = p.increment
        self.fair = p.mark_price / p.increment  # in ticks
        self.vol_bps_per_sqrt_s = 3.0
        self.taker_rate = taker_rate_per_s
        self.maker_interval_s = maker_interval_s
        self.makers_on = True
        self.takers_on = True
        self.counts = {"maker_orders": 0, "taker_orders": 0, "rejected": 0}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._walk()))
        for m in self.makers:
            self._tasks.append(loop.create_task(self._maker(m)))
        for t in self.takers:
            self._tasks.append(loop.create_task(self._taker(t)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def set_active(self, makers: Any, takers: Any) -> None:
        if makers is not None:
            self.makers_on = bool(makers)
        if takers is not None:
            self.takers_on = bool(takers)

    async def _walk(self) -> None:
        dt = 0.1
        while True:
            await asyncio.sleep(dt)
            self.fair *= math.exp(self.rng.gauss(0, self.vol_bps_per_sqrt_s / 1e4 * math.sqrt(dt)))

    def _order(self, signer: CitrexSigner, is_buy: bool, otype: OrderType, tif: TimeInForce, price_ticks: int,
               lots: int) -> tuple[int, Any]:
        p = self.node.product
        body = signer.order(p.id, is_buy, otype, tif, max(1, price_ticks) * self.tick, lots * p.min_quantity,
                            signer.nonces.next(), time.time_ns() // 1_000_000 + 3_600_000)
        status, doc = self.node.exchange.place(body)
        if status != 200:
            self.counts["rejected"] += 1
        return status, doc

    async def _maker(self, signer: CitrexSigner) -> None:
        levels = 5
        while True:
            await asyncio.sleep(self.maker_interval_s * self.rng.uniform(0.8, 1.2))
            if not self.makers_on:
                continue
            ex = self.node.exchange
            ex.cancel_all(signer.cancel_all(self.node.product.id))
            half = self.rng.uniform(0.6, 2.0)
            bid0 = math.floor(self.fair - half)
            ask0 = math.ceil(self.fair + half)
            for i in range(levels):
                for is_buy, price in ((True, bid0 - i), (False, ask0 + i)):
                    lots = max(1, min(20_000, round(self.rng.lognormvariate(math.log(800), 0.8))))
                    self._order(signer, is_buy, OrderType.LIMIT_MAKER, TimeInForce.GTC, price, lots)
                    self.counts["maker_orders"] += 1

    async def _taker(self, signer: CitrexSigner) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(self.taker_rate) if self.taker_rate > 0 else 3600)
            if not self.takers_on:
                continue
            bid, ask = self.node.exchange.best_prices(self.node.product.id)
            mid = (bid + ask) / 2 / self.tick if bid is not None and ask is not None else self.fair
            p_buy = 0.5 + (0.15 if self.fair > mid else -0.15 if self.fair < mid else 0.0)
            self._take(signer, self.rng.random() < p_buy,
                       max(1, min(5_000, round(self.rng.lognormvariate(math.log(300), 1.0)))))

    def _take(self, signer: CitrexSigner, is_buy: bool, lots: int) -> tuple[int, Any]:
        worst = math.ceil(self.fair * 1.02) if is_buy else math.floor(self.fair * 0.98)
        self.counts["taker_orders"] += 1
        return self._order(signer, is_buy, OrderType.MARKET, TimeInForce.IOC, worst, lots)

    def take_now(self, side: str, lots: int) -> tuple[int, Any]:
        """A market order now, for tests (test-only)."""
        return self._take(self.manual, side.lower() == "buy", max(1, lots))


# ================================================================================================ CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "citrex-devnode",
        help="run the Citrex venue double on 127.0.0.1 (REST, EIP-712 signatures checked) until SIGINT/SIGTERM",
        description="Serve the Citrex double. Prints one JSON line {url, urls, product, chain_id, "
                    "verifying_contract} on start.")
    p.add_argument("--port", type=int, action="append", default=None,
                   help="TCP port on 127.0.0.1 (0 = any free port; repeat for several listeners of the same "
                        "exchange; default 8650)")
    p.add_argument("--makers", type=int, default=2, help="scripted post-only ladders (default 2)")
    p.add_argument("--takers", type=int, default=2, help="scripted market-order senders (default 2)")
    p.add_argument("--taker-rate", type=float, default=0.6, help="market orders per second per taker (default 0.6)")
    p.add_argument("--seed", type=int, default=7, help="seed of keys, fair price and participants (default 7)")
    p.add_argument("--product", default="seiperp", help="product the participants trade (default seiperp)")
    p.add_argument("--chain-id", type=int, default=MAINNET_CHAIN_ID, help="EIP-712 chainId (default 1329)")
    p.add_argument("--verifying-contract", default=MAINNET_VERIFYING_CONTRACT, help="EIP-712 verifyingContract")
    p.add_argument("--rate-limit", type=float, default=0.0,
                   help="requests per second per listener before HTTP 429 (default 0: no limit)")
    p.add_argument("--starting-balance", type=float, default=100_000.0,
                   help="USDC credited to an account when first seen (default 100000)")
    p.set_defaults(config=None)
    return p


def run_cli(args: argparse.Namespace) -> int:
    ports = args.port or [8650]
    if any(not 0 <= p <= 65535 for p in ports):
        print("citrex-devnode: --port must be 0..65535", file=sys.stderr)
        return 2
    if args.makers < 0 or args.takers < 0 or args.taker_rate < 0 or args.rate_limit < 0:
        print("citrex-devnode: --makers, --takers, --taker-rate and --rate-limit must be >= 0", file=sys.stderr)
        return 2
    try:
        node = CitrexDevNode(ports, seed=args.seed, makers=args.makers, takers=args.takers, product=args.product,
                             chain_id=args.chain_id, verifying_contract=args.verifying_contract,
                             taker_rate_per_s=args.taker_rate, starting_balance_usdc=args.starting_balance,
                             rate_limit=args.rate_limit)
    except ValueError as exc:
        print(f"citrex-devnode: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(node))
    except KeyboardInterrupt:
        return 0


async def _serve(node: CitrexDevNode) -> int:
    try:
        await node.start()
    except OSError as e:
        print(f"citrex-devnode: cannot listen on 127.0.0.1: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(orjson.dumps({"url": node.url, "urls": node.urls, "product": node.product.symbol,
                            "product_id": node.product.id, "chain_id": node.domain.chain_id,
                            "verifying_contract": node.domain.verifying_contract}).decode(), flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await node.stop()
    return 0
