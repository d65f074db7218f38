from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flashmm.config import Config
from flashmm.core.domain import OrderAction, OrderType, PlaceOrder
from flashmm.core.engine import Engine
from flashmm.telemetry.logging import AuditLog, configure_logging
from flashmm.venues.sim import SimVenue

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_sink_health():
    """Sink health is process-wide (flashmm.telemetry.failsafe.SINKS): a test that broke a sink on purpose
    must not leave the next test's engine with its io breaker tripped."""
    yield
    from flashmm.telemetry.failsafe import SINKS

    SINKS.reset()


@pytest.fixture(scope="session", autouse=True)
def _private_lock_dir(tmp_path_factory):
    """Instance lock files (flashmm/ops/lease.py) default to $XDG_RUNTIME_DIR/flashmm: each test session gets
    its own, so test runs side by side on one machine (other worktrees) never meet each other's locks. Child
    processes inherit it even where a test strips FLASHMM_* from their environment."""
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("xdg-runtime"))
    yield
    if old is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real recorded market data. Missing data is a failure, never a skip."""
    d = Path(os.environ.get("FLASHMM_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not d.is_dir():
        pytest.fail(f"real market data folder {d} is missing (set FLASHMM_DATA_DIR)")
    return d


class RecordingSimVenue(SimVenue):
    """The real simulated venue, with every submitted action recorded alongside the venue time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[tuple[int, OrderAction]] = []

    def submit(self, actions) -> None:
        now = self.clock.now_ns()
        self.submitted.extend((now, a) for a in actions)
        super().submit(actions)

    def mark(self) -> int:
        return len(self.submitted)

    def places_since(self, mark: int) -> list[PlaceOrder]:
        return [a for _, a in self.submitted[mark:] if isinstance(a, PlaceOrder)]


def make_engine(cfg: Config | None = None, seed: int = 7, audit_path: str | None = None) -> tuple[Engine, RecordingSimVenue]:
    configure_logging("error")
    cfg = cfg or Config()
    venue = RecordingSimVenue(cfg.sim, cfg.instrument.instrument(), seed, speed=float("inf"))
    return Engine(cfg, venue, audit=AuditLog(audit_path), seed=seed), venue


def run_for(engine: Engine, seconds: float) -> None:
    """Advance a started engine by `seconds` of venue time (the run loop, bounded)."""
    asyncio.run(engine.run(seconds)) if engine.start_ns < 0 else asyncio.run(_continue(engine, seconds))


async def _continue(engine: Engine, seconds: float) -> None:
    end = engine.clock.now_ns() + int(seconds * 1e9)
    while engine.clock.now_ns() < end:
        batch = await engine.venue.next_batch()
        if batch is None:
            break
        engine.on_batch(batch)


__all__ = ["RecordingSimVenue", "make_engine", "run_for", "OrderType"]
