"""The throwaway hftbacktest venv shared by scripts/bench_vs_hftbacktest.py and scripts/compare_strategies.py.

hftbacktest is never a dependency of FlashMM: it is pip-installed into a venv of its own (default
/tmp/flashmm-hftbt-venv; reused while `import hftbacktest, numba` works in it) and only ever run in
subprocesses of that venv's python, with none of this process's venv or PYTHONPATH leaking into it.
Standard library only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_VENV = Path("/tmp/flashmm-hftbt-venv")


class StepError(RuntimeError):
    """A step failed; the message says which and why (with the tail of the subprocess's output)."""


LOG_PREFIX = "hftbt-venv"  # each script sets its own


def _log(msg: str) -> None:
    print(f"[{LOG_PREFIX}] {msg}", file=sys.stderr, flush=True)


def _tail(text: str, n: int = 3000) -> str:
    text = text or ""
    return text if len(text) <= n else "...\n" + text[-n:]


def _run(cmd: list[str], timeout: float, what: str, env: dict[str, str] | None = None,
         cwd: str | None = None, stream: bool = False) -> subprocess.CompletedProcess:
    """Run cmd; raise StepError with a clear message on timeout, missing binary or non-zero exit."""
    _log(f"{what}: {shlex.join(cmd)}")
    try:
        if stream:
            # Output goes to a file so a long step (pip) can be followed and is still shown on failure.
            with tempfile.TemporaryFile("w+") as buf:
                proc = subprocess.run(cmd, stdout=buf, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                      env=env, cwd=cwd)
                buf.seek(0)
                out = buf.read()
            proc = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise StepError(f"{what}: timed out after {timeout:.0f} s\n{_tail(out)}") from None
    except FileNotFoundError as e:
        raise StepError(f"{what}: cannot start {cmd[0]!r}: {e}") from None
    if proc.returncode != 0:
        raise StepError(f"{what}: exit status {proc.returncode}\n{_tail((proc.stdout or '') + (proc.stderr or ''))}")
    return proc


def _clean_env() -> dict[str, str]:
    """Environment for the throwaway venv: none of this process's venv or PYTHONPATH leaks into it."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(k, None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_works(venv: Path) -> str | None:
    """hftbacktest's version when the venv imports hftbacktest and numba, else None."""
    py = _venv_python(venv)
    if not py.exists():
        return None
    try:
        p = subprocess.run([str(py), "-c", "import hftbacktest, numba; print(hftbacktest.__version__)"],
                           capture_output=True, text=True, timeout=120, env=_clean_env(), cwd="/")
    except (subprocess.TimeoutExpired, OSError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _base_python() -> str:
    """A python to make the venv with: this interpreter's base (not a venv's shim) if it has venv."""
    for cand in (getattr(sys, "_base_executable", None), sys.executable, shutil.which("python3")):
        if cand and Path(cand).exists():
            return cand
    raise StepError("no python3 found to create the throwaway venv")


def ensure_venv(venv: Path, spec: str, skip_install: bool, reinstall: bool, timeout: float) -> str:
    if not reinstall:
        ver = _venv_works(venv)
        if ver:
            _log(f"reusing {venv} (hftbacktest {ver})")
            return ver
    if skip_install:
        raise StepError(f"--skip-install given but {venv} has no working hftbacktest+numba "
                        f"(make it with: python3 -m venv {venv} && {venv}/bin/pip install hftbacktest)")
    if venv.exists():
        if not (venv / "pyvenv.cfg").exists():
            raise StepError(f"{venv} exists and is not a venv; refusing to replace it (pass --hftbt-venv)")
        _log(f"{venv} is broken or stale: recreating it")
        shutil.rmtree(venv)
    _run([_base_python(), "-m", "venv", str(venv)], 300, "create throwaway venv", env=_clean_env(), cwd="/")
    py = str(_venv_python(venv))
    _run([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--upgrade", spec],
         timeout, f"pip install {spec} into {venv}", env=_clean_env(), cwd="/", stream=True)
    freeze = _run([py, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"], 120,
                  "pip list", env=_clean_env(), cwd="/").stdout
    if any(line.lower().startswith("torch==") for line in freeze.splitlines()):
        raise StepError(f"pip pulled torch into {venv}; the throwaway venv never installs torch")
    ver = _venv_works(venv)
    if not ver:
        raise StepError(f"pip finished but `import hftbacktest, numba` fails in {venv}")
    _log(f"installed hftbacktest {ver} into {venv}")
    return ver
