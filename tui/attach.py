"""`flashmm-tui --attach [SOCKET]`: the console on a running daemon's control socket.

The console shows the daemon's snapshots and sends it the same commands as the in-process one. `d`
detaches (the daemon keeps trading); `q` asks whether to detach or to stop the daemon. A signal (the ssh
connection dropping: SIGHUP; SIGTERM; SIGINT) only detaches: trading is never tied to this terminal.
When the daemon goes away the console says so and keeps trying to reconnect.
"""

from __future__ import annotations

import asyncio
import signal

from flashmm.config import ConsoleConfig
from tui.app import FlashMMApp
from tui.source import RemoteSource


def run_attached(socket_path: str, console: ConsoleConfig | None = None) -> int:
    return asyncio.run(_attached(socket_path, console or ConsoleConfig()))


async def _attached(socket_path: str, console: ConsoleConfig, headless: bool = False,
                    size: tuple[int, int] | None = None, leave_when_stopped: bool = False,
                    stats: dict | None = None) -> int:
    source = RemoteSource(socket_path, hz=console.refresh_hz, depth=console.book_levels)
    source.start()
    app = FlashMMApp(source, console=console)
    if leave_when_stopped:  # the benchmark's console: gone with the daemon
        app.quitting = True
    loop = asyncio.get_running_loop()
    signals_seen: list[str] = []

    def on_signal(name: str) -> None:
        signals_seen.append(name)
        app.exit_note = f"{name}: detached from {socket_path}; the daemon keeps trading"
        app.exit(0)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await app.run_async(headless=headless, size=size)
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await source.detach()
    if stats is not None:
        stats.update({"pulls": app.pulls, "frames": source.frames, "gaps": source.gaps})
    note = app.exit_note or f"detached from {socket_path}; the daemon keeps trading"
    try:
        print(f"flashmm-tui: {note}", flush=True)
    except (OSError, ValueError):
        pass
    return app.return_code or 0


if __name__ == "__main__":  # `python -m tui.attach SOCKET`: a headless attached console (flashmm bench ui-overhead)
    import json
    import sys

    figures: dict = {}
    rc = asyncio.run(_attached(sys.argv[1], ConsoleConfig(), headless=True, size=(160, 45), leave_when_stopped=True,
                               stats=figures))
    print(json.dumps(figures), flush=True)
    sys.exit(rc)
