# Types for the compiled build only (flashmm/speedups.py); clock.py is the source and runs unchanged without it.
# The clocks as extension types: every component asks its clock for the time several times a message, and a
# compiled method is a C call where the caller knows the type (the replay venue's SimClock) and a call without an
# interpreter frame where it does not (the engine's clock, live or simulated). The time stays a Python int.

# (`time.time_ns()` in the source as the C call of the same CPython clock: no Python call per read)
cimport cpython.time as time


cdef class ClockBase:
    cpdef now_ns(self)


cdef class WallClock(ClockBase):
    cpdef now_ns(self)


cdef class SimClock(ClockBase):
    cdef public object _now_ns

    cpdef now_ns(self)
    cpdef advance_to(self, t_ns)
    cpdef advance(self, dt_ns)
