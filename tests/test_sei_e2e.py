"""FlashMM's daemon on the Sei venue against `flashmm sei-devnode`, both as real processes on 127.0.0.1.

The daemon signs with a key from an encrypted keystore, quotes, is filled by the node's scripted takers
(who sign their own transactions), and its summary must agree with the node's own record of our account.
With Redis state, a `kill -9` mid-run and a restart recover a position equal to the venue's record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import orjson

from flashmm.venues.keystore import create_keystore
from flashmm.venues.sei.rpc_client import EndpointPool, RPCClient
from flashmm.venues.sei.tx import Signer
from tests.conftest import ROOT
from tests.test_state_redis import redis_server  # noqa: F401 (the real redis-server fixture)

KEY = "3" * 64
CHAIN = "arctic-1"
CONTRACT = "sei1jst7ns46feh7q3qvttfq29m7u38ghjy5c0ja4j"
BIN = Path(sys.executable).parent


def _start_node(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    address = Signer(KEY, CHAIN).address
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHMM_SEI")}
    proc = subprocess.Popen([str(BIN / "flashmm"), "sei-devnode", "--port", "0", "--block-ms", "200", "--takers", "3",
                             "--makers", "2", "--seed", "5", "--fund", address, *extra],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "node.err", "wb"), env=env, cwd=ROOT)
    line = proc.stdout.readline()
    assert line, (tmp_path / "node.err").read_text()
    return proc, json.loads(line)


def _daemon_env(tmp_path: Path, node: dict, **extra: str) -> dict[str, str]:
    keystore = tmp_path / "key.json"
    if not keystore.exists():
        create_keystore(keystore, KEY, "correct horse battery staple", n=2**14)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHMM_")}
    env.update({"FLASHMM_SEI__ENDPOINTS": json.dumps([node["url"]]), "FLASHMM_SEI__CHAIN_ID": CHAIN,
                "FLASHMM_SEI_KEYSTORE": str(keystore), "FLASHMM_SEI_KEYSTORE_PASSPHRASE": "correct horse battery staple",
                "FLASHMM_LOGGING__FILE": str(tmp_path / "daemon.log"),
                "FLASHMM_LOGGING__AUDIT_FILE": str(tmp_path / "audit.jsonl"),
                "FLASHMM_CONTROL__SOCKET": _short_socket(tmp_path),
                "FLASHMM_CONTROL__SUMMARY_DIR": str(tmp_path / "summaries"), **extra})
    return env


def _short_socket(tmp_path: Path) -> str:
    """The daemon's control socket for this test (these daemons run from the repository root, where the
    default var/run/flashmm.sock could meet a developer's running daemon); Unix socket paths stay short."""
    path = tmp_path / "c.sock"
    if len(str(path).encode()) > 100:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="fm", dir="/tmp")) / "c.sock"
    return str(path)


def _venue_record(url: str) -> tuple[Decimal, int]:
    """The node's record of our account: (position, open orders), read through its JSON-RPC."""
    from cosmpy.protos.cosmwasm.wasm.v1 import query_pb2 as wasm

    from flashmm.venues.sei import schema as S

    async def main():
        rpc = RPCClient(EndpointPool([url]))
        address = Signer(KEY, CHAIN).address
        raw = await rpc.abci_query("/cosmwasm.wasm.v1.Query/SmartContractState", wasm.QuerySmartContractStateRequest(
            address=CONTRACT, query_data=orjson.dumps({"get_position": {"account": address}})))
        position = Decimal(orjson.loads(wasm.QuerySmartContractStateResponse.FromString(raw).data)["position"])
        orders = S.QueryGetOrdersResponse.FromString(await rpc.abci_query(
            S.query_path("GetOrders"), S.QueryGetOrdersRequest(contractAddr=CONTRACT, account=address)))
        await rpc.close()
        return position, len(orders.orders)

    return asyncio.run(main())


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_daemon_quotes_gets_filled_and_its_summary_matches_the_node(tmp_path: Path):
    node_proc, node = _start_node(tmp_path)
    try:
        summary_path = tmp_path / "summary.json"
        run = subprocess.run([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "sei", "--duration", "12",
                              "--summary", str(summary_path)], env=_daemon_env(tmp_path, node), cwd=ROOT,
                             capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr[-2000:]
        s = json.loads(summary_path.read_text())
        position, open_orders = _venue_record(node["url"])
    finally:
        _stop(node_proc)
    assert s["venue"] == "sei" and s["fault"] == ""
    assert s["orders_placed"] > 0 and s["counters"]["acks"] > 0
    assert s["fills"] > 0, "the scripted takers should have filled some of our quotes"
    assert s["exit"]["orders_cancelled_cleanly"] and s["open_orders"] == 0 and open_orders == 0
    assert Decimal(str(s["position_base"])) == position  # the summary is the venue's own record
    assert s["counters"]["position_mismatches"] == 0 and s["counters"]["venue_rejects"] == 0
    vs = s["venue_status"]
    assert vs["txs_sent"] > 0 and vs["txs_delivered"] == vs["txs_sent"] and vs["txs_lost"] == 0
    # the same summary keys as the daemon on the embedded simulator
    sim = tmp_path / "sim.json"
    subprocess.run([str(BIN / "flashmm-tui"), "--no-ui", "--duration", "2", "--speed", "50", "--summary", str(sim)],
                   env={**_daemon_env(tmp_path, node), "FLASHMM_MODEL__PATH": "none"}, cwd=ROOT, check=True,
                   capture_output=True, timeout=90)
    assert set(json.loads(sim.read_text())) == set(s)
    # the key never reached the log
    assert KEY not in (tmp_path / "daemon.log").read_text()


def test_kill_9_and_restart_recover_the_venues_position(tmp_path: Path, redis_server):  # noqa: F811
    """Blocks are produced by the test (manual mode), so no fill can happen while the daemon is down: the
    position recovered from Redis must then equal the venue's record exactly, and trading resumes."""
    node_proc, node = _start_node(tmp_path, "--manual-blocks")
    env = _daemon_env(tmp_path, node, FLASHMM_REDIS__ENABLED="true", FLASHMM_REDIS__URL=redis_server.url,
                      FLASHMM_REDIS__FLUSH_INTERVAL_S="0.2",
                      FLASHMM_REDIS__LEASE_TTL_S="2")  # the killed run's lease is waited out before the restart trades
    rpc_stop = False

    async def produce(n: int, every_s: float = 0.2) -> None:
        rpc = RPCClient(EndpointPool([node["url"]]))
        for _ in range(n):
            if rpc_stop:
                break
            await rpc.call("devnode_produce_block")
            await asyncio.sleep(every_s)
        await rpc.close()

    try:
        first = subprocess.Popen([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "sei"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / "first.err", "wb"))
        asyncio.run(produce(60))  # 12 s of blocks: quotes placed, takers fill some
        position_before, _ = _venue_record(node["url"])
        time.sleep(1.0)  # the journal's flush interval, twice over
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        position_at_venue, open_at_venue = _venue_record(node["url"])
        assert position_at_venue == position_before  # no block while it died: nothing moved
        summary_path = tmp_path / "second.json"
        second = subprocess.Popen([str(BIN / "flashmm-tui"), "--no-ui", "--venue", "sei", "--duration", "6",
                                   "--summary", str(summary_path)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "second.err", "wb"))
        log = tmp_path / "daemon.log"
        deadline = time.monotonic() + 60
        while b'"state_recovered"' not in log.read_bytes() and second.poll() is None:  # no block before recovery
            assert time.monotonic() < deadline, "the second run did not recover"
            time.sleep(0.1)
        while second.poll() is None and time.monotonic() < deadline:
            asyncio.run(produce(5))
        assert second.wait(30) == 0, (tmp_path / "second.err").read_text()[-2000:]
        s = json.loads(summary_path.read_text())
        final_position, final_open = _venue_record(node["url"])
    finally:
        rpc_stop = True
        _stop(node_proc)
    assert position_at_venue != 0, "the first run should have been filled before the kill"
    rec = s["recovered"]
    assert Decimal(rec["position_lots"]) == position_at_venue, rec
    assert not [p for p in rec["problems"] if "position" in p], rec["problems"]
    assert s["breakers"]["venue_errors"]["trips"] == 0, (s["breakers"]["venue_errors"], rec)  # not paused
    assert s["orders_placed"] > 0
    assert Decimal(str(s["position_base"])) == final_position and final_open == 0
    del open_at_venue
