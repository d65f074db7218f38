"""Quote generation: Gueant-Lehalle-Fernandez-Tapia (GLFT) or Avellaneda-Stoikov closed forms around a fair
value that is not the mid, widened by the adverse selection measured online.

The configuration is in bps of the mid (one meaning on any instrument); `Quoter.propose` converts it to
ticks at the current mid, and the closed forms below work in ticks and order-size units.
- fair value = mid + alpha: the short-horizon expected move (core.alpha, or the model's prediction), in bps;
- half-spread = GLFT's (from volatility and the fill intensity lambda(delta) = A exp(-k delta), A and k
  calibrated online from the market's trades) + the adverse-selection estimate (core.calibration), floored at
  the maker fee plus a minimum edge, widened in a volatile regime and by the operator;
- reservation price = fair value shifted against inventory (GLFT's skew); inventory also skews sizes;
- queue awareness: a quote that would sit inside the market's spread improves the market's best by at most
  `max_improve_ticks` (the first in the queue either way; the rest of the way is edge given away), and never
  crosses (post-only).
The output is a proposal: the risk manager trims it and the order manager turns it into actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flashmm.config import RiskConfig, StrategyConfig
from flashmm.core.domain import Instrument, Side
from flashmm.model.predictor import Prediction

_BUY, _SELL = Side.BUY, Side.SELL  # (an enum member read through its class costs ~40 ns)


# The quoter's output is built every quote cycle (a proposal and its levels: five objects with two levels a side)
# and is not changed after it is built; plain slots dataclasses, not frozen ones, because a frozen dataclass's
# __init__ sets each field through object.__setattr__: measured 0.37 us a level against 0.11 us.
@dataclass(slots=True)
class QuoteLevel:
    side: Side
    level: int  # 0 = closest to the mid
    price_ticks: int
    lots: int


@dataclass(slots=True)
class QuoteProposal:
    levels: tuple[QuoteLevel, ...]
    reservation_ticks: float
    half_spread_ticks: float
    inventory_skew_ticks: float  # reservation shift from inventory (negative when long)
    prediction_skew_ticks: float  # fair value - mid: the alpha (and the model's prediction), ticks
    adverse_ticks: float = 0.0  # the adverse-selection term inside half_spread_ticks
    glft_half_ticks: float = 0.0  # GLFT's own half-spread (before the adverse term and the floors)


def glft_coefficients(gamma: float, a: float, k: float, delta: float = 1.0) -> tuple[float, float]:
    """c1, c2 of the GLFT asymptotic solution (Gueant 2017), xi = gamma.

    half_spread = c1 + delta/2 * sigma * c2 ;  skew per unit of inventory = sigma * c2.
    """
    xi_d = gamma * delta
    c1 = math.log1p(xi_d / k) / xi_d
    c2 = math.sqrt(gamma / (2.0 * a * delta * k) * (1.0 + xi_d / k) ** (k / xi_d + 1.0))
    return c1, c2


def glft_depths(sigma: float, q: float, gamma: float, a: float, k: float) -> tuple[float, float, float, float]:
    """(half_spread, skew, bid_depth, ask_depth) in ticks for inventory q in order-size units."""
    c1, c2 = glft_coefficients(gamma, a, k)
    half = c1 + 0.5 * sigma * c2
    skew = sigma * c2
    return half, skew, half + skew * q, half - skew * q


def avellaneda_stoikov(sigma: float, q: float, gamma: float, k: float, horizon_s: float) -> tuple[float, float]:
    """(reservation shift, half_spread) in ticks: r = s - q gamma sigma^2 T, spread = gamma sigma^2 T + 2/gamma ln(1 + gamma/k)."""
    shift = -q * gamma * sigma * sigma * horizon_s
    half = 0.5 * gamma * sigma * sigma * horizon_s + math.log1p(gamma / k) / gamma
    return shift, half


class Quoter:
    def __init__(self, cfg: StrategyConfig, risk: RiskConfig, instrument: Instrument, maker_fee_bps: float = 0.0):
        self.cfg = cfg
        self.risk = risk
        self.instrument = instrument
        self.maker_fee_bps = maker_fee_bps
        # what propose reads of the configuration, once (a frozen model: reconfigure builds a new quoter; each
        # read of a model's field was ~22 ns, twenty a quote)
        self._model = cfg.model
        self._vol_floor_bps = cfg.vol_floor_bps
        self._risk_aversion = cfg.risk_aversion
        self._arrival_intensity = cfg.arrival_intensity
        self._arrival_decay = cfg.arrival_decay
        self._horizon_s = cfg.horizon_s
        self._symmetric_half_spread_bps = cfg.symmetric_half_spread_bps
        self._glft_floor = cfg.glft_floor
        self._adverse_selection_weight = cfg.adverse_selection_weight
        self._alpha_weight = cfg.alpha_weight
        self._prediction_skew_bps = cfg.prediction_skew_bps
        self._min_edge_bps = cfg.min_edge_bps
        self._volatile_widen = cfg.volatile_widen
        self._level_spacing_bps = cfg.level_spacing_bps
        self._inventory_size_skew = cfg.inventory_size_skew
        self._max_improve_ticks = cfg.max_improve_ticks
        self._order_levels = cfg.order_levels
        self._level_size_multiplier = cfg.level_size_multiplier
        self._post_only = cfg.post_only
        self._order_amount_usdc = cfg.order_amount_usdc
        self._max_position_usdc = risk.max_position_usdc

    def base_lots(self, mid_ticks: float) -> int:
        return max(1, int(self.instrument.lots_for(self._order_amount_usdc, mid_ticks)))

    def propose(
        self,
        mid_ticks: float,
        best_bid: int,
        best_ask: int,
        sigma_ticks: float,
        position_lots: int,
        prediction: Prediction | None,
        widen: float = 1.0,
        alpha_bps: float = 0.0,  # (the rest by keyword: a C method in the compiled build takes no keyword-only)
        adverse_bps: float = 0.0,
        intensity: tuple[float, float] | None = None,
        volatile: bool = False,
        half_bps: float | None = None,
        reduce_only: bool = False,
        order_cost_bps: float = 0.0,
    ) -> QuoteProposal:
        """`best_bid`/`best_ask`: the market's best prices without our own orders (queue awareness and
        post-only are judged against everyone else). `alpha_bps`: expected mid move (the fair value shift);
        `adverse_bps`: adverse-selection estimate; `intensity`: calibrated (A per s, k per bps), else the
        configured ones; `volatile`: the regime detector says so; `half_bps`: the measured half-spread
        ([strategy].half_spread = "measured"), which replaces the adverse-selection term and is never tighter
        than GLFT's; `reduce_only`: no edge to quote for, only the side that reduces the position;
        `order_cost_bps`: what one order costs on this venue (gas, per-order charges) in bps of an order's
        notional, added to the minimum edge (a fill must at least pay for the order that made it)."""
        bps_per_tick = 1e4 / mid_ticks  # the configuration is in bps; quoting is in ticks
        sigma = max(sigma_ticks, self._vol_floor_bps / bps_per_tick)
        unit = self.base_lots(mid_ticks)
        q = position_lots / unit  # inventory in order-size units
        gamma = self._risk_aversion * bps_per_tick
        a_int, k_bps = intensity if intensity is not None else (self._arrival_intensity, self._arrival_decay)
        k = k_bps * bps_per_tick
        inv_shift = 0.0
        symmetric = self._model == "symmetric"
        if self._model == "glft":
            half, skew, _, _ = glft_depths(sigma, q, gamma, a_int, k)
            inv_shift = -skew * q
        elif self._model == "avellaneda_stoikov":
            inv_shift, half = avellaneda_stoikov(sigma, q, gamma, k, self._horizon_s)
        else:  # symmetric baseline: fixed half-spread, no inventory, alpha or prediction skew
            half = self._symmetric_half_spread_bps / bps_per_tick
        glft_half = half
        if symmetric:
            adverse = 0.0
        elif half_bps is not None:  # measured on the market's tape: the adverse selection is inside it
            if not self._glft_floor:
                half = 0.0
            adverse = max(0.0, half_bps / bps_per_tick - half)
        else:
            adverse = self._adverse_selection_weight * max(0.0, adverse_bps) / bps_per_tick
        fair_shift = 0.0
        if not symmetric:
            fair_shift = self._alpha_weight * alpha_bps / bps_per_tick
            if prediction is not None:
                fair_shift += self._prediction_skew_bps / bps_per_tick * prediction.confidence * prediction.direction
        # never quote inside the fees plus a minimum edge
        min_half = (self.maker_fee_bps + self._min_edge_bps + order_cost_bps) / bps_per_tick
        half = max(half + adverse, min_half) * widen * (self._volatile_widen if volatile and not symmetric else 1.0)
        reservation = mid_ticks + inv_shift + fair_shift
        spacing = max(1, round(self._level_spacing_bps / bps_per_tick))

        max_pos_lots = self.instrument.lots_for(self._max_position_usdc, mid_ticks)
        skew_sizes = self._inventory_size_skew and not symmetric
        u = max(-1.0, min(1.0, position_lots / max_pos_lots)) if skew_sizes else 0.0
        cap = self._max_improve_ticks if not symmetric else -1
        levels: list[QuoteLevel] = []
        for i in range(self._order_levels):
            size = unit * self._level_size_multiplier**i
            off = half + i * spacing
            bid = math.floor(reservation - off + 1e-9)
            ask = math.ceil(reservation + off - 1e-9)
            if cap >= 0 and i == 0:  # inside the spread: better the market's best by at most `cap` ticks
                bid = min(bid, best_bid + cap)
                ask = max(ask, best_ask - cap)
            if self._post_only:
                bid = min(bid, best_ask - 1 - i * spacing)
                ask = max(ask, best_bid + 1 + i * spacing)
            bid_lots = int(size * (1.0 - max(u, 0.0)))
            ask_lots = int(size * (1.0 + min(u, 0.0)))
            if reduce_only:  # only what brings the position back toward flat
                bid_lots = min(bid_lots, max(0, -position_lots))
                ask_lots = min(ask_lots, max(0, position_lots))
            if bid_lots > 0 and bid > 0:
                levels.append(QuoteLevel(_BUY, i, bid, bid_lots))
            if ask_lots > 0:
                levels.append(QuoteLevel(_SELL, i, ask, ask_lots))
        return QuoteProposal(tuple(levels), reservation, half, inv_shift, fair_shift, adverse, glft_half)
