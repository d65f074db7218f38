# Types for the compiled build only (flashmm/speedups.py); features.py is the source and runs unchanged without it.
import cython

from flashmm.core.book cimport L2Book

cdef class FeatureEngine:
    cdef public object values
    cdef public double vol_tau_s, flow_tau_s, mom_tau_s
    cdef public object _last_ts
    cdef public double _mid, _ema_mid, _var_sum, _var_time, _ofi, _depth, _flow_signed, _flow_total
    cdef public object _prev_top
    cdef public object _flow_ts
    cdef public bint ready
    cdef double[:] _v

    @cython.locals(dt=double, d_vol=double, dm=double, a_mom=double, d_flow=double, mid=double, bids=list,
                   asks=list, bl=list, al=list, v="double[:]")
    cpdef on_book(self, L2Book book, ts_ns)
