"""Candle imports (CSV and the exchange through the real ccxt client), market rules, commands."""

from __future__ import annotations

import copy
import gzip
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from market import exchange, services
from market.models import Candle, MarketRules
from tests.fakes.fake_binance import EXCHANGE_INFO, FakeBinance

pytestmark = pytest.mark.django_db

D = Decimal
T0_MS = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def rows(n: int, start_ms: int = T0_MS, skip: set[int] = frozenset()) -> list[list[str]]:
    out = []
    for i in range(n):
        if i in skip:
            continue
        price = D(100) + D(i) / 100
        out.append([str(start_ms + i * MIN), str(price), str(price + 1), str(price - 1),
                    str(price), "1.5"])  # fmt: skip
    return out


def csv_text(data: list[list[str]], header: bool = True) -> str:
    lines = ["timestamp_ms,open,high,low,close,volume"] if header else []
    return "\n".join(lines + [",".join(r) for r in data]) + "\n"


def stored(symbol: str = "BTC/USDT") -> int:
    return Candle.objects.for_series("binance", symbol).count()


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_import_stores_exact_decimals_and_is_idempotent(tmp_path: Path):
    path = tmp_path / "btc.csv"
    path.write_text(csv_text(rows(50)))

    report = services.import_candles_from_csv(path, exchange="binance", symbol="BTC/USDT")
    assert (report.read, report.inserted, report.skipped, report.gaps) == (50, 50, 0, [])
    last = Candle.objects.for_series("binance", "BTC/USDT").last()
    assert last.open_time == datetime.fromtimestamp((T0_MS + 49 * MIN) / 1000, UTC)
    assert (last.close, last.high, last.volume) == (D("100.49"), D("101.49"), D("1.5"))

    again = services.import_candles_from_csv(path, exchange="binance", symbol="BTC/USDT")
    assert (again.read, again.inserted, again.skipped) == (50, 0, 50)
    assert stored() == 50


def test_gzip_without_a_header_and_the_gaps_it_has(tmp_path: Path):
    path = tmp_path / "btc.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(csv_text(rows(30, skip={10, 11, 12, 20}), header=False))

    report = services.import_candles_from_csv(path, exchange="binance", symbol="BTC/USDT")

    assert report.inserted == 26
    at = lambda i: datetime.fromtimestamp((T0_MS + i * MIN) / 1000, UTC)  # noqa: E731
    assert report.gaps == [(at(10), at(12), 3), (at(20), at(20), 1)]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("1748736000000,100,101,99", "line 3"),
        ("1748736000000,100,99,101,100,1", "line 3"),
        ("1748736000000,abc,101,99,100,1", "line 3"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_stored(tmp_path: Path, line: str, says: str):
    path = tmp_path / "bad.csv"
    path.write_text(csv_text(rows(1)) + line + "\n")
    with pytest.raises(services.MarketDataError, match=says):
        services.import_candles_from_csv(path, exchange="binance", symbol="BTC/USDT")
    assert stored() == 0


def test_overlapping_unsorted_and_repeated_rows_store_each_candle_once():
    data = [(int(r[0]), *(D(x) for x in r[1:])) for r in rows(30)]
    services.import_candle_rows(data[10:20], exchange="binance", symbol="BTC/USDT")
    mixed = data[25:] + data[:15] + data[3:4]  # unsorted, overlapping the stored, one repeat
    report = services.import_candle_rows(mixed, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 15 - 5 + 5  # 0..9 and 25..29 are new
    assert stored() == 25
    fresh = [(t + 100 * MIN, *rest) for t, *rest in data[:5]]
    report = services.import_candle_rows(fresh + fresh[:1], exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 5 and stored() == 30


def test_a_span_with_as_many_stored_rows_but_not_the_same_ones_is_still_inserted():
    data = [(int(r[0]), *(D(x) for x in r[1:])) for r in rows(3)]
    # Stored: minute 0, minute 2 and one 30 s off the grid; the batch's minute 1 is not there.
    services.import_candle_rows([data[0], data[2]], exchange="binance", symbol="BTC/USDT")
    off_grid = (data[0][0] + 30_000, *data[0][1:])
    services.import_candle_rows([off_grid], exchange="binance", symbol="BTC/USDT")
    report = services.import_candle_rows(data, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 1 and stored() == 4


def test_calendar_timeframes_are_refused():
    with pytest.raises(services.MarketDataError, match="fixed timeframes"):
        services.timeframe_ms("1M")


def test_a_missing_file_says_so(tmp_path: Path):
    with pytest.raises(services.MarketDataError, match="no such file"):
        services.import_candles_from_csv(
            tmp_path / "nope.csv", exchange="binance", symbol="BTC/USDT"
        )


def test_a_large_import_goes_in_batches_with_progress(tmp_path: Path, postgres):
    # On PostgreSQL this is the COPY path; batches of 20,000 report progress.
    path = tmp_path / "big.csv"
    path.write_text(csv_text(rows(45_000)))
    seen: list[int] = []
    report = services.import_candles_from_csv(
        path, exchange="binance", symbol="BTC/USDT", progress=seen.append
    )
    assert report.inserted == 45_000 and seen == [20_000, 40_000]
    assert stored() == 45_000


# --- the exchange, through ccxt ---------------------------------------------------------------


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    return fake_binance(prices={"BTCUSDT": "100"})


def kline_rows(data: list[list[str]]) -> list[tuple]:
    return [(int(r[0]), *r[1:]) for r in data]


def test_exchange_import_pages_through_fetch_ohlcv_and_resumes(fake: FakeBinance):
    fake.set_candles("BTCUSDT", kline_rows(rows(2_500, skip={1_500})))
    client = fake.ccxt_client()
    until = datetime.fromtimestamp((T0_MS + 2_500 * MIN) / 1000, UTC)
    since = datetime.fromtimestamp(T0_MS / 1000, UTC)

    report = services.import_candles_from_exchange(
        client, exchange="binance", symbol="BTC/USDT", since=since, until=until
    )

    assert (report.read, report.inserted) == (2_499, 2_499)
    assert fake.calls("GET", "/klines") == 3  # pages of 1,000
    assert [g[2] for g in report.gaps] == [1]  # the missing minute, found across pages
    # More candles arrive; without --since the import resumes after the last stored one.
    fake.set_candles("BTCUSDT", kline_rows(rows(2_600, skip={1_500})))
    later = until + timedelta(minutes=100)
    again = services.import_candles_from_exchange(
        client, exchange="binance", symbol="BTC/USDT", until=later
    )
    assert (again.read, again.inserted) == (100, 100)
    assert stored() == 2_599


def test_an_until_in_the_future_leaves_the_open_candle(fake: FakeBinance):
    now_ms = int(datetime.now(UTC).timestamp() * 1000) // MIN * MIN
    fake.set_candles("BTCUSDT", kline_rows(rows(5, start_ms=now_ms - 4 * MIN)))
    report = services.import_candles_from_exchange(
        fake.ccxt_client(), exchange="binance", symbol="BTC/USDT",
        since=datetime.fromtimestamp((now_ms - 4 * MIN) / 1000, UTC),
        until=datetime.now(UTC) + timedelta(days=1),
    )  # fmt: skip
    assert report.inserted == 4  # the minute still open is not stored


def test_exchange_import_needs_a_start_the_first_time(fake: FakeBinance):
    with pytest.raises(services.MarketDataError, match="give a start date"):
        services.import_candles_from_exchange(
            fake.ccxt_client(), exchange="binance", symbol="BTC/USDT"
        )


def test_exchange_trouble_is_a_message_and_a_rerun_resumes(fake: FakeBinance):
    fake.set_candles("BTCUSDT", kline_rows(rows(1_500)))
    fake.fail_next("/klines", 503)
    window = {
        "since": datetime.fromtimestamp(T0_MS / 1000, UTC),
        "until": datetime.fromtimestamp((T0_MS + 1_500 * MIN) / 1000, UTC),
    }
    with pytest.raises(services.MarketDataError, match="binance did not answer"):
        services.import_candles_from_exchange(
            fake.ccxt_client(), exchange="binance", symbol="BTC/USDT", **window
        )
    assert stored() == 0
    report = services.import_candles_from_exchange(
        fake.ccxt_client(), exchange="binance", symbol="BTC/USDT", **window
    )
    assert report.inserted == 1_500


# --- market rules -----------------------------------------------------------------------------


def test_offline_snapshot_rules_for_the_bundled_pairs():
    btc = services.load_market_rules("binance", "BTC/USDT")
    assert (btc.tick, btc.step, btc.min_notional) == (D("0.01"), D("0.00001"), D(5))
    assert (btc.base, btc.quote, btc.source) == ("BTC", "USDT", MarketRules.Source.SNAPSHOT)
    eth = services.load_market_rules("binance", "ETH/USDT")
    assert eth.step == D("0.0001")
    with pytest.raises(services.MarketDataError, match="not in the bundled snapshot"):
        services.load_market_rules("binance", "DOGE/USDT")


def test_rules_from_the_exchange_replace_the_cached_ones():
    info = json.loads(EXCHANGE_INFO.read_text())
    changed = copy.deepcopy(info)
    for sym in changed["symbols"]:
        for f in sym["filters"]:
            if f["filterType"] == "PRICE_FILTER" and sym["symbol"] == "BTCUSDT":
                f["tickSize"] = "0.10000000"
    services.load_market_rules("binance", "BTC/USDT")  # the snapshot, cached
    with FakeBinance(exchange_info=changed) as fake:
        rules = services.load_market_rules("binance", "BTC/USDT", client=fake.ccxt_client())
    assert (rules.tick, rules.source) == (D("0.1"), MarketRules.Source.EXCHANGE)
    assert MarketRules.objects.get(symbol="BTC/USDT").tick == D("0.1")
    # Later lookups without a client use the cached exchange rules.
    assert services.load_market_rules("binance", "BTC/USDT").tick == D("0.1")


def test_the_market_rules_command(fake: FakeBinance, monkeypatch: pytest.MonkeyPatch):
    out = io.StringIO()
    call_command("market_rules", "BTC/USDT", "ETH/USDT", stdout=out)
    assert out.getvalue().splitlines() == [
        "binance BTC/USDT: tick 0.01 USDT, step 0.00001 BTC, min order 5 USDT, fee 0.1 % "
        "(from the offline snapshot)",
        "binance ETH/USDT: tick 0.01 USDT, step 0.0001 ETH, min order 5 USDT, fee 0.1 % "
        "(from the offline snapshot)",
    ]
    monkeypatch.setattr(exchange, "public_client", lambda name: fake.ccxt_client())
    out = io.StringIO()
    call_command("market_rules", "BTC/USDT", "ETH/USDT", "--refresh", stdout=out)
    assert out.getvalue().count("(from the exchange)") == 2
    assert fake.calls("GET", "/exchangeInfo") == 1  # the markets are loaded once
    with pytest.raises(CommandError, match="no market DOGE/USDT"):
        call_command("market_rules", "DOGE/USDT", "--refresh")


# --- the import command -------------------------------------------------------------------------


def test_import_candles_command_reports_counts_and_gaps(tmp_path: Path):
    path = tmp_path / "btc.csv"
    path.write_text(csv_text(rows(100, skip={40})))
    out = io.StringIO()
    call_command("import_candles", "--symbol", "BTC/USDT", "--csv", str(path), stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    text = out.getvalue()
    assert "BTC/USDT: read 99, inserted 99, already stored 0, gaps 1" in text
    assert "gap: 1 candle(s) missing, 2025-06-01 00:40 to 2025-06-01 00:40" in text


def test_import_candles_command_from_the_exchange(fake, monkeypatch):
    fake.set_candles("BTCUSDT", kline_rows(rows(1_200)))
    monkeypatch.setattr(exchange, "public_client", lambda name: fake.ccxt_client())
    out = io.StringIO()
    call_command(
        "import_candles", "--symbol", "BTC/USDT", "--exchange", "binance",
        "--since", "2025-06-01", "--until", "2025-06-02", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert "read 1,200, inserted 1,200" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--symbol", "BTCUSDT", "--csv", "x.csv"], "not a pair"),
        (["--symbol", "BTC/USDT", "--csv", "/nonexistent.csv"], "no such file"),
        (["--symbol", "BTC/USDT", "--exchange", "nowhere"], "does not know an exchange"),
        (["--symbol", "BTC/USDT", "--since", "2025-06-01", "--timeframe", "7x"], "not a timeframe"),
    ],
)
def test_import_candles_command_errors_are_words(args, says):
    with pytest.raises(CommandError, match=says):
        call_command("import_candles", *args, stderr=io.StringIO())
