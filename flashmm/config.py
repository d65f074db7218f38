"""Configuration: frozen pydantic models of config.toml, unknown keys rejected, environment overrides.

Every default here is also written, with a comment, in the repository's config.toml (a test keeps the
two equal). Environment variables `FLASHMM_<SECTION>__<KEY>` override a file value (secrets and
endpoints belong there, not in committed files), parsed with the type of the key they set: a text key
takes the value as written (or a quoted TOML string), any other key a TOML literal (`1e5`, `true`,
`["a", "b"]`), so an override means the same as the line in the file.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flashmm.core.domain import Instrument

ENV_PREFIX = "FLASHMM_"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class RunConfig(_Section):
    """What to run."""

    venue: Literal["sim", "replay", "sei", "citrex"] = Field(
        "sim", description="Market to trade: sim (embedded simulated Sei market), replay (recorded data, --data), sei (x/dex over CometBFT RPC, [sei]) or citrex (Sei's order book on Sei EVM, [citrex]).")
    paper: bool = Field(False, description="Paper trading on a live venue (citrex): its public market data, our orders filled by the replay's queue model, no key, nothing signed or sent.")
    seed: int = Field(7, description="Seed of the simulated market; the same seed gives the same run.")
    speed: float = Field(1.0, gt=0, description="Venue clock speed as a multiple of wall time (sim only).")
    status_interval_s: float = Field(5.0, ge=0.1, description="Seconds of wall time between daemon status lines (at least 0.1).")
    lock_dir: str = Field("", description="Folder of the instance lock files, one per live venue account (a second instance on the account refuses to start); empty = $XDG_RUNTIME_DIR/flashmm, else /tmp/flashmm-<uid>.")


class InstrumentConfig(_Section):
    """The traded pair of the simulated market and the Sei venue; prices are integer ticks and sizes integer
    lots in the engine. Recorded data brings its own instrument from the instrument table
    (flashmm/data/instruments.toml); these keys also describe a recording whose symbol they name
    (e.g. symbol = "ETHUSDT" with its tick and lot)."""

    symbol: str = Field("SEI/USDC", description="Pair name shown in logs and the console.")
    base: str = Field("SEI", description="Base asset (what the position is counted in).")
    quote: str = Field("USDC", description="Quote asset (what prices and PnL are in).")
    price_tick: str = Field("0.0001", description="Price tick in quote currency (a decimal string).")
    lot_size: str = Field("1", description="Quantity step in base currency, or contracts for an inverse contract (a decimal string).")
    kind: Literal["linear", "inverse"] = Field("linear", description="linear (spot, USD-margined) or inverse (quantities are contracts of `multiplier` quote currency; PnL settles in the base).")
    multiplier: str = Field("1", description="Linear: base units per quantity unit; inverse: quote currency per contract (a decimal string).")

    @model_validator(mode="after")
    def _positive_decimals(self) -> "InstrumentConfig":
        for name in ("price_tick", "lot_size", "multiplier"):
            try:
                v = Decimal(getattr(self, name))
            except Exception as exc:  # decimal.InvalidOperation
                raise ValueError(f"{name} must be a decimal string, got {getattr(self, name)!r}") from exc
            if not v.is_finite() or not v > 0:  # is_finite first: comparing a NaN raises InvalidOperation
                raise ValueError(f"{name} must be a finite number > 0")
        return self

    def instrument(self) -> Instrument:
        return Instrument(self.symbol, self.base, self.quote, Decimal(self.price_tick), Decimal(self.lot_size),
                          Decimal(self.multiplier), self.kind == "inverse")


# The simulated market's presets: each chooses the defaults of the [sim] keys it names; a key set in the file
# or the environment overrides its preset value. Measured against their recordings by scripts/calibrate_sim.py
# (tables in the README): "thin" (an on-chain-like sparse book with a spread of several ticks, calibrated to the
# Bitstamp BTC/USD capture of 2015-05-01) and "deep" (a one-tick book calibrated to Binance BTCUSDT spot).
SIM_PRESETS: dict[str, dict[str, Any]] = {
    "thin": {
        "vol_calm_bps": 0.34,
        "vol_volatile_bps": 1.1,
        "regime_switch_per_s": 0.002,
        "regime_revert_per_s": 0.01,
        "jump_rate_per_s": 0.0075,
        "jump_bps": 5.5,
        "lp_orders_per_s": 1.1,
        "lp_offset_ticks": 1.0,
        "lp_join_best_prob": 0.08,
        "lp_distance_ticks": 43.0,
        "lp_size_mean_lots": 1000.0,
        "cancel_per_s": 0.003,
        "stale_cancel_prob": 0.04,
        "noise_trades_per_s": 0.008,
        "informed_trades_per_s": 0.05,
        "informed_threshold_ticks": 0.12,
        "trade_size_median_lots": 190.0,
        "trade_size_mean_lots": 3000.0,
        "initial_levels": 0,
        "warmup_s": 1800.0,
    },
    "deep": {
        "vol_calm_bps": 0.8,
        "vol_volatile_bps": 2.2,
        "regime_switch_per_s": 0.01,
        "regime_revert_per_s": 0.05,
        "jump_rate_per_s": 0.0005,
        "jump_bps": 30.0,
        "lp_orders_per_s": 60.0,
        "lp_offset_ticks": 0.0,
        "lp_join_best_prob": 0.0,
        "lp_distance_ticks": 2.0,
        "lp_size_mean_lots": 1700.0,
        "cancel_per_s": 0.08,
        "stale_cancel_prob": 0.5,
        "noise_trades_per_s": 27.0,
        "informed_trades_per_s": 10.0,
        "informed_threshold_ticks": 0.25,
        "trade_size_median_lots": 13.0,
        "trade_size_mean_lots": 650.0,
        "initial_levels": 30,
        "warmup_s": 0.0,
    },
}
SIM_PRESET_DEFAULT = "thin"


class SimConfig(_Section):
    """The embedded simulated market (x/dex batch auction per block + other traders). `preset` chooses the
    defaults of the keys marked "preset" below (their values for each preset are given; uncomment one to
    override it): "thin" (the default) is calibrated to the Bitstamp BTC/USD 2015 capture, "deep" to Binance
    BTCUSDT spot (scripts/calibrate_sim.py; tables in the README). Prices stay SEI/USDC-like ([instrument])."""

    preset: Literal["thin", "deep"] = Field(SIM_PRESET_DEFAULT, description="Market preset: thin (a sparse on-chain-like book, spread of several ticks; Bitstamp 2015) or deep (a one-tick book; Binance BTCUSDT). It sets the keys marked preset; a key given here overrides it.")
    block_ms: int = Field(400, ge=50, le=5000, description="Block interval of the simulated chain.")
    initial_price: float = Field(0.40, gt=0, description="Starting fair price in quote currency.")
    vol_calm_bps: float = Field(ge=0, description="Fair-price volatility in the calm regime, bps per sqrt(s).")
    vol_volatile_bps: float = Field(ge=0, description="Fair-price volatility in the volatile regime.")
    regime_switch_per_s: float = Field(ge=0, description="Rate of calm->volatile switches per second.")
    regime_revert_per_s: float = Field(ge=0, description="Rate of volatile->calm switches per second.")
    jump_rate_per_s: float = Field(ge=0, description="Rate of fair-price jumps per second.")
    jump_bps: float = Field(ge=0, description="Mean absolute jump size in bps (exponential).")
    lp_orders_per_s: float = Field(ge=0, description="Rate of other traders' limit orders.")
    lp_offset_ticks: float = Field(ge=0, description="Least distance of other traders' limit orders from the fair price beyond its nearest tick (their narrowest half-spread), in ticks.")
    lp_join_best_prob: float = Field(ge=0, le=1, description="Chance that a limit order joins the queue at its side's best price instead, where that price is at least lp_offset_ticks from the fair price.")
    lp_distance_ticks: float = Field(gt=0, description="Mean extra distance (geometric) of limit orders beyond that least distance, in ticks.")
    lp_size_mean_lots: float = Field(gt=0, description="Mean size of other traders' limit orders.")
    cancel_per_s: float = Field(ge=0, description="Per-order cancellation rate of resting limit orders.")
    stale_cancel_prob: float = Field(ge=0, le=1, description="Chance per block that an order on the wrong side of the fair price is pulled.")
    noise_trades_per_s: float = Field(ge=0, description="Rate of uninformed market orders.")
    informed_trades_per_s: float = Field(ge=0, description="Peak rate of informed market orders (scaled by mispricing).")
    informed_threshold_ticks: float = Field(ge=0, description="Mispricing (fair - mid, ticks) at which informed flow starts.")
    trade_size_median_lots: float = Field(gt=0, description="Median market-order size (lognormal).")
    trade_size_mean_lots: float = Field(gt=0, description="Mean market-order size (lognormal; heavy tail).")
    initial_levels: int = Field(ge=0, description="Price levels per side seeded at start (3 orders each).")
    warmup_s: float = Field(ge=0, le=86_400, description="Seconds the other traders trade, unseen, before the first block, so the run starts from the preset's usual book rather than the seeded one.")
    maker_fee_bps: float = Field(0.0, description="Maker fee in bps of notional (negative = rebate).")
    taker_fee_bps: float = Field(0.0, description="Taker fee in bps of notional.")
    gas_price_usei: float = Field(0.02, ge=0, description="Gas price in usei per gas (pacific-1 minimum).")
    gas_per_tx: int = Field(200_000, ge=0, description="Gas limit of one order transaction.")
    dex_fee_usei_per_order: float = Field(5500.0, ge=0, description="x/dex charge per placed order (55000 x 0.1 usei).")
    dex_fee_usei_per_cancel: float = Field(5300.0, ge=0, description="x/dex charge per cancellation.")
    our_account_funds_usdc: float = Field(100_000.0, gt=0, description="Quote balance of our account at start.")

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """Keys the input leaves out take their preset's value (the preset itself defaulting to thin)."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", SIM_PRESET_DEFAULT)
        values = SIM_PRESETS.get(preset) if isinstance(preset, str) else None
        # an unknown preset: fill from the default one, so that the only error is the preset's own
        return {**(values or SIM_PRESETS[SIM_PRESET_DEFAULT]), **data}

    @model_validator(mode="after")
    def _sizes(self) -> "SimConfig":
        if self.trade_size_mean_lots < self.trade_size_median_lots:
            raise ValueError("trade_size_mean_lots must be >= trade_size_median_lots (lognormal)")
        if self.initial_levels == 0 and self.warmup_s == 0:
            raise ValueError("initial_levels = 0 needs warmup_s > 0: the market would open with an empty book")
        return self


class ReplayConfig(_Section):
    """Replay of recorded real markets (--venue replay --data PATH, flashmm backtest). Our orders fill by a
    queue-position model against the recorded book; the recording itself is not changed by them."""

    latency_ms: float = Field(50.0, ge=0, description="Delay from a decision to its arrival at the venue (orders and cancels).")
    maker_fee_bps: float = Field(0.0, description="Fee on passive fills, bps of notional (negative = rebate); set your tier.")
    taker_fee_bps: float = Field(2.0, description="Fee on aggressive fills, bps of notional; set your tier.")
    cache_dir: str = Field("", description="Where parsed recordings are cached; empty = $XDG_CACHE_HOME/flashmm or ~/.cache/flashmm.")
    use_book_ticker: bool = Field(True, description="Apply the recording's best bid/offer updates (Binance bookTicker) to the book between depth diffs: the real-time top. false = depth diffs only (for comparison).")
    enforce_post_only: bool = Field(True, description="Reject a post-only quote that would cross the recorded book on arrival, as Binance rejects GTX / LIMIT_MAKER orders. false = it takes liquidity and pays the taker fee, as the replay did before (for comparison only).")
    symbol: str = Field("", description="The symbol to replay from a recording holding several (empty = the recording's one symbol).")
    instruments_file: str = Field("", description="Instrument spec file (the format of flashmm/data/instruments.toml) adding to the built-in table.")


class SeiConfig(_Section):
    """The Sei venue: the x/dex order book as of sei-chain v5.5 over CometBFT RPC (x/dex was removed from Sei
    in v5.8, so this serves networks that still run it: a local sei-chain <= v5.5.5, a fork, or FlashMM's
    own node double, `flashmm sei-devnode`). Endpoints may carry credentials: set FLASHMM_SEI__ENDPOINTS in the
    environment, not in this file. The signing key comes from FLASHMM_SEI_PRIVATE_KEY or an encrypted keystore
    (FLASHMM_SEI_KEYSTORE), never from here. The pair's ticks are [instrument].price_tick and lot_size."""

    endpoints: list[str] = Field(["http://127.0.0.1:26657"], description="CometBFT RPC URLs in failover order (WebSocket at <url>/websocket).")
    chain_id: str = Field("arctic-1", description="Chain id; the node's must match or the venue refuses to start.")
    contract_addr: str = Field("sei1jst7ns46feh7q3qvttfq29m7u38ghjy5c0ja4j", description="Order-book contract of the pair (the default is the node double's).")
    price_denom: str = Field("USDC", description="x/dex price denom of the pair.")
    asset_denom: str = Field("SEI", description="x/dex asset denom of the pair.")
    gas_price_usei: float = Field(0.02, ge=0, description="Gas price offered, usei per gas (atlantic-2 needs 0.08).")
    request_timeout_s: float = Field(2.0, gt=0, description="Timeout of one JSON-RPC call.")
    feed_silence_s: float = Field(2.0, gt=0, description="No WebSocket message for this long: reconnect (blocks come every ~0.4 s).")
    reconnect_min_s: float = Field(0.2, gt=0, description="First reconnect delay; doubles per failure, with +-50 % jitter.")
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest reconnect delay.")
    endpoint_failures_to_open: int = Field(3, ge=1, description="Consecutive failures that open an endpoint's breaker.")
    endpoint_cooldown_s: float = Field(5.0, gt=0, description="How long an open endpoint is skipped (doubles while it keeps failing, up to 8x).")
    tx_timeout_blocks: int = Field(10, ge=2, description="A broadcast tx not seen in a block after this many blocks is looked up, then given up.")


class CitrexConfig(_Section):
    """The Citrex venue: Sei's order book today (perpetuals on Sei EVM, off-chain matching), over its REST API
    with EIP-712 signed orders, exactly as the official client citrex-sdk 1.2.2 sends them. The product
    (tick = its `increment`, lot = its `minQuantity`, maker/taker fees) is read from the venue at start, never
    from here. Endpoints may carry credentials: set FLASHMM_CITREX__ENDPOINTS in the environment. The key comes
    from FLASHMM_CITREX_PRIVATE_KEY or an encrypted keystore (FLASHMM_CITREX_KEYSTORE), never from here."""

    endpoints: list[str] = Field(["https://api.citrex.markets/v1"], description="REST base URLs in failover order (the client's mainnet API; staging is https://api.staging.citrex.markets/v1).")
    chain_id: int = Field(1329, ge=1, description="EIP-712 domain chainId: 1329 Sei mainnet, 1328 Sei testnet.")
    verifying_contract: str = Field("0x993543DC8BdFCba9fc7355d822108eF49dB6b9F9", description="EIP-712 domain verifyingContract (the order dispatch contract; the value citrex-sdk's README gives for mainnet).")
    sub_account_id: int = Field(1, ge=0, le=255, description="Sub-account that trades (the client's default is 1).")
    product: str = Field("seiperp", description="Product symbol to quote (e.g. seiperp, ethperp, btcperp); must be listed and active at the venue.")
    poll_interval_s: float = Field(0.5, gt=0, description="Seconds between polls of depth and trade-history (the client shows no WebSocket feed); must be below [risk].feed_stale_s.")
    depth_levels: Literal[5, 10, 20] = Field(20, description="Book levels per side read from depth (5, 10 or 20, as the client allows).")
    trade_lookback: int = Field(100, ge=1, le=500, description="Trades read per poll of trade-history (at most 500); a full page with none seen before is counted as a possible gap.")
    request_timeout_s: float = Field(2.0, gt=0, description="Timeout of one REST request.")
    endpoint_failures_to_open: int = Field(3, ge=1, description="Consecutive failures that open an endpoint's breaker.")
    endpoint_cooldown_s: float = Field(5.0, gt=0, description="How long an open endpoint is skipped (doubles while it keeps failing, up to 8x).")
    rate_limit_backoff_s: float = Field(1.0, gt=0, description="Pause after an HTTP 429 that names no Retry-After; doubles while 429s continue.")
    rate_limit_backoff_max_s: float = Field(30.0, gt=0, description="Longest pause after repeated 429s.")
    max_concurrent_requests: int = Field(8, ge=1, le=64, description="Order requests in flight at once (cancels go first).")
    order_expiration_s: float = Field(600.0, gt=0, description="Expiration set on each order, seconds ahead: a dead man's switch, so the quotes of a process that died (kill -9, power loss) leave the book by themselves; quotes are replaced every [strategy].order_refresh_time_s anyway (the client's default is 30 days). At least twice order_refresh_time_s.")
    cancel_replace: bool = Field(True, description="Send a changed post-only quote as one cancel-and-replace request (forced LIMIT_MAKER + GTC by the venue) instead of a cancel and a place.")
    cancel_all_on_pull: bool = Field(True, description="When every resting order is to be cancelled at once (pause, kill, exit), send one cancel-all for the product.")
    fill_grace_s: float = Field(5.0, gt=0, description="A trade of our account on an order id not yet acknowledged waits this long for the ack, then counts as a fill of an unknown order (never dropped).")
    account_info_interval_s: float = Field(10.0, gt=0, description="Seconds between reads of balances and account health (shown in status).")
    paper_latency_ms: float = Field(50.0, ge=0, description="Paper trading: delay from a decision to its arrival at the simulated queue (orders and cancels).")

    @model_validator(mode="after")
    def _check(self) -> "CitrexConfig":
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        vc = self.verifying_contract
        if not (vc.startswith("0x") and len(vc) == 42 and all(c in "0123456789abcdefABCDEF" for c in vc[2:])):
            raise ValueError("verifying_contract must be a 0x-prefixed 20-byte hex address")
        if self.rate_limit_backoff_max_s < self.rate_limit_backoff_s:
            raise ValueError("rate_limit_backoff_max_s must be >= rate_limit_backoff_s")
        return self


class StrategyConfig(_Section):
    """Price parameters are in bps of the mid, so one configuration means the same on any instrument;
    the quoter converts them to ticks at the current mid."""

    model: Literal["glft", "avellaneda_stoikov", "symmetric"] = Field(
        "glft", description="Quoting model: glft, avellaneda_stoikov, or symmetric (fixed spread, no skew, no model: the baseline).")
    symmetric_half_spread_bps: float = Field(2.5, gt=0, description="Half-spread of the symmetric baseline, bps.")
    risk_aversion: float = Field(0.02, gt=0, description="gamma: inventory risk aversion, per bps of price per order-size unit of inventory.")
    arrival_intensity: float = Field(1.0, gt=0, description="A: fill intensity at zero distance, fills per second.")
    arrival_decay: float = Field(1.2, gt=0, description="k: decay of fill intensity per bps of distance from the mid.")
    horizon_s: float = Field(60.0, gt=0, description="T - t for Avellaneda-Stoikov, seconds.")
    order_levels: int = Field(2, ge=1, le=10, description="Quote levels per side.")
    level_spacing_bps: float = Field(2.5, gt=0, description="Distance between consecutive levels, bps (at least one tick).")
    order_amount_usdc: float = Field(200.0, gt=0, description="Size of a level-1 order in quote currency.")
    level_size_multiplier: float = Field(1.5, gt=0, description="Each further level is this many times larger.")
    inventory_size_skew: bool = Field(True, description="Shrink the side that adds to inventory in proportion to position/limit.")
    min_edge_bps: float = Field(0.5, ge=0, description="Minimum half-spread beyond the maker fee, in bps.")
    refresh_tolerance_bps: float = Field(0.0, ge=0, description="Keep a resting order whose price is within this many bps of the new target (the floor of both tolerances below).")
    refresh_tolerance_tight_frac: float = Field(0.3, ge=0, description="Replace an order with less edge than its target (a bid above it, an ask below it) beyond this fraction of the half-spread.")
    refresh_tolerance_loose_frac: float = Field(1.0, ge=0, description="Keep an order with more edge than its target (further from the fair value) up to this fraction of the half-spread.")
    refresh_tolerance_size_pct: float = Field(20.0, ge=0, description="Keep a resting order whose size is within this % of the target.")
    order_refresh_time_s: float = Field(30.0, gt=0, description="Replace resting orders older than this even if unchanged.")
    vol_halflife_s: float = Field(30.0, gt=0, description="Half-life of the EWMA volatility estimate.")
    vol_floor_bps: float = Field(0.25, ge=0, description="Lower bound on volatility used for quoting, bps per sqrt(s).")
    prediction_skew_bps: float = Field(2.5, ge=0, description="With alpha = \"model\" and a direction model that has no expected move (format version 1): reservation shift at full confidence in the predicted direction, bps.")
    alpha: Literal["online", "imbalance", "model", "none"] = Field(
        "online", description="Fair value = mid + alpha. online: the expected move over alpha_horizon_s from a ridge regression on depth, order-flow and trade-flow imbalance and momentum, learned online from the market (core/alpha.py); imbalance: imbalance_alpha_bps x the level-1 depth imbalance; model: the prediction model's expected move over its horizon (within alpha_cap_bps; a direction model without one: prediction_skew_bps x confidence x direction); none: the mid.")
    alpha_horizon_s: float = Field(1.0, gt=0, description="Horizon of the online alpha's target (the mid's move), seconds.")
    alpha_halflife_s: float = Field(600.0, gt=0, description="Half-life of the online alpha's memory, seconds of venue time.")
    alpha_cap_bps: float = Field(3.0, ge=0, description="Largest fair-value shift the alpha may make, bps.")
    alpha_weight: float = Field(1.0, ge=0, description="Multiplier of the alpha in the fair value (0 = the mid).")
    imbalance_alpha_bps: float = Field(0.5, ge=0, description="With alpha = \"imbalance\": bps of fair-value shift per unit of level-1 depth imbalance.")
    half_spread: Literal["measured", "glft"] = Field(
        "measured", description="measured: the tightest distance at which passive quotes on this market's tape earned min_realised_edge_bps of realised spread (core/calibration.py VirtualFills; never tighter than GLFT; GLFT + the adverse-selection term until a distance is measured); glft: GLFT + the adverse-selection term.")
    glft_floor: bool = Field(True, description="The measured half-spread is never tighter than GLFT's own (which, with k fitted to a thin book's far-reaching trades, can be wide); false = the measured distance alone, floored at the fee, minimum edge and order cost.")
    min_realised_edge_bps: float = Field(0.5, ge=0, description="Realised spread (at adverse_horizon_s) a distance must have earned to be quoted at, bps.")
    virtual_min_fills: float = Field(30.0, gt=0, description="Fills (decayed) a distance needs before its realised spread counts.")
    virtual_halflife_s: float = Field(900.0, gt=0, description="Half-life of the measured fill statistics, seconds of venue time.")
    virtual_quote_life_s: float = Field(5.0, gt=0, le=86_400, description="Longest a measured (virtual) quote stands, seconds; it is replaced sooner when the mid moves toward it by refresh_tolerance_tight_frac of its distance, as a real quote is.")
    virtual_latency_ms: float = Field(50.0, ge=0, le=60_000, description="Delay from decision to a virtual quote standing, ms (as [replay].latency_ms).")
    stand_aside_without_edge: bool = Field(True, description="When the measured distances show none earning min_realised_edge_bps: quote only the side that reduces the position (none when flat), shown as NO EDGE; false = quote at the best-earning distance anyway.")
    adverse_selection_weight: float = Field(1.0, ge=0, description="Multiplier of the adverse-selection estimate added to the half-spread (0 = GLFT alone).")
    adverse_horizon_s: float = Field(5.0, gt=0, description="Horizon over which adverse selection is measured (our fills' and the market's trade impact), seconds.")
    calibrate_intensity: bool = Field(True, description="Fit A and k from the market's trades online (bounded by a quarter and four times arrival_intensity / arrival_decay); false = the configured values.")
    intensity_halflife_s: float = Field(300.0, gt=0, description="Half-life of the trade-intensity fit, seconds of venue time.")
    volatility_model: Literal["ewma", "garch"] = Field("ewma", description="Short volatility of the regime detector: ewma, or garch (GARCH(1,1) targeting the long variance).")
    volatile_widen: float = Field(2.5, ge=1, description="Half-spread multiplier while the regime is volatile (1 = no change).")
    max_improve_ticks: int = Field(1, ge=-1, description="A quote inside the market's spread betters the market's best by at most this many ticks (0 = join it; -1 = no cap).")
    post_only: bool = Field(True, description="Never quote through the opposite best price.")
    quote_interval_ms: float = Field(0.0, ge=0, description="Least venue time between quote cycles; 0 = every market update.")


class RiskConfig(_Section):
    """Limits and circuit breakers. Position limit = 2 % of capital by default."""

    capital_usdc: float = Field(100_000.0, gt=0, description="Capital the inventory % is measured against.")
    max_position_usdc: float = Field(2_000.0, gt=0, description="Position limit, both sides (2 % of capital).")
    max_order_usdc: float = Field(1_000.0, gt=0, description="Largest single order.")
    max_orders_per_s: float = Field(20.0, gt=0, description="Order placements per second of venue time (token bucket).")
    order_burst: int = Field(20, ge=1, description="Token-bucket burst for placements.")
    inventory_breach_pct: float = Field(105.0, ge=100.0, description="Position value, % of the limit, at which the inventory breaker flattens (quotes never add beyond the limit; price drift alone must not flatten).")
    max_drawdown_usdc: float = Field(500.0, gt=0, description="PnL drawdown from its peak that pauses quoting.")
    feed_stale_s: float = Field(1.0, gt=0, description="No market data for this long (wall time, live venues): pull quotes. 2.5 blocks of x/dex.")
    latency_widen_ms: float = Field(250.0, gt=0, description="Tick-to-quote p95 above this: widen.")
    ack_latency_widen_ms: float = Field(2000.0, gt=0, description="Order-ack p95 (sent to acknowledged, venue time) above this: widen, as for a slow tick-to-quote (~5 blocks of x/dex).")
    latency_widen_factor: float = Field(2.0, ge=1, description="Spread multiplier while the latency breaker is tripped.")
    extreme_move_bps: float = Field(300.0, gt=0, description="Mid move within extreme_window_s that kills trading.")
    extreme_window_s: float = Field(5.0, gt=0, description="Window of the extreme-move check, seconds of venue time.")
    venue_reject_limit: int = Field(10, ge=1, description="Rejections within reject_window_s that pause quoting.")
    reject_window_s: float = Field(10.0, gt=0, description="Window of the rejection count, seconds of venue time.")
    breaker_cooldown_s: float = Field(10.0, ge=0, description="Time a cleared breaker stays in cooling-down before ok.")

    @model_validator(mode="after")
    def _limits_within_capital(self) -> "RiskConfig":
        if self.max_position_usdc > self.capital_usdc:
            raise ValueError(f"max_position_usdc ({self.max_position_usdc:g}) is above capital_usdc "
                             f"({self.capital_usdc:g}): a position limit beyond the capital is no limit")
        return self


class ControlsConfig(_Section):
    """Operator controls (pause, widen, tighten, flatten, kill)."""

    widen_step: float = Field(1.5, gt=1, description="Spread multiplier per widen press.")
    widen_max: float = Field(8.0, ge=1, description="Cap on the widen multiplier.")
    flatten_slippage_bps: float = Field(50.0, gt=0, description="Worst price of flatten orders, bps from mid.")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="Wall seconds to wait for cancel confirmations at exit.")


class ModelConfig(_Section):
    """The prediction model (see models/README.md, its model card). It skews the reservation price by
    [strategy].prediction_skew_bps x confidence x (p_up - p_down); a drift monitor switches to model-free
    pricing (the "model" breaker) while live behaviour departs from the card."""

    path: str = Field("", description="Exported model file; empty = the shipped models/flashmm.pt2; none = run without a model.")
    required: bool = Field(False, description="A missing or unreadable model file stops the start (true) or runs model-free with the breaker shown (false).")
    drift_min_samples: int = Field(200, ge=10, description="Scored predictions / sampled inputs needed before drift is judged.")
    drift_hit_rate_drop_pct: float = Field(15.0, gt=0, description="Drift when the live hit rate falls this many points below the card's validation accuracy.")
    drift_feature_z: float = Field(4.0, gt=0, description="Drift when a live input's mean moves this many training standard deviations.")
    drift_window: int = Field(500, ge=10, description="Predictions and input samples the live statistics are computed over.")


class ConsoleConfig(_Section):
    """The terminal console. Keys are Textual key names; each binding has an id and can be remapped here."""

    refresh_hz: float = Field(10.0, gt=0, le=60, description="How often the console pulls a snapshot from the engine.")
    book_levels: int = Field(10, ge=1, le=50, description="Order book levels shown per side.")
    key_pause: str = Field("p", description="Pause / resume quoting.")
    key_widen: str = Field("w", description="Widen the spread one step.")
    key_tighten: str = Field("W", description="Undo one widen step.")
    key_flatten: str = Field("f", description="Flatten the position (asks for confirmation).")
    key_kill: str = Field("k", description="Kill trading until restart (asks for confirmation).")
    key_kill_now: str = Field("ctrl+k", description="Kill at once, from any focus and over dialogs.")
    key_quit: str = Field("q", description="Stop: cancel all orders, wait for the venue to confirm, write the summary, exit (asks first while a position is open; attached: detach or stop the daemon).")
    key_detach: str = Field("d", description="Attached console: detach, leaving the daemon trading.")
    key_params: str = Field("s", description="Change a parameter while trading (a form with its current value and allowed range).")
    key_tab_orders: str = Field("1", description="Show the orders blotter.")
    key_tab_fills: str = Field("2", description="Show the fills blotter.")
    key_tab_events: str = Field("3", description="Show the event log.")
    key_help: str = Field("question_mark", description="Show the keys.")

    def keymap(self) -> dict[str, str]:
        """Binding id -> key, for Textual's App.set_keymap."""
        return {name[4:]: value for name, value in self if name.startswith("key_")}


class ControlConfig(_Section):
    """The control plane: a local Unix socket on which the daemon (and the console) serve snapshots and take
    commands from `flashmm-tui --attach` and `flashmm ctl`. No TCP listener: remote operators use ssh.
    The socket is created 0600 in a 0700 folder and every connection's peer uid is checked (SO_PEERCRED)."""

    socket: str = Field("var/run/flashmm.sock", description="Control socket path (relative paths are from the working folder); empty = no control socket.")
    allowed_uids: list[int] = Field([], description="Peer uids allowed besides the process's own (root is not implied).")
    publish_hz: float = Field(10.0, gt=0, le=60, description="Snapshots pushed to each attached console at most this often (only when the engine changed).")
    max_clients: int = Field(16, ge=1, le=1024, description="Connections served at once; more are refused with a reason.")
    max_request_bytes: int = Field(65536, ge=1024, le=16_777_216, description="Longest request line; longer input is refused and the connection closed.")
    client_buffer_bytes: int = Field(4_000_000, ge=65536, description="Unsent bytes a slow client may hold; beyond, its snapshots are skipped (counted), never waited for.")
    health_stale_s: float = Field(10.0, gt=0, description="`flashmm ctl health` fails when the engine has processed no market data for this long (wall time).")
    summary_dir: str = Field("var/summaries", description="Every run's summary is also written here as <UTC time>-<run id>.json (empty = only --summary PATH).")


class InfluxConfig(_Section):
    """Metrics export to InfluxDB (off by default: the embedded run needs no servers). The v2 API (org, bucket,
    token) by default; the v1 /write API (database, user, password) for InfluxDB 1.x and compatible stores.
    Secrets come from the environment: FLASHMM_INFLUX__TOKEN, FLASHMM_INFLUX__PASSWORD."""

    enabled: bool = Field(False, description="Export metrics every interval_s.")
    api: Literal["v2", "v1"] = Field("v2", description="Write API: v2 (org/bucket/token) or v1 (/write?db=).")
    url: str = Field("http://127.0.0.1:8086", description="InfluxDB base URL.")
    org: str = Field("flashmm", description="v2 organisation.")
    bucket: str = Field("flashmm", description="v2 bucket.")
    token: str = Field("", repr=False, description="v2 API token: set FLASHMM_INFLUX__TOKEN, never this file.")
    database: str = Field("flashmm", description="v1 database.")
    username: str = Field("", description="v1 user (empty = no authentication).")
    password: str = Field("", repr=False, description="v1 password: set FLASHMM_INFLUX__PASSWORD, never this file.")
    interval_s: float = Field(1.0, gt=0, description="Seconds between metric snapshots.")
    batch_size: int = Field(500, ge=1, description="Points per write request.")
    queue_max_points: int = Field(100_000, ge=10, description="Points kept during an outage; beyond, the oldest are dropped and counted.")
    timeout_s: float = Field(5.0, gt=0, description="HTTP timeout of one write.")
    retry_max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between retries during an outage.")


class RedisConfig(_Section):
    """Hot state in Redis (off by default): position, the fills journal (a stream), open orders, the last book,
    breaker states; a restart recovers from it and reconciles with the venue. The URL may carry a password:
    set it as FLASHMM_REDIS__URL, not in this file."""

    enabled: bool = Field(False, description="Keep state in Redis as well as in memory.")
    url: str = Field("redis://127.0.0.1:6379/0", repr=False, description="Redis URL (FLASHMM_REDIS__URL for one with a password).")
    namespace: str = Field("flashmm", description="Key prefix; one namespace per account and venue.")
    flush_interval_s: float = Field(1.0, gt=0, description="Seconds between position/orders/book/breaker snapshots.")
    retry_max_backoff_s: float = Field(10.0, gt=0, description="Longest wait between reconnection attempts.")
    queue_max: int = Field(1_000_000, ge=100, description="Writes held in memory while Redis is down (fills are never dropped: beyond this the state breaker pauses quoting).")
    lease_ttl_s: float = Field(10.0, ge=0.5, le=300, description="The instance lease (one process per namespace and account): renewed every third of this; a lease whose holder is gone is taken over only once it has expired.")


class LoggingConfig(_Section):
    """Structured JSON logs and the append-only audit log of operator controls."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level written: debug, info, warning, error.")
    format: Literal["auto", "console", "json"] = Field("auto", description="auto: human-readable lines on a terminal, JSON lines otherwise (a file, a pipe, journald); console or json to force one (--log-format).")
    file: str = Field("", description="Log file path; empty = stderr. Rotated by size.")
    max_bytes: int = Field(50_000_000, ge=10_000, description="Rotate the log file at this size.")
    backups: int = Field(5, ge=1, description="Rotated log files kept.")
    audit_file: str = Field("var/audit.jsonl", description="Append-only audit log of operator controls.")


class Config(_Section):
    run: RunConfig = RunConfig()
    instrument: InstrumentConfig = InstrumentConfig()
    sim: SimConfig = SimConfig()
    replay: ReplayConfig = ReplayConfig()
    sei: SeiConfig = SeiConfig()
    citrex: CitrexConfig = CitrexConfig()
    strategy: StrategyConfig = StrategyConfig()
    model: ModelConfig = ModelConfig()
    risk: RiskConfig = RiskConfig()
    controls: ControlsConfig = ControlsConfig()
    console: ConsoleConfig = ConsoleConfig()
    control: ControlConfig = ControlConfig()
    influx: InfluxConfig = InfluxConfig()
    redis: RedisConfig = RedisConfig()
    logging: LoggingConfig = LoggingConfig()


class ConfigError(Exception):
    """One clear message naming the file and the key."""


def default_instrument() -> Instrument:
    return InstrumentConfig().instrument()


def _is_text(section: str, key: str) -> bool:
    """Does config key [section].key hold text (a str, or a Literal of strings)?"""
    sec = Config.model_fields.get(section)
    fld = sec.annotation.model_fields.get(key) if sec is not None and isinstance(sec.annotation, type) \
        and issubclass(sec.annotation, BaseModel) else None
    if fld is None:
        return False
    ann = fld.annotation
    if ann is str:
        return True
    return typing.get_origin(ann) is Literal and all(isinstance(a, str) for a in typing.get_args(ann))


def _env_value(section: str, key: str, raw: str) -> Any:
    """An override, read with the type of the key it sets (the file's TOML gives each value its type; the
    environment gives text): a text key takes the raw text, or the string when it is written as a quoted
    TOML string; any other key a TOML literal, else the text (the model then names the key and the type)."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if _is_text(section, key) and not isinstance(value, str):
        return raw  # 0.0001 for a decimal string, 1 for a symbol: as written
    return value


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[key] = _env_value(section, key, raw)
    return out


def _read_config_file(p: Path, what: str = "config file", error: type[ConfigError] = ConfigError) -> str:
    """The file's text; a FIFO, device or folder is refused before it is opened (reading a FIFO blocks for
    ever, a device may never end)."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise error(f"{what} {p}: not found") from None
    except OSError as exc:
        raise error(f"{what} {p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise error(f"{what} {p}: {kind}, not a regular file: refused (not read)")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # swapped for a FIFO since the stat: still never blocks
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise error(f"{what} {p}: not a regular file: refused (not read)")
            data = f.read(16 * 1024 * 1024 + 1)
    except OSError as exc:
        raise error(f"{what} {p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > 16 * 1024 * 1024:
        raise error(f"{what} {p}: larger than 16 MiB: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {p}: cannot read: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, values in over.items():
        target = merged.setdefault(section, {})
        if isinstance(target, dict):
            target.update(values)
    return merged


def read_toml_file(p: Path, what: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A TOML file as a dict; anything wrong is one `error` naming `what` and the file. A FIFO, device or
    folder is refused without being read (_read_config_file)."""
    try:
        return tomllib.loads(_read_config_file(p, what, error))
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {p}: not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load config.toml (or the built-in defaults when path is None) and apply FLASHMM_* overrides."""
    environ = dict(os.environ) if environ is None else environ
    source = "built-in defaults"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        source = str(p)
        data = read_toml_file(p, "config file")
    overrides = _env_overrides(environ)
    try:
        return Config.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        origin = source
        section = str(err["loc"][0]) if err["loc"] else ""
        leaf = str(err["loc"][1]) if len(err["loc"]) > 1 else ""
        if leaf and leaf in overrides.get(section, {}):
            origin = f"environment {ENV_PREFIX}{section.upper()}__{leaf.upper()}"
        elif not leaf and section in overrides and section not in data:  # a section only the env names
            origin = f"environment {ENV_PREFIX}{section.upper()}__{next(iter(overrides[section])).upper()}"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = f" (got {err['input']!r})" if err["type"] not in ("extra_forbidden", "missing", "value_error") else ""
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"config error in {origin}: {key}: {msg}{got}{more}") from None


def _toml_literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    return repr(v)  # int, or a float written so that it reads back to the same float


def render_toml(cfg: Config, header: str = "", omit: dict[str, str] | None = None,
                commented_presets: bool = False) -> str:
    """`cfg` as a config.toml: every section and key with its description and bounds as a comment.
    `omit` maps "section.key" to why that key is left out (a secret, a value from the environment); the
    loader then takes it from its default or the environment, as usual. `commented_presets` writes the [sim]
    keys a preset sets commented out with every preset's value (the committed config.toml: uncommented they
    would override whatever preset is chosen); otherwise every value is written (a complete configuration)."""
    omit = omit or {}
    preset_keys = ({"sim": {k: {name: values[k] for name, values in SIM_PRESETS.items()}
                            for k in next(iter(SIM_PRESETS.values()))}} if commented_presets else {})
    out = [header] if header else []
    for section, model in cfg:
        doc = (type(model).__doc__ or "").strip()
        for line in doc.splitlines():
            out.append(f"# {line.strip()}".rstrip())
        out.append(f"[{section}]")
        for name, field in type(model).model_fields.items():
            cons = []
            for m in field.metadata:
                for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    if getattr(m, attr, None) is not None:
                        cons.append(f"{sym} {getattr(m, attr)}")
            extra = f" ({', '.join(cons)})" if cons else ""
            by_preset = preset_keys.get(section, {}).get(name)
            why = omit.get(f"{section}.{name}")
            if by_preset is not None:
                values = ", ".join(f"{k} {_toml_literal(v)}" for k, v in by_preset.items())
                out.append(f"# {field.description or name}{extra} [preset: {values}]")
                out.append(f"# {name} = {_toml_literal(getattr(model, name))}")
                continue
            out.append(f"# {field.description or name}{extra}")
            if why is not None:
                out.append(f"# {name}: not written ({why})")
            else:
                out.append(f"{name} = {_toml_literal(getattr(model, name))}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
