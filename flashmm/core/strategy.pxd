# Types for the compiled build only (flashmm/speedups.py); strategy.py is the source and runs unchanged without it.
# The quoter as an extension type: its configuration's values read once into slots (the configuration is frozen:
# reconfigure builds a new quoter), and the quote's arithmetic as C doubles where the source's is float arithmetic
# already (the same IEEE operations in the same order: a C double is the interpreter's float).
import cython

cdef class Quoter:
    cdef public object cfg, risk, instrument, maker_fee_bps
    cdef object _model, _vol_floor_bps, _risk_aversion, _arrival_intensity, _arrival_decay, _horizon_s
    cdef object _symmetric_half_spread_bps, _glft_floor, _adverse_selection_weight, _alpha_weight
    cdef object _prediction_skew_bps, _min_edge_bps, _volatile_widen, _level_spacing_bps, _inventory_size_skew
    cdef object _max_improve_ticks, _order_levels, _level_size_multiplier, _post_only, _order_amount_usdc
    cdef object _max_position_usdc

    @cython.locals(bps_per_tick=double, sigma=double, gamma=double, k=double, inv_shift=double, half=double,
                   skew=double, glft_half=double, adverse=double, fair_shift=double, min_half=double,
                   reservation=double, u=double, off=double, symmetric=bint, skew_sizes=bint)
    cpdef propose(self, mid_ticks, best_bid, best_ask, sigma_ticks, position_lots, prediction, object widen=*,
                  object alpha_bps=*, object adverse_bps=*, object intensity=*, object volatile=*, object half_bps=*,
                  object reduce_only=*, object order_cost_bps=*)
