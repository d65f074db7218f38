"""A busy neighbour for benchmarks: N CPU-bound processes, as another tenant of a small VPS would be, for the
length of a `with` block (`flashmm bench latency --busy-cores N`).

Each neighbour is a separate Python process spinning on integer arithmetic over a small list (it keeps one
core busy and its caches warm with its own data). They are started together and the block begins only once
every one has said it is running; on leaving the block (normally or by an exception) each gets SIGTERM, then
SIGKILL if it has not exited within a few seconds, and is reaped. On Linux each also dies with the process that
started it (PR_SET_PDEATHSIG), so a benchmark killed with SIGKILL leaves no spinning process behind.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

SPIN = r"""
import signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
data = list(range(4096))
x = 0
print("running", flush=True)
while True:
    for v in data:
        x = (x * 31 + v) & 0xFFFFFFFF
"""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux/glibc: the context manager still stops them
        pass


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Is `pid` a live (not zombie) process?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


class BusyNeighbours:
    """`with BusyNeighbours(n) as nb:` -- n CPU-bound processes run for the block; `nb.report()` afterwards says
    how much CPU they took (about one core each when the machine has room for them)."""

    def __init__(self, n: int, start_timeout_s: float = 30.0, stop_timeout_s: float = 5.0) -> None:
        if n < 0:
            raise ValueError("the number of busy cores must be >= 0")
        self.n = n
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.procs: list[subprocess.Popen] = []
        self._started = 0.0
        self._wall_s = 0.0
        self._cpu0: list[float | None] = []
        self._cpu: list[float | None] = []
        self.killed = 0  # neighbours that needed SIGKILL

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None))
            deadline = time.monotonic() + self.start_timeout_s
            for p in self.procs:  # each says it is running before the measurement starts
                left = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([p.stdout], [], [], left)
                if not ready or p.stdout.readline().strip() != b"running":
                    raise RuntimeError(f"busy neighbour {p.pid} did not start within {self.start_timeout_s:g} s")
        except BaseException:
            self.stop()
            raise
        self._cpu0 = [_cpu_s(p.pid) for p in self.procs]
        self._started = time.monotonic()

    def stop(self) -> None:
        """SIGTERM every neighbour, SIGKILL those still running after stop_timeout_s, reap them all."""
        if self._started:
            self._wall_s = time.monotonic() - self._started
        self._cpu = [None if a is None or b is None else b - a
                     for a, b in zip(self._cpu0 or [None] * len(self.procs), (_cpu_s(p.pid) for p in self.procs))]
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.killed += 1
            if p.stdout is not None:
                p.stdout.close()

    def __enter__(self) -> BusyNeighbours:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def report(self) -> dict[str, Any]:
        cpu = [c for c in self._cpu if c is not None]
        return {
            "processes": self.n,
            "pids": self.pids,
            "wall_s": round(self._wall_s, 3),
            "cpu_s": [round(c, 3) for c in cpu],  # CPU each took while the measurement ran
            # CPU each neighbour got over the measurement, in cores (1.0 = a whole core to itself)
            "cores_used": round(sum(cpu) / self._wall_s, 3) if self._wall_s and cpu else None,
            "stopped": all(p.returncode is not None for p in self.procs),
            "needed_sigkill": self.killed,
        }
