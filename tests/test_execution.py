"""OrderManager: desired quotes -> place/cancel actions (refresh tolerance, refresh time, room, rate
limit), the order lifecycle state machine, and reconciliation with the venue's record."""

from __future__ import annotations

import pytest

from flashmm.core.clock import NS_PER_S
from flashmm.core.domain import AccountState, CancelOrder, OrderType, PlaceOrder, Side, VenueOrder
from flashmm.core.execution import InvalidTransition, ManagedOrder, OrderManager, OrderState
from flashmm.core.strategy import QuoteLevel

T0 = 1_000 * NS_PER_S
B, S = Side.BUY, Side.SELL


def _oms(burst: int = 100, rate: float = 100.0, start: int = 1) -> OrderManager:
    return OrderManager(refresh_tolerance_bps=2.5, refresh_tolerance_size_pct=20.0, order_refresh_time_s=30.0,
                        max_orders_per_s=rate, order_burst=burst, client_id_start=start)


def _q(side: Side, level: int, price: int, lots: int = 100) -> QuoteLevel:
    return QuoteLevel(side, level, price, lots)


def _two_sided(bid: int = 3999, ask: int = 4001, lots: int = 100) -> list[QuoteLevel]:
    return [_q(B, 0, bid, lots), _q(S, 0, ask, lots), _q(B, 1, bid - 1, lots), _q(S, 1, ask + 1, lots)]


def _placed(oms: OrderManager, desired: list[QuoteLevel], now: int = T0) -> list[PlaceOrder]:
    actions = oms.sync(desired, now, bps_per_tick=2.5)
    assert all(isinstance(a, PlaceOrder) for a in actions)
    for a in actions:
        oms.on_ack(a.client_id, 10_000 + a.client_id)
    return actions


# ---- sync ----------------------------------------------------------------------------------------


def test_sync_places_every_missing_level_with_increasing_client_ids():
    oms = _oms(start=100)
    actions = oms.sync(_two_sided(), T0, bps_per_tick=2.5)
    assert actions == [
        PlaceOrder(100, B, 3999, 100, OrderType.LIMIT, post_only=True),
        PlaceOrder(101, S, 4001, 100, OrderType.LIMIT, post_only=True),
        PlaceOrder(102, B, 3998, 100, OrderType.LIMIT, post_only=True),
        PlaceOrder(103, S, 4002, 100, OrderType.LIMIT, post_only=True),
    ]
    assert {cid: (o.side, o.level, o.state) for cid, o in oms.orders.items()} == {
        100: (B, 0, OrderState.PENDING), 101: (S, 0, OrderState.PENDING),
        102: (B, 1, OrderState.PENDING), 103: (S, 1, OrderState.PENDING),
    }
    assert oms.counts["orders_placed"] == 4


def test_sync_keeps_orders_within_refresh_tolerance():
    oms = _oms()
    _placed(oms, _two_sided())
    assert oms.sync(_two_sided(), T0 + NS_PER_S, bps_per_tick=2.5) == []
    # one tick away (tolerance 1) and 15 % larger (tolerance 20 %): still no action
    assert oms.sync(_two_sided(bid=4000, ask=4002, lots=115), T0 + 2 * NS_PER_S, bps_per_tick=2.5) == []
    assert sorted(oms.orders) == [1, 2, 3, 4]


def test_sync_replaces_an_order_whose_price_moved_beyond_tolerance_cancel_first():
    oms = _oms()
    _placed(oms, _two_sided())
    desired = _two_sided()
    desired[0] = _q(B, 0, 3997)  # 2 ticks from the resting 3999
    actions = oms.sync(desired, T0 + NS_PER_S, bps_per_tick=2.5)
    assert actions == [CancelOrder(1), PlaceOrder(5, B, 3997, 100, OrderType.LIMIT, post_only=True)]
    assert oms.orders[1].cancel_requested and oms.orders[1].state is OrderState.OPEN
    assert oms.locked_lots(B) == 100 and oms.locked_lots(S) == 0
    # the cancel-pending order is neither kept nor cancelled again
    assert oms.sync(desired, T0 + 2 * NS_PER_S, bps_per_tick=2.5) == []


def test_sync_replaces_an_order_whose_size_moved_beyond_tolerance():
    oms = _oms()
    _placed(oms, [_q(B, 0, 3999, 100)])
    actions = oms.sync([_q(B, 0, 3999, 130)], T0 + NS_PER_S, bps_per_tick=2.5)  # 30 lots off, tolerance 20 % of 130 = 26
    assert actions == [CancelOrder(1), PlaceOrder(2, B, 3999, 130, OrderType.LIMIT, post_only=True)]


def test_sync_replaces_an_order_older_than_the_refresh_time():
    oms = _oms()
    _placed(oms, [_q(B, 0, 3999)])
    assert oms.sync([_q(B, 0, 3999)], T0 + 30 * NS_PER_S - 1, bps_per_tick=2.5) == []
    actions = oms.sync([_q(B, 0, 3999)], T0 + 30 * NS_PER_S, bps_per_tick=2.5)
    assert actions == [CancelOrder(1), PlaceOrder(2, B, 3999, 100, OrderType.LIMIT, post_only=True)]


def test_sync_cancels_levels_no_longer_wanted():
    oms = _oms()
    _placed(oms, _two_sided())
    actions = oms.sync([_q(B, 0, 3999), _q(S, 0, 4001)], T0 + NS_PER_S, bps_per_tick=2.5)
    assert sorted(a.client_id for a in actions) == [3, 4]
    assert all(isinstance(a, CancelOrder) for a in actions)


def test_sync_room_caps_new_kept_and_cancelling_orders_closest_level_first():
    oms = _oms()
    # room 150 bid lots: level 0 gets 100, level 1 the remaining 50; asks uncapped within 1000
    actions = oms.sync(_two_sided(), T0, room={B: 150, S: 1000}, bps_per_tick=2.5)
    assert [(a.side, a.lots) for a in actions] == [(B, 100), (S, 100), (B, 50), (S, 100)]
    for a in actions:
        oms.on_ack(a.client_id, a.client_id)
    # a kept order larger than the room now allowed is cancelled; until the venue confirms, the cancelled
    # orders can still fill, so they use up the room and nothing new is placed in the same breath
    actions = oms.sync([_q(B, 0, 3999)], T0 + NS_PER_S, room={B: 60, S: 1000}, bps_per_tick=2.5)
    assert all(isinstance(a, CancelOrder) for a in actions)
    assert {a.client_id for a in actions} == {1, 2, 3, 4}
    for a in actions:
        oms.on_cancel_ack(a.client_id)
    # confirmed: now the order goes back at the room
    actions = oms.sync([_q(B, 0, 3999)], T0 + 2 * NS_PER_S, room={B: 60, S: 1000}, bps_per_tick=2.5)
    assert [(p.side, oms.orders[p.client_id].level, p.lots) for p in actions] == [(B, 0, 60)]
    # no room at all: nothing placed
    oms2 = _oms()
    assert oms2.sync([_q(B, 0, 3999)], T0, room={B: 0, S: 0}) == []


def test_rate_limit_defers_placements_beyond_the_burst():
    oms = _oms(burst=2, rate=1.0)
    actions = oms.sync(_two_sided(), T0, bps_per_tick=2.5)
    assert [a.client_id for a in actions] == [1, 2]  # the two level-0 orders
    assert oms.counts["rate_limited"] == 2
    assert oms.sync(_two_sided(), T0, bps_per_tick=2.5) == []  # no tokens yet: still deferred
    assert oms.counts["rate_limited"] == 4
    actions = oms.sync(_two_sided(), T0 + 2 * NS_PER_S, bps_per_tick=2.5)  # 2 tokens after 2 s at 1/s
    assert [(a.client_id, a.side) for a in actions] == [(3, B), (4, S)]
    assert len(oms.orders) == 4


def test_market_orders_skip_the_rate_limit_and_are_left_alone_by_sync_and_cancel_all():
    oms = _oms(burst=1, rate=0.001)
    oms.sync([_q(B, 0, 3999)], T0, bps_per_tick=2.5)
    flatten = oms.market_order(S, 500, 3900, T0)
    assert flatten == PlaceOrder(2, S, 3900, 500, OrderType.MARKET)
    assert oms.orders[2].level == -1
    assert oms.sync([], T0, bps_per_tick=2.5) == [CancelOrder(1)]
    assert oms.cancel_all() == []  # order 1 already cancel-pending, the market order is not cancellable


# ---- lifecycle --------------------------------------------------------------------------------------


def test_lifecycle_pending_open_partially_filled_filled():
    oms = _oms()
    (place,) = oms.sync([_q(B, 0, 3999, 100)], T0, bps_per_tick=2.5)
    o = oms.orders[place.client_id]
    assert o.state is OrderState.PENDING and o.live
    oms.on_ack(place.client_id, 777)
    assert o.state is OrderState.OPEN and o.venue_order_id == 777
    assert oms.on_fill(place.client_id, 30, done=False) is o
    assert o.state is OrderState.PARTIALLY_FILLED and o.remaining == 70
    oms.on_fill(place.client_id, 20, done=False)
    assert o.state is OrderState.PARTIALLY_FILLED and o.remaining == 50
    oms.on_fill(place.client_id, 50, done=True)
    assert o.state is OrderState.FILLED and not o.live
    assert place.client_id not in oms.orders and oms.done[-1] is o
    assert oms.counts["fills"] == 3 and oms.counts["orders_filled"] == 1


def test_fill_that_uses_up_the_order_finishes_it_even_without_done():
    oms = _oms()
    (place,) = oms.sync([_q(B, 0, 3999, 100)], T0, bps_per_tick=2.5)
    oms.on_ack(place.client_id, 1)
    oms.on_fill(place.client_id, 100, done=False)
    assert place.client_id not in oms.orders and oms.done[-1].state is OrderState.FILLED


def test_lifecycle_pending_rejected():
    oms = _oms()
    (place,) = oms.sync([_q(B, 0, 3999)], T0, bps_per_tick=2.5)
    oms.on_reject(place.client_id, "insufficient funds")
    assert place.client_id not in oms.orders
    assert oms.done[-1].state is OrderState.REJECTED and oms.done[-1].reject_reason == "insufficient funds"
    assert oms.counts["orders_rejected"] == 1


def test_cancel_all_then_cancel_ack_cancels_and_removes():
    oms = _oms()
    _placed(oms, _two_sided())
    actions = oms.cancel_all()
    assert sorted(a.client_id for a in actions) == [1, 2, 3, 4]
    assert all(isinstance(a, CancelOrder) for a in actions)
    assert all(o.cancel_requested for o in oms.orders.values())
    assert oms.cancel_all() == []  # not requested twice
    for a in actions:
        oms.on_cancel_ack(a.client_id)
    assert oms.orders == {}
    assert [o.state for o in oms.done] == [OrderState.CANCELLED] * 4
    assert oms.counts["orders_cancelled"] == 4


def test_cancel_reject_for_a_live_order_makes_it_cancellable_again():
    oms = _oms()
    _placed(oms, [_q(B, 0, 3999)])
    oms.cancel_all()
    oms.on_cancel_reject(1, "order not found")
    assert not oms.orders[1].cancel_requested
    assert oms.counts["cancel_rejects"] == 1
    assert oms.cancel_all() == [CancelOrder(1)]


def test_invalid_transition_raises():
    o = ManagedOrder(1, B, 3999, 100, 0, OrderType.LIMIT, 0, state=OrderState.FILLED)
    with pytest.raises(InvalidTransition):
        o.transition(OrderState.OPEN)
    assert o.state is OrderState.FILLED
    for terminal in (OrderState.CANCELLED, OrderState.REJECTED):
        o = ManagedOrder(1, B, 3999, 100, 0, OrderType.LIMIT, 0, state=terminal)
        with pytest.raises(InvalidTransition):
            o.transition(OrderState.PARTIALLY_FILLED)
    o = ManagedOrder(1, B, 3999, 100, 0, OrderType.LIMIT, 0, state=OrderState.OPEN)
    with pytest.raises(InvalidTransition):
        o.transition(OrderState.REJECTED)  # only a pending order can be rejected


def test_events_for_unknown_ids_are_counted_not_crashing():
    oms = _oms()
    assert oms.on_fill(999, 10, done=True) is None
    oms.on_ack(998, 1)
    oms.on_cancel_ack(997)
    oms.on_reject(996, "x")
    assert oms.counts["unknown_fill"] == 1
    assert oms.counts["unknown_ack"] == 1
    assert oms.counts["unknown_cancel_ack"] == 1
    assert oms.counts["unknown_reject"] == 1
    assert oms.orders == {}


def test_fill_after_the_order_finished_is_counted_as_unknown():
    oms = _oms()
    _placed(oms, [_q(B, 0, 3999)])
    oms.on_fill(1, 100, done=True)
    assert oms.on_fill(1, 5, done=True) is None
    assert oms.counts["unknown_fill"] == 1 and oms.counts["fills"] == 1


# ---- reconciliation ---------------------------------------------------------------------------------


def test_reconcile_reports_missing_and_cancels_unknown_venue_orders():
    oms = _oms()
    acked = _placed(oms, [_q(B, 0, 3999), _q(S, 0, 4001)])  # 1 and 2, acknowledged
    assert [a.client_id for a in acked] == [1, 2]
    (pending,) = oms.sync([_q(B, 0, 3999), _q(S, 0, 4001), _q(B, 1, 3998)], T0)  # 3: not acknowledged yet
    assert pending.client_id == 3
    oms.on_fill(2, 40, done=False)  # we think 60 remain on order 2
    venue = AccountState(
        position_lots=-40,
        open_orders={
            2: VenueOrder(2, S, 4001, 50),  # remaining differs: 60 here, 50 there
            77: VenueOrder(77, B, 3990, 10),  # unknown here
        },
    )
    problems, actions = oms.reconcile(venue)
    assert actions == [CancelOrder(77)]
    assert len(problems) == 3
    assert any("order 1" in p and "absent at venue" in p for p in problems)
    assert any("order 2" in p and "60" in p and "50" in p for p in problems)
    assert any("order 77" in p for p in problems)
    assert 1 not in oms.orders and oms.done[-1].client_id == 1 and oms.done[-1].state is OrderState.CANCELLED
    assert 3 in oms.orders  # merely unacknowledged: not a mismatch
    assert oms.counts["reconcile_mismatches"] == 3


def test_reconcile_with_matching_state_reports_nothing():
    oms = _oms()
    _placed(oms, [_q(B, 0, 3999)])
    problems, actions = oms.reconcile(AccountState(0, {1: VenueOrder(1, B, 3999, 100)}))
    assert problems == [] and actions == []
    assert 1 in oms.orders


def test_quotes_go_out_post_only_and_marketable_flatten_orders_never_do():
    oms = _oms()
    places = _placed(oms, [QuoteLevel(B, 0, 3999, 100)])
    assert places[0].post_only
    flatten = oms.market_order(S, 50, 3900, T0)
    assert flatten.order_type is OrderType.MARKET and not flatten.post_only
    plain = OrderManager(2.5, 20.0, 30.0, 100.0, 100, post_only=False)  # [strategy].post_only = false
    assert not _placed(plain, [QuoteLevel(B, 0, 3999, 100)])[0].post_only
