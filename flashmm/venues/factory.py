"""Builds the venue named in the configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flashmm.config import Config
from flashmm.venues.base import Venue, VenueStartError


def terminal_passphrase() -> str:
    """The keystore passphrase, asked on the terminal (hidden) before the console or daemon starts."""
    import getpass
    import sys

    if not sys.stdin.isatty():
        raise RuntimeError("the keystore passphrase is needed: set FLASHMM_SEI_KEYSTORE_PASSPHRASE or "
                           "FLASHMM_CITREX_KEYSTORE_PASSPHRASE (no terminal to ask on)")
    return getpass.getpass("FlashMM: passphrase of the keystore: ")


def _register_url_credentials(urls: list[str]) -> None:
    from flashmm.telemetry.logging import register_secret

    for url in urls:  # credentials in an endpoint URL (user:password@) never reach a log
        if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            register_secret(url.split("://", 1)[-1].split("@", 1)[0])


def _run_sync(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, inside or outside a running event loop (the daemon builds
    its venue on its loop, the console before it): on a thread of its own with its own loop."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flashmm-venue-setup") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


def make_citrex_venue(cfg: Config, passphrase_prompt: Callable[[], str] | None = None) -> Venue:
    """The Citrex venue: the product (tick, lot, fees) read from the venue now, since the engine is built
    around its instrument; paper trading needs no key and signs nothing."""
    from flashmm.venues.citrex.venue import CitrexPaperVenue, CitrexVenue, fetch_product

    _register_url_credentials(list(cfg.citrex.endpoints))
    signer = None
    if not cfg.run.paper:
        from flashmm.venues.citrex.signing import CitrexSigner, Domain
        from flashmm.venues.keystore import CITREX_KEYS, load_private_key

        try:
            key = load_private_key(CITREX_KEYS, passphrase_prompt)
            signer = CitrexSigner(key, Domain(cfg.citrex.chain_id, cfg.citrex.verifying_contract),
                                  cfg.citrex.sub_account_id)
        except (RuntimeError, ValueError) as exc:
            raise VenueStartError(f"Citrex signing key: {exc}") from None
    product = _run_sync(lambda: fetch_product(cfg.citrex))
    if signer is None:
        return CitrexPaperVenue(cfg, product)
    return CitrexVenue(cfg, signer, product)


def make_venue(cfg: Config, speed: float | None = None, data: list[str] | None = None,
               passphrase_prompt: Callable[[], str] | None = None) -> Venue:
    speed = cfg.run.speed if speed is None else speed
    if cfg.run.paper and cfg.run.venue != "citrex":
        raise VenueStartError(f"--paper trades a live venue's public feed: use it with --venue citrex "
                              f"(not {cfg.run.venue})")
    if cfg.run.venue == "citrex":
        return make_citrex_venue(cfg, passphrase_prompt)
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
        from flashmm.venues.sei.tx import Signer, load_private_key
        from flashmm.venues.sei.venue import SeiVenue

        _register_url_credentials(list(cfg.sei.endpoints))
        try:
            key = load_private_key(passphrase_prompt) if passphrase_prompt is not None else load_private_key()
        except (RuntimeError, ValueError) as exc:
            raise VenueStartError(f"Sei signing key: {exc}") from None
        return SeiVenue(cfg, Signer(key, cfg.sei.chain_id))
    raise ValueError(f"unknown venue {cfg.run.venue!r}")
