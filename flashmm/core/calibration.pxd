# Types for the compiled build only (flashmm/speedups.py); the .py is the source and runs unchanged without it.
# Attributes stay Python objects (the same semantics as the class's __slots__), what the declaration buys being
# direct attribute access instead of a descriptor lookup; except the virtual quotes' reach bounds (C doubles: the
# same IEEE values, computed by the same operations in the same order, no contraction) and their venue-time
# constants (C 64-bit integers: a value out of range raises on assignment, it never wraps).
import cython

cdef class TradeIntensity:
    cdef public object halflife_ns, time_s, trades, _last_ns, min_trades
    cdef public object a_bounds, k_bounds, default, a, k
    cdef public double[:] counts  # (an array.array of doubles: its buffer)

    @cython.locals(counts="double[:]", i=Py_ssize_t, d=double)
    cpdef _decay_to(self, now_ns)
    @cython.locals(counts="double[:]", i=Py_ssize_t, dist=double, reach=double)
    cpdef on_trade(self, price_ticks, mid_ticks, now_ns)

cdef class AdverseSelection:
    cdef public object horizon_ns, prior_weight, _alpha, impact, impact_n, ours
    cdef public object ours_n, _pending, next_due_ns

    cpdef on_trade(self, aggressor, mid_ticks, now_ns)
    cpdef resolve(self, now_ns, mid_ticks)

cdef class VolatilityRegime:
    cdef public object _next_ns, _last_mid, short_var, long_var, drift, n
    cdef public object _a_short, _a_long, garch, garch_alpha, garch_beta, volatile_ratio
    cdef public object trend_z, regime, _drift_n

    cpdef observe(self, now_ns, mid_ticks)
    cpdef _update(self, r)

cdef class VirtualFills:
    cdef public object deltas, cadence_ns, horizon_ns, halflife_ns
    cdef public long long latency_ns, life_ns, _next_ns, _due_ns  # (venue-time nanoseconds: checked conversions, C arithmetic)
    cdef public object min_fills, chase, _live, _pending, n
    cdef public object rs_sum, time_s, _last_ns, fills, _deltas, _best_key, _best
    cdef public double _bid_reach, _ask_reach, _chase_bid, _chase_ask

    @cython.locals(deltas=list, nd=Py_ssize_t, i=Py_ssize_t, chase=double, bid=double, ask=double, chase_bid=double,
                   chase_ask=double, m=double, margin=double, d=double)
    cpdef _reach(self)
    @cython.locals(deltas=list, nd=Py_ssize_t, chase=double, moved=double, m0=double, t0="long long", due="long long")
    cpdef observe(self, long long now_ns, double mid_ticks)
    @cython.locals(deltas=list, nd=Py_ssize_t, mid0=double, depth=double, t0="long long")
    cpdef on_trade(self, double price_ticks, aggressor, long long now_ns)
    cpdef _fill(self, now_ns, side, i, price, mid0)
    cpdef _decay_to(self, now_ns)
