"""The metrics that define success, each computed by one named function.

The same names are used in the run summary, the snapshot, backtest reports and (later) InfluxDB.
"""

from __future__ import annotations


def spread_improvement_pct(market_spread_bps: float, our_spread_bps: float) -> float:
    """100 x (market - ours) / market: positive when our quotes are tighter than the market's own."""
    if market_spread_bps <= 0:
        return 0.0
    return 100.0 * (market_spread_bps - our_spread_bps) / market_spread_bps


def inventory_pct(position_usdc: float, capital_usdc: float) -> float:
    """Signed position value as a percentage of capital."""
    return 100.0 * position_usdc / capital_usdc


def fill_rate(fills: int, orders_placed: int) -> float:
    """Fills per order placed."""
    return fills / orders_placed if orders_placed else 0.0


def spread_bps(spread_ticks: float, mid_ticks: float) -> float:
    return 1e4 * spread_ticks / mid_ticks if mid_ticks > 0 else 0.0


class TimeWeightedSpreads:
    """Time-weighted market and own spreads over the intervals in which we quoted both sides."""

    __slots__ = ("market_sum", "ours_sum", "time_ns", "_last_ns", "_last")

    def __init__(self) -> None:
        self.market_sum = 0.0
        self.ours_sum = 0.0
        self.time_ns = 0
        self._last_ns = -1
        self._last: tuple[float, float] | None = None

    def observe(self, now_ns: int, market_bps: float | None, ours_bps: float | None) -> None:
        """Close the interval since the last observation with the spreads that held during it."""
        if self._last is not None and self._last_ns >= 0:
            dt = now_ns - self._last_ns
            if dt > 0:
                self.market_sum += self._last[0] * dt
                self.ours_sum += self._last[1] * dt
                self.time_ns += dt
        self._last_ns = now_ns
        self._last = (market_bps, ours_bps) if market_bps is not None and ours_bps is not None else None

    @property
    def market_bps(self) -> float:
        return self.market_sum / self.time_ns if self.time_ns else 0.0

    @property
    def ours_bps(self) -> float:
        return self.ours_sum / self.time_ns if self.time_ns else 0.0
