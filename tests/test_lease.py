"""One instance per account (flashmm/ops/lease.py) and the start-up checks (flashmm/ops/preflight.py), against a
real redis-server and real files. The end-to-end cases (two daemons) are in tests/test_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from flashmm.config import Config, LoggingConfig, RedisConfig, RunConfig
from flashmm.ops.lease import Holder, InstanceError, LocalLock, RedisLease, StartupError, claim_instance
from flashmm.ops.preflight import check_paths, check_redis
from tests.conftest import ROOT
from tests.test_state_redis import redis_server  # noqa: F401 (the real redis-server fixture)

KEY = "t:sim:SEI/USDC:lease"


def _holder(run_id: str) -> Holder:
    return Holder.me(run_id)


# ---- local lock ------------------------------------------------------------------------------------------
def test_a_second_lock_on_one_account_is_refused_naming_the_holder(tmp_path):
    first = LocalLock(tmp_path, "sei:arctic-1:sei1abc", _holder("run-one"))
    first.acquire()
    with pytest.raises(InstanceError) as e:
        LocalLock(tmp_path, "sei:arctic-1:sei1abc", _holder("run-two")).acquire()
    msg = str(e.value)
    assert "\n" not in msg and "run-one" in msg and f"pid {os.getpid()}" in msg and str(first.path) in msg
    LocalLock(tmp_path, "sei:arctic-1:sei1other", _holder("run-three")).acquire()  # another account: free
    first.release()
    LocalLock(tmp_path, "sei:arctic-1:sei1abc", _holder("run-two")).acquire()  # released: free again


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    """The kernel drops a flock with its process: a lock file left by kill -9 never blocks a restart."""
    code = ("import sys, time; from pathlib import Path; from flashmm.ops.lease import LocalLock, Holder; "
            "LocalLock(Path(sys.argv[1]), 'acct', Holder.me('dead')).acquire(); print('held', flush=True); "
            "time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(InstanceError, match="run dead"):
            LocalLock(tmp_path, "acct", _holder("me")).acquire()
        p.kill()
        p.wait(10)
        LocalLock(tmp_path, "acct", _holder("me")).acquire()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


# ---- Redis lease -----------------------------------------------------------------------------------------
def test_a_live_lease_refuses_a_second_holder_at_once(redis_server):  # noqa: F811
    a = RedisLease(redis_server.url, KEY, _holder("run-a"), ttl_s=3.0)
    a.acquire()
    a.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(InstanceError) as e:
            RedisLease(redis_server.url, KEY, Holder("otherhost", 1, "run-b", time.time()), ttl_s=3.0).acquire()
        assert time.monotonic() - t0 < 0.5  # a holder that renews is not waited for
        assert "run-a" in str(e.value) and "expires in" in str(e.value) and "\n" not in str(e.value)
    finally:
        a.release()
    b = RedisLease(redis_server.url, KEY, _holder("run-b"), ttl_s=3.0)
    b.acquire()  # released: taken at once
    assert b.waited_s < 0.1
    b.release()


def test_a_lease_whose_holder_is_gone_is_taken_over_only_after_its_ttl(redis_server):  # noqa: F811
    """The holder stopped renewing (never started its thread: as a process killed on another host): the next
    instance waits until the key expires (not before), then takes it and says so."""
    ttl = 1.5
    gone = RedisLease(redis_server.url, KEY, Holder("otherhost", 1, "run-gone", time.time()), ttl_s=ttl)
    t_taken = time.monotonic()
    gone.acquire()
    time.sleep(2 * ttl / 3 + 0.3)  # silent for two renewal periods
    t0 = time.monotonic()
    nxt = RedisLease(redis_server.url, KEY, _holder("run-next"), ttl_s=ttl)
    nxt.acquire()
    t_over = time.monotonic()
    assert t_over - t_taken >= ttl - 0.01  # not before the lease expired
    assert 0 < nxt.waited_s <= ttl and t_over - t0 < ttl  # it waited, no longer than the TTL
    nxt.release()


def test_a_lease_that_vanishes_is_taken_again_and_one_taken_by_another_is_a_problem(redis_server):  # noqa: F811
    import redis

    a = RedisLease(redis_server.url, KEY, _holder("run-a"), ttl_s=3.0)
    a.acquire()
    db = redis.Redis.from_url(redis_server.url)
    db.flushall()  # a wipe
    assert a.renew_once() == 2 and a.retakes == 1 and a.problem == ""
    db.set(KEY, Holder("otherhost", 99, "run-x", time.time()).__dict__.__repr__())  # someone else's now
    assert a.renew_once() == 0 and "lost" in a.problem
    a.acknowledge()  # still someone else's: the problem stays
    assert a.problem
    db.delete(KEY)
    a.acknowledge()  # ours again
    assert a.problem == "" and db.get(KEY).decode() == a.value
    a.release()


def test_claim_instance_takes_both_and_a_second_claim_is_refused(redis_server, tmp_path):  # noqa: F811
    class Venue:
        name = "sei"
        account_id = "sei:arctic-1:sei1abc"

        class instrument:  # noqa: N801
            symbol = "SEI/USDC"

    cfg = Config(run=RunConfig(lock_dir=str(tmp_path)), redis=RedisConfig(enabled=True, url=redis_server.url,
                                                                          lease_ttl_s=2.0))
    guard = claim_instance(cfg, Venue, "run-1")
    try:
        with pytest.raises(InstanceError, match="lock file"):  # same host: the lock file names the holder first
            claim_instance(cfg, Venue, "run-2")
        other_host = Config(run=RunConfig(lock_dir=str(tmp_path / "elsewhere")), redis=cfg.redis)
        with pytest.raises(InstanceError, match="Redis lease flashmm:sei:SEI/USDC:lease"):
            claim_instance(other_host, Venue, "run-3")  # another host's lock dir: the lease still says no
        assert guard.problem == "" and guard.status()["lease_key"] == "flashmm:sei:SEI/USDC:lease"
    finally:
        guard.release()
    claim_instance(cfg, Venue, "run-4").release()


# ---- start-up checks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, expect", [
    ("file", "/proc/flashmm.log", "log file ([logging].file) /proc/flashmm.log: cannot be written"),
    ("audit_file", "{tmp}/plain/audit.jsonl", "audit log ([logging].audit_file) {tmp}/plain/audit.jsonl: cannot be "
                                               "written: {tmp}/plain is a file, not a folder"),
    ("file", "{tmp}", "is a folder, not a file"),
])
def test_a_log_or_audit_path_that_cannot_be_written_is_one_line(tmp_path, field, value, expect):
    (tmp_path / "plain").write_text("a file where a folder should be")
    cfg = Config(logging=LoggingConfig(**{field: value.format(tmp=tmp_path)}))
    with pytest.raises(StartupError) as e:
        check_paths(cfg, None)
    assert expect.format(tmp=tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_a_fifo_as_log_file_is_refused_and_a_device_is_accepted(tmp_path):
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(StartupError, match="not a regular file"):
        check_paths(Config(logging=LoggingConfig(file=str(tmp_path / "fifo.log"))), None)
    check_paths(Config(logging=LoggingConfig(file="/dev/null", audit_file="")), None)


def test_the_summary_folder_is_checked_before_the_run(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StartupError, match="summary folder .*plain is a file, not a folder"):
        check_paths(Config(logging=LoggingConfig(audit_file="")), str(tmp_path / "plain" / "run.json"))
    check_paths(Config(logging=LoggingConfig(audit_file="")), str(tmp_path / "new" / "run.json"))
    assert not list((tmp_path / "new").iterdir())  # the probe file is gone


def test_redis_refused_wrong_password_and_missing_password_are_told_apart(redis_server, tmp_path):  # noqa: F811
    from tests.test_state_redis import REDIS_SERVER, _free_port

    with pytest.raises(StartupError, match="connection refused"):
        check_redis(Config(redis=RedisConfig(enabled=True, url=f"redis://127.0.0.1:{_free_port()}/0")))
    port = _free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--requirepass", "s3cret-pass"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                check_redis(Config(redis=RedisConfig(enabled=True, url=f"redis://:s3cret-pass@127.0.0.1:{port}/0")))
                break
            except StartupError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with pytest.raises(StartupError) as e:
            check_redis(Config(redis=RedisConfig(enabled=True, url=f"redis://:wrong-pass@127.0.0.1:{port}/0")))
        assert "authentication failed" in str(e.value) and "wrong-pass" not in str(e.value) and "***" in str(e.value)
        with pytest.raises(StartupError, match="needs a password and the URL carries none"):
            check_redis(Config(redis=RedisConfig(enabled=True, url=f"redis://127.0.0.1:{port}/0")))
    finally:
        proc.terminate()
        proc.wait(10)
    check_redis(Config(redis=RedisConfig(enabled=True, url=redis_server.url)))
