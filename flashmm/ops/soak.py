"""Soak benchmark: hours of simulated trading at full speed, watched for leaks, drift and lost orders.

The production loop is what soaks: `run_daemon` (the console-less daemon, JSON logs to a file, its
status task, optionally the Redis state store and the InfluxDB exporter) trades the embedded simulated
market at speed=inf with the shipped model. A probe attached through `run_daemon(on_engine=...)` samples,
every `sample_s` of venue time and *between* batches (never inside tick-to-quote):

- process RSS (/proc/self/status VmRSS), asyncio task count, threads, open file descriptors and,
  optionally, the number of gc-tracked Python objects;
- tick-to-quote percentiles of the interval (the engine's histogram, diffed);
- every order message on the wire (actions the venue takes into a block, events it answers with),
  so the engine's order book-keeping can be checked against an independent count.

Per period (an hour by default) it reports those figures and the order accounting identities with
their residuals; at the end a trend (least-squares RSS slope over the second half, p99 first vs last
period), the venue's account vs the engine's, and pass/fail flags against thresholds stated in the
JSON. Nothing is hidden: a residual is reported as measured, with the identity it breaks.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flashmm.config import Config
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import (
    CancelAck,
    CancelOrder,
    CancelReject,
    Event,
    Fill,
    OrderAck,
    OrderReject,
    PlaceOrder,
)
from flashmm.core.engine import Engine
from flashmm.core.execution import OrderState
from flashmm.telemetry.histogram import LatencyHistogram
from flashmm.venues.sim import SimVenue

THRESHOLDS: dict[str, Any] = {
    "rss_slope_mb_per_h_max": 1.0,  # least squares over the second half of the run
    "p99_relative_change_max": 0.5,  # |p99 last period / p99 first period - 1|
    # transient tasks and sockets come and go (a Redis write, an HTTP flush); a leak accumulates
    "tasks_rule": "max asyncio tasks in the second half <= max in the first half",
    "fds_rule": "max open file descriptors in the second half <= max in the first half",
    "accounting_residual_max": 0,  # every identity exact, at every period end and after shutdown
    "open_orders_after_shutdown": 0,
    "position_difference_lots": 0,  # venue's record vs the engine's
}


# ============================================================== process figures ====================
def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB (Linux /proc; the benchmark needs it)."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) / 1024.0  # kB
    return {"rss_mb": round(out["VmRSS"], 2), "hwm_mb": round(out["VmHWM"], 2)}


def task_kinds() -> dict[str, int]:
    """The running loop's tasks by coroutine name (what a leak would be made of)."""
    kinds = Counter(getattr(t.get_coro(), "__qualname__", type(t.get_coro()).__name__) for t in asyncio.all_tasks())
    return dict(sorted(kinds.items()))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def interval_summary(now_counts: np.ndarray, prev_counts: np.ndarray, total_ns: int) -> dict[str, float]:
    """Percentiles (us) of the samples recorded between two copies of a histogram's counts. The
    interval's own min and max are not kept by the histogram: its lowest and highest non-empty bucket
    stand in (within the histogram's ~1.6 % precision)."""
    delta = now_counts - prev_counts
    n = int(delta.sum())
    if n == 0:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0}
    h = LatencyHistogram()
    h.counts = delta
    h.count = n
    h.total = total_ns
    nz = np.nonzero(delta)[0]
    probe = LatencyHistogram()  # bucket values of the extreme buckets, via the histogram's own mapping
    probe.counts[nz[0]] = probe.counts[nz[-1]] = 1
    probe.count, probe.min, probe.max = int(probe.counts.sum()), 0, 1 << 62
    h.min, h.max = int(probe.percentile(0)), int(probe.percentile(100))
    s = h.summary_us()
    return {k: s[k] for k in ("count", "p50", "p99", "p999", "max", "mean")}


def slope_per_hour(xs_s: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys against time, per hour; None with fewer than 3 points."""
    if len(xs_s) < 3:
        return None
    x = np.asarray(xs_s, dtype=np.float64) / 3600.0
    y = np.asarray(ys, dtype=np.float64)
    return float(np.polyfit(x, y, 1)[0])


# ============================================================== the wire =========================
@dataclass(slots=True)
class WireCounts:
    """Order messages as the venue saw them: actions taken into a block, events answered."""

    places: int = 0
    cancels: int = 0
    acks: int = 0
    rejects: int = 0
    cancel_acks_requested: int = 0  # answers to a cancel we sent
    cancel_acks_unrequested: int = 0  # the venue cancelling on its own (an unfilled market-order remainder)
    cancel_rejects: int = 0
    fills: int = 0
    fills_done: int = 0
    outstanding_cancels: Counter[int] = field(default_factory=Counter)  # client id -> cancels not yet answered

    def as_dict(self) -> dict[str, int]:
        return {"places": self.places, "cancels": self.cancels, "acks": self.acks, "rejects": self.rejects,
                "cancel_acks_requested": self.cancel_acks_requested,
                "cancel_acks_unrequested": self.cancel_acks_unrequested, "cancel_rejects": self.cancel_rejects,
                "fills": self.fills, "fills_done": self.fills_done,
                "cancels_unanswered": sum(self.outstanding_cancels.values())}


# ============================================================== accounting =========================
def _identity(name: str, lhs_label: str, lhs: int, rhs_label: str, rhs: int) -> dict[str, Any]:
    return {"name": name, "identity": f"{lhs_label} == {rhs_label}", "lhs": lhs, "rhs": rhs, "residual": lhs - rhs}


def accounting(engine: Engine, wire: WireCounts) -> dict[str, Any]:
    """The engine's order book-keeping (the OMS) against itself and against the wire, at this instant.

    OMS lifecycle (flashmm/core/execution.py): PENDING -> OPEN -> PARTIALLY_FILLED -> FILLED | CANCELLED,
    PENDING -> REJECTED; terminal states are exactly FILLED, CANCELLED and REJECTED. CANCELLED covers
    a confirmed cancel, a market order's unfilled remainder, and an order reconciliation found gone.
    Actions submitted but not yet taken into a block sit in the venue's queue and are counted apart.
    """
    c = engine.oms.counts
    open_orders = list(engine.oms.orders.values())
    open_pending = sum(1 for o in open_orders if o.state is OrderState.PENDING)
    open_acked = len(open_orders) - open_pending
    queued = _venue_queue(engine)
    queued_places = sum(1 for a in queued if isinstance(a, PlaceOrder))
    queued_cancels = sum(1 for a in queued if isinstance(a, CancelOrder))
    placed, acks = c["orders_placed"], c["acks"]
    filled, cancelled, rejected = c["orders_filled"], c["orders_cancelled"], c["orders_rejected"]
    counts = {
        "placed": placed, "acked": acks, "rejected": rejected, "cancel_sent": c["cancels_sent"],
        "cancel_acked": wire.cancel_acks_requested, "cancel_rejected": c["cancel_rejects"],
        "filled_complete": filled, "cancelled": cancelled, "open": len(open_orders),
        "open_pending": open_pending, "open_acked": open_acked, "queued_places": queued_places,
        "queued_cancels": queued_cancels, "fills": c["fills"], "rate_limited": c["rate_limited"],
        "overfill": c["overfill"], "reconcile_mismatches": c["reconcile_mismatches"],
        "unknown_ack": c["unknown_ack"], "unknown_reject": c["unknown_reject"],
        "unknown_cancel_ack": c["unknown_cancel_ack"], "unknown_fill": c["unknown_fill"],
    }
    ids = [
        _identity("placed_reached_venue", "oms placed", placed, "wire places + queued places",
                  wire.places + queued_places),
        _identity("venue_answered_every_place", "wire places", wire.places, "wire acks + wire rejects",
                  wire.acks + wire.rejects),
        _identity("placed_ends_somewhere", "oms placed", placed,
                  "filled + cancelled + rejected + open", filled + cancelled + rejected + len(open_orders)),
        _identity("placed_answered", "oms placed", placed, "acked + rejected + open pending",
                  acks + rejected + open_pending),
        _identity("acked_ends_somewhere", "acked", acks, "filled + cancelled + open acked",
                  filled + cancelled + open_acked),
        _identity("acks_known", "wire acks", wire.acks, "oms acks + unknown acks", acks + c["unknown_ack"]),
        _identity("rejects_known", "wire rejects", wire.rejects, "oms rejected + unknown rejects",
                  rejected + c["unknown_reject"]),
        _identity("cancels_reached_venue", "oms cancel sent", c["cancels_sent"],
                  "wire cancels + queued cancels", wire.cancels + queued_cancels),
        _identity("venue_answered_every_cancel", "wire cancels", wire.cancels,
                  "cancel acks (requested) + cancel rejects", wire.cancel_acks_requested + wire.cancel_rejects),
        _identity("cancel_rejects_known", "wire cancel rejects", wire.cancel_rejects, "oms cancel rejects",
                  c["cancel_rejects"]),
        _identity("cancelled_explained", "oms cancelled", cancelled,
                  "cancel acks (requested + venue's own) - unknown cancel acks",
                  wire.cancel_acks_requested + wire.cancel_acks_unrequested - c["unknown_cancel_ack"]),
        _identity("fills_known", "wire fills", wire.fills, "oms fills + unknown fills", c["fills"] + c["unknown_fill"]),
        _identity("fills_counted_by_engine", "wire fills", wire.fills, "engine fill counter",
                  engine.counters["fills"]),
        _identity("filled_complete", "oms filled", filled, "wire fills marked done", wire.fills_done),
    ]
    residual = sum(abs(i["residual"]) for i in ids)
    return {"counts": counts, "identities": ids, "total_abs_residual": residual,
            "broken": [i["name"] for i in ids if i["residual"]]}


def _venue_queue(engine: Engine) -> list[Any]:
    """Actions the simulated venue holds for its next block (submitted, not yet in a block)."""
    return list(engine.venue.market._pending)  # noqa: SLF001 - the sim's own queue; the soak is sim-only


def venue_vs_engine(engine: Engine, initial_funds: float) -> dict[str, Any]:
    """The venue's record of our account against the engine's: position, cash, open orders."""
    market = engine.venue.market
    state = market.account_state()
    pf = engine.portfolio
    venue_cash = market.cash_quote - initial_funds
    engine_cash = pf.cash_flow - pf.fees_paid
    return {
        "venue_position_lots": state.position_lots, "engine_position_lots": pf.position_lots,
        "position_difference_lots": state.position_lots - pf.position_lots,
        "venue_cash_change_usdc": round(venue_cash, 6), "engine_cash_change_usdc": round(engine_cash, 6),
        "cash_difference_usdc": round(venue_cash - engine_cash, 9),
        "venue_open_orders": len(state.open_orders), "engine_open_orders": len(engine.oms.orders),
        "venue_open_not_in_engine": sorted(set(state.open_orders) - set(engine.oms.orders))[:20],
        "engine_open_not_at_venue": sorted(set(engine.oms.orders) - set(state.open_orders))[:20],
    }


# ============================================================== the probe ========================
class SoakProbe:
    """Attached to the daemon's engine before it starts; samples between batches on venue time.

    It wraps two calls on the instances (never the classes): the venue's `next_batch`, to count the
    actions the venue takes into the block and the events it answers with, and the engine's
    `on_batch`, to sample after a batch is fully handled. Both run outside tick-to-quote, which the
    engine measures inside on_batch."""

    def __init__(self, duration_s: float, sample_s: float, period_s: float, gc_objects: bool = True) -> None:
        self.duration_ns = int(round(duration_s * NS_PER_S))
        self.sample_ns = int(round(sample_s * NS_PER_S))
        self.period_ns = int(round(period_s * NS_PER_S))
        self.gc_objects = gc_objects
        self.engine: Engine | None = None
        self.wire = WireCounts()
        self.samples: list[dict[str, Any]] = []
        self.periods: list[dict[str, Any]] = []
        self.end_state: dict[str, Any] = {}
        self._next_sample_ns = -1
        self._done = False
        self._wall0 = 0.0
        self._sample_prev: tuple[np.ndarray, int] | None = None
        self._period_prev: tuple[np.ndarray, int] | None = None
        self._period_wall0 = 0.0
        self._period_counts: dict[str, int] = {}
        self.at_attach: dict[str, float] = {}

    # ---- attachment ------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        if not isinstance(engine.venue, SimVenue):
            raise ValueError(f"the soak runs on the simulated venue, not {engine.venue.name!r}")
        self.engine = engine
        self.at_attach = proc_status()
        venue_next = engine.venue.next_batch
        engine_on_batch = engine.on_batch
        wire = self.wire
        market = engine.venue.market

        async def next_batch() -> list[Event] | None:
            for a in market._pending:  # noqa: SLF001 - what this block will take in
                if isinstance(a, PlaceOrder):
                    wire.places += 1
                elif isinstance(a, CancelOrder):
                    wire.cancels += 1
                    wire.outstanding_cancels[a.client_id] += 1
            batch = await venue_next()
            if batch:
                self._count_events(batch)
            return batch

        def on_batch(batch: list[Event]) -> None:
            if self._next_sample_ns < 0 and engine.start_ns >= 0:
                self._start()  # before the first batch: its quote cycle belongs to the first interval
            engine_on_batch(batch)
            if not self._done and self._next_sample_ns >= 0:
                self._maybe_sample()

        engine.venue.next_batch = next_batch  # type: ignore[method-assign]
        engine.on_batch = on_batch  # type: ignore[method-assign]

    def _count_events(self, batch: list[Event]) -> None:
        wire = self.wire
        for ev in batch:
            t = type(ev)
            if t is Fill:
                wire.fills += 1
                wire.fills_done += ev.done
            elif t is OrderAck:
                wire.acks += 1
            elif t is OrderReject:
                wire.rejects += 1
            elif t is CancelAck:
                n = wire.outstanding_cancels.get(ev.client_id, 0)
                if n:
                    wire.cancel_acks_requested += 1
                    self._answered(ev.client_id, n)
                else:
                    wire.cancel_acks_unrequested += 1
            elif t is CancelReject:
                wire.cancel_rejects += 1
                self._answered(ev.client_id, wire.outstanding_cancels.get(ev.client_id, 0))

    def _answered(self, client_id: int, n: int) -> None:
        if n <= 1:
            self.wire.outstanding_cancels.pop(client_id, None)  # bounded by cancels in flight
        else:
            self.wire.outstanding_cancels[client_id] = n - 1

    # ---- sampling ----------------------------------------------------------------------------------
    def _start(self) -> None:
        """The baselines, taken as the run starts (venue started, no batch handled yet)."""
        engine = self.engine
        assert engine is not None
        self._wall0 = self._period_wall0 = time.perf_counter()
        self._next_sample_ns = engine.start_ns + self.sample_ns
        base = (engine.tick_to_quote.counts.copy(), engine.tick_to_quote.total)
        self._sample_prev = self._period_prev = base
        self._period_counts = self._cumulative()

    def _maybe_sample(self) -> None:
        engine = self.engine
        assert engine is not None
        now = engine.clock.now_ns()
        if now < self._next_sample_ns:
            return
        self._next_sample_ns += self.sample_ns
        self.sample(now)

    def _cumulative(self) -> dict[str, int]:
        engine = self.engine
        assert engine is not None
        c = engine.oms.counts
        return {"quote_cycles": engine.tick_to_quote.count, "placed": c["orders_placed"], "acked": c["acks"],
                "rejected": c["orders_rejected"], "cancel_sent": c["cancels_sent"],
                "cancel_acked": self.wire.cancel_acks_requested, "cancel_rejected": c["cancel_rejects"],
                "filled_complete": c["orders_filled"], "cancelled": c["orders_cancelled"], "fills": c["fills"],
                "blocks": engine.counters["batches"], "events": engine.counters["events"]}

    def sample(self, now: int) -> None:
        engine = self.engine
        assert engine is not None and self._sample_prev is not None and self._period_prev is not None
        sim_ns = now - engine.start_ns
        t2q = engine.tick_to_quote
        counts, total = t2q.counts.copy(), t2q.total
        interval = interval_summary(counts, self._sample_prev[0], total - self._sample_prev[1])
        self._sample_prev = (counts, total)
        wall = time.perf_counter()
        s: dict[str, Any] = {
            "sim_s": round(sim_ns / NS_PER_S, 3), "wall_s": round(wall - self._wall0, 3), **proc_status(),
            "tasks": len(asyncio.all_tasks()), "threads": threading.active_count(), "fds": open_fds(),
            "quote_cycles": t2q.count, "t2q_p50_us": interval["p50"], "t2q_p99_us": interval["p99"],
            "t2q_count": interval["count"], "open_orders": len(engine.oms.orders),
            "position_lots": engine.portfolio.position_lots, "fills": engine.counters["fills"],
            "journal_fills": len(engine.portfolio.fills), "mode": engine.current_mode.value,
        }
        if self.gc_objects:
            s["gc_objects"] = len(gc.get_objects())
        self.samples.append(s)
        if sim_ns % self.period_ns == 0 or sim_ns >= self.duration_ns:
            self._close_period(now, sim_ns, counts, total, s)
        if sim_ns >= self.duration_ns:
            self._done = True

    def _close_period(self, now: int, sim_ns: int, counts: np.ndarray, total: int, s: dict[str, Any]) -> None:
        engine = self.engine
        assert engine is not None and self._period_prev is not None
        lat = interval_summary(counts, self._period_prev[0], total - self._period_prev[1])
        self._period_prev = (counts, total)
        cum = self._cumulative()
        delta = {k: cum[k] - self._period_counts[k] for k in cum}
        self._period_counts = cum
        wall = time.perf_counter()
        acc = accounting(engine, self.wire)
        self.periods.append({
            "period": len(self.periods) + 1, "sim_end_s": round(sim_ns / NS_PER_S, 3),
            "wall_s": round(wall - self._period_wall0, 3), "rss_mb": s["rss_mb"], "hwm_mb": s["hwm_mb"],
            "tasks": s["tasks"], "task_kinds": task_kinds(), "threads": s["threads"], "fds": s["fds"],
            "gc_objects": s.get("gc_objects"),
            "tick_to_quote_us": lat, "in_period": delta, "open_orders_at_end": len(engine.oms.orders),
            "position_lots": engine.portfolio.position_lots, "mode": s["mode"],
            "breakers_not_ok": {b.name: b.state for b in engine.risk.views() if b.state != "ok"},
            "accounting_residual": acc["total_abs_residual"], "identities_broken": acc["broken"],
        })
        self._period_wall0 = wall

    def finish(self, initial_funds: float) -> None:
        """After the daemon has shut down (orders cancelled): the final accounting and account check."""
        engine = self.engine
        assert engine is not None
        self.end_state = {"accounting": accounting(engine, self.wire), "wire": self.wire.as_dict(),
                          "venue_vs_engine": venue_vs_engine(engine, initial_funds),
                          "engine_mode": engine.current_mode.value, "engine_fault": engine.fault,
                          **proc_status()}


# ============================================================== the trend and the verdict ==========
def trend(probe: SoakProbe, duration_s: float) -> dict[str, Any]:
    half = [s for s in probe.samples if s["sim_s"] >= duration_s / 2.0]
    first = [s for s in probe.samples if s["sim_s"] < duration_s / 2.0] or probe.samples[:1]
    xs = [s["sim_s"] for s in half]
    rss_slope = slope_per_hour(xs, [s["rss_mb"] for s in half])
    obj_slope = slope_per_hour(xs, [s["gc_objects"] for s in half]) if half and "gc_objects" in half[0] else None
    journal_slope = slope_per_hour(xs, [s["journal_fills"] for s in half])
    p = probe.periods
    p99_first = p[0]["tick_to_quote_us"]["p99"] if p else None
    p99_last = p[-1]["tick_to_quote_us"]["p99"] if p else None
    rel = (p99_last / p99_first - 1.0) if p99_first else None
    tasks = sorted({s["tasks"] for s in probe.samples})
    fds = sorted({s["fds"] for s in probe.samples})
    threads = sorted({s["threads"] for s in probe.samples})
    return {
        "second_half_samples": len(half),
        "rss_slope_mb_per_h": None if rss_slope is None else round(rss_slope, 4),
        "gc_objects_slope_per_h": None if obj_slope is None else round(obj_slope, 1),
        "fills_journal_slope_per_h": None if journal_slope is None else round(journal_slope, 1),
        "rss_first_sample_mb": probe.samples[0]["rss_mb"] if probe.samples else None,
        "rss_last_sample_mb": probe.samples[-1]["rss_mb"] if probe.samples else None,
        "rss_max_mb": max((s["rss_mb"] for s in probe.samples), default=None),
        "p99_first_period_us": p99_first, "p99_last_period_us": p99_last,
        "p99_relative_change": None if rel is None else round(rel, 4),
        "p99_per_period_us": [x["tick_to_quote_us"]["p99"] for x in p],
        "task_counts_seen": tasks, "fd_counts_seen": fds, "thread_counts_seen": threads,
        "tasks_max_first_half": max((s["tasks"] for s in first), default=0),
        "tasks_max_second_half": max((s["tasks"] for s in half), default=0),
        "fds_max_first_half": max((s["fds"] for s in first), default=0),
        "fds_max_second_half": max((s["fds"] for s in half), default=0),
    }


def verdict(tr: dict[str, Any], probe: SoakProbe, completed: bool) -> dict[str, bool]:
    t = THRESHOLDS
    end = probe.end_state
    vve = end["venue_vs_engine"]
    flags = {
        "completed": completed,
        "rss_slope_ok": tr["rss_slope_mb_per_h"] is not None and tr["rss_slope_mb_per_h"] < t["rss_slope_mb_per_h_max"],
        "tasks_no_growth": tr["tasks_max_second_half"] <= tr["tasks_max_first_half"],
        "fds_no_growth": tr["fds_max_second_half"] <= tr["fds_max_first_half"],
        "p99_stable": tr["p99_relative_change"] is not None
                      and abs(tr["p99_relative_change"]) <= t["p99_relative_change_max"],
        "every_order_accounted_for": end["accounting"]["total_abs_residual"] <= t["accounting_residual_max"]
                                     and all(x["accounting_residual"] == 0 for x in probe.periods),
        "no_orders_left_open": vve["engine_open_orders"] == 0 and vve["venue_open_orders"] == 0,
        "position_matches_venue": vve["position_difference_lots"] == t["position_difference_lots"],
    }
    flags["passed"] = all(flags.values())
    return flags


# ============================================================== side services ======================
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisService:
    """A private redis-server on a free loopback port, no persistence, in its own directory."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("--redis needs redis-server on PATH")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis  # only this option needs it

        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        info = self.client.info("memory")
        return {"used_memory_mb": round(info["used_memory"] / 2**20, 2), "keys": self.client.dbsize()}

    def stop(self) -> None:
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_SINK = r"""
import http.server, json, sys
n = {"requests": 0, "lines": 0, "bytes": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n["requests"] += 1; n["lines"] += body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
        n["bytes"] += len(body)
        self.send_response(204); self.end_headers()
    def do_GET(self):
        b = json.dumps(n).encode(); self.send_response(200); self.send_header("Content-Length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class InfluxSink:
    """A loopback HTTP endpoint in a child process that accepts InfluxDB v1 writes and counts them, so
    the daemon's exporter thread and publisher task run as in production without an InfluxDB."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the metrics sink did not start")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stats(self) -> dict[str, Any]:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/", timeout=5) as r:
            return orjson.loads(r.read())

    def stop(self) -> None:
        _terminate(self.proc)


# ============================================================== the run ==========================
def soak_config(cfg: Config, seed: int, model: str, workdir: Path, redis_url: str | None,
                influx_url: str | None) -> Config:
    """The daemon's configuration for the soak: the sim, the given seed and model, logs and audit in
    `workdir` (at the configured level: fills are logged at info, as in production)."""
    update = {
        "run": cfg.run.model_copy(update={"venue": "sim", "seed": seed}),
        "model": cfg.model.model_copy(update={"path": model}),
        "logging": cfg.logging.model_copy(update={"file": str(workdir / "flashmm.log"),
                                                  "audit_file": str(workdir / "audit.jsonl")}),
        "redis": cfg.redis.model_copy(update={"enabled": redis_url is not None,
                                              **({"url": redis_url} if redis_url else {})}),
        "influx": cfg.influx.model_copy(update={"enabled": influx_url is not None,
                                                **({"url": influx_url, "api": "v1"} if influx_url else {})}),
        # the control socket is served as in production (in the workdir, or a short temporary folder when the
        # workdir's path is too long for a Unix socket); the soak writes its own summary
        "control": cfg.control.model_copy(update={"socket": _socket_path(workdir), "summary_dir": ""}),
    }
    return cfg.model_copy(update=update)


def _socket_path(workdir: Path) -> str:
    path = workdir / "control.sock"
    if len(str(path).encode()) <= 100:
        return str(path)
    import tempfile

    return str(Path(tempfile.mkdtemp(prefix="fmsoak", dir="/tmp")) / "control.sock")


def run_soak(cfg: Config, hours: float, json_path: str | Path | None, *, seed: int = 7, sample_s: float = 60.0,
             period_s: float = 3600.0, model: str = "", redis: bool = False, influx: bool = False,
             gc_objects: bool = True, log_dir: str | Path | None = None, command: str = "") -> dict[str, Any]:
    """Run the daemon for `hours` of venue time at full speed and return (and write) the soak report.
    `model`: "" = the shipped model, "none" = model-free, else a path."""
    from flashmm.ops.daemon import run_daemon

    duration_s = hours * 3600.0
    check_grid(duration_s, sample_s, period_s, cfg.sim.block_ms)
    tmp = tempfile.TemporaryDirectory(prefix="flashmm-soak-")
    workdir = Path(log_dir) if log_dir else Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    services: list[Any] = []
    try:
        rs = RedisService(Path(tmp.name)) if redis else None
        if rs:
            services.append(rs)
        sink = InfluxSink() if influx else None
        if sink:
            services.append(sink)
        run_cfg = soak_config(cfg, seed, model, workdir, rs.url if rs else None, sink.url if sink else None)
        probe = SoakProbe(duration_s, sample_s, period_s, gc_objects)
        before = proc_status()
        t0, cpu0 = time.perf_counter(), time.process_time()
        rc = asyncio.run(run_daemon(run_cfg, duration_s, str(workdir / "summary.json"), float("inf"),
                                    on_engine=probe.attach))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if probe.engine is None:
            raise RuntimeError("the daemon never built its engine")
        probe.finish(run_cfg.sim.our_account_funds_usdc)
        service_stats = {"redis": rs.stats() if rs else None, "influx_sink": sink.stats() if sink else None}
        logs = {p.name: p.stat().st_size for p in sorted(workdir.glob("flashmm.log*"))}
    finally:
        for svc in services:
            svc.stop()
        _release_log_file()
        tmp.cleanup()
    result = _report(probe, run_cfg, rc, duration_s, sample_s, period_s, wall, cpu, before, service_stats, logs,
                     command, log_dir)
    if json_path:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def check_grid(duration_s: float, sample_s: float, period_s: float, block_ms: int) -> None:
    """Samples fall on block boundaries, periods on samples, and the run ends on a period boundary."""
    def ms(x: float) -> int:
        return int(round(x * 1000))

    if duration_s <= 0 or sample_s <= 0 or period_s <= 0:
        raise ValueError("hours, sample_s and period_s must be positive")
    if ms(sample_s) % block_ms:
        raise ValueError(f"sample_s={sample_s:g} is not a multiple of the {block_ms} ms block")
    if ms(period_s) % ms(sample_s):
        raise ValueError(f"period_s={period_s:g} is not a multiple of sample_s={sample_s:g}")
    if ms(duration_s) % ms(period_s):
        raise ValueError(f"the run ({duration_s:g} s) is not a whole number of periods of {period_s:g} s")


def _release_log_file() -> None:
    """The daemon leaves structlog writing to its log file: point it back at stderr (errors only)."""
    from flashmm.telemetry.logging import configure_logging

    configure_logging("error")


def _report(probe: SoakProbe, cfg: Config, rc: int, duration_s: float, sample_s: float, period_s: float,
            wall: float, cpu: float, before: dict[str, float], services: dict[str, Any], logs: dict[str, int],
            command: str, log_dir: str | Path | None) -> dict[str, Any]:
    engine = probe.engine
    assert engine is not None
    sim_done = probe.samples[-1]["sim_s"] if probe.samples else 0.0
    completed = rc == 0 and probe._done and not engine.fault
    tr = trend(probe, duration_s)
    t2q = engine.tick_to_quote.summary_us()
    return {
        "benchmark": "soak",
        "command": command,
        "path": "flashmm.ops.daemon.run_daemon (the console-less production loop) on the embedded sim at speed=inf",
        "venue": "sim", "seed": cfg.run.seed, "model": engine.predictor.name,
        "redis_state_store": cfg.redis.enabled, "influx_exporter": cfg.influx.enabled,
        "log_level": cfg.logging.level, "log_files_bytes": logs, "log_dir": str(log_dir) if log_dir else None,
        "simulated_hours_requested": round(duration_s / 3600.0, 4), "simulated_s_completed": sim_done,
        "sample_s": sample_s, "period_s": period_s,
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "speedup_vs_real_time": round(duration_s / wall, 1),
        "daemon_exit_code": rc,
        "rss_before_daemon_mb": before["rss_mb"], "rss_at_engine_built_mb": probe.at_attach.get("rss_mb"),
        "rss_after_shutdown_mb": probe.end_state["rss_mb"], "hwm_mb": probe.end_state["hwm_mb"],
        "tick_to_quote_us_whole_run": {k: t2q[k] for k in ("count", "p50", "p99", "p999", "max", "mean")},
        "trend": tr,
        "thresholds": THRESHOLDS,
        "flags": verdict(tr, probe, completed),
        "periods": probe.periods,
        "end": probe.end_state,
        "summary": {k: v for k, v in engine.summary().items()
                    if k in ("mode", "fills", "orders_placed", "orders_cancelled", "orders_filled", "orders_rejected",
                             "open_orders", "pnl_usdc", "position_base", "spread_improvement_pct",
                             "max_abs_inventory_pct", "model_errors", "breakers")},
        "services": services,
        "samples": probe.samples,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "note": "samples are taken between batches on venue time (never inside tick-to-quote); per-sample and "
                "per-period latency percentiles are the engine's histogram diffed; wall time includes the "
                "simulated market itself. The fills journal (Portfolio.fills) keeps every fill in memory by "
                "design; its growth is reported as fills_journal_slope_per_h.",
    }
