"""The real flashmm-tui in a real terminal (tmux): ladder shows prices, p pauses, ctrl+k kills, q exits 0.
(Every way out against the Sei node double: tests/test_exit_paths.py.)"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest


def _wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_real_console_in_tmux_pause_kill_quit(tmp_path):
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed (scripts/test installs it)")
    sock = f"flashmm-test-{os.getpid()}"
    exit_file = tmp_path / "exit.txt"
    audit = tmp_path / "audit.jsonl"
    inner = (f"cd {shlex.quote(str(tmp_path))} && env -u COLUMNS -u LINES "
             f"FLASHMM_LOGGING__AUDIT_FILE={shlex.quote(json.dumps(str(audit)))} FLASHMM_CONTROL__SOCKET='\"\"' FLASHMM_STRATEGY__STAND_ASIDE_WITHOUT_EDGE=false FLASHMM_SIM__PRESET=deep "
             f"{shlex.quote(sys.executable)} -m flashmm.cli_tui --speed 5; echo $? > {shlex.quote(str(exit_file))}; "
             "sleep 60")
    base = [tmux, "-L", sock]
    subprocess.run(base + ["new-session", "-d", "-s", "fm", "-x", "160", "-y", "45", inner], check=True, timeout=10)

    def screen() -> str:
        return subprocess.run(base + ["capture-pane", "-p", "-t", "fm"], capture_output=True, text=True,
                              timeout=10).stdout

    def header() -> str:
        s = screen().splitlines()
        return s[0] if s else ""

    try:
        _wait("the ladder to show prices", lambda: "mid 0." in screen() and "spread" in screen())
        assert "RUNNING" in header()
        # every panel row follows the snapshots: no row of the first frame left on screen (rows repaint
        # individually; a wrong refresh region once left "BOOK STALE" above a live ladder)
        _wait("resting quotes", lambda: "◀" in screen())
        time.sleep(1.0)
        shown = screen()
        assert "BOOK STALE" not in shown and "(starting)" not in shown, shown
        subprocess.run(base + ["send-keys", "-t", "fm", "p"], check=True, timeout=10)
        _wait("PAUSED in the header", lambda: "PAUSED" in header(), timeout=5)
        subprocess.run(base + ["send-keys", "-t", "fm", "C-k"], check=True, timeout=10)
        _wait("KILLED in the header", lambda: "KILLED" in header(), timeout=5)
        # after the kill, keys that make no sense are refused with the reason on screen
        subprocess.run(base + ["send-keys", "-t", "fm", "w"], check=True, timeout=10)
        _wait("the refusal", lambda: "no quotes to widen" in screen(), timeout=5)
        _wait("the kill's flatten to finish", lambda: "flat: nothing to close" in screen(), timeout=20)
        subprocess.run(base + ["send-keys", "-t", "fm", "q"], check=True, timeout=10)
        _wait("the console to exit", exit_file.exists, timeout=20)
        assert exit_file.read_text().strip() == "0"
        assert "FlashMM session summary" in screen()  # printed once the terminal is back
        actions = [json.loads(x)["action"] for x in audit.read_text().splitlines()]
        assert actions == ["pause", "kill", "widen", "shutdown"]
    finally:
        subprocess.run(base + ["kill-server"], capture_output=True, timeout=10)
