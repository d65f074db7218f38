import subprocess
import sys


def test_importing_the_engine_never_imports_textual():
    code = (
        "import sys, flashmm, flashmm.core.engine, flashmm.ops.daemon, flashmm.cli, flashmm.ops.bench, flashmm.venues.sim;"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_console_package_imports_textual_and_the_engine_does_not_import_it():
    code = "import sys, flashmm.core.engine, flashmm.ops.daemon; print('tui' in sys.modules or any(m.startswith('tui.') for m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr


def test_live_code_never_imports_research_or_ops_code():
    """The architecture's one-way rule: core, venues and the live model never pull in research (backtests,
    datasets, training) or ops (daemon, benchmarks), checked in a fresh interpreter after importing every
    live module."""
    code = (
        "import sys, pkgutil, importlib, flashmm.core, flashmm.venues, flashmm.model;"
        "mods = [m.name for p in (flashmm.core, flashmm.venues, flashmm.model)"
        "        for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')];"
        "[importlib.import_module(m) for m in mods];"
        "bad = sorted(m for m in sys.modules if m.startswith(('flashmm.research', 'flashmm.ops')));"
        "print(len(mods), bad); sys.exit(1 if bad or len(mods) < 15 else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
