# Types for the compiled build only (flashmm/speedups.py); execution.py is the source and runs unchanged without it.
# The order manager as an extension type: its attributes in slots (direct access from its own methods, a dozen
# or so per quote cycle) and its per-cycle methods C calls from each other and from the engine; every attribute
# stays a Python object as in the source.

import cython

cdef class OrderManager:
    cdef public dict orders
    cdef public list done
    cdef public object tol_bps, _bps_per_tick, _tol, tol_size, refresh_ns, bucket, next_client_id, counts, post_only

    @cython.locals(want=dict, left=dict, cancels=list, keep=set, places=list)
    cpdef list sync(self, list desired, now_ns, room=*, bps_per_tick=*, tolerance_ticks=*)
    cpdef bint _close_enough(self, o, q, now_ns) except -1
    cpdef list cancel_all(self)
    cpdef _new(self, side, price, lots, level, otype, now_ns)
    cpdef locked_lots(self, side)
