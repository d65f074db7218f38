"""The engine's L2 order book: snapshot + diff application with sequence-gap detection, and the real-time
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

Each side is a `Levels`: a dict price -> lots and a sorted array of the prices with the best price last, so
that what the hot path does most (read the best levels, change a level at or near the top, remove the
levels a new top moved past) costs O(1) list operations at the array's end; a level deeper in the book costs
a C bisect and a short memmove. No object per level. (It replaced a sortedcontainers SortedDict, whose
pure-Python item access measured ~1.7 µs per level change on the Binance spot replay; `Levels` keeps the
part of its API that callers use: get, [], in, len, iteration in ascending price order, peekitem, irange.)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from operator import neg

from flashmm.core.domain import BookDiff, BookSnapshot, BookTop


class Levels:
    """One side of a book: price_ticks -> lots (> 0), ordered by price.

    `ladder` is sorted ascending and its last entry is the best price: the price itself for bids, minus the price
    for asks (`sign` = +1 / -1), so both sides share one code path. Iteration, `peekitem` and `irange` follow
    ascending price order on both sides, as the SortedDict this replaces did."""

    __slots__ = ("lots", "ladder", "sign")

    def __init__(self, sign: int, levels: dict[int, int] | None = None) -> None:
        self.sign = sign
        self.lots: dict[int, int] = levels if levels is not None else {}
        self.ladder: list[int] = sorted(self.lots) if sign > 0 else sorted(-p for p in self.lots)

    # ---- the hot path ----------------------------------------------------------------------------------
    def best(self) -> int:
        """The best price (IndexError when empty)."""
        return self.ladder[-1] * self.sign

    def set(self, price: int, lots: int) -> None:
        """Set a level (lots > 0) or remove it (lots == 0)."""
        book = self.lots
        if lots:
            if price not in book:
                insort(self.ladder, price * self.sign)
            book[price] = lots
        elif book.pop(price, None) is not None:
            keys = self.ladder
            k = price * self.sign
            if keys[-1] == k:
                keys.pop()
            else:
                del keys[bisect_left(keys, k)]

    def remove_better_than(self, price: int) -> list[tuple[int, int]]:
        """Remove every level strictly better than `price` (as a new top shows them gone); returns them,
        best first."""
        keys = self.ladder
        k = price * self.sign
        gone = []
        book = self.lots
        sign = self.sign
        while keys and keys[-1] > k:
            p = keys.pop() * sign
            gone.append((p, book.pop(p)))
        return gone

    def top(self, n: int) -> list[tuple[int, int]]:
        """The best `n` levels, best first."""
        book = self.lots
        if self.sign > 0:
            return [(p, book[p]) for p in self.ladder[-1:-n - 1:-1]]
        return [(-k, book[-k]) for k in self.ladder[-1:-n - 1:-1]]

    # ---- the mapping API (ascending price order, as sortedcontainers.SortedDict) ------------------------
    def __getitem__(self, price: int) -> int:
        return self.lots[price]

    def get(self, price: int, default: int | None = None) -> int | None:
        return self.lots.get(price, default)

    def __contains__(self, price: object) -> bool:
        return price in self.lots

    def __len__(self) -> int:
        return len(self.ladder)

    def __bool__(self) -> bool:
        return bool(self.ladder)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ladder) if self.sign > 0 else map(neg, reversed(self.ladder))

    def __reversed__(self) -> Iterator[int]:
        return reversed(self.ladder) if self.sign > 0 else map(neg, self.ladder)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Levels):
            return self.lots == other.lots
        return self.lots == other if isinstance(other, dict) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        return f"Levels({dict(self.items())})"

    def keys(self) -> list[int]:
        return list(self)

    def items(self) -> list[tuple[int, int]]:
        book = self.lots
        return [(p, book[p]) for p in self]

    def values(self) -> list[int]:
        book = self.lots
        return [book[p] for p in self]

    def __setitem__(self, price: int, lots: int) -> None:
        if price not in self.lots:
            insort(self.ladder, price * self.sign)
        self.lots[price] = lots

    def __delitem__(self, price: int) -> None:
        del self.lots[price]
        del self.ladder[bisect_left(self.ladder, price * self.sign)]

    def pop(self, price: int, *default: int) -> int:
        if price in self.lots:
            lots = self.lots[price]
            del self[price]
            return lots
        if default:
            return default[0]
        raise KeyError(price)

    def peekitem(self, index: int = -1) -> tuple[int, int]:
        """The level at `index` in ascending price order (-1: the highest price)."""
        p = self.ladder[index] if self.sign > 0 else -self.ladder[-1 - index]
        return p, self.lots[p]

    def popitem(self, index: int = -1) -> tuple[int, int]:
        p, lots = self.peekitem(index)
        del self[p]
        return p, lots

    def irange(self, minimum: int | None = None, maximum: int | None = None,
               inclusive: tuple[bool, bool] = (True, True), reverse: bool = False) -> Iterator[int]:
        """Prices between `minimum` and `maximum` in ascending order (descending with `reverse`), lazily."""
        keys = self.ladder
        if self.sign < 0:  # keys are minus the prices: the bounds swap
            minimum, maximum = (None if maximum is None else -maximum), (None if minimum is None else -minimum)
            inclusive = (inclusive[1], inclusive[0])
            reverse = not reverse
        lo = 0 if minimum is None else (bisect_left if inclusive[0] else bisect_right)(keys, minimum)
        hi = len(keys) if maximum is None else (bisect_right if inclusive[1] else bisect_left)(keys, maximum)
        if hi <= lo:
            return iter(())
        n = len(keys)
        it = islice(reversed(keys), n - hi, n - lo) if reverse else islice(keys, lo, hi)
        return it if self.sign > 0 else map(neg, it)


class L2Book:
    __slots__ = ("bids", "asks", "seq", "stale", "stale_reason", "ts_ns", "rejects", "updates", "top_seq",
                 "top_bid", "top_ask")

    def __init__(self) -> None:
        self.bids = Levels(1)  # price_ticks -> lots; best bid is the highest price
        self.asks = Levels(-1)  # best ask is the lowest price
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
        bids, asks = dict(snap.bids), dict(snap.asks)
        if len(bids) != len(snap.bids) or len(asks) != len(snap.asks):  # a price listed twice: which size?
            self.rejects["snapshot_duplicate_level"] += 1
            return False
        self.bids = Levels(1, bids)
        self.asks = Levels(-1, asks)
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
        bids, asks = self.bids, self.asks
        if self.top_seq > diff.last_seq:  # older than the top we hold: only below the top may change
            tb, ta = self.top_bid, self.top_ask
            behind = 0
            for p, q in diff.bids:
                if p < tb:
                    bids.set(p, q)
                else:
                    behind += 1
            for p, q in diff.asks:
                if p > ta:
                    asks.set(p, q)
                else:
                    behind += 1
            self.rejects["diff_levels_behind_top"] += behind
        else:
            for p, q in diff.bids:
                bids.set(p, q)
            for p, q in diff.asks:
                asks.set(p, q)
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
        keys = bids.ladder
        while keys and keys[-1] > bp:
            del bids.lots[keys.pop()]
        keys = asks.ladder
        while keys and keys[-1] > -ap:
            del asks.lots[-keys.pop()]
        bids.set(bp, top.bid_lots)
        asks.set(ap, top.ask_lots)
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
        b, a = self.bids.ladder, self.asks.ladder
        return bool(b) and bool(a) and b[-1] >= -a[-1]

    def best_bid(self) -> tuple[int, int] | None:
        b = self.bids
        if not b.ladder:
            return None
        p = b.ladder[-1]
        return p, b.lots[p]

    def best_ask(self) -> tuple[int, int] | None:
        a = self.asks
        if not a.ladder:
            return None
        p = -a.ladder[-1]
        return p, a.lots[p]

    def two_sided(self) -> bool:
        return bool(self.bids.ladder) and bool(self.asks.ladder)

    def mid_ticks(self) -> float:
        return (self.bids.ladder[-1] - self.asks.ladder[-1]) / 2.0

    def spread_ticks(self) -> int:
        return -self.asks.ladder[-1] - self.bids.ladder[-1]

    def top_bids(self, n: int) -> list[tuple[int, int]]:
        """Best first."""
        lots = self.bids.lots
        return [(p, lots[p]) for p in self.bids.ladder[-1:-n - 1:-1]]

    def top_asks(self, n: int) -> list[tuple[int, int]]:
        lots = self.asks.lots
        return [(-k, lots[-k]) for k in self.asks.ladder[-1:-n - 1:-1]]

    def depth_within(self, ticks: int) -> tuple[int, int]:
        """Total lots on each side within `ticks` of the best price on that side (inclusive)."""
        bid_total = ask_total = 0
        if self.bids:
            best = self.bids.best()
            for p in self.bids.irange(best - ticks, best):
                bid_total += self.bids[p]
        if self.asks:
            best = self.asks.best()
            for p in self.asks.irange(best, best + ticks):
                ask_total += self.asks[p]
        return bid_total, ask_total
