# Types for the compiled build only (flashmm/speedups.py); the .py is the source and runs unchanged without it.
# Every attribute stays a Python object (the same semantics as the class's __slots__): what the declaration buys
# is direct attribute access instead of a descriptor lookup.

cdef class FillQuality:
    cdef public object horizons_ns, _queues, n, sums, sq, effective_n
    cdef public object effective_sum, fills_scored, listener, _listen, next_due_ns

cdef class TimeWeightedSpreads:
    cdef public object market_sum, ours_sum, market_ticks_sum, one_tick_ns, touch_ns, time_ns
    cdef public object _last_ns, _last

cdef class RollingRange:
    cdef public object _lo, _hi

