"""One way out for every way a process ends.

SIGHUP (the terminal or ssh connection gone), SIGTERM (systemd, docker stop, kill), SIGINT (ctrl+c in a
daemon), the console's q / ctrl+q / ctrl+c, `flashmm ctl stop`, --duration running out, a replay ending,
an engine fault, and a console that crashed: each one becomes `Session.request_stop(cause)` or the end of
the engine task, and `Session.finish` then does, once and in this order: cancel every order and wait for
the venue to confirm (bounded by [controls].shutdown_timeout_s), stop the background tasks, write the
summary (--summary PATH and [control].summary_dir), tell the audit log who stopped it and why, tell the
attached consoles, close the control socket, and choose the exit code. A step that fails is recorded in
the report and the next one still runs. SIGKILL cannot be caught: restart with Redis state (README).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashmm.control import params
from flashmm.control.commands import LocalControl
from flashmm.control.server import ControlServer
from flashmm.control.view import pnl_split
from flashmm.telemetry.failsafe import STDERR, write_summary
from flashmm.telemetry.logging import get_logger
from flashmm.venues.base import VenueStartError

if TYPE_CHECKING:
    from flashmm.config import Config
    from flashmm.core.engine import Engine

SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class ExitCode(enum.IntEnum):
    OK = 0  # stopped as asked; every order cancelled and confirmed
    FAULT = 1  # the engine faulted; every order cancelled and confirmed
    START = 2  # did not start (configuration, venue, key, control socket), or a replay processed nothing
    ORDERS_LEFT = 3  # orders could not be confirmed cancelled: look at the venue now


EXIT_MEANING = {
    ExitCode.OK: "stopped as asked; every order cancelled and confirmed",
    ExitCode.FAULT: "the engine faulted; every order cancelled and confirmed",
    ExitCode.START: "did not start, or processed nothing",
    ExitCode.ORDERS_LEFT: "orders NOT confirmed cancelled: check the venue",
}


@dataclass
class StopReport:
    cause: str
    who: str
    signal: str | None
    code: int
    clean: bool
    summary: dict[str, Any]
    summary_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def brief(self) -> dict[str, Any]:
        return {"cause": self.cause, "who": self.who, "signal": self.signal, "code": self.code, "clean": self.clean,
                "meaning": EXIT_MEANING.get(ExitCode(self.code), ""), "summary_files": self.summary_files,
                "errors": self.errors}


def _fmt_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def summary_table(s: dict[str, Any]) -> str:
    """The session summary in plain lines for a terminal (the JSON file has everything)."""
    ex = s.get("exit", {})
    quote = s.get("instrument", {}).get("quote", "USDC")
    base = s.get("instrument", {}).get("base", "")
    b = s.get("pnl_breakdown", {})
    t = s.get("tick_to_quote_us", {})
    tripped = [f"{k} x{v['trips']}" for k, v in s.get("breakers", {}).items() if v.get("trips")]

    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    rows = [
        ("stopped by", f"{ex.get('cause', '?')} -> exit {ex.get('code', '?')} ({EXIT_MEANING.get(ExitCode(ex['code']), '') if 'code' in ex else ''})"),
        ("ran", f"{_fmt_duration(s.get('uptime_s', 0))} of venue time, {s.get('wall_s', 0):.1f} s wall "
                f"({s.get('venue', '?')} {s.get('symbol', '')})"),
        ("orders", f"{s.get('orders_placed', 0):,} placed: {s.get('orders_cancelled', 0):,} cancelled, "
                   f"{s.get('orders_filled', 0):,} filled, {s.get('orders_rejected', 0):,} rejected, "
                   f"{s.get('open_orders', 0):,} open"),
        ("fills", f"{s.get('fills', 0):,} (fill rate {s.get('fill_rate', 0):.2f}), volume {s.get('volume_base', 0):,g} {base}"),
        ("position", f"{s.get('position_base', 0):+,g} {base} ({s.get('position_usdc', 0):+,.2f} {quote}, "
                     f"{s.get('inventory_pct', 0):+.3f} % of capital; worst {s.get('max_abs_inventory_pct', 0):.3f} %)"),
        ("PnL", f"{s.get('pnl_usdc', 0):+,.4f} {quote} = realised {s.get('pnl_realised_usdc', 0):+,.4f} "
                f"+ unrealised {s.get('pnl_unrealised_usdc', 0):+,.4f}"),
        ("", f"spread capture {b.get('spread_capture', 0):+,.4f}, inventory {b.get('inventory', 0):+,.4f}, "
             f"fees {b.get('fees', 0):+,.4f}"),
        ("spread", f"ours {num(s.get('our_spread_bps'), '.2f')} bps vs the market's "
                   f"{num(s.get('market_spread_bps'), '.2f')} bps (improvement "
                   + (f"{s['spread_improvement_pct']:+.1f} %" if s.get("spread_improvement_pct") is not None
                      else f"n/a: {s.get('spread_improvement_note') or 'no two-sided quoting'}")
                   + f"); at the touch {num(s.get('time_at_touch_pct'), '.1f')} % of the time"),
        ("fill quality", f"effective spread {num(s.get('effective_spread_bps'), '.2f')} bps, realised (5 s) "
                         f"{num((s.get('realised_spread_bps') or {}).get('5s'), '.2f')} bps, adverse selection "
                         f"{num(s.get('adverse_selection_bps'), '.2f')} bps"),
        ("", "markouts " + ", ".join(f"{k} {num(v, '+.2f')}" for k, v in (s.get("markout_bps") or {}).items())
             + f" bps; taker share {num(s.get('taker_share_pct'), '.1f')} %, orders per fill "
               f"{num(s.get('orders_per_fill'), '.1f')}"),
        ("tick-to-quote", f"p50 {num(t.get('p50'), ',.0f')} us, p99 {num(t.get('p99'), ',.0f')} us over "
                          f"{t.get('count', 0):,} cycles (target p99 <= 1,000 us)"),
        ("breakers tripped", ", ".join(tripped) or "none"),
    ]
    if s.get("fault"):
        rows.append(("fault", s["fault"]))
    files = ex.get("summary_files") or []
    if files:
        rows.append(("summary", ", ".join(files)))
    for err in ex.get("errors") or []:
        rows.append(("problem", err))
    width = max(len(k) for k, _ in rows)
    return "\n".join(["FlashMM session summary"] + [f"  {k:<{width}}  {v}" for k, v in rows]) + "\n"


class Session:
    """An engine with its control plane and its one shutdown path, for the daemon and the console alike."""

    def __init__(self, cfg: Config, engine: Engine, *, via: str, run_id: str = "", duration_s: float | None = None,
                 summary_path: str | None = None,
                 background: tuple[Callable[[], Awaitable[Any]], ...] = (),
                 cleanups: tuple[Callable[[], Awaitable[Any]], ...] = (),
                 check_end: Callable[[Engine], str | None] | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.via = via
        self.run_id = run_id
        self.duration_s = duration_s
        self.summary_path = summary_path
        self.log = get_logger("session")
        self.control = LocalControl(engine)
        self.control.request_stop = self.request_stop
        self.server = ControlServer(cfg.control, self.control) if cfg.control.socket else None
        self._background = background
        self._cleanups = cleanups
        self._tasks: list[asyncio.Task] = []
        self._engine_task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self.cause = ""
        self.who = ""
        self.signal: str | None = None
        self.signals_seen: list[str] = []
        self.start_error = ""
        self.check_end = check_end  # a run that ended by itself and processed nothing: one line (exit 2)
        self.end_error = ""
        self.report: StopReport | None = None
        self._finish_lock = asyncio.Lock()
        self._signals_installed: list[int] = []
        self.t0 = time.monotonic()

    # ---- start --------------------------------------------------------------------------------------------
    async def open_control(self) -> None:
        """Open the control socket (ControlSocketError: exit 2 before anything is traded)."""
        if self.server is not None:
            await self.server.start()

    def start_engine(self) -> None:
        """Start trading, and the tasks beside it."""
        if self.cause:  # asked to stop before trading started (a signal during start-up)
            return
        # Everything allocated so far (imports, the model, the venue, the console's widgets) lives for the
        # whole run: moved out of the collector's generations, a full collection no longer walks it. Measured
        # in the console at 20x: full collections took 110-123 ms each and set the p99 of block lateness.
        gc.collect()
        gc.freeze()
        self._engine_task = asyncio.create_task(self._run_engine(), name="engine")
        self._tasks.append(asyncio.create_task(self._sample(), name="control-sampler"))
        for make in self._background:
            self._tasks.append(asyncio.create_task(make()))

    async def start(self) -> None:
        await self.open_control()
        self.start_engine()

    async def _run_engine(self) -> None:
        try:
            await self.engine.run(self.duration_s)
        except VenueStartError as exc:
            self.start_error = str(exc)
            self.log.error("venue_start_failed", error=str(exc))
        except asyncio.CancelledError:
            pass
        except Exception:  # engine.run recorded and logged the fault; the shutdown path cancels the orders
            pass

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.control.tick()

    def install_signals(self) -> None:
        """SIGHUP, SIGTERM and SIGINT into the shutdown path (loop.add_signal_handler: handled between
        batches on the engine's loop, never inside one)."""
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig.name)
            self._signals_installed.append(sig)

    def remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals_installed:
            loop.remove_signal_handler(sig)
        self._signals_installed.clear()

    def _on_signal(self, name: str) -> None:
        self.signals_seen.append(name)
        if not self.request_stop(f"signal {name}", "signal", signal=name):
            self.log.info("signal_while_stopping", signal=name, action="already stopping: orders are being cancelled")

    # ---- stop ---------------------------------------------------------------------------------------------
    def request_stop(self, cause: str, who: str = "", why: str = "", signal: str | None = None) -> bool:
        """Ask for the shutdown path; the first cause is the one reported. Returns False if already asked."""
        if self.cause:
            return False
        self.cause, self.who, self.signal = cause, who or cause, signal
        self.control.stopping = cause
        self.control.changed()
        self.log.info("stopping", cause=cause, who=self.who, why=why, action="cancel all orders, summary, exit")
        self.engine.stop()
        self._stop.set()
        return True

    @property
    def stopping(self) -> bool:
        return bool(self.cause)

    async def wait(self) -> StopReport:
        """Until the engine ends or a stop is asked; then the shutdown path. Returns its report."""
        if self._engine_task is None:  # stopped before trading started
            await self._stop.wait()
            return await self.finish()
        stop_wait = asyncio.create_task(self._stop.wait())
        await asyncio.wait({self._engine_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not self._engine_task.done():  # asked to stop: the engine leaves its loop after the current batch
            try:
                await asyncio.wait_for(asyncio.shield(self._engine_task), self.cfg.controls.shutdown_timeout_s)
            except TimeoutError:
                self.log.error("engine_did_not_stop", waited_s=self.cfg.controls.shutdown_timeout_s)
                self._engine_task.cancel()
                await asyncio.gather(self._engine_task, return_exceptions=True)
        return await self.finish()

    def _resolve_cause(self) -> None:
        if self.cause:
            return
        e = self.engine
        if self.start_error:
            self.cause = f"start failed: {self.start_error}"
        elif e.fault:
            self.cause = f"engine fault: {e.fault}"
        elif self.duration_s is not None and e.start_ns >= 0 and \
                e.clock.now_ns() - e.start_ns >= int(self.duration_s * 1e9):
            self.cause = f"--duration {self.duration_s:g}s reached"
        else:
            self.cause = "the venue ended"
        self.who = self.who or "engine"
        self.control.stopping = self.cause
        self.control.changed()

    async def finish(self) -> StopReport:
        """The shutdown path proper: idempotent, every step attempted."""
        async with self._finish_lock:
            if self.report is not None:
                return self.report
            self._resolve_cause()
            e = self.engine
            errors: list[str] = []
            clean = False
            try:
                clean = await e.shutdown()
            except Exception as exc:  # the venue failed while cancelling: say so, exit 3
                errors.append(f"cancelling orders: {type(exc).__name__}: {exc}")
                self.log.exception("shutdown_cancel_failed")
            for cleanup in self._cleanups:
                try:
                    await cleanup()
                except Exception as exc:
                    errors.append(f"stopping {getattr(cleanup, '__name__', 'a task')}: {type(exc).__name__}: {exc}")
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.check_end is not None and not self.signal and self.who == "engine" and not e.fault \
                    and not self.start_error:
                try:
                    self.end_error = self.check_end(e) or ""
                except Exception as exc:
                    errors.append(f"checking what the run processed: {type(exc).__name__}: {exc}")
            if not clean and (e.oms.orders or errors):  # orders left, or a failed cancel we cannot vouch for
                code = ExitCode.ORDERS_LEFT
            elif self.start_error or self.end_error:
                code = ExitCode.START
            elif e.fault:
                code = ExitCode.FAULT
            else:
                code = ExitCode.OK
            summary = self._summary(errors)
            files: list[str] = []
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            targets = []
            if self.cfg.control.summary_dir:
                targets.append(str(Path(self.cfg.control.summary_dir) / f"{stamp}-{self.run_id or os.getpid()}.json"))
            if self.summary_path:  # written last, so it records a failure to write the other
                targets.append(self.summary_path)
            summary["exit"].update({"code": int(code), "orders_cancelled_cleanly": clean, "summary_files": targets})
            summary["exit"]["unconfirmed"] = e.guards.unconfirmed()
            for target in targets:
                # never raises (telemetry/failsafe): a summary the disk refuses goes to stderr as one line
                if write_summary(target, summary):
                    files.append(target)
                else:
                    errors.append(f"summary {target}: not written (the summary went to stderr)")
                    summary["exit"]["errors"] = errors
            if not clean and summary["exit"]["unconfirmed"]:  # exactly what the venue did not confirm
                STDERR.write("flashmm-tui: not confirmed by the venue at exit: "
                             f"{'; '.join(summary['exit']['unconfirmed'])}\n")
            if files != targets:
                summary["exit"]["summary_files"] = files
            result = (f"exit {int(code)}: " + ("all orders cancelled" if clean else f"{len(e.oms.orders)} orders "
                      "NOT confirmed cancelled") + (f"; summary {files[-1]}" if files else ""))
            try:
                e.audit.write("shutdown", self.who, self.cause, result, e.clock.now_ns())
            except Exception as exc:
                errors.append(f"audit log: {type(exc).__name__}: {exc}")
            summary["exit"]["errors"] = errors
            report = StopReport(self.cause, self.who, self.signal, int(code), clean, summary, files, errors)
            self.control.stop_report = report.brief()
            self.control.changed()
            self.log.info("stop", cause=self.cause, code=int(code), clean=clean, summary_files=files,
                          **{k: summary[k] for k in ("events", "quotes", "orders_placed", "fills", "pnl_usdc",
                                                     "inventory_pct", "spread_improvement_pct")})
            if self.server is not None:
                try:
                    await self.server.close(report.brief())
                except Exception as exc:
                    errors.append(f"control socket: {type(exc).__name__}: {exc}")
            instance = e.guards.instance  # the instance lease and lock (ops/lease), released last
            if instance is not None:
                try:
                    instance.release()
                except Exception as exc:
                    errors.append(f"releasing the instance lease: {type(exc).__name__}: {exc}")
            self.report = report
            return report

    def _summary(self, errors: list[str]) -> dict[str, Any]:
        e = self.engine
        summary = e.summary()
        mid = e.book.mid_ticks() if e.book.two_sided() else 0.0
        _, realised, unrealised = pnl_split(e, mid)
        summary["pnl_realised_usdc"] = round(realised, 4)
        summary["pnl_unrealised_usdc"] = round(unrealised, 4)
        summary["control"] = self.server.stats() if self.server is not None else {}
        summary["control"]["parameters_changed"] = {
            r.key: r.value for r in params.rows(e.cfg, self.control.start_cfg, e.widen) if r.modified}
        summary["exit"] = {"cause": self.cause + (f"; {self.end_error}" if self.end_error else ""), "who": self.who,
                           "signal": self.signal, "via": self.via,
                           "signals_seen": self.signals_seen, "wall_s": round(time.monotonic() - self.t0, 3),
                           "errors": errors}
        return summary

    async def close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_signals()
