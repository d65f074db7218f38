# Types for the compiled build only (flashmm/speedups.py); the .py is the source and runs unchanged without it.
# Every attribute stays a Python object (the same semantics as the class's __slots__): what the declaration buys
# is direct attribute access instead of a descriptor lookup.

import cython

cpdef _bucket(v)

cdef class LatencyHistogram:
    cdef public object _counts, _count, _total, _max, _min, _arr
    cdef long long[:] _buf  # (_arr, an array('q'), as typed memory: a C store per record)
    cdef Py_ssize_t _n

    @cython.locals(n=Py_ssize_t)
    cpdef record(self, ns)
    cpdef double percentile(self, q) except? -1
    cpdef _fold(self)
