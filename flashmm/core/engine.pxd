# Types for the compiled build only (flashmm/speedups.py); engine.py is the source and runs unchanged without it.
# The engine as an extension type: its attributes in slots (direct access from its own compiled methods instead
# of an instance-dictionary lookup, several dozen a message), every one a Python object as in the source. It
# keeps an instance dictionary: what tests, the benchmarks and the soak attach to an engine (a wrapped on_batch,
# a subclass's own attributes) goes there, and its methods stay Python methods that such a wrapper replaces.

import cython

# the clocks (`time.perf_counter_ns()`, `time.monotonic()` in the source) as C calls: the same CPython clocks, without
# a Python call and an integer object per stage time
cimport cpython.time as time

from flashmm.core.book cimport L2Book
from flashmm.core.features cimport FeatureEngine
from flashmm.core.alpha cimport OnlineAlpha
from flashmm.core.metrics cimport FillQuality, RollingRange, TimeWeightedSpreads
from flashmm.core.calibration cimport AdverseSelection, TradeIntensity, VirtualFills, VolatilityRegime
from flashmm.telemetry.histogram cimport LatencyHistogram
from flashmm.core.execution cimport OrderManager
from flashmm.core.clock cimport ClockBase

cdef class Engine:
    cdef dict __dict__
    cdef object __weakref__
    cdef public L2Book book
    cdef public FeatureEngine features
    cdef public dict _counters, hist, _handlers
    # per-batch bookkeeping and counts, C integers (the stage times' sums, the state version)
    cdef public long long _batch_book_ns, _batch_feat_ns, version
    cdef public bint _market_in_batch
    cdef public long long _n_events, _n_batches, _n_trades, _n_book_updates, _n_top_updates
    cdef public OnlineAlpha online_alpha
    cdef public AdverseSelection adverse
    cdef public TradeIntensity intensity
    cdef public VolatilityRegime regime
    cdef public VirtualFills virtual
    cdef public LatencyHistogram tick_to_quote, _window_t2q, _window_ack, _hist_book, _hist_features
    cdef public LatencyHistogram _hist_predict, _hist_quote, _hist_risk, _hist_orders, _hist_submit
    cdef public FillQuality fill_quality
    cdef public OrderManager oms
    cdef public TimeWeightedSpreads spreads
    cdef public RollingRange _mids
    cdef public long long _last_quote_ns, _quote_interval_ns, _last_reconcile_ns
    cdef public bint _quoting, _stop
    cdef public double _alpha_mid
    cdef public object _alpha_x, _intensity, _last_fit_ns
    cdef public object _last_sample_ns, _last_spreads, _last_state_flush, _logs_after_cycle
    cdef public object _reconciled_once, _rejects, _retune_last, _state_task, _trace_orders, _use_model
    cdef public object _window_start_ns, alpha_bps, audit, cfg
    cdef public ClockBase clock  # (SimClock or WallClock: its now_ns a C call)
    cdef public object confidence_history, events_log, fault, flatten_reason, guards
    cdef public object has_edge, instrument, inventory_history, killed, last_prediction, last_proposal
    cdef public object log, max_abs_inventory_pct, mid_history, mode, model_errors, paused
    cdef public object pnl_history, portfolio, predictor, quoter, recovered, risk, sample_ts
    cdef public object seed, seq, spread_history, start_ns, state_store, venue
    cdef public object wall_start, widen

    # a batch of events, the run loop's call per batch (a Python call: the loop looks it up, so that a wrapper set
    # on the instance is what runs): its start time and venue time C integers, the components it reads typed
    @cython.locals(t0="long long", now="long long", book=L2Book, alpha=OnlineAlpha, fq=FillQuality)
    cpdef on_batch(self, batch)
    # the market's event handlers: C calls from on_batch (their stage times C integers)
    @cython.locals(t="long long", t1="long long")
    cpdef _on_top(self, ev)
    @cython.locals(t="long long", t1="long long")
    cpdef _on_diff(self, ev)
    @cython.locals(t="long long")
    cpdef _on_trade(self, ev)

    # the quote cycle and what it calls of the engine's own: C calls (no method looked up per call)
    @cython.locals(tr="long long", breakers_ns="long long", t1="long long", t2="long long", t3="long long",
                   t4="long long", t5="long long", tb="long long")
    cpdef _quote_cycle(self, long long t0)
    cpdef _update_breakers(self, now)
    cpdef _after_cycle(self, now)
    cpdef _observe_spreads(self, now)
    cpdef _note_retune(self, proposal, mid)
    cpdef tuple _our_lots_by_price(self)
    cpdef propose(self, mid, widen, prediction)
    cpdef _predict(self, now)
