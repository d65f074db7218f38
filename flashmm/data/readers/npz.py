"""FlashMM's own format: an .npz with the event array and a JSON header, no pickle."""


from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import orjson

from flashmm.data.events import (
    EVENT_DTYPE,
    FLAG_END,
    FORMAT_VERSION,
    KIND_BBO,
    EventSet,
    instrument_from_header,
)
from flashmm.data.readers.common import (
    DataError,
    _is_int,
)

# ---- FlashMM's own format --------------------------------------------------------------------------


def write_flashmm(es: EventSet, path: Path) -> None:
    """Write `es` as an .npz (atomically: a temporary file renamed into place)."""
    path = Path(path)
    if es.events.dtype != EVENT_DTYPE:
        raise ValueError(f"events have dtype {es.events.dtype}, expected EVENT_DTYPE")
    header = np.frombuffer(orjson.dumps(es.header(), option=orjson.OPT_SORT_KEYS), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, events=es.events, header=header)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_flashmm(path: Path) -> EventSet:
    """Read and validate a FlashMM .npz. Anything wrong raises DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy loads as one array, no context manager
            raise DataError(f"{path}: not a FlashMM event file (a single .npy array, expected an .npz with "
                            f"'events' and 'header')")
        with loaded as z:
            names = set(z.files)
            if not {"events", "header"} <= names:
                raise DataError(f"{path}: not a FlashMM event file (arrays {sorted(names)}, "
                                f"expected 'events' and 'header')")
            events = z["events"]
            raw = z["header"]
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error,
            NotImplementedError, RuntimeError, MemoryError) as exc:  # zipfile: unknown method, "encrypted"
        raise DataError(f"{path}: unreadable FlashMM event file ({type(exc).__name__}: {exc})") from exc
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataError(f"{path}: header has dtype {raw.dtype}, expected uint8 JSON")
    try:
        h = orjson.loads(raw.tobytes())
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{path}: header is not valid JSON: {exc}") from exc
    if not isinstance(h, dict):
        raise DataError(f"{path}: header is not a JSON object")
    if h.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {h.get('format_version')!r}, this reader reads {FORMAT_VERSION}")
    if events.dtype != EVENT_DTYPE:
        raise DataError(f"{path}: events have dtype {events.dtype}, expected {EVENT_DTYPE}")
    if events.ndim != 1:
        raise DataError(f"{path}: events are {events.ndim}-dimensional")
    if events.size:
        ts = events["ts_ns"]
        bad = np.flatnonzero(ts[1:] < ts[:-1])
        if bad.size:
            raise DataError(f"{path}: events not in time order (row {int(bad[0]) + 1} goes backwards)")
        if not events["flags"][-1] & FLAG_END:
            raise DataError(f"{path}: the last row does not end a message (truncated?)")
        if int(events["kind"].max()) > KIND_BBO:
            raise DataError(f"{path}: unknown event kind {int(events['kind'].max())}")
        bad = np.flatnonzero((events["side"] < -1) | (events["side"] > 1))
        if bad.size:
            side = int(events["side"][bad[0]])
            raise DataError(f"{path}: row {int(bad[0])} has side {side}, expected -1, 0 or +1")
    rejects, meta, files = h.get("rejects", {}), h.get("meta", {}), h.get("files")
    if not (isinstance(h.get("source"), str) and isinstance(files, list)
            and all(isinstance(f, str) for f in files) and isinstance(meta, dict)
            and isinstance(rejects, dict) and all(_is_int(n) for n in rejects.values())):
        raise DataError(f"{path}: bad header (source, files, rejects or meta of the wrong type)")
    try:
        inst = instrument_from_header(h)
        if not all(isinstance(x, str) for x in (inst.symbol, inst.base, inst.quote)) or not all(
                d.is_finite() and d > 0 for d in (inst.price_tick, inst.lot_size, inst.multiplier)):
            raise ValueError("the instrument needs string names and finite positive tick and lot sizes")
        es = EventSet(events, inst, h["source"], files, rejects, meta)
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise DataError(f"{path}: bad header ({type(exc).__name__}: {exc})") from exc
    return es
