"""Hot state in Redis: the fills journal (a stream), position, open orders, the last book, breaker states.

Keys, all under `{namespace}:{account_key}:`
- `fills`     stream, one entry per fill: the FillRecord fields plus `fill_id`; append-only, in order;
- `fill_ids`  set of every journaled fill_id (what makes a second recording of a fill a no-op);
- `position`  hash: position_lots, cash_flow, fees_paid, spread_capture, volume_lots, fills, last_fill_id
              (derived from the journal, written by the same script as the stream entry), plus fees_other
              (fees not tied to a fill), peak_pnl and max_abs_position_lots (from `set_position`);
- `orders`    hash client_id -> JSON of the live order;
- `book`      JSON of the last top-of-book levels;
- `breakers`  hash name -> JSON of the breaker's view;
- `meta`      hash: run_id, started, next_client_id, account_key;
- `epoch`     hash: id, seq, since, run_id, reason: the journal's identity (below).

**The journal's identity.** A store claims the namespace at start with a new epoch id (its run id and a
count) and sequence 0. Every flush is one MULTI/EXEC whose first command checks that the epoch hash still
holds our id and our last sequence and advances it; every write script in that transaction checks the new
sequence before writing, so a flush into a journal that is not ours writes nothing. An idle store checks
the identity once a `flush_interval_s`. A journal that was wiped (FLUSHALL, keys deleted), restarted
without persistence, restored from an older copy, or taken over by another writer is therefore noticed at
the next flush or check: the store logs it, holds `journal_alert` (the engine's `state` breaker, until an
operator resumes), and re-journals from memory as a new epoch: the position hash as of its last confirmed
flush (`epoch_base_position_lots`/`epoch_base_fills` record that the stream restarts from there), the open
orders, book, breakers and meta it last had; whatever was queued then follows into the new epoch. A fills
stream found at that moment (another writer's) is kept under `fills:superseded:<epoch>`, never deleted.

The engine never waits on Redis. `record_fill`, `record_fee` and the `set_*` methods only touch memory: fills
and fees go to a FIFO queue, the rest replace a "latest" value. The `run()` task drains it: each flush is
one MULTI/EXEC holding up to `BATCH_MAX` queued fills and fees (the fills through a Lua script that, per fill,
checks the fill_id, updates the position hash, XADDs the entry and remembers the id, atomically, so position
and journal never disagree), and the latest orders/book/breakers/position/meta values when due (every
`flush_interval_s`). On a connection error (or writes Redis refuses) the store marks itself down (`healthy`,
`down_since`, `reason`), keeps every queued write, retries with exponential backoff up to
`retry_max_backoff_s`, and catches up when Redis is back; because a fill is recognised by its `fill_id` (and a
fee by its sequence), re-sending a flush whose outcome is unknown never counts anything twice. Fills are never
dropped: past `queue_max` queued writes `overflow` turns True so the engine can pause; it clears once the
queue is back under half of that.

`fill_id` is deterministic from the venue's identity of the fill: `{client_id}:{cumulative filled lots of
that order after this fill}`. Client ids must therefore never be reused across restarts: `load()` returns a
`next_client_id` above every id the journal has seen (the engine should also stay above the venue's).

`load()` reads everything back on start; `reconcile(recovered, venue_account)` lists the differences from
the venue's record (a pure function: the engine decides what to do about them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any
from urllib.parse import urlparse

import orjson
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from flashmm.config import RedisConfig
from flashmm.core.domain import AccountState, Fill, Instrument
from flashmm.core.state import FillRecord, Portfolio, fill_cash_and_edge
from flashmm.telemetry.logging import get_logger, register_secret

BATCH_MAX = 500  # fills and fees per MULTI/EXEC (bounds the writer's CPU slice on the engine's loop: ~4 ms)
_BACKOFF_START_S = 0.05
FILL_FIELDS = ("ts_ns", "client_id", "side", "price_ticks", "lots", "fee_quote", "is_maker", "mid_ticks")

# Every write script checks the journal's identity first: KEYS[#KEYS] is the epoch hash, the last two ARGV are
# our epoch id and the sequence the flush's guard (_GUARD_LUA) advanced it to.
_EPOCH_CHECK = """
local ek = KEYS[#KEYS]
local eid, eseq = redis.call('HGET', ek, 'id'), redis.call('HGET', ek, 'seq')
if eid ~= ARGV[#ARGV - 1] or eseq ~= ARGV[#ARGV] then
  return redis.error_reply('FLASHMM_EPOCH write refused: the journal is not ours')
end
"""

# The first command of every flush. KEYS: epoch hash. ARGV: our epoch id, our last sequence, 1 when the last
# flush's outcome is unknown (it may have advanced the sequence once), the new sequence.
_GUARD_LUA = """
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return redis.error_reply('FLASHMM_EPOCH gone') end
if id ~= ARGV[1] then return redis.error_reply('FLASHMM_EPOCH foreign ' .. id) end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local want = tonumber(ARGV[2])
if seq ~= want and not (ARGV[3] == '1' and seq == want + 1) then
  return redis.error_reply('FLASHMM_EPOCH seq ' .. tostring(seq) .. ' ' .. ARGV[2])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[4])
return 1
"""

# KEYS: fills stream, fill_ids set, position hash, epoch hash.
# ARGV[1]: JSON array of fills, each an array of strings: fill_id, d_position_lots, d_cash_flow, fee,
# d_spread_capture, lots, then the stream entry's field/value pairs (one argument: redis-py packs each argument
# in Python, which would cost more than Redis's work); then epoch id, sequence. Returns 1 (journaled) or 0
# (already there) per fill. The script is atomic; every check comes before the first write (a Lua error does
# not roll back).
_FILL_LUA = _EPOCH_CHECK + """
local fills = cjson.decode(ARGV[1])
for _, f in ipairs(fills) do
  for i = 2, 6 do
    local x = tonumber(f[i])
    if x == nil or x ~= x or x == math.huge or x == -math.huge then
      return redis.error_reply('ERR flashmm: non-finite value in fill ' .. tostring(f[1]))
    end
  end
end
local out = {}
for _, f in ipairs(fills) do
  local id = f[1]
  if redis.call('SISMEMBER', KEYS[2], id) == 1 then
    out[#out + 1] = 0
  else
    local fields = {}
    for i = 7, #f do fields[#fields + 1] = f[i] end
    redis.call('HINCRBY', KEYS[3], 'position_lots', f[2])
    redis.call('HINCRBYFLOAT', KEYS[3], 'cash_flow', f[3])
    redis.call('HINCRBYFLOAT', KEYS[3], 'fees_paid', f[4])
    redis.call('HINCRBYFLOAT', KEYS[3], 'spread_capture', f[5])
    redis.call('HINCRBY', KEYS[3], 'volume_lots', f[6])
    redis.call('HINCRBY', KEYS[3], 'fills', 1)
    redis.call('HSET', KEYS[3], 'last_fill_id', id)
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('SADD', KEYS[2], id)
    out[#out + 1] = 1
  end
end
return out
"""

# KEYS: position hash, epoch hash. ARGV: run_id, seq, amount, epoch id, sequence. A fee op carries (run_id,
# seq), increasing within a run, so a re-sent fee (a flush whose outcome was unknown) is applied once.
_FEE_LUA = _EPOCH_CHECK + """
local x = tonumber(ARGV[3])
if x == nil or x ~= x or x == math.huge or x == -math.huge then
  return redis.error_reply('ERR flashmm: non-finite fee')
end
if redis.call('HGET', KEYS[1], 'fee_run') == ARGV[1] then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'fee_seq'))
  if seq ~= nil and seq >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HINCRBYFLOAT', KEYS[1], 'fees_paid', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'fees_other', ARGV[3])
redis.call('HSET', KEYS[1], 'fee_run', ARGV[1], 'fee_seq', ARGV[2])
return 1
"""

# The latest values. KEYS: meta, orders, book, breakers, position, epoch. ARGV: JSON {meta: {..}, orders: {..},
# book: "..", breakers: {..}, position: {..}} (each optional; orders replaces the hash), epoch id, sequence.
_LATEST_LUA = _EPOCH_CHECK + """
local v = cjson.decode(ARGV[1])
local function hset(key, t)
  local args = {}
  for k, x in pairs(t) do args[#args + 1] = k; args[#args + 1] = x end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
if v.meta then hset(KEYS[1], v.meta) end
if v.orders then redis.call('DEL', KEYS[2]); hset(KEYS[2], v.orders) end
if v.book then redis.call('SET', KEYS[3], v.book) end
if v.breakers then hset(KEYS[4], v.breakers) end
if v.position then hset(KEYS[5], v.position) end
return 1
"""

# A store's claim at start: its epoch replaces whatever identity the namespace had (the instance lease says
# it is the one writer); the journal itself continues. KEYS: epoch, position. ARGV: id, since, run_id.
# Returns the position hash (the store's image of what is journaled).
_CLAIM_LUA = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'seq', '0', 'since', ARGV[2], 'run_id', ARGV[3], 'reason', 'start')
return redis.call('HGETALL', KEYS[2])
"""

# Re-journal from memory as a new epoch. KEYS: fills, fill_ids, position, orders, book, breakers, meta, epoch.
# ARGV: id, since, run_id, reason, JSON {position: {..}, orders: {..}, book: "..", breakers: {..}, meta: {..}}.
# A fills stream still there (another writer's) is kept under fills:superseded:<id>. Returns the position hash.
_REJOURNAL_LUA = """
local v = cjson.decode(ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[1] .. ':superseded:' .. ARGV[1]) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[8])
local function hset(key, t)
  local args = {}
  for k, x in pairs(t) do args[#args + 1] = k; args[#args + 1] = x end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
hset(KEYS[3], v.position)
if v.orders then hset(KEYS[4], v.orders) end
if v.book then redis.call('SET', KEYS[5], v.book) end
if v.breakers then hset(KEYS[6], v.breakers) end
if v.meta then hset(KEYS[7], v.meta) end
redis.call('HSET', KEYS[8], 'id', ARGV[1], 'seq', '0', 'since', ARGV[2], 'run_id', ARGV[3], 'reason', ARGV[4])
return redis.call('HGETALL', KEYS[3])
"""

_FILL, _FEE = 0, 1
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


class WritesRefused(RedisError):
    """Redis answered but refused part of a flush (out of memory, read-only replica, a non-finite value):
    nothing is dropped; the flush is retried like after a connection error."""


class _ScriptsGone(RedisError):
    """NOSCRIPT: the server's script cache was flushed. Reload and retry at once."""


class JournalLost(RedisError):
    """The journal's identity is not ours any more (wiped, restarted without persistence, an older copy, another
    writer): nothing of the flush was written; the store re-journals from memory as a new epoch."""


def fill_id(client_id: int, cum_filled_lots: int) -> str:
    """The venue's identity of a fill: the order and how much of it had filled after this fill."""
    return f"{client_id}:{cum_filled_lots}"


def unknown_order_fill_id(ev: Fill) -> str:
    """For a fill of an order the order manager does not know (no cumulative count): still deterministic
    from the venue's event, so a re-delivered event is recognised."""
    return f"{ev.client_id}:t{ev.ts_ns}:{ev.lots}"


def _f(x: float) -> str:
    return repr(float(x))


def _order_fields(o: Any) -> dict[str, Any]:
    """ManagedOrder or OrderView -> plain dict (taken at call time: a ManagedOrder keeps changing)."""
    d: dict[str, Any] = {
        "client_id": int(o.client_id), "side": int(o.side), "price_ticks": int(o.price_ticks), "lots": int(o.lots),
        "filled_lots": int(o.filled_lots), "state": str(o.state), "level": int(o.level),
        "cancel_requested": bool(o.cancel_requested),
    }
    for name in ("order_type", "created_ns", "venue_order_id"):
        v = getattr(o, name, None)
        if v is not None:
            d[name] = v.value if hasattr(v, "value") else v
    return d


@dataclass(slots=True)
class RecoveredState:
    """What Redis held for this account at start."""

    position_lots: int = 0
    cash_flow: float = 0.0
    fees_paid: float = 0.0  # fill fees + fees_other
    fees_other: float = 0.0
    spread_capture: float = 0.0
    volume_lots: int = 0
    n_fills: int = 0  # the position hash's count
    last_fill_id: str = ""
    peak_pnl: float = 0.0
    max_abs_position_lots: int = 0
    fills: list[FillRecord] = field(default_factory=list)  # the journal, in order
    fill_ids: list[str] = field(default_factory=list)  # fill_ids[i] is the id of fills[i]
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)  # client_id -> the order as last written
    book: dict[str, Any] | None = None
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_client_id: int = 1
    run_id: str = ""
    started: float = 0.0
    # a journal re-written from memory (a lost epoch) restarts its stream from this position and fill count
    base_position_lots: int = 0
    base_fills: int = 0
    epoch: str = ""

    def apply_to(self, portfolio: Portfolio) -> None:
        """Restore an in-memory portfolio from the journal-derived position."""
        portfolio.position_lots = self.position_lots
        portfolio.cash_flow = self.cash_flow
        portfolio.fees_paid = self.fees_paid
        portfolio.spread_capture = self.spread_capture
        portfolio.volume_lots = self.volume_lots
        portfolio.fills.clear()
        portfolio.fills.extend(self.fills)  # keeps the portfolio's bound
        portfolio.rebuild_cost_basis(self.fills)  # the average entry price, for realised vs unrealised PnL
        portfolio.peak_pnl = self.peak_pnl
        portfolio.max_abs_position_lots = max(self.max_abs_position_lots, abs(self.position_lots))


def reconcile(recovered: RecoveredState, venue: AccountState) -> list[str]:
    """The problems found between the recovered state and the venue's record (empty: they agree), plus the
    journal's own consistency. Pure: the engine decides what to do."""
    problems: list[str] = []
    journal_pos = recovered.base_position_lots + sum(f.side * f.lots for f in recovered.fills)
    if journal_pos != recovered.position_lots:
        problems.append(f"journal: fills sum to position {journal_pos}, position hash says {recovered.position_lots}")
    if recovered.base_fills + len(recovered.fills) != recovered.n_fills:
        base = f" (+{recovered.base_fills} before its epoch)" if recovered.base_fills else ""
        problems.append(f"journal: {len(recovered.fills)} fills in the stream{base}, position hash counts "
                        f"{recovered.n_fills}")
    if len(set(recovered.fill_ids)) != len(recovered.fill_ids):
        problems.append("journal: duplicate fill ids")
    if recovered.position_lots != venue.position_lots:
        problems.append(f"position {recovered.position_lots} in the journal, {venue.position_lots} at venue")
    for cid in sorted(set(venue.open_orders) - set(recovered.orders)):
        problems.append(f"order {cid} open at venue, unknown to the journal")
    for cid in sorted(set(recovered.orders) - set(venue.open_orders)):
        problems.append(f"order {cid} in the journal, not open at venue")
    for cid in sorted(set(recovered.orders) & set(venue.open_orders)):
        o, v = recovered.orders[cid], venue.open_orders[cid]
        remaining = int(o.get("lots", 0)) - int(o.get("filled_lots", 0))
        if remaining != v.remaining_lots or int(o.get("side", int(v.side))) != int(v.side) \
                or int(o.get("price_ticks", v.price_ticks)) != v.price_ticks:
            problems.append(f"order {cid}: {remaining} lots left at {o.get('price_ticks')} in the journal, "
                            f"{v.remaining_lots} at {v.price_ticks} at venue")
    return problems


class RedisStateStore:
    """See the module docstring. Construct, `await load()`, start `run()` as a task, `await close()` at exit."""

    def __init__(self, cfg: RedisConfig, account_key: str, instrument: Instrument | None = None, *,
                 socket_timeout_s: float = 2.0, connect_timeout_s: float = 1.0) -> None:
        self.cfg = cfg
        self.account_key = account_key
        # cash and spread capture in the settlement currency when the instrument is given (tick x lot units otherwise)
        self._instrument = instrument or Instrument("", "", "", Decimal(1), Decimal(1))
        p = f"{cfg.namespace}:{account_key}:"
        self.k_fills, self.k_ids, self.k_pos = p + "fills", p + "fill_ids", p + "position"
        self.k_orders, self.k_book, self.k_breakers, self.k_meta = p + "orders", p + "book", p + "breakers", p + "meta"
        self.k_epoch = p + "epoch"
        register_secret(urlparse(cfg.url).password)
        self._redis = aioredis.from_url(cfg.url, decode_responses=True, socket_timeout=socket_timeout_s,
                                        socket_connect_timeout=connect_timeout_s, retry=Retry(NoBackoff(), 0),
                                        health_check_interval=0)
        self._sha: dict[str, str] = {}  # script shas, loaded on each (re)connection: a restarted server has none
        self.log = get_logger("state")
        self.run_id = uuid.uuid4().hex[:12]
        # health, for the state breaker and the snapshot
        self.healthy = True
        self.down_since: float | None = None  # wall time (time.time()) of the first failure of this outage
        self.reason = ""
        self.overflow = False
        self.on_fills_durable: Callable[[list[str]], None] | None = None  # fill_ids Redis has confirmed
        self.counts = {"fills_written": 0, "fills_duplicate": 0, "fees_written": 0, "flushes": 0, "errors": 0,
                       "journal_losses": 0}
        # the journal's identity (module docstring): ours while `epoch` is set; `_image` is the position hash as
        # of our last confirmed flush, what a lost journal is re-written from
        self.epoch: str | None = None
        self._epoch_n = 0
        self._seq = 0
        self._seq_uncertain = False  # the last flush's outcome is unknown: it may have advanced the sequence
        self._image: dict[str, str] = {}
        self._lost = ""  # why the journal is not ours (a re-journal is due)
        self.journal_alert = ""  # held for the operator (the state breaker) until acknowledge()
        self._now: dict[str, Any] = {}  # the latest orders/book/breakers/meta values set, written or not
        # the instance lease (ops/lease.InstanceGuard, set by the daemon): while it is lost, a journal taken over
        # is the new holder's, and this store must not write it again from its memory
        self.owner: Any = None
        # the queue (fills, fees: FIFO, never dropped) and the latest values (replaced)
        self._q: deque[tuple] = deque()
        self._sealed = 0  # items at the head of _q sent at least once (a fee there may have been applied: no merging)
        self._fee_seq = 0
        self._latest: dict[str, Any] = {"meta": {"run_id": self.run_id, "started": repr(time.time()),
                                                 "account_key": account_key}}
        self._last_snapshot = 0.0
        self._wake = asyncio.Event()
        self._closing = False
        self._running = False
        self._task: asyncio.Task | None = None
        self._last_ok = time.monotonic()

    def __repr__(self) -> str:  # never the URL (it may carry a password)
        return f"RedisStateStore(namespace={self.cfg.namespace!r}, account_key={self.account_key!r})"

    # ================================================================ engine side (memory only) ======
    def record_fill(self, rec: FillRecord, fill_id: str) -> None:
        self._q.append((_FILL, fill_id, rec))
        if len(self._q) >= self.cfg.queue_max:
            self.overflow = True
        if not self._wake.is_set():
            self._wake.set()

    def record_fee(self, amount_quote: float) -> None:
        """A fee not tied to a fill (gas, per-order charges). Consecutive fees are merged while queued."""
        q = self._q
        if len(q) > self._sealed and q[-1][0] == _FEE:
            kind, seq, amount = q[-1]
            q[-1] = (kind, seq, amount + amount_quote)
            return
        self._fee_seq += 1
        q.append((_FEE, self._fee_seq, amount_quote))
        if len(q) >= self.cfg.queue_max:
            self.overflow = True

    def set_orders(self, orders: Iterable[Any]) -> None:
        """The live orders (ManagedOrder or OrderView): replaces the `orders` hash on the next snapshot."""
        self._latest["orders"] = self._now["orders"] = {
            str(o.client_id): orjson.dumps(_order_fields(o)).decode() for o in orders}

    def set_book(self, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]], ts_ns: int = 0) -> None:
        """Top-of-book levels, best first: [(price_ticks, lots), ...]."""
        self._latest["book"] = self._now["book"] = (ts_ns, tuple(bids), tuple(asks))

    def set_breakers(self, views: Iterable[Any]) -> None:
        """Breaker views (risk.BreakerView)."""
        self._latest["breakers"] = self._now["breakers"] = tuple(views)

    def set_position(self, portfolio: Portfolio) -> None:
        """What the journal cannot derive: the PnL peak (drawdown breaker) and the largest position seen."""
        self._latest["position"] = {"peak_pnl": _f(portfolio.peak_pnl),
                                    "max_abs_position_lots": str(int(portfolio.max_abs_position_lots))}

    def set_next_client_id(self, n: int) -> None:
        meta = self._latest.setdefault("meta", {})
        meta["next_client_id"] = str(int(n))

    @property
    def pending(self) -> int:
        """Writes not yet confirmed by Redis: queued fills/fees plus latest values not yet written."""
        return len(self._q) + len(self._latest)

    def status(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "reason": self.reason, "down_since": self.down_since,
                "queued": len(self._q), "overflow": self.overflow, "epoch": self.epoch, "seq": self._seq,
                "journal_alert": self.journal_alert, **self.counts}

    def acknowledge(self) -> None:
        """An operator saw the lost journal (the engine's resume): the state breaker may clear."""
        if self.journal_alert:
            self.log.info("journal_loss_acknowledged", alert=self.journal_alert)
        self.journal_alert = ""

    # ================================================================ the writer task ================
    async def run(self) -> None:
        """Drain the queue into Redis until close(); never raises on Redis errors. One writer at a time."""
        if self._running:
            return
        self._running = True
        self._task = asyncio.current_task()
        backoff = _BACKOFF_START_S
        interval = self.cfg.flush_interval_s
        reloaded = False
        try:
            while True:
                now = time.monotonic()
                snapshot_due = bool(self._latest) and (self._closing or now - self._last_snapshot >= interval)
                if self._closing and not self._q and not self._latest:
                    break
                due = self.epoch is None or bool(self._lost)
                if due or self._q or snapshot_due or (not self.healthy) or now - self._last_ok >= interval:
                    try:
                        if self.epoch is None:
                            await self._claim()
                        elif self._lost:
                            if self.owner is not None and self.owner.problem:
                                raise WritesRefused(f"not re-journalling: {self.owner.problem}")
                            await self._rejournal()
                        elif self._q or snapshot_due:
                            await self._flush(snapshot_due)
                        else:
                            await self._check_epoch()  # idle: notice an outage, or a lost journal, anyway
                        self._mark_up()
                        backoff = _BACKOFF_START_S
                        reloaded = False
                    except JournalLost as exc:
                        self._journal_lost(str(exc))
                        continue
                    except _ScriptsGone as exc:
                        if not reloaded:  # once: reload the scripts and retry at once
                            reloaded = True
                            continue
                        self._mark_down(exc)
                        await self._sleep(backoff)
                        backoff = min(backoff * 2, self.cfg.retry_max_backoff_s)
                    except _TRANSIENT + (RedisError,) as exc:
                        self._mark_down(exc)
                        await self._sleep(backoff)
                        backoff = min(backoff * 2, self.cfg.retry_max_backoff_s)
                    continue
                self._wake.clear()
                timeout = interval - (now - self._last_snapshot) if self._latest else interval - (now - self._last_ok)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.001, timeout))
                except TimeoutError:
                    pass
        finally:
            self._running = False
            self._task = None

    async def _sleep(self, s: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=s) if self._closing else await asyncio.sleep(s)
        except TimeoutError:
            pass

    def _mark_up(self) -> None:
        self._last_ok = time.monotonic()
        if not self.healthy:
            self.log.info("redis_up", down_s=round(time.time() - (self.down_since or time.time()), 3),
                          queued=len(self._q))
        self.healthy = True
        self.down_since = None
        self.reason = ""
        if self.overflow and len(self._q) < self.cfg.queue_max // 2:
            self.overflow = False

    def _mark_down(self, exc: BaseException) -> None:
        self.counts["errors"] += 1
        what = "redis refused writes" if isinstance(exc, WritesRefused) else "redis unavailable"
        reason = f"{what}: {type(exc).__name__}: {exc}"
        if self.healthy:
            self.down_since = time.time()
            self.log.warning("redis_down", error=reason, queued=len(self._q))
        self.healthy = False
        self.reason = reason[:300]

    async def _scripts(self) -> dict[str, str]:
        if not self._sha:
            self._sha = {name: await self._redis.script_load(src) for name, src in
                         (("guard", _GUARD_LUA), ("fill", _FILL_LUA), ("fee", _FEE_LUA), ("latest", _LATEST_LUA))}
        return self._sha

    async def _flush(self, snapshots: bool) -> None:
        batch = list(islice(self._q, BATCH_MAX))
        latest = self._take_latest() if snapshots else {}
        self._sealed = max(self._sealed, len(batch))
        epoch, new_seq = self.epoch, self._seq + (2 if self._seq_uncertain else 1)
        tail = (epoch, str(new_seq))
        try:
            sha = await self._scripts()
            pipe = self._redis.pipeline(transaction=True)
            pipe.evalsha(sha["guard"], 1, self.k_epoch, epoch, str(self._seq), "1" if self._seq_uncertain else "0",
                         str(new_seq))
            fills: list[str] = []
            groups: list[int] = []  # per script call: number of fills (0 = a fee)
            group: list[list[str]] = []
            for item in batch:
                if item[0] == _FILL:
                    _, fid, rec = item
                    fills.append(fid)
                    group.append(self._fill_args(fid, rec))
                    continue
                if group:
                    pipe.evalsha(sha["fill"], 4, self.k_fills, self.k_ids, self.k_pos, self.k_epoch,
                                 orjson.dumps(group), *tail)
                    groups.append(len(group))
                    group = []
                _, seq, amount = item
                pipe.evalsha(sha["fee"], 2, self.k_pos, self.k_epoch, self.run_id, seq, _f(amount), *tail)
                groups.append(0)
            if group:
                pipe.evalsha(sha["fill"], 4, self.k_fills, self.k_ids, self.k_pos, self.k_epoch, orjson.dumps(group),
                             *tail)
                groups.append(len(group))
            if latest:
                pipe.evalsha(sha["latest"], 6, self.k_meta, self.k_orders, self.k_book, self.k_breakers, self.k_pos,
                             self.k_epoch, orjson.dumps(self._latest_payload(latest)), *tail)
            pipe.hgetall(self.k_pos)  # the image of what is journaled, as of this transaction
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._sha = {}
            self._seq_uncertain = True  # it may have run: the next guard accepts one step more
            self._restore_latest(latest)
            raise
        guard, results, image = results[0], results[1:-1], results[-1]
        if isinstance(guard, Exception) and "FLASHMM_EPOCH" in str(guard):
            self._restore_latest(latest)  # nothing of it was written: every script checked the epoch
            raise JournalLost(self._loss_reason(str(guard)))
        errors = [r for r in (guard, *results) if isinstance(r, Exception)]
        if errors:  # the flush is retried as a whole: written fills are recognised, fees carry a sequence
            self._sha = {}
            self._restore_latest(latest)
            if isinstance(guard, Exception):
                self._seq_uncertain = True
            else:
                self._seq, self._seq_uncertain = new_seq, False
            if all(isinstance(e, NoScriptError) for e in errors):
                raise _ScriptsGone(str(errors[0]))
            raise WritesRefused(f"{len(errors)} write(s) refused: {errors[0]}")
        self._seq, self._seq_uncertain = new_seq, False
        self._image = dict(image)
        new = dup = fees = 0
        for n, r in zip(groups, results, strict=False):
            if n:
                new += sum(1 for x in r if x == 1)
                dup += sum(1 for x in r if x != 1)
            else:
                fees += 1
        for _ in range(len(batch)):
            self._q.popleft()
        self._sealed -= len(batch)
        if latest:
            self._last_snapshot = time.monotonic()
        self.counts["fills_written"] += new
        self.counts["fills_duplicate"] += dup
        self.counts["fees_written"] += fees
        self.counts["flushes"] += 1
        if fills and self.on_fills_durable is not None:
            self.on_fills_durable(fills)

    # ---- the journal's identity ------------------------------------------------------------------------
    def _next_epoch(self) -> str:
        self._epoch_n += 1
        return f"{self.run_id}.{self._epoch_n}"

    async def _claim(self) -> None:
        """Start of the run: our epoch replaces the namespace's identity; the journal continues."""
        epoch = self._next_epoch()
        image = await self._redis.eval(_CLAIM_LUA, 2, self.k_epoch, self.k_pos, epoch, repr(time.time()), self.run_id)
        self._image = _pairs(image)
        self.epoch, self._seq, self._seq_uncertain = epoch, 0, False
        self.log.info("journal_epoch", epoch=epoch, reason="start", position_lots=self._image.get("position_lots", "0"))

    async def _check_epoch(self) -> None:
        ident, seq = await self._redis.hmget(self.k_epoch, ["id", "seq"])
        if ident is None:
            raise JournalLost(self._loss_reason("FLASHMM_EPOCH gone"))
        if ident != self.epoch:
            raise JournalLost(self._loss_reason(f"FLASHMM_EPOCH foreign {ident}"))
        ok = {self._seq, self._seq + 1} if self._seq_uncertain else {self._seq}
        if seq is None or int(seq) not in ok:
            raise JournalLost(self._loss_reason(f"FLASHMM_EPOCH seq {seq} {self._seq}"))

    def _loss_reason(self, error: str) -> str:
        words = error.split("FLASHMM_EPOCH", 1)[-1].split()
        if words and words[0] == "gone":
            return ("the journal's identity is gone: Redis lost its data (FLUSHALL, keys deleted, or a restart "
                    "without persistence)")
        if words and words[0] == "foreign":
            return f"another writer took the journal over (epoch {words[1] if len(words) > 1 else '?'})"
        if words and words[0] == "seq":
            return (f"the journal's sequence is {words[1] if len(words) > 1 else '?'} where this store wrote "
                    f"{words[2] if len(words) > 2 else self._seq}: an older copy was restored, or another writer")
        return "the journal refused a write: not ours"

    def _journal_lost(self, reason: str) -> None:
        self.counts["journal_losses"] += 1
        self._lost = reason
        self._sha = {}
        self.log.error("journal_lost", epoch=self.epoch, reason=reason, queued=len(self._q),
                       action="re-journalling from memory as a new epoch")

    async def _rejournal(self) -> None:
        """Write the journal again from memory as a new epoch (module docstring)."""
        epoch = self._next_epoch()
        position = {k: v for k, v in self._image.items()}
        position["epoch_base_position_lots"] = position.get("position_lots", "0")
        position["epoch_base_fills"] = position.get("fills", "0")
        latest = dict(self._now)
        latest["meta"] = {**self._latest.get("meta", {}), "run_id": self.run_id, "account_key": self.account_key,
                          "started": repr(time.time())}
        payload = self._latest_payload(latest)
        payload["position"] = position
        image = await self._redis.eval(_REJOURNAL_LUA, 8, self.k_fills, self.k_ids, self.k_pos, self.k_orders,
                                       self.k_book, self.k_breakers, self.k_meta, self.k_epoch, epoch,
                                       repr(time.time()), self.run_id, self._lost[:200], orjson.dumps(payload))
        self._image = _pairs(image)
        self.epoch, self._seq, self._seq_uncertain = epoch, 0, False
        self.journal_alert = f"journal lost ({self._lost}); re-journalled from memory as a new epoch {epoch}"
        self.log.warning("journal_new_epoch", epoch=epoch, reason=self._lost,
                         position_lots=position.get("position_lots", "0"), fills=position.get("fills", "0"),
                         orders=len(latest.get("orders") or {}), queued=len(self._q))
        self._lost = ""

    def _latest_payload(self, latest: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "meta" in latest:
            out["meta"] = {k: str(v) for k, v in latest["meta"].items()}
        if "orders" in latest:
            out["orders"] = latest["orders"]
        if "book" in latest:
            ts, bids, asks = latest["book"]
            out["book"] = orjson.dumps({"ts_ns": ts, "bids": bids, "asks": asks}).decode()
        if latest.get("breakers"):
            out["breakers"] = {
                v.name: orjson.dumps({"name": v.name, "action": str(v.action), "state": str(v.state),
                                      "reason": v.reason, "since_ns": v.since_ns, "trips": v.trips}).decode()
                for v in latest["breakers"]}
        if "position" in latest:
            out["position"] = latest["position"]
        return out

    def _fill_args(self, fid: str, r: FillRecord) -> list[str]:
        cash, edge = fill_cash_and_edge(self._instrument, r.side, r.price_ticks, r.lots, r.mid_ticks)
        return [fid, str(r.side * r.lots), _f(cash), _f(r.fee_quote), _f(edge), str(r.lots),
                "fill_id", fid, "ts_ns", str(r.ts_ns), "client_id", str(r.client_id), "side", str(r.side),
                "price_ticks", _f(r.price_ticks), "lots", str(r.lots), "fee_quote", _f(r.fee_quote),
                "is_maker", "1" if r.is_maker else "0", "mid_ticks", _f(r.mid_ticks)]

    def _take_latest(self) -> dict[str, Any]:
        latest, self._latest = self._latest, {}
        return latest

    def _restore_latest(self, latest: dict[str, Any]) -> None:
        """A failed flush: values set since it started win; the rest go back."""
        for key, value in latest.items():
            if key == "meta":
                merged = dict(value)
                merged.update(self._latest.get("meta", {}))
                self._latest["meta"] = merged
            else:
                self._latest.setdefault(key, value)

    async def close(self, timeout_s: float = 5.0) -> bool:
        """Flush what is queued (up to `timeout_s`), stop the writer, close the connection. True when
        everything reached Redis."""
        self._closing = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            if not self._running:  # no writer task (or one not started yet): drain here
                try:
                    await asyncio.wait_for(self.run(), timeout=timeout_s)
                except TimeoutError:
                    pass
            task = self._task
            if self._running and task is not None and task is not asyncio.current_task():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=max(0.0, deadline - loop.time()))
                except TimeoutError:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
        finally:
            flushed = not self._q and not self._latest
            if not flushed:
                self.log.error("redis_close_unflushed", queued=len(self._q))
            try:
                await self._redis.aclose()
            except Exception:  # closing a dead connection
                pass
        return flushed

    # ================================================================ start ==========================
    async def load(self) -> RecoveredState | None:
        """Read everything back (at start, before trading; this one does wait on Redis). None when the
        namespace is empty. Raises redis errors: the caller decides whether to start without it."""
        r = self._redis
        keys = (self.k_fills, self.k_ids, self.k_pos, self.k_orders, self.k_book, self.k_breakers, self.k_meta,
                self.k_epoch)
        if not await r.exists(*keys):
            return None
        pos = await r.hgetall(self.k_pos)
        st = RecoveredState(
            position_lots=int(pos.get("position_lots", 0)), cash_flow=float(pos.get("cash_flow", 0.0)),
            fees_paid=float(pos.get("fees_paid", 0.0)), fees_other=float(pos.get("fees_other", 0.0)),
            spread_capture=float(pos.get("spread_capture", 0.0)), volume_lots=int(pos.get("volume_lots", 0)),
            n_fills=int(pos.get("fills", 0)), last_fill_id=pos.get("last_fill_id", ""),
            peak_pnl=float(pos.get("peak_pnl", 0.0)), max_abs_position_lots=int(pos.get("max_abs_position_lots", 0)),
            base_position_lots=int(pos.get("epoch_base_position_lots", 0)),
            base_fills=int(pos.get("epoch_base_fills", 0)),
            epoch=str(await r.hget(self.k_epoch, "id") or ""),
        )
        start = "-"
        while True:
            chunk = await r.xrange(self.k_fills, min=start, max="+", count=10_000)
            for _entry_id, f in chunk:
                st.fill_ids.append(f["fill_id"])
                st.fills.append(FillRecord(int(f["ts_ns"]), int(f["client_id"]), int(f["side"]),
                                           float(f["price_ticks"]), int(f["lots"]), float(f["fee_quote"]),
                                           f["is_maker"] == "1", float(f["mid_ticks"])))
            if len(chunk) < 10_000:
                break
            start = "(" + chunk[-1][0]
        st.orders = {int(cid): orjson.loads(js) for cid, js in (await r.hgetall(self.k_orders)).items()}
        book = await r.get(self.k_book)
        st.book = orjson.loads(book) if book else None
        st.breakers = {name: orjson.loads(js) for name, js in (await r.hgetall(self.k_breakers)).items()}
        meta = await r.hgetall(self.k_meta)
        st.run_id = meta.get("run_id", "")
        st.started = float(meta.get("started", 0.0))
        seen = [int(meta.get("next_client_id", 1))]
        seen += [f.client_id + 1 for f in st.fills]
        seen += [cid + 1 for cid in st.orders]
        st.next_client_id = max(seen)
        self._last_ok = time.monotonic()
        return st


def _pairs(flat: Any) -> dict[str, str]:
    """A Lua-returned HGETALL (a flat list) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat or [])
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}
