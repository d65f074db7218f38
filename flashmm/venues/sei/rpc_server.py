"""CometBFT JSON-RPC 2.0 transport of the Sei node double: HTTP ``POST /`` and WebSocket ``/websocket``.

Only the transport lives here (envelopes, error codes, method registry, ``subscribe`` with the CometBFT
event-query language, liveness pings, fault injection). The x/dex logic plugs in later through
:meth:`SeiRPCServer.register` (``abci_query``, ``broadcast_tx_sync``, ``tx`` ...) and :meth:`SeiRPCServer.publish`.

Design: one listening socket on 127.0.0.1, as a real node serves both on its RPC port.
``websockets`` cannot serve plain HTTP ``POST`` (its request parser accepts ``GET`` only), so the
connection handler is ``asyncio.start_server``: it reads the HTTP/1.1 request head itself, answers
``POST /`` (JSON-RPC, keep-alive), ``GET /<method>?arg=..`` (CometBFT URI style) and, for a
``GET /websocket`` upgrade, feeds the same bytes to websockets' sans-I/O ``ServerProtocol`` which does
the handshake and the framing on the same connection. Pings and the silence timeout are driven here,
so their periods are plain constructor arguments.

Shapes follow /work/shared/SEI.md ("CometBFT JSON-RPC as Sei serves it"):

* success ``{"jsonrpc":"2.0","id":N,"result":...}``; error
  ``{"jsonrpc":"2.0","id":N,"error":{"code":C,"message":M,"data":D}}``. A handler error becomes
  ``-32603 "Internal error"`` with the error text in ``data`` (CometBFT does the same); handlers may raise
  :class:`RPCError` for another code. A parse error has no id to echo, so its response carries no ``id``
  (HTTP status 500, as CometBFT answers an unreadable body; every other answer is HTTP 200).
  A request without an ``id`` is a notification and gets no response. URI (GET) calls answer with id -1.
* ``subscribe`` (WebSocket only; over HTTP it is "Method not found"): ack ``result: {}`` to the request id,
  then every matching event with that same id and
  ``result = {"query": q, "data": {"type": ..., "value": ...}, "events": {key: [values]}}``.
* the server pings every ``ping_interval`` s (27) and drops (TCP abort) a client from which nothing,
  pong included, arrived for ``read_timeout`` s (30).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Self

import orjson
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Query",
    "QueryError",
    "RPCError",
    "SeiRPCServer",
    "format_block_time",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_MESSAGES = {
    PARSE_ERROR: "Parse error. Invalid JSON",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

Handler = Callable[[Any], Awaitable[Any]]
_NO_ID = object()  # marker: the request had no "id" member (a notification)


class RPCError(Exception):
    """Raise from a handler to answer with a specific JSON-RPC error code."""

    def __init__(self, code: int, data: str = "", message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else _MESSAGES.get(code, "Server error")
        self.data = data
        super().__init__(f"{code} {self.message}: {data}")


def _error(id_: Any, code: int, data: str = "", message: str | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"jsonrpc": "2.0"}
    if id_ is not _NO_ID:
        resp["id"] = id_
    resp["error"] = {"code": code, "message": message or _MESSAGES.get(code, "Server error"), "data": data}
    return resp


def format_block_time(t: _dt.datetime | float | str | None = None) -> str:
    """RFC 3339 UTC with nanoseconds, as CometBFT writes block times. ``int`` = ns since epoch."""
    if isinstance(t, str):
        return t
    if t is None:
        ns = time.time_ns()
    elif isinstance(t, int):
        ns = t
    elif isinstance(t, float):
        ns = int(t * 1e9)
    else:
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.UTC)
        delta = t - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    sec, frac = divmod(ns, 1_000_000_000)
    base = _dt.datetime.fromtimestamp(sec, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


# --------------------------------------------------------------------------------------------------
# Event query language: cond AND cond ...; ops = < <= > >= CONTAINS EXISTS; 'string' | number | TIME | DATE
# --------------------------------------------------------------------------------------------------


class QueryError(ValueError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'[^']*')
    | (?P<time>TIME\s+\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))
    | (?P<date>DATE\s+\d{4}-\d{2}-\d{2})
    | (?P<op><=|>=|<|>|=)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "CONTAINS", "EXISTS"}
_CMP_OPS = {"=", "<", "<=", ">", ">="}


def _parse_time(s: str) -> _dt.datetime | None:
    s = s.strip()
    try:
        if "T" not in s:
            return _dt.datetime.fromisoformat(s).replace(tzinfo=_dt.UTC)
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        # fromisoformat takes at most 6 fraction digits: trim nanoseconds
        m = re.match(r"^(.*?\.\d{6})\d+(.*)$", s)
        if m:
            s = m.group(1) + m.group(2)
        t = _dt.datetime.fromisoformat(s)
        return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Cond:
    key: str
    op: str  # = < <= > >= CONTAINS EXISTS
    kind: str = ""  # str | num | time | date ("" for EXISTS)
    value: Any = None
    text: str = ""  # the operand as written

    def __str__(self) -> str:
        if self.op == "EXISTS":
            return f"{self.key} EXISTS"
        return f"{self.key} {self.op} {self.text}"

    def matches(self, events: dict[str, list[str]]) -> bool:
        values = events.get(self.key)
        if values is None:
            return False
        if self.op == "EXISTS":
            return True
        return any(self._match_one(v) for v in values)

    def _match_one(self, v: str) -> bool:
        if self.op == "CONTAINS":
            return self.value in v
        if self.kind == "str":
            return v == self.value  # only "=" is allowed with a string operand
        if self.kind == "num":
            try:
                x = Decimal(v.strip())
            except (InvalidOperation, ValueError):
                return False
            if not x.is_finite():
                return False
        else:
            x = _parse_time(v)
            if x is None:
                return False
            if self.kind == "date":
                x = x.replace(hour=0, minute=0, second=0, microsecond=0)
        y = self.value
        return {
            "=": x == y,
            "<": x < y,
            "<=": x <= y,
            ">": x > y,
            ">=": x >= y,
        }[self.op]


class Query:
    """A parsed CometBFT event query; ``Query(s).matches(events)`` against a flat ``key -> [values]`` map."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.conds: tuple[_Cond, ...] = tuple(self._parse(text))

    def __str__(self) -> str:  # normalized form: the subscription key
        return " AND ".join(str(c) for c in self.conds)

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def matches(self, events: dict[str, list[str]]) -> bool:
        return all(c.matches(events) for c in self.conds)

    @staticmethod
    def _tokens(text: str) -> list[tuple[str, str]]:
        toks: list[tuple[str, str]] = []
        pos = 0
        n = len(text)
        while pos < n:
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise QueryError(f"unexpected character at offset {pos}: {text[pos : pos + 10]!r}")
            kind = m.lastgroup or ""
            tok = m.group(kind)
            if kind == "word" and tok in _KEYWORDS:
                kind = tok
            toks.append((kind, tok))
            pos = m.end()
        return toks

    @classmethod
    def _parse(cls, text: str) -> list[_Cond]:
        toks = cls._tokens(text)
        if not toks:
            raise QueryError("empty query")
        conds: list[_Cond] = []
        i = 0

        def need(j: int, what: str) -> tuple[str, str]:
            if j >= len(toks):
                raise QueryError(f"unexpected end of query, expected {what}")
            return toks[j]

        while True:
            kind, key = need(i, "a key")
            if kind != "word":
                raise QueryError(f"expected a key, got {key!r}")
            kind, op = need(i + 1, "an operator")
            if kind == "EXISTS":
                conds.append(_Cond(key, "EXISTS"))
                i += 2
            elif kind == "CONTAINS":
                vkind, v = need(i + 2, "a 'string'")
                if vkind != "str":
                    raise QueryError(f"CONTAINS needs a 'string' operand, got {v!r}")
                conds.append(_Cond(key, "CONTAINS", "str", v[1:-1], v))
                i += 3
            elif kind == "op":
                vkind, v = need(i + 2, "a value")
                if vkind == "str":
                    if op != "=":
                        raise QueryError(f"operator {op} needs a number, time or date, got {v!r}")
                    conds.append(_Cond(key, op, "str", v[1:-1], v))
                elif vkind == "num":
                    conds.append(_Cond(key, op, "num", Decimal(v), v))
                elif vkind in ("time", "date"):
                    t = _parse_time(v.split(None, 1)[1])
                    if t is None:
                        raise QueryError(f"bad {vkind.upper()} literal {v!r}")
                    conds.append(_Cond(key, op, vkind, t, v))
                else:
                    raise QueryError(f"expected a value after {op}, got {v!r}")
                i += 3
            else:
                raise QueryError(f"expected an operator after {key!r}, got {op!r}")
            if i == len(toks):
                return conds
            kind, tok = toks[i]
            if kind != "AND":
                raise QueryError(f"expected AND, got {tok!r}")
            i += 1


# --------------------------------------------------------------------------------------------------
# WebSocket client state
# --------------------------------------------------------------------------------------------------


@dataclass
class _Subscription:
    id: Any
    query: Query
    text: str  # as the client wrote it; echoed in each event's result.query


@dataclass
class _WSClient:
    proto: ServerProtocol
    writer: asyncio.StreamWriter
    addr: str
    last_recv: float
    subs: dict[str, _Subscription] = field(default_factory=dict)  # normalized query -> subscription
    closed: bool = False

    def flush(self) -> None:
        for data in self.proto.data_to_send():
            if self.closed:
                return
            if data:
                self.writer.write(data)
            else:  # SEND_EOF: closing handshake done on our side; close TCP after the close frame is out
                self.closed = True
                self.writer.close()

    def send_json(self, obj: Any) -> None:
        if self.closed or self.proto.state is not State.OPEN:
            return
        self.proto.send_text(orjson.dumps(obj))
        self.flush()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_WS_ONLY = ("subscribe", "unsubscribe", "unsubscribe_all")


class SeiRPCServer:
    """CometBFT-style JSON-RPC + WebSocket server on 127.0.0.1 (``port=0`` picks a free port)."""

    def __init__(
        self,
        chain_id: str = "atlantic-2",
        *,
        port: int = 0,
        ping_interval: float = 27.0,
        read_timeout: float = 30.0,
        max_subscriptions_per_client: int = 5,
        max_subscription_clients: int = 100,
        max_query_length: int = 512,
        max_body_bytes: int = 1_000_000,
        max_write_buffer: int = 16 * 1024 * 1024,
        moniker: str = "flashmm-node-double",
    ) -> None:
        self.host = "127.0.0.1"
        self.chain_id = chain_id
        self._port_req = port
        self.ping_interval = ping_interval
        self.read_timeout = read_timeout
        self.max_subscriptions_per_client = max_subscriptions_per_client
        self.max_subscription_clients = max_subscription_clients
        self.max_query_length = max_query_length
        self.max_body_bytes = max_body_bytes
        self.max_write_buffer = max_write_buffer
        self.moniker = moniker
        self.node_id = os.urandom(20).hex()
        self.latest_block_height = 1
        self.latest_block_time = format_block_time()
        self.latest_block_hash = ""
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.base_events.Server | None = None
        self._conns: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._clients: list[_WSClient] = []
        self._paused = False
        self._buffer_while_paused = False
        self._buffered: list[tuple[dict[str, list[str]], dict[str, Any]]] = []
        self.dropped_while_paused = 0
        self.register("status", self._status)
        self.register("health", self._health)

    # ---- public API ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/websocket"

    @property
    def clients(self) -> int:
        """Open WebSocket connections."""
        return len(self._clients)

    def register(self, method: str, handler: Handler) -> None:
        """``async handler(params) -> result``; params is the request's object (``{}`` when absent) or array.

        Raise :class:`RPCError` for a specific code; any other exception answers -32603 with its text.
        Registering an existing name (``status`` included) replaces it.
        """
        if method in _WS_ONLY:
            raise ValueError(f"{method} is built in")
        self._handlers[method] = handler

    def set_latest_block(self, height: int, block_time: Any = None, block_hash: str = "") -> None:
        """What ``status`` reports; ``block_time``: datetime, ns int, epoch float or RFC 3339 string."""
        self.latest_block_height = int(height)
        self.latest_block_time = format_block_time(block_time)
        self.latest_block_hash = block_hash

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self._port_req, limit=64 * 1024, reuse_address=True
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for client in list(self._clients):
            client.abort()
        for writer in list(self._conns.values()):
            writer.transport.abort()
        tasks = list(self._conns)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        self._clients.clear()
        self._conns.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def publish(self, events: dict[str, list[str]], data: dict[str, Any]) -> int:
        """Push an event to every matching subscription of every client; returns how many got it.

        ``events`` is the flat CometBFT map (``{"tm.event": ["Tx"], "tx.hash": [..], ...}``); when
        ``tm.event`` is missing it is derived from ``data["type"]`` ("tendermint/event/Tx" -> "Tx").
        Must be called on the server's event loop.
        """
        ev = {str(k): [str(x) for x in v] for k, v in events.items()}
        if "tm.event" not in ev:
            typ = str(data.get("type", ""))
            if typ.startswith("tendermint/event/"):
                ev["tm.event"] = [typ.rsplit("/", 1)[1]]
        if self._paused:
            if self._buffer_while_paused:
                self._buffered.append((ev, data))
            else:
                self.dropped_while_paused += 1
            return 0
        return self._deliver(ev, data)

    def pause_pushes(self, paused: bool, *, buffer: bool = False) -> None:
        """Fault injection: while paused, published events are not pushed (pings and RPC go on).

        ``buffer=False`` loses them (a stalled feed: the client must notice the height gap);
        ``buffer=True`` holds them and pushes them, in order, on resume (a late feed).
        """
        if paused:
            self._paused = True
            self._buffer_while_paused = buffer
            return
        self._paused = False
        held, self._buffered = self._buffered, []
        for ev, data in held:
            self._deliver(ev, data)

    def drop_all_clients(self) -> int:
        """Fault injection: abort every WebSocket's TCP connection (no close frame). Returns how many."""
        n = 0
        for client in list(self._clients):
            client.abort()
            n += 1
        return n

    # ---- built-in methods ------------------------------------------------------------------------

    async def _status(self, params: Any) -> dict[str, Any]:
        return {
            "node_info": {
                "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
                "id": self.node_id,
                "listen_addr": "tcp://127.0.0.1:26656",
                "network": self.chain_id,
                "version": "0.37.2",
                "channels": "40202122233038606100",
                "moniker": self.moniker,
                "other": {"tx_index": "on", "rpc_address": f"tcp://{self.host}:{self.port}"},
            },
            "sync_info": {
                "latest_block_hash": self.latest_block_hash,
                "latest_app_hash": "",
                "latest_block_height": str(self.latest_block_height),
                "latest_block_time": self.latest_block_time,
                "earliest_block_hash": "",
                "earliest_app_hash": "",
                "earliest_block_height": "1",
                "earliest_block_time": self.latest_block_time,
                "catching_up": False,
            },
            "validator_info": {
                "address": self.node_id.upper(),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": ""},
                "voting_power": "10",
            },
        }

    async def _health(self, params: Any) -> dict[str, Any]:
        return {}

    # ---- dispatch --------------------------------------------------------------------------------

    async def _handle_payload(self, raw: bytes, client: _WSClient | None) -> tuple[Any, bool]:
        """Returns (response object or None, parse_failed)."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return _error(_NO_ID, PARSE_ERROR, f"error unmarshaling request: {e}"), True
        if isinstance(msg, list):
            if not msg:
                return _error(_NO_ID, INVALID_REQUEST, "empty batch"), False
            out = []
            for m in msg:
                r = await self._dispatch(m, client)
                if r is not None:
                    out.append(r)
            return (out or None), False
        return await self._dispatch(msg, client), False

    async def _dispatch(self, msg: Any, client: _WSClient | None) -> dict[str, Any] | None:
        if not isinstance(msg, dict):
            return _error(_NO_ID, INVALID_REQUEST, "request is not a JSON object")
        id_ = msg.get("id")
        if id_ is None:
            id_ = _NO_ID  # absent or null: a notification
        elif isinstance(id_, bool) or not isinstance(id_, (int, str)):
            return _error(_NO_ID, INVALID_REQUEST, "id must be a number or a string")
        if msg.get("jsonrpc") != "2.0":
            return _error(id_, INVALID_REQUEST, 'jsonrpc must be "2.0"')
        method = msg.get("method")
        if not isinstance(method, str) or not method:
            return _error(id_, INVALID_REQUEST, "method must be a non-empty string")
        if id_ is _NO_ID:  # a notification: CometBFT runs nothing and answers nothing
            return None
        params = msg.get("params")
        if params is None:
            params = {}
        if not isinstance(params, (dict, list)):
            return _error(id_, INVALID_PARAMS, "params must be an object or an array")
        try:
            if client is not None and method in _WS_ONLY:
                result = self._ws_method(client, id_, method, params)
            else:
                handler = self._handlers.get(method)
                if handler is None:
                    return _error(id_, METHOD_NOT_FOUND, f"method {method!r} not found")
                result = await handler(params)
        except RPCError as e:
            return _error(id_, e.code, e.data, e.message)
        except Exception as e:  # noqa: BLE001 - every handler failure is an RPC internal error
            return _error(id_, INTERNAL_ERROR, str(e) or type(e).__name__)
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    @staticmethod
    def _query_param(params: Any) -> str:
        q = params.get("query") if isinstance(params, dict) else (params[0] if params else None)
        if not isinstance(q, str):
            raise RPCError(
                INVALID_PARAMS, "error converting json params to arguments: query must be a string"
            )
        return q

    def _ws_method(self, client: _WSClient, id_: Any, method: str, params: Any) -> dict[str, Any]:
        if method == "unsubscribe_all":
            if not client.subs:
                raise RuntimeError("subscription not found")
            client.subs.clear()
            return {}
        text = self._query_param(params)
        if method == "subscribe":
            n_clients = sum(1 for c in self._clients if c.subs and c is not client)
            if not client.subs and n_clients >= self.max_subscription_clients:
                raise RuntimeError(f"max_subscription_clients {self.max_subscription_clients} reached")
            if len(client.subs) >= self.max_subscriptions_per_client:
                raise RuntimeError(
                    f"max_subscriptions_per_client {self.max_subscriptions_per_client} reached"
                )
            if len(text) > self.max_query_length:
                raise RuntimeError(
                    f"maximum query length exceeded: length {len(text)}, max_length {self.max_query_length}"
                )
        try:
            q = Query(text)
        except QueryError as e:
            raise RuntimeError(f"failed to parse query: {e}") from None
        key = str(q)
        if method == "subscribe":
            if key in client.subs:
                raise RuntimeError("already subscribed")
            client.subs[key] = _Subscription(id_, q, text)
            return {}
        # unsubscribe
        if client.subs.pop(key, None) is None:
            raise RuntimeError("subscription not found")
        return {}

    def _deliver(self, events: dict[str, list[str]], data: dict[str, Any]) -> int:
        n = 0
        for client in list(self._clients):
            if client.closed:
                continue
            for sub in list(client.subs.values()):
                if sub.query.matches(events):
                    client.send_json(
                        {
                            "jsonrpc": "2.0",
                            "id": sub.id,
                            "result": {"query": sub.text, "data": data, "events": events},
                        }
                    )
                    n += 1
            if client.writer.transport.get_write_buffer_size() > self.max_write_buffer:
                client.abort()  # a client that does not read is cut off, as CometBFT does
        return n

    # ---- connections -----------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            await self._serve_http(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed a keep-alive connection
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await self._respond(writer, 400, b"bad request line\n", "text/plain", close=True)
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            conn_hdr = headers.get("connection", "").lower()
            close = version == "HTTP/1.0" and "keep-alive" not in conn_hdr or "close" in conn_hdr
            path, _, query = target.partition("?")

            if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
                await self._serve_ws(head, reader, writer)
                return
            if method == "POST":
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._respond(writer, 411, b"Content-Length required\n", "text/plain", close=True)
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    length = -1
                if length < 0 or length > self.max_body_bytes:
                    await self._respond(writer, 413, b"request body too large\n", "text/plain", close=True)
                    return
                body = await reader.readexactly(length) if length else b""
                if path != "/":
                    await self._respond(writer, 404, b"404 page not found\n", "text/plain", close=close)
                else:
                    resp, parse_failed = await self._handle_payload(body, None)
                    payload = orjson.dumps(resp) if resp is not None else b""
                    await self._respond(writer, 500 if parse_failed else 200, payload, close=close)
            elif method == "GET" and path not in ("", "/") and "/" not in path[1:]:
                resp = await self._uri_call(path[1:], query)
                await self._respond(writer, 200, orjson.dumps(resp), close=close)
            elif method == "GET":
                listing = "\n".join(sorted(self._handlers) + list(_WS_ONLY)).encode() + b"\n"
                await self._respond(writer, 200, listing, "text/plain", close=close)
            else:
                await self._respond(writer, 405, b"method not allowed\n", "text/plain", close=True)
                return
            if close:
                return

    async def _uri_call(self, method: str, query: str) -> dict[str, Any]:
        """CometBFT URI style: ``GET /abci_query?path="/x"&data=0x..`` (quoted strings, bare numbers)."""
        params: dict[str, Any] = {}
        for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params[name] = value
        req = {"jsonrpc": "2.0", "id": -1, "method": method, "params": params}
        if method in _WS_ONLY:
            return _error(-1, METHOD_NOT_FOUND, f"method {method!r} not found")
        return await self._dispatch(req, None) or {}

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        *,
        close: bool = False,
    ) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            411: "Length Required",
            413: "Payload Too Large",
            500: "Internal Server Error",
        }[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    async def _serve_ws(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        proto = ServerProtocol(max_size=self.max_body_bytes)
        proto.receive_data(head)
        events = proto.events_received()
        request = events[0] if events and isinstance(events[0], Request) else None
        if request is None:
            for data in proto.data_to_send():
                if data:
                    writer.write(data)
            return
        if request.path.partition("?")[0] != "/websocket":
            response = proto.reject(404, "404 page not found\n")
        else:
            response = proto.accept(request)
        proto.send_response(response)
        loop = asyncio.get_running_loop()
        client = _WSClient(proto, writer, str(writer.get_extra_info("peername")), loop.time())
        client.flush()
        if response.status_code != 101 or proto.state is not State.OPEN:
            await writer.drain()
            return
        self._clients.append(client)
        keepalive = asyncio.create_task(self._keepalive(client))
        fragments: list[bytes] = []
        try:
            while not client.closed:
                data = await reader.read(65536)
                if not data:
                    proto.receive_eof()
                    client.flush()
                    return
                client.last_recv = loop.time()
                proto.receive_data(data)
                for ev in proto.events_received():
                    op = ev.opcode
                    if op in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                        if op is not Opcode.CONT:
                            fragments = []
                        fragments.append(ev.data)
                        if ev.fin:
                            raw, fragments = b"".join(fragments), []
                            resp, _ = await self._handle_payload(raw, client)
                            if resp is not None:
                                client.send_json(resp)
                            client.last_recv = loop.time()
                    # PING is answered by the protocol itself; PONG only refreshes last_recv
                client.flush()
                if proto.state is State.CLOSED or proto.close_expected():
                    client.flush()
                    await asyncio.sleep(0)
                    return
        finally:
            keepalive.cancel()
            client.subs.clear()
            with contextlib.suppress(ValueError):
                self._clients.remove(client)
            client.abort()

    async def _keepalive(self, client: _WSClient) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_interval
        while not client.closed:
            now = loop.time()
            wake = min(next_ping, client.last_recv + self.read_timeout)
            if wake > now:
                await asyncio.sleep(wake - now)
                now = loop.time()
            if now - client.last_recv >= self.read_timeout:
                client.abort()  # silent too long: drop it (the read loop then cleans up)
                return
            if now >= next_ping:
                if client.proto.state is State.OPEN:
                    client.proto.send_ping(os.urandom(4))
                    client.flush()
                next_ping = now + self.ping_interval
