"""The latest price (cache first, then the saved row) and the feed's state on every page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from market.models import LatestPrice
from market.services import (
    FeedStatus,
    cache_price,
    feed_status,
    price_now,
    record_feed_status,
    record_price,
    watch_market,
    watched_markets,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 6, 14, 2, tzinfo=UTC)


def test_the_price_is_read_from_the_cache_first_then_from_the_row(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PRICE_CACHE_SECONDS = 60
    assert price_now("binance", "BTC/USDT") is None
    record_price("binance", "BTC/USDT", Decimal("100000"), T0)
    assert price_now("binance", "BTC/USDT").price == Decimal("100000")  # type: ignore[union-attr]
    cache_price("binance", "BTC/USDT", Decimal("100123.45"), T0 + timedelta(seconds=3))
    now = price_now("binance", "BTC/USDT")
    assert now is not None
    assert (now.price, now.at, now.replayed) == (
        Decimal("100123.45"), T0 + timedelta(seconds=3), False
    )  # fmt: skip
    monkeypatch.setattr(timezone, "now", lambda: T0 + timedelta(seconds=10))
    assert now.age() == timedelta(seconds=7)


def test_a_saved_price_does_not_go_back_in_time_unless_the_feed_changed_kind() -> None:
    record_price("binance", "BTC/USDT", Decimal("101"), T0)
    record_price("binance", "BTC/USDT", Decimal("100"), T0 - timedelta(minutes=1))  # older
    row = LatestPrice.objects.get()
    assert (row.price, row.at) == (Decimal("101"), T0)
    replay_time = datetime(2025, 6, 12, tzinfo=UTC)
    record_price("binance", "BTC/USDT", Decimal("65000"), replay_time, replayed=True)
    row.refresh_from_db()
    assert (row.price, row.at, row.replayed) == (Decimal("65000"), replay_time, True)


def test_every_page_says_where_prices_come_from(client: Any, user: Any, settings: Any) -> None:
    settings.MARKET_FEED = "auto"
    record_feed_status(FeedStatus("stream", "binance"))
    assert "Live prices from Binance (websocket)" in client.get("/accounts/login/").text
    client.force_login(user)
    record_feed_status(FeedStatus("rest", "binance", since=T0, symbols=("BTC/USDT",)))
    text = client.get("/").text
    assert (
        "Prices from Binance&#x27;s REST API every 10 s for BTC/USDT: "
        "the websocket stream is down since 14:02 UTC"
    ) in text
    assert "Prices are replayed" not in text
    record_feed_status(FeedStatus("replay", "binance", replay_of="June 2025"))
    text = client.get("/bots/new/").text
    assert "Replay of recorded June 2025 candles: not the live market" in text


def test_without_a_running_feed_the_pages_say_what_the_saved_prices_say(
    client: Any, user: Any, settings: Any
) -> None:
    settings.MARKET_FEED = "auto"
    client.force_login(user)
    assert "No market feed is running" in client.get("/").text
    replayed = datetime(2025, 6, 12, tzinfo=UTC)
    record_price("binance", "BTC/USDT", Decimal("65000"), replayed, replayed=True)
    text = client.get("/").text
    assert "Replay of recorded June 2025 candles: not the live market" in text
    assert "Prices are replayed" in text  # the dashboard's own notice
    record_price("binance", "ETH/USDT", Decimal("2500"), timezone.now())
    assert feed_status().mode == "live" and feed_status().live
    assert "Live prices from Binance" in client.get("/").text


def test_explicit_settings_need_no_running_feed(settings: Any) -> None:
    settings.MARKET_FEED = "replay"
    assert feed_status().replayed and not feed_status().live
    settings.MARKET_FEED = "live"
    assert feed_status().live
    record_feed_status(FeedStatus("rest", "binance", since=T0))
    assert feed_status().mode == "rest" and feed_status().live  # the feed's own word first


def test_markets_shown_by_pages_are_watched_for_a_while() -> None:
    watch_market("binance", "SOL/USDT")
    watch_market("binance", "SOL/USDT")
    watch_market("binance", "ETH/USDT")
    assert watched_markets() == [("binance", "ETH/USDT"), ("binance", "SOL/USDT")]
