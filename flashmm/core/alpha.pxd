# Types for the compiled build only (flashmm/speedups.py); the .py is the source and runs unchanged without it.
# Every attribute stays a Python object (the same semantics as the class's __slots__): what the declaration buys
# is direct attribute access instead of a descriptor lookup.
import cython

from flashmm.core.features cimport FeatureEngine

@cython.locals(v="double[:]")
cpdef tuple alpha_inputs(FeatureEngine features, mid_ticks)

cdef class OnlineAlpha:
    cdef public object horizon_ns, cadence_ns, decay, ridge, cap_bps, warmup
    cdef public object _next_ns, _pending, _sxx, _sxy, n_targets, beta
    cdef public long long next_due_ns
    cdef public object _since_fit, _x, _score_n, _score_hits, _score_hits_imb, _score_moves
    cdef public object _pp, _yy, _py, _p, _y

    cpdef observe(self, now_ns, x, mid_ticks)
    cpdef _learn(self, x, y, predicted)
    cpdef predict(self, x=*)
