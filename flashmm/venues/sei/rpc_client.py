"""The connector's CometBFT JSON-RPC client: HTTP ``POST /`` over keep-alive connections, several endpoints
with failover and a circuit breaker per endpoint.

Why our own client: cosmpy speaks gRPC/REST only (SEI.md), and a JSON-RPC call is one small POST; a
keep-alive HTTP/1.1 exchange on asyncio streams is ~100 lines and adds no dependency. Bodies are read by
``Content-Length`` (CometBFT always sends it); ``https://`` endpoints use TLS.

Failover: endpoints are tried in configured order, skipping those whose breaker is open. A transport
failure (refused, reset, timeout, a non-JSON answer) counts against that endpoint; ``failures_to_open``
in a row open its breaker for ``cooldown_s`` (doubling while it keeps failing, up to 8x), then one
trial call decides. A JSON-RPC error is an answer, not a transport failure: it is raised to the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import orjson

from flashmm.telemetry.logging import get_logger

__all__ = ["ABCIError", "Endpoint", "EndpointPool", "RPCCallError", "RPCClient", "TransportError"]

_MAX_BODY = 64 * 1024 * 1024


class TransportError(ConnectionError):
    """No usable answer from any endpoint (refused, reset, timed out, malformed)."""


class RPCCallError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: str = "") -> None:
        super().__init__(f"JSON-RPC error {code}: {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data


class ABCIError(Exception):
    """An ``abci_query`` answered with a non-zero response code (pruned height, bad request, unknown path)."""

    def __init__(self, code: int, log: str, path: str) -> None:
        super().__init__(f"abci_query {path}: code {code}: {log}")
        self.code = code
        self.log = log
        self.path = path


@dataclass
class Endpoint:
    url: str
    failures: int = 0  # consecutive transport failures
    open_until: float = 0.0  # monotonic time the breaker stays open until
    opened: int = 0  # times the breaker opened (for the backoff and for status)
    calls: int = 0
    errors: int = 0
    _idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list, repr=False)

    @property
    def ws_url(self) -> str:
        u = urllib.parse.urlsplit(self.url)
        scheme = "wss" if u.scheme == "https" else "ws"
        path = u.path.rstrip("/") + "/websocket"
        return urllib.parse.urlunsplit((scheme, u.netloc, path, "", ""))

    def state(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.open_until > now:
            return "open"
        return "half-open" if self.failures >= 1 and self.opened else "closed"


class EndpointPool:
    """Configured endpoints in preference order, each with its breaker."""

    def __init__(self, urls: list[str], failures_to_open: int = 3, cooldown_s: float = 5.0) -> None:
        if not urls:
            raise ValueError("at least one RPC endpoint is needed")
        for u in urls:
            parts = urllib.parse.urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"RPC endpoint must be an http(s) URL, got {u!r}")
        self.endpoints = [Endpoint(u) for u in urls]
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.log = get_logger("sei.rpc")

    def candidates(self) -> list[Endpoint]:
        """Endpoints to try now, in order: closed ones first; if all are open, the one that reopens soonest."""
        now = time.monotonic()
        usable = [e for e in self.endpoints if e.open_until <= now]
        if usable:
            return usable
        return [min(self.endpoints, key=lambda e: e.open_until)]

    def ok(self, ep: Endpoint) -> None:
        if ep.failures:
            self.log.info("endpoint_recovered", endpoint=_redact_url(ep.url))
        ep.failures = 0
        ep.open_until = 0.0

    def fail(self, ep: Endpoint, why: str) -> None:
        ep.failures += 1
        ep.errors += 1
        if ep.failures >= self.failures_to_open:
            backoff = self.cooldown_s * min(8, 2 ** ep.opened)
            ep.open_until = time.monotonic() + backoff
            ep.opened += 1
            self.log.warning("endpoint_breaker_open", endpoint=_redact_url(ep.url), failures=ep.failures,
                             cooldown_s=backoff, reason=why)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"endpoint": _redact_url(e.url), "state": e.state(now), "failures": e.failures, "calls": e.calls,
                 "errors": e.errors} for e in self.endpoints]


def _redact_url(url: str) -> str:
    """An endpoint for logs: credentials in the URL (user:password@) never leave."""
    u = urllib.parse.urlsplit(url)
    if u.username or u.password:
        host = u.hostname or ""
        if u.port:
            host += f":{u.port}"
        return urllib.parse.urlunsplit((u.scheme, "***@" + host, u.path, "", ""))
    return url


class RPCClient:
    """JSON-RPC calls with failover across an :class:`EndpointPool`."""

    def __init__(self, pool: EndpointPool, timeout_s: float = 2.0, max_idle_per_endpoint: int = 4) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.max_idle = max_idle_per_endpoint
        self._ids = itertools.count(1)
        self.calls = 0
        self.transport_errors = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The ``result`` of a JSON-RPC call; RPCCallError for an error answer, TransportError when no
        endpoint answered."""
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or {}})
        last = "no endpoint tried"
        for ep in self.pool.candidates():
            ep.calls += 1
            self.calls += 1
            try:
                answer = await asyncio.wait_for(self._post(ep, body), self.timeout_s)
                msg = orjson.loads(answer)
                if not isinstance(msg, dict) or ("result" not in msg and "error" not in msg):
                    raise ValueError("not a JSON-RPC response")
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, orjson.JSONDecodeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                self.transport_errors += 1
                self.pool.fail(ep, last)
                continue
            self.pool.ok(ep)
            if "error" in msg and msg["error"] is not None:
                err = msg["error"]
                if not isinstance(err, dict):
                    raise RPCCallError(-32603, "malformed error object", str(err)[:200])
                raise RPCCallError(int(err.get("code", -32603)), str(err.get("message", "")), str(err.get("data", "")))
            return msg["result"]
        raise TransportError(f"{method}: no RPC endpoint answered ({last})")

    async def abci_query(self, path: str, request: Any, height: int = 0) -> bytes:
        """The protobuf ``value`` bytes of an ``abci_query`` (``request`` is a protobuf message)."""
        result = await self.call("abci_query", {"path": path, "data": request.SerializeToString().hex(),
                                                "height": str(height), "prove": False})
        try:
            resp = result["response"]
            code = int(resp.get("code", 0) or 0)
            if code:
                raise ABCIError(code, str(resp.get("log", "")), path)
            return base64.b64decode(resp.get("value") or "")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ABCIError):
                raise
            raise ABCIError(-1, f"malformed abci_query answer: {exc}", path) from None

    async def close(self) -> None:
        for ep in self.pool.endpoints:
            for _, w in ep._idle:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            ep._idle.clear()

    # ---- HTTP/1.1 -----------------------------------------------------------------------------------------
    async def _post(self, ep: Endpoint, body: bytes) -> bytes:
        u = urllib.parse.urlsplit(ep.url)
        reused = bool(ep._idle)
        if reused:
            reader, writer = ep._idle.pop()
        else:
            ctx = ssl.create_default_context() if u.scheme == "https" else None
            port = u.port or (443 if u.scheme == "https" else 80)
            reader, writer = await asyncio.open_connection(u.hostname, port, ssl=ctx)
        head = [f"POST {u.path or '/'} HTTP/1.1", f"Host: {u.netloc.rsplit('@', 1)[-1]}",
                "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: keep-alive"]
        if u.username:
            token = base64.b64encode(f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
                                     .encode()).decode()
            head.append(f"Authorization: Basic {token}")
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
            status = await reader.readline()
            if not status and reused:  # the server closed an idle keep-alive connection: retry once, fresh
                writer.close()
                return await self._post(ep, body)
            parts = status.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError(f"not an HTTP response: {status[:60]!r}")
            length = -1
            keep = True
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep = False
            if length < 0 or length > _MAX_BODY:
                raise ValueError(f"bad Content-Length {length}")
            data = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep and len(ep._idle) < self.max_idle:
            ep._idle.append((reader, writer))
        else:
            writer.close()
        return data
