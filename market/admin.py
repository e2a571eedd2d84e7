from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from market import history
from market.models import Candle, HistoryImport, LatestPrice, MarketRules


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


@admin.register(HistoryImport)
class HistoryImportAdmin(admin.ModelAdmin):
    """A new pair's background history imports: how far each got, and why one failed."""

    list_display = ("symbol", "exchange", "status", "progress", "since", "until", "error")
    list_filter = ("exchange", "status")
    search_fields = ("symbol",)
    readonly_fields = [f.name for f in HistoryImport._meta.fields]
    actions = ["resume_imports"]

    @admin.display(description="progress")
    def progress(self, job: HistoryImport) -> str:
        return job.progress()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # imports start when a pair is chosen (or with manage.py import_candles)

    @admin.action(description="Resume the selected imports")
    def resume_imports(self, request: HttpRequest, queryset: QuerySet[HistoryImport]) -> None:
        from market import tasks

        resumed = sum(history.resume(job, enqueue=tasks.import_history_task) for job in queryset)
        self.message_user(
            request, f"{resumed} import(s) queued again; done ones and running ones are left."
        )
