from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from bots import services
from bots.errors import BotError
from bots.models import Bot, BotEvent, EquitySnapshot, Order, PaperBalance, Trade


class OrderInline(admin.TabularInline):
    model = Order
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("slot", "side", "kind", "price", "amount", "filled", "fee", "status", "created_at")
    readonly_fields = fields
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).filter(status__in=Order.RESTING)


class TradeInline(admin.TabularInline):
    model = Trade
    extra = 0
    can_delete = False
    fields = ("slot", "amount", "buy_price", "sell_price", "profit", "fees", "closed_at")
    readonly_fields = fields


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "symbol", "mode", "status", "status_reason", "started_at")
    list_filter = ("status", "mode", "exchange", "symbol")
    search_fields = ("name", "symbol", "owner__email")
    list_select_related = ("owner",)
    readonly_fields = (
        "credential",  # a user's own keys: operators never switch them
        "fill_cursor_ms",
        "engine_state",
        "generation",
        "start_price",
        "cursor",
        "next_buy_price",
        "next_sell_price",
        "peak_equity",
        "max_drawdown",
        "last_equity",
        "last_price",
        "chain_token",
        "started_at",
        "stopped_at",
        "created_at",
        "updated_at",
    )
    inlines = [OrderInline, TradeInline]
    actions = ["stop_bots", "emergency_stop_owners"]

    @admin.action(description="Stop the selected bots (cancel their resting orders)")
    def stop_bots(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        stopped = 0
        for bot in queryset.running():
            try:
                services.stop_bot(bot, reason=f"stopped by operator {request.user}")
                stopped += 1
            except BotError as e:
                self.message_user(request, str(e), messages.ERROR)
        self.message_user(request, f"Stopped {stopped} bot(s).", messages.SUCCESS)

    @admin.action(description="Emergency stop: every bot of the selected bots' owners")
    def emergency_stop_owners(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        owners = {bot.owner for bot in queryset.select_related("owner")}
        total = 0
        for owner in owners:
            try:
                total += services.emergency_stop(
                    owner, reason=f"emergency stop by operator {request.user}"
                )
            except BotError as e:
                self.message_user(request, f"{owner}: {e}", messages.ERROR)
        self.message_user(request, f"Emergency stop: {total} bot(s) stopped.", messages.WARNING)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "bot", "slot", "side", "kind", "price", "amount", "status", "created_at")
    list_filter = ("status", "side", "kind", "bot__mode")
    search_fields = ("client_order_id", "exchange_order_id", "bot__owner__email")
    list_select_related = ("bot",)
    raw_id_fields = ("bot",)


@admin.register(Trade)
class TradeAdmin(admin.ModelAdmin):
    list_display = ("id", "bot", "slot", "amount", "buy_price", "sell_price", "profit", "closed_at")
    list_filter = ("bot__mode",)
    list_select_related = ("bot",)
    raw_id_fields = ("bot", "buy_order", "sell_order")


@admin.register(BotEvent)
class BotEventAdmin(admin.ModelAdmin):
    list_display = ("at", "bot", "kind", "message")
    list_filter = ("kind",)
    list_select_related = ("bot",)
    raw_id_fields = ("bot",)


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(admin.ModelAdmin):
    list_display = ("at", "bot", "price", "equity")
    raw_id_fields = ("bot",)


@admin.register(PaperBalance)
class PaperBalanceAdmin(admin.ModelAdmin):
    list_display = ("owner", "asset", "free", "locked")
    search_fields = ("owner__email",)
