"""Builds the venue named in the configuration."""

from __future__ import annotations

from flashmm.config import Config
from flashmm.venues.base import Venue


def make_venue(cfg: Config, speed: float | None = None) -> Venue:
    if cfg.run.venue == "sim":
        from flashmm.venues.sim import SimVenue

        return SimVenue(cfg.sim, cfg.instrument.instrument(), cfg.run.seed, cfg.run.speed if speed is None else speed)
    raise ValueError(f"unknown venue {cfg.run.venue!r}")
