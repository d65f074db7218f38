# Types for the compiled build only (flashmm/speedups.py); features.py is the source and runs unchanged without it.
# `math` is C's libm here (its exp and sqrt: what Python's math calls too); the features call it only where Python's
# would not raise (exp of -dt / tau <= 0, sqrt of a sum of squares over a positive time).
import cython
cimport libc.math as math

from flashmm.core.book cimport L2Book

cpdef double _imbalance_of(b, a) except? -2

cdef class FeatureEngine:
    cdef public object values
    cdef public double vol_tau_s, flow_tau_s, mom_tau_s
    cdef public object _last_ts
    cdef public double _mid, _ema_mid, _var_sum, _var_time, _ofi, _depth, _flow_signed, _flow_total
    cdef public object _prev_top
    cdef public object _flow_ts
    cdef public bint ready
    cdef double[:] _v

    @cython.locals(dt=double, d_vol=double, dm=double, a_mom=double, d_flow=double, mid=double, v="double[:]")
    cpdef on_book(self, L2Book book, ts_ns)
    @cython.locals(dt=double, d=double)
    cpdef on_trade(self, trade)
