# Types for the compiled build only (flashmm/speedups.py); replay.py is the source and runs unchanged without it.
# The queue model (its per-message entry points C-level calls) and the replay's per-message state as extension types: its attributes are slots that its own methods read
# directly (the recording's columns as lists, the mirror as the book's extension type); the rest are Python
# objects as in the source. ReplayVenue derives from it and from the Venue ABC (an instance dictionary for the
# interface's own attributes).

import cython

from flashmm.core.book cimport L2Book, Levels
from flashmm.core.clock cimport SimClock

cdef class QueueFillModel:
    cdef public L2Book book
    cdef public dict orders, traded_bid, traded_ask
    cdef public list out
    cdef public object ask_prices, bid_prices, enforce_post_only, instrument, maker_fee_bps, max_bid, min_ask
    cdef public object next_id, position_lots, post_only_rejects, taker_fee_bps

    @cython.locals(traded=dict)
    cpdef on_trade(self, price, lots, aggressor, ts)
    @cython.locals(buy=bint, at=dict)
    cpdef on_level(self, side, price, old, new)
    cpdef on_book_moved(self, ts)

cdef class _ReplayCore:
    cdef public list _price, _qty, _ts, _seq, _seq2
    # the integer columns (array('q') in the source): C reads
    cdef public long long[:] _side, _ends, _starts, _kind, _flags, _split
    cdef public L2Book mirror
    cdef public QueueFillModel model
    cdef public SimClock clock
    cdef public object _inflight, _msg, _rows_total, _stopped, cfg, data
    cdef public object instrument, latency_ns, lateness, maker_fee_bps, paced, pacer
    cdef public object speed, use_top
    cdef public long long rows_done, messages_done, bbo_messages, _steps  # (counts moved per message: C integers)

    # a message's rows by C index into the columns (the same list items, without an index object per access)
    @cython.locals(start=Py_ssize_t, end=Py_ssize_t, kind="long long")
    cpdef _message(self, Py_ssize_t i)
    @cython.locals(bid=Py_ssize_t, ask=Py_ssize_t, r=Py_ssize_t, j=Py_ssize_t, side="long long[:]", changed_b=list,
                   changed_a=list, bids=Levels, asks=Levels, bl=list, al=list)
    cpdef list _top(self, Py_ssize_t i, Py_ssize_t start, Py_ssize_t end, ts)
    @cython.locals(r=Py_ssize_t, side="long long[:]", s="long long")
    cpdef list _trades(self, Py_ssize_t start, Py_ssize_t end, ts)
    @cython.locals(split=Py_ssize_t, r=Py_ssize_t, side="long long[:]", s="long long")
    cpdef tuple _rows(self, Py_ssize_t i, Py_ssize_t start, Py_ssize_t end)
    cpdef list _snapshot(self, Py_ssize_t i, Py_ssize_t start, Py_ssize_t end, ts)
    @cython.locals(bids=list, asks=list)
    cpdef list _diff(self, Py_ssize_t i, Py_ssize_t start, Py_ssize_t end, ts)
    cpdef list _arrivals(self, until_ns)

# the message kinds as C constants (the same values as flashmm.data.events')
cdef long long KIND_BBO, KIND_DIFF, KIND_SNAP, KIND_TRADE, FLAG_EMPTY
