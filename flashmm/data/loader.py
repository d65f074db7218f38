"""`load_events`: paths (files or folders) -> one EventSet, with the format detected and an optional cache.

Detection: `*.gz` is a Binance recording (futures when its first lines carry `depth@0ms` or a `pu` field,
COIN-M when the futures symbol ends in _PERP or a delivery date, else USD-M; spot otherwise); `*.log.xz` is the Bitstamp 2015 capture; a LOBSTER `*_message_N.csv` goes with its
`*_orderbook_N.csv` (either one names the pair); `*.npz` is FlashMM's own format. A folder expands to the
data files in it (other files, e.g. LICENSE or Bitstamp's pre-parsed orders.csv.xz, are ignored).
Several files of one Binance stream are read as one stream in the order given (a folder's files in name
order). Different data sets in one call raise DataError: the backtest runs data sets one by one.

Cache (`cache_dir`): the parsed result is stored as a FlashMM .npz named by the sha256 of the reader name,
READER_VERSION and, per input file, its absolute path, size and mtime_ns. A later call with unchanged files
loads it (`meta["cache"] == "hit"`, else "miss"). A cache file that does not read back cleanly is never
trusted: it is counted (`meta["cache_corrupt"]`), logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from flashmm.config import Config
from flashmm.data.events import KIND_BBO, EventSet
from flashmm.data.instruments import InstrumentTable, instrument_table
from flashmm.data.readers import (
    READER_VERSION,
    DataError,
    lobster_partner,
    read_binance,
    read_bitstamp,
    read_flashmm,
    read_lobster,
    sniff_binance,
    write_flashmm,
)
from flashmm.data.readers.binance import binance_market
from flashmm.data.readers.common import _log_rejects
from flashmm.telemetry.logging import get_logger

_LOBSTER = re.compile(r"_(message|orderbook)_\d+\.csv$")


@dataclass(frozen=True)
class _Source:
    reader: str  # binance-spot, binance-usdm, bitstamp, lobster, flashmm
    files: tuple[Path, ...]


def _is_data_file(p: Path) -> bool:
    n = p.name
    return n.endswith((".gz", ".log.xz", ".npz")) or bool(_LOBSTER.search(n))


def _expand(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and _is_data_file(q))
            if not found:
                raise DataError(f"{p}: no data files in this folder (*.gz, *.log.xz, LOBSTER *.csv, *.npz)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not out:
        raise DataError("load_events: no paths given")
    return out


def _classify(p: Path) -> tuple[str, Path]:
    n = p.name
    if n.endswith(".npz"):
        return "flashmm", p
    if n.endswith(".log.xz"):
        return "bitstamp", p
    if _LOBSTER.search(n):
        return "lobster", p
    if n.endswith(".gz"):
        futures, symbols = sniff_binance(p)
        return f"binance-{binance_market(futures, symbols[0] if symbols else '')}", p
    raise DataError(f"{p}: unknown data format (expected Binance *.gz, Bitstamp *.log.xz, "
                    f"LOBSTER *_message_N.csv/*_orderbook_N.csv or FlashMM *.npz)")


def _resolve(paths: list[str | Path]) -> _Source:
    files = _expand(paths)
    kinds: dict[str, list[Path]] = {}
    for p in files:
        k, q = _classify(p)
        kinds.setdefault(k, []).append(q)
    if len(kinds) > 1:
        what = ", ".join(f"{k} ({len(v)} file{'s' if len(v) > 1 else ''})" for k, v in kinds.items())
        raise DataError(f"different data sets in one load: {what}; load them one by one")
    (reader, fs), = kinds.items()
    if reader.startswith("binance-"):
        seen: list[Path] = []
        for f in fs:  # the same file named twice (a folder and one of its files) is read once
            if f.resolve() not in {s.resolve() for s in seen}:
                seen.append(f)
        return _Source(reader, tuple(seen))
    if reader == "lobster":
        pairs = set()
        for f in fs:
            partner = lobster_partner(f)
            msg, ob = (f, partner) if "_message_" in f.name else (partner, f)
            pairs.add((msg.resolve(), ob.resolve()))
        if len(pairs) > 1:
            raise DataError(f"different data sets in one load: {len(pairs)} LOBSTER file pairs; load them one by one")
        msg, ob = pairs.pop()
        if not ob.is_file():
            raise DataError(f"{msg}: its orderbook file {ob.name} is missing")
        if not msg.is_file():
            raise DataError(f"{ob}: its message file {msg.name} is missing")
        return _Source(reader, (msg, ob))
    uniq = {f.resolve() for f in fs}
    if len(uniq) > 1:
        raise DataError(f"different data sets in one load: {len(uniq)} {reader} files; load them one by one")
    return _Source(reader, (fs[0],))


def _read(src: _Source, instruments: InstrumentTable, symbol: str | None) -> EventSet:
    if src.reader.startswith("binance-"):
        return read_binance(list(src.files), src.reader.removeprefix("binance-"), instruments, symbol)
    if src.reader == "bitstamp":
        return read_bitstamp(src.files[0], instruments, symbol)
    if src.reader == "lobster":
        return read_lobster(src.files[0], src.files[1], instruments)
    es = read_flashmm(src.files[0])
    if symbol and es.instrument.symbol.upper() != symbol.upper():
        raise DataError(f"{src.files[0]}: a recording of {es.instrument.symbol}, not {symbol}")
    return es


def check_has_market_data(es: EventSet) -> None:
    """A data set with no market rows is an error that says why (every line rejected, a foreign symbol,
    an empty file): a backtest of nothing must never look like a result."""
    if int(np.count_nonzero(es.events["kind"] != KIND_BBO)) > 0:
        return
    why = ", ".join(f"{k} {v:,}" for k, v in sorted(es.rejects.items(), key=lambda kv: -kv[1]))
    other = es.meta.get("other_symbol_frames")
    if other:
        why += ("; " if why else "") + "frames of other symbols " + ", ".join(f"{s} {n:,}" for s, n in other.items())
    lines = es.meta.get("lines", es.meta.get("rows"))
    read = f"{lines:,} lines read" if isinstance(lines, int) else "read"
    raise DataError(f"{', '.join(es.files)}: no market data for {es.instrument.symbol} ({read}; "
                    f"{why or 'nothing rejected: the files hold no book or trade messages'})")


def cache_key(src_reader: str, files: list[Path] | tuple[Path, ...], extra: object = None) -> str:
    """sha256 of (reader name, READER_VERSION, `extra` (the instrument table and chosen symbol), per file:
    absolute path, size, mtime_ns)."""
    parts: list[object] = [src_reader, READER_VERSION, extra]
    for f in files:
        st = Path(f).stat()
        parts.append([str(Path(f).absolute()), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def load_events(paths: list[str | Path], cache_dir: Path | None = None, *, symbol: str | None = None,
                instruments: InstrumentTable | None = None, require_market_data: bool = True) -> EventSet:
    """Paths (files or folders) of one data set -> its EventSet. See the module docstring. `symbol` chooses
    one symbol of a recording holding several; `instruments` is the instrument table (default: the built-in
    one). A data set without any market row raises DataError unless `require_market_data` is False."""
    instruments = instruments or instrument_table()
    src = _resolve(list(paths))
    es = _load(src, cache_dir, instruments, symbol)
    if require_market_data:
        check_has_market_data(es)
    return es


def _load(src: _Source, cache_dir: Path | None, instruments: InstrumentTable, symbol: str | None) -> EventSet:
    if src.reader == "flashmm" or cache_dir is None:
        return _read(src, instruments, symbol)
    log = get_logger("data")
    cache_dir = Path(cache_dir)
    cpath = cache_dir / f"{cache_key(src.reader, src.files, [instruments.fingerprint(), symbol])}.npz"
    corrupt = 0
    if cpath.exists():
        try:
            es = read_flashmm(cpath)
            if es.source != src.reader or es.files != [str(f) for f in src.files]:
                raise DataError(f"{cpath}: cache entry is for {es.source} {es.files}")
        except DataError as exc:
            corrupt = 1
            log.warning("cache_corrupt", file=str(cpath), error=str(exc))
        else:
            _log_rejects(es.source, es.files, es.rejects)
            es.meta["cache"] = "hit"
            return es
    es = _read(src, instruments, symbol)
    try:
        write_flashmm(es, cpath)
    except OSError as exc:
        log.warning("cache_write_failed", file=str(cpath), error=str(exc))
    es.meta["cache"] = "miss"
    if corrupt:
        es.meta["cache_corrupt"] = corrupt
    return es


def default_cache_dir(cfg: Config) -> Path:
    if cfg.replay.cache_dir:
        return Path(cfg.replay.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flashmm"


def load_configured(cfg: Config, paths: list[str | Path], *, require_market_data: bool = True) -> EventSet:
    """One data set as the configuration says: [replay].symbol, [replay].instruments_file, the [instrument]
    keys (for a symbol they name) and [replay].cache_dir. Every command that reads recordings comes here."""
    table = instrument_table(cfg.replay.instruments_file or None, cfg.instrument.instrument())
    return load_events(paths, default_cache_dir(cfg), symbol=cfg.replay.symbol or None, instruments=table,
                       require_market_data=require_market_data)


__all__ = ["cache_key", "check_has_market_data", "default_cache_dir", "load_configured", "load_events"]
