# Types for the compiled build only (flashmm/speedups.py); the .py is the source and runs unchanged without it.
# Every attribute stays a Python object (the same semantics as the class's __slots__): what the declaration buys
# is direct attribute access instead of a descriptor lookup.

cdef class Breaker:
    cdef public object name, action, state, reason, since_ns, trips
    cdef public object cooldown_ns

cdef class TokenBucket:
    cdef public object rate_per_ns, burst, tokens, last_ns

