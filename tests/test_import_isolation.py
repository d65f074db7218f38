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
