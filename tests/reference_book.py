"""REFERENCE ONLY (tests): the L2Book as it was before its price levels became arrays (flashmm/core/book.py at
commit bec4a6d, SortedDict levels), kept to check that the array-backed book gives the same state after every
event. Not used by FlashMM.

The engine's L2 order book: snapshot + diff application with sequence-gap detection, and the real-time
top of book between diffs.

A gap marks the book stale and it stays stale until a new snapshot arrives: it is never patched.
Rejected input (a gap, a diff while stale, a negative size, a price <= 0, a level listed twice in a snapshot,
a crossed result) is counted by reason.

Top of book (`apply_top`, e.g. Binance bookTicker): depth diffs may come in batches (every 100 ms on Binance
spot) while the best bid/offer is published as it changes. A top with an update id newer than the book's
last diff sets the two best levels and removes the levels it shows are gone (bids above its bid, asks below
its ask). A diff that ends before the last top's id is older than that top: its changes at or better than
the top's prices are skipped (the top already moved past them) and the rest apply, so a diff never
resurrects a level the top has moved past; a diff that ends at or after the top's id is newer and applies
in full. A top older than the book (id <= the last diff's) is ignored and counted.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice

from sortedcontainers import SortedDict

from flashmm.core.domain import BookDiff, BookSnapshot, BookTop


class L2Book:
    __slots__ = ("bids", "asks", "seq", "stale", "stale_reason", "ts_ns", "rejects", "updates", "top_seq",
                 "top_bid", "top_ask")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # price_ticks -> lots; best bid is the last key
        self.asks: SortedDict = SortedDict()  # best ask is the first key
        self.seq = -1
        self.stale = True
        self.stale_reason = "no snapshot yet"
        self.ts_ns = 0
        self.rejects: Counter[str] = Counter()
        self.updates = 0
        self.top_seq = -1  # update id of the last top applied after the last diff (-1: none newer than it)
        self.top_bid = 0
        self.top_ask = 0

    # ---- input -----------------------------------------------------------------------------------
    def apply_snapshot(self, snap: BookSnapshot) -> bool:
        for side in (snap.bids, snap.asks):
            for price, lots in side:
                if lots <= 0:
                    self.rejects["snapshot_bad_size"] += 1
                    return False
                if price <= 0:
                    self.rejects["snapshot_bad_price"] += 1
                    return False
        bids, asks = SortedDict(snap.bids), SortedDict(snap.asks)
        if len(bids) != len(snap.bids) or len(asks) != len(snap.asks):  # a price listed twice: which size?
            self.rejects["snapshot_duplicate_level"] += 1
            return False
        self.bids = bids
        self.asks = asks
        self.seq = snap.seq
        self.top_seq = -1
        self.ts_ns = snap.ts_ns
        self.stale = False
        self.stale_reason = ""
        self.updates += 1
        if self.crossed():
            self._mark_stale("snapshot_crossed")
        return True

    def apply_diff(self, diff: BookDiff) -> bool:
        """Apply a diff covering first_seq..last_seq. Returns True when applied."""
        if self.stale:
            self.rejects["diff_while_stale"] += 1
            return False
        if diff.last_seq <= self.seq:
            self.rejects["diff_already_applied"] += 1
            return False
        if diff.first_seq > self.seq + 1:
            self._mark_stale("sequence_gap")
            return False
        for side in (diff.bids, diff.asks):
            for price, lots in side:
                if lots < 0:
                    self.rejects["diff_bad_size"] += 1
                    return False
                if price <= 0:
                    self.rejects["diff_bad_price"] += 1
                    return False
        if self.top_seq > diff.last_seq:  # older than the top we hold: only below the top may change
            tb, ta = self.top_bid, self.top_ask
            _apply_levels(self.bids, [(p, q) for p, q in diff.bids if p < tb])
            _apply_levels(self.asks, [(p, q) for p, q in diff.asks if p > ta])
            self.rejects["diff_levels_behind_top"] += sum(1 for p, _ in diff.bids if p >= tb) + sum(
                1 for p, _ in diff.asks if p <= ta)
        else:
            _apply_levels(self.bids, diff.bids)
            _apply_levels(self.asks, diff.asks)
            self.top_seq = -1
        self.seq = diff.last_seq
        self.ts_ns = diff.ts_ns
        self.updates += 1
        if self.crossed():
            self._mark_stale("crossed_after_diff")
            return False
        return True

    def apply_top(self, top: BookTop) -> bool:
        """Apply a best bid/offer newer than the book (see the module docstring). Returns True when the book
        changed; a top while stale, older than the book, crossed, or with a bad price or size is counted."""
        if self.stale:
            self.rejects["top_while_stale"] += 1
            return False
        if top.seq <= self.seq or top.seq <= self.top_seq:
            self.rejects["top_older_than_book"] += 1
            return False
        bp, ap = top.bid_ticks, top.ask_ticks
        if bp <= 0 or ap <= 0 or top.bid_lots <= 0 or top.ask_lots <= 0:
            self.rejects["top_bad_level"] += 1
            return False
        if bp >= ap:
            self.rejects["top_crossed"] += 1
            return False
        bids, asks = self.bids, self.asks
        while bids and bids.peekitem(-1)[0] > bp:
            bids.popitem(-1)
        while asks and asks.peekitem(0)[0] < ap:
            asks.popitem(0)
        bids[bp] = top.bid_lots
        asks[ap] = top.ask_lots
        self.top_seq = top.seq
        self.top_bid = bp
        self.top_ask = ap
        self.ts_ns = top.ts_ns
        self.updates += 1
        return True

    def mark_stale(self, reason: str) -> None:
        """External staleness (feed disconnect): the book is unusable until the next snapshot."""
        self._mark_stale(reason)

    def _mark_stale(self, reason: str) -> None:
        self.stale = True
        self.stale_reason = reason
        self.rejects[reason] += 1

    # ---- queries ---------------------------------------------------------------------------------
    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]

    def best_bid(self) -> tuple[int, int] | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> tuple[int, int] | None:
        return self.asks.peekitem(0) if self.asks else None

    def two_sided(self) -> bool:
        return bool(self.bids) and bool(self.asks)

    def mid_ticks(self) -> float:
        return (self.bids.peekitem(-1)[0] + self.asks.peekitem(0)[0]) / 2.0

    def spread_ticks(self) -> int:
        return self.asks.peekitem(0)[0] - self.bids.peekitem(-1)[0]

    def top_bids(self, n: int) -> list[tuple[int, int]]:
        """Best first."""
        b = self.bids
        return [(p, b[p]) for p in islice(b.irange(reverse=True), n)]

    def top_asks(self, n: int) -> list[tuple[int, int]]:
        a = self.asks
        return [(p, a[p]) for p in islice(a.irange(), n)]

    def depth_within(self, ticks: int) -> tuple[int, int]:
        """Total lots on each side within `ticks` of the best price on that side (inclusive)."""
        bid_total = ask_total = 0
        if self.bids:
            best = self.bids.peekitem(-1)[0]
            for p in self.bids.irange(best - ticks, best):
                bid_total += self.bids[p]
        if self.asks:
            best = self.asks.peekitem(0)[0]
            for p in self.asks.irange(best, best + ticks):
                ask_total += self.asks[p]
        return bid_total, ask_total


def _apply_levels(levels: SortedDict, changes: list[tuple[int, int]]) -> None:
    for price, lots in changes:
        if lots == 0:
            levels.pop(price, None)
        else:
            levels[price] = lots
