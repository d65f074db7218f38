"""Risk: RiskManager.room and trim (order-size cap, resting-exposure cap including cancel-pending lots, deeper
levels cut first), the Breaker state machine, and the TokenBucket in venue time."""

from __future__ import annotations

from flashmm.config import RiskConfig, default_instrument
from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import Side
from flashmm.core.risk import Breaker, BreakerAction, BreakerState, RiskManager, TokenBucket
from flashmm.core.strategy import QuoteLevel

MID = 4000.0  # 0.40 USDC a lot: 160 USDC = 400 lots, 400 USDC = 1000 lots


def _risk(max_order_usdc: float = 160.0, max_position_usdc: float = 400.0) -> RiskManager:
    return RiskManager(RiskConfig(max_order_usdc=max_order_usdc, max_position_usdc=max_position_usdc),
                       default_instrument())


def _by_key(levels: list[QuoteLevel]) -> dict[tuple[Side, int], int]:
    return {(lv.side, lv.level): lv.lots for lv in levels}


def _ladder(bid_lots=(500, 300, 300), ask_lots=(500, 300, 300)) -> tuple[QuoteLevel, ...]:
    out = []
    for i, lots in enumerate(bid_lots):
        out.append(QuoteLevel(Side.BUY, i, 3999 - i, lots))
    for i, lots in enumerate(ask_lots):
        out.append(QuoteLevel(Side.SELL, i, 4001 + i, lots))
    return tuple(out)


def test_lots_for_usdc():
    r = _risk()
    assert r.lots_for_usdc(160.0, MID) == 400
    assert r.lots_for_usdc(400.0, MID) == 1000


def test_room_is_what_may_rest_per_side_within_the_position_limit():
    r = _risk()  # max position 1000 lots
    # long 300: bids may add 1000 - 300 = 700, asks 1000 + 300 = 1300
    assert r.room(300, MID) == {Side.BUY: 700, Side.SELL: 1300}
    assert r.room(-300, MID) == {Side.BUY: 1300, Side.SELL: 700}
    # cancel-pending lots can still fill: they use up room
    assert r.room(300, MID, locked_bid_lots=250, locked_ask_lots=1200) == {Side.BUY: 450, Side.SELL: 100}
    # at or beyond the limit: no room on the side that adds, never negative
    assert r.room(1000, MID) == {Side.BUY: 0, Side.SELL: 2000}
    assert r.room(1200, MID)[Side.BUY] == 0
    assert r.room(-1000, MID, locked_bid_lots=2500)[Side.BUY] == 0


def test_trim_caps_each_order_at_max_order_size():
    r = _risk(max_order_usdc=160.0, max_position_usdc=100_000.0)
    out = r.trim(_ladder(), MID, r.room(0, MID))
    assert _by_key(out)[(Side.BUY, 0)] == 400 and _by_key(out)[(Side.SELL, 0)] == 400
    assert _by_key(out)[(Side.BUY, 1)] == 300  # under the cap: untouched
    assert r.trimmed_orders == 2
    trimmed = [lv for lv in out if lv.level == 0][0]
    assert trimmed.price_ticks == 3999  # only the size changes


def test_trim_caps_resting_exposure_deeper_levels_first():
    r = _risk()  # max order 400 lots, max position 1000 lots
    # long 300: bids may add at most 1000 - 300 = 700 lots in total; asks 1000 + 300 = 1300
    # bid 0: min(500, 400) = 400 (room 300); bid 1: 300 (room 0); bid 2: cut entirely
    levels = tuple(reversed(_ladder()))  # input order must not matter: level order decides
    room = r.room(300, MID)
    out = r.trim(levels, MID, room)
    got = _by_key(out)
    assert got == {(Side.BUY, 0): 400, (Side.BUY, 1): 300, (Side.SELL, 0): 400, (Side.SELL, 1): 300,
                   (Side.SELL, 2): 300}
    assert sum(v for (s, _), v in got.items() if s is Side.BUY) + 300 <= 1000
    assert r.trimmed_orders == 3  # bid 0, bid 2, ask 0
    assert room == {Side.BUY: 700, Side.SELL: 1300}  # the caller's room is not consumed


def test_trim_counts_cancel_pending_lots_against_the_limit():
    r = _risk()
    # long 300, 250 bid lots still resting while their cancel is pending: room = 1000 - 300 - 250 = 450
    # bid 0: 400 (room 50); bid 1: 50; bid 2: none
    out = r.trim(_ladder(), MID, r.room(300, MID, locked_bid_lots=250, locked_ask_lots=1200))
    got = _by_key(out)
    assert got[(Side.BUY, 0)] == 400 and got[(Side.BUY, 1)] == 50 and (Side.BUY, 2) not in got
    # asks: room = 1000 + 300 - 1200 = 100: ask 0 gets 100, the rest nothing
    assert got[(Side.SELL, 0)] == 100 and (Side.SELL, 1) not in got and (Side.SELL, 2) not in got


def test_trim_at_or_beyond_the_limit_quotes_only_the_reducing_side():
    r = _risk()
    out = r.trim(_ladder(), MID, r.room(1000, MID))
    assert out and all(lv.side is Side.SELL for lv in out)
    out = r.trim(_ladder(), MID, r.room(1200, MID))
    assert out and all(lv.side is Side.SELL for lv in out)
    out = r.trim(_ladder(), MID, r.room(-1000, MID))
    assert out and all(lv.side is Side.BUY for lv in out)


def test_breaker_ok_tripped_cooling_down_ok():
    b = Breaker("feed", BreakerAction.PAUSE, cooldown_s=10.0)
    assert b.state is BreakerState.OK and not b.active and b.trips == 0
    assert b.trip("book stale", 1 * NS_PER_S)
    assert b.state is BreakerState.TRIPPED and b.active and b.trips == 1 and b.since_ns == NS_PER_S
    # re-trip while tripped: not a new trip, reason updated, since unchanged
    assert not b.trip("still stale", 2 * NS_PER_S)
    assert b.trips == 1 and b.reason == "still stale" and b.since_ns == NS_PER_S
    assert b.clear(3 * NS_PER_S)
    assert b.state is BreakerState.COOLING_DOWN and b.active
    assert not b.clear(13 * NS_PER_S - 1)  # 1 ns short of the 10 s cooldown
    assert b.state is BreakerState.COOLING_DOWN
    assert b.clear(13 * NS_PER_S)
    assert b.state is BreakerState.OK and not b.active and b.reason == ""
    assert not b.clear(14 * NS_PER_S)  # nothing to clear
    assert b.trip("again", 20 * NS_PER_S) and b.trips == 2
    view = b.view()
    assert (view.name, view.action, view.state, view.trips) == ("feed", "pause", "tripped", 2)


def test_breaker_trip_while_cooling_down_is_a_new_trip():
    b = Breaker("latency", BreakerAction.WIDEN, cooldown_s=5.0)
    b.trip("slow", 0)
    b.clear(NS_PER_S)
    assert b.trip("slow again", 2 * NS_PER_S)
    assert b.state is BreakerState.TRIPPED and b.trips == 2 and b.since_ns == 2 * NS_PER_S


def test_breaker_without_cooldown_clears_straight_to_ok():
    b = Breaker("model", BreakerAction.FALLBACK, cooldown_s=0.0)
    b.trip("no model", 0)
    assert b.clear(1)
    assert b.state is BreakerState.OK and b.reason == ""


def test_risk_manager_lists_active_breakers_by_action():
    r = _risk()
    assert r.active(BreakerAction.PAUSE) == []
    r.breakers["drawdown"].trip("dd", 0)
    assert [b.name for b in r.active(BreakerAction.PAUSE)] == ["drawdown"]
    assert r.active(BreakerAction.KILL) == []
    # the quote cycle's one-pass question: the same answer as the listing, for any set of actions
    for actions in [(a,) for a in BreakerAction] + [(BreakerAction.PAUSE, BreakerAction.KILL), ()]:
        assert r.any_active(actions) == any(r.active(a) for a in actions), actions
    r.breakers["drawdown"].clear(1)  # cooling down: still restricting
    assert r.any_active((BreakerAction.PAUSE,)) and r.active(BreakerAction.PAUSE)


def test_token_bucket_burst_then_refill_at_the_rate_in_venue_time():
    bucket = TokenBucket(rate_per_s=2.0, burst=3)
    t0 = 1_000 * NS_PER_S
    assert [bucket.take(t0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(t0 + NS_PER_S // 4)  # 0.5 token accrued
    assert bucket.take(t0 + NS_PER_S // 2 + 1)  # 1 token after 0.5 s at 2/s
    assert not bucket.take(t0 + NS_PER_S // 2 + 1)
    # a long pause refills only up to the burst
    t1 = t0 + 100 * NS_PER_S
    assert [bucket.take(t1) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_takes_several_tokens_at_once():
    bucket = TokenBucket(rate_per_s=1.0, burst=5)
    assert bucket.take(0, n=4)
    assert not bucket.take(0, n=2)  # one left
    assert bucket.take(0, n=1)
    assert bucket.take(3 * NS_PER_S, n=3)
