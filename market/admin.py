from __future__ import annotations

from django.contrib import admin

from market.models import Candle, LatestPrice, MarketRules


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ("symbol", "exchange", "timeframe", "open_time", "open", "high", "low", "close")
    list_filter = ("exchange", "symbol", "timeframe")
    date_hierarchy = "open_time"
    show_full_result_count = False  # a count over millions of candles is slow


@admin.register(MarketRules)
class MarketRulesAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "exchange",
        "tick",
        "step",
        "min_notional",
        "fee",
        "source",
        "fetched_at",
    )
    list_filter = ("exchange", "source")


@admin.register(LatestPrice)
class LatestPriceAdmin(admin.ModelAdmin):
    list_display = ("symbol", "exchange", "price", "at", "replayed")
