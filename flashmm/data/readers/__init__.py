"""Readers: recorded market data files -> one time-ordered `EventSet` (see `flashmm.data.events`).

Every reader is faithful: it converts, it does not repair. Sequence gaps, duplicate depth diffs and crossed
books pass through and are detected by `L2Book` in the replay. Input that cannot be converted (a truncated
or malformed line, a missing field, a bad number, a timestamp going backwards, an unknown stream) is
skipped and counted in `EventSet.rejects` under its own key, never raised; each kind is logged once, with
its count, at the end of the file set. Only a file that cannot be read at all raises `DataError`.

Timestamps are the recorder's local receive time where the recording has one (Binance ns, Bitstamp ms),
else the exchange time (LOBSTER: seconds after midnight New York time on the date in the file name).

Instruments (tick, lot, contract terms) come from the instrument table (flashmm.data.instruments), keyed by
the reader and the symbol read from the data; never from a reader's code.

Binance (`read_binance`, market "spot", "usdm" or "cm" (COIN-M, inverse)): `<recv_ns> <json>` lines, several
files of one stream read as one stream in the order given; the symbol from the stream names. Binance's sync procedure runs here: depth diffs are buffered until
the REST snapshot line (`{"lastUpdateId": ...}`); the SNAP message is emitted at the snapshot line's time,
then the buffered diffs with u > lastUpdateId (at the snapshot's time), then everything as it comes (trades
and bookTickers are emitted as they come, also before the snapshot). Diffs
with u <= lastUpdateId of the latest snapshot are dropped (counted in meta, not a reject). DIFF rows carry
seq=U, seq2=u (spot) or seq=pu+1, seq2=u (futures), so that L2Book's "first_seq > seq + 1 => gap" rule is
the venue's own chain rule. A diff that changes no level is kept as one FLAG_EMPTY row (side 0, qty 0),
like an empty snapshot, so that the sequence chain stays whole. Quantities off the lot grid are rounded
up to the next lot (a positive size never becomes 0) and counted as "qty_off_lot_grid" (kept, not
skipped). A repeated trade id is "duplicate_trade" (dropped).

Bitstamp 2015 (`read_bitstamp`): `order_book` lines -> SNAP (seq = snapshot counter), `trade` -> TRADE with
the aggressor inferred (see `read_bitstamp`); L3 order lines are used for that inference only.

LOBSTER (`read_lobster`): orderbook row k -> SNAP at message k's time (seq = k, 1-based), executions
(type 4, 5) -> TRADE (seq = k) before that SNAP, aggressor = -direction; halts (type 7) counted "halt".

FlashMM's own format (`write_flashmm` / `read_flashmm`): an `.npz` with `events` (EVENT_DTYPE) and `header`
(the JSON of `EventSet.header()` as uint8), no pickle; the reader validates everything it loads.
"""

from flashmm.data.readers.binance import read_binance, sniff_binance
from flashmm.data.readers.bitstamp import read_bitstamp
from flashmm.data.readers.common import (
    READER_VERSION,
    DataError,
    book_event,
    iter_messages,
)
from flashmm.data.readers.lobster import lobster_partner, read_lobster
from flashmm.data.readers.npz import read_flashmm, write_flashmm

__all__ = [
    "DataError", "READER_VERSION", "book_event", "iter_messages", "sniff_binance",
    "lobster_partner",
    "read_binance", "read_bitstamp", "read_flashmm", "read_lobster", "write_flashmm",
]
