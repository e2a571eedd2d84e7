"""The replay feed: continues stored history with the real candles, then wraps seamlessly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from market.feed import MINUTE_MS, ReplayFeed, ReplayTrack

D = Decimal
ROWS = [
    (0, D("100"), D("101"), D("99"), D("100.5"), D(1)),
    (60_000, D("100.5"), D("102"), D("100"), D("101"), D(1)),
    (120_000, D("101"), D("101.5"), D("98"), D("99"), D(1)),
]


def test_replay_continues_after_the_stored_history():
    track = ReplayTrack.after("binance", "BTC/USDT", ROWS, D("0.01"), 0, D("100.5"))
    first = track.next_candle()
    assert first.open_time == datetime.fromtimestamp(60, UTC)
    assert first.close == D("101")


def test_replay_wraps_continuing_time_and_price():
    track = ReplayTrack.after("binance", "BTC/USDT", ROWS, D("0.01"), None, None)
    played = [track.next_candle() for _ in range(5)]
    times = [int(c.open_time.timestamp() * 1000) for c in played]
    assert times == [0, 60_000, 120_000, 180_000, 240_000]  # one minute apart, forever
    # The second pass opens where the first closed (99), the shape scaled by 99 / 100.
    assert played[3].open == D("99")
    assert played[3].high == D("99.99")  # 101 × 0.99, rounded to the tick
    assert played[4].close == D("99.99")


def test_history_beyond_the_file_starts_a_scaled_pass():
    last = 10 * MINUTE_MS
    track = ReplayTrack.after("binance", "BTC/USDT", ROWS, D("0.01"), last, D("200"))
    candle = track.next_candle()
    assert int(candle.open_time.timestamp() * 1000) == last + MINUTE_MS
    assert candle.open == D("200")
    assert candle.close == D("201.00")


def test_the_replay_paces_itself():
    naps: list[float] = []
    track = ReplayTrack.after("binance", "BTC/USDT", ROWS, D("0.01"), None, None)
    feed = ReplayFeed([track], candles_per_second=D(2), sleep=naps.append)
    assert len(feed.next_batch(timeout=1)) == 1
    feed.next_batch(timeout=1)
    assert naps and 0 < naps[0] <= 0.5
    assert "replaying" in feed.describe()
