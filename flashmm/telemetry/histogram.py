"""A log-linear latency histogram (HDR-style): O(1) record, ~1.6 % relative precision, fixed memory.

Values below 128 ns are exact; above, each power of two is split into 64 buckets.
"""

from __future__ import annotations

import numpy as np

_SUB = 64
_LINEAR = 128
_MAX_SHIFT = 40  # up to ~2^47 ns (~39 hours)
_N = _LINEAR + _MAX_SHIFT * _SUB


def _bucket(v: int) -> int:
    if v < _LINEAR:
        return v if v > 0 else 0
    s = v.bit_length() - 7
    if s > _MAX_SHIFT:
        return _N - 1
    return _LINEAR + (s - 1) * _SUB + ((v >> s) - _SUB)


def _bucket_value(i: int) -> float:
    """Midpoint of the bucket's value range."""
    if i < _LINEAR:
        return float(i)
    s = (i - _LINEAR) // _SUB + 1
    m = (i - _LINEAR) % _SUB + _SUB
    return ((m << s) + ((m + 1) << s) - 1) / 2.0


_VALUES = np.array([_bucket_value(i) for i in range(_N)])


class LatencyHistogram:
    __slots__ = ("counts", "count", "total", "max", "min")

    def __init__(self) -> None:
        self.counts = np.zeros(_N, dtype=np.int64)
        self.count = 0
        self.total = 0
        self.max = 0
        self.min = 0

    def record(self, ns: int) -> None:
        self.counts[_bucket(ns)] += 1
        self.count += 1
        self.total += ns
        if ns > self.max:
            self.max = ns
        if self.count == 1 or ns < self.min:
            self.min = ns

    def percentile(self, q: float) -> float:
        """q in [0, 100]; returns nanoseconds (bucket midpoint, clamped to the observed min/max)."""
        if self.count == 0:
            return 0.0
        rank = max(1, int(np.ceil(q / 100.0 * self.count)))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(min(max(_VALUES[i], self.min), self.max))

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary_us(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": round(self.percentile(50) / 1e3, 2),
            "p95": round(self.percentile(95) / 1e3, 2),
            "p99": round(self.percentile(99) / 1e3, 2),
            "p999": round(self.percentile(99.9) / 1e3, 2),
            "max": round(self.max / 1e3, 2),
            "mean": round(self.mean() / 1e3, 2),
        }

    def merge(self, other: "LatencyHistogram") -> None:
        self.counts += other.counts
        if other.count:
            self.min = other.min if not self.count else min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def reset(self) -> None:
        self.counts[:] = 0
        self.count = self.total = self.max = self.min = 0

    def coarse(self, edges_ns: tuple[int, ...]) -> tuple[int, ...]:
        """Counts in [edges[i], edges[i+1]) plus a last bin for >= edges[-1] (bucket midpoints decide)."""
        bins = np.searchsorted(np.asarray(edges_ns, dtype=np.float64), _VALUES, side="right")
        out = np.bincount(bins, weights=self.counts, minlength=len(edges_ns) + 1)
        return tuple(int(x) for x in out[1:])

    def nonzero_buckets(self) -> list[tuple[float, int]]:
        """(bucket value ns, count) for the console's histogram."""
        idx = np.nonzero(self.counts)[0]
        return [(float(_VALUES[i]), int(self.counts[i])) for i in idx]
