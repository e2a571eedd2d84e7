"""The websocket feed (market/streams.py) through the real ccxt.pro client against the fake
Binance streams, with the real ccxt REST client against the fake REST API for the holes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from market import exchange
from market.feed import ReplayFeed, feed_from_settings, wanted_symbols
from market.management.commands.run_market_feed import Command
from market.models import Candle, LatestPrice
from market.services import feed_status, price_now, watch_market
from market.streams import StreamFeed, Throttle
from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_binance_ws import FakeBinanceStreams

pytestmark = pytest.mark.django_db

START = 1_700_000_040_000  # a minute boundary (epoch ms)
MINUTE = 60_000
DEADLINE = 10.0  # seconds: every wait below fails after this, it never measures time


class Clock:
    def __init__(self, ms: int = START) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBinance]:
    with FakeBinance(prices={"BTCUSDT": "100000", "ETHUSDT": "2500"}, clock=clock) as f:
        monkeypatch.setattr(exchange, "CLIENT_FACTORY", lambda name, k, s: f.ccxt_client(k, s))
        yield f


@pytest.fixture
def streams(fake: FakeBinance, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBinanceStreams]:
    with FakeBinanceStreams(fake) as s:
        monkeypatch.setattr(exchange, "PRO_CLIENT_FACTORY", lambda name, k, s_: s.pro_client())
        yield s


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.MARKET_FEED_EXCHANGE = "binance"
    settings.PRICE_CACHE_SECONDS = 60  # the cache outlives the test: what it holds is checked


def stream_feed(**options: Any) -> StreamFeed:
    options = {"stale_seconds": 60, "poll_seconds": 0.1, "backoff": (0.05, 0.2), **options}
    return StreamFeed("binance", ["BTC/USDT"], **options)


def pump_until(
    feed: StreamFeed, done: Callable[[], Any], *, market: Callable[[], None] | None = None
) -> Command:
    """Run the feed command's pump until ``done()``; ``market()`` moves the market each turn."""
    command = Command()
    deadline = time.monotonic() + DEADLINE
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the feed did not get there in time")
        if market is not None:
            market()
        command.pump(feed)
    return command


def candles() -> list[tuple[int, Decimal, Decimal, Decimal, Decimal]]:
    return [
        (int(c.open_time.timestamp() * 1000), c.open, c.high, c.low, c.close)
        for c in Candle.objects.filter(symbol="BTC/USDT").order_by("open_time")
    ]


def price_is(value: str) -> Callable[[], bool]:
    def check() -> bool:
        now = price_now("binance", "BTC/USDT")
        return now is not None and now.price == Decimal(value)

    return check


def test_the_stream_records_closed_candles_and_the_price_between_them(
    fake: FakeBinance, streams: FakeBinanceStreams, clock: Clock
) -> None:
    with stream_feed() as feed:
        pump_until(feed, price_is("100000"))
        clock.ms += 10_000
        fake.walk("BTCUSDT", ["100700", "99900", "100500"])
        pump_until(feed, price_is("100500"))
        now = price_now("binance", "BTC/USDT")
        assert now is not None and now.at == datetime.fromtimestamp((START + 10_000) / 1000, UTC)
        assert not now.replayed
        assert candles() == []  # the minute is still open
        clock.ms = START + MINUTE + 5
        fake.set_price("BTCUSDT", "100600")
        pump_until(feed, lambda: candles())
        assert candles() == [(START, *map(Decimal, ("100000", "100700", "99900", "100500")))]
        pump_until(feed, price_is("100600"))
        # The saved row is there for a cold cache (at most one write a second per pair).
        pump_until(feed, lambda: LatestPrice.objects.filter(price=Decimal("100600")).exists())
        assert feed.status().mode == "stream"
        assert feed_status().words() == "Live prices from Binance (websocket)"


def test_a_dropped_stream_reconnects_and_rest_fills_the_candles_it_missed(
    fake: FakeBinance, streams: FakeBinanceStreams, clock: Clock
) -> None:
    with stream_feed() as feed:
        pump_until(feed, price_is("100000"))
        clock.ms = START + MINUTE + 1
        fake.set_price("BTCUSDT", "100100")
        pump_until(feed, lambda: len(candles()) == 1)
        streams.offline()  # the network is down: connections dropped and refused
        clock.ms = START + MINUTE + 30_000
        fake.set_price("BTCUSDT", "100300")  # the end of minute 1: the stream does not see it
        clock.ms = START + 2 * MINUTE + 1
        fake.set_price("BTCUSDT", "99000")  # minute 2: while nothing streams
        clock.ms = START + 3 * MINUTE + 1
        fake.set_price("BTCUSDT", "99500")  # minute 3, still away
        streams.online()
        pump_until(feed, price_is("99500"))  # streaming again
        # The candle watch dials on its own back-off: both streams are back before minute 4.
        pump_until(feed, lambda: "btcusdt@kline_1m" in streams.subscriptions())
        assert streams.connections_total >= 2
        clock.ms = START + 4 * MINUTE + 1
        fake.set_price("BTCUSDT", "99600")
        pump_until(feed, lambda: len(candles()) == 4)
        assert [t for t, *_ in candles()] == [START + i * MINUTE for i in range(4)]
        # Minute 1 ended while the stream was away, minute 2 passed entirely: REST's candles.
        assert candles()[1][1:] == tuple(map(Decimal, ("100000", "100300", "100000", "100300")))
        assert candles()[2][1:] == tuple(map(Decimal, ("100300", "100300", "99000", "99000")))
        assert candles()[3][1:] == tuple(map(Decimal, ("99000", "99500", "99000", "99500")))
        assert feed.status().mode == "stream"


def test_a_silent_stream_goes_over_to_rest_and_comes_back(
    fake: FakeBinance, streams: FakeBinanceStreams, clock: Clock
) -> None:
    prices = iter(range(100_001, 200_000))

    def market() -> None:
        fake.set_price("BTCUSDT", str(next(prices)))

    with stream_feed(stale_seconds=0.5) as feed:
        pump_until(feed, lambda: feed_status().mode == "stream", market=market)
        streams.pause(DEADLINE)  # the stream stalls: nothing is pushed
        command = pump_until(feed, lambda: feed.status().mode == "rest")
        status = feed_status()  # as the pages read it
        assert status.mode == "rest" and status.symbols == ("BTC/USDT",)
        assert status.words().startswith(
            "Prices from Binance's REST API every 0.1 s for BTC/USDT: the websocket stream is down"
        )
        assert "no message for 0.5 s" in status.reason
        # Meanwhile REST brings the price and the closed candles.
        fake.set_price("BTCUSDT", "123456")
        pump_until(feed, price_is("123456"))
        clock.ms = START + MINUTE + 1
        fake.set_price("BTCUSDT", "123457")
        pump_until(feed, lambda: candles())
        assert candles()[-1][0] == START
        streams.resume()
        pump_until(feed, lambda: feed.status().mode == "stream", market=market)
        command.pump(feed)
        assert feed_status().mode == "stream"


def test_pairs_of_pages_and_bots_opened_later_are_streamed_too(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    with stream_feed(recheck_seconds=0.05, wanted=wanted_symbols) as feed:
        pump_until(feed, price_is("100000"))
        watch_market("binance", "ETH/USDT")  # a page shows it
        pump_until(feed, lambda: "ethusdt@kline_1m" in streams.subscriptions())
        pump_until(feed, lambda: price_now("binance", "ETH/USDT") is not None)
        assert price_now("binance", "ETH/USDT").price == Decimal("2500")  # type: ignore[union-attr]
        assert feed.symbols == ["BTC/USDT", "ETH/USDT"]


def test_auto_replays_when_the_exchange_does_not_answer(settings: Any) -> None:
    settings.MARKET_FEED = "auto"  # and the tests have no internet
    feed = feed_from_settings()
    assert isinstance(feed, ReplayFeed)
    assert feed.status().words() == "Replay of recorded June 2025 candles: not the live market"


def test_auto_streams_when_the_exchange_answers(
    settings: Any, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    settings.MARKET_FEED = "auto"
    feed = feed_from_settings()
    try:
        assert isinstance(feed, StreamFeed)
        assert feed.symbols == [] and "BTC/USDT" in feed.describe()  # streams once pumped
    finally:
        feed.close()


def test_live_never_replays(settings: Any) -> None:
    settings.MARKET_FEED = "live"
    feed = feed_from_settings()
    try:
        assert isinstance(feed, StreamFeed)
    finally:
        feed.close()


def test_the_throttle_lets_the_first_through_and_keeps_the_newest() -> None:
    throttle = Throttle(1.0)
    throttle.offer("BTC/USDT", 1)
    assert throttle.due(100.0) == [("BTC/USDT", 1)]
    throttle.offer("BTC/USDT", 2)
    throttle.offer("BTC/USDT", 3)
    assert throttle.due(100.5) == []
    assert throttle.next_at() == 101.0
    assert throttle.due(101.0) == [("BTC/USDT", 3)]
    assert throttle.next_at() is None
