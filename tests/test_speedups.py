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

import pytest

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
    m.write_text(json.dumps({"sources": {mod: speedups.module_digest(mod, root) for mod in mods}}))
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


def test_a_module_built_against_another_ones_types_follows_it_to_source(tmp_path):
    """features.pxd cimports book's types: a compiled features beside a book loaded from source would not
    import (binary incompatibility), so it is loaded from source too; a change of book.pxd rebuilds both."""
    root = _package(tmp_path)
    for mod in MODS:
        _build(root, mod)
    speedups.source_of(MODS[0], root).with_suffix(".pxd").write_text("cdef class A:\n    cdef public object x\n")
    # (C's own libraries are not modules of the package: they never hold a module back)
    speedups.source_of(MODS[1], root).with_suffix(".pxd").write_text(f"cimport libc.math as math\nfrom {MODS[0]} cimport A\n")
    assert speedups.cimports(MODS[1], root) == [MODS[0]]
    manifest = _manifest(root, MODS)
    p = speedups.plan(MODS, root, manifest)
    assert p["compiled"] == list(MODS) and p["held_back"] == {}

    p = speedups.plan(MODS, root, manifest, pure=frozenset({MODS[0]}))
    assert p["compiled"] == [MODS[2]] and p["held_back"] == {MODS[1]: MODS[0]}
    assert sorted(p["from_source"]) == sorted(MODS[:2])

    speedups.source_of(MODS[0], root).write_text("NAME = 'edited'\n")  # stale: beta follows it
    p = speedups.plan(MODS, root, manifest)
    assert p["stale"] == [MODS[0]] and p["held_back"] == {MODS[1]: MODS[0]}

    root2 = _package(tmp_path / "second")
    for mod in MODS:
        _build(root2, mod)
    speedups.source_of(MODS[1], root2).with_suffix(".pxd").write_text(f"from {MODS[0]} cimport A\n")
    a_pxd = speedups.source_of(MODS[0], root2).with_suffix(".pxd")
    a_pxd.write_text("cdef class A:\n    cdef public object x\n")
    manifest2 = _manifest(root2, MODS)
    a_pxd.write_text("cdef class A:\n    cdef public object x, y\n")  # the types changed: both are stale
    assert speedups.plan(MODS, root2, manifest2)["stale"] == list(MODS[:2])


def test_pure_python_for_some_modules(monkeypatch):
    assert speedups.pure_setting("") is False and speedups.pure_setting("0") is False
    assert speedups.pure_setting("1") is True
    assert speedups.pure_setting("core.risk, flashmm.core.book") == frozenset({"flashmm.core.risk",
                                                                                "flashmm.core.book"})
    with pytest.raises(ValueError, match="not a compiled module: core.nothing"):
        speedups.pure_setting("core.risk,core.nothing")
    files = _loaded_from({speedups.PURE_ENV: "core.book"})
    assert files["flashmm.core.book"].endswith(".py")
    assert files["flashmm.core.features"].endswith(".py")  # it cimports the book's types
    assert files["flashmm.core.engine"].endswith(".py")  # and so does the engine
    risk_compiled = "flashmm.core.risk" in speedups.status()["compiled"]  # see the last test
    assert files["flashmm.core.risk"].endswith(SUFFIX if risk_compiled else ".py")  # the others stay compiled


def test_a_compiled_copy_of_a_module_no_longer_compiled_is_never_loaded(tmp_path):
    """Python's import prefers an extension module to the .py beside it: a copy left by an older build or a trial
    (a module since dropped from MODULES) would silently run instead of its source. It loads from source, the
    plan names it, and a build removes it."""
    root = _package(tmp_path)
    _build(root, MODS[0])
    _build(root, MODS[2])
    manifest = _manifest(root, MODS)
    p = speedups.plan(MODS[:2], root, manifest)  # gamma has a compiled copy but is not (any longer) compiled
    assert p["compiled"] == [MODS[0]] and p["orphans"] == [MODS[2]]
    assert p["from_source"] == {MODS[2]: speedups.source_of(MODS[2], root)}
    assert speedups.orphans(MODS, root) == {}
    (root / "core" / f"notes{SUFFIX}").write_bytes(b"\x7fELF")  # no source beside it: not a module of ours
    assert speedups.orphans(MODS[:2], root) == {MODS[2]: speedups.source_of(MODS[2], root)}


def test_a_build_removes_compiled_copies_of_modules_no_longer_compiled(tmp_path, monkeypatch):
    root = tmp_path / "flashmm"
    (root / "core").mkdir(parents=True)
    for name in ("domain", "book"):  # flashmm.core.domain is not compiled, flashmm.core.book is
        (root / "core" / f"{name}.py").write_text("X = 1\n")
        (root / "core" / f"{name}{SUFFIX}").write_bytes(b"\x7fELF")
    monkeypatch.setattr(speedups, "PACKAGE_DIR", root)
    monkeypatch.setattr(speedups, "needs_build", list)
    assert speedups.build() == []
    assert not (root / "core" / f"domain{SUFFIX}").exists() and (root / "core" / f"book{SUFFIX}").exists()


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


def test_a_build_made_with_other_compiler_settings_is_stale(tmp_path, monkeypatch):
    """How a module was compiled is part of what it was built from: a copy built before multiply-add contraction
    was turned off (its features could differ from the interpreter's in the last digit where the target has FMA)
    is not used once the flags change."""
    assert "-ffp-contract=off" in speedups.EXTRA_COMPILE_ARGS
    root = _package(tmp_path)
    _build(root, MODS[0])
    manifest = _manifest(root, MODS[:1])
    assert speedups.plan(MODS[:1], root, manifest)["compiled"] == [MODS[0]]
    monkeypatch.setattr(speedups, "EXTRA_COMPILE_ARGS", ())
    assert speedups.plan(MODS[:1], root, manifest)["stale"] == [MODS[0]]
    monkeypatch.setattr(speedups, "EXTRA_COMPILE_ARGS", ("-ffp-contract=off",))
    monkeypatch.setattr(speedups, "COMPILER_DIRECTIVES", {**speedups.COMPILER_DIRECTIVES, "cdivision": True})
    assert speedups.plan(MODS[:1], root, manifest)["stale"] == [MODS[0]]


def test_a_compiled_module_is_stale_when_a_pxd_it_cimports_through_another_changes(tmp_path):
    """alpha cimports features, whose types hold book's: book.pxd is part of what alpha's copy was built from."""
    import shutil

    pkg = tmp_path / "flashmm"
    shutil.copytree(speedups.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    assert "flashmm.core.book" not in speedups.cimports("flashmm.core.alpha", pkg)
    assert "flashmm.core.book" in speedups.cimport_closure("flashmm.core.alpha", pkg)
    before = speedups.module_digest("flashmm.core.alpha", pkg)
    book_pxd = pkg / "core" / "book.pxd"
    book_pxd.write_text(book_pxd.read_text() + "\n# a layout change\n")
    assert speedups.module_digest("flashmm.core.alpha", pkg) != before
