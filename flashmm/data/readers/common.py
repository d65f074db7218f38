"""What every reader shares: DataError, decimal strings -> integer units, line readers, counted rejects,
and reading an event array back as messages."""


from __future__ import annotations

import lzma
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flashmm.core.domain import BookDiff, BookSnapshot
from flashmm.data.events import (
    FLAG_EMPTY,
    FLAG_END,
    KIND_DIFF,
    KIND_SNAP,
    EventWriter,
)
from flashmm.telemetry.logging import get_logger

READER_VERSION = 2  # 2: instruments from the table, symbol from the frames, COIN-M. Bump when any reader's output for the same input changes (invalidates caches)

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
# Every number ends up in an int64 column; anything larger is a bad field (ids keep room for pu + 1).
_INT64_MAX = 2**63 - 1


class DataError(Exception):
    """A data file that cannot be read at all (missing, not the expected container, corrupt header)."""


# ---- decimal strings -> integer units -------------------------------------------------------------


class _Units:
    """Decimal strings -> integer multiples of `step` (a tick or a lot), cached per string.

    `exact(s)` raises ValueError when `s` is not a non-negative multiple of the step; `ceil(s)` returns
    (units rounded up, was_off_grid) and raises ValueError only for a bad or negative number. Both raise
    ValueError beyond int64 (the event columns)."""

    __slots__ = ("step", "_scale", "_exact", "_ceil")

    _NUM = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")

    def __init__(self, step: Decimal) -> None:
        self.step = step
        sign, digits, exp = step.normalize().as_tuple()
        # a power of ten (0.01, 1, ...): pure string arithmetic; otherwise exact Decimal arithmetic
        self._scale = -int(exp) if (digits == (1,) and not sign and int(exp) <= 0) else None
        self._exact: dict[str, int] = {}
        self._ceil: dict[str, tuple[int, bool]] = {}

    def _convert(self, s: str) -> tuple[int, bool]:
        if not isinstance(s, str) or self._NUM.fullmatch(s) is None:
            raise ValueError(f"not a non-negative decimal number: {s!r}")
        scale = self._scale
        if scale is not None:
            i, _, f = s.partition(".")
            v = int((i or "0") + (f.ljust(scale, "0") if len(f) <= scale else f[:scale]))
            if v >= _INT64_MAX:  # >= leaves room for ceil's + 1
                raise ValueError(f"{s} is out of range")
            return v, len(f) > scale and f[scale:].strip("0") != ""
        try:
            q = Decimal(s) / self.step
        except InvalidOperation as exc:
            raise ValueError(f"bad number {s!r}") from exc
        floor = int(q)
        if floor >= _INT64_MAX:
            raise ValueError(f"{s} is out of range")
        return floor, q != floor

    def exact(self, s: str) -> int:
        v = self._exact.get(s)
        if v is None:
            v, off = self._convert(s)
            if off:
                raise ValueError(f"{s} is not a multiple of {self.step}")
            if len(self._exact) > 500_000:
                self._exact.clear()
            self._exact[s] = v
        return v

    def ceil(self, s: str) -> tuple[int, bool]:
        r = self._ceil.get(s)
        if r is None:
            v, off = self._convert(s)
            r = (v + 1, True) if off else (v, False)
            if len(self._ceil) > 500_000:
                self._ceil.clear()
            self._ceil[s] = r
        return r


def _is_int(x: Any) -> bool:
    """An integer id that fits the int64 columns (orjson reads integers up to 2**64 - 1 as int)."""
    return isinstance(x, int) and not isinstance(x, bool) and -_INT64_MAX <= x < _INT64_MAX


class _BadField(Exception):
    """A well-formed line whose content cannot be converted (missing field, bad number)."""


class _Writer(EventWriter):
    """EventWriter that keeps a message with no rows as one FLAG_EMPTY row for DIFFs too (the sequence
    numbers it carries matter to the book's chain rule)."""

    def message(self, ts_ns: int, kind: int, rows: list[tuple[int, int, int]], seq: int = 0, seq2: int = 0) -> None:
        if not rows and kind == KIND_DIFF:
            self._rows.append((ts_ns, kind, 0, FLAG_EMPTY | FLAG_END, 0, 0, seq, seq2))
            self.last_ts = ts_ns
            if len(self._rows) >= self._chunk:
                self._flush()
            return
        super().message(ts_ns, kind, rows, seq, seq2)


def _log_rejects(source: str, files: list[str], rejects: dict[str, int]) -> None:
    if not rejects:
        return
    log = get_logger("data")
    for kind, n in sorted(rejects.items()):
        log.warning("input_rejected", source=source, kind=kind, count=n, files=files)


def _open_lines(path: Path, opener: Callable[[Path], Any], what: str,
                rejects: Counter) -> Iterator[bytes]:
    """Lines of a compressed text file. A file that cannot be opened or is not `what` at all raises
    DataError; a stream that breaks after some lines (truncated, bad CRC) ends with a "truncated_file"
    reject and keeps the lines read before it."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    n = 0
    try:
        fh = opener(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc}") from exc
    with fh:
        while True:
            try:
                line = fh.readline()
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                if n == 0:
                    raise DataError(f"{path}: not a readable {what} file: {exc}") from exc
                rejects["truncated_file"] += 1
                get_logger("data").warning("file_truncated", file=str(path), after_lines=n, error=str(exc))
                return
            if not line:
                return
            n += 1
            yield line


# ---- reading events back as messages -----------------------------------------------------------


def _stamped_json(stamp: bytes, body: bytes, last_ts: int, rejects: Counter,
                  max_ts: int = _INT64_MAX) -> tuple[int, dict] | None:
    """A recording line's receive time and JSON object; None (counted) when malformed or out of order.
    `max_ts`: the largest stamp whose time in ns still fits int64 (a ms stamp is multiplied by 10**6)."""
    try:
        ts = int(stamp)
        msg = orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        rejects["malformed_line"] += 1
        return None
    if ts <= 0 or ts > max_ts or not isinstance(msg, dict):
        rejects["malformed_line"] += 1
        return None
    if ts < last_ts:
        rejects["out_of_order_ts"] += 1
        return None
    return ts, msg


def iter_messages(events: np.ndarray) -> Iterator[tuple[int, int, int, int, list[tuple[int, int, int]]]]:
    """(kind, ts_ns, seq, seq2, rows) per message, rows = [(side, price, qty)] without FLAG_EMPTY rows."""
    if events.size == 0:
        return
    ends = (np.flatnonzero(events["flags"] & FLAG_END) + 1).tolist()
    kind = events["kind"].tolist()
    ts = events["ts_ns"].tolist()
    side = events["side"].tolist()
    price = events["price"].tolist()
    qty = events["qty"].tolist()
    seq = events["seq"].tolist()
    seq2 = events["seq2"].tolist()
    empty = (events["flags"] & FLAG_EMPTY).tolist()
    start = 0
    for end in ends:
        rows = [(side[i], price[i], qty[i]) for i in range(start, end) if not empty[i]]
        yield kind[start], ts[start], seq[start], seq2[start], rows
        start = end


def book_event(kind: int, ts_ns: int, seq: int, seq2: int,
               rows: list[tuple[int, int, int]]) -> BookSnapshot | BookDiff:
    """A SNAP or DIFF message as the domain event L2Book applies."""
    bids = [(p, q) for s, p, q in rows if s > 0]
    asks = [(p, q) for s, p, q in rows if s < 0]
    if kind == KIND_SNAP:
        return BookSnapshot(seq, bids, asks, ts_ns)
    if kind == KIND_DIFF:
        return BookDiff(seq, seq2, bids, asks, ts_ns)
    raise ValueError(f"message kind {kind} is not a book message")
