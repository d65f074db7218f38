"""Instruments of recorded data: one table, overridable by the user, never hard-coded in a reader.

The built-in table is `instruments.toml` beside this module (its header documents the format). A spec file
in the same format (`--instruments PATH`, `[replay].instruments_file`) adds or replaces entries, and the
configuration's `[instrument]` keys describe any symbol they name (`symbol = "ETHUSDT"`, ticks, lots). A
recording whose symbol none of these describes is refused with one line saying what to supply.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from flashmm.core.domain import Instrument
from flashmm.data.readers.common import DataError

BUILTIN_TABLE = Path(__file__).with_name("instruments.toml")
SOURCES = ("binance-spot", "binance-usdm", "binance-cm", "bitstamp", "lobster")
_KEYS = {"source", "symbol", "base", "quote", "price_tick", "lot_size", "kind", "multiplier"}


def _positive_decimal(entry: dict[str, Any], key: str, where: str, default: str | None = None) -> Decimal:
    raw = entry.get(key, default)
    if not isinstance(raw, str):
        raise DataError(f"{where}: {key} must be a decimal string (e.g. \"0.01\"), got {raw!r}")
    try:
        v = Decimal(raw)
    except InvalidOperation:
        raise DataError(f"{where}: {key} {raw!r} is not a decimal number") from None
    if not v.is_finite() or v <= 0:
        raise DataError(f"{where}: {key} must be a finite number > 0, got {raw!r}")
    return v


def instrument_from_entry(entry: dict[str, Any], where: str, symbol: str | None = None) -> Instrument:
    """One table entry -> Instrument (`symbol` fills in a "*" entry). Bad entries raise DataError."""
    unknown = set(entry) - _KEYS
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
    for key in ("symbol", "base", "quote"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise DataError(f"{where}: {key} must be a non-empty string")
    kind = entry.get("kind", "linear")
    if kind not in ("linear", "inverse"):
        raise DataError(f"{where}: kind must be \"linear\" or \"inverse\", got {kind!r}")
    sym = symbol if entry["symbol"] == "*" and symbol else entry["symbol"]
    base = sym if entry["base"] == "*" else entry["base"]
    return Instrument(sym, base, entry["quote"], _positive_decimal(entry, "price_tick", where),
                      _positive_decimal(entry, "lot_size", where),
                      _positive_decimal(entry, "multiplier", where, "1"), kind == "inverse")


@dataclass(frozen=True)
class InstrumentTable:
    """(source, SYMBOL) -> table entry; `origin` says where each entry came from (for error messages)."""

    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    config_instrument: Instrument | None = None  # [instrument] keys: describe whatever symbol they name

    @classmethod
    def load(cls, path: str | Path) -> "InstrumentTable":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"instrument spec {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"instrument spec {path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"instrument spec {path}: not valid TOML: {exc}") from None
        items = data.get("instrument")
        if not isinstance(items, list) or set(data) - {"instrument"}:
            raise DataError(f"instrument spec {path}: expected [[instrument]] tables only "
                            f"(the format of {BUILTIN_TABLE.name})")
        entries: dict[tuple[str, str], dict[str, Any]] = {}
        origin: dict[tuple[str, str], str] = {}
        for i, e in enumerate(items, start=1):
            where = f"instrument spec {path}, entry {i}"
            if not isinstance(e, dict):
                raise DataError(f"{where}: not a table")
            src = e.get("source")
            if src not in SOURCES:
                raise DataError(f"{where}: source must be one of {', '.join(SOURCES)}, got {src!r}")
            instrument_from_entry(e, where, "X")  # validate now: a bad spec fails before any data is read
            key = (src, str(e["symbol"]).upper())
            if key in entries:
                raise DataError(f"{where}: {src} {key[1]} is listed twice")
            entries[key] = e
            origin[key] = str(path)
        return cls(entries, origin)

    @classmethod
    def builtin(cls) -> "InstrumentTable":
        return cls.load(BUILTIN_TABLE)

    def overridden_by(self, other: "InstrumentTable") -> "InstrumentTable":
        return InstrumentTable({**self.entries, **other.entries}, {**self.origin, **other.origin},
                               other.config_instrument or self.config_instrument)

    def with_config(self, instrument: Instrument | None) -> "InstrumentTable":
        return InstrumentTable(self.entries, self.origin, instrument)

    def resolve(self, source: str, symbol: str) -> Instrument:
        """The instrument of `symbol` in data of `source`: [instrument] keys naming it first, then the
        table's exact entry, then the source's "*" entry. None of them: DataError, one line."""
        sym = symbol.upper()
        ci = self.config_instrument
        if ci is not None and ci.symbol.upper() == sym:
            return ci
        for key in ((source, sym), (source, "*")):
            e = self.entries.get(key)
            if e is not None:
                return instrument_from_entry(e, f"{self.origin.get(key, 'instrument table')} ({source} {key[1]})", sym)
        raise DataError(
            f"no instrument known for {source} {sym}: give its tick and lot in a spec file "
            f"(--instruments FILE.toml, in the format of flashmm/data/{BUILTIN_TABLE.name}) or as [instrument] "
            f"keys (symbol = \"{sym}\", price_tick, lot_size, base, quote)")

    def fingerprint(self) -> list[Any]:
        """What a parsed-data cache must be keyed by (a changed tick or lot changes the parse)."""
        ci = self.config_instrument
        return [sorted((f"{s}:{y}", sorted(e.items())) for (s, y), e in self.entries.items()),
                None if ci is None else [ci.symbol, str(ci.price_tick), str(ci.lot_size), str(ci.multiplier),
                                         ci.inverse]]


def instrument_table(spec_file: str | Path | None = None, config_instrument: Instrument | None = None
                     ) -> InstrumentTable:
    """The built-in table, a user's spec file over it, and the [instrument] keys over both."""
    table = InstrumentTable.builtin()
    if spec_file:
        table = table.overridden_by(InstrumentTable.load(spec_file))
    return table.with_config(config_instrument)


__all__ = ["BUILTIN_TABLE", "InstrumentTable", "instrument_from_entry", "instrument_table"]
