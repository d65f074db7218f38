"""`load_events`: paths (files or folders) -> one EventSet, with the format detected and an optional cache.

Detection: `*.gz` is a Binance recording (USD-M when its first lines carry `depth@0ms` or a `pu` field,
else spot); `*.log.xz` is the Bitstamp 2015 capture; a LOBSTER `*_message_N.csv` goes with its
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

import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from flashmm.data.events import EventSet
from flashmm.data.readers import (
    READER_VERSION,
    DataError,
    lobster_partner,
    read_binance,
    read_bitstamp,
    read_flashmm,
    read_lobster,
    write_flashmm,
)
from flashmm.data.readers.common import _log_rejects
from flashmm.telemetry.logging import get_logger

_LOBSTER = re.compile(r"_(message|orderbook)_\d+\.csv$")
_SNIFF_LINES = 64


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


def _binance_market(p: Path) -> str:
    """'usdm' when the first lines carry depth@0ms or a `pu` field (USD-M only), else 'spot'."""
    head: list[bytes] = []
    try:
        with gzip.open(p, "rb") as fh:
            for _ in range(_SNIFF_LINES):
                line = fh.readline()
                if not line:
                    break
                head.append(line)
    except (OSError, EOFError, zlib.error) as exc:
        if not head:
            raise DataError(f"{p}: not a readable gzip file: {exc}") from exc
    blob = b"".join(head)
    if b'"stream"' not in blob and b'"lastUpdateId"' not in blob:
        raise DataError(f"{p}: not a Binance recording (no stream frame or depth snapshot in its first lines)")
    if b"@depth@0ms" in blob or b'"pu":' in blob:
        return "usdm"
    return "spot"


def _classify(p: Path) -> tuple[str, Path]:
    n = p.name
    if n.endswith(".npz"):
        return "flashmm", p
    if n.endswith(".log.xz"):
        return "bitstamp", p
    if _LOBSTER.search(n):
        return "lobster", p
    if n.endswith(".gz"):
        return f"binance-{_binance_market(p)}", p
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


def _read(src: _Source) -> EventSet:
    if src.reader.startswith("binance-"):
        return read_binance(list(src.files), src.reader.removeprefix("binance-"))
    if src.reader == "bitstamp":
        return read_bitstamp(src.files[0])
    if src.reader == "lobster":
        return read_lobster(src.files[0], src.files[1])
    return read_flashmm(src.files[0])


def cache_key(src_reader: str, files: list[Path] | tuple[Path, ...]) -> str:
    """sha256 of (reader name, READER_VERSION, per file: absolute path, size, mtime_ns)."""
    parts: list[object] = [src_reader, READER_VERSION]
    for f in files:
        st = Path(f).stat()
        parts.append([str(Path(f).absolute()), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def load_events(paths: list[str | Path], cache_dir: Path | None = None) -> EventSet:
    """Paths (files or folders) of one data set -> its EventSet. See the module docstring."""
    src = _resolve(list(paths))
    if src.reader == "flashmm" or cache_dir is None:
        return _read(src)
    log = get_logger("data")
    cache_dir = Path(cache_dir)
    cpath = cache_dir / f"{cache_key(src.reader, src.files)}.npz"
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
    es = _read(src)
    try:
        write_flashmm(es, cpath)
    except OSError as exc:
        log.warning("cache_write_failed", file=str(cpath), error=str(exc))
    es.meta["cache"] = "miss"
    if corrupt:
        es.meta["cache_corrupt"] = corrupt
    return es


__all__ = ["cache_key", "load_events"]
