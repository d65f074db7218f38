"""hftbacktest's market makers on converted FlashMM data. Runs ONLY in the throwaway hftbacktest venv
(scripts/compare_strategies.py starts it there as a subprocess); FlashMM never imports it.

    python hftbt_mm.py --rows ROWS.npy --params PARAMS.json --out OUT.json

ROWS.npy: hftbacktest 2.4 event rows made by flashmm.research.compare.to_hftbacktest. PARAMS.json: the matched
settings (tick, lot, latency, fees, order size and position limit in quote currency, requote interval, the
instant trading starts) and each strategy's own parameters. For each strategy it writes OUT.<name>.npz (the
fills: exchange time, side, price, quantity; the best bid / ask at every step, for the conversion check)
and one JSON with counts, calibrated values and hftbacktest's own account state.

Strategies (both step every `interval_ns` with `hbt.elapse`, follow the market from the start of the data
and place orders only from `trade_from_ns` on):
- glft: "GLFT Market Making Model and Grid Trading" (hftbacktest examples): trading intensity A, k fitted on
  the arrival depth of market trades from the previous step's mid, volatility from the step mid changes,
  both over a rolling window and refitted every 5 s; half spread (c1 + delta/2 c2 sigma) adj1, skew
  c2 sigma adj2 per order-size unit of position; a grid of GTX orders spaced by the half spread.
- obi: "Market Making with Alpha - Order Book Imbalance": alpha = the rolling z-score of (bid qty - ask qty)
  within `looking_depth` of the mid; fair = mid + c1 alpha; reservation = fair - skew x position in order
  units; one GTX order per side at reservation -/+ half spread, never through the touch. Its price
  parameters are given here in bps of the mid (the example's are in USD on BTCUSDT).
Both: order size = floor(order quote amount / exposure of one lot) lots (FlashMM's rule; the exposure of
one unit is mid x multiplier, or the contract's face value for an inverse contract), and a side's grid is
cut so that the position plus every order on that side (including orders being cancelled) stays within the
position limit in quote currency (FlashMM's risk rule; the tutorial's is `position < max_position`).
"""

import argparse
import json
import sys
import time

import numpy as np
from numba import njit, uint64
from numba.typed import Dict

import hftbacktest
from hftbacktest import (
    BUY,
    BUY_EVENT,
    FILLED,
    GTX,
    LIMIT,
    SELL,
    BacktestAsset,
    ROIVectorMarketDepthBacktest,
)
from hftbacktest import types as hftbt_types

INVALID_MIN = -(2**63)
INVALID_MAX = 2**63 - 1


# ---- shared by both strategies ----------------------------------------------------------------------
@njit
def record_fills(orders, seen, fills_ts, fills_f, n_fills, tick_size, lot_size, account):
    """Append what each order executed since the last step. The executed quantity of an order is its whole
    quantity once FILLED, else qty - leaves_qty (partial fills); `seen` keeps what was already recorded.
    account[0] is the position from these fills: hftbacktest 2.4's own local position ignores partial fills
    (nkaz001/hftbacktest#299, #316), so the strategies use this one."""
    values = orders.values()
    while values.has_next():
        o = values.get()
        executed = o.qty if o.status == FILLED else o.qty - o.leaves_qty
        prev = seen.get(o.order_id, 0.0)
        if executed - prev > 0.5 * lot_size and n_fills < len(fills_ts):
            fills_ts[n_fills] = o.exch_timestamp
            fills_f[n_fills, 0] = 1.0 if o.side == BUY else -1.0
            fills_f[n_fills, 1] = o.price_tick * tick_size  # GTX orders are makers: filled at their price
            fills_f[n_fills, 2] = executed - prev
            account[0] += fills_f[n_fills, 0] * (executed - prev)
            seen[o.order_id] = executed
            n_fills += 1
    return n_fills


@njit(cache=True)
def quote_value(mid_price, inverse, multiplier):
    """Quote-currency exposure of one unit of quantity: mid x multiplier (linear), or the contract's face
    value (inverse: a BTCUSD_PERP contract is 100 USD whatever the price). FlashMM's Instrument.exposure."""
    return multiplier if inverse else mid_price * multiplier


@njit
def sample_top(hbt, depth, t, samp_ts, samp_bid, samp_ask):
    """Keep this step's best bid / ask (the conversion check); returns them and whether both exist."""
    best_bid_tick = depth.best_bid_tick
    best_ask_tick = depth.best_ask_tick
    samp_ts[t] = hbt.current_timestamp
    samp_bid[t] = best_bid_tick
    samp_ask[t] = best_ask_tick
    return best_bid_tick, best_ask_tick, best_bid_tick != INVALID_MIN and best_ask_tick != INVALID_MAX


@njit
def side_room_qty(orders, side, keep_ids, max_position_qty, position):
    """Quantity a side may still rest: the limit less the position and every live order on that side that
    is not one of `keep_ids` (orders being cancelled can still fill)."""
    pending = 0.0
    values = orders.values()
    while values.has_next():
        o = values.get()
        if o.side == side and (o.status == 1 or o.status == 5) and o.order_id not in keep_ids:
            pending += o.leaves_qty
    if side == BUY:
        return max_position_qty - position - pending
    return max_position_qty + position - pending


@njit
def update_grid(hbt, asset_no, orders, seen, new_bid, new_ask, order_qty, counts):
    """Cancel live orders that left the grid, submit the grid's new prices (order id = price tick)."""
    values = orders.values()
    while values.has_next():
        o = values.get()
        if o.cancellable:
            if (o.side == BUY and o.order_id not in new_bid) or (o.side == SELL and o.order_id not in new_ask):
                hbt.cancel(asset_no, o.order_id, False)
                counts[1] += 1
    for oid, px in new_bid.items():
        if oid not in orders:
            seen[oid] = 0.0
            hbt.submit_buy_order(asset_no, oid, px, order_qty, GTX, LIMIT, False)
            counts[0] += 1
    for oid, px in new_ask.items():
        if oid not in orders:
            seen[oid] = 0.0
            hbt.submit_sell_order(asset_no, oid, px, order_qty, GTX, LIMIT, False)
            counts[0] += 1


@njit
def build_grid(orders, bid_price, ask_price, grid_interval, grid_num, order_qty, tick_size, max_position_qty,
               position):
    """The tutorial's grids (grid_num prices per side, grid_interval apart), cut to the position room."""
    cand_bid = Dict.empty(uint64, np.float64)
    cand_ask = Dict.empty(uint64, np.float64)
    if np.isfinite(bid_price):
        p = bid_price
        for i in range(grid_num):
            cand_bid[uint64(round(p / tick_size))] = p
            p -= grid_interval
    if np.isfinite(ask_price):
        p = ask_price
        for i in range(grid_num):
            cand_ask[uint64(round(p / tick_size))] = p
            p += grid_interval
    new_bid = Dict.empty(uint64, np.float64)
    new_ask = Dict.empty(uint64, np.float64)
    room = side_room_qty(orders, BUY, cand_bid, max_position_qty, position)
    for oid, px in cand_bid.items():  # insertion order: nearest the touch first
        if room >= order_qty - 1e-12:
            new_bid[oid] = px
            room -= order_qty
    room = side_room_qty(orders, SELL, cand_ask, max_position_qty, position)
    for oid, px in cand_ask.items():
        if room >= order_qty - 1e-12:
            new_ask[oid] = px
            room -= order_qty
    return new_bid, new_ask


# ---- GLFT (tutorial) ------------------------------------------------------------------------------
@njit(cache=True)
def measure_trading_intensity(order_arrival_depth, out):
    max_tick = 0
    for depth in order_arrival_depth:
        if not np.isfinite(depth):
            continue
        tick = round(depth / 0.5) - 1  # the tutorial's half-tick bins, kept as published
        if tick < 0 or tick >= len(out):
            continue
        out[:tick] += 1
        max_tick = max(max_tick, tick)
    return out[:max_tick]


@njit(cache=True)
def linear_regression(x, y):
    sx = np.sum(x)
    sy = np.sum(y)
    sx2 = np.sum(x**2)
    sxy = np.sum(x * y)
    w = len(x)
    slope = (w * sxy - sx * sy) / (w * sx2 - sx**2)
    intercept = (sy - slope * sx) / w
    return slope, intercept


@njit(cache=True)
def compute_coeff(xi, gamma, delta, A, k):
    inv_k = np.divide(1, k)
    c1 = 1 / (xi * delta) * np.log(1 + xi * delta * inv_k)
    c2 = np.sqrt(np.divide(gamma, 2 * A * delta * k) * ((1 + xi * delta * inv_k) ** (k / (xi * delta) + 1)))
    return c1, c2


@njit
def glft_mm(hbt, interval_ns, trade_from_ns, window_steps, recalib_steps, order_usd, max_position_usd, inverse,
            multiplier, grid_num, gamma, delta, adj1, adj2, max_steps, fills_ts, fills_f, samp_ts, samp_bid, samp_ask,
            quote_stats):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    steps_per_s = 1e9 / interval_ns
    window_s = window_steps / steps_per_s
    arrival_depth = np.full(max_steps, np.nan, np.float64)
    mid_price_chg = np.full(max_steps, np.nan, np.float64)
    t = 0
    mid_price_tick = np.nan
    tmp = np.zeros(500, np.float64)
    ticks = np.arange(len(tmp)) + 0.5
    A = np.nan
    k = np.nan
    volatility = np.nan
    seen = Dict.empty(uint64, np.float64)
    counts = np.zeros(2, np.int64)  # submitted, cancelled
    n_fills = 0
    account = np.zeros(1, np.float64)  # position from our recorded fills
    n_quote = 0
    sum_half_bps = 0.0
    rc = 0
    while t < max_steps:
        rc = hbt.elapse(interval_ns)
        if rc != 0:
            break
        orders = hbt.orders(asset_no)
        n_fills = record_fills(orders, seen, fills_ts, fills_f, n_fills, tick_size, lot_size, account)
        # Arrival depth of market trades from the previous step's mid (tutorial).
        if not np.isnan(mid_price_tick):
            depth = -np.inf
            for last_trade in hbt.last_trades(asset_no):
                trade_price_tick = last_trade.px / tick_size
                if last_trade.ev & BUY_EVENT == BUY_EVENT:
                    depth = max(trade_price_tick - mid_price_tick, depth)
                else:
                    depth = max(mid_price_tick - trade_price_tick, depth)
            arrival_depth[t] = depth
        hbt.clear_last_trades(asset_no)
        hbt.clear_inactive_orders(asset_no)

        depth = hbt.depth(asset_no)
        position = account[0]
        orders = hbt.orders(asset_no)
        best_bid_tick, best_ask_tick, book_ok = sample_top(hbt, depth, t, samp_ts, samp_bid, samp_ask)
        prev_mid_price_tick = mid_price_tick
        mid_price_tick = (best_bid_tick + best_ask_tick) / 2.0 if book_ok else np.nan
        mid_price_chg[t] = mid_price_tick - prev_mid_price_tick

        if t % recalib_steps == 0 and t >= window_steps - 1:
            tmp[:] = 0
            lambda_ = measure_trading_intensity(arrival_depth[t + 1 - window_steps:t + 1], tmp)
            if len(lambda_) > 2:
                lambda_ = lambda_[:70] / window_s
                x = ticks[:len(lambda_)]
                y = np.log(lambda_)
                k_, logA = linear_regression(x, y)
                A = np.exp(logA)
                k = -k_
            volatility = np.nanstd(mid_price_chg[t + 1 - window_steps:t + 1]) * np.sqrt(steps_per_s)

        t += 1
        if hbt.current_timestamp < trade_from_ns or not book_ok:
            continue
        mid_price = mid_price_tick * tick_size
        unit_value = quote_value(mid_price, inverse, multiplier)
        order_qty = max(np.floor(order_usd / unit_value / lot_size), 1.0) * lot_size
        c1, c2 = compute_coeff(gamma, gamma, delta, A, k)
        half_spread_tick = (c1 + delta / 2 * c2 * volatility) * adj1
        skew = c2 * volatility * adj2
        reservation_price_tick = mid_price_tick - skew * (position / order_qty)
        bid_price_tick = min(np.round(reservation_price_tick - half_spread_tick), best_bid_tick)
        ask_price_tick = max(np.round(reservation_price_tick + half_spread_tick), best_ask_tick)
        bid_price = bid_price_tick * tick_size
        ask_price = ask_price_tick * tick_size
        grid_interval = max(np.round(half_spread_tick) * tick_size, tick_size)
        if np.isfinite(grid_interval):
            bid_price = np.floor(bid_price / grid_interval) * grid_interval
            ask_price = np.ceil(ask_price / grid_interval) * grid_interval
        if np.isfinite(half_spread_tick):
            n_quote += 1
            sum_half_bps += half_spread_tick / mid_price_tick * 1e4
        new_bid, new_ask = build_grid(orders, bid_price, ask_price, grid_interval, grid_num, order_qty, tick_size,
                                      max_position_usd / unit_value, position)
        update_grid(hbt, asset_no, orders, seen, new_bid, new_ask, order_qty, counts)
    # fills reported at the last step
    n_fills = record_fills(hbt.orders(asset_no), seen, fills_ts, fills_f, n_fills, tick_size, lot_size, account)
    quote_stats[0] = A
    quote_stats[1] = k
    quote_stats[2] = volatility
    quote_stats[3] = sum_half_bps / n_quote if n_quote else np.nan
    quote_stats[4] = n_quote
    return t, n_fills, counts[0], counts[1], hbt.current_timestamp, rc


# ---- Order book imbalance (example) -------------------------------------------------------------------
@njit
def obi_mm(hbt, interval_ns, trade_from_ns, window_steps, looking_depth, half_spread_bps, skew_bps, c1_bps,
           order_usd, max_position_usd, inverse, multiplier, grid_num, max_steps, fills_ts, fills_f, samp_ts,
           samp_bid, samp_ask, quote_stats):
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    lot_size = hbt.depth(asset_no).lot_size
    imbalance = np.full(max_steps, np.nan, np.float64)
    seen = Dict.empty(uint64, np.float64)
    counts = np.zeros(2, np.int64)
    n_fills = 0
    account = np.zeros(1, np.float64)  # position from our recorded fills
    t = 0
    n_quote = 0
    sum_abs_alpha = 0.0
    win_sum = 0.0
    win_sq = 0.0
    n_win = 0
    shift = 0.0
    rc = 0
    while t < max_steps:
        rc = hbt.elapse(interval_ns)
        if rc != 0:
            break
        orders = hbt.orders(asset_no)
        n_fills = record_fills(orders, seen, fills_ts, fills_f, n_fills, tick_size, lot_size, account)
        hbt.clear_inactive_orders(asset_no)
        depth = hbt.depth(asset_no)
        position = account[0]
        orders = hbt.orders(asset_no)
        best_bid_tick, best_ask_tick, book_ok = sample_top(hbt, depth, t, samp_ts, samp_bid, samp_ask)
        if not book_ok:
            t += 1
            continue
        best_bid = best_bid_tick * tick_size
        best_ask = best_ask_tick * tick_size
        mid_price = (best_bid + best_ask) / 2.0
        # Depth within looking_depth of the mid (the example's sums, over the ROI vectors).
        lb = depth.roi_lb_tick
        ub = depth.roi_ub_tick
        from_tick = max(best_ask_tick, lb)
        upto_tick = min(int(np.floor(mid_price * (1 + looking_depth) / tick_size)), ub)
        sum_ask_qty = np.sum(depth.ask_depth[from_tick - lb:upto_tick - lb]) if upto_tick > from_tick else 0.0
        from_tick = min(best_bid_tick, ub)
        upto_tick = max(int(np.ceil(mid_price * (1 - looking_depth) / tick_size)), lb)
        sum_bid_qty = np.sum(depth.bid_depth[upto_tick - lb + 1:from_tick - lb + 1]) if from_tick > upto_tick else 0.0
        imbalance[t] = sum_bid_qty - sum_ask_qty
        # the example's np.nanmean / np.nanstd over the window, kept as running sums (O(1) a step instead
        # of O(window): 36,000 steps a step on Bitstamp), shifted by the first value for precision
        if n_win == 0 and shift == 0.0:
            shift = imbalance[t]
        x = imbalance[t] - shift
        win_sum += x
        win_sq += x * x
        n_win += 1
        if t >= window_steps:
            old = imbalance[t - window_steps]
            if np.isfinite(old):
                win_sum -= old - shift
                win_sq -= (old - shift) ** 2
                n_win -= 1
        m = win_sum / n_win
        var = max(win_sq / n_win - m * m, 0.0)
        s = np.sqrt(var)
        alpha = (x - m) / s if s > 0 else 0.0
        t += 1
        if hbt.current_timestamp < trade_from_ns:
            continue
        unit_value = quote_value(mid_price, inverse, multiplier)
        order_qty = max(np.floor(order_usd / unit_value / lot_size), 1.0) * lot_size
        bps = mid_price / 1e4
        fair_price = mid_price + c1_bps * bps * alpha
        reservation_price = fair_price - skew_bps * bps * (position / order_qty)
        bid_price = min(np.floor((reservation_price - half_spread_bps * bps) / tick_size) * tick_size, best_bid)
        ask_price = max(np.ceil((reservation_price + half_spread_bps * bps) / tick_size) * tick_size, best_ask)
        n_quote += 1
        sum_abs_alpha += abs(alpha)
        new_bid, new_ask = build_grid(orders, bid_price, ask_price, tick_size, grid_num, order_qty, tick_size,
                                      max_position_usd / unit_value, position)
        update_grid(hbt, asset_no, orders, seen, new_bid, new_ask, order_qty, counts)
    n_fills = record_fills(hbt.orders(asset_no), seen, fills_ts, fills_f, n_fills, tick_size, lot_size, account)
    quote_stats[0] = sum_abs_alpha / n_quote if n_quote else np.nan
    quote_stats[4] = n_quote
    return t, n_fills, counts[0], counts[1], hbt.current_timestamp, rc


# ---- driver ----------------------------------------------------------------------------------------
def check_format():
    """The rows were made for hftbacktest 2.4's layout and flags: refuse another."""
    from hftbacktest.types import event_dtype

    want = {"EXCH_EVENT": 1 << 31, "LOCAL_EVENT": 1 << 30, "BUY_EVENT": 1 << 29, "SELL_EVENT": 1 << 28,
            "DEPTH_EVENT": 1, "TRADE_EVENT": 2, "DEPTH_CLEAR_EVENT": 3, "DEPTH_SNAPSHOT_EVENT": 4}
    got = {name: getattr(hftbt_types, name) for name in want}
    if got != want:
        raise SystemExit(f"hftbacktest {hftbacktest.__version__}: event flags differ from 2.4's: {got}")
    return event_dtype


def build(p, rows):
    asset = BacktestAsset().data([rows])
    # FlashMM's Instrument: linear (value = price x qty x multiplier) or inverse (contracts of `multiplier`)
    asset = asset.inverse_asset(p["multiplier"]) if p["inverse"] else asset.linear_asset(p["multiplier"])
    asset = (
        asset.constant_order_latency(int(p["latency_ns"]), int(p["response_latency_ns"]))
        .trading_value_fee_model(p["maker_fee_bps"] / 1e4, p["taker_fee_bps"] / 1e4)
        .tick_size(p["tick_size"])
        .lot_size(p["lot_size"])
        .roi_lb(p["roi_lb"])
        .roi_ub(p["roi_ub"])
        .last_trades_capacity(100_000)
    )
    q = p["queue_model"]
    if q == "prob1":
        asset = asset.power_prob_queue_model(1.0)
    elif q == "prob2":
        asset = asset.power_prob_queue_model(2.0)
    elif q == "risk_adverse":
        asset = asset.risk_adverse_queue_model()
    else:
        raise SystemExit(f"unknown queue model {q!r}")
    asset = asset.partial_fill_exchange() if p["exchange"] == "partial" else asset.no_partial_fill_exchange()
    return ROIVectorMarketDepthBacktest([asset])


def run_strategy(name, p, rows):
    span_ns = int(rows["local_ts"][-1] - rows["local_ts"][0])
    max_steps = span_ns // p["interval_ns"] + 10
    max_fills = 2_000_000
    fills_ts = np.zeros(max_fills, np.int64)
    fills_f = np.zeros((max_fills, 3), np.float64)
    samp_ts = np.zeros(max_steps, np.int64)
    samp_bid = np.zeros(max_steps, np.int64)
    samp_ask = np.zeros(max_steps, np.int64)
    quote_stats = np.full(5, np.nan)
    hbt = build(p, rows)
    s = p["strategies"][name]
    t0 = time.perf_counter()
    if name == "glft":
        window_steps = max(2, int(round(s["window_s"] * 1e9 / p["interval_ns"])))
        recalib_steps = max(1, int(round(s["recalib_s"] * 1e9 / p["interval_ns"])))
        steps, n_fills, n_sub, n_cancel, last_ts, rc = glft_mm(
            hbt, p["interval_ns"], p["trade_from_ns"], window_steps, recalib_steps, p["order_usd"],
            p["max_position_usd"], p["inverse"], p["multiplier"], s["grid_num"], s["gamma"], s["delta"], s["adj1"],
            s["adj2"], max_steps,
            fills_ts, fills_f, samp_ts, samp_bid, samp_ask, quote_stats)
        extra = {"A": quote_stats[0], "k": quote_stats[1], "volatility_ticks_per_sqrt_s": quote_stats[2],
                 "mean_half_spread_bps": quote_stats[3], "window_steps": window_steps,
                 "recalib_steps": recalib_steps}
    elif name == "obi":
        window_steps = max(2, int(round(s["window_s"] * 1e9 / p["interval_ns"])))
        steps, n_fills, n_sub, n_cancel, last_ts, rc = obi_mm(
            hbt, p["interval_ns"], p["trade_from_ns"], window_steps, s["looking_depth"], s["half_spread_bps"],
            s["skew_bps"], s["c1_bps"], p["order_usd"], p["max_position_usd"], p["inverse"], p["multiplier"],
            s["grid_num"], max_steps,
            fills_ts, fills_f, samp_ts, samp_bid, samp_ask, quote_stats)
        extra = {"mean_abs_alpha": quote_stats[0], "window_steps": window_steps}
    else:
        raise SystemExit(f"unknown strategy {name!r}")
    loop_s = time.perf_counter() - t0
    # elapse() stops on the end of the data (1) or an error (other codes): an early stop is an error here
    if last_ts < int(rows["local_ts"][-1]) - p["interval_ns"]:
        raise SystemExit(f"hftbacktest {name}: elapse() returned {rc} at {last_ts}, before the end of the data "
                         f"({int(rows['local_ts'][-1])}), after {steps} steps")
    sv = hbt.state_values(0)
    depth = hbt.depth(0)
    state = {"position": float(sv.position), "balance": float(sv.balance), "fee": float(sv.fee),
             "num_trades": int(sv.num_trades), "trading_volume": float(sv.trading_volume),
             "trading_value": float(sv.trading_value), "last_best_bid": float(depth.best_bid),
             "last_best_ask": float(depth.best_ask)}
    hbt.close()
    npz = f"{p['out_prefix']}.{name}.npz"
    np.savez(npz, fills_ts=fills_ts[:n_fills], fills=fills_f[:n_fills], samp_ts=samp_ts[:steps],
             samp_bid=samp_bid[:steps], samp_ask=samp_ask[:steps])
    quoting = int(quote_stats[4]) if np.isfinite(quote_stats[4]) else 0
    return {"steps": int(steps), "last_ts_ns": int(last_ts), "fills": int(n_fills), "orders_submitted": int(n_sub),
            "orders_cancelled": int(n_cancel), "quoting_steps": quoting, "loop_s": loop_s,
            "state": state, "npz": npz, **{k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                          for k, v in extra.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    event_dtype = check_format()
    p = json.load(open(a.params))
    rows = np.load(a.rows)
    if rows.dtype != event_dtype:
        raise SystemExit(f"rows have dtype {rows.dtype}, hftbacktest {hftbacktest.__version__} wants {event_dtype}")
    rows = np.ascontiguousarray(rows)
    import numba

    result = {"hftbacktest_version": hftbacktest.__version__, "numba_version": numba.__version__,
              "numpy_version": np.__version__, "python": sys.version.split()[0], "rows": int(len(rows)),
              "strategies": {}}
    for name in p["run"]:
        t0 = time.perf_counter()
        r = run_strategy(name, p, rows)
        r["wall_s"] = time.perf_counter() - t0
        result["strategies"][name] = r
        print(f"hftbacktest {name}: {r['steps']} steps, {r['orders_submitted']} orders, {r['fills']} fills, "
              f"{r['wall_s']:.1f} s (loop {r['loop_s']:.2f} s)", flush=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
