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

Each side is a `Levels`: a dict price -> lots, and a sorted array of the prices near the top with the best
price last, so that what the hot path does most (read the best levels, change a level at or near the top,
remove the levels a new top moved past) costs O(1) list operations at the array's end, and a change deeper
in the book (most rows of a Binance depth diff) costs a dict operation. No object per level. (It replaced a
sortedcontainers SortedDict, whose pure-Python item access measured ~1.7 µs per level change on the Binance
spot replay; `Levels` keeps the part of its API that callers use: get, [], in, len, iteration in ascending
price order, peekitem, irange.)
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import chain, islice
from operator import neg

from flashmm.core.domain import BookDiff, BookSnapshot, BookTop


_NEAR = 64  # levels kept in sorted order below the best after a refill or a trim
_LOW = 16  # fewer than this many sorted levels (and deeper ones exist): sort in the next _NEAR
_HIGH = 256  # more than this many sorted levels: the deepest go back to the unsorted part
_SPAN_START = 256  # a refill's first window below the floor, ticks (it adapts: Levels._span)
_SPAN_ALL = 1 << 40  # a window this wide takes every deeper level


def _position(ladder: list[int], k: int) -> int:
    """Where `k` is or would go in the sorted `ladder` (bisect_left). A loop of its own rather than the bisect
    module's: compiled (book.pxd), its comparisons of two integers take the inlined fast path, and a search of
    the ladder costs about half the module's, whose every comparison is a generic rich comparison."""
    lo = 0
    hi = len(ladder)
    while lo < hi:
        mid = (lo + hi) >> 1
        if ladder[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


class Levels:
    """One side of a book: price_ticks -> lots (> 0), ordered by price.

    `lots` holds every level. `ladder` keeps the keys of the levels near the top sorted ascending with the best
    last: the key is the price for bids and minus the price for asks (`sign` = +1 / -1), so both sides share one
    code path. Levels deeper than `floor` (a key) are in `lots` only, unsorted: a depth diff changing a level
    hundreds of ticks away costs a dict operation. Invariants: `ladder` is exactly the sorted keys >= `floor`,
    and it is never empty while `lots` is not (it is refilled from the deeper levels when it runs low).
    Iteration, `peekitem` and `irange` follow ascending price order on both sides, as the SortedDict this
    replaces did (sorting the deeper levels only when a query reaches them)."""

    __slots__ = ("lots", "ladder", "sign", "floor", "_depth", "_span")

    def __init__(self, sign: int, levels: dict[int, int] | None = None) -> None:
        self.sign = sign
        self._depth: tuple[int, int, int, int] | None = None  # top_depth's answer until a level changes
        self._span = _SPAN_START  # how far below the floor a refill looks first (keys, i.e. ticks)
        self.lots: dict[int, int] = levels if levels is not None else {}
        keys = sorted(self.lots) if sign > 0 else sorted(-p for p in self.lots)
        if len(keys) > 2 * _NEAR:
            self.ladder = keys[-_NEAR:]
            self.floor: float = self.ladder[0]
        else:
            self.ladder = keys
            self.floor = -math.inf

    # ---- the hot path ----------------------------------------------------------------------------------
    def best(self) -> int:
        """The best price (IndexError when empty)."""
        k = self.ladder[-1]
        return -k if self.sign < 0 else k

    def set(self, price: int, lots: int) -> None:
        """Set a level (lots > 0) or remove it (lots == 0)."""
        book = self.lots
        if lots:
            old = book.get(price)
            if old == lots:
                return  # unchanged (a best bid/offer update moves one side at a time: the other side's is this)
            book[price] = lots
            depth = self._depth
            if depth is not None and old is not None and depth[0] == price:
                # the best level resized (the usual best bid/offer update): the depths move by the change
                change = lots - old
                self._depth = (price, lots, depth[2] + change, depth[3] + change)
                return
            self._depth = None
            if old is None:  # a new level
                k = -price if self.sign < 0 else price  # (a bid's key is its price object: found by identity)
                if k >= self.floor:
                    self._sort_in(k)
        elif book.pop(price, None) is not None:
            self._depth = None
            k = -price if self.sign < 0 else price
            if k >= self.floor:
                self._sort_out(k)

    def _sort_in(self, k: int) -> bool:
        """Insert key `k` (at or above the floor) into the sorted part. True when that trimmed it: the floor moved."""
        ladder = self.ladder
        ladder.insert(_position(ladder, k), k)
        if len(ladder) > _HIGH:
            self._trim()
            return True
        return False

    def _sort_out(self, k: int) -> bool:
        """Remove key `k` from the sorted part. True when that refilled it from the deeper levels: the floor moved."""
        ladder = self.ladder
        if ladder[-1] == k:
            ladder.pop()
        else:
            del ladder[_position(ladder, k)]
        if len(ladder) < _LOW and len(self.lots) > len(ladder):
            self._refill()
            return True
        return False

    def apply(self, rows: list[tuple[int, int]]) -> None:
        """`set` for each (price, lots) row of a message, in order, in one call."""
        book = self.lots
        neg = self.sign < 0  # an ask's key is minus its price; a bid's is its price object (found by identity)
        # the sorted part holds the bids at or above `edge` and the asks at or below it (minus the floor for asks:
        # a row deeper than that is told by one comparison, without computing its key)
        edge = -self.floor if neg else self.floor
        if rows:
            self._depth = None
        seq = rows if type(rows) is list else list(rows)  # (a list: read by index in the compiled build)
        for price, lots in seq:
            if lots:
                n = len(book)
                book[price] = lots
                if len(book) != n and (price <= edge if neg else price >= edge):  # a new level near the top
                    if self._sort_in(-price if neg else price):
                        edge = -self.floor if neg else self.floor
            elif book.pop(price, None) is not None and (price <= edge if neg else price >= edge):
                if self._sort_out(-price if neg else price):
                    edge = -self.floor if neg else self.floor

    def drop_better_than(self, price: int) -> None:
        """Remove every level strictly better than `price` (a new top shows them gone)."""
        neg = self.sign < 0
        k = -price if neg else price
        ladder, book = self.ladder, self.lots
        self._depth = None
        while True:
            while ladder and ladder[-1] > k:
                del book[-ladder.pop() if neg else ladder.pop()]
            if ladder or not book:
                break
            self._refill()  # the sorted part ran out above `price`: the deeper levels may still be better
        if len(ladder) < _LOW and len(book) > len(ladder):
            self._refill()

    def at_or_better(self, price: int) -> list[int]:
        """The prices of the levels at `price` or better, best first."""
        ladder, k = self.ladder, price * self.sign
        i = len(ladder)
        while i and ladder[i - 1] >= k:
            i -= 1
        if i == 0 and len(self.lots) > len(ladder):  # past the sorted part: the deeper levels too
            return list(self.irange(minimum=price, reverse=True) if self.sign > 0 else self.irange(maximum=price))
        if self.sign > 0:
            return [ladder[j] for j in range(len(ladder) - 1, i - 1, -1)]
        return [-ladder[j] for j in range(len(ladder) - 1, i - 1, -1)]

    def top_depth(self) -> tuple[int, int, int, int]:
        """(the best price, the lots at it, over the best 3 levels, over the best 5): what the features read on
        every update, without building `top(5)`'s list (the same levels and sums). Kept until a level of this
        side changes: a best bid/offer update leaves one side as it was about half the time."""
        depth = self._depth
        if depth is not None:
            return depth
        ladder, book = self.ladder, self.lots
        if 5 > len(ladder) and len(book) > len(ladder):
            self._refill(5)
        n = len(ladder)
        neg = self.sign < 0  # an ask's key is minus its price, a bid's is its price (no new integer per bid level)
        k = ladder[n - 1]
        price = -k if neg else k
        q1 = book[price]
        q3 = q1
        if n > 1:
            k = ladder[n - 2]
            q3 += book[-k if neg else k]
        if n > 2:
            k = ladder[n - 3]
            q3 += book[-k if neg else k]
        q5 = q3
        if n > 3:
            k = ladder[n - 4]
            q5 += book[-k if neg else k]
        if n > 4:
            k = ladder[n - 5]
            q5 += book[-k if neg else k]
        self._depth = depth = (price, q1, q3, q5)
        return depth

    def top(self, n: int) -> list[tuple[int, int]]:
        """The best `n` levels, best first."""
        ladder, book = self.ladder, self.lots
        if n > len(ladder) and len(book) > len(ladder):
            self._refill(n)
        if self.sign > 0:
            return [(p, book[p]) for p in ladder[-1:-n - 1:-1]]
        return [(-k, book[-k]) for k in ladder[-1:-n - 1:-1]]

    def _deep_keys(self) -> list[int]:
        """The unsorted keys below `floor`."""
        floor = self.floor
        if floor == -math.inf:
            return []
        if self.sign > 0:
            return [p for p in self.lots if p < floor]
        return [-p for p in self.lots if -p < floor]

    def _refill(self, need: int = 0) -> None:
        """Move the best `need` (at least _NEAR) deeper levels into the sorted part. Only the deeper keys within
        `_span` of the floor are gathered and sorted, the window widened until it holds enough of them or all: the
        same keys as sorting every deeper level (those outside the window are all worse than those in it), without
        sorting a thousand levels for the best 64."""
        need = max(need, _NEAR)
        floor = self.floor
        deep_n = len(self.lots) - len(self.ladder)  # (the ladder is exactly the keys >= floor)
        if floor == -math.inf or deep_n <= 0:
            self.floor = -math.inf
            return
        span = self._span
        while True:
            if span >= _SPAN_ALL:
                deep = self._deep_keys()
                break
            lo = floor - span
            if self.sign > 0:
                deep = [p for p in self.lots if lo <= p < floor]
            else:  # an ask's key is minus its price: keys in [lo, floor) are prices in (-floor, -lo]
                top, bottom = -floor, -lo
                deep = [-p for p in self.lots if top < p <= bottom]
            if len(deep) >= need or len(deep) == deep_n:
                break
            span *= 4
        # the next refill starts from a window that held enough (narrowed when it held far more than needed)
        self._span = span // 2 if len(deep) > 8 * need and span > _SPAN_START else span
        deep.sort()
        if len(deep) <= need and len(deep) == deep_n:
            add = deep
            self.floor = -math.inf
        else:
            add = deep[-need:]
            self.floor = add[0]
        self.ladder[:0] = add

    def _trim(self) -> None:
        ladder = self.ladder
        cut = len(ladder) - _NEAR
        self.floor = ladder[cut]
        del ladder[:cut]

    def _keys(self) -> list[int]:
        """Every key, ascending."""
        deep = self._deep_keys()
        return sorted(deep) + self.ladder if deep else list(self.ladder)

    # ---- the mapping API (ascending price order, as sortedcontainers.SortedDict) ------------------------
    def __getitem__(self, price: int) -> int:
        return self.lots[price]

    def get(self, price: int, default: int | None = None) -> int | None:
        return self.lots.get(price, default)

    def __contains__(self, price: object) -> bool:
        return price in self.lots

    def __len__(self) -> int:
        return len(self.lots)

    def __bool__(self) -> bool:
        return bool(self.ladder)

    def __iter__(self) -> Iterator[int]:
        keys = self._keys()
        return iter(keys) if self.sign > 0 else map(neg, reversed(keys))

    def __reversed__(self) -> Iterator[int]:
        keys = self._keys()
        return reversed(keys) if self.sign > 0 else map(neg, keys)

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
        if lots <= 0:
            raise ValueError(f"a level holds a positive size, not {lots}: remove it with del or pop")
        self.set(price, lots)

    def __delitem__(self, price: int) -> None:
        if price not in self.lots:
            raise KeyError(price)
        self.set(price, 0)

    def pop(self, price: int, *default: int) -> int:
        if price in self.lots:
            lots = self.lots[price]
            self.set(price, 0)
            return lots
        if default:
            return default[0]
        raise KeyError(price)

    def peekitem(self, index: int = -1) -> tuple[int, int]:
        """The level at `index` in ascending price order (-1: the highest price)."""
        j = index if self.sign > 0 else -1 - index  # the position in ascending keys
        ladder = self.ladder
        if -len(ladder) <= j < 0 or (0 <= j < len(ladder) and len(self.lots) == len(ladder)):
            k = ladder[j]
        else:
            k = self._keys()[j]
        p = k * self.sign
        return p, self.lots[p]

    def popitem(self, index: int = -1) -> tuple[int, int]:
        p, lots = self.peekitem(index)
        self.set(p, 0)
        return p, lots

    def irange(self, minimum: int | None = None, maximum: int | None = None,
               inclusive: tuple[bool, bool] = (True, True), reverse: bool = False) -> Iterator[int]:
        """Prices between `minimum` and `maximum` in ascending order (descending with `reverse`), lazily: a walk
        from the best price sorts the deeper levels only if it goes past the sorted ones."""
        if self.sign < 0:  # keys are minus the prices: the bounds swap
            minimum, maximum = (None if maximum is None else -maximum), (None if minimum is None else -minimum)
            inclusive = (inclusive[1], inclusive[0])
            reverse = not reverse
        it = self._irange_keys(minimum, maximum, inclusive, reverse)
        return it if self.sign > 0 else map(neg, it)

    def _irange_keys(self, kmin: int | None, kmax: int | None, inclusive: tuple[bool, bool],
                     descending: bool) -> Iterator[int]:
        if kmin is None and kmax is None and descending:  # a walk from the best (the commonest query)
            if len(self.lots) == len(self.ladder):
                return reversed(self.ladder)
            return chain(reversed(self.ladder), _lazy(lambda: reversed(sorted(self._deep_keys()))))
        if kmin is not None and kmin >= self.floor:
            keys = self.ladder  # the whole range is in the sorted part
        elif descending:  # best first: the sorted part, then the deeper levels only if the walk gets there
            return chain(self._irange_in(self.ladder, kmin, kmax, inclusive, True),
                         _lazy(lambda: self._irange_in(sorted(self._deep_keys()), kmin, kmax, inclusive, True)))
        else:
            keys = self._keys()
        return self._irange_in(keys, kmin, kmax, inclusive, descending)

    @staticmethod
    def _irange_in(keys: list[int], kmin: int | None, kmax: int | None, inclusive: tuple[bool, bool],
                   descending: bool) -> Iterator[int]:
        lo = 0 if kmin is None else (bisect_left if inclusive[0] else bisect_right)(keys, kmin)
        hi = len(keys) if kmax is None else (bisect_right if inclusive[1] else bisect_left)(keys, kmax)
        if hi <= lo:
            return iter(())
        n = len(keys)
        return islice(reversed(keys), n - hi, n - lo) if descending else islice(keys, lo, hi)


def _lazy(make: Callable[[], Iterator[int]]) -> Iterator[int]:
    yield from make()


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
            rows = side if type(side) is list else list(side)  # (a list: read by index in the compiled build)
            for price, lots in rows:
                if lots < 0 or price <= 0:
                    self.rejects["diff_bad_size" if lots < 0 else "diff_bad_price"] += 1
                    return False
        if self.top_seq > diff.last_seq:  # older than the top we hold: only below the top may change
            tb, ta = self.top_bid, self.top_ask
            bids = [r for r in diff.bids if r[0] < tb]  # (the rows themselves: no new tuple each)
            asks = [r for r in diff.asks if r[0] > ta]
            self.bids.apply(bids)
            self.asks.apply(asks)
            self.rejects["diff_levels_behind_top"] += len(diff.bids) - len(bids) + len(diff.asks) - len(asks)
        else:
            self.bids.apply(diff.bids)
            self.asks.apply(diff.asks)
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
        return self.set_top(top.seq, top.bid_ticks, top.bid_lots, top.ask_ticks, top.ask_lots, top.ts_ns)

    def set_top(self, seq: int, bp: int, bq: int, ap: int, aq: int, ts_ns: int) -> bool:
        """`apply_top` of BookTop(seq, bp, bq, ap, aq, ts_ns), for a caller that holds the values (the replay
        venue's mirror: each of the event's attributes read here cost a generic attribute lookup)."""
        if self.stale:
            self.rejects["top_while_stale"] += 1
            return False
        if seq <= self.seq or seq <= self.top_seq:
            self.rejects["top_older_than_book"] += 1
            return False
        if bp <= 0 or ap <= 0 or bq <= 0 or aq <= 0:
            self.rejects["top_bad_level"] += 1
            return False
        if bp >= ap:
            self.rejects["top_crossed"] += 1
            return False
        bids, asks = self.bids, self.asks
        if bids.ladder and bids.ladder[-1] > bp:
            bids.drop_better_than(bp)
        if asks.ladder and asks.ladder[-1] + ap > 0:  # the best ask below ap (its key is minus its price; the sum
            asks.drop_better_than(ap)                # is a small integer near the top, where -ap is a new one)
        bids.set(bp, bq)
        asks.set(ap, aq)
        self.top_seq = seq
        self.top_bid = bp
        self.top_ask = ap
        self.ts_ns = ts_ns
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
        return self.bids.top(n)

    def top_asks(self, n: int) -> list[tuple[int, int]]:
        return self.asks.top(n)

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
