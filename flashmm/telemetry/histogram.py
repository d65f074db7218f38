"""A log-linear latency histogram (HDR-style): O(1) record, ~1.6 % relative precision, fixed memory.

Values below 128 ns are exact; above, each power of two is split into 64 buckets.

`record` is on the hot path (several times per market event in a replay), so it only stores the value in a
fixed buffer of 4,096 64-bit integers (a C store in the compiled build); the values are folded into the bucket
counts in one numpy step, read from the buffer without a copy, whenever it fills and whenever anything is read
(counts, count, total, min, max, percentiles). Reading gives exactly what recording each value into its bucket at
once would give. (The buffer replaced a Python list: numpy's conversion of the list was most of a record's cost.)
"""

from __future__ import annotations

import math
from array import array

import numpy as np

_SUB = 64
_LINEAR = 128
_MAX_SHIFT = 40  # up to ~2^47 ns (~39 hours)
_N = _LINEAR + _MAX_SHIFT * _SUB
_FOLD_EVERY = 4096
_SORT_BELOW = 128  # a percentile of at most this many unfolded values sorts their buckets instead of folding
# (the engine's 10 s windows: 100 quote cycles at the 100 ms interval)


def _bucket(v: int) -> int:
    if v < _LINEAR:
        return v if v > 0 else 0
    s = v.bit_length() - 7
    if s > _MAX_SHIFT:
        return _N - 1
    return _LINEAR + (s - 1) * _SUB + ((v >> s) - _SUB)


def _buckets(values: np.ndarray) -> np.ndarray:
    """`_bucket` of every value of an int64 array."""
    out = np.where(values > 0, values, 0)
    big = values >= _LINEAR
    if big.any():
        v = values[big]
        # the bit length of v from the float's exponent: exact for v < 2**53, and above 2**47 the top bucket anyway
        s = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 7
        idx = _LINEAR + (s - 1) * _SUB + ((v >> np.minimum(s, 62)) - _SUB)
        out[big] = np.where(s > _MAX_SHIFT, _N - 1, idx)
    return out


def _bucket_value(i: int) -> float:
    """Midpoint of the bucket's value range."""
    if i < _LINEAR:
        return float(i)
    s = (i - _LINEAR) // _SUB + 1
    m = (i - _LINEAR) % _SUB + _SUB
    return ((m << s) + ((m + 1) << s) - 1) / 2.0


_VALUES = np.array([_bucket_value(i) for i in range(_N)])


class LatencyHistogram:
    __slots__ = ("_counts", "_arr", "_buf", "_n", "_count", "_total", "_max", "_min")

    def __init__(self) -> None:
        self._counts = np.zeros(_N, dtype=np.int64)
        self._arr = array("q", bytes(8 * _FOLD_EVERY))  # recorded, not yet folded into the counts: [:_n]
        self._buf = self._arr  # the same buffer (typed memory in the compiled build: histogram.pxd)
        self._n = 0
        self._count = 0
        self._total = 0
        self._max = 0
        self._min = 0

    def record(self, ns: int) -> None:
        n = self._n
        self._buf[n] = ns  # (OverflowError beyond 64 bits, as numpy's int64 conversion raised)
        self._n = n + 1
        if n + 1 == _FOLD_EVERY:
            self._fold()

    def _new(self) -> list[int]:
        """The values recorded and not yet folded."""
        return self._arr[:self._n].tolist()

    def _fold(self) -> None:
        n = self._n
        if not n:
            return
        a = np.frombuffer(self._arr, dtype=np.int64, count=n)  # (read before the next record reuses the buffer)
        self._n = 0
        self._counts += np.bincount(_buckets(a), minlength=_N)
        lo, hi = int(a.min()), int(a.max())
        self._min = lo if self._count == 0 else min(self._min, lo)
        self._max = max(self._max, hi)
        self._total += int(a.sum())
        self._count += len(a)

    # the figures, always with every recorded value folded in (and settable, for histograms built from counts)
    @property
    def counts(self) -> np.ndarray:
        self._fold()
        return self._counts

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        self._fold()
        self._counts = value

    @property
    def count(self) -> int:
        return self._count + self._n

    @count.setter
    def count(self, value: int) -> None:
        self._fold()
        self._count = value

    @property
    def total(self) -> int:
        self._fold()
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._fold()
        self._total = value

    @property
    def max(self) -> int:
        self._fold()
        return self._max

    @max.setter
    def max(self, value: int) -> None:
        self._fold()
        self._max = value

    @property
    def min(self) -> int:
        self._fold()
        return self._min

    @min.setter
    def min(self, value: int) -> None:
        self._fold()
        self._min = value

    def percentile(self, q: float) -> float:
        """q in [0, 100]; returns nanoseconds (bucket midpoint, clamped to the observed min/max)."""
        if not self._count and 0 < self._n <= _SORT_BELOW:
            new = self._new()
            # only a few values, none folded yet (the engine's 10 s windows, read once each): the rank-th smallest
            # value's bucket is the bucket the cumulative counts reach the rank in, without the fold's numpy work
            rank = max(1, math.ceil(q / 100.0 * len(new)))
            i = sorted([_bucket(v) for v in new])[rank - 1]
            return float(min(max(_VALUES[i], min(new)), max(new)))
        self._fold()
        if self._count == 0:
            return 0.0
        rank = max(1, int(np.ceil(q / 100.0 * self._count)))
        i = int(np.searchsorted(np.cumsum(self._counts), rank))
        return float(min(max(_VALUES[i], self._min), self._max))

    def mean(self) -> float:
        self._fold()
        return self._total / self._count if self._count else 0.0

    def summary_us(self) -> dict[str, float]:
        self._fold()
        return {
            "count": self._count,
            "p50": round(self.percentile(50) / 1e3, 2),
            "p95": round(self.percentile(95) / 1e3, 2),
            "p99": round(self.percentile(99) / 1e3, 2),
            "p999": round(self.percentile(99.9) / 1e3, 2),
            "max": round(self._max / 1e3, 2),
            "mean": round(self.mean() / 1e3, 2),
        }

    def merge(self, other: "LatencyHistogram") -> None:
        self._fold()
        other._fold()
        self._counts += other._counts
        if other._count:
            self._min = other._min if not self._count else min(self._min, other._min)
            self._max = max(self._max, other._max)
        self._count += other._count
        self._total += other._total

    def reset(self) -> None:
        self._n = 0
        self._counts[:] = 0
        self._count = self._total = self._max = self._min = 0

    def coarse(self, edges_ns: tuple[int, ...]) -> tuple[int, ...]:
        """Counts in [edges[i], edges[i+1]) plus a last bin for >= edges[-1] (bucket midpoints decide)."""
        bins = np.searchsorted(np.asarray(edges_ns, dtype=np.float64), _VALUES, side="right")
        out = np.bincount(bins, weights=self.counts, minlength=len(edges_ns) + 1)
        return tuple(int(x) for x in out[1:])

    def nonzero_buckets(self) -> list[tuple[float, int]]:
        """(bucket value ns, count) for the console's histogram."""
        counts = self.counts
        idx = np.nonzero(counts)[0]
        return [(float(_VALUES[i]), int(counts[i])) for i in idx]
