"""The JSON API's market data: ``/api/market/price|indicators|history/{symbol}``.

A symbol travels in a path as ``BTCUSDT`` or ``BTC-USDT`` (a slash cannot) and is answered as
``BTC/USDT``. Prices come from the feed's hot price (``services.price_now``); indicators and
history from the stored one-minute candles, history grouped into the asked interval here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from aibo.api_common import errors
from market import pairs, services
from market.indicators import market_snapshot
from market.models import Candle

EXCHANGE = "binance"
router = Router(tags=["market"])

INTERVALS = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440}
Interval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
MAX_HISTORY_MINUTES = 92 * 24 * 60  # what one answer may group: about a quarter of 1m candles


class PriceOut(Schema):
    symbol: str
    price: Decimal
    timestamp: datetime


class IndicatorsOut(Schema):
    rsi: Decimal = Field(description="RSI(14) of hourly closes")
    volatility: Decimal = Field(description="daily volatility, a fraction of the price")
    support: Decimal
    resistance: Decimal
    volume_24h: Decimal = Field(description="in the base asset")


class CandleOut(Schema):
    time: datetime = Field(description="the interval's opening time")
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Field(description="in the base asset")


class HistoryQuery(Schema):
    interval: Interval = "1h"
    limit: int = Field(default=100, ge=1, le=1000)


def symbol_of(text: str) -> str:
    """``BTCUSDT`` / ``BTC-USDT`` / ``btc_usdt`` → ``BTC/USDT``; a 404 for a pair we do not know."""
    symbol = pairs.listed(EXCHANGE, text)
    if symbol is None:
        raise HttpError(
            404, f"No pair {text[:30]!r} on {EXCHANGE}: write it as BTCUSDT or BTC-USDT."
        )
    return symbol


@router.get(
    "/price/{symbol}", response={200: PriceOut, **errors(404)}, summary="A pair's latest price"
)
def price(request: HttpRequest, symbol: str) -> PriceOut:
    pair = symbol_of(symbol)
    now = services.price_now(EXCHANGE, pair)
    if now is None:
        raise HttpError(404, f"No price of {pair} yet: the feed has not seen it.")
    return PriceOut(symbol=pair, price=now.price, timestamp=now.at.astimezone(UTC))


@router.get(
    "/indicators/{symbol}",
    response={200: IndicatorsOut, **errors(404)},
    summary="A pair's indicators",
)
def indicators(request: HttpRequest, symbol: str) -> IndicatorsOut:
    pair = symbol_of(symbol)
    try:
        snap = market_snapshot(EXCHANGE, pair)
    except services.MarketDataError as e:
        raise HttpError(404, f"{e}.") from None
    return IndicatorsOut(
        rsi=snap.rsi14,
        volatility=snap.volatility_daily,
        support=snap.support,
        resistance=snap.resistance,
        volume_24h=snap.volume_24h_base,
    )


@router.get(
    "/history/{symbol}",
    response={200: list[CandleOut], **errors(404, 422)},
    summary="A pair's candles",
)
def history(request: HttpRequest, symbol: str, query: Query[HistoryQuery]) -> list[CandleOut]:
    """The last ``limit`` candles of ``interval``, oldest first, up to the last stored minute
    (the last one may still be forming)."""
    pair = symbol_of(symbol)
    minutes = INTERVALS[query.interval]
    if minutes * query.limit > MAX_HISTORY_MINUTES:
        raise HttpError(
            422, f"limit: at most {MAX_HISTORY_MINUTES // minutes} candles of {query.interval}."
        )
    series = Candle.objects.for_series(EXCHANGE, pair, "1m")
    last = series.order_by("-open_time").values_list("open_time", flat=True).first()
    if last is None:
        return []
    step = timedelta(minutes=minutes)
    first = _bucket(last, minutes) - step * (query.limit - 1)
    rows = series.between(first, last + timedelta(minutes=1)).order_by("open_time")
    return list(
        group(rows.values_list("open_time", "open", "high", "low", "close", "volume"), minutes)
    )


def _bucket(at: datetime, minutes: int) -> datetime:
    epoch = int(at.timestamp()) // 60
    return datetime.fromtimestamp((epoch - epoch % minutes) * 60, UTC)


def group(
    rows: Iterable[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]], minutes: int
) -> Iterable[CandleOut]:
    """One-minute rows (oldest first) as candles of ``minutes``: first open, highest high,
    lowest low, last close, summed volume."""
    current: CandleOut | None = None
    for at, o, h, lo, c, v in rows:
        start = _bucket(at, minutes)
        if current is not None and current.time == start:
            current.high = max(current.high, h)
            current.low = min(current.low, lo)
            current.close = c
            current.volume += v
            continue
        if current is not None:
            yield current
        current = CandleOut(time=start, open=o, high=h, low=lo, close=c, volume=v)
    if current is not None:
        yield current
