# Types for the compiled build only (flashmm/speedups.py); features.py is the source and runs unchanged without it.
# `math` is C's libm here (its exp and sqrt: what Python's math calls too); the features call it only where Python's
# would not raise (exp of -dt / tau <= 0, sqrt of a sum of squares over a positive time).
import cython
cimport libc.math as math

from flashmm.core.book cimport L2Book

cdef class FeatureEngine:
    cdef public object values
    cdef public double vol_tau_s, flow_tau_s, mom_tau_s
    cdef public object _last_ts
    cdef public double _mid, _ema_mid, _var_sum, _var_time, _ofi, _depth, _flow_signed, _flow_total
    cdef public object _prev_top
    cdef public long long _pbp, _pbq, _pap, _paq
    cdef public bint _have_prev, _top_exact
    cdef public object _flow_ts
    cdef public bint ready
    cdef double[:] _v

    cpdef on_book(self, L2Book book, ts_ns)
    @cython.locals(pbp="long long", pbq="long long", pap="long long", paq="long long", e="long long")
    cdef _update_exact(self, ts_ns, long long bp, long long bq, long long ap, long long aq, long long bq3,
                       long long aq3, long long bq5, long long aq5)
    cdef _update_any(self, ts_ns, bp, bq, ap, aq, bq3, aq3, bq5, aq5)
    @cython.locals(dt=double, d_vol=double, dm=double, a_mom=double, d_flow=double, v="double[:]")
    cdef _update(self, ts_ns, double mid, double spread, double micro, double imb1, double imb3, double imb5,
                 double e, double depth2, double bq, double aq)
    @cython.locals(dt=double, d=double)
    cpdef on_trade(self, trade)
