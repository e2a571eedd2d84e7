"""Closed 1-minute candles as the market feeds hand them over, and one REST page of them.

Apart from ``market.feed`` so that the websocket feed (``market.streams``) uses them without
importing the module that chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

MINUTE_MS = 60_000


@dataclass(frozen=True)
class ClosedCandle:
    exchange: str
    symbol: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def fetch_candles(
    client: Any,
    exchange: str,
    symbol: str,
    since_ms: int | None,
    *,
    until_ms: int | None = None,
    limit: int = 1000,
) -> tuple[list[ClosedCandle], ClosedCandle | None]:
    """One page of 1-minute candles over REST (ccxt ``fetch_ohlcv``, which spends the request
    budget) from ``since_ms`` (the newest page without it): (the closed ones, the one still
    open). The exchange lists the open candle last, so the newest row of a page that is not
    full is open, unless ``until_ms`` (a candle known to be later) says every row before it is
    closed. Raises the exchange errors of ``market.exchange``."""
    from market.exchange import translated

    with translated(f"candles of {symbol}", exchange_id=exchange):
        rows = client.fetch_ohlcv(symbol, "1m", since=since_ms, limit=limit)
    candles = [
        ClosedCandle(
            exchange, symbol, datetime.fromtimestamp(ts / 1000, UTC),
            *(Decimal(str(x)) for x in (o, h, low, c, v)),
        )
        for ts, o, h, low, c, v in rows
        if since_ms is None or ts >= since_ms
    ]  # fmt: skip
    if until_ms is not None:
        return [c for c in candles if candle_ms(c) < until_ms], None
    if candles and len(rows) < limit:
        return candles[:-1], candles[-1]
    return candles, None


def candle_ms(candle: ClosedCandle) -> int:
    """A candle's open time in epoch milliseconds."""
    return int(candle.open_time.timestamp() * 1000)
