"""The connector's CometBFT JSON-RPC client: HTTP ``POST /`` over keep-alive connections, several endpoints
with failover and a circuit breaker per endpoint (both shared with other venues: flashmm/venues/transport.py).

Why our own client: cosmpy speaks gRPC/REST only (SEI.md), and a JSON-RPC call is one small POST on the shared
keep-alive HTTP/1.1 transport; it adds no dependency. ``https://`` endpoints use TLS.

Failover: endpoints are tried in configured order, skipping those whose breaker is open (transport.py). A JSON-RPC
error is an answer, not a transport failure: it is raised to the caller.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from typing import Any

import orjson

from flashmm.venues.transport import Endpoint, EndpointPool, HTTPConnections, TransportError, redact_url

__all__ = ["ABCIError", "Endpoint", "EndpointPool", "RPCCallError", "RPCClient", "TransportError"]

_redact_url = redact_url  # the name the Sei connector and its tests use


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


class RPCClient:
    """JSON-RPC calls with failover across an :class:`EndpointPool`."""

    def __init__(self, pool: EndpointPool, timeout_s: float = 2.0, max_idle_per_endpoint: int = 4) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.http = HTTPConnections(max_idle_per_endpoint)
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
        await self.http.close(self.pool.endpoints)

    async def _post(self, ep: Endpoint, body: bytes) -> bytes:
        # the body is read whatever the HTTP status: CometBFT answers a parse error with 500 and a JSON-RPC error
        return (await self.http.request(ep, "POST", "", body, {"Content-Type": "application/json"})).body
