"""Metrics export to InfluxDB: line protocol from the engine's metrics, a bounded queue, a background flusher.

`metric_points` turns the engine's run summary (the metric names of DESIGN.md) into line protocol, one
measurement per metric family; `SCHEMA` lists every measurement and field written, and is the single
source of truth the Grafana dashboard and alert rules are checked against.

`InfluxExporter` owns a bounded in-memory queue and one daemon thread. The engine side only calls
`enqueue`, which never blocks on the network and never raises: when the queue is full the oldest points
are dropped and counted. The flusher writes batches over the v2 API (influxdb-client, org/bucket/token)
or the v1 `/write` API (InfluxDB 1.x and compatible stores); a failed write keeps its points at the
front of the queue, is counted, and is retried with exponential backoff until the server is back: no
restart is needed. A batch the server rejects as malformed (HTTP 400/422) is dropped and counted, so one
bad point cannot stall the queue forever.

`publish_metrics` is the asyncio task that builds points from the engine every `interval_s` and
enqueues them; it is the exporter's only coupling to the engine.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable

from flashmm.config import InfluxConfig
from flashmm.core.engine import STAGES
from flashmm.core.risk import BREAKER_ACTIONS
from flashmm.telemetry.histogram import LatencyHistogram
from flashmm.telemetry.logging import get_logger, register_secret

if TYPE_CHECKING:
    import numpy as np

    from flashmm.core.engine import Engine

BREAKERS: tuple[str, ...] = tuple(BREAKER_ACTIONS)
BREAKER_STATE_CODE = {"ok": 0, "cooling_down": 1, "tripped": 2}
REGIME_CODE = {"calm": 0, "trending": 1, "volatile": 2}

# measurement -> fields. Everything the exporter writes is listed here, and nothing else is written.
SCHEMA: dict[str, tuple[str, ...]] = {
    # USDC; total = spread_capture + inventory + fees
    "pnl": ("total", "spread_capture", "inventory", "fees"),
    # time-weighted over the run while both sides were quoted
    # spread_improvement_pct is absent where the market's spread is under two ticks (core/metrics.py)
    "spread": ("spread_improvement_pct", "market_spread_bps", "our_spread_bps", "market_spread_ticks"),
    # what the quoter works with (Engine.strategy_state): regime 0 calm / 1 trending / 2 volatile
    "strategy": ("alpha_bps", "half_spread_bps", "adverse_term_bps", "adverse_selection_estimate_bps",
                 "intensity_a_per_s", "intensity_k_per_bps", "sigma_bps", "regime", "has_edge"),
    # our fills, per fill, bps (core/metrics.py): absent until a fill has reached the horizon
    "fill_quality": ("effective_spread_bps", "realised_spread_5s_bps", "adverse_selection_5s_bps",
                     "markout_1s_bps", "markout_5s_bps", "markout_30s_bps", "time_at_touch_pct",
                     "taker_share_pct", "orders_per_fill", "post_only_rejects"),
    # counters are cumulative since the start of the run
    "fills": ("fill_rate", "fills", "orders_placed", "orders_cancelled", "orders_rejected"),
    # microseconds. p50/p95/p99: since the start of the run (as in the summary and the console);
    # *_interval: over the points' interval only (absent when no quote cycle ran in it)
    "latency": ("tick_to_quote_p50_us", "tick_to_quote_p95_us", "tick_to_quote_p99_us",
                "tick_to_quote_p95_us_interval", "tick_to_quote_p99_us_interval",
                *(f"{s}_p99_us" for s in STAGES)),
    # absent while there is no prediction / no scored prediction
    "model": ("confidence", "hit_rate"),
    # inventory_pct: signed % of capital; position_utilisation_pct: |position| / position limit x 100
    "inventory": ("inventory_pct", "position_utilisation_pct", "position_usdc"),
    # 0 ok, 1 cooling_down, 2 tripped; any_tripped 0/1
    "breakers": (*BREAKERS, "any_tripped"),
    # the exporter's own counters (cumulative since the exporter started)
    "exporter": ("dropped_points", "queued_points", "write_errors", "rejected_points"),
}
SCHEMA_FIELDS: dict[str, frozenset[str]] = {m: frozenset(f) for m, f in SCHEMA.items()}

# integer fields (line protocol `i`) per measurement; every other field is a float. A field keeps one type.
INT_FIELDS: dict[str, frozenset[str]] = {
    "fills": frozenset({"fills", "orders_placed", "orders_cancelled", "orders_rejected"}),
    "breakers": frozenset(SCHEMA["breakers"]),
    "exporter": frozenset(SCHEMA["exporter"]),
}

TAG_KEYS = ("run_id", "venue", "symbol")

_log = get_logger("influx")


# ============================================================== line protocol ======================
def _escape_key(s: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces are escaped; line breaks,
    which line protocol cannot carry, become spaces."""
    s = s.replace("\r", " ").replace("\n", " ")
    return s.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(s: str) -> str:
    s = s.replace("\r", " ").replace("\n", " ")
    return s.replace(",", r"\,").replace(" ", r"\ ")


def _tag_set(tags: dict[str, Any]) -> str:
    """`,k=v,...` sorted by key (the order InfluxDB prefers); empty values are left out (not allowed)."""
    parts = [f"{_escape_key(str(k))}={_escape_key(str(v))}" for k, v in sorted(tags.items())
             if v is not None and str(v) != ""]
    return "," + ",".join(parts) if parts else ""


def _field_value(value: Any, integer: bool) -> str | None:
    if value is None:
        return None
    if integer:
        return f"{int(value)}i"
    v = float(value)
    if not math.isfinite(v):
        return None  # line protocol has no NaN/inf
    return repr(v)


def format_line(measurement: str, tags: dict[str, Any], fields: dict[str, Any], ts_ns: int) -> str | None:
    """One point in line protocol, or None when no field has a value."""
    ints = INT_FIELDS.get(measurement, frozenset())
    fs = []
    for k, v in fields.items():
        fv = _field_value(v, k in ints)
        if fv is not None:
            fs.append(f"{_escape_key(k)}={fv}")
    if not fs:
        return None
    return f"{_escape_measurement(measurement)}{_tag_set(tags)} {','.join(fs)} {int(ts_ns)}"


def _interval_percentiles(hist: LatencyHistogram, prev_counts: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """p95/p99 (us) of the samples recorded since `prev_counts` (a copy of hist.counts), and the new copy."""
    counts = hist.counts.copy()
    delta = counts - prev_counts
    n = int(delta.sum())
    if n == 0:
        return {}, counts
    h = LatencyHistogram()
    h.counts = delta
    h.count = n
    h.min, h.max = 0, hist.max  # bounds for the bucket midpoints (the interval's own are not kept)
    return {"tick_to_quote_p95_us_interval": round(h.percentile(95) / 1e3, 2),
            "tick_to_quote_p99_us_interval": round(h.percentile(99) / 1e3, 2)}, counts


def metric_points(engine: "Engine", ts_ns: int, tags: dict[str, Any], *, exporter: "InfluxExporter | None" = None,
                  interval_latency: dict[str, float] | None = None,
                  summary: dict[str, Any] | None = None) -> list[str]:
    """Line protocol for the engine's metrics at `ts_ns` (the venue clock unless the caller says otherwise).

    Values come from `engine.summary()` (the metric names of DESIGN.md), plus the tick-to-quote p95, the
    last prediction's confidence and the position limit, which the summary does not carry. Fields without
    a value (no prediction yet, NaN) are left out. `exporter` adds the `exporter` measurement;
    `interval_latency` the per-interval tick-to-quote percentiles (see publish_metrics).
    """
    s = engine.summary() if summary is None else summary
    t2q = engine.tick_to_quote.summary_us()
    pb = s["pnl_breakdown"]
    pos = float(s["position_usdc"])
    limit = float(engine.cfg.risk.max_position_usdc)
    pred = engine.last_prediction
    states = {name: b["state"] for name, b in s["breakers"].items()}
    st = s["strategy_state"]
    families: dict[str, dict[str, Any]] = {
        "pnl": {"total": s["pnl_usdc"], "spread_capture": pb["spread_capture"], "inventory": pb["inventory"],
                "fees": pb["fees"]},
        "spread": {"spread_improvement_pct": s["spread_improvement_pct"], "market_spread_bps": s["market_spread_bps"],
                   "our_spread_bps": s["our_spread_bps"], "market_spread_ticks": s["market_spread_ticks"]},
        "strategy": {k: st[k] for k in ("alpha_bps", "half_spread_bps", "adverse_term_bps",
                                         "adverse_selection_estimate_bps", "intensity_a_per_s",
                                         "intensity_k_per_bps", "sigma_bps")}
                    | {"regime": REGIME_CODE.get(st["regime"], 0), "has_edge": int(st["has_edge"])},
        "fill_quality": {"effective_spread_bps": s["effective_spread_bps"],
                         "realised_spread_5s_bps": s["realised_spread_bps"]["5s"],
                         "adverse_selection_5s_bps": s["adverse_selection_bps"],
                         **{f"markout_{h}_bps": s["markout_bps"][h] for h in ("1s", "5s", "30s")},
                         "time_at_touch_pct": s["time_at_touch_pct"], "taker_share_pct": s["taker_share_pct"],
                         "orders_per_fill": s["orders_per_fill"], "post_only_rejects": s["post_only_rejects"]},
        "fills": {"fill_rate": s["fill_rate"], "fills": s["fills"], "orders_placed": s["orders_placed"],
                  "orders_cancelled": s["orders_cancelled"], "orders_rejected": s["orders_rejected"]},
        "latency": {"tick_to_quote_p50_us": t2q["p50"], "tick_to_quote_p95_us": t2q["p95"],
                    "tick_to_quote_p99_us": t2q["p99"], **(interval_latency or {}),
                    **{f"{st}_p99_us": v["p99"] for st, v in s["stage_latency_us"].items()
                       if f"{st}_p99_us" in SCHEMA_FIELDS["latency"]}},
        "model": {"confidence": pred.confidence if pred is not None else None, "hit_rate": s["prediction_hit_rate"]},
        "inventory": {"inventory_pct": s["inventory_pct"],
                      "position_utilisation_pct": abs(pos) / limit * 100.0 if limit > 0 else 0.0,
                      "position_usdc": pos},
        "breakers": {**{name: BREAKER_STATE_CODE.get(state, 2) for name, state in states.items() if name in BREAKERS},
                     "any_tripped": int(any(st == "tripped" for st in states.values()))},
    }
    if exporter is not None:
        st = exporter.stats()
        families["exporter"] = {k: st[k] for k in SCHEMA["exporter"]}
    lines = []
    for measurement, fields in families.items():
        line = format_line(measurement, tags, fields, ts_ns)
        if line is not None:
            lines.append(line)
    return lines


def default_tags(engine: "Engine", run_id: str) -> dict[str, str]:
    return {"run_id": run_id, "venue": engine.venue.name, "symbol": engine.instrument.symbol}


# ============================================================== exporter ===========================
class WriteRejected(Exception):
    """The server refused the batch as malformed (HTTP 400/422): retrying cannot help."""


class InfluxExporter:
    """Bounded queue + background flusher. `enqueue` is the only call made from the engine's loop."""

    INITIAL_BACKOFF_S = 0.25

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        register_secret(cfg.token)
        register_secret(cfg.password)
        self._q: deque[str] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_points = 0  # oldest points dropped because the queue was full
        self.rejected_points = 0  # points in batches the server refused as malformed
        self.write_errors = 0  # failed write attempts (each retried)
        self.written_points = 0
        self.writes = 0
        self.last_error = ""
        self.backoff_s = 0.0
        self._outage_since: float | None = None
        self._deadline = 0.0  # set by stop(): until when the final flush may run
        self._client: Any = None
        self._write_api: Any = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no env proxies
        base = cfg.url.rstrip("/")
        if cfg.api == "v1":
            q = urllib.parse.urlencode({"db": cfg.database, "precision": "ns"})
            self._v1_url = f"{base}/write?{q}"
            self._v1_headers = {"Content-Type": "text/plain; charset=utf-8"}
            if cfg.username:
                cred = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
                self._v1_headers["Authorization"] = f"Basic {cred}"

    def __repr__(self) -> str:  # never the token or password
        return (f"InfluxExporter(api={self.cfg.api!r}, url={self.cfg.url!r}, queued={len(self._q)}, "
                f"dropped={self.dropped_points}, write_errors={self.write_errors})")

    # ---------------------------------------------------------------- engine side (never blocks) ----
    def enqueue(self, lines: Iterable[str]) -> None:
        """Add points; beyond queue_max_points the oldest are dropped and counted. Never raises."""
        try:
            with self._lock:
                q = self._q
                q.extend(lines)
                over = len(q) - self.cfg.queue_max_points
                if over > 0:
                    for _ in range(over):
                        q.popleft()
                    self.dropped_points += over
            self._wake.set()
        except Exception:  # the hot path must never see an exporter problem
            pass

    def stats(self) -> dict[str, Any]:
        return {"api": self.cfg.api, "url": self.cfg.url, "queued_points": len(self._q),
                "dropped_points": self.dropped_points, "rejected_points": self.rejected_points,
                "write_errors": self.write_errors, "written_points": self.written_points, "writes": self.writes,
                "backoff_s": self.backoff_s, "last_error": self.last_error,
                "running": self._thread is not None and self._thread.is_alive()}

    # ---------------------------------------------------------------- lifecycle ---------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="influx-exporter", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Flush what can be written within `timeout_s` (one attempt per batch, no backoff) and join.
        Returns True when the queue is empty afterwards."""
        self._deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 1.0)
        else:
            self._drain(self._deadline)
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = self._write_api = None
        return not self._q

    # ---------------------------------------------------------------- flusher thread ----------------
    def _take(self) -> list[str]:
        with self._lock:
            n = min(self.cfg.batch_size, len(self._q))
            return [self._q.popleft() for _ in range(n)]

    def _requeue(self, batch: list[str]) -> None:
        """Put a failed batch back at the front (it is older than anything queued), within the bound."""
        with self._lock:
            room = self.cfg.queue_max_points - len(self._q)
            if room < len(batch):
                drop = len(batch) - max(room, 0)
                self.dropped_points += drop
                batch = batch[drop:]
            self._q.extendleft(reversed(batch))

    def _run(self) -> None:
        idle_wait = max(0.05, min(1.0, self.cfg.interval_s))
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                self._wake.wait(idle_wait)
                self._wake.clear()
                continue
            if self._attempt(batch, self.cfg.timeout_s):
                self.backoff_s = 0.0
                continue
            self.backoff_s = min(self.cfg.retry_max_backoff_s, max(self.INITIAL_BACKOFF_S, self.backoff_s * 2))
            self._stop.wait(self.backoff_s)
        self._drain(self._deadline)

    def _drain(self, deadline: float) -> None:
        while self._q:
            left = deadline - time.monotonic()
            if left <= 0.05:
                break
            batch = self._take()
            if not self._attempt(batch, min(self.cfg.timeout_s, left)):
                break

    def _attempt(self, batch: list[str], timeout_s: float) -> bool:
        """One write. True: written (or refused as malformed and dropped); False: re-queued for a retry."""
        body = "\n".join(batch).encode()
        try:
            self._write(body, timeout_s)
        except WriteRejected as exc:
            self.rejected_points += len(batch)
            self.write_errors += 1
            self.last_error = self._clean(str(exc))
            _log.warning("influx_batch_rejected", points=len(batch), error=self.last_error)
            return True
        except Exception as exc:
            self.write_errors += 1
            self.last_error = self._clean(f"{type(exc).__name__}: {exc}")
            self._requeue(batch)
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                _log.warning("influx_write_failed", error=self.last_error, queued=len(self._q),
                             action="points kept; retrying with backoff")
            return False
        self.writes += 1
        self.written_points += len(batch)
        if self._outage_since is not None:
            _log.info("influx_recovered", outage_s=round(time.monotonic() - self._outage_since, 1),
                      dropped_points=self.dropped_points, write_errors=self.write_errors)
            self._outage_since = None
        return True

    def _clean(self, text: str) -> str:
        for secret in (self.cfg.token, self.cfg.password):
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text.replace("\n", " ")[:300]

    def _write(self, body: bytes, timeout_s: float) -> None:
        if self.cfg.api == "v1":
            self._write_v1(body, timeout_s)
        else:
            self._write_v2(body, timeout_s)

    def _write_v1(self, body: bytes, timeout_s: float) -> None:
        req = urllib.request.Request(self._v1_url, data=body, headers=self._v1_headers, method="POST")
        try:
            with self._opener.open(req, timeout=timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            if exc.code in (400, 422):
                raise WriteRejected(f"HTTP {exc.code}: {detail}") from None
            raise RuntimeError(f"HTTP {exc.code}: {detail}") from None

    def _write_v2(self, body: bytes, timeout_s: float) -> None:
        if self._write_api is None:
            from influxdb_client import InfluxDBClient  # imported only when the v2 exporter writes
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(url=self.cfg.url, token=self.cfg.token, org=self.cfg.org,
                                          timeout=int(self.cfg.timeout_s * 1000))
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=body, write_precision="ns")
        except ApiException as exc:
            detail = (exc.body or b"")
            detail = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
            if exc.status in (400, 422):
                raise WriteRejected(f"HTTP {exc.status}: {detail[:200]}") from None
            raise RuntimeError(f"HTTP {exc.status}: {detail[:200]}") from None


# ============================================================== publisher ==========================
async def publish_metrics(engine: "Engine", exporter: InfluxExporter, interval_s: float, tags: dict[str, Any],
                          clock: Callable[[], int] | None = None) -> None:
    """Every `interval_s` wall seconds: points from the engine, enqueued (never blocks; never raises).
    Timestamps come from the engine's venue clock, or from `clock` (e.g. time.time_ns) when given. The
    embedded sim and replays run on a simulated clock (the sim starts at 2025-01-01T00:00Z), so points on
    it are not "now" for Grafana's relative time ranges and the "down" alert: a daemon on those venues
    should pass clock=time.time_ns.
    On cancellation one last set of points is enqueued, so exporter.stop() can flush the final state."""
    now_ns = clock or engine.clock.now_ns
    loop = asyncio.get_running_loop()
    prev_counts = engine.tick_to_quote.counts.copy()  # the first interval starts now, not at the first point
    next_t = loop.time()
    warned = False

    def publish() -> None:
        nonlocal prev_counts, warned
        try:
            window, prev_counts = _interval_percentiles(engine.tick_to_quote, prev_counts)
            exporter.enqueue(metric_points(engine, now_ns(), tags, exporter=exporter, interval_latency=window))
        except Exception as exc:  # a metrics bug must not stop trading; say so once
            if not warned:
                warned = True
                _log.warning("influx_publish_failed", error=f"{type(exc).__name__}: {exc}")

    try:
        while True:
            next_t += interval_s
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if loop.time() - next_t > interval_s:  # fell behind (suspended loop): do not burst
                next_t = loop.time()
            publish()
    except asyncio.CancelledError:
        publish()
        raise
