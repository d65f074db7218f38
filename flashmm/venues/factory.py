"""Builds the venue named in the configuration."""

from __future__ import annotations

from collections.abc import Callable

from flashmm.config import Config
from flashmm.venues.base import Venue, VenueStartError


def terminal_passphrase() -> str:
    """The keystore passphrase, asked on the terminal (hidden) before the console or daemon starts."""
    import getpass
    import sys

    if not sys.stdin.isatty():
        raise RuntimeError("the keystore passphrase is needed: set FLASHMM_SEI_KEYSTORE_PASSPHRASE "
                           "(no terminal to ask on)")
    return getpass.getpass("FlashMM: passphrase of the Sei keystore: ")


def make_venue(cfg: Config, speed: float | None = None, data: list[str] | None = None,
               passphrase_prompt: Callable[[], str] | None = None) -> Venue:
    speed = cfg.run.speed if speed is None else speed
    if cfg.run.venue == "sim":
        from flashmm.venues.sim import SimVenue

        return SimVenue(cfg.sim, cfg.instrument.instrument(), cfg.run.seed, speed)
    if cfg.run.venue == "replay":
        from flashmm.data.loader import load_configured
        from flashmm.venues.replay import ReplayVenue

        if not data:
            raise ValueError("--venue replay needs --data PATH (a recording: file or folder)")
        return ReplayVenue(load_configured(cfg, list(data)), cfg.replay, speed)
    if cfg.run.venue == "sei":
        from flashmm.telemetry.logging import register_secret
        from flashmm.venues.sei.tx import Signer, load_private_key
        from flashmm.venues.sei.venue import SeiVenue

        for url in cfg.sei.endpoints:  # credentials in an endpoint URL (user:password@) never reach a log
            if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
                register_secret(url.split("://", 1)[-1].split("@", 1)[0])
        try:
            key = load_private_key(passphrase_prompt) if passphrase_prompt is not None else load_private_key()
        except (RuntimeError, ValueError) as exc:
            raise VenueStartError(f"Sei signing key: {exc}") from None
        return SeiVenue(cfg, Signer(key, cfg.sei.chain_id))
    raise ValueError(f"unknown venue {cfg.run.venue!r}")
