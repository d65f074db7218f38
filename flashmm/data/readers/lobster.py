"""LOBSTER message + orderbook files."""


from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flashmm.data.events import (
    KIND_SNAP,
    KIND_TRADE,
    EventSet,
)
from flashmm.data.readers.common import (
    _INT64_MAX,
    NS_PER_S,
    DataError,
    _BadField,
    _log_rejects,
    _Writer,
)

if TYPE_CHECKING:
    from flashmm.data.instruments import InstrumentTable


# ---- LOBSTER ---------------------------------------------------------------------------------------

_LOBSTER_NAME = re.compile(r"^(?P<sym>[A-Za-z0-9.^-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<t0>\d+)_(?P<t1>\d+)_"
                           r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$")
_LOBSTER_DUMMY = 9999999999
_LOBSTER_PRICE_SCALE = 10_000  # prices are USD * 10000


def _ny_midnight_ns(date: _dt.date) -> int:
    """Unix ns of midnight America/New_York on `date` (LOBSTER times are NASDAQ local time)."""
    try:
        from zoneinfo import ZoneInfo

        tz: _dt.tzinfo = ZoneInfo("America/New_York")
        local = _dt.datetime(date.year, date.month, date.day, tzinfo=tz)
        return int(local.timestamp()) * NS_PER_S
    except Exception:  # no tz database: the US rule since 2007 (2nd Sunday of March .. 1st Sunday of Nov)
        def nth_sunday(month: int, n: int) -> _dt.date:
            d = _dt.date(date.year, month, 1)
            return d + _dt.timedelta(days=(6 - d.weekday()) % 7 + 7 * (n - 1))

        dst = nth_sunday(3, 2) <= date < nth_sunday(11, 1)
        offset_h = 4 if dst else 5
        utc = _dt.datetime(date.year, date.month, date.day, tzinfo=_dt.timezone.utc)
        return (int(utc.timestamp()) + offset_h * 3600) * NS_PER_S


def _secs_to_ns(s: str) -> int:
    i, _, f = s.partition(".")
    if not i.isdigit() or (f and not f.isdigit()) or len(f) > 9:
        raise ValueError(f"bad time {s!r}")
    return int(i) * NS_PER_S + (int(f.ljust(9, "0")) if f else 0)


def lobster_partner(path: Path) -> Path:
    """The orderbook file of a message file, or the message file of an orderbook file."""
    path = Path(path)
    m = _LOBSTER_NAME.match(path.name)
    if m is None:
        raise DataError(f"{path}: not a LOBSTER file name (SYMBOL_DATE_T0_T1_message|orderbook_LEVELS.csv)")
    other = "orderbook" if m["kind"] == "message" else "message"
    return path.with_name(f"{m['sym']}_{m['date']}_{m['t0']}_{m['t1']}_{other}_{m['levels']}.csv")


def read_lobster(message_path: Path, orderbook_path: Path, instruments: "InstrumentTable | None" = None) -> EventSet:
    """LOBSTER message + orderbook files (prices USD*10000, sizes in shares; the instrument from the table)."""
    message_path, orderbook_path = Path(message_path), Path(orderbook_path)
    m = _LOBSTER_NAME.match(message_path.name)
    if m is None or m["kind"] != "message":
        raise DataError(f"{message_path}: not a LOBSTER message file name "
                        f"(SYMBOL_YYYY-MM-DD_T0_T1_message_N.csv)")
    sym = m["sym"]
    if instruments is None:
        from flashmm.data.instruments import instrument_table

        instruments = instrument_table()
    inst = instruments.resolve("lobster", sym)
    scale = Decimal(_LOBSTER_PRICE_SCALE) * inst.price_tick  # file price units per tick
    if scale != scale.to_integral_value() or scale < 1 or inst.lot_size != 1:
        raise DataError(f"{message_path}: LOBSTER prices are USD x 10000 and sizes whole shares: the instrument "
                        f"of {sym} needs a tick that is a multiple of 0.0001 and a lot of 1 (got {inst.price_tick}, "
                        f"{inst.lot_size})")
    price_div = int(scale)  # USD*10000 -> ticks
    try:
        day = _dt.date.fromisoformat(m["date"])
    except ValueError as exc:
        raise DataError(f"{message_path}: bad date in the file name") from exc
    t0_ns = _ny_midnight_ns(day)

    def lines(p: Path) -> list[bytes]:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        try:
            return p.read_bytes().splitlines()
        except OSError as exc:
            raise DataError(f"{p}: cannot read: {exc}") from exc

    msgs = lines(message_path)
    books = lines(orderbook_path)
    while msgs and not msgs[-1].strip():
        msgs.pop()
    while books and not books[-1].strip():
        books.pop()
    if len(msgs) != len(books):
        raise DataError(f"{message_path} has {len(msgs)} rows but {orderbook_path} has {len(books)}: "
                        f"LOBSTER row k of the orderbook is the book after message k, the counts must match")

    rejects: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    w = _Writer()
    last_ts = -1
    n_cols: int | None = None
    for k, (ml, bl) in enumerate(zip(msgs, books), start=1):
        try:
            f = ml.decode("ascii").split(",")
            if len(f) != 6:
                raise ValueError("message fields")
            ts = t0_ns + _secs_to_ns(f[0])
            mtype, size, price, direction = int(f[1]), int(f[3]), int(f[4]), int(f[5])
            vals = [int(x) for x in bl.decode("ascii").split(",")]
            if n_cols is None:
                n_cols = len(vals)
            if len(vals) != n_cols or len(vals) % 4 or not vals:
                raise ValueError("orderbook fields")
            if max(ts, size, price, *map(abs, vals)) > _INT64_MAX:
                raise ValueError("number beyond int64")
        except (ValueError, UnicodeDecodeError):
            rejects["malformed_line"] += 1
            continue
        if ts < last_ts:
            rejects["out_of_order_ts"] += 1
            continue
        last_ts = ts
        try:
            rows: list[tuple[int, int, int]] = []
            asks: list[tuple[int, int, int]] = []
            for i in range(0, len(vals), 4):
                ap, asz, bp, bsz = vals[i], vals[i + 1], vals[i + 2], vals[i + 3]
                if abs(bp) != _LOBSTER_DUMMY and bsz > 0:
                    if bp % price_div or bp <= 0:
                        raise _BadField("bid price")
                    rows.append((1, bp // price_div, bsz))
                if abs(ap) != _LOBSTER_DUMMY and asz > 0:
                    if ap % price_div or ap <= 0:
                        raise _BadField("ask price")
                    asks.append((-1, ap // price_div, asz))
            rows.extend(asks)
            trade = None
            if mtype in (4, 5):
                if direction not in (1, -1) or size <= 0 or price <= 0 or price % price_div:
                    raise _BadField("execution")
                trade = (-direction, price // price_div, size)
            elif mtype == 7:
                rejects["halt"] += 1
            elif mtype not in (1, 2, 3, 6):
                raise _BadField("type")
        except _BadField:
            rejects["bad_field"] += 1
            continue
        counts[f"type_{mtype}"] += 1
        if trade is not None:
            counts["trades"] += 1
            w.message(ts, KIND_TRADE, [trade], k, 0)
        w.message(ts, KIND_SNAP, rows, k, k)
        counts["snapshots"] += 1

    files = [str(message_path), str(orderbook_path)]
    meta: dict[str, Any] = dict(counts)
    meta["rows"] = len(msgs)
    meta["levels"] = (n_cols or 0) // 4
    meta["time_zone"] = "America/New_York"
    es = EventSet(w.array(), inst, "lobster", files, dict(sorted(rejects.items())), meta)
    _log_rejects("lobster", files, es.rejects)
    return es
