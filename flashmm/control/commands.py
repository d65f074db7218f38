"""The engine's control interface: snapshots out, commands in.

`LocalControl` is what every operator surface talks to: the in-process console calls it directly, the
control socket (`flashmm/control/server.py`) calls it for attached consoles and `flashmm ctl`. A command is
checked here once for all of them: unknown names and bad arguments get an error, commands that make no
sense in the current mode (after a kill, while stopping) are refused with the reason, and everything an
operator asked, done or refused, is written to the audit log with who and why.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import islice
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flashmm.control import params
from flashmm.control.view import (
    T2Q_TARGET_US,
    OperatorView,
    Recorder,
    breaker_limits,
    flatten_preview,
    order_rows,
    pnl_split,
    rate_view,
    units_of,
)
from flashmm.core.engine import EngineSnapshot

if TYPE_CHECKING:
    from flashmm.core.engine import Engine

# name -> the arguments it takes (name -> type); the socket checks requests against this
COMMANDS: dict[str, dict[str, tuple[type, ...]]] = {
    "status": {},
    "health": {},
    "snapshot": {"depth": (int,)},
    "params": {},
    "pause": {},
    "resume": {},
    "toggle_pause": {},
    "widen": {},
    "tighten": {},
    "flatten": {},
    "kill": {},
    "set": {"key": (str,), "value": (str, int, float, bool)},
    "save": {"path": (str,)},
    "stop": {},
}
TRADING = ("pause", "resume", "toggle_pause", "widen", "tighten", "flatten", "kill")


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    result: str  # what was done, or why not
    data: Any = None
    kind: str = ""  # why not ok: unknown_command | bad_args | refused | failed


class LocalControl:
    """Snapshots and commands for one engine in this process."""

    def __init__(self, engine: Engine, where: str = "") -> None:
        self.engine = engine
        self.start_cfg = engine.cfg
        self.recorder = Recorder(engine)
        self.where = where  # the control socket's path, shown in the console
        self.clients = 0  # connections on the control socket (the server keeps it)
        self.stopping = ""  # set by the shutdown path
        self.stop_report: dict[str, Any] = {}
        self.request_stop: Any = None  # the shutdown path's request(cause, who), when there is one
        self._version = 0
        self._params_key: tuple[int, float] | None = None
        self._params: tuple[params.ParamRow, ...] = ()
        self._params_framed: tuple[params.ParamRow, ...] | None = None  # params in the last socket frame

    # ---- snapshots ------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.engine.version + self._version + self.recorder.changes

    def changed(self) -> None:
        """Something outside the engine changed (clients, stopping): the next pull repaints."""
        self._version += 1

    def tick(self) -> None:
        self.recorder.tick()

    def refusals(self) -> dict[str, str]:
        """Commands that make no sense now, with the reason shown to the operator."""
        e = self.engine
        if self.stopping:
            why = f"stopping ({self.stopping})"
            return {c: why for c in (*TRADING, "set")}
        mode = e.current_mode.value
        if mode in ("FAULTED", "STOPPED", "STARTING"):
            why = f"engine {mode.lower()}"
            return {c: why for c in (*TRADING, "set")}
        out: dict[str, str] = {}
        if e.killed:
            why = "killed: trading is disabled until restart"
            out.update({"pause": why, "resume": why, "toggle_pause": why, "widen": "killed: no quotes to widen",
                        "tighten": "killed: no quotes to tighten", "kill": "already killed",
                        "flatten": "killed: the kill already flattens" if e.portfolio.position_lots
                        else "killed and flat: nothing to flatten"})
            return out
        if e.flatten_reason:
            out["flatten"] = "already flattening"
        elif e.portfolio.position_lots == 0:
            out["flatten"] = "flat: nothing to flatten"
        c = e.cfg.controls
        if e.widen >= c.widen_max - 1e-9:
            out["widen"] = f"already at the cap x{c.widen_max:g} (controls.widen_max)"
        if e.widen <= 1.0:
            out["tighten"] = "not widened: nothing to tighten"
        return out

    def params(self) -> tuple[params.ParamRow, ...]:
        e = self.engine
        key = (id(e.cfg), e.widen)
        if self._params_key != key:  # rebuilt only when a parameter changed
            self._params_key, self._params = key, params.rows(e.cfg, self.start_cfg, e.widen)
        return self._params

    def seqs(self) -> dict[str, int]:
        """The number of the newest item of each series (what a frame built now brings a console up to)."""
        rec = self.recorder
        return {"fills": rec.fill_seq, "events": rec.event_seq, "done": rec.done_seq, "samples": rec.sample_seq,
                "markouts": rec.markout_seq}

    def snapshot(self, depth: int = 10, since: dict[str, int] | None = None) -> EngineSnapshot:
        """The engine's snapshot with the operator's view in extra["operator"]. With `since` (the socket's
        frames) each series carries only its items numbered after since[series] (and the fills whose markout
        was filled in after since["markouts"]), for a console that has the rest and merges by number."""
        e = self.engine
        rec = self.recorder
        rec.tick()
        snap = e.snapshot(depth)
        age = rec.last_data_age_s()
        market, ours = e.spread_history[-1] if e.spread_history else (math.nan, math.nan)
        mid = e.book.mid_ticks() if e.book.two_sided() else 0.0
        _, realised, unrealised = pnl_split(e, mid)

        def after(items: Any, seq_of: Any, key: str) -> tuple[Any, ...]:
            if since is None:
                return tuple(items)
            n = 0
            for x in reversed(items):  # newest last: count back to the first one the console lacks
                if seq_of(x) <= since.get(key, 0):
                    break
                n += 1
            return tuple(islice(items, len(items) - n, None))

        fills = after(rec.fills, lambda f: f.seq, "fills")
        if since is not None:  # and every fill whose markout was filled in since
            last_markout = since.get("markouts", 0)
            updated = set()
            for ms, fs in reversed(rec.resolved):  # numbered in order: only the newest few are news
                if ms <= last_markout:
                    break
                updated.add(fs)
            if updated:
                first = min(updated)
                fills = tuple(f for f in rec.fills if f.seq >= first and (f.seq in updated or f.seq > since.get("fills", 0)))
        params_now = self.params()
        if since is not None and params_now is self._params_framed:
            params_now = ()  # unchanged since the last frame: the console keeps what it has
        elif since is not None:
            self._params_framed = params_now
        view = OperatorView(
            full=since is None, log_seq=rec.event_seq, units=units_of(e), orders=order_rows(e),
            orders_done=after(rec.done, lambda o: o.seq, "done"), fills=fills, limits=breaker_limits(e, age),
            rate=rate_view(e, rec), flatten=flatten_preview(e), params=params_now,
            history=after(rec.samples, lambda x: x.seq, "samples"),
            realised=realised, unrealised=unrealised, market_spread_bps=market, our_spread_bps=ours,
            market_spread_avg_bps=e.spreads.market_bps, our_spread_avg_bps=e.spreads.ours_bps,
            last_data_age_s=age, t2q_target_us=T2Q_TARGET_US, clients=self.clients, control=self.where,
            stopping=self.stopping, stop_report=self.stop_report, refused=tuple(sorted(self.refusals().items())))
        log = tuple(line for _, line in after(rec.events, lambda x: x[0], "events"))
        extra = {**snap.extra, "operator": view}
        if since is None:
            return dataclasses.replace(snap, version=self.version, log=log, extra=extra)
        # frames for the socket carry only what the screen draws from the engine's own histories
        return dataclasses.replace(snap, version=self.version, log=log, pnl_history=(),
                                   confidence_history=snap.confidence_history[-120:], extra=extra)

    def status(self) -> dict[str, Any]:
        """The figures `flashmm ctl status` prints (JSON-able)."""
        e = self.engine
        self.recorder.tick()
        mid = e.book.mid_ticks() if e.book.two_sided() else 0.0
        total, realised, unrealised = pnl_split(e, mid)
        inst = e.instrument
        t2q = e.tick_to_quote.summary_us()
        market, ours = e.spread_history[-1] if e.spread_history else (math.nan, math.nan)
        modified = {r.key: r.value for r in self.params() if r.modified}
        return {
            "venue": e.venue.name, "symbol": inst.symbol, "mode": e.current_mode.value, "widen": round(e.widen, 4),
            "stopping": self.stopping, "uptime_s": round((e.clock.now_ns() - e.start_ns) / 1e9, 1) if e.start_ns >= 0 else 0.0,
            "mid": e._px(mid) if mid else None, "position_base": str(inst.lots_to_qty(e.portfolio.position_lots)),
            "base": inst.base, "quote": inst.quote,
            "position_quote": round(e.portfolio.exposure(mid), 4) if mid else 0.0,
            "pnl": round(total, 4),
            "realised": round(realised, 4), "unrealised": round(unrealised, 4),
            "open_orders": len(e.oms.orders), "fills": e.counters.get("fills", 0),
            "orders_placed": e.oms.counts.get("orders_placed", 0),
            "our_spread_bps": None if math.isnan(ours) else round(ours, 3),
            "market_spread_bps": None if math.isnan(market) else round(market, 3),
            "t2q_p50_us": t2q["p50"], "t2q_p99_us": t2q["p99"],
            "breakers": {b.name: {"state": b.state, "reason": b.reason} for b in e.risk.views() if b.state != "ok"},
            "modified": modified, "last_data_age_s": round(self.recorder.last_data_age_s(), 2),
            "clients": self.clients, "fault": e.fault, "version": self.version,
        }

    def health(self) -> tuple[bool, str]:
        """Healthy when the engine trades or is paused by an operator and market data flows; one line why."""
        e = self.engine
        mode = e.current_mode.value
        age = self.recorder.last_data_age_s()
        stale = e.cfg.control.health_stale_s
        connected, link = e.venue.link()
        if self.stopping:
            return False, f"stopping: {self.stopping}"
        if mode in ("FAULTED", "STOPPED", "STARTING"):
            return False, f"{mode}{': ' + e.fault if e.fault else ''}"
        if e.killed:
            return False, "KILLED: trading disabled until restart"
        if not connected:
            return False, f"venue disconnected: {link}"
        if age > stale:
            return False, f"{mode}: no market data for {age:.1f}s (> {stale:g}s)"
        return True, f"{mode}: market data {age:.1f}s ago, {len(e.oms.orders)} open orders"

    # ---- commands --------------------------------------------------------------------------------------
    def command(self, name: Any, args: Any = None, who: str = "operator", why: str = "") -> Reply:
        """Run one command now (between batches: the next quote cycle sees its effect)."""
        if not isinstance(name, str) or name not in COMMANDS:
            shown = name if isinstance(name, str) and len(name) <= 40 else type(name).__name__
            return Reply(False, f"unknown command {shown!r} (commands: {', '.join(COMMANDS)})", kind="unknown_command")
        args = {} if args is None else args
        if not isinstance(args, dict):
            return Reply(False, f"{name}: arguments must be an object", kind="bad_args")
        spec = COMMANDS[name]
        for k, v in args.items():
            if k not in spec:
                return Reply(False, f"{name}: unknown argument {str(k)[:40]!r}", kind="bad_args")
            if (isinstance(v, bool) and bool not in spec[k]) or not isinstance(v, spec[k]):
                return Reply(False, f"{name}: {k} must be {' or '.join(t.__name__ for t in spec[k])}", kind="bad_args")
            if isinstance(v, str) and len(v) > 4096:
                return Reply(False, f"{name}: {k} is too long", kind="bad_args")
        missing = [k for k in spec if k not in args and not (name == "snapshot" and k == "depth")]
        if missing:
            return Reply(False, f"{name}: missing {', '.join(missing)}", kind="bad_args")
        e = self.engine
        if name == "status":
            return Reply(True, e.current_mode.value, self.status())
        if name == "health":
            ok, line = self.health()
            return Reply(ok, line, {"healthy": ok})
        if name == "snapshot":
            depth = args.get("depth", 10)
            if not 1 <= depth <= 50:
                return Reply(False, "snapshot: depth must be 1..50", kind="bad_args")
            return Reply(True, "snapshot", self.snapshot(depth))
        if name == "params":
            return Reply(True, "params", self.params())
        refused = self.refusals()
        if name in refused:
            result = f"refused: {refused[name]}"
            e._control(name, who, why, result)
            return Reply(False, result, kind="refused")
        if name == "stop":
            if self.request_stop is None:
                return Reply(False, "stop: this engine has no shutdown path to run", kind="refused")
            if self.stopping:
                return Reply(True, f"already stopping ({self.stopping})")
            self.request_stop(f"stop command ({who})", who, why)
            return Reply(True, "stopping: cancelling every order, then the summary")
        if name == "set":
            return self._set(args["key"], args["value"], who, why)
        if name == "save":
            try:
                path = params.save(e.cfg, self.start_cfg, args["path"], e.widen)
            except OSError as exc:
                return Reply(False, f"save: {args['path']}: {exc.strerror or exc}", kind="failed")
            return Reply(True, e._control("save", who, why, f"parameters saved to {path}"))
        method = {"pause": e.pause, "resume": e.resume, "toggle_pause": e.toggle_pause, "widen": e.widen_spread,
                  "tighten": e.tighten, "flatten": e.flatten, "kill": e.kill}[name]
        return Reply(True, method(who, why))

    def _set(self, key: str, value: Any, who: str, why: str) -> Reply:
        e = self.engine
        before = params.current(e.cfg, e.widen, key) if key in dict(params.LIVE_KEYS) else None
        try:
            cfg, widen = params.validate(e.cfg, e.widen, key, value)
        except params.ParamError as exc:
            result = f"refused: {exc}"
            e._control("set", who, why, result)
            return Reply(False, result, kind="bad_args")
        after = params.current(cfg, widen, key)
        if cfg is not e.cfg:
            e.reconfigure(cfg)
        e.widen = widen
        e.version += 1
        return Reply(True, e._control("set", who, why, f"{key} {before!r} -> {after!r} (next quote cycle)"),
                     {"key": key, "before": before, "after": after})
