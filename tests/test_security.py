"""Security items: no secret committed, every listener on 127.0.0.1, no secret in exported metrics,
config files with credentials not readable by others, and a tamper-evident audit log."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flashmm.config import Config, InfluxConfig
from flashmm.ops.security import find_secrets, is_placeholder, verify_audit_log, world_readable_secret_warning
from flashmm.telemetry import logging as tlog
from flashmm.telemetry.influx import TAG_KEYS, InfluxExporter, default_tags, metric_points
from flashmm.telemetry.logging import AUDIT_GENESIS, AuditLog
from flashmm.venues.sei.rpc_server import SeiRPCServer
from tests.conftest import make_engine, run_for

REPO = Path(__file__).resolve().parents[1]


# ============================================================== committed secrets ==================
def committed_files() -> list[str]:
    """Every file git tracks, plus new files not ignored (so a secret is caught before its first commit)."""
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [f for f in r.stdout.splitlines() if (REPO / f).is_file()]


def scanned_text_files() -> dict[str, str]:
    """The files the rule applies to: text files outside tests/ (tests create throwaway keys on purpose).
    A file with a NUL byte or invalid UTF-8 is binary (the model, images) and is not scanned."""
    out = {}
    for name in committed_files():
        if name.startswith("tests/"):
            continue
        data = (REPO / name).read_bytes()
        if b"\0" in data:
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


def test_no_password_token_or_private_key_is_committed():
    files = scanned_text_files()
    # the deployment files the rule is meant for are among those scanned
    assert {"docker-compose.yml", ".env.example", "config.toml"} <= set(files)
    assert any(f.startswith("scripts/") for f in files) and "flashmm/ops/security.py" in files
    found = [hit for name, text in sorted(files.items()) for hit in find_secrets(text, name)]
    assert found == []


@pytest.mark.parametrize(("line", "name"), [
    ('password = "hunter2"', "x.toml"),
    ("REDIS_PASSWORD=changeme", ".env.example"),
    ("      GF_SECURITY_ADMIN_PASSWORD: admin", "docker-compose.yml"),
    ("      INFLUXDB_TOKEN: ${GRAFANA_INFLUX_TOKEN:-sometoken}", "docker-compose.yml"),  # a literal default
    ('url = "redis://:pw123456@127.0.0.1:6379/0"', "config.toml"),
    ('    api_key: str = "abc123"', "flashmm/x.py"),
    ('DEFAULT = {"secret": "s3"}', "flashmm/x.py"),
    ("export API_TOKEN=xyz", "scripts/run"),
    ('KEY = "0x' + "ab" * 32 + '"', "flashmm/x.py"),
    ("-----BEGIN EC PRIVATE KEY-----", "scripts/key.pem"),
])
def test_the_rule_finds_committed_secrets(line, name):
    [hit] = find_secrets(line, name)
    assert hit.startswith(f"{name}:1: ")
    for value in ("hunter2", "changeme", "sometoken", "pw123456", "abc123", "xyz"):
        assert value not in hit  # the finding names the place, never the value


@pytest.mark.parametrize(("line", "name"), [
    ("INFLUXDB_ADMIN_PASSWORD=", ".env.example"),
    ('token = ""', "config.toml"),
    ("      DOCKER_INFLUXDB_INIT_PASSWORD: ${INFLUXDB_ADMIN_PASSWORD:?set INFLUXDB_ADMIN_PASSWORD in .env}",
     "docker-compose.yml"),
    ("  FLASHMM_INFLUX__TOKEN: ${FLASHMM_INFLUX_TOKEN:-${INFLUXDB_ADMIN_TOKEN:?set it in .env}}", "docker-compose.yml"),
    ("  FLASHMM_REDIS__URL: redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0", "docker-compose.yml"),
    ("      token: $INFLUXDB_TOKEN", "scripts/grafana/x.yaml"),
    ('ENV_PRIVATE_KEY = "FLASHMM_SEI_PRIVATE_KEY"', "flashmm/x.py"),  # the name of a variable, not a key
    ("        self.token = cfg.token", "flashmm/x.py"),  # an expression, not a literal
    ("FLASHMM_SEI_PRIVATE_KEY=<64 hex characters>", "README.md"),
    ("model sha256 " + "ab" * 32, "models/README.md"),
    ('url = "redis://127.0.0.1:6379/0"', "config.toml"),
])
def test_the_rule_leaves_placeholders_and_code_alone(line, name):
    assert find_secrets(line, name) == []


def test_placeholders():
    assert is_placeholder("${A}") and is_placeholder("${A:?set A}") and is_placeholder("$A")
    assert is_placeholder("${A:-${B:?x y}}") and is_placeholder("<hex>") and is_placeholder("  ")
    assert not is_placeholder("${A:-flashmm}") and not is_placeholder("changeme") and not is_placeholder("Abc_D")


# ============================================================== listeners ==========================
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# call name -> where its host is: ("arg", i) positional i or keyword `kw`; ("tuple", i) the first element of
# the address tuple in positional i. A call without a host argument listens on every interface by default.
LISTENER_CALLS = {
    "start_server": ("arg", 1, "host"), "create_server": ("arg", 1, "host"), "serve": ("arg", 1, "host"),
    "TCPSite": ("arg", 1, "host"), "run_app": ("arg", -1, "host"), "start_http_server": ("arg", 1, "addr"),
    "make_server": ("arg", 0, "host"), "bind": ("tuple", 0, ""), "HTTPServer": ("tuple", 0, ""),
    "ThreadingHTTPServer": ("tuple", 0, ""), "TCPServer": ("tuple", 0, ""), "ThreadingTCPServer": ("tuple", 0, ""),
    "UDPServer": ("tuple", 0, ""),
}


def _host_expr(call: ast.Call, kind: str, index: int, kw: str) -> ast.expr | None:
    for k in call.keywords:
        if kw and k.arg == kw:
            return k.value
    if kind == "arg":
        return call.args[index] if 0 <= index < len(call.args) else None
    if index < len(call.args) and isinstance(call.args[index], ast.Tuple) and call.args[index].elts:
        return call.args[index].elts[0]
    return None


def _assigned_values(tree: ast.AST, expr: ast.expr) -> list[ast.expr]:
    """Every value assigned in the module to `name` or `self.attr` (the host expression's origin)."""
    values = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        else:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for tgt in targets:
            same = (isinstance(expr, ast.Name) and isinstance(tgt, ast.Name) and tgt.id == expr.id) or (
                isinstance(expr, ast.Attribute) and isinstance(tgt, ast.Attribute) and tgt.attr == expr.attr)
            if same and value is not None:
                values.append(value)
    return values


def listener_problems(source: str, name: str) -> tuple[list[str], int]:
    """(problems, listener calls found) for one Python module: each listener's host must be a loopback
    literal, or a name / self attribute whose every assignment in the module is one."""
    tree = ast.parse(source, name)
    problems, calls = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::"):
            problems.append(f"{name}:{node.lineno}: the literal {node.value!r} (every interface)")
        if not isinstance(node, ast.Call):
            continue
        fname = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if fname not in LISTENER_CALLS:
            continue
        calls += 1
        host = _host_expr(node, *LISTENER_CALLS[fname])
        if host is None:
            problems.append(f"{name}:{node.lineno}: {fname}() without a host listens on every interface")
            continue
        origins = [host] if isinstance(host, ast.Constant) else _assigned_values(tree, host)
        if not origins or not all(isinstance(v, ast.Constant) and v.value in LOOPBACK for v in origins):
            problems.append(f"{name}:{node.lineno}: {fname}() host {ast.unparse(host)} is not provably loopback")
    return problems, calls


def test_every_listener_in_the_package_binds_loopback():
    sources = {f: (REPO / f).read_text() for f in committed_files()
               if f.endswith(".py") and not f.startswith("tests/")}
    assert "flashmm/venues/sei/rpc_server.py" in sources
    results = {f: listener_problems(src, f) for f, src in sources.items()}
    assert [p for probs, _ in results.values() for p in probs] == []
    assert results["flashmm/venues/sei/rpc_server.py"][1] >= 1  # the check saw the node double's listener
    assert results["flashmm/venues/citrex/devnode.py"][1] >= 1  # and the Citrex double's


@pytest.mark.parametrize("source", [
    "import asyncio\nasync def f(cb):\n    await asyncio.start_server(cb, '0.0.0.0', 1)\n",
    "import asyncio\nasync def f(cb):\n    await asyncio.start_server(cb, port=1)\n",
    "def f(sock):\n    sock.bind(('', 0))\n",
    "class S:\n    def __init__(self, host):\n        self.host = host\n"
    "    async def go(self, cb):\n        import asyncio\n        await asyncio.start_server(cb, self.host, 0)\n",
    "import websockets\nasync def f(h):\n    await websockets.serve(h, host=HOST, port=1)\nHOST = 'example.com'\n",
])
def test_the_listener_check_catches_a_public_or_unproven_bind(source):
    problems, calls = listener_problems(source, "m.py")
    assert calls >= 1 or "0.0.0.0" in source
    assert problems


def test_the_listener_check_accepts_a_loopback_attribute():
    source = ("class S:\n    def __init__(self):\n        self.host = '127.0.0.1'\n"
              "    async def go(self, cb):\n        import asyncio\n"
              "        await asyncio.start_server(cb, self.host, 0)\n")
    assert listener_problems(source, "m.py") == ([], 1)


def test_the_node_double_listens_on_loopback_only_by_default():
    async def main() -> list:
        server = SeiRPCServer()
        await server.start()
        try:
            return [s.getsockname() for s in server._server.sockets]
        finally:
            await server.stop()

    names = asyncio.run(main())
    assert names and all(n[0] == "127.0.0.1" for n in names)


# ============================================================== exported metrics ===================
def test_metric_points_and_tags_never_carry_a_secret():
    token, password = "influx-tok-" + os.urandom(8).hex(), "influx-pw-" + os.urandom(8).hex()
    cfg = InfluxConfig(enabled=True, token=token, username="flashmm", password=password)
    exporter = InfluxExporter(cfg)
    assert token in tlog._secrets and password in tlog._secrets  # registered for log redaction too
    assert token not in repr(exporter) and password not in repr(exporter)
    engine, _ = make_engine(Config())
    run_for(engine, 30)
    tags = default_tags(engine, "run-1")
    assert set(tags) == set(TAG_KEYS)
    lines = metric_points(engine, engine.clock.now_ns(), tags, exporter=exporter)
    assert len(lines) >= 6 and all(line.count(" ") >= 2 for line in lines)
    text = "\n".join(lines) + json.dumps(tags)
    leaked = [s for s in tlog._secrets if s in text]
    assert leaked == []
    # the same check finds a secret when one is there (a tag value that is a registered secret)
    bad = metric_points(engine, engine.clock.now_ns(), {**tags, "run_id": token}, exporter=exporter)
    assert any(token in line for line in bad)


# ============================================================== world-readable config ==============
def _config(tmp_path, text: str, mode: int) -> Path:
    p = tmp_path / "flashmm.toml"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_a_world_readable_config_with_a_token_is_warned_about_without_its_value(tmp_path):
    p = _config(tmp_path, '[influx]\nurl = "http://127.0.0.1:8086"\ntoken = "tok-Zq81LxP0"\n', 0o644)
    warning = world_readable_secret_warning(p)
    assert warning and str(p) in warning and "influx.token" in warning and f"chmod 600 {p}" in warning
    assert "0644" in warning and "tok-Zq81LxP0" not in warning


def test_a_url_with_a_password_counts_as_a_credential(tmp_path):
    p = _config(tmp_path, '[redis]\nenabled = true\nurl = "redis://:s3cr3t99@127.0.0.1:6379/0"\n', 0o604)
    warning = world_readable_secret_warning(p)
    assert warning and "redis.url" in warning and "s3cr3t99" not in warning


def test_a_private_config_or_one_without_credentials_is_not_warned_about(tmp_path):
    assert world_readable_secret_warning(_config(tmp_path, '[influx]\ntoken = "tok-Zq81LxP0"\n', 0o600)) is None
    assert world_readable_secret_warning(_config(tmp_path, '[influx]\ntoken = "tok-Zq81LxP0"\n', 0o640)) is None
    assert world_readable_secret_warning(_config(tmp_path, '[influx]\ntoken = ""\npassword = ""\n', 0o644)) is None
    shipped = tmp_path / "config.toml"
    shutil.copy(REPO / "config.toml", shipped)
    shipped.chmod(0o644)
    assert world_readable_secret_warning(shipped) is None  # the shipped config holds no credential
    assert world_readable_secret_warning(tmp_path / "missing.toml") is None


def test_a_non_toml_file_is_checked_line_by_line(tmp_path):
    p = _config(tmp_path, "# env file\nREDIS_PASSWORD=abc123\nOTHER=1\n", 0o644)
    warning = world_readable_secret_warning(p)
    assert warning and "line 2" in warning and "abc123" not in warning


# ============================================================== audit log ==========================
def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _write(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.write("pause" if i % 2 == 0 else "resume", "op", f"reason {i}", "ok", i)


def test_each_line_links_to_the_previous_one_and_the_chain_continues_across_restarts(tmp_path):
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(str(path)), 2)
    before = path.read_bytes()
    restarted = AuditLog(str(path))
    _write(restarted, 2, start=2)
    after = path.read_bytes()
    assert after.startswith(before)  # appended, nothing rewritten
    lines = _lines(path)
    entries = [json.loads(x) for x in lines]
    assert [e["why"] for e in entries] == [f"reason {i}" for i in range(4)]
    assert entries[0]["prev"] == AUDIT_GENESIS
    assert all(entries[i]["prev"] == hashlib.sha256(lines[i - 1]).hexdigest() for i in range(1, 4))
    assert restarted.head == hashlib.sha256(lines[-1]).hexdigest()
    assert set(entries[0]) == {"ts", "venue_ts_ns", "action", "who", "why", "result", "prev"}
    assert verify_audit_log(path) == []


def test_two_writers_on_one_file_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    a, b = AuditLog(str(path)), AuditLog(str(path))
    for i in range(6):
        (a if i % 2 == 0 else b).write("pause", "op", f"w{i}", "ok", i)
    assert verify_audit_log(path) == [] and len(_lines(path)) == 6


def test_an_edited_line_is_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(str(path)), 4)
    lines = _lines(path)
    lines[1] = lines[1].replace(b"reason 1", b"reason X")
    path.write_bytes(b"\n".join(lines) + b"\n")
    problems = verify_audit_log(path)
    assert len(problems) == 1 and problems[0].startswith("line 3: ")


def test_a_deleted_line_is_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(str(path)), 4)
    lines = _lines(path)
    del lines[1]
    path.write_bytes(b"\n".join(lines) + b"\n")
    problems = verify_audit_log(path)
    assert len(problems) == 1 and problems[0].startswith("line 2: ")
    # and deleting the first line breaks the chain start
    path.write_bytes(b"\n".join(lines[1:]) + b"\n")
    assert verify_audit_log(path)[0].startswith("line 1: prev is not the chain start")


def test_an_inserted_line_is_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(str(path)), 3)
    lines = _lines(path)
    forged = json.dumps({"action": "resume", "who": "x", "prev": hashlib.sha256(lines[0]).hexdigest()}).encode()
    path.write_bytes(b"\n".join([lines[0], forged, *lines[1:]]) + b"\n")
    problems = verify_audit_log(path)
    assert len(problems) == 1 and problems[0].startswith("line 3: ")


def test_a_torn_last_line_is_closed_kept_in_the_chain_and_reported(tmp_path):
    path = tmp_path / "audit.jsonl"
    _write(AuditLog(str(path)), 2)
    with open(path, "ab") as f:
        f.write(b'{"ts": 1.0, "action": "ki')  # a crash in the middle of a write
    _write(AuditLog(str(path)), 1, start=2)
    lines = _lines(path)
    assert len(lines) == 4 and json.loads(lines[3])["prev"] == hashlib.sha256(lines[2]).hexdigest()
    assert verify_audit_log(path) == ["line 3: not a JSON object (torn or hand-edited)"]


def test_a_long_line_and_legacy_lines_without_prev(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts": 1.0, "action": "pause"}\n')  # written before the chain existed
    log = AuditLog(str(path))
    log.write("pause", "op", "x" * 10_000, "ok", 1)  # longer than the tail read's chunk
    log.write("resume", "op", "short", "ok", 2)
    assert verify_audit_log(path) == ["line 1: no prev field (not written by the hash-chained audit log)"]
    lines = _lines(path)
    assert json.loads(lines[2])["prev"] == hashlib.sha256(lines[1]).hexdigest()


def test_the_audit_file_is_opened_append_only_and_never_truncated(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    flags = []
    real_open = os.open

    def spy(p, f, *a, **k):
        if str(p) == str(path):
            flags.append(f)
        return real_open(p, f, *a, **k)

    monkeypatch.setattr(tlog.os, "open", spy)
    _write(AuditLog(str(path)), 2)
    assert len(flags) == 2 and all(f & os.O_APPEND and not f & os.O_TRUNC for f in flags)


def test_verifying_a_missing_log_is_a_reported_problem(tmp_path):
    [problem] = verify_audit_log(tmp_path / "none.jsonl")
    assert "cannot read" in problem
