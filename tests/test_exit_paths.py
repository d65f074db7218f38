"""Every way out, as an operator meets it, in a real terminal (tmux) against the Sei node double.

The console and the daemon trade on `flashmm sei-devnode` (its scripted takers fill us); then each way out
is taken: SIGHUP (tmux kill-session: a dropped ssh connection), SIGTERM, SIGINT, ctrl+q, ctrl+c, q; the
daemon's SIGHUP/SIGTERM/SIGINT and --duration. Afterwards the node holds no order of ours, the summary
says what happened, the audit log was told, and the exit code is the documented one. Then a daemon with two
attached consoles: a pause from one shows in the other and in `flashmm ctl status`, detaching leaves it
quoting, `ctl kill` stops the trading, and a console outlives the daemon and says so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_sei_e2e import BIN, _daemon_env, _start_node, _stop, _venue_record

TMUX = shutil.which("tmux")
SOCK = f"flashmm-exit-{os.getpid()}"


def _wait(what: str, check: Callable[[], bool], timeout: float = 40.0, show: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}" + (f"; the screen:\n{screen(show)}" if show else ""))


def tmux(*args: str) -> str:
    if TMUX is None:
        pytest.fail("tmux is not installed (scripts/test installs it)")
    return subprocess.run([TMUX, "-L", SOCK, *args], capture_output=True, text=True, timeout=10).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def pane_child(session: str) -> int:
    """The process the pane's shell runs (the console or the daemon)."""
    shell = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").split()[0])
    out = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture(scope="module")
def node() -> Iterator[dict]:
    d = Path(tempfile.mkdtemp(prefix="fmnode", dir="/tmp"))
    proc, info = _start_node(d)
    info["dir"] = d
    try:
        yield info
    finally:
        _stop(proc)
        tmux("kill-server")


def start(node: dict, name: str, args: str, **extra: str) -> Path:
    """flashmm-tui ARGS in a tmux session NAME (160x45) against the node; its exit code goes to exit.txt."""
    d = Path(tempfile.mkdtemp(prefix="fm", dir="/tmp"))
    env = _daemon_env(node["dir"], node, FLASHMM_MODEL__PATH="none", FLASHMM_CONTROL__SOCKET=str(d / "c.sock"),
                      FLASHMM_STRATEGY__STAND_ASIDE_WITHOUT_EDGE="false",  # quoting throughout: orders to cancel
                      FLASHMM_CONTROL__SUMMARY_DIR=str(d / "summaries"), FLASHMM_LOGGING__AUDIT_FILE=str(d / "audit.jsonl"),
                      FLASHMM_LOGGING__FILE=str(d / "flashmm.log") if "--no-ui" not in args else "", **extra)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("FLASHMM_", "PATH", "HOME")))
    inner = (f"cd {shlex.quote(str(d))} && env -i {exports} TERM=xterm-256color {shlex.quote(str(BIN / 'flashmm-tui'))} "
             f"{args} --summary run.json; echo $? > exit.txt; sleep 600")
    tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "45", inner)
    return d


def quoting(node: dict) -> bool:
    return _venue_record(node["url"])[1] > 0


def finished(d: Path, pid: int, timeout: float = 30.0) -> None:
    _wait("the process to end", lambda: not alive(pid), timeout)


def check_clean_exit(node: dict, d: Path, cause: str, code: int = 0) -> dict:
    s = json.loads((d / "run.json").read_text())
    assert s["exit"]["cause"].startswith(cause), s["exit"]
    assert s["exit"]["code"] == code and s["exit"]["orders_cancelled_cleanly"] is True and s["open_orders"] == 0
    assert _venue_record(node["url"])[1] == 0, "an order of ours is left on the node"
    assert s["orders_placed"] > 0 and s["venue"] == "sei"
    audit = [json.loads(x) for x in (d / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["action"] == "shutdown" and audit[-1]["why"] == s["exit"]["cause"]
    assert f"exit {code}" in audit[-1]["result"]
    return s


# ---- the console -------------------------------------------------------------------------------------------------

def _console(node: dict, name: str) -> tuple[Path, int]:
    d = start(node, name, "--venue sei")
    _wait("RUNNING in the header", lambda: "RUNNING" in screen(name).split("\n", 1)[0], 60)
    _wait("our quotes on the node", lambda: quoting(node))
    return d, pane_child(name)


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM", "SIGINT"])
def test_console_signals_cancel_everything_at_the_node(node, sig):
    name = f"con-{sig.lower()}"
    d, pid = _console(node, name)
    t0 = time.monotonic()
    if sig == "SIGHUP":
        tmux("kill-session", "-t", name)  # the terminal goes away, as when an ssh connection drops
    else:
        os.kill(pid, getattr(signal, sig))
    finished(d, pid)
    took = time.monotonic() - t0
    check_clean_exit(node, d, f"signal {sig}")
    if sig != "SIGHUP":  # the shell printed the exit code, the terminal was given back, the summary printed
        _wait("the exit code", lambda: (d / "exit.txt").exists(), 10)
        assert (d / "exit.txt").read_text().strip() == "0"
        shown = screen(name)
        assert "FlashMM session summary" in shown and f"signal {sig} -> exit 0" in shown
        assert "\x1b[?1049h" not in shown
        tmux("kill-session", "-t", name)
    assert took < 15, took


@pytest.mark.parametrize("keys", [["q"], ["ctrl+q"], ["C-c"]], ids=["q", "ctrl+q", "ctrl+c"])
def test_console_keys_cancel_everything_at_the_node(node, keys):
    name = f"con-{keys[0].replace('+', '-').lower()}"
    d, pid = _console(node, name)
    tmux("send-keys", "-t", name, {"ctrl+q": "C-q"}.get(keys[0], keys[0]))
    # with a position open (the node's takers fill us) it asks first; y quits anyway
    _wait("the question or the exit", lambda: "Quit with a position open?" in screen(name) or not alive(pid), 10)
    if alive(pid):
        assert "does NOT close the position" in screen(name)
        tmux("send-keys", "-t", name, "y")
    finished(d, pid)
    _wait("the exit code", lambda: (d / "exit.txt").exists(), 10)
    assert (d / "exit.txt").read_text().strip() == "0"
    check_clean_exit(node, d, "console: q")
    assert "FlashMM session summary" in screen(name)
    tmux("kill-session", "-t", name)


# ---- the daemon --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "SIGINT", "duration"])
def test_daemon_ways_out_cancel_everything_at_the_node(node, how):
    name = f"dmn-{how.lower()}"
    d = start(node, name, "--venue sei --no-ui" + (" --duration 8" if how == "duration" else ""))
    _wait("our quotes on the node", lambda: quoting(node), 60)
    pid = pane_child(name)
    shown = screen(name)
    # on a terminal: human-readable lines, not JSON, and the configuration only at debug
    assert "[info" in shown and '{"' not in shown and "start" in shown and "symmetric_half_spread_bps" not in shown
    if how == "SIGHUP":
        tmux("kill-session", "-t", name)
    elif how != "duration":
        os.kill(pid, getattr(signal, how))
    finished(d, pid, 40)
    check_clean_exit(node, d, f"signal {how}" if how != "duration" else "--duration 8s reached")
    if how != "SIGHUP":
        _wait("the exit code", lambda: (d / "exit.txt").exists(), 10)
        assert (d / "exit.txt").read_text().strip() == "0"
        assert "FlashMM session summary" in screen(name)
        tmux("kill-session", "-t", name)


# ---- a daemon with two attached consoles -----------------------------------------------------------------------------

def test_two_consoles_attached_to_one_daemon(node):
    d = start(node, "daemon", "--venue sei --no-ui")
    sock = d / "c.sock"
    _wait("our quotes on the node", lambda: quoting(node), 60)

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flashmm"), "ctl", "--socket", str(sock), *args], capture_output=True,
                              text=True, timeout=30)

    def status() -> dict:
        return json.loads(ctl("status", "--json").stdout or "{}")

    attach = f"env -u COLUMNS -u LINES {shlex.quote(str(BIN / 'flashmm-tui'))} --attach {shlex.quote(str(sock))}"
    for name in ("a", "b"):
        tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "45",
             f"cd {shlex.quote(str(d))} && {attach}; echo $? > exit-{name}.txt; sleep 600")
    for name in ("a", "b"):
        _wait(f"console {name} attached", lambda n=name: "ATTACHED" in screen(n).split("\n", 1)[0] and
              "RUNNING" in screen(n).split("\n", 1)[0], 60, show=name)
    assert status()["clients"] >= 2
    tmux("send-keys", "-t", "a", "p")  # pause from one console...
    _wait("PAUSED in the other console", lambda: "PAUSED" in screen("b").split("\n", 1)[0], 10)
    assert status()["mode"] == "PAUSED"  # ...and in ctl status
    _wait("no order at the node while paused", lambda: not quoting(node), 20)
    tmux("send-keys", "-t", "b", "p")  # resume from the other
    _wait("RUNNING again in a", lambda: "RUNNING" in screen("a").split("\n", 1)[0], 10)
    tmux("send-keys", "-t", "a", "d")  # detach: the daemon keeps quoting
    _wait("console a to leave", lambda: (d / "exit-a.txt").exists(), 15)
    assert (d / "exit-a.txt").read_text().strip() == "0" and "the daemon keeps trading" in screen("a")
    _wait("quotes on the node after the detach", lambda: quoting(node), 20)
    assert status()["mode"] == "RUNNING"
    killed = ctl("--why", "attach test", "kill")
    assert killed.returncode == 0 and "killed" in killed.stdout
    _wait("KILLED in console b", lambda: "KILLED" in screen("b").split("\n", 1)[0], 10)
    _wait("no order at the node after the kill", lambda: not quoting(node), 20)
    health = ctl("health")
    assert health.returncode == 1 and "KILLED" in health.stdout
    tmux("send-keys", "-t", "b", "w")  # refused, with the reason, in the console
    _wait("the refusal shown", lambda: "no quotes to widen" in screen("b"), 10)
    pid = pane_child("daemon")
    assert ctl("stop").returncode == 0
    finished(d, pid, 30)
    # console b outlives the daemon and says so
    _wait("b to say the daemon stopped", lambda: "DISCONNECTED" in screen("b").split("\n", 1)[0] and
          "stopped" in screen("b").split("\n", 1)[0], 15)
    tmux("send-keys", "-t", "b", "q")
    _wait("console b to leave", lambda: (d / "exit-b.txt").exists(), 15)
    assert (d / "exit-b.txt").read_text().strip() == "0"
    s = check_clean_exit(node, d, "stop command (flashmm ctl")
    assert s["control"]["connections"] >= 3
    audit = [json.loads(x)["action"] for x in (d / "audit.jsonl").read_text().splitlines()]
    assert audit == ["pause", "resume", "kill", "widen", "shutdown"], audit
    for name in ("a", "b", "daemon"):
        tmux("kill-session", "-t", name)
