"""The Citrex REST client: the paths and methods the official client uses (citrex-sdk 1.2.2 lib/index.js
`#fetchFromAPI`: `${apiUrl}/${path}`, a JSON body for POST/DELETE), over the shared keep-alive transport with
endpoint failover and a breaker per endpoint (flashmm/venues/transport.py, as the Sei connector uses).

What an answer means:
* 2xx, or 4xx with a JSON body: the venue's answer (an `{"error": ...}` object is the caller's business);
* 429: :class:`RateLimited` with the wait the venue asked for (`Retry-After`, seconds) or None; the endpoint
  is not blamed (another endpoint of the same API limits the same account);
* 5xx, a timeout, a reset, an answer that is not JSON: the endpoint failed (counted against its breaker).
  A read (GET) or a cancel (DELETE: repeating it cannot do harm) is then tried on the next endpoint; an order
  (POST) is not, once its bytes may have reached a server: :class:`OutcomeUnknown`, and the venue looks the
  order up by its nonce instead of sending it twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from flashmm.venues.transport import ConnectError, EndpointPool, HTTPConnections, TransportError, redact_url

__all__ = ["CitrexREST", "OutcomeUnknown", "RateLimited", "TransportError"]

# The official client calls fetch(url, {body: JSON.stringify(...), method}) with no headers (lib/index.js
# `#fetchFromAPI`), so node sends a string body as text/plain;charset=UTF-8 and accepts */*: the same here, as
# that is what the live API is known to accept (tests/test_citrex_sdk_crosscheck.py compares them on the wire).
_JSON = {"Content-Type": "text/plain;charset=UTF-8", "Accept": "*/*"}
_ACCEPT = {"Accept": "*/*"}


class RateLimited(Exception):
    """HTTP 429: wait `retry_after_s` (None when the venue did not say) before the next request."""

    def __init__(self, path: str, retry_after_s: float | None) -> None:
        super().__init__(f"{path}: rate limited (HTTP 429" + (f", retry after {retry_after_s:g} s)" if retry_after_s
                                                              is not None else ")"))
        self.retry_after_s = retry_after_s


class OutcomeUnknown(TransportError):
    """A POST whose request may have reached the venue but whose answer did not come back."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        s = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return s if 0 <= s <= 3600 else None


class CitrexREST:
    def __init__(self, pool: EndpointPool, timeout_s: float = 2.0, max_idle_per_endpoint: int = 8) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.http = HTTPConnections(max_idle_per_endpoint)
        self.calls = 0
        self.transport_errors = 0
        self.rate_limited = 0
        self.latency_ns_last = 0

    async def request(self, method: str, path: str, query: str = "", body: bytes | None = None) -> tuple[int, Any]:
        """(HTTP status, parsed JSON) of `method /path?query`; raises RateLimited, TransportError or
        OutcomeUnknown (see the module docstring)."""
        target = "/" + path + (f"?{query}" if query else "")
        retry_elsewhere = method in ("GET", "DELETE")
        last = "no endpoint tried"
        for ep in self.pool.candidates():
            ep.calls += 1
            self.calls += 1
            t0 = time.perf_counter_ns()
            sent = False
            try:
                resp = await asyncio.wait_for(self.http.request(ep, method, target, body, _JSON if body is not None
                                                                else _ACCEPT, retry_idle=retry_elsewhere),
                                              self.timeout_s)
                sent = True
                if resp.status == 429:
                    self.rate_limited += 1
                    raise RateLimited(path, _retry_after(resp.headers.get("retry-after")))
                if resp.status >= 500:
                    raise ValueError(f"HTTP {resp.status}")
                doc = orjson.loads(resp.body) if resp.body else None
            except RateLimited:
                raise
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, orjson.JSONDecodeError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.transport_errors += 1
                self.pool.fail(ep, last)
                if not retry_elsewhere and (sent or not isinstance(exc, ConnectError)):
                    raise OutcomeUnknown(f"{method} {path} via {redact_url(ep.url)}: {last}") from None
                continue
            self.pool.ok(ep)
            self.latency_ns_last = time.perf_counter_ns() - t0
            return resp.status, doc
        raise TransportError(f"{method} {path}: no endpoint answered ({last})")

    async def close(self) -> None:
        await self.http.close(self.pool.endpoints)
