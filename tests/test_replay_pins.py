"""The replay's results are pinned: the same orders, fills, PnL, metrics and histories, to the last bit, on
every real data set (flashmm/research/digest.py PIN_CASES). A change meant only to make replay faster must
leave every pin as it is. A deliberate change of behaviour regenerates them: scripts/pin_replay_results.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flashmm.data.loader import load_configured
from flashmm.research.digest import PIN_CASES, replay_digest

PINS = Path(__file__).resolve().parent / "pins" / "replay_results.json"
REGENERATE = ".venv/bin/python scripts/pin_replay_results.py"


@pytest.fixture(scope="module")
def pins() -> dict[str, dict]:
    return json.loads(PINS.read_text())["cases"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("pin-cache"))


def test_every_case_is_pinned_and_every_data_set_is_covered(pins, data_dir):
    assert sorted(pins) == sorted(c.name for c in PIN_CASES), (
        f"the pinned cases differ from PIN_CASES: regenerate with `{REGENERATE}`")
    folders = {c.folder for c in PIN_CASES}
    assert folders == {d.name for d in data_dir.iterdir() if d.is_dir()}, "every recorded data set is pinned"


@pytest.mark.parametrize("case", PIN_CASES, ids=lambda c: c.name)
def test_replay_results_equal_their_pins(case, pins, data_dir, cache_dir):
    cfg = case.config()
    cfg = cfg.model_copy(update={"replay": cfg.replay.model_copy(update={"cache_dir": cache_dir})})
    got = replay_digest(cfg, load_configured(cfg, [str(data_dir / case.folder)]))
    want = pins[case.name]
    assert got["rows"] > 0 and got["orders_sent"] > 0
    if got != want:
        parts = [k for k in want["digest"] if got["digest"][k] != want["digest"][k]]
        pytest.fail(
            f"{case.name}: the replay's results moved ({', '.join(parts) or 'summary'} differ; pinned "
            f"{want['orders_sent']} orders / {want['fills']} fills / PnL {want['pnl_quote']}, now "
            f"{got['orders_sent']} / {got['fills']} / {got['pnl_quote']}). A speed-up must not change them. "
            f"If the engine's behaviour changed on purpose (strategy, quote cycle), regenerate the pins with "
            f"`{REGENERATE}` and commit tests/pins/replay_results.json with the reason.")


def test_pure_python_replays_to_the_same_pins(pins, data_dir, tmp_path):
    """The compiled modules (flashmm/speedups.py) are the same source: with FLASHMM_PURE_PYTHON=1 every case
    replays to the same pins as above, where the suite runs the compiled build."""
    code = (
        "import json, sys\n"
        "from flashmm import speedups\n"
        "from flashmm.data.loader import load_configured\n"
        "from flashmm.research.digest import PIN_CASES, replay_digest\n"
        "out = {'loaded_compiled': None}\n"
        "for case in PIN_CASES:\n"
        "    cfg = case.config()\n"
        f"    cfg = cfg.model_copy(update={{'replay': cfg.replay.model_copy(update={{'cache_dir': {str(tmp_path)!r}}})}})\n"
        f"    out[case.name] = replay_digest(cfg, load_configured(cfg, [str(__import__('pathlib').Path({str(data_dir)!r}) / case.folder)]))\n"
        "out['loaded_compiled'] = speedups.status()['loaded_compiled']\n"
        "print(json.dumps(out))\n")
    env = {**os.environ, "FLASHMM_PURE_PYTHON": "1"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])  # the last line: the engine may log above it
    assert got.pop("loaded_compiled") == [], "FLASHMM_PURE_PYTHON=1 still loaded compiled modules"
    moved = [name for name in pins if got[name] != pins[name]]
    assert not moved, f"pure Python differs from the pins on {moved}"


def test_compiled_features_equal_the_interpreters_to_the_last_bit(data_dir, tmp_path):
    """The feature vector after every update of the spot recording (79,665 book updates and the trades between
    them), compiled here and in pure Python in a subprocess: the same bits. The compiled features are C doubles;
    a C compiler that fuses a * b + c into one multiply-add (gcc wherever the target has FMA) gave different last
    digits where the fills above did not show it (flashmm/speedups.py: EXTRA_COMPILE_ARGS)."""
    from flashmm.config import Config
    from flashmm.research.digest import feature_digest

    folder = data_dir / "binance-spot-btcusdt-20240808"
    cfg = Config()
    cfg = cfg.model_copy(update={"replay": cfg.replay.model_copy(update={"cache_dir": str(tmp_path)})})
    from flashmm import speedups

    assert "flashmm.core.features" in speedups.status()["loaded_compiled"]  # compiled here, or nothing is compared
    here = feature_digest(load_configured(cfg, [str(folder)]))
    code = (
        "import json\n"
        "from flashmm import speedups\n"
        "from flashmm.config import Config\n"
        "from flashmm.data.loader import load_configured\n"
        "from flashmm.research.digest import feature_digest\n"
        "cfg = Config()\n"
        f"cfg = cfg.model_copy(update={{'replay': cfg.replay.model_copy(update={{'cache_dir': {str(tmp_path)!r}}})}})\n"
        f"out = feature_digest(load_configured(cfg, [{str(folder)!r}]))\n"
        "out['loaded_compiled'] = speedups.status()['loaded_compiled']\n"
        "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FLASHMM_PURE_PYTHON": "1"},
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    pure = json.loads(res.stdout.strip().splitlines()[-1])
    assert pure.pop("loaded_compiled") == []
    assert here["book_updates"] > 50_000
    assert here == pure

