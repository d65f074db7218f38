"""The columnar event array every reader produces and the replay venue consumes.

One row per book level, trade or best-bid/offer side, in time order. Rows of one source message (a
depth-diff frame, a snapshot, a trade) are consecutive and share `ts_ns`, `seq` and `seq2`; the last row
of each message has `FLAG_END` set, so messages are recovered without a separate index.

kind    side         price (ticks)   qty (lots)            seq / seq2
SNAP    +1 bid/-1 ask level price    level size (> 0)      snapshot id (e.g. lastUpdateId) / same
DIFF    +1 bid/-1 ask level price    absolute size, 0=del  first / last sequence number covered
TRADE   +1/-1 aggressor, 0 unknown   trade price           trade size            trade id / 0
BBO     +1 bid/-1 ask best price     size at best          update id / 0   (checks only: never drives the book)

A SNAP message with no levels is written as one row with qty 0 and FLAG_EMPTY (an empty book); a DIFF
message with no levels likewise keeps one FLAG_EMPTY row, so its sequence numbers stay in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from flashmm.core.domain import Instrument

KIND_SNAP = 0
KIND_DIFF = 1
KIND_TRADE = 2
KIND_BBO = 3

FLAG_END = 1  # last row of its message
FLAG_EMPTY = 2  # a placeholder row of an empty snapshot

EVENT_DTYPE = np.dtype([
    ("ts_ns", np.int64),
    ("kind", np.uint8),
    ("side", np.int8),
    ("flags", np.uint8),
    ("price", np.int64),
    ("qty", np.int64),
    ("seq", np.int64),
    ("seq2", np.int64),
])

FORMAT_VERSION = 1


@dataclass
class EventSet:
    """Events plus what they describe: the instrument, where they came from, what was rejected."""

    events: np.ndarray  # EVENT_DTYPE, time-ordered
    instrument: Instrument
    source: str  # reader name: binance-spot, binance-usdm, bitstamp, lobster, flashmm
    files: list[str]
    rejects: dict[str, int] = field(default_factory=dict)  # per kind of bad input
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return int(np.count_nonzero(self.events["flags"] & FLAG_END))

    @property
    def duration_s(self) -> float:
        if len(self.events) == 0:
            return 0.0
        return float(self.events["ts_ns"][-1] - self.events["ts_ns"][0]) / 1e9

    def header(self) -> dict[str, Any]:
        inst = self.instrument
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "files": self.files,
            "instrument": {"symbol": inst.symbol, "base": inst.base, "quote": inst.quote,
                           "price_tick": str(inst.price_tick), "lot_size": str(inst.lot_size),
                           "multiplier": str(inst.multiplier), "inverse": inst.inverse},
            "rejects": self.rejects,
            "meta": self.meta,
        }


def instrument_from_header(h: dict[str, Any]) -> Instrument:
    i = h["instrument"]
    inverse = i.get("inverse", False)  # absent in files written before inverse contracts were supported
    if not isinstance(inverse, bool):
        raise ValueError("instrument.inverse must be true or false")
    return Instrument(i["symbol"], i["base"], i["quote"], Decimal(i["price_tick"]), Decimal(i["lot_size"]),
                      Decimal(i.get("multiplier", "1")), inverse)


class EventWriter:
    """Collects rows message by message; converts to numpy in chunks (fast, bounded memory)."""

    def __init__(self, chunk: int = 200_000) -> None:
        self._chunks: list[np.ndarray] = []
        self._rows: list[tuple[int, int, int, int, int, int, int, int]] = []
        self._chunk = chunk
        self.last_ts = -1

    def message(self, ts_ns: int, kind: int, rows: list[tuple[int, int, int]], seq: int = 0, seq2: int = 0) -> None:
        """One message: rows of (side, price, qty). An empty SNAP or DIFF becomes a FLAG_EMPTY row (a DIFF's
        sequence numbers matter to the book's chain rule even when it changed no level)."""
        if not rows:
            if kind not in (KIND_SNAP, KIND_DIFF):
                return
            self._rows.append((ts_ns, kind, 0, FLAG_EMPTY | FLAG_END, 0, 0, seq, seq2))
        else:
            out = self._rows
            for side, price, qty in rows:
                out.append((ts_ns, kind, side, 0, price, qty, seq, seq2))
            t = out[-1]
            out[-1] = (t[0], t[1], t[2], FLAG_END, t[4], t[5], t[6], t[7])
        self.last_ts = ts_ns
        if len(self._rows) >= self._chunk:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._chunks.append(np.array(self._rows, dtype=EVENT_DTYPE))
            self._rows = []

    def array(self) -> np.ndarray:
        self._flush()
        if not self._chunks:
            return np.zeros(0, dtype=EVENT_DTYPE)
        return np.concatenate(self._chunks)


def message_bounds(events: np.ndarray) -> np.ndarray:
    """End index (exclusive) of every message."""
    return np.flatnonzero(events["flags"] & FLAG_END) + 1
