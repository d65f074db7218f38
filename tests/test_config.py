from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from flashmm.config import Config, ConfigError, load_config
from tests.conftest import ROOT


def test_committed_config_toml_equals_built_in_defaults():
    assert load_config(ROOT / "config.toml", environ={}) == Config()


def test_config_toml_is_the_generated_file():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_toml.py"), "--check"], timeout=60)
    assert r.returncode == 0, "config.toml is stale: run scripts/config_toml.py"


def test_every_key_in_config_toml_has_a_comment_line_above_it():
    lines = (ROOT / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 4, f"key without comment: {line}"
    data = tomllib.loads((ROOT / "config.toml").read_text())
    assert set(data) == set(Config.model_fields)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception):
        cfg.run.seed = 3  # type: ignore[misc]


def _write(tmp_path, text: str):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[strategy]\norder_levelz = 2\n", "strategy.order_levelz: unknown key"),
        ("[strategy]\norder_levels = \"two\"\n", "strategy.order_levels"),
        ("[strategy]\norder_levels = 0\n", "strategy.order_levels: Input should be greater than or equal to 1"),
        ("[risk]\nmax_position_usdc = -5\n", "risk.max_position_usdc"),
        ("[nonsense]\nx = 1\n", "nonsense: unknown key"),
        ("[run]\nspeed = \n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p, environ={})
    assert str(p) in str(e.value)
    assert expected in str(e.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_environment_overrides_file_and_is_validated():
    cfg = load_config(None, environ={"FLASHMM_RUN__SEED": "11", "FLASHMM_LOGGING__FILE": "/tmp/x.log"})
    assert cfg.run.seed == 11 and cfg.logging.file == "/tmp/x.log"
    with pytest.raises(ConfigError, match="environment FLASHMM_RUN__SPEED"):
        load_config(None, environ={"FLASHMM_RUN__SPEED": "-1"})


def test_cli_exits_2_with_one_line_and_no_traceback_on_bad_config(tmp_path):
    p = _write(tmp_path, "[strategy]\norder_levels = \"many\"\n")
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--config", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(p) in r.stderr and "strategy.order_levels" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- issue 17: overrides with the file's types, files that are not files, values no operator means ------------

def test_an_environment_override_is_read_with_the_type_of_its_key():
    env = {"FLASHMM_INSTRUMENT__PRICE_TICK": "0.0001", "FLASHMM_INSTRUMENT__LOT_SIZE": "1",  # decimal strings
           "FLASHMM_INSTRUMENT__SYMBOL": "1", "FLASHMM_MODEL__PATH": '"none"',  # text, as written or quoted
           "FLASHMM_RISK__CAPITAL_USDC": "1e5", "FLASHMM_RISK__MAX_POSITION_USDC": "2000",  # numbers: TOML
           "FLASHMM_RUN__VENUE": "sim", "FLASHMM_REDIS__ENABLED": "true",
           "FLASHMM_SEI__ENDPOINTS": '["http://127.0.0.1:1", "http://127.0.0.1:2"]'}
    cfg = load_config(None, environ=env)
    assert cfg.instrument.price_tick == "0.0001" and cfg.instrument.lot_size == "1" and cfg.instrument.symbol == "1"
    assert cfg.model.path == "none" and cfg.risk.capital_usdc == 1e5 and cfg.risk.max_position_usdc == 2000.0
    assert cfg.redis.enabled is True and cfg.sei.endpoints == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    # the same values as a file holds them give the same configuration
    assert cfg.instrument == load_config(None, environ={"FLASHMM_INSTRUMENT__PRICE_TICK": '"0.0001"',
                                                        "FLASHMM_INSTRUMENT__SYMBOL": '"1"'}).instrument
    with pytest.raises(ConfigError, match="FLASHMM_RISK__CAPITAL_USDC"):  # a number key still refuses text
        load_config(None, environ={"FLASHMM_RISK__CAPITAL_USDC": "lots"})


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_config_path_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    import os

    path = {"fifo": tmp_path / "c.toml", "device": "/dev/zero", "folder": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would block for ever: no writer
    r = subprocess.run([sys.executable, "-m", "flashmm.cli_tui", "--no-ui", "--config", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "not a regular file: refused" in lines[0], r.stderr


def test_values_no_operator_means_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="max_position_usdc .* is above capital_usdc"):
        load_config(None, environ={"FLASHMM_RISK__MAX_POSITION_USDC": "1e15"})
    with pytest.raises(ConfigError, match="run.status_interval_s: Input should be greater than or equal to 0.1"):
        load_config(None, environ={"FLASHMM_RUN__STATUS_INTERVAL_S": "1e-9"})
    assert load_config(None, environ={"FLASHMM_RISK__MAX_POSITION_USDC": "1e5"}).risk.max_position_usdc == 1e5
    # the virtual quotes' times are 64-bit nanoseconds in the compiled build: a life beyond a day is refused here,
    # never an overflow there
    with pytest.raises(ConfigError, match="strategy.virtual_quote_life_s: Input should be less than or equal to 86400"):
        load_config(None, environ={"FLASHMM_STRATEGY__VIRTUAL_QUOTE_LIFE_S": "1e12"})
    with pytest.raises(ConfigError, match="strategy.virtual_latency_ms: Input should be less than or equal to 60000"):
        load_config(None, environ={"FLASHMM_STRATEGY__VIRTUAL_LATENCY_MS": "1e15"})
