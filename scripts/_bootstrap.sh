# Sourced by scripts/run and scripts/test: makes .venv when missing and (re)installs the project when
# pyproject.toml changed since the last install. Idempotent; a no-op costs a hash and a file read.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${FLASHMM_PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "FlashMM needs Python >= 3.11"'
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.flashmm-install-stamp"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)-${FLASHMM_EXTRAS:-test}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "flashmm: installing into $VENV (first run or pyproject.toml changed)" >&2
    # torch first and exactly: 2.13.0 is the local CPU wheel; nothing may pull a CUDA build.
    # (the machine's pip config names index folders that may be absent; pip warns per package: noise)
    quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
    quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
    quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[${FLASHMM_EXTRAS:-test}]"
    if "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
        echo "flashmm: a CUDA package was installed; refusing (torch must be the CPU wheel)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
# The hot path compiled from its own source (flashmm/speedups.py): a no-op when up to date; where Cython or a C
# compiler is missing it says so and everything runs in pure Python (slower, the same results).
if [ -z "${FLASHMM_PURE_PYTHON:-}" ] && [ "${FLASHMM_COMPILE:-1}" != "0" ]; then
    "$VENV/bin/python" -m flashmm.compile build || true
fi
export PATH="$VENV/bin:$PATH"
