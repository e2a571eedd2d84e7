"""Indicators over stored candles: plain functions of prices, and the snapshot the advisor reads.

Every function takes oldest-first sequences of Decimal and returns Decimal, so the figures are
the same on every machine. The snapshot computes them on hourly candles built from the stored
1-minute ones (RSI(14) and ATR(14) of minutes would describe the last quarter of an hour, not
the market a grid lives in for days).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from itertools import groupby

from market.models import Candle
from market.precision import canonical
from market.services import MarketDataError

ZERO = Decimal(0)
HUNDRED = Decimal(100)
MinuteRow = tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]


@dataclass(frozen=True)
class Bar:
    """One aggregated candle: prices in quote per base, volume in base."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal  # sum of each minute's volume x close: the quote turnover


# --- the indicators ---------------------------------------------------------------------------


def last_price(closes: Sequence[Decimal]) -> Decimal:
    if not closes:
        raise MarketDataError("no candles: there is no last price")
    return closes[-1]


def rsi(closes: Sequence[Decimal], period: int = 14) -> Decimal:
    """Wilder's relative strength index (0-100) of the last close.

    The first average gain and loss are the simple means of the first ``period`` changes; each
    later change is smoothed in as (previous x (period - 1) + change) / period. No losses at
    all is 100; no gains is 0.
    """
    _need(closes, period + 1, f"RSI({period})")
    changes = [b - a for a, b in zip(closes, closes[1:], strict=False)]
    gain = sum((max(c, ZERO) for c in changes[:period]), ZERO) / period
    loss = sum((max(-c, ZERO) for c in changes[:period]), ZERO) / period
    for c in changes[period:]:
        gain = (gain * (period - 1) + max(c, ZERO)) / period
        loss = (loss * (period - 1) + max(-c, ZERO)) / period
    if loss == 0:
        return HUNDRED if gain > 0 else Decimal(50)
    return HUNDRED - HUNDRED / (1 + gain / loss)


def true_ranges(
    highs: Sequence[Decimal], lows: Sequence[Decimal], closes: Sequence[Decimal]
) -> list[Decimal]:
    """max(high - low, |high - previous close|, |low - previous close|), from the second bar."""
    return [
        max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1]))
        for i in range(1, len(closes))
    ]


def atr(
    highs: Sequence[Decimal],
    lows: Sequence[Decimal],
    closes: Sequence[Decimal],
    period: int = 14,
) -> Decimal:
    """Wilder's average true range: the mean of the first ``period`` true ranges, then smoothed
    as (previous x (period - 1) + true range) / period. In quote per base."""
    _need(closes, period + 1, f"ATR({period})")
    ranges = true_ranges(highs, lows, closes)
    value = sum(ranges[:period], ZERO) / period
    for tr in ranges[period:]:
        value = (value * (period - 1) + tr) / period
    return value


def volatility(closes: Sequence[Decimal], *, periods_per_day: int) -> Decimal:
    """The sample standard deviation of log returns between closes, scaled to one day by
    sqrt(periods_per_day): 0.02 means the price typically moves about 2 % in a day."""
    _need(closes, 3, "volatility")
    with localcontext() as ctx:
        ctx.prec = 28
        returns = [(b / a).ln() for a, b in zip(closes, closes[1:], strict=False)]
        mean = sum(returns, ZERO) / len(returns)
        variance = sum(((r - mean) ** 2 for r in returns), ZERO) / (len(returns) - 1)
        return (variance * periods_per_day).sqrt()


def swing_levels(
    highs: Sequence[Decimal], lows: Sequence[Decimal], price: Decimal, *, reach: int = 3
) -> tuple[Decimal, Decimal]:
    """Support and resistance from recent swing points.

    A swing low is a bar whose low is below the lows of the ``reach`` bars on each side; a
    swing high the same with highs. Support is the highest swing low below the price,
    resistance the lowest swing high above it; with no such swing, the window's lowest low or
    highest high stands in.
    """
    _need(lows, 2 * reach + 1, "swing points")
    n = len(lows)
    swing_lows = [
        lows[i]
        for i in range(reach, n - reach)
        if all(lows[i] < lows[j] for j in range(i - reach, i + reach + 1) if j != i)
    ]
    swing_highs = [
        highs[i]
        for i in range(reach, n - reach)
        if all(highs[i] > highs[j] for j in range(i - reach, i + reach + 1) if j != i)
    ]
    below = [p for p in swing_lows if p < price]
    above = [p for p in swing_highs if p > price]
    return (max(below) if below else min(lows), min(above) if above else max(highs))


def price_range(bars: Sequence[Bar], since: datetime) -> tuple[Decimal, Decimal]:
    """The lowest low and highest high of the bars opened at or after ``since``."""
    window = [b for b in bars if b.open_time >= since]
    if not window:
        raise MarketDataError(f"no candles since {since:%Y-%m-%d %H:%M}")
    return min(b.low for b in window), max(b.high for b in window)


def volume_since(bars: Sequence[Bar], since: datetime) -> tuple[Decimal, Decimal]:
    """The volume traded since ``since``: (base, quote)."""
    window = [b for b in bars if b.open_time >= since]
    return sum((b.volume for b in window), ZERO), sum((b.quote_volume for b in window), ZERO)


def _need(values: Sequence[object], n: int, what: str) -> None:
    if len(values) < n:
        raise MarketDataError(f"{what} needs {n} candles; there are {len(values)}")


# --- from stored candles ----------------------------------------------------------------------


def hourly_bars(rows: Iterable[MinuteRow]) -> list[Bar]:
    """1-minute rows (open time, open, high, low, close, volume), oldest first, into hourly
    bars (each hour that has at least one minute)."""
    bars = []
    for hour, group in groupby(rows, key=lambda r: r[0].replace(minute=0, second=0, microsecond=0)):
        minutes = list(group)
        bars.append(
            Bar(
                open_time=hour,
                open=minutes[0][1],
                high=max(r[2] for r in minutes),
                low=min(r[3] for r in minutes),
                close=minutes[-1][4],
                volume=sum((r[5] for r in minutes), ZERO),
                quote_volume=sum((r[5] * r[4] for r in minutes), ZERO),
            )
        )
    return bars


@dataclass(frozen=True)
class MarketSnapshot:
    """What the market looks like at ``at`` (the close of the last stored candle)."""

    exchange: str
    symbol: str
    at: datetime
    price: Decimal
    rsi14: Decimal  # on hourly closes
    volatility_daily: Decimal  # a fraction of the price
    atr14: Decimal  # hourly, in quote per base
    support: Decimal
    resistance: Decimal
    volume_24h_base: Decimal
    volume_24h_quote: Decimal
    range_7d: tuple[Decimal, Decimal]
    range_30d: tuple[Decimal, Decimal]
    candles_used: int  # 1-minute candles read


def market_snapshot(
    exchange: str, symbol: str, *, at: datetime | None = None, days: int = 30
) -> MarketSnapshot:
    """The indicators of a market over the last ``days`` of stored 1-minute candles (up to
    ``at``, default the last stored candle). Needs at least 15 hours of history."""
    series = Candle.objects.for_series(exchange, symbol, "1m")
    if at is None:
        last = series.order_by("-open_time").values_list("open_time", flat=True).first()
        if last is None:
            raise MarketDataError(
                f"no stored {symbol} candles on {exchange}: import them first "
                "(manage.py import_candles)"
            )
        at = last + timedelta(minutes=1)
    rows = list(
        series.between(at - timedelta(days=days), at)
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close", "volume")
    )
    bars = hourly_bars(rows)
    if len(bars) < 15:
        raise MarketDataError(
            f"{symbol} on {exchange} has {len(bars)} hours of candles before "
            f"{at:%Y-%m-%d %H:%M}; the indicators need at least 15"
        )
    closes = [b.close for b in bars]
    highs = [b.high for b in bars]
    lows = [b.low for b in bars]
    price = canonical(rows[-1][4])
    week = at - timedelta(days=7)
    recent = [b for b in bars if b.open_time >= week]
    support, resistance = swing_levels([b.high for b in recent], [b.low for b in recent], price)
    # Volume and ranges to the minute (hourly bars would start up to 59 minutes early).
    minutes = [Bar(t, o, h, lo, c, v, v * c) for t, o, h, lo, c, v in rows]
    volume_base, volume_quote = volume_since(minutes, at - timedelta(hours=24))
    return MarketSnapshot(
        exchange=exchange,
        symbol=symbol,
        at=at.astimezone(UTC),
        price=price,
        # Readable figures: RSI to 0.01, volatility to 0.0001 %, ATR to 1e-8 of the quote.
        rsi14=canonical(rsi(closes, 14).quantize(Decimal("0.01"))),
        volatility_daily=canonical(
            volatility(closes, periods_per_day=24).quantize(Decimal("0.000001"))
        ),
        atr14=canonical(atr(highs, lows, closes, 14).quantize(Decimal("0.00000001"))),
        support=canonical(support),
        resistance=canonical(resistance),
        volume_24h_base=volume_base,
        volume_24h_quote=volume_quote,
        range_7d=_canonical_pair(price_range(minutes, week)),
        range_30d=_canonical_pair(price_range(minutes, at - timedelta(days=days))),
        candles_used=len(rows),
    )


def _canonical_pair(pair: tuple[Decimal, Decimal]) -> tuple[Decimal, Decimal]:
    return canonical(pair[0]), canonical(pair[1])
