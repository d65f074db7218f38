"""Fault injection for tests/test_faults.py: venues that misbehave the way live ones do, the reliability
figures collector, and the daemon driver for SIGTERM mid-flatten.

Every faulty venue here wraps the real seeded `SimVenue`, so the engine under test is the real engine on a
real (simulated) market; only the fault is injected, at the venue boundary where a live connector sits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashmm.core.domain import (
    AccountState,
    BookDiff,
    BookSnapshot,
    CancelOrder,
    Event,
    OrderAction,
    OrderReject,
    OrderType,
    PlaceOrder,
    Side,
    Trade,
    VenueStatus,
)
from flashmm.venues.base import Venue
from flashmm.venues.sim import SimVenue
from tests.conftest import RecordingSimVenue

MARKET_DATA = (BookDiff, BookSnapshot, Trade)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback servers: no env proxies


# ====================================================================== figures =====================
@dataclass
class Figures:
    """{fault: {"safe_behaviour": str, "figures": {name: {"value": v, "unit": u}}}}, written as JSON."""

    faults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, fault: str, name: str, value: float | int | bool | str, unit: str, safe_behaviour: str) -> None:
        entry = self.faults.setdefault(fault, {"safe_behaviour": safe_behaviour, "figures": {}})
        entry["safe_behaviour"] = safe_behaviour
        if isinstance(value, float):
            value = round(value, 4)
        entry["figures"][name] = {"value": value, "unit": unit}

    def write(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.faults, f, indent=2, sort_keys=True)

    def table(self) -> str:
        rows = [("fault", "figure", "value", "unit")]
        for fault, entry in sorted(self.faults.items()):
            for name, fig in entry["figures"].items():
                rows.append((fault, name, str(fig["value"]), fig["unit"]))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


# ====================================================================== a live-like connector ======
class ConnectorVenue(Venue):
    """The sim market behind a connector the way a live venue is: a reader task pulls blocks at the paced
    speed into a queue, the engine's run loop waits on that queue with its wall-clock feed timer
    (`wall_clock_feed = True`), and the feed can go silent and come back with a snapshot.

    While silent, market data is lost (as a dropped websocket loses it) and our order events are held
    back (they reach us after the reconnect); order actions still reach the market (the transaction path
    is separate from the feed). Every submitted action is recorded with its wall and venue time."""

    name = "sim-connector"
    wall_clock_feed = True

    def __init__(self, inner: SimVenue) -> None:
        self.inner = inner
        self.instrument = inner.instrument
        self.clock = inner.clock
        self.maker_fee_bps = inner.maker_fee_bps
        self.submitted: list[tuple[float, int, OrderAction]] = []
        self.silent = False
        self.held: list[Event] = []
        self.dropped_market_events = 0
        self._q: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        await self.inner.start()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.inner.next_batch()
            if batch is None:
                self._q.put_nowait(None)
                return
            if self.silent:
                self.held.extend(e for e in batch if not isinstance(e, MARKET_DATA))
                self.dropped_market_events += sum(isinstance(e, MARKET_DATA) for e in batch)
                continue
            self._q.put_nowait(batch)

    def go_silent(self, notify: bool) -> float:
        """The feed stops. `notify`: the connector noticed (socket closed) and says so at once. Returns the
        wall time (time.monotonic) of the fault."""
        self.silent = True
        t = time.monotonic()
        if notify:
            now = self.clock.now_ns()
            self._q.put_nowait([VenueStatus(False, self.inner.market.height, "websocket closed", now)])
        return t

    def resume(self) -> float:
        """Reconnected: the held order events, then a fresh book snapshot (the resync)."""
        m = self.inner.market
        now = self.clock.now_ns()
        snap = BookSnapshot(m.height, list(m.published[Side.BUY].items()), list(m.published[Side.SELL].items()), now)
        batch = [*self.held, VenueStatus(True, m.height, "reconnected", now), snap]
        self.held = []
        self.silent = False
        self._q.put_nowait(batch)
        return time.monotonic()

    async def next_batch(self) -> list[Event] | None:
        return await self._q.get()

    def submit(self, actions: Sequence[OrderAction]) -> None:
        wall, now = time.monotonic(), self.clock.now_ns()
        self.submitted.extend((wall, now, a) for a in actions)
        self.inner.submit(actions)

    async def account_state(self) -> AccountState:
        return await self.inner.account_state()

    async def stop(self) -> None:
        await self.inner.stop()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def cancel_times(self) -> dict[int, tuple[float, int]]:
        """client_id -> (wall, venue ns) of the first cancel sent for it."""
        out: dict[int, tuple[float, int]] = {}
        for wall, now, a in self.submitted:
            if isinstance(a, CancelOrder) and a.client_id not in out:
                out[a.client_id] = (wall, now)
        return out

    def first_limit_place_after(self, wall_t: float) -> tuple[float, int] | None:
        for wall, now, a in self.submitted:
            if wall >= wall_t and isinstance(a, PlaceOrder) and a.order_type is OrderType.LIMIT:
                return wall, now
        return None


# ====================================================================== stream faults =================
class StreamFaultVenue(RecordingSimVenue):
    """The recording sim venue with faults in its event stream or its order path (venue time, any speed):

    - `drop_diff_at(ns, resync_after_blocks)`: the first book diff at or after `ns` is lost (a sequence
      gap); `resync_after_blocks` blocks later the connector delivers a fresh snapshot.
    - `reject_places`: every placement is refused by the venue (OrderReject in the next block).
    - `delay_ns` / `delay_types`: actions of those order types reach the market `delay_ns` of venue time
      late (a congested chain: acks, fills and cancel confirmations all come late). Cancels follow the
      delay of the order they cancel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reject_places = False
        self.rejects_sent = 0
        self.delay_ns = 0
        self.delay_types: frozenset[OrderType] = frozenset({OrderType.LIMIT, OrderType.MARKET})
        self._types: dict[int, OrderType] = {}
        self._delayed: list[tuple[int, list[OrderAction]]] = []
        self._extra: list[Event] = []
        self._drop_at: int | None = None
        self._resync_after = 0
        self._resync_in = -1
        self.dropped_diff_seq: int | None = None
        self.resync_ns: int | None = None
        self.submit_wall_ns: list[int] = []  # perf_counter_ns of each entry of `submitted`

    def drop_diff_at(self, ns: int, resync_after_blocks: int) -> None:
        self._drop_at = ns
        self._resync_after = resync_after_blocks

    def submit(self, actions: Sequence[OrderAction]) -> None:
        now = self.clock.now_ns()
        self.submitted.extend((now, a) for a in actions)
        wall = time.perf_counter_ns()
        self.submit_wall_ns.extend(wall for _ in actions)
        passed: list[OrderAction] = []
        late: list[OrderAction] = []
        for a in actions:
            if isinstance(a, PlaceOrder):
                self._types[a.client_id] = a.order_type
                if self.reject_places:
                    self.rejects_sent += 1
                    self._extra.append(OrderReject(a.client_id, "insufficient funds (injected)", now))
                    continue
            otype = a.order_type if isinstance(a, PlaceOrder) else self._types.get(a.client_id, OrderType.LIMIT)
            (late if self.delay_ns and otype in self.delay_types else passed).append(a)
        if passed:
            self.market.submit(passed)
        if late:
            self._delayed.append((now + self.delay_ns, late))

    async def next_batch(self) -> list[Event] | None:
        if self._stopped:
            return None
        # actions due by the next block join it (a transaction lands in the block after it is due)
        due_by = self.clock.now_ns() + self.market.block_ns
        if self._delayed and self._delayed[0][0] <= due_by:
            ready = [x for x in self._delayed if x[0] <= due_by]
            self._delayed = [x for x in self._delayed if x[0] > due_by]
            for _, acts in ready:
                self.market.submit(acts)
        batch = await super().next_batch()
        if batch is None:
            return None
        if self._extra:
            batch = self._extra + batch
            self._extra = []
        if self._drop_at is not None and self.clock.now_ns() >= self._drop_at:
            diff = next((e for e in batch if isinstance(e, BookDiff)), None)
            if diff is not None:
                batch = [e for e in batch if e is not diff]
                self.dropped_diff_seq = diff.first_seq
                self._drop_at = None
                self._resync_in = self._resync_after
        elif self._resync_in > 0:
            self._resync_in -= 1
        if self._resync_in == 0:
            self._resync_in = -1
            m = self.market
            self.resync_ns = self.clock.now_ns()
            batch.append(BookSnapshot(m.height, list(m.published[Side.BUY].items()),
                                      list(m.published[Side.SELL].items()), self.resync_ns))
        return batch

    def in_flight(self) -> int:
        return sum(len(a) for _, a in self._delayed)


# ====================================================================== a restartable influxd =========
class InfluxServer:
    """A real influxd 1.x on 127.0.0.1 in its own directory that can be stopped and started again on the
    same ports and data (tests/test_influx.py's module fixture serves one that stays up)."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.dir = directory
        self.binary = binary
        self.http_port, self.rpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen | None = None

    def _conf(self) -> Path:
        d = self.dir
        conf = d / "influxdb.conf"
        conf.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d / 'meta'}"
  logging-enabled = false
[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
""")
        return conf

    def ping(self) -> bool:
        try:
            with NO_PROXY.open(f"{self.url}/ping", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False

    def start(self, timeout_s: float = 30.0) -> float:
        """Start and wait for /ping; returns the seconds it took."""
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.dir / "influxd.log", "ab") as log:
            self.proc = subprocess.Popen([self.binary, "run", "-config", str(self._conf())], stdout=log,
                                         stderr=subprocess.STDOUT)
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout_s:
                raise AssertionError("influxd did not answer /ping: "
                                     + (self.dir / "influxd.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-write (connections refused afterwards)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, q: str, db: str | None = None) -> dict:
        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        req = urllib.request.Request(f"{self.url}/query", data=urllib.parse.urlencode(params).encode(), method="POST")
        with NO_PROXY.open(req, timeout=10) as r:
            out = json.loads(r.read())
        for res in out["results"]:
            if "error" in res:
                raise AssertionError(f"InfluxQL {q!r}: {res['error']}")
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ====================================================================== SIGTERM mid-flatten ==========
def flatten_daemon_main(argv: list[str]) -> int:
    """The real daemon (`run_daemon`) with two test hooks: the sim venue holds MARKET orders `hold_s` of
    venue time (a congested chain, so flattening takes a while), and the engine starts flattening once it
    holds a position. It prints FLATTENING when it does, and at exit one JSON line with the engine's state
    when the signal arrived. argv: duration_s speed hold_s summary_path."""
    import flashmm.ops.daemon as daemon
    from flashmm.config import Config, load_config
    from flashmm.core.engine import Engine

    duration_s, speed, hold_s, summary = float(argv[0]), float(argv[1]), float(argv[2]), argv[3]
    seen: dict[str, Any] = {}

    class FlatteningEngine(Engine):
        def on_batch(self, batch: list[Event]) -> None:
            super().on_batch(batch)
            if not seen and self.portfolio.position_lots != 0 and self.clock.now_ns() - self.start_ns > 5e9:
                self.flatten("fault-test", "SIGTERM mid-flatten")
                seen["flatten_started_lots"] = self.portfolio.position_lots
            elif "flattening" not in seen and any(o.order_type is OrderType.MARKET for o in self.oms.orders.values()):
                seen["flattening"] = True  # the flatten market order is out: signal now lands mid-flatten
                print("FLATTENING", flush=True)

        def stop(self) -> None:
            if "at_signal" not in seen:
                types = [o.order_type for o in self.oms.orders.values()]
                seen["at_signal"] = {
                    "flatten_reason": self.flatten_reason, "position_lots": self.portfolio.position_lots,
                    "market_orders_in_flight": types.count(OrderType.MARKET),
                    "limit_orders": types.count(OrderType.LIMIT)}
            super().stop()

    def make_venue(cfg: Config, speed_arg: float | None = None, data: Any = None, **_: Any) -> Venue:
        v = StreamFaultVenue(cfg.sim, cfg.instrument.instrument(), cfg.run.seed, speed=speed_arg or cfg.run.speed)
        v.delay_ns = int(hold_s * 1e9)
        v.delay_types = frozenset({OrderType.MARKET})
        return v

    daemon.Engine = FlatteningEngine  # type: ignore[misc]
    daemon.make_venue = make_venue  # type: ignore[assignment]
    cfg = load_config(None)  # the built-in defaults with the FLASHMM_* overrides of the environment
    t0 = time.monotonic()
    rc = asyncio.run(daemon.run_daemon(cfg, duration_s, summary, speed, None))
    seen["run_s"] = time.monotonic() - t0
    print(json.dumps(seen), flush=True)
    return rc


# ====================================================================== the Sei node double, as a process =
class SeiNodeProcess:
    """`flashmm sei-devnode` on a fixed loopback port, so that it can be SIGSTOPped, SIGCONTed and restarted
    on a fresh chain (same URL, height back to 1) the way an operator's node misbehaves."""

    def __init__(self, directory: Path, fund: str, seed: int = 5, block_ms: int = 200, takers: int = 2,
                 makers: int = 1) -> None:
        self.dir = directory
        self.fund = fund
        self.seed = seed
        self.block_ms, self.takers, self.makers = block_ms, takers, makers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, seed: int | None = None) -> float:
        """Start (a fresh chain each time); returns the wall time (time.time(), as in the daemon's log) when it
        printed its ready line."""
        import os

        self.dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHMM_SEI")}
        err = open(self.dir / f"node{self.starts}.err", "wb")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "flashmm"), "sei-devnode", "--port", str(self.port), "--block-ms",
             str(self.block_ms), "--takers", str(self.takers), "--makers", str(self.makers), "--seed",
             str(self.seed if seed is None else seed), "--fund", self.fund],
            stdout=subprocess.PIPE, stderr=err, env=env)
        err.close()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError((self.dir / f"node{self.starts}.err").read_text()[-2000:])
        return time.time()

    def signal(self, sig: int) -> float:
        """Send `sig`; returns the wall time (time.time())."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return time.time()

    def stop(self) -> None:
        import signal as _signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def account(self, key_hex: str, chain_id: str = "arctic-1") -> tuple[Any, int]:
        """The node's record of the account: (position, open orders), read through its JSON-RPC."""
        import orjson
        from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2 as wasm

        from flashmm.config import SeiConfig
        from flashmm.venues.sei import schema as S
        from flashmm.venues.sei.rpc_client import EndpointPool, RPCClient
        from flashmm.venues.sei.tx import Signer

        contract = SeiConfig().contract_addr
        address = Signer(key_hex, chain_id).address

        async def main() -> tuple[Any, int]:
            from decimal import Decimal

            rpc = RPCClient(EndpointPool([self.url]))
            try:
                raw = await rpc.abci_query("/cosmwasm.wasm.v1.Query/SmartContractState",
                                           wasm.QuerySmartContractStateRequest(
                                               address=contract,
                                               query_data=orjson.dumps({"get_position": {"account": address}})))
                pos = Decimal(orjson.loads(wasm.QuerySmartContractStateResponse.FromString(raw).data)["position"])
                orders = S.QueryGetOrdersResponse.FromString(await rpc.abci_query(
                    S.query_path("GetOrders"), S.QueryGetOrdersRequest(contractAddr=contract, account=address)))
                return pos, len(orders.orders)
            finally:
                await rpc.close()

        return asyncio.run(main())


class DaemonLog:
    """The JSON log of a daemon process, read as it grows (events with their wall time)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict[str, Any]]:
        from datetime import datetime

        out = []
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            try:
                x = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(x, dict) and "timestamp" in x:
                x["_t"] = datetime.fromisoformat(x["timestamp"].replace("Z", "+00:00")).timestamp()
                out.append(x)
        return out

    def first(self, pred: Any, after: float = 0.0) -> dict[str, Any] | None:
        return next((x for x in self.events() if x["_t"] >= after and pred(x)), None)

    def wait(self, pred: Any, timeout_s: float, what: str, after: float = 0.0, proc: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            x = self.first(pred, after)
            if x is not None:
                return x
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the daemon exited (rc {proc.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} in {self.path}")
            time.sleep(0.05)


def status_quoting(x: dict[str, Any]) -> bool:
    return x.get("event") == "status" and x.get("mode") == "RUNNING" and x.get("open_orders", 0) >= 1


# ====================================================================== controls with the disk full ====
def controls_daemon_main(argv: list[str]) -> int:
    """The real daemon (`run_daemon`, the real sim venue) whose engine, once it has resting quotes, is paused
    at venue time `pause_at`, resumed 5 s later and killed at `kill_at` (the controls an operator sends, each
    written to the audit log), then runs to `duration`. Meant to run with the disk full (a file-size limit
    the log and audit files already reach). Prints one JSON line at exit: when each control happened, when
    the venue confirmed every cancel, and the sinks' health. argv: duration speed pause_at kill_at summary."""
    import flashmm.ops.daemon as daemon
    from flashmm.config import load_config
    from flashmm.core.engine import Engine
    from flashmm.telemetry.failsafe import SINKS

    duration_s, speed, pause_at, kill_at, summary = (float(argv[0]), float(argv[1]), float(argv[2]),
                                                     float(argv[3]), argv[4])
    seen: dict[str, Any] = {}

    class ControlledEngine(Engine):
        def _limits(self) -> int:
            return sum(o.order_type is OrderType.LIMIT for o in self.oms.orders.values())

        def on_batch(self, batch: list[Event]) -> None:
            super().on_batch(batch)
            now = self.clock.now_ns()
            t = (now - self.start_ns) / 1e9
            if "pause" not in seen and t >= pause_at and self._limits() >= 2:
                seen["pause"] = {"t": t, "resting": self._limits(), "result": self.pause("fault-test", "disk full")}
            elif "pause" in seen and "pause_confirmed_s" not in seen and self._limits() == 0:
                seen["pause_confirmed_s"] = t - seen["pause"]["t"]
            elif "pause_confirmed_s" in seen and "resume" not in seen and t >= seen["pause"]["t"] + 5:
                seen["resume"] = {"t": t, "result": self.resume("fault-test", "disk full")}
            elif "resume" in seen and "kill" not in seen and t >= kill_at and self._limits() >= 1:
                seen["kill"] = {"t": t, "resting": self._limits(), "result": self.kill("fault-test", "disk full")}
            elif "kill" in seen and "kill_confirmed_s" not in seen and self._limits() == 0:
                seen["kill_confirmed_s"] = t - seen["kill"]["t"]

        def _submit(self, actions: list[OrderAction]) -> None:
            if "kill" in seen:
                n = sum(isinstance(a, PlaceOrder) and a.order_type is OrderType.LIMIT for a in actions)
                seen["limit_places_after_kill"] += n
            super()._submit(actions)

    daemon.Engine = ControlledEngine  # type: ignore[misc]
    seen["limit_places_after_kill"] = 0
    rc = asyncio.run(daemon.run_daemon(load_config(None), duration_s, summary, speed, None))
    seen["sinks"] = SINKS.status()
    print(json.dumps(seen, default=str), flush=True)
    return rc


def fill_to_limit(path: Path, limit: int) -> None:
    """A file already at the file-size limit: every append fails with EFBIG (a disk with no room left)."""
    line = b'{"filler": "a file at its size limit"}\n'
    data = line * (limit // len(line))
    path.write_bytes(data + b"x" * (limit - len(data) - 1) + b"\n")


if __name__ == "__main__":  # pragma: no cover - run as `python -m tests.faults_support [controls] ...`
    if sys.argv[1:2] == ["controls"]:
        sys.exit(controls_daemon_main(sys.argv[2:]))
    sys.exit(flatten_daemon_main(sys.argv[1:]))
