from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import models
from django.db.models import Q

from market.fields import MoneyField

PRICE = {"max_digits": 30, "decimal_places": 12}


class CandleQuerySet(models.QuerySet["Candle"]):
    def for_series(self, exchange: str, symbol: str, timeframe: str = "1m") -> CandleQuerySet:
        return self.filter(exchange=exchange, symbol=symbol, timeframe=timeframe)

    def between(self, start: datetime | None, end: datetime | None) -> CandleQuerySet:
        qs = self
        if start is not None:
            qs = qs.filter(open_time__gte=start)
        if end is not None:
            qs = qs.filter(open_time__lt=end)
        return qs


class Candle(models.Model):
    """One OHLCV candle; prices in quote per base, volume in base."""

    exchange = models.CharField(max_length=30)
    symbol = models.CharField(max_length=30)
    timeframe = models.CharField(max_length=5, default="1m")
    open_time = models.DateTimeField()
    open = MoneyField(**PRICE)
    high = MoneyField(**PRICE)
    low = MoneyField(**PRICE)
    close = MoneyField(**PRICE)
    volume = models.DecimalField(max_digits=36, decimal_places=12)

    objects = CandleQuerySet.as_manager()

    class Meta:
        ordering = ["exchange", "symbol", "timeframe", "open_time"]
        constraints = [
            # Also the range-query index: (series, time) is exactly how candles are read.
            models.UniqueConstraint(
                fields=["exchange", "symbol", "timeframe", "open_time"], name="one_candle_per_time"
            ),
            models.CheckConstraint(
                condition=Q(low__gt=0) & Q(low__lte=models.F("high")), name="candle_low_high"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe} {self.open_time:%Y-%m-%d %H:%M}"


class MarketRules(models.Model):
    """A market's filters, from the exchange through ccxt (or the bundled offline snapshot)."""

    class Source(models.TextChoices):
        EXCHANGE = "exchange", "Exchange"
        SNAPSHOT = "snapshot", "Offline snapshot"

    exchange = models.CharField(max_length=30)
    symbol = models.CharField(max_length=30)
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=20)
    tick = MoneyField(**PRICE)
    step = MoneyField(**PRICE)
    min_notional = MoneyField(**PRICE)
    min_amount = MoneyField(**PRICE, default=Decimal("0"))
    # The exchange's price filter (Binance PRICE_FILTER minPrice/maxPrice); 0: not stated.
    min_price = MoneyField(**PRICE, default=Decimal("0"))
    max_price = MoneyField(**PRICE, default=Decimal("0"))
    fee = models.DecimalField(max_digits=10, decimal_places=8, default=Decimal("0.001"))
    # The rest of the exchange's filters (Binance); 0 or empty: not stated. LOT_SIZE maxQty,
    # NOTIONAL maxNotional, PERCENT_PRICE_BY_SIDE's multipliers of the average price (a buy
    # between bid_down and bid_up times it, a sell between ask_down and ask_up), MAX_NUM_ORDERS
    # (open orders per account on the pair), and the symbol's status (TRADING, HALT, BREAK).
    max_amount = MoneyField(**PRICE, default=Decimal("0"))
    max_notional = MoneyField(**PRICE, default=Decimal("0"))
    bid_up = MoneyField(**PRICE, default=Decimal("0"))
    bid_down = MoneyField(**PRICE, default=Decimal("0"))
    ask_up = MoneyField(**PRICE, default=Decimal("0"))
    ask_down = MoneyField(**PRICE, default=Decimal("0"))
    max_orders = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.EXCHANGE)
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["exchange", "symbol"]
        verbose_name_plural = "market rules"
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="one_rules_per_market"),
            models.CheckConstraint(
                condition=Q(tick__gt=0) & Q(step__gt=0) & Q(min_notional__gte=0),
                name="market_rules_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} (tick {self.tick}, step {self.step})"


class LatestPrice(models.Model):
    """The last price the feed saw for a market, and its market time."""

    exchange = models.CharField(max_length=30)
    symbol = models.CharField(max_length=30)
    price = MoneyField(**PRICE)
    at = models.DateTimeField()
    replayed = models.BooleanField(default=False)

    class Meta:
        ordering = ["exchange", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="one_latest_price")
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price} at {self.at:%Y-%m-%d %H:%M}"


class HistoryImport(models.Model):
    """The background import of a market's recent candles from the exchange (``market.history``),
    one row per market: its window, how far it got, how it ended. ``cursor`` is where it goes on:
    everything in [since, cursor) has been asked of the exchange and stored."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting to import"
        RUNNING = "running", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"

    exchange = models.CharField(max_length=30)
    symbol = models.CharField(max_length=30)
    timeframe = models.CharField(max_length=5, default="1m")
    since = models.DateTimeField()
    until = models.DateTimeField()
    cursor = models.DateTimeField()
    expected = models.PositiveIntegerField(help_text="Candles in the window.")
    stored = models.PositiveIntegerField(default=0, help_text="Candles of the window stored.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    # The worker importing it (a token), and when it last stored a page (or was queued): a
    # worker that died stops beating, and another may take the import over.
    worker = models.CharField(max_length=32, blank=True)
    beat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["exchange", "symbol", "timeframe"]
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "timeframe"], name="one_history_import_per_market"
            ),
            models.CheckConstraint(condition=Q(since__lte=models.F("until")), name="import_window"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe} history ({self.status})"

    @property
    def active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        """0..100; 100 only once done (the exchange may have fewer candles than the window)."""
        if self.status == self.Status.DONE:
            return 100
        if not self.expected:
            return 0
        return min(99, self.stored * 100 // self.expected)

    def progress(self) -> str:
        """In words: ``12,000 of 43,200 candles (27 %)``."""
        return f"{self.stored:,} of {self.expected:,} candles ({self.percent} %)"

    def in_words(self) -> str:
        """What a page says beside the pair."""
        days = max(1, round((self.until - self.since).total_seconds() / 86400))
        span = "the last day" if days == 1 else f"the last {days} days"
        if self.status == self.Status.QUEUED:
            return f"{self.symbol} history: waiting to import {span}."
        if self.status == self.Status.RUNNING:
            return f"{self.symbol} history: importing {span}, {self.progress()}."
        if self.status == self.Status.DONE:
            return (
                f"{self.symbol} history: {self.stored:,} candles imported, "
                f"{self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC."
            )
        return (
            f"{self.symbol} history import failed: {self.error} So far {self.progress()}; "
            "choose the pair again to resume."
        )
