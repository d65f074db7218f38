"""What every live venue's client needs from the network: several endpoints in failover order, each with a
circuit breaker, and keep-alive HTTP/1.1 on asyncio streams.

Shared by the Sei connector's JSON-RPC client (flashmm/venues/sei/rpc_client.py) and the Citrex REST client
(flashmm/venues/citrex/rest.py). Why our own HTTP: a venue call is one small request on a kept-alive
connection; ~150 lines on asyncio streams add no dependency and keep timeouts, failover and redaction in one
place. Bodies are read by ``Content-Length``, ``Transfer-Encoding: chunked`` (REST gateways often chunk) or,
on ``Connection: close``, to the end of the stream; ``https://`` endpoints use TLS with the system's CAs.

Failover: endpoints are tried in configured order, skipping those whose breaker is open. A transport
failure (refused, reset, timeout, a malformed answer) counts against that endpoint; ``failures_to_open``
in a row open its breaker for ``cooldown_s`` (doubling while it keeps failing, up to 8x), then one
trial call decides. What an endpoint *answered* (an error object, an HTTP 4xx) is not a transport failure:
the caller decides.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flashmm.telemetry.logging import get_logger

__all__ = ["ConnectError", "Endpoint", "EndpointPool", "HTTPConnections", "HTTPResponse", "TransportError", "redact_url"]

MAX_BODY = 64 * 1024 * 1024


class TransportError(ConnectionError):
    """No usable answer from any endpoint (refused, reset, timed out, malformed)."""


class ConnectError(OSError):
    """The connection could not be opened: nothing of the request was sent."""


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

    def __init__(self, urls: list[str], failures_to_open: int = 3, cooldown_s: float = 5.0,
                 log_name: str = "sei.rpc") -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        for u in urls:
            parts = urllib.parse.urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"endpoint must be an http(s) URL, got {redact_url(u)!r}")
        self.endpoints = [Endpoint(u) for u in urls]
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.log = get_logger(log_name)

    def candidates(self) -> list[Endpoint]:
        """Endpoints to try now, in order: closed ones first; if all are open, the one that reopens soonest."""
        now = time.monotonic()
        usable = [e for e in self.endpoints if e.open_until <= now]
        if usable:
            return usable
        return [min(self.endpoints, key=lambda e: e.open_until)]

    def ok(self, ep: Endpoint) -> None:
        if ep.failures:
            self.log.info("endpoint_recovered", endpoint=redact_url(ep.url))
        ep.failures = 0
        ep.open_until = 0.0

    def fail(self, ep: Endpoint, why: str) -> None:
        ep.failures += 1
        ep.errors += 1
        if ep.failures >= self.failures_to_open:
            backoff = self.cooldown_s * min(8, 2 ** ep.opened)
            ep.open_until = time.monotonic() + backoff
            ep.opened += 1
            self.log.warning("endpoint_breaker_open", endpoint=redact_url(ep.url), failures=ep.failures,
                             cooldown_s=backoff, reason=why)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"endpoint": redact_url(e.url), "state": e.state(now), "failures": e.failures, "calls": e.calls,
                 "errors": e.errors} for e in self.endpoints]


def redact_url(url: str) -> str:
    """An endpoint for logs: credentials in the URL (user:password@) never leave."""
    u = urllib.parse.urlsplit(url)
    if u.username or u.password:
        host = u.hostname or ""
        if u.port:
            host += f":{u.port}"
        return urllib.parse.urlunsplit((u.scheme, "***@" + host, u.path, "", ""))
    return url


class HTTPResponse(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class HTTPConnections:
    """HTTP/1.1 requests over keep-alive connections kept per endpoint (at most `max_idle` idle each)."""

    def __init__(self, max_idle_per_endpoint: int = 4, max_body: int = MAX_BODY) -> None:
        self.max_idle = max_idle_per_endpoint
        self.max_body = max_body

    async def request(self, ep: Endpoint, method: str, target: str = "", body: bytes | None = None,
                      headers: dict[str, str] | None = None, retry_idle: bool = True) -> HTTPResponse:
        """`method` on the endpoint's URL with `target` (a path and query) appended to its path.

        A kept-alive connection the server had closed answers nothing: the request is then sent once more on
        a fresh connection, unless `retry_idle` is False (a request that must not reach the server twice:
        the server may have read it before closing). Raises OSError / asyncio.IncompleteReadError /
        ValueError on a transport failure; the caller applies its own timeout (asyncio.wait_for) and decides
        what an HTTP status means."""
        u = urllib.parse.urlsplit(ep.url)
        path = (u.path.rstrip("/") + target) if target else (u.path or "/")
        if not path.startswith("/"):
            path = "/" + path
        reused = bool(ep._idle)
        if reused:
            reader, writer = ep._idle.pop()
        else:
            ctx = ssl.create_default_context() if u.scheme == "https" else None
            port = u.port or (443 if u.scheme == "https" else 80)
            try:
                reader, writer = await asyncio.open_connection(u.hostname, port, ssl=ctx)
            except OSError as exc:
                raise ConnectError(exc.errno, exc.strerror or str(exc) or type(exc).__name__) from None
        head = [f"{method} {path} HTTP/1.1", f"Host: {u.netloc.rsplit('@', 1)[-1]}"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        head.append("Connection: keep-alive")
        if u.username:
            token = base64.b64encode(f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
                                     .encode()).decode()
            head.append(f"Authorization: Basic {token}")
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
            await writer.drain()
            status_line = await reader.readline()
            if not status_line and reused and retry_idle:  # an idle keep-alive connection closed: once more, fresh
                writer.close()
                return await self.request(ep, method, target, body, headers)
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
            status = int(parts[1])
            hdrs: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                hdrs[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            data = await self._read_body(reader, method, status, hdrs)
        except BaseException:
            writer.close()
            raise
        keep = hdrs.get("connection", "").lower() != "close"
        if keep and len(ep._idle) < self.max_idle:
            ep._idle.append((reader, writer))
        else:
            writer.close()
        return HTTPResponse(status, hdrs, data)

    async def _read_body(self, reader: asyncio.StreamReader, method: str, status: int, hdrs: dict[str, str]) -> bytes:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)  # ValueError on junk
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return bytes(out)
                if len(out) + size > self.max_body:
                    raise ValueError(f"body over {self.max_body} bytes")
                out += await reader.readexactly(size)
                await reader.readexactly(2)  # CRLF after each chunk
        if "content-length" in hdrs:
            length = int(hdrs["content-length"])
            if length < 0 or length > self.max_body:
                raise ValueError(f"bad Content-Length {length}")
            return await reader.readexactly(length)
        if hdrs.get("connection", "").lower() == "close":
            out = bytearray()
            while chunk := await reader.read(65536):
                out += chunk
                if len(out) > self.max_body:
                    raise ValueError(f"body over {self.max_body} bytes")
            return bytes(out)
        raise ValueError("response without Content-Length, chunked encoding or Connection: close")

    async def close(self, endpoints: list[Endpoint]) -> None:
        for ep in endpoints:
            for _, w in ep._idle:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            ep._idle.clear()
