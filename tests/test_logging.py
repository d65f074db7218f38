"""Structured logs: JSON with run id and component, a rotating file, and no secret ever written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from flashmm.telemetry.logging import REDACTED, RotatingWriter, redact_secrets, register_secret

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
