"""InfluxDB export: line protocol from real engine metrics, the v1 path against a real influxd (Debian's 1.6,
read back with InfluxQL), the v2 path against a loopback HTTP endpoint that checks the request, an outage
(bounded queue, oldest dropped and counted, recovery without restart), and the hot path under a dead
endpoint (tick-to-quote p99 with and without the exporter)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flashmm.config import InfluxConfig
from flashmm.telemetry.influx import SCHEMA, InfluxExporter, metric_points, publish_metrics
from tests.conftest import make_engine, run_for

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step_s)
    return cond()


# ------------------------------------------------------------------ line protocol parsing (test side) --
def _split(text: str, sep: str) -> list[str]:
    return re.split(r"(?<!\\)" + re.escape(sep), text)


def _unescape(s: str) -> str:
    return s.replace(r"\,", ",").replace(r"\=", "=").replace(r"\ ", " ")


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, float | int], int]:
    key, fields, ts = _split(line, " ")
    parts = _split(key, ",")
    tags = dict(tuple(_unescape(x) for x in _split(p, "=")) for p in parts[1:])
    fs: dict[str, float | int] = {}
    for kv in _split(fields, ","):
        k, v = _split(kv, "=")
        fs[_unescape(k)] = int(v[:-1]) if v.endswith("i") else float(v)
    return _unescape(parts[0]), tags, fs, int(ts)


# ------------------------------------------------------------------ a real influxd 1.6 ------------------
@pytest.fixture(scope="module")
def influxd(tmp_path_factory):
    if not Path(INFLUXD).exists():
        pytest.fail(f"influxd not found ({INFLUXD}): install Debian's influxdb (scripts/test does)")
    from tests.faults_support import InfluxServer  # the same server the fault tests stop and restart

    server = InfluxServer(tmp_path_factory.mktemp("influxd"), INFLUXD)
    try:
        server.start()
    except AssertionError as exc:
        pytest.fail(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def influxql(url: str, q: str, db: str | None = None) -> dict:
    params = {"q": q, "epoch": "ns"}
    if db:
        params["db"] = db
    req = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(params).encode(), method="POST")
    with NO_PROXY.open(req, timeout=10) as r:
        out = json.loads(r.read())
    for res in out["results"]:
        assert "error" not in res, res
    return out


def test_v1_write_of_real_engine_metrics_reads_back_equal(influxd):
    db = "flashmm_test"
    influxql(influxd, f'CREATE DATABASE "{db}"')
    engine, _ = make_engine(seed=7)
    run_for(engine, 30)
    # tag values with a space, a comma and an equals sign check the escaping end to end
    tags = {"run_id": "run 1,a=b", "venue": engine.venue.name, "symbol": engine.instrument.symbol}
    ex = InfluxExporter(InfluxConfig(api="v1", url=influxd, database=db, batch_size=5, retry_max_backoff_s=0.2))
    ex.start()
    expected: list[str] = []
    for _ in range(4):
        run_for(engine, 5)
        lines = metric_points(engine, engine.clock.now_ns(), tags, exporter=ex)
        expected += lines
        ex.enqueue(lines)
    assert ex.stop(10.0), ex.stats()
    st = ex.stats()
    assert st["written_points"] == len(expected) and st["write_errors"] == 0 and st["dropped_points"] == 0, st
    assert st["writes"] >= len(expected) // 5  # batches of batch_size

    want = {}
    for line in expected:
        m, t, f, ts = parse_line(line)
        assert t == tags
        assert set(f) <= set(SCHEMA[m]), (m, set(f) - set(SCHEMA[m]))
        want[(m, ts)] = f
    assert {m for m, _ in want} >= {"pnl", "spread", "fills", "latency", "inventory", "breakers", "exporter"}

    got = {}
    out = influxql(influxd, "SELECT * FROM /.*/", db)
    for series in out["results"][0]["series"]:
        cols = series["columns"]
        for row in series["values"]:
            rec = dict(zip(cols, row))
            assert {k: rec[k] for k in tags} == tags
            got[(series["name"], rec["time"])] = {k: v for k, v in rec.items()
                                                   if k not in tags and k != "time" and v is not None}
    assert got.keys() == want.keys()
    for key, fields in want.items():
        assert got[key] == pytest.approx(fields, rel=0, abs=0), key  # float64 round trip is exact
    # the point values are the engine's own metrics
    s = engine.summary()
    last_ts = max(ts for m, ts in want if m == "pnl")
    assert got[("pnl", last_ts)]["total"] == s["pnl_usdc"]
    assert got[("fills", last_ts)]["fills"] == s["fills"]
    # the simulated market sits at one tick: the improvement KPI is undefined there and left out of the point
    assert got[("spread", last_ts)].get("spread_improvement_pct") == s["spread_improvement_pct"]
    assert got[("spread", last_ts)]["market_spread_ticks"] == s["market_spread_ticks"]
    fq = got.get(("fill_quality", last_ts), {})
    assert fq.get("orders_per_fill") == s["orders_per_fill"] and fq.get("post_only_rejects") == s["post_only_rejects"]
    assert fq.get("markout_1s_bps") == s["markout_bps"]["1s"]
    assert got[("latency", last_ts)]["tick_to_quote_p99_us"] == s["tick_to_quote_us"]["p99"]
    assert got[("inventory", last_ts)]["position_utilisation_pct"] == pytest.approx(
        abs(s["position_usdc"]) / engine.cfg.risk.max_position_usdc * 100)
    # no model loaded, and none wanted ([strategy].alpha = online): the model breaker is ok
    assert got[("breakers", last_ts)]["model"] == 0
    st = got[("strategy", last_ts)]
    assert st["half_spread_bps"] == s["strategy_state"]["half_spread_bps"] and st["regime"] in (0, 1, 2)


# ------------------------------------------------------------------ a loopback HTTP endpoint ------------
class Endpoint:
    """An HTTP server on 127.0.0.1 recording every request; `status` decides the answer."""

    def __init__(self, port: int = 0, status: int = 204) -> None:
        self.requests: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                u = urllib.parse.urlsplit(self.path)
                outer.requests.append({"path": u.path, "query": dict(urllib.parse.parse_qsl(u.query)),
                                       "headers": dict(self.headers), "body": body.decode()})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def lines(self) -> list[str]:
        return [ln for r in self.requests for ln in r["body"].split("\n") if ln]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TOKEN = "tok-Secret-0123456789"


def test_v2_write_request_has_path_org_bucket_token_and_line_protocol():
    ep = Endpoint()
    try:
        engine, _ = make_engine(seed=7)
        run_for(engine, 20)
        cfg = InfluxConfig(api="v2", url=ep.url, org="acme org", bucket="mm/bucket", token=TOKEN, batch_size=4)
        ex = InfluxExporter(cfg)
        lines = metric_points(engine, engine.clock.now_ns(), {"run_id": "r1", "venue": "sim", "symbol": "SEI/USDC"})
        ex.enqueue(lines)
        ex.start()
        assert wait_for(lambda: len(ep.lines()) == len(lines)), ex.stats()
        assert ex.stop(5.0)
        assert len(ep.requests) == -(-len(lines) // 4)
        for r in ep.requests:
            assert r["path"] == "/api/v2/write"
            assert r["query"] == {"org": "acme org", "bucket": "mm/bucket", "precision": "ns"}
            assert r["headers"]["Authorization"] == f"Token {TOKEN}"
            assert r["headers"]["Content-Type"].startswith("text/plain")
        assert ep.lines() == lines
        for ln in ep.lines():
            m, tags, fields, ts = parse_line(ln)
            assert tags == {"run_id": "r1", "venue": "sim", "symbol": "SEI/USDC"} and ts == engine.clock.now_ns()
            assert fields and set(fields) <= set(SCHEMA[m])
        # the token never shows in the exporter's repr or stats
        assert TOKEN not in repr(ex) and TOKEN not in json.dumps(ex.stats()) and TOKEN not in repr(cfg)
    finally:
        ep.close()


def test_v2_malformed_batch_is_dropped_and_counted_not_retried_forever():
    ep = Endpoint(status=400)
    try:
        ex = InfluxExporter(InfluxConfig(api="v2", url=ep.url, token=TOKEN, batch_size=10))
        ex.start()
        ex.enqueue([f"m v={i} {i}" for i in range(5)])
        assert wait_for(lambda: ex.stats()["rejected_points"] == 5)
        ep.status = 204
        ex.enqueue(["m v=9 9"])
        assert wait_for(lambda: ex.stats()["written_points"] == 1)
        ex.stop(2.0)
        assert ex.stats()["write_errors"] == 1 and ex.stats()["queued_points"] == 0
    finally:
        ep.close()


def test_outage_keeps_points_drops_oldest_beyond_bound_and_recovers_without_restart():
    port = free_port()  # nothing listens yet: connection refused
    cfg = InfluxConfig(api="v2", url=f"http://127.0.0.1:{port}", token=TOKEN, batch_size=7, queue_max_points=50,
                       timeout_s=1.0, retry_max_backoff_s=0.2)
    ex = InfluxExporter(cfg)
    ex.start()
    thread = ex._thread
    points = [f"outage v={i}i {1_700_000_000_000_000_000 + i}" for i in range(80)]
    for i in range(0, 80, 8):  # arrives a second at a time, as from publish_metrics
        ex.enqueue(points[i:i + 8])
        time.sleep(0.02)
    assert wait_for(lambda: ex.stats()["write_errors"] >= 3)
    st = ex.stats()
    assert st["queued_points"] + 7 >= 50 and st["queued_points"] <= 50  # one batch may be in flight
    ep = Endpoint(port=port)
    try:
        assert wait_for(lambda: ex.stats()["queued_points"] == 0 and len(ep.lines()) == 50, 10.0), ex.stats()
        st = ex.stats()
        assert st["dropped_points"] == 30, st
        assert ep.lines() == points[30:]  # the newest 50, in order: the oldest were dropped
        assert ex._thread is thread and thread.is_alive()  # recovered on its own
        assert st["backoff_s"] == 0.0
        ex.stop(2.0)
    finally:
        ep.close()


def test_publish_metrics_task_enqueues_every_interval_and_once_more_on_cancel():
    ep = Endpoint()
    try:
        engine, _ = make_engine(seed=7)
        ex = InfluxExporter(InfluxConfig(api="v2", url=ep.url, token=TOKEN))
        ex.start()
        tags = {"run_id": "r2", "venue": "sim", "symbol": "SEI/USDC"}

        async def main() -> None:
            pub = asyncio.create_task(publish_metrics(engine, ex, 0.05, tags))
            await asyncio.sleep(0)  # the publisher starts (its baseline) before the run, however short the run
            await engine.run(300)  # full speed; the venue yields between blocks
            await asyncio.sleep(0.3)
            pub.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pub

        asyncio.run(main())
        assert ex.stop(5.0)
        pts = [parse_line(ln) for ln in ep.lines()]
        by_m: dict[str, list] = {}
        for m, t, f, ts in pts:
            assert t == tags and set(f) <= set(SCHEMA[m])
            by_m.setdefault(m, []).append((ts, f))
        assert len(by_m["pnl"]) >= 6  # >= 0.3 s / 0.05 s, plus the final set on cancel
        assert by_m["pnl"][-1][0] == engine.clock.now_ns()
        assert by_m["pnl"][-1][1]["total"] == engine.summary()["pnl_usdc"]
        assert "tick_to_quote_p99_us_interval" in {k for _, f in by_m["latency"] for k in f}
    finally:
        ep.close()


def test_first_interval_latency_covers_the_samples_since_the_publisher_started():
    """The first point's interval percentiles are those recorded between the publisher's start and its
    first tick: not empty (a short run finished before the first tick once lost them all) and not mixed
    with what was recorded before it started."""
    ep = Endpoint()
    try:
        engine, _ = make_engine(seed=7)
        for _ in range(50):
            engine.tick_to_quote.record(900_000_000)  # before the publisher: 900 ms, must not show
        ex = InfluxExporter(InfluxConfig(api="v2", url=ep.url, token=TOKEN))
        ex.start()
        tags = {"run_id": "r3", "venue": "sim", "symbol": "SEI/USDC"}

        async def main() -> None:
            pub = asyncio.create_task(publish_metrics(engine, ex, 0.2, tags))
            await asyncio.sleep(0)  # the publisher starts and takes its baseline
            for _ in range(100):
                engine.tick_to_quote.record(100_000)  # 100 us, before its first tick
            await asyncio.sleep(0.3)  # one tick
            pub.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pub

        asyncio.run(main())
        assert ex.stop(5.0)
        lat = [f for m, _, f, _ in (parse_line(ln) for ln in ep.lines()) if m == "latency"]
        assert len(lat) == 2  # the tick and the final set on cancel
        assert 90 <= lat[0]["tick_to_quote_p99_us_interval"] <= 110, lat[0]
        assert "tick_to_quote_p99_us_interval" not in lat[1]  # nothing recorded after the tick
    finally:
        ep.close()


# ------------------------------------------------------------------ the hot path under a dead endpoint --
def _t2q_p99(seconds: float, exporter: InfluxExporter | None) -> tuple[float, int]:
    """Seeded engine for `seconds` of venue time; with an exporter, points are enqueued every venue second."""
    engine, _ = make_engine(seed=7)
    run_for(engine, 1)
    tags = {"run_id": "lat", "venue": "sim", "symbol": "SEI/USDC"}
    enqueued = 0

    async def drive() -> None:
        nonlocal enqueued
        now = engine.clock.now_ns()
        end, next_pub = now + int(seconds * 1e9), now + 1_000_000_000
        while now < end:
            batch = await engine.venue.next_batch()
            engine.on_batch(batch)
            now = engine.clock.now_ns()
            if exporter is not None and now >= next_pub:
                next_pub += 1_000_000_000
                lines = metric_points(engine, now, tags, exporter=exporter)
                exporter.enqueue(lines)
                enqueued += len(lines)

    asyncio.run(drive())
    return engine.tick_to_quote.percentile(99) / 1e3, enqueued


def test_dead_endpoint_does_not_move_tick_to_quote_p99_and_drops_are_counted():
    dead = free_port()
    without, with_ = [], []
    exporters = []
    for _ in range(3):  # alternate, so drift in machine load hits both arms alike
        without.append(_t2q_p99(600, None)[0])
        # a short backoff keeps the flusher retrying (and competing for the GIL) through the whole run
        ex = InfluxExporter(InfluxConfig(api="v1", url=f"http://127.0.0.1:{dead}", batch_size=100,
                                         queue_max_points=1000, timeout_s=0.5, retry_max_backoff_s=0.02))
        ex.start()
        p99, enqueued = _t2q_p99(600, ex)
        with_.append(p99)
        assert ex._thread.is_alive()
        ex.stop(0.5)
        st = ex.stats()
        assert st["written_points"] == 0 and st["write_errors"] >= 1
        assert st["queued_points"] <= 1000
        assert st["dropped_points"] == enqueued - st["queued_points"] > 0, st
        exporters.append(st)
    p_without, p_with = statistics.median(without), statistics.median(with_)
    print(f"\ntick-to-quote p99 over 600 venue seconds (seed 7), median of 3: without exporter {p_without:.1f} us, "
          f"with exporter on a dead endpoint {p_with:.1f} us; runs without {without}, with {with_}; "
          f"write_errors {[s['write_errors'] for s in exporters]}, dropped {[s['dropped_points'] for s in exporters]}")
    assert p_with < 2 * p_without + 200, (without, with_)


def test_the_daemon_exports_its_metrics_to_a_real_influxd(influxd, tmp_path):
    """The wiring end to end: flashmm-tui --no-ui with [influx] enabled (v1) writes every second."""
    import os
    import sys

    influxql(influxd, "CREATE DATABASE daemon_e2e")
    env = dict(os.environ, FLASHMM_INFLUX__ENABLED="true", FLASHMM_INFLUX__API='"v1"',
               FLASHMM_INFLUX__URL=json.dumps(influxd), FLASHMM_INFLUX__DATABASE='"daemon_e2e"',
               FLASHMM_INFLUX__INTERVAL_S="0.2", FLASHMM_LOGGING__AUDIT_FILE='""', FLASHMM_MODEL__PATH='"none"')
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--duration", "60", "--speed", "30",
                        "--summary", "s.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    out = influxql(influxd, "SELECT last(total), count(total) FROM pnl", db="daemon_e2e")
    series = out["results"][0]["series"][0]
    cols = series["columns"]
    last_total = series["values"][0][cols.index("last")]
    assert series["values"][0][cols.index("count")] >= 5  # about one point per 0.2 s of a 2 s run
    assert last_total == pytest.approx(summary["pnl_usdc"], abs=0.05)  # the final point matches the summary
    tags = influxql(influxd, 'SHOW TAG VALUES FROM pnl WITH KEY = "venue"', db="daemon_e2e")
    assert tags["results"][0]["series"][0]["values"][0][1] == "sim"
