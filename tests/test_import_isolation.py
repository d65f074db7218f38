import subprocess
import sys


def test_importing_the_engine_never_imports_textual():
    code = (
        "import sys, flashmm, flashmm.engine, flashmm.daemon, flashmm.cli, flashmm.bench, flashmm.venues.sim;"
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_console_package_imports_textual_and_the_engine_does_not_import_it():
    code = "import sys, flashmm.engine, flashmm.daemon; print('tui' in sys.modules or any(m.startswith('tui.') for m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr
