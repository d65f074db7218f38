"""FlashMM's daemon on the Citrex venue against `flashmm citrex-devnode`, both as real processes on 127.0.0.1.

The daemon signs with a key from the encrypted keystore, quotes, is filled by the double's scripted takers
(who sign their own orders), and its summary must agree with the double's own record of our account. With
Redis state, a `kill -9` mid-run and a restart recover a position equal to the double's. Paper trading runs
the same daemon on the double's public feed without sending one signed request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from flashmm.venues.citrex.signing import CitrexSigner, Domain
from flashmm.venues.keystore import create_keystore
from tests.conftest import ROOT
from tests.test_sei_e2e import _stop
from tests.test_state_redis import redis_server  # noqa: F401 (the real redis-server fixture)

KEY = "7" * 64
PASSPHRASE = "correct horse battery staple"
BIN = Path(sys.executable).parent
ADDRESS = CitrexSigner(KEY, Domain()).address


def _start_double(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([str(BIN / "flashmm"), "citrex-devnode", "--port", "0", "--takers", "3", "--makers", "2",
                             "--seed", "5", *extra], stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "double.err", "wb"), cwd=ROOT)
    line = proc.stdout.readline()
    assert line, (tmp_path / "double.err").read_text()
    return proc, json.loads(line)


def _admin(double: dict, path: str, body: dict | None = None) -> dict:
    base = double["url"].removesuffix("/v1")
    req = urllib.request.Request(f"{base}/devnode/{path}", data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _record(double: dict) -> tuple[Decimal, int]:
    """The double's record of our account: (position in SEI, open orders)."""
    acct = _admin(double, f"account?address={ADDRESS}&subAccountId=1")
    return Decimal(acct["position"]).scaleb(-18), acct["open_orders"]


def _env(tmp_path: Path, double: dict, **extra: str) -> dict[str, str]:
    keystore = tmp_path / "key.json"
    if not keystore.exists():
        create_keystore(keystore, KEY, PASSPHRASE, n=2**14)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHMM_")}
    env.update({"FLASHMM_CITREX__ENDPOINTS": json.dumps([double["url"]]), "FLASHMM_CITREX_KEYSTORE": str(keystore),
                "FLASHMM_CITREX_KEYSTORE_PASSPHRASE": PASSPHRASE, "FLASHMM_MODEL__PATH": "none",
                "FLASHMM_LOGGING__FILE": str(tmp_path / "daemon.log"),
                "FLASHMM_LOGGING__AUDIT_FILE": str(tmp_path / "audit.jsonl"), **extra})
    return env


def test_daemon_quotes_gets_filled_and_its_summary_matches_the_double(tmp_path: Path):
    double_proc, double = _start_double(tmp_path)
    try:
        summary_path = tmp_path / "summary.json"
        run = subprocess.run([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "citrex", "--duration", "8",
                              "--summary", str(summary_path)], env=_env(tmp_path, double), cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        s = json.loads(summary_path.read_text())
        position, open_orders = _record(double)
        stats = _admin(double, "stats")
    finally:
        _stop(double_proc)
    assert s["venue"] == "citrex" and s["fault"] == ""
    assert s["orders_placed"] > 0 and s["counters"]["acks"] > 0
    assert s["fills"] > 0, "the scripted takers should have filled some of our quotes"
    assert s["exit"]["orders_cancelled_cleanly"] and s["open_orders"] == 0 and open_orders == 0
    assert Decimal(str(s["position_base"])) == position  # the summary is the venue's own record
    assert s["counters"]["position_mismatches"] == 0 and s["counters"]["venue_rejects"] == 0
    vs = s["venue_status"]
    assert vs["replaces_sent"] > 0 and vs["polls"] > 10 and vs["poll_errors"] == 0 and vs["address"] == ADDRESS
    assert stats["by_path"].get("POST /v1/order/cancel-and-replace", 0) == vs["replaces_sent"]
    # the same summary keys as the daemon on the embedded simulator
    sim = tmp_path / "sim.json"
    subprocess.run([str(BIN / "flashmm-tui"), "--no-ui", "--duration", "2", "--speed", "50", "--summary", str(sim)],
                   env=_env(tmp_path, double), cwd=ROOT, check=True, capture_output=True, timeout=90)
    assert set(json.loads(sim.read_text())) == set(s)
    log = (tmp_path / "daemon.log").read_text()
    assert KEY not in log and PASSPHRASE not in log  # never logged


def test_kill_9_and_restart_recover_the_doubles_position(tmp_path: Path, redis_server):  # noqa: F811
    """The takers are paused before the kill, so no fill happens while the daemon is down: the position
    recovered from Redis must equal the double's exactly, and trading resumes without a pause."""
    double_proc, double = _start_double(tmp_path, "--taker-rate", "1.5")
    env = _env(tmp_path, double, FLASHMM_REDIS__ENABLED="true", FLASHMM_REDIS__URL=redis_server.url,
               FLASHMM_REDIS__FLUSH_INTERVAL_S="0.2")
    try:
        first = subprocess.Popen([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "citrex"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / "first.err", "wb"))
        log = tmp_path / "daemon.log"
        deadline = time.monotonic() + 60
        while _record(double)[0] == 0:  # until the takers have filled us
            assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "first.err").read_text()
            time.sleep(0.5)
        time.sleep(3)
        _admin(double, "participants", {"takers": False})
        time.sleep(1.5)  # the last fills reach the daemon and Redis (flush 0.2 s)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        position_at_kill, open_at_kill = _record(double)
        summary_path = tmp_path / "second.json"
        second = subprocess.Popen([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "citrex", "--duration", "8",
                                   "--summary", str(summary_path)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "second.err", "wb"))
        while b'"state_recovered"' not in log.read_bytes():
            assert time.monotonic() < deadline + 30 and second.poll() is None, (tmp_path / "second.err").read_text()
            time.sleep(0.1)
        _admin(double, "participants", {"takers": True})
        assert second.wait(60) == 0, (tmp_path / "second.err").read_text()[-2000:]
        s = json.loads(summary_path.read_text())
        final_position, final_open = _record(double)
    finally:
        _stop(double_proc)
    assert position_at_kill != 0 and open_at_kill > 0  # killed with a position and resting orders
    rec = s["recovered"]
    assert Decimal(rec["position_lots"]) == position_at_kill, rec  # lot = 1 SEI on the double's seiperp
    assert not [p for p in rec["problems"] if "position" in p], rec["problems"]
    assert s["breakers"]["venue_errors"]["trips"] == 0, (s["breakers"]["venue_errors"], rec)  # not paused
    assert s["orders_placed"] > 0 and s["counters"]["reconcile_mismatches"] >= 1  # the dead run's orders: cancelled
    assert Decimal(str(s["position_base"])) == final_position and final_open == 0


def test_paper_daemon_fills_on_the_public_feed_and_signs_nothing(tmp_path: Path):
    double_proc, double = _start_double(tmp_path, "--taker-rate", "2")
    try:
        env = _env(tmp_path, double)
        for name in ("FLASHMM_CITREX_KEYSTORE", "FLASHMM_CITREX_KEYSTORE_PASSPHRASE"):
            env.pop(name)  # paper trading needs no key
        summary_path = tmp_path / "paper.json"
        run = subprocess.run([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "citrex", "--paper", "--duration", "6",
                              "--summary", str(summary_path)], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        stats = _admin(double, "stats")
        position, open_orders = _record(double)
    finally:
        _stop(double_proc)
    s = json.loads(summary_path.read_text())
    assert s["venue"] == "citrex-paper" and s["venue_status"]["mode"] == "paper"
    assert s["fills"] > 0 and s["exit"]["orders_cancelled_cleanly"]
    assert stats["signed_requests"] == 0 and position == 0 and open_orders == 0
    assert set(stats["by_path"]) <= {"GET /v1/products", "GET /v1/depth", "GET /v1/trade-history"}, stats["by_path"]
