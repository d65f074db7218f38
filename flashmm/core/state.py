"""Position, cash and PnL with its split, and the fills journal (in memory; Redis comes with telemetry).

PnL split, exactly additive (in the instrument's settlement currency: the quote currency, or the base for
an inverse contract):  pnl = spread_capture + inventory + fees
- spread_capture: each fill's edge against the mid at the time of the fill (buy below mid > 0);
- inventory: what holding the position earned or lost as the mid moved (mark-to-market minus the above);
- fees: minus fees paid (exchange fees on fills, gas and per-order charges); rebates are positive.

The operator's other split, also exactly additive:  pnl = realised + unrealised (average-cost method,
in the settlement currency too)
- unrealised: the open position at the mid against its average entry price;
- realised: what closed positions made, net of every fee paid.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from flashmm.core.domain import Fill, Instrument


def fill_cash_and_edge(instrument: Instrument, side: int, price_ticks: float, lots: int, mid_ticks: float
                       ) -> tuple[float, float]:
    """A fill's cash flow and its edge against the mid, both in the settlement currency (one definition for
    the portfolio and the Redis journal): buying pays settle_value(price); the edge is what the same lots are
    worth at the mid minus what was paid, signed by side (> 0: bought below / sold above the mid)."""
    paid = instrument.settle_value(price_ticks, lots)
    return -side * paid, side * (instrument.settle_value(mid_ticks, lots) - paid)


@dataclass(frozen=True, slots=True)
class FillRecord:
    ts_ns: int
    client_id: int
    side: int
    price_ticks: float
    lots: int
    fee_quote: float
    is_maker: bool
    mid_ticks: float


@dataclass(frozen=True, slots=True)
class PnL:
    total: float
    spread_capture: float
    inventory: float
    fees: float


class Portfolio:
    def __init__(self, instrument: Instrument, journal_max: int | None = None) -> None:
        """`journal_max`: fills kept in memory (None = all, for backtest reports). A live daemon keeps the
        latest 10,000 only (the engine needs the last one; the full journal is Redis's stream and the log's
        fill lines): the 6-hour soak measured RSS growing 0.99 MB/h with the unbounded list, 0.07 MB/h with it."""
        self.instrument = instrument
        self.position_lots = 0
        self.cash_flow = 0.0  # quote currency received from trading, before fees
        self.fees_paid = 0.0
        self.spread_capture = 0.0
        self.fills: deque[FillRecord] = deque(maxlen=journal_max)  # the journal (its latest part when bounded)
        self.volume_lots = 0
        self.peak_pnl = 0.0
        self.max_abs_position_lots = 0
        self.cost_basis = 0.0  # the open position's value at its average entry price (settlement currency)
        self.realised_gross = 0.0  # closed positions' PnL before fees

    def _cost(self, sign: int, lots: int, price_ticks: float) -> None:
        """Average-cost bookkeeping of one trade of `lots` on side `sign` at `price_ticks`, in the settlement
        currency (settle_value is linear in lots, so one lot's signed value carries it, inverse or not)."""
        pos = self.position_lots
        v = self.instrument.settle_value(price_ticks, 1.0)
        if pos == 0 or (pos > 0) == (sign > 0):
            self.cost_basis += sign * lots * v
            return
        closed = min(lots, abs(pos))
        removed = closed if pos > 0 else -closed  # the part of the position this trade closes, signed like it
        avg = self.cost_basis / pos  # the average entry value of one lot of the position
        self.realised_gross += removed * (v - avg)
        self.cost_basis -= avg * removed
        if lots > closed:  # the trade flips the position: the rest opens a new one at this price
            self.cost_basis = sign * (lots - closed) * v

    def rebuild_cost_basis(self, fills) -> None:
        """After a restart restored position and cash from a journal: replay its fills for the average entry.
        When they do not add up to the position (a position adopted without fills), the whole PnL so far is
        counted as unrealised."""
        pos, self.position_lots = self.position_lots, 0
        self.cost_basis = self.realised_gross = 0.0
        for f in fills:
            self._cost(f.side, f.lots, f.price_ticks)
            self.position_lots += f.side * f.lots
        if self.position_lots != pos:
            self.cost_basis, self.realised_gross = -self.cash_flow, 0.0
        self.position_lots = pos

    def realised_unrealised(self, mid_ticks: float) -> tuple[float, float]:
        """(realised net of fees, unrealised); their sum is pnl(mid).total."""
        unrealised = self.position_value(mid_ticks) - self.cost_basis
        return self.realised_gross - self.fees_paid, unrealised

    def on_fill(self, f: Fill, mid_ticks: float) -> None:
        sign = int(f.side)
        cash, edge = fill_cash_and_edge(self.instrument, sign, f.price_ticks, f.lots, mid_ticks)
        self._cost(sign, f.lots, f.price_ticks)
        self.position_lots += sign * f.lots
        self.cash_flow += cash
        self.fees_paid += f.fee_quote
        self.spread_capture += edge
        self.volume_lots += f.lots
        self.max_abs_position_lots = max(self.max_abs_position_lots, abs(self.position_lots))
        self.fills.append(FillRecord(f.ts_ns, f.client_id, sign, f.price_ticks, f.lots, f.fee_quote, f.is_maker, mid_ticks))

    def adopt_position(self, lots: int, mid_ticks: float) -> None:
        """Start from a position held before this run (the venue's record, no journal to say how it was
        built): valued at the current mid, so PnL counts from now and the held inventory moves it."""
        if lots:
            self._cost(1 if lots > 0 else -1, abs(lots), mid_ticks)
        self.position_lots += lots
        self.cash_flow -= self.instrument.settle_value(mid_ticks, lots)
        self.max_abs_position_lots = max(self.max_abs_position_lots, abs(self.position_lots))

    def on_fee(self, amount_quote: float) -> None:
        self.fees_paid += amount_quote

    def position_value(self, mid_ticks: float) -> float:
        """The position's value in the settlement currency (what PnL is counted in)."""
        return self.instrument.settle_value(mid_ticks, self.position_lots)

    def exposure(self, mid_ticks: float) -> float:
        """The position's signed exposure in the quote currency (what limits and inventory % measure)."""
        return self.instrument.exposure(mid_ticks, self.position_lots)

    def pnl(self, mid_ticks: float) -> PnL:
        """PnL in the settlement currency."""
        gross = self.cash_flow + self.position_value(mid_ticks)
        return PnL(gross - self.fees_paid, self.spread_capture, gross - self.spread_capture, -self.fees_paid)

    def pnl_total_quote(self, mid_ticks: float) -> float:
        """`pnl_quote(mid_ticks).total` (the same operations) without building the breakdown: the drawdown
        breaker reads it every quote cycle."""
        total = self.cash_flow + self.position_value(mid_ticks) - self.fees_paid
        return self.instrument.to_quote(total, mid_ticks) if self.instrument.inverse else total

    def pnl_quote(self, mid_ticks: float) -> PnL:
        """PnL in the quote currency (the unit of capital and limits): the settlement-currency PnL valued at
        `mid_ticks` (the same numbers for a linear instrument)."""
        p = self.pnl(mid_ticks)
        if not self.instrument.inverse:
            return p
        q = self.instrument.to_quote
        return PnL(q(p.total, mid_ticks), q(p.spread_capture, mid_ticks), q(p.inventory, mid_ticks),
                   q(p.fees, mid_ticks))
