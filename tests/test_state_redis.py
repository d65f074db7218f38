"""Redis state against a real redis-server on a free loopback port: round trip, idempotency, an outage in
the middle of a run, reconciliation, and recovery after `kill -9` of a process trading on the sim venue."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from flashmm.config import Config, RedisConfig
from flashmm.core.domain import AccountState, Fill, OrderType, Side, VenueOrder
from flashmm.core.execution import ManagedOrder, OrderState
from flashmm.core.risk import RiskManager
from flashmm.core.state import FillRecord, Portfolio
from flashmm.core.state_redis import _FEE, RecoveredState, RedisStateStore, fill_id, reconcile

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parent.parent
INSTRUMENT = Config().instrument.instrument()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server on 127.0.0.1, AOF on, in its own directory; can be killed and restarted.
    appendfsync always: what it acknowledged is on disk, so killing the server itself loses nothing and the
    outage test is deterministic (with everysec a SIGKILL of the server may lose up to ~1 s)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 (the server owns it until it exits)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            try:
                if client.ping():
                    break
            except redis.exceptions.RedisError:  # not listening yet, or still loading the AOF
                pass
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 10 s")
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients (what the AOF already holds survives)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def redis_server(tmp_path: Path):
    if not Path(REDIS_SERVER).exists():
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _cfg(server: RedisServer, **kw) -> RedisConfig:
    base = {"enabled": True, "url": server.url, "namespace": "t", "flush_interval_s": 0.02, "retry_max_backoff_s": 0.2}
    base.update(kw)
    return RedisConfig(**base)


def _fill(i: int, side: int = 1, lots: int = 5, price: float = 4000.0, fee: float = 0.001) -> FillRecord:
    return FillRecord(1_000 + i, i, side, price + (i % 7) * 0.5, lots, fee, i % 3 != 0, price + 0.25)


def _portfolio_of(fills: list[FillRecord]) -> Portfolio:
    p = Portfolio(INSTRUMENT)
    for f in fills:
        p.on_fill(Fill(f.client_id, Side(f.side), f.price_ticks, f.lots, f.fee_quote, f.is_maker, f.ts_ns, True),
                  f.mid_ticks)
    return p


def _assert_journal_consistent(rec: RecoveredState) -> None:
    assert len(set(rec.fill_ids)) == len(rec.fill_ids), "a fill is in the journal twice"
    assert rec.n_fills == len(rec.fills)
    assert rec.position_lots == sum(f.side * f.lots for f in rec.fills)
    assert rec.volume_lots == sum(f.lots for f in rec.fills)
    p = _portfolio_of(rec.fills)
    assert math.isclose(rec.cash_flow, p.cash_flow, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(rec.spread_capture, p.spread_capture, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(rec.fees_paid - rec.fees_other, p.fees_paid, rel_tol=1e-9, abs_tol=1e-6)
    assert reconcile(rec, AccountState(rec.position_lots, {
        cid: VenueOrder(cid, Side(o["side"]), o["price_ticks"], o["lots"] - o["filled_lots"])
        for cid, o in rec.orders.items()})) == []


async def _load(server: RedisServer, namespace: str = "t", account: str = "acct") -> RecoveredState | None:
    store = RedisStateStore(_cfg(server, namespace=namespace), account, INSTRUMENT)
    try:
        return await store.load()
    finally:
        await store.close(1)


async def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ====================================================================== round trip ==================
def test_round_trip(redis_server: RedisServer) -> None:
    fills = [_fill(i, side=1 if i % 3 else -1) for i in range(1, 41)]
    risk = RiskManager(Config().risk, INSTRUMENT)
    risk.breakers["latency"].trip("tick-to-quote p95 300 ms", 123)
    orders = [ManagedOrder(101, Side.BUY, 3999, 500, 0, OrderType.LIMIT, 77, OrderState.OPEN, 0, 9001),
              ManagedOrder(102, Side.SELL, 4002, 700, 1, OrderType.LIMIT, 78, OrderState.PARTIALLY_FILLED, 200, 9002)]
    expected = _portfolio_of(fills)
    expected.on_fee(0.25)
    expected.on_fee(0.5)
    expected.peak_pnl = 12.5

    async def main() -> tuple[RecoveredState | None, RecoveredState | None, bool]:
        empty = await _load(redis_server)
        store = RedisStateStore(_cfg(redis_server), "acct", INSTRUMENT)
        task = asyncio.create_task(store.run())
        for i, f in enumerate(fills):
            store.record_fill(f, fill_id(f.client_id, f.lots))
            if i == 10:
                store.record_fee(0.25)
                store.record_fee(0.5)  # merged with the previous one while queued
            if i % 10 == 0:
                await asyncio.sleep(0.005)
        store.set_orders(orders)
        store.set_book([(3999, 1500), (3998, 20)], [(4001, 900)], 555)
        store.set_breakers(risk.views())
        store.set_position(expected)
        store.set_next_client_id(103)
        flushed = await store.close(5)
        await task
        rec = await _load(redis_server)
        return empty, rec, flushed

    empty, rec, flushed = asyncio.run(main())
    assert empty is None
    assert flushed
    assert rec is not None
    assert rec.fills == fills  # every field, floats exactly, in order
    assert rec.fill_ids == [f"{f.client_id}:{f.lots}" for f in fills]
    assert rec.position_lots == expected.position_lots
    assert math.isclose(rec.cash_flow, expected.cash_flow, rel_tol=1e-12)
    assert math.isclose(rec.fees_paid, expected.fees_paid, rel_tol=1e-12)
    assert rec.fees_other == 0.75
    assert math.isclose(rec.spread_capture, expected.spread_capture, rel_tol=1e-12)
    assert rec.volume_lots == expected.volume_lots and rec.n_fills == 40 and rec.last_fill_id == fill_id(40, 5)
    assert rec.peak_pnl == 12.5
    assert rec.orders[102] == {"client_id": 102, "side": -1, "price_ticks": 4002, "lots": 700, "filled_lots": 200,
                               "state": "partially_filled", "level": 1, "cancel_requested": False,
                               "order_type": OrderType.LIMIT.value, "created_ns": 78, "venue_order_id": 9002}
    assert set(rec.orders) == {101, 102} and rec.orders[101]["state"] == "open"
    assert rec.book == {"ts_ns": 555, "bids": [[3999, 1500], [3998, 20]], "asks": [[4001, 900]]}
    assert rec.breakers["latency"]["state"] == "tripped" and rec.breakers["latency"]["trips"] == 1
    assert rec.breakers["latency"]["reason"] == "tick-to-quote p95 300 ms"
    assert set(rec.breakers) == set(risk.breakers)
    assert rec.next_client_id == 103
    restored = Portfolio(INSTRUMENT)
    rec.apply_to(restored)
    assert restored.position_lots == expected.position_lots and list(restored.fills) == fills
    assert math.isclose(restored.pnl(4001.0).total, expected.pnl(4001.0).total, rel_tol=1e-9)
    _assert_journal_consistent(rec)


# ====================================================================== idempotency =================
def test_same_fill_twice_is_journaled_once(redis_server: RedisServer) -> None:
    f1, f2 = _fill(1, lots=10), _fill(2, side=-1, lots=3)

    async def main() -> tuple[RecoveredState | None, dict]:
        store = RedisStateStore(_cfg(redis_server), "acct", INSTRUMENT)
        task = asyncio.create_task(store.run())
        store.record_fill(f1, fill_id(1, 10))
        store.record_fill(f1, fill_id(1, 10))  # twice in the same flush
        await _wait(lambda: store.pending == 0, 5, "first flush")
        store.record_fill(f1, fill_id(1, 10))  # again in a later flush
        store.record_fill(f2, fill_id(2, 3))
        store.record_fee(0.5)
        await _wait(lambda: store.pending == 0, 5, "second flush")
        store._q.append((_FEE, store._fee_seq, 0.5))  # the same fee op again (a flush whose outcome was unknown)
        store._wake.set()
        await _wait(lambda: store.pending == 0, 5, "re-sent fee")
        counts = dict(store.counts)
        await store.close(5)
        await task
        # a second process (a restart) recording the same fill again
        again = RedisStateStore(_cfg(redis_server), "acct", INSTRUMENT)
        again.record_fill(f1, fill_id(1, 10))
        await again.close(5)
        return await _load(redis_server), counts

    rec, counts = asyncio.run(main())
    assert rec is not None
    assert rec.fill_ids == [fill_id(1, 10), fill_id(2, 3)]
    assert rec.fills == [f1, f2]
    assert rec.position_lots == 10 - 3 and rec.volume_lots == 13 and rec.n_fills == 2
    assert rec.fees_other == 0.5  # applied once
    assert counts["fills_written"] == 2 and counts["fills_duplicate"] == 2
    _assert_journal_consistent(rec)


# ====================================================================== outage ======================
def test_redis_down_mid_run_then_back(redis_server: RedisServer) -> None:
    """Stop the server mid-run: writes keep being accepted in memory, `healthy` goes False with a reason,
    past queue_max `overflow` says so; restart on the same port and directory: everything arrives, once,
    in order."""
    fills = [_fill(i, side=1 if i % 4 else -1, lots=1 + i % 5) for i in range(1, 201)]

    async def main() -> dict:
        store = RedisStateStore(_cfg(redis_server, queue_max=100), "acct", INSTRUMENT)
        task = asyncio.create_task(store.run())
        for f in fills[:50]:
            store.record_fill(f, fill_id(f.client_id, f.lots))
        await _wait(lambda: store.pending == 0, 5, "the first 50 fills")
        assert store.healthy and store.counts["fills_written"] == 50

        redis_server.kill()
        t0 = time.perf_counter()
        for f in fills[50:80]:
            store.record_fill(f, fill_id(f.client_id, f.lots))
            store.record_fee(0.01)
        store.set_orders([ManagedOrder(500, Side.BUY, 3990, 10, 0, OrderType.LIMIT, 1, OrderState.OPEN)])
        store.set_next_client_id(501)
        record_s = time.perf_counter() - t0
        await _wait(lambda: not store.healthy, 5, "the store to notice the outage")
        assert store.reason.startswith("redis unavailable") and store.down_since is not None
        for f in fills[80:]:
            store.record_fill(f, fill_id(f.client_id, f.lots))
        assert store.overflow  # 120 fills and 30 fees queued, queue_max 100: the engine can pause
        await asyncio.sleep(0.5)  # a few reconnection attempts, all failing
        assert not store.healthy and len(store._q) == 180
        seen = {"errors": store.counts["errors"], "record_s": record_s}

        redis_server.start()  # same port, same directory: the AOF brings back what was written
        await _wait(lambda: store.healthy and store.pending == 0, 10, "the catch-up")
        assert not store.overflow and store.reason == "" and store.down_since is None
        await store.close(5)
        await task
        seen["rec"] = await _load(redis_server)
        return seen

    seen = asyncio.run(main())
    rec = seen["rec"]
    assert seen["errors"] >= 2
    assert seen["record_s"] < 0.2  # the engine never waited on the dead server (a connect timeout is 1 s)
    assert rec.fills == fills  # complete, in order
    assert rec.fill_ids == [fill_id(f.client_id, f.lots) for f in fills]
    assert math.isclose(rec.fees_other, 0.30, rel_tol=1e-9)
    assert set(rec.orders) == {500} and rec.next_client_id == 501
    _assert_journal_consistent(rec)


def test_refused_write_is_kept_and_shown(redis_server: RedisServer) -> None:
    """A server that forgot the scripts costs nothing; a write Redis refuses (here a non-finite value) is
    never dropped: it stays queued, the store shows why, and nothing after it is journaled out of order."""
    good1, good2, good4 = _fill(1), _fill(2), _fill(4)
    bad = FillRecord(1_003, 3, 1, 4000.0, 5, 0.001, True, float("nan"))

    async def main() -> tuple[RecoveredState | None, dict, bool]:
        store = RedisStateStore(_cfg(redis_server), "acct", INSTRUMENT)
        task = asyncio.create_task(store.run())
        store.record_fill(good1, fill_id(1, 5))
        await _wait(lambda: store.pending == 0, 5, "the first fill")
        redis.Redis(port=redis_server.port).script_flush()
        store.record_fill(good2, fill_id(2, 5))
        await _wait(lambda: store.pending == 0, 5, "a fill after SCRIPT FLUSH")
        assert store.healthy and store.counts["errors"] == 0
        store.record_fill(bad, fill_id(3, 5))
        store.record_fill(good4, fill_id(4, 5))
        await _wait(lambda: not store.healthy, 5, "the refusal")
        seen = {"reason": store.reason, "queued": len(store._q)}
        flushed = await store.close(0.3)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return await _load(redis_server), seen, flushed

    rec, seen, flushed = asyncio.run(main())
    assert seen["reason"].startswith("redis refused writes") and "non-finite value in fill 3:5" in seen["reason"]
    assert seen["queued"] == 2 and not flushed
    assert rec is not None and rec.fills == [good1, good2]
    _assert_journal_consistent(rec)


# ====================================================================== reconcile ===================
def test_reconcile_cases() -> None:
    fills = [_fill(1, 1, 10), _fill(2, -1, 4)]
    base = RecoveredState(position_lots=6, n_fills=2, fills=fills, fill_ids=["1:10", "2:4"], volume_lots=14,
                          orders={7: {"client_id": 7, "side": 1, "price_ticks": 3990, "lots": 10, "filled_lots": 2}})
    v_order = VenueOrder(7, Side.BUY, 3990, 8)
    assert reconcile(base, AccountState(6, {7: v_order})) == []
    # position differs from the venue's
    assert reconcile(base, AccountState(9, {7: v_order})) == ["position 6 in the journal, 9 at venue"]
    # an order open at the venue that the journal does not know, and one the journal has that the venue has not
    probs = reconcile(base, AccountState(6, {8: VenueOrder(8, Side.SELL, 4010, 5)}))
    assert probs == ["order 8 open at venue, unknown to the journal", "order 7 in the journal, not open at venue"]
    # the same order with a different remaining quantity
    probs = reconcile(base, AccountState(6, {7: VenueOrder(7, Side.BUY, 3990, 3)}))
    assert probs == ["order 7: 8 lots left at 3990 in the journal, 3 at 3990 at venue"]
    # the journal disagreeing with itself
    broken = RecoveredState(position_lots=5, n_fills=3, fills=fills, fill_ids=["1:10", "1:10"])
    probs = reconcile(broken, AccountState(5))
    assert "journal: fills sum to position 6, position hash says 5" in probs
    assert "journal: 2 fills in the stream, position hash counts 3" in probs
    assert "journal: duplicate fill ids" in probs
    assert reconcile(RecoveredState(), AccountState(0)) == []


# ====================================================================== kill -9 ====================
DRIVER = textwrap.dedent('''
    """A FlashMM engine on the sim venue (speed inf) with the Redis store, until SIGKILL."""
    import asyncio, json, os, sys

    from flashmm.config import Config, RedisConfig, SimConfig
    from flashmm.core.engine import Engine
    from flashmm.core.state_redis import RedisStateStore, reconcile
    from flashmm.telemetry.logging import configure_logging
    from flashmm.venues.sim import SimVenue

    url, namespace, ack_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    configure_logging("error")
    # the deep preset: hundreds of fills within seconds of wall time (the thin default trades every ~50 s)
    cfg = Config(redis=RedisConfig(enabled=True, url=url, namespace=namespace, flush_interval_s=0.02),
                 sim=SimConfig(preset="deep"))
    inst = cfg.instrument.instrument()

    pending = {}

    async def main():
        store = RedisStateStore(cfg.redis, "sim:ours", inst)
        _record = store.record_fill

        def record_fill(rec, fid):  # test instrumentation: remember what we asked Redis to journal
            pending[fid] = rec
            _record(rec, fid)

        store.record_fill = record_fill
        rec = await store.load()  # read-only peek; the engine itself loads, applies and reconciles
        venue = SimVenue(cfg.sim, inst, seed, speed=float("inf"))
        engine = Engine(cfg, venue, seed=seed, state_store=store)  # the engine's own hooks journal fills
        fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

        def durable(ids):  # after Redis confirmed: one line per fill, written before anything else happens
            lines = []
            for fid in ids:
                r = pending.pop(fid)
                lines.append(f"{fid} {r.ts_ns} {r.side * r.lots}\\n")
            os.write(fd, "".join(lines).encode())

        store.on_fills_durable = durable
        info = {"recovered": None}
        if rec is not None:
            # the sim venue died with the process; a real venue keeps our account: give it the journal's
            venue.market.position_lots = rec.position_lots
            info = {"recovered": {"fills": len(rec.fills), "position_lots": rec.position_lots,
                                  "next_client_id": rec.next_client_id},
                    "problems": reconcile(rec, venue.market.account_state())}
            # the venue re-delivering fills after a reconnect: they must not be journaled again
            for fid, f in zip(rec.fill_ids[-20:], rec.fills[-20:]):
                store.record_fill(f, fid)
        print(json.dumps(info), flush=True)
        await engine.run(None)

    asyncio.run(main())
''')


def _run_until_killed(driver: Path, server: RedisServer, ack: Path, seed: int, at_least: int) -> dict:
    start = len(ack.read_text().splitlines()) if ack.exists() else 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen([sys.executable, str(driver), server.url, "k9", str(ack), str(seed)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            deadline = time.monotonic() + 20
            while (len(ack.read_text().splitlines()) if ack.exists() else 0) - start < at_least:
                if proc.poll() is not None:
                    pytest.fail(f"driver exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
                if time.monotonic() > deadline:
                    proc.kill()
                    got = (len(ack.read_text().splitlines()) if ack.exists() else 0) - start
                    out, err = proc.communicate()
                    pytest.fail(f"the driver journaled {got} < {at_least} fills within 20 s; "
                                f"stdout {out[-500:]!r} stderr {err[-2000:]}")
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)  # mid-run, with fills in flight
            out, _ = proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return json.loads(out.splitlines()[0])


def test_kill9_recovery(redis_server: RedisServer, tmp_path: Path) -> None:
    """A real engine process on the sim venue journals fills to Redis and is SIGKILLed mid-run, twice (the
    second run recovers from the first). Every fill it had durably acknowledged is in the journal exactly
    once, nothing is there twice, and the position equals the sum of the journal's fills.

    The sim venue lives inside the killed process, so the venue's own record cannot be read after the kill:
    the second run seeds its fresh sim account with the journal's position (what a real venue would have
    kept), and the check is the journal against what the process had confirmed, plus its own consistency."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    ack = tmp_path / "acked.txt"

    first = _run_until_killed(driver, redis_server, ack, seed=11, at_least=300)
    assert first == {"recovered": None}
    rec1 = asyncio.run(_load(redis_server, "k9", "sim:ours"))
    assert rec1 is not None
    n1 = len(rec1.fills)
    _check_kill9(rec1, ack)

    second = _run_until_killed(driver, redis_server, ack, seed=12, at_least=300)
    assert second["recovered"] == {"fills": n1, "position_lots": rec1.position_lots,
                                   "next_client_id": rec1.next_client_id}
    assert not [p for p in second["problems"] if p.startswith(("journal", "position"))], second["problems"]
    rec2 = asyncio.run(_load(redis_server, "k9", "sim:ours"))
    assert rec2 is not None
    assert rec2.fill_ids[:n1] == rec1.fill_ids  # the journal is append-only
    assert all(f.client_id >= rec1.next_client_id for f in rec2.fills[n1:])  # no client id reused
    assert len(rec2.fills) > n1
    _check_kill9(rec2, ack)


def _check_kill9(rec: RecoveredState, ack: Path) -> None:
    journal = {fid: f for fid, f in zip(rec.fill_ids, rec.fills, strict=True)}
    confirmed = [line.split() for line in ack.read_text().splitlines() if line.strip()]
    assert confirmed
    for fid, ts, signed in confirmed:
        f = journal.get(fid)
        assert f is not None, f"fill {fid} was confirmed by Redis but is not in the journal"
        assert (f.ts_ns, f.side * f.lots) == (int(ts), int(signed)), f"fill {fid}: another fill under its id"
    _assert_journal_consistent(rec)


# ---- the engine with the store: the daemon end to end, and Redis dying mid-run ---------------------------


def test_daemon_journals_every_fill_and_a_restart_on_a_fresh_venue_pauses_on_the_mismatch(redis_server, tmp_path):
    import redis as redis_sync

    env = dict(os.environ, FLASHMM_REDIS__ENABLED="true", FLASHMM_REDIS__URL=json.dumps(redis_server.url),
               FLASHMM_LOGGING__AUDIT_FILE='""', FLASHMM_MODEL__PATH='"none"')
    args = [sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--duration", "120", "--speed", "1000", "--summary"]
    r = subprocess.run(args + ["a.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    first = json.loads((tmp_path / "a.json").read_text())
    db = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    key = "flashmm:sim:SEI/USDC"
    assert db.xlen(f"{key}:fills") == first["fills"] > 0  # every fill journaled, once
    assert int(db.hget(f"{key}:position", "position_lots")) == round(first["position_base"])
    assert db.hlen(f"{key}:orders") == 0  # shut down clean: no open orders left in the state
    # a restart recovers the journal; the embedded sim venue is a new market with no position of ours, so
    # the position differs from the venue's record: logged, and trading pauses until an operator resumes
    r = subprocess.run(args + ["b.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    second = json.loads((tmp_path / "b.json").read_text())
    venue_errors = second["breakers"]["venue_errors"]
    if first["position_base"] != 0:
        assert venue_errors["state"] == "tripped" and "differs from the venue" in venue_errors["reason"]
        assert second["orders_placed"] == 0
    assert db.xlen(f"{key}:fills") == first["fills"] + second["fills"]  # nothing counted twice


def test_redis_down_mid_run_trading_goes_on_the_state_breaker_shows_it_and_writes_catch_up(redis_server):
    from flashmm.config import Config, RedisConfig, SimConfig
    from flashmm.core.engine import Engine
    from flashmm.telemetry.logging import configure_logging
    from flashmm.venues.sim import SimVenue

    configure_logging("error")
    cfg = Config(redis=RedisConfig(enabled=True, url=redis_server.url, namespace="down", flush_interval_s=0.05,
                                   retry_max_backoff_s=0.2))
    inst = cfg.instrument.instrument()
    store = RedisStateStore(cfg.redis, "sim:ours", inst)
    engine = Engine(cfg, SimVenue(cfg.sim, inst, 7, speed=200.0), seed=7, state_store=store)

    async def go():
        task = asyncio.create_task(engine.run(None))
        await asyncio.sleep(1.0)
        redis_server.kill()
        fills_at_kill = engine.counters["fills"]
        for _ in range(100):
            await asyncio.sleep(0.05)
            if engine.risk.breakers["state"].state == "tripped":
                break
        assert engine.risk.breakers["state"].state == "tripped" and not store.healthy
        await asyncio.sleep(1.5)
        assert engine.counters["fills"] > fills_at_kill  # trading went on from memory
        assert engine.current_mode.value == "RUNNING"
        redis_server.start()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if store.healthy and store.pending == 0:
                break
        engine.stop()
        await task
        clean = await engine.shutdown(5.0)
        return clean

    assert asyncio.run(go())
    loaded = asyncio.run(RedisStateStore(cfg.redis, "sim:ours", inst).load())
    assert len(loaded.fills) == engine.counters["fills"]  # the writes made while Redis was down caught up
    assert loaded.position_lots == engine.portfolio.position_lots
