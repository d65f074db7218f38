# Types for the compiled build only (flashmm/speedups.py); book.py is the source and runs unchanged without it.
# Prices and sizes stay Python integers (no C overflow, the same arithmetic); what the declarations buy is direct
# access to the attributes and containers and C-level calls between these methods.
import cython

@cython.locals(lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t)
cdef Py_ssize_t _position(list ladder, k) except -1


cdef class Levels:
    cdef public dict lots
    cdef public list ladder
    cdef public object sign
    cdef public object floor
    cdef object _depth  # (top_depth's, until a level changes)
    cdef public object _span

    cpdef best(self)
    @cython.locals(book=dict, depth=tuple)
    cpdef set(self, price, lots)
    @cython.locals(book=dict, n=Py_ssize_t, neg=bint, seq=list)
    cpdef apply(self, rows)
    @cython.locals(ladder=list)
    cdef bint _sort_in(self, k) except -1
    @cython.locals(ladder=list)
    cdef bint _sort_out(self, k) except -1
    @cython.locals(book=dict, ladder=list, neg=bint)
    cpdef drop_better_than(self, price)
    @cython.locals(ladder=list, i=Py_ssize_t, j=Py_ssize_t)
    cpdef list at_or_better(self, price)
    @cython.locals(ladder=list, book=dict, n=Py_ssize_t, neg=bint)
    cpdef tuple top_depth(self)
    @cython.locals(ladder=list, book=dict)
    cpdef list top(self, n)


cdef class L2Book:
    cdef public Levels bids, asks
    cdef public object seq, ts_ns, updates, top_seq, top_bid, top_ask
    cdef public bint stale
    cdef public object stale_reason
    cdef public object rejects

    @cython.locals(rows=list)
    cpdef bint apply_diff(self, diff) except -1
    cpdef bint apply_top(self, top) except -1
    @cython.locals(bids=Levels, asks=Levels)
    cpdef bint set_top(self, seq, bp, bq, ap, aq, ts_ns) except -1
    @cython.locals(b=list, a=list)
    cpdef bint crossed(self) except -1
    cpdef bint two_sided(self) except -1
    cpdef mid_ticks(self)
    cpdef spread_ticks(self)
    cpdef list top_bids(self, n)
    cpdef list top_asks(self, n)
