"""The compiled hot path (flashmm/speedups.py): a compiled module is used only while it matches its source,
FLASHMM_PURE_PYTHON=1 runs everything from source, and the test environment runs the compiled build (the
bootstrap makes it). tests/test_replay_pins.py holds compiled and pure Python to the same results."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

from flashmm import speedups

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
MODS = ("pkg.core.alpha", "pkg.core.beta", "pkg.venues.gamma")


def _package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    for mod in MODS:
        src = speedups.source_of(mod, root)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"NAME = {mod!r}\n")
    return root


def _manifest(root: Path, mods: tuple[str, ...]) -> Path:
    m = root / "_compiled.json"
    m.write_text(json.dumps({"sources": {mod: speedups.digest(speedups.source_of(mod, root)) for mod in mods}}))
    return m


def _build(root: Path, mod: str) -> None:  # only the file's presence matters to the plan
    src = speedups.source_of(mod, root)
    src.with_name(src.stem + SUFFIX).write_bytes(b"\x7fELF")


def test_a_compiled_module_is_used_only_while_its_source_is_unchanged(tmp_path):
    root = _package(tmp_path)
    for mod in MODS[:2]:
        _build(root, mod)
    manifest = _manifest(root, MODS)
    p = speedups.plan(MODS, root, manifest)
    assert p["compiled"] == list(MODS[:2]) and p["stale"] == [] and p["from_source"] == {}
    assert p["not_built"] == [MODS[2]]

    beta = speedups.source_of(MODS[1], root)
    beta.write_text("NAME = 'edited after the build'\n")  # an edit without a rebuild
    p = speedups.plan(MODS, root, manifest)
    assert p["compiled"] == [MODS[0]]
    assert p["stale"] == [MODS[1]] and p["from_source"] == {MODS[1]: beta}


def test_a_build_with_no_record_is_not_trusted(tmp_path):
    root = _package(tmp_path)
    _build(root, MODS[0])
    for manifest in (root / "missing.json", root / "_compiled.json"):
        if manifest.name == "_compiled.json":
            manifest.write_text("{not json")
        p = speedups.plan(MODS, root, manifest)
        assert p["compiled"] == [] and p["stale"] == [MODS[0]]
        assert p["from_source"] == {MODS[0]: speedups.source_of(MODS[0], root)}


def test_pure_python_loads_every_module_from_source(tmp_path):
    root = _package(tmp_path)
    for mod in MODS:
        _build(root, mod)
    p = speedups.plan(MODS, root, _manifest(root, MODS), pure=True)
    assert p["compiled"] == [] and sorted(p["from_source"]) == sorted(MODS)


def _loaded_from(env: dict[str, str]) -> dict[str, str]:
    code = ("import importlib, json; from flashmm import speedups\n"
            "print(json.dumps({m: importlib.import_module(m).__file__ for m in speedups.MODULES}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def test_the_finder_loads_the_source_beside_a_compiled_copy():
    files = _loaded_from({speedups.PURE_ENV: "1"})
    assert all(f.endswith(".py") for f in files.values()), files
    assert set(files) == set(speedups.MODULES)


def test_the_test_environment_runs_the_compiled_hot_path():
    """./scripts/test builds it (python -m flashmm.compile build) before the suite; FLASHMM_COMPILE=0 opts out."""
    if os.environ.get("FLASHMM_COMPILE") == "0" or os.environ.get(speedups.PURE_ENV, "") not in ("", "0"):
        files = _loaded_from({})
        assert all(f.endswith(".py") for f in files.values()) or speedups.status()["compiled"]
        return
    s = speedups.status()
    assert s["stale"] == [] and s["not_built"] == [], (
        f"the hot path is not (fully) compiled: {speedups.summary_line()}")
    files = _loaded_from({})
    assert all(f.endswith(SUFFIX) for f in files.values()), files
