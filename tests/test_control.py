"""The control plane: live parameters, the snapshot codec, the control socket (permissions, peer check,
hostile input fuzzed), the shutdown path in-process, and `flashmm ctl` against a real daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flashmm.config import Config, SimConfig, StrategyConfig, load_config
from flashmm.control import params
from flashmm.control.client import ControlClient
from flashmm.control.codec import decode_snapshot, encode
from flashmm.control.commands import COMMANDS, LocalControl
from flashmm.control.server import ControlServer, ControlSocketError, prepare_socket_path
from flashmm.control.shutdown import ExitCode, Session
from flashmm.core.domain import OrderType, Side
from flashmm.telemetry.logging import AuditLog, configure_logging, verify_audit_log
from tests.conftest import RecordingSimVenue, _continue, make_engine
from tests.test_fuzz import JSON as JSON_VALUES
from tests.test_fuzz import fuzz


# the busy one-tick market (the default thin one trades rarely) and no standing aside without a measured edge
QUOTING = Config(sim=SimConfig(preset="deep"),
                 strategy=StrategyConfig(stand_aside_without_edge=False))


def short_dir() -> Path:
    """Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="fm", dir="/tmp"))


def cfg_with(sock: Path | str, **control) -> Config:
    """A configuration with its control socket at `sock`, on the busy (deep) simulated market and quoting
    throughout: these tests need orders and fills to act on."""
    cfg = QUOTING
    return cfg.model_copy(update={"control": cfg.control.model_copy(update={"socket": str(sock), **control})})


async def started(seconds: float = 20, seed: int = 7, cfg: Config | None = None, audit: str | None = None):
    engine, venue = make_engine(cfg=cfg or QUOTING, seed=seed, audit_path=audit)
    await engine.venue.start()
    engine.start_ns = engine.clock.now_ns()
    engine.mode = engine.mode.RUNNING
    await _continue(engine, seconds)
    return engine, venue


# ---- live parameters ------------------------------------------------------------------------------------

def test_set_is_validated_by_the_config_models_and_every_attempt_is_audited(tmp_path):
    async def go():
        engine, _ = await started(audit=str(tmp_path / "audit.jsonl"))
        ctl = LocalControl(engine)
        ok = ctl.command("set", {"key": "strategy.risk_aversion", "value": "0.05"}, "test", "because")
        assert ok.ok and engine.cfg.strategy.risk_aversion == 0.05
        bad = [("strategy.order_levels", "0"), ("strategy.order_levels", "2.5"), ("risk.max_position_usdc", "abc"),
               ("risk.max_position_usdc", "nan"), ("run.venue", "sei"), ("strategy.nope", "1"),
               ("spread_multiplier", "9"), ("spread_multiplier", "true")]
        for key, value in bad:
            r = ctl.command("set", {"key": key, "value": value}, "test", "")
            assert not r.ok and r.result.startswith("refused: ") and key.split(".")[-1] in r.result, r
        assert engine.cfg.strategy.order_levels == 2 and engine.cfg.run.venue == "sim"
        return engine

    engine = asyncio.run(go())
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [x["action"] for x in lines] == ["set"] * 9
    assert lines[0]["who"] == "test" and lines[0]["why"] == "because" and "0.02 -> 0.05" in lines[0]["result"]
    assert all(x["result"].startswith("refused") for x in lines[1:])
    assert verify_audit_log(tmp_path / "audit.jsonl") == []
    del engine


def test_set_changes_the_quotes_at_the_next_cycle_and_not_before():
    async def go():
        engine, venue = await started(seconds=30)
        ctl = LocalControl(engine)
        before = {(o.side, o.level): o.lots for o in engine.oms.orders.values() if o.order_type is OrderType.LIMIT}
        mark = venue.mark()
        r = ctl.command("set", {"key": "strategy.order_amount_usdc", "value": 600}, "test", "")
        assert r.ok and venue.places_since(mark) == []  # nothing sent by the command itself
        batch = await engine.venue.next_batch()
        engine.on_batch(batch)  # the next quote cycle
        new = venue.places_since(mark)
        assert new, "the next cycle should re-quote at the new size"
        mid_px = engine.book.mid_ticks() * float(engine.instrument.price_tick)
        level0 = [p for p in new if p.lots and abs(p.lots * mid_px - 600) < 600 * 0.2]
        assert level0, (before, [(p.side, p.lots) for p in new])
        assert all(p.lots > max(before.values()) for p in new if p.side is Side.BUY and p.price_ticks
                   == max(x.price_ticks for x in new if x.side is Side.BUY))
    asyncio.run(go())


def test_spread_multiplier_is_set_exactly_and_widen_steps_from_it():
    async def go():
        engine, _ = await started()
        ctl = LocalControl(engine)
        assert ctl.command("set", {"key": "spread_multiplier", "value": "2"}).ok and engine.widen == 2.0
        ctl.command("widen")
        assert engine.widen == pytest.approx(2.25)
        ctl.command("tighten")
        assert engine.widen == pytest.approx(1.5)
        rows = {r.key: r for r in ctl.params()}
        assert rows["spread_multiplier"].modified and rows["spread_multiplier"].value == 1.5
    asyncio.run(go())


def test_saved_parameters_load_as_a_config_and_carry_no_secret(tmp_path):
    cfg = Config()
    secret = cfg.model_copy(update={"influx": cfg.influx.model_copy(update={"token": "tok-SECRET-123"}),
                                    "redis": cfg.redis.model_copy(update={"url": "redis://:pw-SECRET@h:6379/0"})})
    changed, widen = params.validate(secret, 1.0, "strategy.order_levels", "3")
    path = params.save(changed, secret, tmp_path / "saved.toml", widen)
    text = path.read_text()
    assert "SECRET" not in text
    assert "changed while trading: strategy.order_levels = 3 (started at 2)" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_config(path, environ={})
    assert loaded.strategy.order_levels == 3 and loaded.influx.token == "" and loaded.redis.url == Config().redis.url
    assert tomllib.loads(text)["strategy"]["order_levels"] == 3


# ---- the operator view and the codec ----------------------------------------------------------------------

def test_a_snapshot_survives_the_wire_exactly():
    async def go():
        engine, _ = await started(seconds=120, seed=3)
        ctl = LocalControl(engine)
        for _ in range(30):
            await _continue(engine, 1)
            ctl.tick()
        return ctl.snapshot(10)

    snap = asyncio.run(go())
    back = decode_snapshot(orjson.loads(encode(snap)))
    o, b = snap.extra["operator"], back.extra["operator"]
    assert o.fills and o.history and o.orders_done and o.params  # the series have content
    for f in dataclasses.fields(snap):
        if f.name not in ("extra",):
            assert _same(getattr(back, f.name), getattr(snap, f.name)), f.name
    for f in dataclasses.fields(o):
        assert _same(getattr(b, f.name), getattr(o, f.name)), f.name


def _same(a, b) -> bool:
    """Equality where NaN equals NaN (NaN travels as null)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_realised_plus_unrealised_is_the_total_and_fills_get_their_markout():
    async def go():
        engine, _ = await started(seconds=60, seed=3)
        ctl = LocalControl(engine)
        for _ in range(30):
            await _continue(engine, 1)
            ctl.tick()
        return engine, ctl.snapshot()

    engine, snap = asyncio.run(go())
    o = snap.extra["operator"]
    assert o.realised + o.unrealised == pytest.approx(snap.pnl.total, abs=1e-9)
    assert [f.seq for f in o.fills] == list(range(o.fills[0].seq, o.fills[-1].seq + 1))
    now = snap.ts_ns
    old = [f for f in o.fills if now - f.ts_ns > 7e9]
    assert old and all(f.markout_bps is not None for f in old)
    # a markout by hand: the mid 5 s later against the fill's price, in our favour
    f = old[-1]
    i = next(i for i, t in enumerate(engine.sample_ts) if t >= f.ts_ns + 5e9)
    assert f.markout_bps == pytest.approx(f.side * 1e4 * (engine.mid_history[i] - f.price_ticks) / f.price_ticks)
    for s in o.history:
        assert s.realised + s.unrealised == pytest.approx(s.total, abs=1e-9)


def test_commands_after_a_kill_are_refused_with_a_reason_and_audited(tmp_path):
    async def go():
        engine, venue = await started(audit=str(tmp_path / "a.jsonl"))
        ctl = LocalControl(engine)
        assert ctl.command("kill", None, "t", "").ok
        await _continue(engine, 5)
        out = {c: ctl.command(c, None, "t", "") for c in ("widen", "tighten", "pause", "resume", "flatten", "kill")}
        mark = venue.mark()
        await _continue(engine, 10)
        return engine, venue, out, mark

    engine, venue, out, mark = asyncio.run(go())
    assert all(not r.ok and r.kind == "refused" and "kill" in r.result for r in out.values()), out
    assert engine.widen == 1.0 and venue.places_since(mark) == []
    actions = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [a["action"] for a in actions] == ["kill", "widen", "tighten", "pause", "resume", "flatten", "kill"]
    assert all(a["result"].startswith("refused") for a in actions[1:])


# ---- the control socket ------------------------------------------------------------------------------------

class ServerThread:
    """A control server for an engine (built, not trading) on its own loop in a thread."""

    def __init__(self, sock: Path, stop=None, **control) -> None:
        configure_logging("error")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        cfg = cfg_with(sock, **control)
        engine, _ = make_engine(cfg)
        self.control = LocalControl(engine)
        self.control.request_stop = stop
        self.server = ControlServer(cfg.control, self.control)
        self.call(self.server.start())

    def call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _talk(path: Path, payload: bytes, timeout: float = 5.0) -> list[dict]:
    """Send bytes, half-close, read every answer line until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed before reading: its answer is still there to read
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return [orjson.loads(x) for x in data.splitlines() if x.strip()]


def test_socket_is_0600_in_a_0700_folder_and_gone_after_close():
    d = short_dir()
    os.chmod(d, 0o755)
    sock = d / "run" / "c.sock"
    srv = ServerThread(sock)
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert _talk(sock, b'{"id": 1, "cmd": "health"}\n')[0]["type"] == "reply"
    finally:
        srv.close()
    assert not sock.exists()


def test_a_folder_others_can_read_is_tightened_and_a_stale_socket_is_replaced_but_a_live_one_refused():
    d = short_dir()
    run = d / "run"
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run / "c.sock"))
    stale.close()  # a socket file nobody listens on: what kill -9 leaves
    assert prepare_socket_path(run / "c.sock") == run / "c.sock"
    assert not (run / "c.sock").exists() and stat.S_IMODE(run.stat().st_mode) == 0o700
    srv = ServerThread(run / "c.sock")
    try:
        with pytest.raises(ControlSocketError, match="served by another running process"):
            prepare_socket_path(run / "c.sock")
    finally:
        srv.close()
    (run / "file").write_text("x")
    with pytest.raises(ControlSocketError, match="not a socket"):
        prepare_socket_path(run / "file")
    with pytest.raises(ControlSocketError, match="longer than a Unix socket allows"):
        prepare_socket_path(d / ("x" * 120))


def test_a_peer_with_another_uid_is_refused_and_counted():
    """The check reads the peer's uid with SO_PEERCRED. As root, a child process drops to uid 65534 and
    connects through permissions opened for the test. Then, as any user, this process's own (real) credentials
    are checked against a server whose allowed uid is another."""
    d = short_dir()
    sock = d / "run" / "c.sock"
    if os.getuid() == 0:
        srv = ServerThread(sock)
        try:
            code = (f"import os, socket; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX); "
                    f"s.connect({str(sock)!r}); print(s.recv(4096).decode(), flush=True); s.sendall(b'{{\"cmd\": \"kill\"}}\\n')")
            os.chmod(d, 0o711)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
            assert "PermissionError" in out.stderr  # the 0700 folder and the 0600 socket keep it out
            os.chmod(sock.parent, 0o711)
            os.chmod(sock, 0o666)  # opened for the test, so that the peer check itself is what refuses
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
            assert "peer uid 65534 is not allowed" in out.stdout, out.stderr
            assert srv.server.rejected["peer_uid"] == 1
            assert not srv.control.engine.killed
        finally:
            srv.close()
    srv = ServerThread(d / "run" / "d.sock")
    srv.server.allowed_uids = {4242}  # as if the daemon ran as uid 4242: our real uid is then a stranger
    try:
        answer = _talk(d / "run" / "d.sock", b'{"cmd": "kill"}\n')
        assert answer[0]["type"] == "error" and f"peer uid {os.getuid()} is not allowed" in answer[0]["error"]
        assert srv.server.rejected["peer_uid"] == 1 and not srv.control.engine.killed
    finally:
        srv.close()


@pytest.fixture(scope="module")
def served() -> Iterator[ServerThread]:
    d = short_dir()
    srv = ServerThread(d / "c.sock", max_request_bytes=4096)
    try:
        yield srv
    finally:
        srv.close()


def _alive(srv: ServerThread) -> None:
    answer = _talk(srv.server.path, b'{"id": 7, "cmd": "status"}\n')
    assert answer[-1]["type"] == "reply" and answer[-1]["ok"] and answer[-1]["id"] == 7


REQUEST = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.floats(), st.none(), st.lists(st.integers())),
    "cmd": st.one_of(st.sampled_from(sorted(set(COMMANDS) - {"stop"}) + ["hello", "subscribe", "unsubscribe"]),
                     st.text(max_size=12), st.integers(), st.none()),
    "args": st.one_of(st.dictionaries(st.sampled_from(["key", "value", "path", "depth", "hz", "x"]), JSON_VALUES,
                                      max_size=3), JSON_VALUES),
    "who": st.one_of(st.text(max_size=300), st.integers()),
    "why": st.one_of(st.text(max_size=20), st.none()),
})
LINE = st.one_of(
    REQUEST.map(lambda r: json.dumps(r).encode()),  # stdlib json: integers beyond 64 bits too
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200).filter(lambda b: b"\n" not in b),
    st.text(max_size=100).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
)


@fuzz(150)
@given(lines=st.lists(LINE, min_size=1, max_size=4))
@example(lines=[b"\xff\xfe\x00"])
@example(lines=[b'{"cmd": "set", "args": {"key": "strategy.order_levels", "value": {"a": 1}}}'])
@example(lines=[b'{"cmd": "subscribe", "args": {"hz": 1e308, "depth": 99999999999999999999}}'])
@example(lines=[b'{"cmd": "snapshot", "args": {"depth": -1}}', b'{"cmd": "save", "args": {"path": 5}}'])
@example(lines=[b'[]', b'1', b'"x"', b'null', b'{"cmd": "pause", "args": []}'])
def test_hostile_socket_input_gets_answers_and_counted_rejections_never_a_crash(served, lines):
    rejected = sum(served.server.rejected.values())
    answers = _talk(served.server.path, b"\n".join(lines) + b"\n")
    blank = sum(1 for x in lines if not x.strip())
    assert len(answers) >= len(lines) - blank, (lines, answers)  # every line answered (subscribers get frames too)
    for a in answers:
        assert a["type"] in ("reply", "error", "snapshot"), a
        if a["type"] == "error":
            assert isinstance(a["error"], str) and a["error"]
    errors = sum(1 for a in answers if a["type"] == "error")
    assert sum(served.server.rejected.values()) - rejected >= errors  # every error line is a counted rejection
    _alive(served)


def test_an_overlong_request_is_refused_counted_and_the_connection_closed(served):
    before = served.server.rejected["too_long"]
    answers = _talk(served.server.path, b'{"cmd": "status", "why": "' + b"x" * 10_000 + b'"}\n')
    assert answers[-1]["type"] == "error" and "longer than 4096" in answers[-1]["error"]
    assert served.server.rejected["too_long"] == before + 1
    _alive(served)


def test_a_client_that_stops_reading_is_never_waited_for(served):
    """A subscriber that reads nothing: the publisher keeps going (frames skipped, counted), the engine is
    never blocked, other clients are served."""
    async def go():
        client = ControlClient(served.server.path)
        await client.connect()
        await client.subscribe(hz=100)
        client._reader_task.cancel()  # stop reading
        return client

    fut = asyncio.run_coroutine_threadsafe(go(), served.loop)
    client = fut.result(10)
    eng = served.control.engine
    t0 = time.monotonic()
    for _ in range(80):  # engine changes: every tick builds a frame for the silent client
        eng.version += 1
        time.sleep(0.05)
    assert time.monotonic() - t0 < 20
    _alive(served)
    served.call(client.close())


# ---- the shutdown path, in-process ------------------------------------------------------------------------------

class FailingVenue(RecordingSimVenue):
    """Fails once, on a chosen batch; works again afterwards (so orders can still be cancelled)."""

    fail_at = 150

    async def next_batch(self):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.fail_at:
            raise RuntimeError("venue connection reset (injected)")
        return await super().next_batch()


def _session(tmp: Path, venue_cls=RecordingSimVenue, duration=None, **control):
    from flashmm.core.engine import Engine

    configure_logging("error")
    cfg = cfg_with(tmp / "c.sock", summary_dir=str(tmp / "sum"), **control)
    venue = venue_cls(cfg.sim, cfg.instrument.instrument(), 7, speed=50)
    engine = Engine(cfg, venue, audit=AuditLog(str(tmp / "audit.jsonl")))
    return Session(cfg, engine, via="test", run_id="t", duration_s=duration, summary_path=str(tmp / "s.json")), venue


@pytest.mark.parametrize("how", ["stop command", "signal", "duration", "fault"])
def test_every_way_out_cancels_confirms_writes_the_summary_and_tells_the_audit(how):
    d = short_dir()

    async def go():
        session, venue = _session(d, FailingVenue if how == "fault" else RecordingSimVenue,
                                  duration=30 if how == "duration" else None)
        await session.open_control()
        session.install_signals()
        session.start_engine()
        if how in ("stop command", "signal"):
            while not session.engine.oms.orders:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            if how == "signal":
                os.kill(os.getpid(), signal.SIGHUP)
            else:
                reply = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: _talk(d / "c.sock", b'{"cmd": "stop", "who": "test"}\n'))
                assert reply[0]["ok"], reply
        report = await session.wait()
        session.remove_signals()
        return session, venue, report

    session, venue, report = asyncio.run(go())
    expected = {"stop command": "stop command", "signal": "signal SIGHUP", "duration": "--duration 30s reached",
                "fault": "engine fault: RuntimeError: venue connection reset (injected)"}[how]
    assert report.cause.startswith(expected), report.cause
    assert report.code == (ExitCode.FAULT if how == "fault" else ExitCode.OK)
    assert report.clean and venue.market.account_state().open_orders == {}
    assert venue.submitted  # it had been trading
    s = json.loads((d / "s.json").read_text())
    assert s["exit"]["cause"] == report.cause and s["exit"]["code"] == report.code and s["open_orders"] == 0
    assert len(list((d / "sum").glob("*.json"))) == 1
    audit = [json.loads(x) for x in (d / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["action"] == "shutdown" and audit[-1]["why"] == report.cause
    assert not (d / "c.sock").exists()


def test_a_failing_summary_folder_is_reported_and_the_rest_still_happens():
    d = short_dir()
    (d / "sum").write_text("a file where the folder should be")

    async def go():
        session, venue = _session(d, duration=10)
        await session.start()
        return await session.wait(), venue

    report, venue = asyncio.run(go())
    assert report.clean and venue.market.account_state().open_orders == {}
    assert any("summary" in e for e in report.errors) and report.summary_files == [str(d / "s.json")]
    assert json.loads((d / "s.json").read_text())["exit"]["errors"] == report.errors


# ---- flashmm ctl against a real daemon ---------------------------------------------------------------------------

def _daemon(d: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, FLASHMM_LOGGING__AUDIT_FILE=json.dumps(str(d / "audit.jsonl")),
               FLASHMM_CONTROL__SOCKET=json.dumps(str(d / "c.sock")), FLASHMM_MODEL__PATH='"none"',
               FLASHMM_LOGGING__FILE=json.dumps(str(d / "daemon.log")),
               # the busy market, quoting throughout (the measured half-spread may stand aside: NO EDGE)
               FLASHMM_SIM__PRESET='"deep"', FLASHMM_STRATEGY__STAND_ASIDE_WITHOUT_EDGE="false")
    return subprocess.Popen([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", *args], cwd=d, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ctl(d: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flashmm.cli", "ctl", "--socket", str(d / "c.sock"), *args],
                           capture_output=True, text=True, timeout=timeout)


def _wait(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_ctl_drives_a_daemon_and_health_is_its_healthcheck():
    d = short_dir()
    p = _daemon(d, "--speed", "5", "--summary", "run.json")
    try:
        _wait("the control socket", lambda: (d / "c.sock").exists())
        _wait("resting orders", lambda: json.loads(ctl(d, "status", "--json").stdout or "{}").get("open_orders", 0) > 0)
        h = ctl(d, "health")
        assert h.returncode == 0 and h.stdout.startswith("healthy"), h
        r = ctl(d, "--why", "test run", "set", "strategy.order_amount_usdc=400", "strategy.order_levels=1")
        assert r.returncode == 0 and "-> 400.0" in r.stdout and "-> 1" in r.stdout, r
        bad = ctl(d, "set", "strategy.order_levels=0")
        assert bad.returncode == 1 and "refused" in bad.stdout
        _wait("one level per side", lambda: json.loads(ctl(d, "status", "--json").stdout)["open_orders"] == 2)
        st_ = json.loads(ctl(d, "status", "--json").stdout)
        assert st_["modified"] == {"strategy.order_amount_usdc": 400.0, "strategy.order_levels": 1}
        assert ctl(d, "pause").returncode == 0
        _wait("PAUSED with no order", lambda: (lambda s: s["mode"] == "PAUSED" and s["open_orders"] == 0)(
            json.loads(ctl(d, "status", "--json").stdout)))
        assert "PAUSED" in ctl(d, "status").stdout
        saved = ctl(d, "save", str(d / "p.toml"))
        assert saved.returncode == 0 and load_config(d / "p.toml", environ={}).strategy.order_levels == 1
        assert ctl(d, "--why", "end of test", "stop").returncode == 0
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-2000:]
    s = json.loads((d / "run.json").read_text())
    assert s["exit"]["cause"].startswith("stop command (flashmm ctl (pid") and s["open_orders"] == 0
    assert s["control"]["parameters_changed"] == {"strategy.order_amount_usdc": 400.0, "strategy.order_levels": 1}
    audit = [json.loads(x) for x in (d / "audit.jsonl").read_text().splitlines()]
    assert [a["action"] for a in audit] == ["set", "set", "set", "pause", "save", "shutdown"]
    assert audit[0]["why"] == "test run" and audit[0]["who"].startswith("flashmm ctl (pid")
    gone = ctl(d, "health")
    assert gone.returncode == 2 and "no control socket" in gone.stderr


def test_ctl_without_a_daemon_says_so_in_one_line():
    d = short_dir()
    r = ctl(d, "status")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no control socket" in r.stderr


def test_an_attached_console_rebuilds_the_daemons_whole_series_from_frames_of_news():
    """After the first frame, frames carry only what is new; merged by number they must give exactly the
    daemon's own blotters, event log and histories, also across a dropped connection."""
    from tui.source import RemoteSource

    d = short_dir()

    async def go():
        session, _ = _session(d)  # the simulated market at 50x
        await session.open_control()
        session.start_engine()
        remote = RemoteSource(d / "c.sock", hz=10)
        remote.start()
        snaps = 0
        for i in range(60):  # 6 s wall: ~2 minutes of venue time
            await asyncio.sleep(0.1)
            if remote.snapshot() is not None:
                snaps += 1
            if i == 30 and remote.client is not None:  # the connection drops once
                remote.client.writer.transport.abort()
        while remote.client is None or remote.client.pending:
            await asyncio.sleep(0.05)
        session.request_stop("test over")  # the engine stops trading; frames of the final state go out
        while not session.engine._stop:  # (set by stop(): a plain flag)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        theirs = remote.snapshot()
        ours = session.control.snapshot()
        await remote.detach()
        await session.wait()
        return theirs, ours, snaps, remote

    theirs, ours, snaps, remote = asyncio.run(go())
    assert snaps > 20 and remote.frames > 20
    o, t = ours.extra["operator"], theirs.extra["operator"]
    assert len(o.fills) > 3 and len(ours.log) > 8 and len(o.history) > 60  # (something to merge, each kind)
    assert [f.seq for f in t.fills] == [f.seq for f in o.fills]
    diff = [(a, b) for a, b in zip(t.fills, o.fills, strict=True) if not _same(a, b)]
    assert not diff, [(a.seq, a.client_id, a.lots, a.markout_bps, b.client_id, b.lots, b.markout_bps) for a, b in diff]
    assert _same(t.orders_done, o.orders_done) and _same(t.history, o.history)
    assert _same(theirs.log, ours.log)


BEHIND = """
import asyncio, os, signal, sys, time
from tests.test_control import _session, short_dir

async def go():
    session, venue = _session(short_dir())
    venue.speed = venue.pacer.speed = 1e9  # always behind: every block is due already
    await session.open_control()
    session.install_signals()
    session.start_engine()
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
    report = await session.wait()
    print(report.cause, report.clean)

asyncio.run(go())
"""


def test_a_signal_reaches_the_shutdown_path_while_the_venue_runs_behind_its_pace():
    """A paced venue that cannot keep up used never to await, so nothing else on the loop ran: not the signal
    handler, not the control socket (seen as a test waiting for ever on a busy machine at speed=200). In a
    child process, so that the old behaviour fails by timeout instead of hanging the suite."""
    from tests.conftest import ROOT

    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-c", BEHIND], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the engine never let the SIGTERM handler run (the loop was starved)")
    assert r.stdout.split() == ["signal", "SIGTERM", "True"], r.stderr[-2000:]
    assert time.monotonic() - t0 < 60
