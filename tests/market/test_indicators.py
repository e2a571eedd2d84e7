"""Indicators against values worked out by hand (the working is in the comments)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from market import indicators
from market.services import MarketDataError, load_bundled_sample

D = Decimal
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def ds(*values: str | int) -> list[Decimal]:
    return [D(str(v)) for v in values]


def test_last_price_is_the_last_close():
    assert indicators.last_price(ds(1, 2, 3)) == 3
    with pytest.raises(MarketDataError, match="no last price"):
        indicators.last_price([])


def test_rsi_by_wilder():
    # Changes +1, -0.5, +1, -0.5. Period 3: first averages gain (1+0+1)/3 = 2/3, loss
    # (0+0.5+0)/3 = 1/6; the fourth change smooths them to gain (2/3*2 + 0)/3 = 4/9 and loss
    # (1/6*2 + 0.5)/3 = 5/18. RS = 8/5, RSI = 100 - 100/2.6 = 61.538461538...
    value = indicators.rsi(ds(10, 11, "10.5", "11.5", 11), period=3)
    assert round(value, 9) == D("61.538461538")


def test_rsi_extremes_and_too_few_closes():
    assert indicators.rsi(ds(1, 2, 3, 4), period=3) == 100  # only gains
    assert indicators.rsi(ds(4, 3, 2, 1), period=3) == 0  # only losses
    assert indicators.rsi(ds(5, 5, 5, 5), period=3) == 50  # no movement
    with pytest.raises(MarketDataError, match=r"RSI\(14\) needs 15 candles; there are 3"):
        indicators.rsi(ds(1, 2, 3))


def test_atr_by_wilder_counts_gaps_from_the_previous_close():
    highs = ds(12, 13, "12.5", 15, 14)
    lows = ds(9, 10, 11, "11.5", 12)
    closes = ds(10, 12, 11, 14, 13)
    # True ranges: max(3, 3, 0) = 3; max(1.5, 0.5, 1) = 1.5; the gap up: max(3.5, |15-11| = 4,
    # 0.5) = 4; max(2, 0, 2) = 2. Period 3: (3 + 1.5 + 4)/3 = 17/6, then (17/6*2 + 2)/3 = 23/9.
    assert indicators.true_ranges(highs, lows, closes) == ds(3, "1.5", 4, 2)
    assert round(indicators.atr(highs, lows, closes, period=3), 12) == round(D(23) / 9, 12)


def test_volatility_is_the_daily_stdev_of_log_returns():
    # Returns ln 1.1 and ln 0.9: the sample stdev of two values is |r1 - r2| / sqrt 2.
    per_bar = math.log(1.1 / 0.9) / math.sqrt(2)
    value = indicators.volatility(ds(100, 110, 99), periods_per_day=1)
    assert float(value) == pytest.approx(per_bar, rel=1e-12)
    # Four bars a day: sqrt(4) = twice the per-bar figure.
    value = indicators.volatility(ds(100, 110, 99), periods_per_day=4)
    assert float(value) == pytest.approx(2 * per_bar, rel=1e-12)
    assert indicators.volatility(ds(7, 7, 7, 7), periods_per_day=24) == 0


def test_support_and_resistance_are_the_nearest_swings_around_the_price():
    lows = ds(5, 3, 4, 2, 4, 6, "4.5", 7)
    highs = ds(6, 8, 7, 9, 8, 10, 9, 11)
    # Reach 1: swing lows 3, 2, 4.5 (each below both neighbours); swing highs 8, 9, 10.
    # Price 5: the highest swing low below is 4.5, the lowest swing high above is 8.
    assert indicators.swing_levels(highs, lows, D(5), reach=1) == (D("4.5"), D(8))
    # Price 10.5: no swing high above it, so the window's highest high stands in.
    assert indicators.swing_levels(highs, lows, D("10.5"), reach=1) == (D("4.5"), D(11))
    # Price 1: no swing low below it, so the lowest low stands in.
    assert indicators.swing_levels(highs, lows, D(1), reach=1) == (D(2), D(8))


def minute(i: int, o: str, h: str, lo: str, c: str, v: str = "1"):
    return (T0 + timedelta(minutes=i), D(o), D(h), D(lo), D(c), D(v))


def test_minutes_make_hourly_bars_with_quote_turnover():
    rows = [
        minute(0, "10", "11", "9", "10.5", "2"),
        minute(1, "10.5", "12", "10", "11", "1"),
        minute(59, "11", "11.5", "8", "9", "3"),
        minute(60, "9", "9.5", "8.5", "9.5", "4"),
    ]
    first, second = indicators.hourly_bars(rows)
    assert (first.open_time, first.open, first.high, first.low, first.close) == (T0, 10, 12, 8, 9)
    assert first.volume == 6
    assert first.quote_volume == D("2") * D("10.5") + 11 + 3 * 9  # 59 quote
    assert (second.open_time, second.close, second.volume) == (T0 + timedelta(hours=1), D("9.5"), 4)


def test_ranges_and_volume_look_back_from_a_moment():
    bars = indicators.hourly_bars(
        [minute(60 * h, "10", str(10 + h), str(10 - h / 10), "10", "1") for h in range(48)]
    )
    since = T0 + timedelta(hours=24)
    assert indicators.price_range(bars, since) == (D("5.3"), D(57))  # hours 24..47
    assert indicators.volume_since(bars, since) == (24, 240)


@pytest.mark.django_db
def test_the_snapshot_of_a_stored_market(django_assert_max_num_queries):
    from tests.bots.conftest import add_candles

    # 40 hours of minutes climbing one cent a minute from 100, each candle 0.05 either side.
    start = int(T0.timestamp() * 1000)
    rows = []
    for i in range(40 * 60):
        close = D(100) + D(i) / 100
        rows.append((start + i * 60_000, close, close + D("0.05"), close - D("0.05"), close, "2"))
    add_candles(rows)

    with django_assert_max_num_queries(2):
        snap = indicators.market_snapshot("binance", "BTC/USDT")

    assert snap.at == T0 + timedelta(hours=40)
    assert snap.price == D("123.99")
    assert snap.candles_used == 2400
    assert snap.rsi14 == 100  # it only rose
    # Each hour's bar: high - low = 0.59 + 0.10; the previous close is inside: TR 0.69.
    assert snap.atr14 == D("0.69")
    assert snap.range_30d == (D("99.95"), D("124.04"))
    assert snap.range_7d == snap.range_30d
    # No swing point in a steady climb: the window's extremes stand in.
    assert (snap.support, snap.resistance) == snap.range_30d
    assert snap.volume_24h_base == 24 * 60 * 2
    # Hourly returns drift from 0.60 % down to 0.49 %: a small spread, a small volatility.
    assert D("0.001") < snap.volatility_daily < D("0.002")


@pytest.mark.django_db
def test_the_snapshot_says_when_there_is_too_little_history():
    with pytest.raises(MarketDataError, match="no stored BTC/USDT candles"):
        indicators.market_snapshot("binance", "BTC/USDT")
    from tests.bots.conftest import add_candles

    start = int(T0.timestamp() * 1000)
    add_candles([(start + i * 60_000, 100, 101, 99, 100) for i in range(10 * 60)])
    with pytest.raises(MarketDataError, match="has 10 hours of candles.*at least 15"):
        indicators.market_snapshot("binance", "BTC/USDT")


@pytest.mark.django_db
def test_the_snapshot_of_the_bundled_btc_sample_is_plausible():
    load_bundled_sample()
    snap = indicators.market_snapshot("binance", "BTC/USDT")
    assert snap.candles_used == 10 * 24 * 60
    low_30, high_30 = snap.range_30d
    low_7, high_7 = snap.range_7d
    assert low_30 <= low_7 < high_7 <= high_30
    assert snap.support <= snap.price <= snap.resistance
    assert 0 < snap.rsi14 < 100
    assert D("0.001") < snap.volatility_daily < D("0.2")  # BTC moves about 1-5 % a day
    assert 0 < snap.atr14 < high_30 - low_30
    assert snap.volume_24h_quote > snap.volume_24h_base * low_30 * D("0.99")


@pytest.mark.django_db
def test_24h_volume_and_ranges_count_to_the_minute():
    from tests.bots.conftest import add_candles

    start = int(T0.timestamp() * 1000)
    # 30 hours and 30 minutes of candles, volume 1 each; the last closes at 06:30 next day.
    add_candles([(start + i * 60_000, 100, 101, 99, 100, 1) for i in range(30 * 60 + 30)])
    snap = indicators.market_snapshot("binance", "BTC/USDT")
    assert snap.at == T0 + timedelta(hours=30, minutes=30)
    assert snap.volume_24h_base == 24 * 60  # exactly the last 1,440 minutes
