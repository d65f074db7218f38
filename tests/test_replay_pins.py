"""The replay's results are pinned: the same orders, fills, PnL, metrics and histories, to the last bit, on
every real data set (flashmm/research/digest.py PIN_CASES). A change meant only to make replay faster must
leave every pin as it is. A deliberate change of behaviour regenerates them: scripts/pin_replay_results.py."""

from __future__ import annotations

import json
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
