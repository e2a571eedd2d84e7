from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ai_advisor.models import AdvisorRun
from bots.admin import without_bot_figures


@admin.register(AdvisorRun)
class AdvisorRunAdmin(admin.ModelAdmin):
    list_display = (
        "id", "created_at", "owner", "bot", "symbol", "source", "model", "status", "decision",
        "input_tokens", "output_tokens", "cost_usd", "latency_ms",
    )  # fmt: skip
    list_filter = ("source", "status", "decision", "model", "symbol", "risk_preference")
    search_fields = ("symbol", "owner__email", "error", "decision_reason")
    list_select_related = ("owner", "bot")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AdvisorRun._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AdvisorRun]:
        return without_bot_figures(super().get_queryset(request), "bot")

    # Runs are a record of what the advisor said: made by asking, never typed or moved to
    # another owner or bot.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
