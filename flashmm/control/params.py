"""Parameters changed while trading: validated by the same pydantic models as config.toml, applied by
`Engine.reconfigure` (the next quote cycle uses them), audited by the caller, savable as a config file.

Only keys that are safe to change on a running engine are offered (`LIVE_KEYS`); the rest (venue, seed,
model file, sockets...) need a restart. `spread_multiplier` is the operator's widen factor (what `w`/`W`
step), set to an exact value here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flashmm.config import Config, render_toml

SPREAD_MULTIPLIER = "spread_multiplier"

# (key, label shown to the operator); order = the order of the form
LIVE_KEYS: tuple[tuple[str, str], ...] = (
    (SPREAD_MULTIPLIER, "spread multiplier (widen)"),
    ("strategy.order_amount_usdc", "order size"),
    ("strategy.risk_aversion", "γ risk aversion"),
    ("strategy.order_levels", "levels per side"),
    ("strategy.level_spacing_bps", "level spacing"),
    ("strategy.level_size_multiplier", "level size multiplier"),
    ("strategy.min_edge_bps", "minimum edge"),
    ("strategy.min_realised_edge_bps", "measured: edge a distance must earn"),
    ("strategy.adverse_selection_weight", "adverse-selection weight"),
    ("strategy.alpha_weight", "alpha weight"),
    ("strategy.prediction_skew_bps", "prediction skew"),
    ("strategy.volatile_widen", "widen while volatile"),
    ("strategy.max_improve_ticks", "improve the best by at most"),
    ("strategy.symmetric_half_spread_bps", "symmetric half-spread"),
    ("strategy.inventory_size_skew", "inventory size skew"),
    ("strategy.stand_aside_without_edge", "stand aside without edge"),
    ("strategy.refresh_tolerance_bps", "refresh tolerance (price)"),
    ("strategy.refresh_tolerance_tight_frac", "refresh tolerance (less edge)"),
    ("strategy.refresh_tolerance_loose_frac", "refresh tolerance (more edge)"),
    ("strategy.refresh_tolerance_size_pct", "refresh tolerance (size)"),
    ("strategy.order_refresh_time_s", "order refresh time"),
    ("strategy.quote_interval_ms", "quote interval"),
    ("risk.max_position_usdc", "position limit"),
    ("risk.max_order_usdc", "largest order"),
    ("risk.max_orders_per_s", "order rate limit"),
    ("risk.order_burst", "order burst"),
    ("risk.max_drawdown_usdc", "drawdown limit"),
    ("risk.inventory_breach_pct", "inventory breaker at"),
    ("risk.feed_stale_s", "feed breaker: stale after"),
    ("risk.latency_widen_ms", "latency breaker: t2q p95 over"),
    ("risk.ack_latency_widen_ms", "latency breaker: ack p95 over"),
    ("risk.latency_widen_factor", "latency breaker: widen by"),
    ("risk.extreme_move_bps", "extreme-market breaker: move"),
    ("risk.extreme_window_s", "extreme-market breaker: window"),
    ("risk.venue_reject_limit", "venue-errors breaker: rejections"),
    ("risk.reject_window_s", "venue-errors breaker: window"),
    ("risk.breaker_cooldown_s", "breaker cooldown"),
    ("controls.widen_step", "widen step"),
    ("controls.widen_max", "widen cap"),
    ("controls.flatten_slippage_bps", "flatten slippage cap"),
)
# Not offered: keys the engine reads once at start (the learned components: alpha horizon and memory, the
# intensity fit's bounds, A and k, the virtual-fill statistics, the volatility model; post-only; the venue).
_LABELS = dict(LIVE_KEYS)


def field_bounds(field: Any) -> list[tuple[str, float]]:
    """A field's numeric bounds as (">", 0), ("<=", 60)... from its pydantic metadata."""
    out = []
    for m in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(m, attr, None) is not None:
                out.append((sym, getattr(m, attr)))
    return out


class ParamError(ValueError):
    """One line naming the key and what is wrong."""


def _unit(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    for suffix, unit in (("_bps", "bps"), ("_usdc", "USDC"), ("_pct", "%"), ("_ms", "ms"), ("_per_s", "/s"),
                         ("_s", "s")):
        if leaf.endswith(suffix):
            return unit
    return "×" if leaf in ("spread_multiplier", "level_size_multiplier", "widen_step", "widen_max",
                          "latency_widen_factor") else ""


@dataclass(frozen=True, slots=True)
class ParamRow:
    """One live parameter as the operator sees it."""

    key: str
    label: str
    value: Any
    start: Any  # the value the process started with
    bounds: str  # e.g. "> 0", ">= 1, <= 10", "true/false"
    unit: str
    description: str
    kind: str  # float | int | bool

    @property
    def modified(self) -> bool:
        return self.value != self.start


def _field(key: str) -> Any:
    section, _, name = key.partition(".")
    model = Config.model_fields[section].annotation
    return model.model_fields[name]  # type: ignore[union-attr]


def _kind(key: str) -> str:
    if key == SPREAD_MULTIPLIER:
        return "float"
    ann = _field(key).annotation
    return {bool: "bool", int: "int", float: "float"}.get(ann, "str")


def current(cfg: Config, widen: float, key: str) -> Any:
    if key == SPREAD_MULTIPLIER:
        return round(widen, 6)
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def rows(cfg: Config, start: Config, widen: float) -> tuple[ParamRow, ...]:
    out = []
    for key, label in LIVE_KEYS:
        if key == SPREAD_MULTIPLIER:
            bounds, desc = f">= 1, <= {cfg.controls.widen_max:g}", "Multiplier on every half-spread (w / W step it)."
            start_v = 1.0
        else:
            f = _field(key)
            bounds = ", ".join(f"{s} {v:g}" for s, v in field_bounds(f)) or ("true/false" if _kind(key) == "bool" else "")
            desc = f.description or ""
            start_v = current(start, 1.0, key)
        out.append(ParamRow(key, label, current(cfg, widen, key), start_v, bounds, _unit(key), desc, _kind(key)))
    return tuple(out)


def parse_assignment(text: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (key, raw value)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ParamError(f"expected KEY=VALUE, got {text!r}")
    return key, raw


def parse_value(raw: str) -> Any:
    """A TOML literal (2.5, 3, true, "x"), as in FLASHMM_* overrides; otherwise the text itself."""
    if not isinstance(raw, str):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def validate(cfg: Config, widen: float, key: str, value: Any) -> tuple[Config, float]:
    """The configuration (and widen factor) with `key` set to `value`, validated by the config models;
    ParamError with one line otherwise."""
    if not isinstance(key, str) or key not in _LABELS:
        known = ", ".join(k for k, _ in LIVE_KEYS)
        raise ParamError(f"{key!r} cannot be changed while trading (live keys: {known})")
    value = parse_value(value)
    if key == SPREAD_MULTIPLIER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ParamError(f"{key}: a number is needed, got {value!r}")
        if not 1.0 <= float(value) <= cfg.controls.widen_max:
            raise ParamError(f"{key}: must be >= 1 and <= {cfg.controls.widen_max:g} (controls.widen_max), got {value!r}")
        return cfg, float(value)
    section, _, name = key.partition(".")
    data = cfg.model_dump()
    data[section][name] = value
    try:
        new = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ParamError(f"{where}: {err['msg']} (got {value!r})") from None
    if key == "controls.widen_max":
        widen = min(widen, new.controls.widen_max)
    return new, widen


def _is_secret(section: str, name: str, value: Any) -> bool:
    field = type(getattr(Config(), section)).model_fields[name]
    if field.repr is False:  # tokens, passwords, URLs that may carry one: set from the environment
        return True
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and "://" in v and "@" in v.split("://", 1)[1].split("/", 1)[0] for v in values)


def save(cfg: Config, start: Config, path: str | Path, widen: float = 1.0) -> Path:
    """Write the running configuration as a complete config file (config.toml's format; load it with
    --config). Secrets are never written: those keys are left out, to come from the environment as usual."""
    omit = {f"{section}.{name}": "a secret: set it in the environment"
            for section, model in cfg for name, value in model if _is_secret(section, name, value)}
    changed = [r for r in rows(cfg, start, widen) if r.modified and r.key != SPREAD_MULTIPLIER]
    header = ("# FlashMM configuration saved from a running engine (flashmm ctl save). Secrets are not written:\n"
              "# set them in the environment (FLASHMM_*).\n")
    for r in changed:
        header += f"# changed while trading: {r.key} = {r.value!r} (started at {r.start!r})\n"
    if widen != 1.0:
        header += f"# The spread multiplier was x{widen:g} (an operator control, not a configuration key).\n"
    text = render_toml(cfg, header, omit=omit)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(p)
    return p
