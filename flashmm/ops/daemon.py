"""The two ways to run the engine: the daemon (`flashmm-tui --no-ui`) and the console (`flashmm-tui`).

Both build a `Session` (flashmm/control/shutdown.py): the engine, its control socket ([control].socket:
`flashmm ctl`, `flashmm-tui --attach`), and the one shutdown path that every way out goes through. The
daemon logs human-readable lines on a terminal and JSON otherwise, a status line every few seconds, and
prints the session summary on exit when its output is a terminal."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from flashmm.config import Config
from flashmm.control.server import ControlSocketError
from flashmm.control.shutdown import ExitCode, Session, summary_table
from flashmm.core.engine import Engine
from flashmm.model.predictor import predictor_for
from flashmm.ops.lease import claim_instance
from flashmm.ops.preflight import check_paths, check_redis
from flashmm.telemetry.logging import AuditLog, configure_logging, get_logger, register_secret
from flashmm.venues.factory import make_venue, terminal_passphrase


def status_fields(engine: Engine) -> dict[str, Any]:
    s = engine.snapshot(depth=1)
    return {
        "mode": s.mode,
        "uptime_s": round(s.uptime_s, 1),
        "mid": engine._px(s.mid_ticks) if s.mid_ticks else None,
        "position_lots": s.position_lots,
        "inventory_pct": round(s.inventory_pct, 3),
        "pnl_usdc": round(s.pnl.total, 4),
        "open_orders": len(s.orders),
        "fills": s.counters["fills"],
        "t2q_p99_us": s.latency_us["tick_to_quote"]["p99"],
        "breakers": {b.name: b.state for b in s.breakers if b.state != "ok"},
    }


def make_state_store(cfg: Config, venue: Any) -> Any:
    """Redis state when [redis].enabled (redis is imported only then); one namespace per venue and pair."""
    if not cfg.redis.enabled:
        return None
    from flashmm.core.state_redis import RedisStateStore

    return RedisStateStore(cfg.redis, f"{venue.name}:{venue.instrument.symbol}", venue.instrument)


def claim(cfg: Config, venue: Any, engine: Engine, run_id: str) -> Any:
    """One instance per account (ops/lease), taken once the engine is built (nothing left to fail before it is
    released): the engine shows a lost lease, and a store whose lease was lost never re-writes the journal."""
    guard = claim_instance(cfg, venue, run_id)
    engine.guards.instance = guard
    if engine.state_store is not None:
        engine.state_store.owner = guard
    return guard


def start_metrics(cfg: Config, engine: Engine, run_id: str) -> tuple[Any, Any]:
    """InfluxDB export when enabled: a background flusher thread and a once-a-second publisher task (the
    hot path never touches either). Points carry wall-clock time, so dashboards of a sim run line up."""
    if not cfg.influx.enabled:
        return None, None
    from flashmm.telemetry.influx import InfluxExporter, default_tags, publish_metrics

    exporter = InfluxExporter(cfg.influx)
    exporter.start()
    publisher = asyncio.create_task(publish_metrics(engine, exporter, cfg.influx.interval_s,
                                                    default_tags(engine, run_id), clock=time.time_ns))
    return exporter, publisher


async def stop_metrics(exporter: Any, publisher: Any) -> None:
    if publisher is not None:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
    if exporter is not None:
        await asyncio.to_thread(exporter.stop, 5.0)


def register_config_secrets(cfg: Config) -> None:
    """Secret values from the configuration never reach a log line, whatever key they end up under."""
    register_secret(cfg.influx.token)
    register_secret(cfg.influx.password)
    if "@" in cfg.redis.url:
        register_secret(cfg.redis.url.split("://", 1)[-1].split("@", 1)[0])


def nothing_processed(engine: Engine) -> str | None:
    """On a replay, the one line saying that the run processed no market data or never quoted (a run of
    nothing must not exit 0); None otherwise, and on every other venue."""
    from flashmm.venues.replay import ReplayVenue

    venue = engine.venue
    if not isinstance(venue, ReplayVenue):
        return None
    from flashmm.data.readers import DataError
    from flashmm.research.backtest import check_processed

    try:
        check_processed(venue.data, engine, venue)
    except DataError as exc:
        return str(exc)
    return None


def _print(text: str, stream: Any = None) -> None:
    """Best effort: after SIGHUP the terminal may be gone (the summary file has it all)."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _log_config(cfg: Config, log: Any) -> None:
    """The effective configuration (secrets redacted): in the log file at info; on a terminal only at debug."""
    if cfg.logging.file:
        log.info("config", **cfg.model_dump())
    else:
        log.debug("config", **cfg.model_dump())


def run_console(cfg: Config, duration_s: float | None, summary_path: str | None, data: list[str] | None = None) -> int:
    """The Textual console and the engine on one event loop. Logs go to a file (the terminal belongs to the
    console): [logging].file, else var/flashmm.log. The session summary is printed once the terminal is back."""
    return asyncio.run(_console_main(cfg, duration_s, summary_path, data))


async def _console_main(cfg: Config, duration_s: float | None, summary_path: str | None,
                        data: list[str] | None) -> int:
    from tui.app import FlashMMApp  # the engine package never imports the console at module level
    from tui.source import LocalSource

    register_config_secrets(cfg)
    run_id = uuid.uuid4().hex[:12]
    check_paths(cfg, summary_path, console=True)  # one line and exit 2 before anything starts (ops/preflight)
    check_redis(cfg)
    configure_logging(cfg.logging.level, cfg.logging.file or "var/flashmm.log", run_id,
                      cfg.logging.max_bytes, cfg.logging.backups,
                      fallback_stderr=False, fmt="json")  # the terminal is the screen
    log = get_logger("console")
    log.info("config", **cfg.model_dump())  # to the log file (the terminal belongs to the console)
    venue = make_venue(cfg, data=data, passphrase_prompt=terminal_passphrase)
    engine = Engine(cfg, venue, predictor=predictor_for(cfg),
                    audit=AuditLog(cfg.logging.audit_file or None, fallback=None),
                    state_store=make_state_store(cfg, venue))
    guard = claim(cfg, venue, engine, run_id)
    exporter = None
    background: list[Callable[[], Any]] = []
    cleanups: list[Callable[[], Any]] = []
    if cfg.influx.enabled:
        from flashmm.telemetry.influx import InfluxExporter, default_tags, publish_metrics

        exporter = InfluxExporter(cfg.influx)
        exporter.start()
        tags = default_tags(engine, run_id)
        background.append(lambda: publish_metrics(engine, exporter, cfg.influx.interval_s, tags, clock=time.time_ns))

        async def stop_exporter() -> None:
            await asyncio.to_thread(exporter.stop, 5.0)

        cleanups.append(stop_exporter)
    session = Session(cfg, engine, via="console", run_id=run_id, duration_s=duration_s, summary_path=summary_path,
                      background=tuple(background), cleanups=tuple(cleanups), check_end=nothing_processed)
    try:
        await session.open_control()
    except ControlSocketError as exc:
        _print(f"flashmm-tui: {exc}", sys.stderr)
        if exporter is not None:
            exporter.stop(1.0)
        guard.release()
        return int(ExitCode.START)
    session.install_signals()
    app = FlashMMApp(LocalSource(session.control, session.request_stop), console=cfg.console)
    app_task = asyncio.create_task(app.run_async(), name="console")
    first = asyncio.create_task(app.first_frame.wait())
    # trading starts once the first frame is on screen, so the initial layout never delays a block
    await asyncio.wait({app_task, first}, return_when=asyncio.FIRST_COMPLETED)
    first.cancel()
    session.start_engine()
    report_task = asyncio.create_task(session.wait(), name="session")
    done, _ = await asyncio.wait({app_task, report_task}, return_when=asyncio.FIRST_COMPLETED)
    if report_task in done:
        app.session_over(report_task.result())
        try:
            await app_task
        except Exception as exc:  # the console failed after the shutdown path ran: the report stands
            log.error("console_failed", error=f"{type(exc).__name__}: {exc}")
    else:  # the console ended first (it crashed, or Textual exited by itself): the same shutdown path
        error = app_task.exception() if not app_task.cancelled() else None
        session.request_stop("the console closed" + (f" ({type(error).__name__}: {error})" if error else ""),
                             "console")
    report = await report_task
    session.remove_signals()
    if session.start_error or session.end_error:
        _print(f"flashmm-tui: {session.start_error or session.end_error}", sys.stderr)
    _print(summary_table(report.summary))
    return report.code


async def run_daemon(cfg: Config, duration_s: float | None, summary_path: str | None, speed: float | None,
                     data: list[str] | None = None, on_engine: Callable[[Engine], None] | None = None,
                     log_format: str | None = None) -> int:
    """`on_engine` sees the engine before it starts (the soak benchmark's probe, flashmm/ops/soak.py)."""
    run_id = uuid.uuid4().hex[:12]
    register_config_secrets(cfg)
    check_paths(cfg, summary_path)  # one line and exit 2 before anything starts (ops/preflight)
    check_redis(cfg)
    configure_logging(cfg.logging.level, cfg.logging.file, run_id, cfg.logging.max_bytes, cfg.logging.backups,
                      fmt=log_format or cfg.logging.format)
    log = get_logger("daemon")
    _log_config(cfg, log)
    venue = make_venue(cfg, speed, data, passphrase_prompt=terminal_passphrase)
    engine = Engine(cfg, venue, predictor=predictor_for(cfg), audit=AuditLog(cfg.logging.audit_file or None),
                    state_store=make_state_store(cfg, venue))
    guard = claim(cfg, venue, engine, run_id)
    if on_engine is not None:
        on_engine(engine)
    exporter, publisher = start_metrics(cfg, engine, run_id)

    async def stop_exporter() -> None:
        await stop_metrics(exporter, publisher)

    session = Session(cfg, engine, via="daemon", run_id=run_id, duration_s=duration_s, summary_path=summary_path,
                      cleanups=(stop_exporter,), check_end=nothing_processed)
    try:
        await session.open_control()
    except ControlSocketError as exc:
        _print(f"flashmm-tui: {exc}", sys.stderr)
        log.error("control_socket_failed", error=str(exc))
        await stop_metrics(exporter, publisher)
        guard.release()
        return int(ExitCode.START)
    session.install_signals()

    async def status_loop() -> None:
        while True:
            await asyncio.sleep(cfg.run.status_interval_s)
            log.info("status", **status_fields(engine))

    log.info("start", venue=venue.name, symbol=venue.instrument.symbol, seed=cfg.run.seed,
             speed=speed if speed is not None else cfg.run.speed, duration_s=duration_s,
             control_socket=session.control.where or None)
    status = asyncio.create_task(status_loop())
    session.start_engine()
    try:
        report = await session.wait()
    finally:
        status.cancel()
        await asyncio.gather(status, return_exceptions=True)
        session.remove_signals()
    if session.start_error or session.end_error:
        _print(f"flashmm-tui: {session.start_error or session.end_error}", sys.stderr)
    if sys.stdout.isatty():
        _print(summary_table(report.summary))
    return report.code
