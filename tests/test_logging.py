"""Structured logs: JSON with run id and component, a rotating file, and no secret ever written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from flashmm.telemetry.logging import REDACTED, RotatingWriter, redact_secrets, register_secret
from tests.conftest import ROOT

PRIVATE_KEY = "8f2b1c0d9e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c"
API_TOKEN = "fmtok_Zq81LxP0vKs92mRt"


def test_a_run_given_a_private_key_and_a_token_logs_neither(tmp_path):
    log = tmp_path / "flashmm.log"
    # the deep preset: fills within 30 s (on the thin default a trade prints about every 50 s)
    env = dict(os.environ, FLASHMM_INFLUX__TOKEN=API_TOKEN, FLASHMM_SEI_PRIVATE_KEY=PRIVATE_KEY,
               FLASHMM_LOGGING__FILE=json.dumps(str(log)), FLASHMM_LOGGING__AUDIT_FILE='""',
               FLASHMM_MODEL__PATH='"none"', FLASHMM_SIM__PRESET='"deep"')
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--duration", "30", "--speed", "500"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    text = log.read_text()
    assert PRIVATE_KEY not in text and API_TOKEN not in text
    assert PRIVATE_KEY not in r.stderr + r.stdout and API_TOKEN not in r.stderr + r.stdout
    lines = [json.loads(x) for x in text.splitlines()]
    config = next(x for x in lines if x["event"] == "config")
    assert config["influx"]["token"] == REDACTED  # it was logged, and redacted
    assert all(x.get("run_id") and x.get("component") for x in lines)
    assert any(x["event"] == "fill" and "client_id" in x for x in lines)  # orders are traceable by client id


def test_redaction_by_key_name_and_by_registered_value_everywhere():
    register_secret("s3cr3t-value-123")
    event = {"event": "x", "password": "hunter22", "nested": {"api_key": "abcdef123"},
             "msg": "url with s3cr3t-value-123 inside", "items": ["s3cr3t-value-123", 5], "count": 3}
    out = redact_secrets(None, "info", event)
    assert out["password"] == REDACTED and out["nested"]["api_key"] == REDACTED
    assert out["msg"] == f"url with {REDACTED} inside" and out["items"] == [REDACTED, 5]
    assert out["count"] == 3 and out["event"] == "x"


def test_the_log_file_rotates_by_size(tmp_path):
    w = RotatingWriter(str(tmp_path / "f.log"), max_bytes=1000, backups=2)
    for i in range(100):
        w.write(json.dumps({"i": i, "pad": "x" * 40}) + "\n")
    w.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["f.log", "f.log.1", "f.log.2"]
    assert all((tmp_path / n).stat().st_size <= 1000 for n in names)
    last = [json.loads(x)["i"] for x in (tmp_path / "f.log").read_text().splitlines()]
    assert last[-1] == 99  # the newest lines are in the live file, none lost within the kept files


def test_at_debug_level_an_orders_whole_lifecycle_shares_its_client_id(tmp_path):
    log = tmp_path / "d.log"
    env = dict(os.environ, FLASHMM_LOGGING__LEVEL='"debug"', FLASHMM_LOGGING__FILE=json.dumps(str(log)),
               FLASHMM_LOGGING__AUDIT_FILE='""', FLASHMM_MODEL__PATH='"none"', FLASHMM_SIM__PRESET='"deep"')
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--duration", "60", "--speed", "500"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    by_id: dict[int, list[str]] = {}
    for x in lines:
        if "client_id" in x:
            by_id.setdefault(x["client_id"], []).append(x["event"])
    filled = [cid for cid, ev in by_id.items() if "fill" in ev]
    assert filled
    assert all(ev[0] == "order_sent" and "order_acked" in ev for cid, ev in by_id.items() if cid in filled)
    # a cancel we asked for is confirmed after it was sent (a market order's unfilled rest is cancelled by
    # the venue without one)
    asked = [ev for ev in by_id.values() if "order_cancel_sent" in ev and "order_cancelled" in ev]
    assert asked and all(ev.index("order_cancel_sent") < ev.index("order_cancelled") for ev in asked)


# ---- issue 17: a sink that cannot write never raises into its caller ---------------------------------------

SIZE_LIMITED_WRITER = r"""
import json, resource, sys
from flashmm.telemetry.failsafe import SINKS, RotatingWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # files of this process stop at 4 KiB: EFBIG
w = RotatingWriter(sys.argv[1], max_bytes=1_000_000, backups=9, retry_s=0.0)
for i in range(200):
    w.write(json.dumps({"i": i, "pad": "x" * 40}) + "\n")
print(json.dumps(SINKS.status()["log"]), file=sys.stdout)
"""


def test_a_log_file_at_its_size_limit_sends_lines_to_stderr_counts_them_and_rotates_to_go_on(tmp_path):
    """A real size limit (RLIMIT_FSIZE, as `ulimit -f`): the write that meets it fails with EFBIG; that line
    goes to stderr whole, the failure is counted, and the next try rotates the file and writes on. Every line
    is somewhere: in the files (whole or torn by the limit) or on stderr."""
    log = tmp_path / "f.log"
    r = subprocess.run([sys.executable, "-c", SIZE_LIMITED_WRITER, str(log)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    state = json.loads(r.stdout)
    assert state["errors"] >= 1 and state["redirected"] >= 1 and state["lost"] == 0
    assert "EFBIG" in state["last_error"] and state["recoveries"] >= 1
    in_files = set()
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 4096
        for line in p.read_text().splitlines():
            try:
                x = json.loads(line)
            except json.JSONDecodeError:
                continue  # the part of a line the limit cut (the whole line is on stderr)
            if "i" in x:
                in_files.add(x["i"])
    on_stderr = {json.loads(x)["i"] for x in r.stderr.splitlines() if '"i"' in x}
    assert "log_sink_failed" in r.stderr
    assert in_files | on_stderr == set(range(200))  # none lost: 9 backups keep every file of this run


def test_a_full_disk_under_the_audit_log_never_stops_the_write_and_keeps_the_entry(tmp_path, capsys):
    """/dev/full answers every write with ENOSPC, as a full disk does: the audit write returns, the entry
    stays pending (written first once the file takes writes again) and a copy goes to stderr."""
    from flashmm.telemetry.failsafe import SINKS
    from flashmm.telemetry.logging import AuditLog, verify_audit_log

    log = AuditLog("/dev/full")
    entry = log.write("pause", "operator", "key", "paused, orders cancelled", 1)
    assert log.pending == [entry] and log.entries == [entry]
    assert SINKS.status()["audit"]["ok"] is False and "ENOSPC" in SINKS.status()["audit"]["last_error"]
    assert "audit_not_written" in capsys.readouterr().err
    log.path = tmp_path / "audit.jsonl"  # the disk has room again
    log.write("resume", "operator", "key", "running", 2)
    assert log.pending == [] and SINKS.status()["audit"]["ok"] is True
    assert [json.loads(x)["action"] for x in log.path.read_text().splitlines()] == ["pause", "resume"]
    assert verify_audit_log(log.path) == []


def test_a_log_file_on_a_device_is_written_and_never_rotated(tmp_path):
    from flashmm.telemetry.failsafe import RotatingWriter

    w = RotatingWriter("/dev/null", max_bytes=10_000, backups=2)
    for _ in range(1000):
        w.write("x" * 99 + "\n")
    assert os.path.exists("/dev/null") and not os.path.exists("/dev/null.1") and w.state.ok
