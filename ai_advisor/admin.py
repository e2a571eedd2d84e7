from __future__ import annotations

from django.contrib import admin

from ai_advisor.models import AdvisorRun


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

    def has_add_permission(self, request: object) -> bool:
        return False  # runs are a record of what the advisor said: made by asking, not typed
