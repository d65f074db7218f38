"""The deployment files: docker-compose.yml, scripts/Dockerfile, .env.example, the container's config, and the
Grafana provisioning (datasource, dashboard, alert rules), checked by parsing them. Every dashboard and alert
query must name a measurement and fields that the exporter writes (flashmm.telemetry.influx.SCHEMA)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from flashmm.config import load_config
from flashmm.telemetry.influx import SCHEMA
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "scripts" / "Dockerfile"
DOCKER_TOML = ROOT / "scripts" / "flashmm-docker.toml"
GRAFANA = ROOT / "scripts" / "grafana"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "flashmm.yaml"
DASHBOARD = GRAFANA / "dashboards" / "flashmm.json"
ALERTS = GRAFANA / "provisioning" / "alerting" / "flashmm-rules.yaml"

SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|API_?KEY|_AUTH$)", re.IGNORECASE)
INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def strings(node) -> list[str]:
    """Every string value (and key) in a parsed YAML document: comments left out."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in strings(k) + strings(v)]
    if isinstance(node, list):
        return [x for v in node for x in strings(v)]
    return [node] if isinstance(node, str) else []


def is_interpolated_only(value: str) -> bool:
    """The whole value is `${VAR}` / `${VAR:?msg}` / `${VAR:-${OTHER...}}`: nothing literal to leak."""
    m = INTERP.fullmatch(value.strip())
    if not m:
        return False
    op, rest = m.group(2), m.group(3)
    return op in (None, ":?", "?") or is_interpolated_only(rest or "")


# ------------------------------------------------------------------ docker-compose.yml -------------------
def test_compose_parses_and_has_the_four_services(compose):
    s = compose["services"]
    assert set(s) == {"flashmm", "redis", "influxdb", "grafana"}
    assert s["redis"]["image"] == "redis:7"
    assert s["influxdb"]["image"].startswith("influxdb:2.7")
    assert s["grafana"]["image"].startswith("grafana/grafana")
    cmd = s["redis"]["command"]
    assert cmd[0] == "redis-server" and cmd[cmd.index("--appendonly") + 1] == "yes"  # AOF
    assert s["flashmm"]["build"] == {"context": ".", "dockerfile": "scripts/Dockerfile"}
    assert s["flashmm"]["healthcheck"]["test"] == ["CMD", "flashmm", "ctl", "health"]  # the daemon answers itself
    env = s["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for k in ("USERNAME", "PASSWORD", "ADMIN_TOKEN", "ORG", "BUCKET"):
        assert f"DOCKER_INFLUXDB_INIT_{k}" in env


def test_compose_references_only_files_that_exist(compose):
    named = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            ctx = ROOT / (build["context"] if isinstance(build, dict) else build)
            assert ctx.is_dir(), (name, ctx)
            if isinstance(build, dict) and "dockerfile" in build:
                assert (ctx / build["dockerfile"]).is_file(), (name, build)
        for v in svc.get("volumes", []):
            src = v["source"] if isinstance(v, dict) else v.split(":")[0]
            if src.startswith((".", "/")):
                assert (ROOT / src).exists(), (name, src)
            else:
                assert src in named, (name, src)
        env_files = svc.get("env_file", [])
        for f in [env_files] if isinstance(env_files, str) else env_files:
            path = f["path"] if isinstance(f, dict) else f
            if Path(path).name != ".env":  # the user creates .env from .env.example
                assert (ROOT / path).is_file(), (name, path)


def test_dockerfile_copies_existing_paths_never_the_whole_tree_and_runs_the_daemon():
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM .*$", text, re.M) == ["FROM python:3.11-slim"]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    copies = [ln.split()[1:-1] for ln in text.splitlines() if ln.startswith("COPY ")]
    assert copies
    for sources in copies:
        for src in sources:
            assert src not in (".", "./", "*"), "COPY . would put a local .env into the image"
            assert (ROOT / src).exists(), src
    assert re.search(r'ENTRYPOINT \["flashmm-tui", "--no-ui"\]', text)
    assert "FLASHMM_CONFIG=/app/flashmm-docker.toml" in text
    assert "COPY scripts/flashmm-docker.toml ./flashmm-docker.toml" in text


def test_every_published_port_binds_loopback(compose):
    for name, svc in compose["services"].items():
        for p in svc.get("ports", []):
            if isinstance(p, dict):
                assert p.get("host_ip") == "127.0.0.1", (name, p)
            else:
                assert str(p).startswith("127.0.0.1:"), (name, p)
        assert "network_mode" not in svc or svc["network_mode"] != "host", name


def test_no_literal_secrets_in_compose_env_example_or_provisioning(compose):
    # compose: every secret-looking environment value is an interpolation without a literal default
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for k, v in items:
            if SECRET_NAME.search(k):
                assert is_interpolated_only(str(v)), (name, k, v)
            if "://" in str(v) and "@" in str(v):  # credentials in a URL
                creds = str(v).split("://", 1)[1].split("@", 1)[0]
                assert is_interpolated_only(creds.lstrip(":")), (name, k, v)
        cmd = svc.get("command", [])
        if isinstance(cmd, list):
            for flag, val in zip(cmd, cmd[1:]):
                if SECRET_NAME.search(str(flag)) or "requirepass" in str(flag):
                    assert is_interpolated_only(str(val)), (name, flag, val)
    # no default for a secret anywhere in the file (`${X_PASSWORD:-literal}`)
    text = "\n".join(strings(compose))
    for m in INTERP.finditer(text):
        if SECRET_NAME.search(m.group(1)) and m.group(2) in (":-", "-"):
            assert is_interpolated_only(m.group(3)), m.group(0)
    # .env.example: names only, every value empty; and it declares every variable compose reads
    example = env_example()
    assert example and all(v == "" for v in example.values()), example
    used = {m.group(1) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}
    assert used <= set(example), used - set(example)
    for required in ("INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD", "REDIS_PASSWORD"):
        assert required in example
        assert re.search(r"\$\{" + required + r":\?", text), f"{required} must be required (:?)"
    # provisioning files and the container config: any password/token key holds an interpolation or nothing
    key_value = re.compile(r"^\s*([A-Za-z_]*(?:password|token|secret)[A-Za-z_]*)\s*[:=]\s*(.*?)\s*(#.*)?$", re.I)
    for f in [DATASOURCE, PROVIDER, ALERTS, DOCKER_TOML]:
        for line in f.read_text().splitlines():
            m = key_value.match(line)
            if m:
                v = m.group(2).strip("'\"")
                assert v == "" or is_interpolated_only(v), (f.name, line)


def test_container_config_loads_and_points_at_the_compose_services():
    cfg = load_config(DOCKER_TOML, environ={})
    # the healthcheck and `docker compose exec ... --attach` find the socket under the image's /app/var
    assert cfg.control.socket == "var/run/flashmm.sock" and cfg.control.allowed_uids == []
    assert cfg.influx.enabled and cfg.influx.api == "v2" and cfg.influx.url == "http://influxdb:8086"
    assert cfg.influx.token == "" and cfg.influx.password == ""  # from the environment only
    assert cfg.redis.enabled and "@redis:" not in cfg.redis.url and "redis:6379" in cfg.redis.url
    assert cfg.model.path == "/app/models/flashmm.pt2" and (ROOT / "models" / "flashmm.pt2").is_file()
    # with the environment compose sets, the secrets arrive
    env = {"FLASHMM_INFLUX__TOKEN": "abcdef-token", "FLASHMM_REDIS__URL": "redis://:pw123456@redis:6379/0"}
    cfg = load_config(DOCKER_TOML, environ=env)
    assert cfg.influx.token == "abcdef-token" and cfg.redis.url.endswith("@redis:6379/0")


# ------------------------------------------------------------------ Grafana ------------------------------
def flux_refs(query: str) -> tuple[set[str], set[str]]:
    ms = set(re.findall(r'r\._measurement\s*==\s*"([^"]+)"', query))
    fs = set(re.findall(r'r\._field\s*==\s*"([^"]+)"', query))
    return ms, fs


def assert_query_in_schema(where: str, query: str) -> tuple[set[str], set[str]]:
    ms, fs = flux_refs(query)
    assert ms, f"{where}: the query names no measurement"
    assert fs, f"{where}: the query names no field"
    assert ms <= set(SCHEMA), (where, ms - set(SCHEMA))
    allowed = {f for m in ms for f in SCHEMA[m]}
    assert fs <= allowed, (where, fs - allowed)
    return ms, fs


def test_datasource_and_provider_match_compose(compose):
    ds = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert len(ds) == 1 and ds[0]["uid"] == "flashmm-influxdb" and ds[0]["type"] == "influxdb"
    assert ds[0]["jsonData"]["version"] == "Flux" and ds[0]["url"] == "http://influxdb:8086"
    grafana = compose["services"]["grafana"]
    # every ${VAR} the datasource reads is set in the grafana container's environment
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", DATASOURCE.read_text()):
        assert var in grafana["environment"], var
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")}
    assert mounts["/etc/grafana/provisioning"] == "./scripts/grafana/provisioning"
    provider = yaml.safe_load(PROVIDER.read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == "./scripts/grafana/dashboards"


def test_dashboard_panels_query_measurements_and_fields_the_exporter_writes():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "flashmm"
    covered: set[tuple[str, str]] = set()
    for p in dash["panels"]:
        assert p.get("targets"), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "flashmm-influxdb"
            ms, fs = assert_query_in_schema(f"panel {p['title']!r}", t["query"])
            covered |= {(m, f) for m in ms for f in fs if f in SCHEMA[m]}
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for words in ("pnl", "spread improvement", "fill rate", "latency p95 / p99", "model confidence",
                  "position utilisation", "breaker states"):
        assert words in titles, words
    need = {("pnl", "total"), ("spread", "spread_improvement_pct"), ("fills", "fill_rate"),
            ("latency", "tick_to_quote_p95_us"), ("latency", "tick_to_quote_p99_us"), ("model", "confidence"),
            ("inventory", "position_utilisation_pct"), ("exporter", "dropped_points"),
            *(("breakers", b) for b in SCHEMA["breakers"] if b != "any_tripped")}
    assert need <= covered, need - covered


def test_the_five_alert_rules_exist_at_the_seed_thresholds():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {r["uid"]: r for g in groups for r in g["rules"]}

    def check(uid: str) -> tuple[dict, set[str], set[str], dict]:
        r = rules[uid]
        data = {d["refId"]: d for d in r["data"]}
        assert r["condition"] in data
        query = data["A"]
        assert query["datasourceUid"] == "flashmm-influxdb"
        ms, fs = assert_query_in_schema(f"rule {uid}", query["model"]["query"])
        for ref, d in data.items():  # every expression refers to an existing refId
            if d["datasourceUid"] == "__expr__":
                assert d["model"]["expression"] in data, (uid, ref)
        cond = data[r["condition"]]["model"]
        assert cond["type"] == "threshold"
        ev = cond["conditions"][0]["evaluator"]
        assert r["annotations"].get("summary") and r["annotations"].get("description")
        return r, ms, fs, {"op": ev["type"], "value": ev["params"][0], "window_s": query["relativeTimeRange"]["from"],
                           "reducer": data[cond["expression"]]["model"].get("reducer")}

    r, ms, fs, t = check("flashmm-latency-p95")
    assert ms == {"latency"} and fs == {"tick_to_quote_p95_us_interval"}
    assert (t["op"], t["value"]) == ("gt", 500_000)  # us = 500 ms

    r, ms, fs, t = check("flashmm-position-utilisation")
    assert ms == {"inventory"} and fs == {"position_utilisation_pct"}
    assert (t["op"], t["value"]) == ("gt", 90)

    r, ms, fs, t = check("flashmm-model-confidence")
    assert ms == {"model"} and fs == {"confidence"}
    assert (t["op"], t["value"], t["reducer"]) == ("lt", 0.6, "mean")

    r, ms, fs, t = check("flashmm-error-rate")
    assert ms == {"fills"} and fs == {"orders_rejected", "orders_placed"}
    assert (t["op"], t["value"], t["window_s"]) == ("gt", 5, 300)
    assert "rejected" in r["annotations"]["description"] and "placed" in r["annotations"]["description"]

    r, ms, fs, t = check("flashmm-down")
    assert ms == {"exporter"}
    assert (t["op"], t["value"], t["window_s"], t["reducer"]) == ("lt", 1, 30, "count")
    assert r["noDataState"] == "Alerting"  # no point at all for 30 s fires it
    assert len(rules) == 5


def test_the_image_compiles_the_hot_path():
    text = DOCKERFILE.read_text()
    assert "python -m flashmm.compile build" in text
    assert text.index("pip install .") < text.index("python -m flashmm.compile build")  # it compiles the installed copy
