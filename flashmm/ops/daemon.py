"""The headless runner (`flashmm-tui --no-ui`): the engine, JSON logs, a status line every few seconds,
and on SIGINT/SIGTERM every order cancelled before exit 0 with the summary written."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from flashmm.config import Config
from flashmm.core.engine import Engine
from flashmm.model.predictor import predictor_for
from flashmm.ops.lease import claim_instance
from flashmm.ops.preflight import check_paths, check_redis
from flashmm.telemetry.failsafe import STDERR, write_summary  # never raise: a summary the disk refuses goes to stderr
from flashmm.telemetry.logging import AuditLog, configure_logging, get_logger, register_secret
from flashmm.venues.base import VenueStartError
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


def run_console(cfg: Config, duration_s: float | None, summary_path: str | None, data: list[str] | None = None) -> int:
    """The Textual console with the engine in a worker on the app's loop. Logs go to a file (the
    terminal belongs to the console): [logging].file, else var/flashmm.log."""
    from tui.app import FlashMMApp  # the engine package never imports the console at module level

    register_config_secrets(cfg)
    run_id = uuid.uuid4().hex[:12]
    check_paths(cfg, summary_path, console=True)  # one line and exit 2 before anything starts (ops/preflight)
    check_redis(cfg)
    configure_logging(cfg.logging.level, cfg.logging.file or "var/flashmm.log", run_id,
                      cfg.logging.max_bytes, cfg.logging.backups, fallback_stderr=False)  # the terminal is the screen
    venue = make_venue(cfg, data=data, passphrase_prompt=terminal_passphrase)
    engine = Engine(cfg, venue, predictor=predictor_for(cfg),
                    audit=AuditLog(cfg.logging.audit_file or None, fallback=None),
                    state_store=make_state_store(cfg, venue))
    guard = claim(cfg, venue, engine, run_id)
    exporter = None
    background = []
    if cfg.influx.enabled:
        from flashmm.telemetry.influx import InfluxExporter, default_tags, publish_metrics

        exporter = InfluxExporter(cfg.influx)
        exporter.start()
        tags = default_tags(engine, run_id)
        background.append(lambda: publish_metrics(engine, exporter, cfg.influx.interval_s, tags, clock=time.time_ns))
    app = FlashMMApp(engine, duration_s=duration_s, console=cfg.console, background=background)
    try:
        rc = app.run()
    finally:
        if exporter is not None:
            exporter.stop(5.0)
        guard.release()
    if summary_path:
        summary = engine.summary()
        summary["exit"] = {"signal": None, "orders_cancelled_cleanly": not engine.oms.orders, "via": "console",
                           "unconfirmed": engine.guards.unconfirmed()}
        write_summary(summary_path, summary)
    if engine.fault:
        print(f"flashmm-tui: engine faulted: {engine.fault} (orders cancelled: {not engine.oms.orders})",
              file=sys.stderr)
        return 1
    empty = nothing_processed(engine)
    if empty:
        print(f"flashmm-tui: {empty}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else (app.return_code or 0)


async def run_daemon(cfg: Config, duration_s: float | None, summary_path: str | None, speed: float | None,
                     data: list[str] | None = None, on_engine: Callable[[Engine], None] | None = None) -> int:
    """`on_engine` sees the engine before it starts (the soak benchmark's probe, flashmm/ops/soak.py)."""
    run_id = uuid.uuid4().hex[:12]
    register_config_secrets(cfg)
    check_paths(cfg, summary_path)  # one line and exit 2 before anything starts (ops/preflight)
    check_redis(cfg)
    configure_logging(cfg.logging.level, cfg.logging.file, run_id, cfg.logging.max_bytes, cfg.logging.backups)
    log = get_logger("daemon")
    log.info("config", **cfg.model_dump())  # the effective configuration; secrets are redacted
    venue = make_venue(cfg, speed, data, passphrase_prompt=terminal_passphrase)
    engine = Engine(cfg, venue, predictor=predictor_for(cfg), audit=AuditLog(cfg.logging.audit_file or None),
                    state_store=make_state_store(cfg, venue))
    guard = claim(cfg, venue, engine, run_id)
    if on_engine is not None:
        on_engine(engine)
    loop = asyncio.get_running_loop()
    signals_seen: list[str] = []

    def on_signal(name: str) -> None:
        signals_seen.append(name)
        log.info("signal", signal=name, action="cancel all orders and exit")
        engine.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)

    async def status_loop() -> None:
        while True:
            await asyncio.sleep(cfg.run.status_interval_s)
            log.info("status", **status_fields(engine))

    log.info("start", venue=venue.name, symbol=venue.instrument.symbol, seed=cfg.run.seed,
             speed=speed if speed is not None else cfg.run.speed, duration_s=duration_s)
    status = asyncio.create_task(status_loop())
    exporter, publisher = start_metrics(cfg, engine, run_id)
    rc = 0
    t0 = time.monotonic()
    try:
        await engine.run(duration_s)
    except VenueStartError as exc:
        print(f"flashmm-tui: {exc}", file=sys.stderr)
        log.error("venue_start_failed", error=str(exc))
        rc = 2
    except Exception:
        rc = 1  # engine.run logged the fault; orders are still cancelled below
    finally:
        status.cancel()
        clean = await engine.shutdown()
        await stop_metrics(exporter, publisher)
        summary = engine.summary()
        summary["exit"] = {"signal": signals_seen[0] if signals_seen else None, "orders_cancelled_cleanly": clean,
                           "wall_s": round(time.monotonic() - t0, 3), "unconfirmed": engine.guards.unconfirmed()}
        if summary_path:
            write_summary(summary_path, summary)
        if not clean:  # exactly what the venue did not confirm; the next start reconciles it
            STDERR.write(f"flashmm-tui: not confirmed by the venue at exit: {'; '.join(summary['exit']['unconfirmed'])}\n")
        log.info("stop", **{k: summary[k] for k in ("events", "quotes", "orders_placed", "fills", "pnl_usdc",
                                                      "inventory_pct", "spread_improvement_pct")}, clean=clean)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        guard.release()
    if not clean and rc == 0:
        rc = 1
    empty = nothing_processed(engine) if rc == 0 and not signals_seen else None
    if empty:
        print(f"flashmm-tui: {empty}", file=sys.stderr)
        log.error("nothing_processed", error=empty)
        rc = 2
    return rc
