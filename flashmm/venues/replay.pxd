# Types for the compiled build only (flashmm/speedups.py); replay.py is the source and runs unchanged without it.
# The replay's per-message state as an extension type: its attributes are slots that its own methods read
# directly (the recording's columns as lists, the mirror as the book's extension type); the rest are Python
# objects as in the source. ReplayVenue derives from it and from the Venue ABC (an instance dictionary for the
# interface's own attributes).

from flashmm.core.book cimport L2Book

cdef class _ReplayCore:
    cdef public list _side, _price, _qty, _ends, _starts, _ts, _kind, _flags, _seq, _seq2, _split
    cdef public L2Book mirror
    cdef public object _inflight, _msg, _rows_total, _steps, _stopped, bbo_messages, cfg, clock, data
    cdef public object instrument, latency_ns, lateness, maker_fee_bps, messages_done, model, paced, pacer
    cdef public object rows_done, speed, use_top
