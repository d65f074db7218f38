"""Instruments come from the data and the user, never from code: the instrument table, spec files and
[instrument] keys; a recording of a second symbol (made here from the BTCUSDT recording, renamed and
rescaled) backtests end to end; foreign-symbol, empty and multi-symbol files fail loudly; an inverse
contract is accounted in its settlement currency."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from flashmm.config import Config, InstrumentConfig
from flashmm.core.domain import Fill, Instrument, Side
from flashmm.core.state import Portfolio
from flashmm.data.instruments import InstrumentTable, instrument_table
from flashmm.data.loader import load_events
from flashmm.data.readers import DataError

SPOT = "binance-spot-btcusdt-20240808"
SPEC = """
[[instrument]]
source = "binance-spot"
symbol = "XYZUSDT"
base = "XYZ"
quote = "USDT"
price_tick = "0.0005"
lot_size = "0.0002"
"""


def _rescaled(line: bytes, symbol: str = "xyzusdt") -> bytes:
    """A BTCUSDT frame as a frame of another symbol: prices x 0.05 and quantities x 20 (same notional), so its
    tick becomes 0.0005 and its lot 0.0002."""
    sp = line.index(b" ")
    msg = orjson.loads(line[sp + 1:])

    def px(s: str) -> str:
        return format(Decimal(s) * Decimal("0.05"), "f")

    def qty(s: str) -> str:
        return format(Decimal(s) * 20, "f")

    def levels(lv: list) -> list:
        return [[px(p), qty(q)] for p, q in lv]

    data = msg.get("data", msg)
    if "stream" in msg:
        msg["stream"] = symbol + "@" + msg["stream"].split("@", 1)[1]
    if "bids" in data:
        data["bids"], data["asks"] = levels(data["bids"]), levels(data["asks"])
    if "b" in data and isinstance(data["b"], list):
        data["b"], data["a"] = levels(data["b"]), levels(data["a"])
    elif "b" in data:
        data["b"], data["a"], data["B"], data["A"] = px(data["b"]), px(data["a"]), qty(data["B"]), qty(data["A"])
    if "p" in data:
        data["p"], data["q"] = px(data["p"]), qty(data["q"])
    if "s" in data:
        data["s"] = symbol.upper()
    return line[:sp + 1] + orjson.dumps(msg) + b"\n"


@pytest.fixture(scope="module")
def spot_head(data_dir) -> list[bytes]:
    with gzip.open(data_dir / SPOT / "btcusdt_20240808.gz", "rb") as f:
        return [next(f) for _ in range(20_000)]


@pytest.fixture(scope="module")
def xyz(spot_head, tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("xyz")
    rec = d / "xyzusdt_20240808.gz"
    with gzip.open(rec, "wb") as f:
        f.writelines(_rescaled(x) for x in spot_head)
    spec = d / "instruments.toml"
    spec.write_text(SPEC)
    return rec, spec


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flashmm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


# ---- the table ------------------------------------------------------------------------------------------


def test_the_builtin_table_describes_every_recording_in_shared_data():
    t = instrument_table()
    assert t.resolve("binance-spot", "btcusdt").price_tick == Decimal("0.01")
    assert t.resolve("binance-usdm", "BTCUSDT").lot_size == Decimal("0.001")
    cm = t.resolve("binance-cm", "BTCUSD_PERP")
    assert cm.inverse and cm.multiplier == 100 and cm.settle_currency == "BTC" and cm.quote == "USD"
    assert t.resolve("bitstamp", "BTCUSD").lot_size == Decimal("1E-8")
    msft = t.resolve("lobster", "MSFT")  # the LOBSTER entry covers any equity
    assert (msft.symbol, msft.base, msft.price_tick) == ("MSFT", "MSFT", Decimal("0.01"))


def test_an_unknown_symbol_is_one_line_naming_what_to_supply():
    with pytest.raises(DataError) as e:
        instrument_table().resolve("binance-spot", "ETHUSDT")
    msg = str(e.value)
    assert "\n" not in msg and "ETHUSDT" in msg and "--instruments" in msg and "[instrument]" in msg


def test_a_spec_file_and_instrument_keys_override_the_table(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC + '\n[[instrument]]\nsource = "binance-spot"\nsymbol = "BTCUSDT"\nbase = "BTC"\n'
                           'quote = "USDT"\nprice_tick = "0.1"\nlot_size = "0.001"\n')
    t = instrument_table(spec)
    assert t.resolve("binance-spot", "XYZUSDT").price_tick == Decimal("0.0005")
    assert t.resolve("binance-spot", "BTCUSDT").price_tick == Decimal("0.1")  # the spec wins over the table
    keys = InstrumentConfig(symbol="ETHUSDT", base="ETH", quote="USDT", price_tick="0.01", lot_size="0.0001")
    t2 = instrument_table(None, keys.instrument())
    assert t2.resolve("binance-usdm", "ethusdt").lot_size == Decimal("0.0001")  # [instrument] names it
    assert t2.resolve("binance-spot", "BTCUSDT").price_tick == Decimal("0.01")  # and nothing else


@pytest.mark.parametrize("body, match", [
    ('[[instrument]]\nsource = "nasdaq"\nsymbol = "X"\nbase = "X"\nquote = "USD"\nprice_tick = "0.01"\nlot_size = "1"\n',
     "source must be one of"),
    ('[[instrument]]\nsource = "bitstamp"\nsymbol = "X"\nbase = "X"\nquote = "USD"\nprice_tick = "0"\nlot_size = "1"\n',
     "price_tick must be a finite number > 0"),
    ('[[instrument]]\nsource = "bitstamp"\nsymbol = "X"\nbase = "X"\nquote = "USD"\nprice_tick = 0.01\nlot_size = "1"\n',
     "decimal string"),
    ('[[instrument]]\nsource = "bitstamp"\nsymbol = "X"\nbase = "X"\nquote = "USD"\nprice_tick = "0.01"\nlot_size = "1"\n'
     'kind = "quanto"\n', "kind must be"),
    ("[instrument]\nsymbol = 1\n", "expected [[instrument]] tables"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_spec_file_is_a_clear_error(tmp_path, body, match):
    spec = tmp_path / "bad.toml"
    spec.write_text(body)
    with pytest.raises(DataError, match=match.replace("[", r"\[")):
        InstrumentTable.load(spec)


# ---- a second symbol, end to end -------------------------------------------------------------------------


def test_a_second_symbol_recording_backtests_with_its_own_instrument(xyz, tmp_path):
    rec, spec = xyz
    r = _cli("backtest", "--data", str(rec), "--instruments", str(spec), "--report", "r.json",
             "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    sec = json.loads((tmp_path / "r.json").read_text())["data_sets"][0]
    assert sec["data"]["symbol"] == "XYZUSDT" and sec["data"]["source"] == "binance-spot"
    assert sec["instrument"]["price_tick"] == "0.0005" and sec["instrument"]["lot_size"] == "0.0002"
    assert sec["data"]["reader_rejects"].get("unknown_stream", 0) == 0
    assert sec["fills"] > 0 and sec["quoting_time_s"] > 0
    assert "XYZUSDT" in r.stdout and "PnL" in r.stdout  # the plain table


def test_without_its_instrument_the_second_symbol_is_refused_in_one_line(xyz, tmp_path):
    rec, _ = xyz
    r = _cli("backtest", "--data", str(rec), "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "no instrument known for binance-spot XYZUSDT" in last and "--instruments" in last
    assert not (tmp_path / "r.json").exists()


def test_an_empty_or_garbage_recording_fails_and_reports_nothing(tmp_path):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))
    r = _cli("backtest", "--data", str(empty), "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a Binance recording" in r.stderr
    junk = tmp_path / "junk.gz"
    junk.write_bytes(gzip.compress(b'1 {"stream":"btcusdt@depth@100ms","data":{"U":"x"}}\n' * 50))
    r = _cli("backtest", "--data", str(junk), "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no market data for BTCUSDT" in r.stderr and "bad_field 50" in r.stderr
    assert not (tmp_path / "r.json").exists()


def test_a_file_of_several_symbols_needs_a_choice_and_counts_the_others(spot_head, tmp_path):
    mixed = tmp_path / "mixed.gz"
    with gzip.open(mixed, "wb") as f:
        for i, line in enumerate(spot_head[:6000]):
            f.write(line)
            if i % 3 == 0 and b'"stream"' in line:  # an interleaved second symbol's frames
                f.write(_rescaled(line))
    with pytest.raises(DataError, match="several symbols"):
        load_events([mixed])
    es = load_events([mixed], symbol="BTCUSDT")
    assert es.instrument.symbol == "BTCUSDT" and es.meta["other_symbol_frames"]["XYZUSDT"] > 1000
    assert es.meta["snapshots"] == 1 and es.messages > 1000  # the REST snapshot continued BTCUSDT's own chain
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    other = load_events([mixed], symbol="XYZUSDT", instruments=instrument_table(spec))
    # the REST snapshot line (no symbol of its own) is BTCUSDT's: XYZUSDT's diffs never continue it
    assert other.meta.get("snapshots", 0) == 0 and other.meta["snapshot_not_chosen_symbol"] == 1
    assert other.rejects["diff_without_snapshot"] > 0


# ---- an inverse contract -------------------------------------------------------------------------------


def test_an_inverse_contract_is_accounted_in_its_base_and_limited_in_its_quote():
    inst = Instrument("BTCUSD_PERP", "BTC", "USD", Decimal("0.1"), Decimal("1"), Decimal("100"), True)
    pf = Portfolio(inst)
    pf.on_fill(Fill(1, Side.BUY, 600_000.0, 10, 0.0, True, 0, False), 600_010.0)  # 10 contracts at 60,000.0
    mark = 610_000.0  # 61,000.0
    expect_btc = 10 * 100 * (1 / 60_000 - 1 / 61_000)
    assert pf.pnl(mark).total == pytest.approx(expect_btc, rel=1e-12)
    assert pf.pnl_quote(mark).total == pytest.approx(expect_btc * 61_000, rel=1e-12)
    assert pf.pnl_total_quote(mark) == pf.pnl_quote(mark).total  # the drawdown breaker's shortcut, to the last digit
    assert pf.exposure(mark) == pytest.approx(1_000.0)  # 10 contracts x 100 USD, whatever the price
    assert pf.spread_capture == pytest.approx(10 * 100 * (1 / 60_000 - 1 / 60_001), rel=1e-9)
    assert inst.lots_for(2_000.0, mark) == pytest.approx(20.0)  # the 2,000 USD limit is 20 contracts
    assert inst.notional(600_000.0, 10) == pytest.approx(1_000 / 60_000)  # fees are charged in BTC
    lin = Instrument("BTCUSDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.001"))
    assert lin.settle_value(600_000.0, 10) == pytest.approx(600.0) == lin.exposure(600_000.0, 10)


def test_the_coin_m_recording_backtests_in_btc_with_a_usd_limit(data_dir, tmp_path):
    from flashmm.research.backtest import run_backtest

    cfg = Config().model_copy(update={"model": Config().model.model_copy(update={"path": "none"})})
    rep = run_backtest(cfg, [[str(data_dir / "binance-cm-btcusd-perp-20240808" / "btcusd_perp_20240808.gz")]],
                       "flashmm", tmp_path / "r.json", show_progress=False)
    sec = rep["data_sets"][0]
    assert sec["instrument"] == {"symbol": "BTCUSD_PERP", "base": "BTC", "quote": "USD", "settle": "BTC",
                                 "price_tick": "0.1", "lot_size": "1", "multiplier": "100", "inverse": True}
    assert sec["fills"] > 0
    # PnL in BTC, valued in USD at the final mid: the two agree to the price of BTC (~61,000 USD)
    assert sec["pnl_settle"] != 0 and 55_000 < sec["pnl_usdc"] / sec["pnl_settle"] < 65_000
    assert sec["inventory"]["max_abs_inventory_pct"] <= 2.0 * 1.05
