"""Builds the venue named in the configuration."""

from __future__ import annotations

import os
from pathlib import Path

from flashmm.config import Config
from flashmm.venues.base import Venue


def default_cache_dir(cfg: Config) -> Path:
    if cfg.replay.cache_dir:
        return Path(cfg.replay.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flashmm"


def make_venue(cfg: Config, speed: float | None = None, data: list[str] | None = None) -> Venue:
    speed = cfg.run.speed if speed is None else speed
    if cfg.run.venue == "sim":
        from flashmm.venues.sim import SimVenue

        return SimVenue(cfg.sim, cfg.instrument.instrument(), cfg.run.seed, speed)
    if cfg.run.venue == "replay":
        from flashmm.data.loader import load_events
        from flashmm.venues.replay import ReplayVenue

        if not data:
            raise ValueError("--venue replay needs --data PATH (a recording: file or folder)")
        return ReplayVenue(load_events(list(data), default_cache_dir(cfg)), cfg.replay, speed)
    raise ValueError(f"unknown venue {cfg.run.venue!r}")
