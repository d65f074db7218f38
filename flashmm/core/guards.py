"""The engine's guards against an operator's bad day: another client on the account, a venue that stops
answering, a sink that cannot write, a state store that lost its journal.

Each turns into a breaker, never an engine fault:
- `account` (PAUSE, held until an operator resumes): orders of this account that this process did not send
  appeared while it runs (`AccountState.foreign`), or the instance lease (flashmm/ops/lease.py) was lost.
  Those orders are reported once and never cancelled: they are someone else's.
- `feed` (PAUSE): the venue did not answer an account query (a transport error or a timeout: a stalled
  node, a restarted one). Reconciliation is retried with backoff; quoting resumes after the first answer
  and the breaker's cooldown.
- `io` (ALERT): a log, audit or summary sink is failing (flashmm/telemetry/failsafe.py); trading goes on.
- `state` (ALERT, held until an operator resumes): the Redis journal's identity was lost (a wipe, a restart
  without persistence, a foreign writer) and was re-journalled from memory as a new epoch.

The engine holds one `Guards` and calls it from `reconcile`, `_update_breakers` and `resume`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import AccountState, OrderType, Side
from flashmm.telemetry.failsafe import SINKS

if TYPE_CHECKING:
    from flashmm.core.engine import Engine

RECONCILE_RETRY_MIN_S = 0.5  # first retry of a reconciliation the venue did not answer; doubles up to the interval
RECONCILE_INTERVAL_S = 5.0  # the engine's reconciliation interval


class Guards:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.instance: Any = None  # flashmm.ops.lease.InstanceGuard: `.problem` ("" while held), `.acknowledge()`
        self.account_problem = ""  # foreign orders seen; held until an operator resumes
        self.foreign_known: set[int] = set()  # foreign orders reported (and, after a resume, accepted)
        self.venue_down = ""  # why the venue did not answer the last account query ("" once it did)
        self.venue_down_since_ns = 0
        self.venue_failures = 0
        self._io_version = -1
        self._io_problem = ""

    # ---- reconciliation ------------------------------------------------------------------------------
    def venue_unreachable(self, exc: BaseException) -> None:
        """An account query failed in transport: pull quotes (feed breaker), retry with backoff."""
        e = self.engine
        now = e.clock.now_ns()
        reason = f"venue not answering: {type(exc).__name__}: {exc}"[:300]
        self.venue_failures += 1
        if not self.venue_down:
            self.venue_down_since_ns = now
            e.log.warning("venue_unreachable", error=reason)
            e._event("venue", reason)
        self.venue_down = reason
        if e.risk.breakers["feed"].trip(reason, now):
            e._event("breaker", "feed tripped: venue not answering")
        e._cancel_now()
        retry_s = min(RECONCILE_INTERVAL_S, RECONCILE_RETRY_MIN_S * 2 ** min(self.venue_failures - 1, 8))
        e._last_reconcile_ns = now - int((RECONCILE_INTERVAL_S - retry_s) * NS_PER_S)
        e.counters["reconcile_failures"] = e.counters.get("reconcile_failures", 0) + 1

    def venue_answered(self) -> None:
        if self.venue_down:
            e = self.engine
            down_s = (e.clock.now_ns() - self.venue_down_since_ns) / NS_PER_S
            e.log.info("venue_answering", down_s=round(down_s, 3), failures=self.venue_failures)
            e._event("venue", f"venue answering again after {down_s:.1f}s")
        self.venue_down = ""
        self.venue_failures = 0

    def split_foreign(self, state: AccountState) -> AccountState:
        """The venue's record without the orders another client placed; those trip `account` once each, as
        does any other activity of the account this process did not cause."""
        if state.foreign_activity:
            e = self.engine
            self.account_problem = (f"{state.foreign_activity}: another client uses this account; paused "
                                    f"(resume acknowledges)")
            e.counters["foreign_activity"] = e.counters.get("foreign_activity", 0) + 1
            e.log.error("foreign_activity", detail=state.foreign_activity, action="paused")
            e._event("venue", f"ALERT: {state.foreign_activity}: paused")
        if not state.foreign:
            return state
        new = sorted(c for c in state.foreign if c not in self.foreign_known and c in state.open_orders)
        if new:
            e = self.engine
            self.foreign_known.update(new)
            desc = ", ".join(_describe_order(e, state.open_orders[c]) for c in new[:5])
            more = f" (+{len(new) - 5} more)" if len(new) > 5 else ""
            self.account_problem = (f"{len(new)} order(s) of this account not sent by this process: {desc}{more}: "
                                    f"another client trades it; paused, not cancelled (resume acknowledges)")
            e.counters["foreign_orders"] = e.counters.get("foreign_orders", 0) + len(new)
            e.log.error("foreign_orders", orders=[_describe_order(e, state.open_orders[c]) for c in new],
                        action="paused; not cancelled")
            e._event("venue", f"ALERT: {len(new)} order(s) of this account sent by another client: paused")
        mine = {c: o for c, o in state.open_orders.items() if c not in state.foreign}
        return AccountState(state.position_lots, mine)

    # ---- breakers ------------------------------------------------------------------------------------
    def update_breakers(self, now: int) -> None:
        e = self.engine
        b = e.risk.breakers
        if getattr(e.venue, "reconcile_soon", False):  # another client on the account: look now, not in 5 s
            e._last_reconcile_ns = -(1 << 62)
        if SINKS.version != self._io_version:
            self._io_version = SINKS.version
            self._io_problem = SINKS.problem()
        e._set(b["io"], bool(self._io_problem), self._io_problem[:300], now)
        lease = self.instance.problem if self.instance is not None else ""
        account = "; ".join(p for p in (lease, self.account_problem) if p)
        e._set(b["account"], bool(account), account[:300], now)

    def acknowledge(self, now: int) -> list[str]:
        """An operator resumed: the foreign orders seen so far are accepted, a lost journal is acknowledged.
        Returns the breakers that were held for an operator."""
        e = self.engine
        held = []
        if self.account_problem:
            self.account_problem = ""
            held.append("account")
        if self.instance is not None:
            self.instance.acknowledge()
        st = e.state_store
        if st is not None and getattr(st, "journal_alert", ""):
            st.acknowledge()
            held.append("state")
        for name in held:
            breaker = e.risk.breakers[name]
            if breaker.state == "tripped":
                breaker.clear(now)
        return held

    # ---- exit --------------------------------------------------------------------------------------
    def unconfirmed(self) -> list[str]:
        """What shutdown could not confirm: each order still believed open, one line each."""
        e = self.engine
        return [f"order {o.client_id} {o.side.name} {o.remaining} lots @ {e._px(o.price_ticks)}"
                f"{' (market)' if o.order_type is OrderType.MARKET else ''}: {o.state.value}, "
                f"{'cancel sent, not confirmed' if o.cancel_requested else 'no cancel confirmed'}"
                for o in e.oms.orders.values()]


def _describe_order(e: Engine, o: Any) -> str:
    side = "BUY" if o.side is Side.BUY else "SELL"
    return f"{o.client_id} {side} {o.remaining_lots} @ {e._px(o.price_ticks)}"
