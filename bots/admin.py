"""The operators' admin. What a bot's owner decides stays theirs: owner, mode, status, symbol
and keys are read-only, a config is checked by the one config schema (bots.config), and the
ledger (orders, trades, events, snapshots) is a record, not a form. Lists never read a bot's
figures or engine state, and what they show of a config cannot raise, so one odd row cannot
break the pages of the others."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from bots import config as schema
from bots import services
from bots.errors import BotError, ConfigError
from bots.models import (
    Bot,
    BotEvent,
    EquitySnapshot,
    LiveGateWaiver,
    Order,
    PaperBalance,
    Trade,
)

# A bot's figures and engine state: what a list or a link to a bot never needs, and what an
# odd row holds oddities in (a grid state is also large). Lists do not load them.
BOT_FIGURES = tuple(
    f.name
    for f in Bot._meta.concrete_fields
    if isinstance(f, models.DecimalField | models.JSONField) and f.name != "config"
)


def without_bot_figures(queryset: QuerySet[Any], via: str) -> QuerySet[Any]:
    """``queryset`` with the bot behind ``via`` joined, its figures not loaded."""
    return queryset.select_related(via).defer(*(f"{via}__{name}" for name in BOT_FIGURES))


def grid_summary(bot: Bot) -> str:
    """The config as "lower–upper × levels, capital", whatever it holds: it cannot raise."""
    config = bot.config if isinstance(bot.config, dict) else {}
    keys = ("lower_bound", "upper_bound", "grid_levels", "capital")
    lower, upper, levels, capital = (str(config.get(key, "?"))[:20] for key in keys)
    return f"{lower}–{upper} × {levels}, {capital}"


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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TradeInline(admin.TabularInline):
    model = Trade
    extra = 0
    can_delete = False
    fields = ("slot", "amount", "buy_price", "sell_price", "profit", "fees", "closed_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BotAdminForm(forms.ModelForm):
    class Meta:
        model = Bot
        fields = ("name", "config")

    def clean_config(self) -> dict[str, str]:
        """A changed config passes the schema the form and the services use, like theirs."""
        config = self.cleaned_data["config"]
        bot = self.instance
        if config == bot.config:
            return config
        if not isinstance(config, dict):
            raise forms.ValidationError("A bot config is a JSON object of its settings.")
        if bot.is_running:
            raise forms.ValidationError("Stop the bot before changing its grid.")
        config = schema.normalise(config)
        try:
            schema.validate(config, exchange=bot.exchange, symbol=bot.symbol)
        except ConfigError as e:
            raise forms.ValidationError(f"{e.field}: {e}" if e.field else str(e)) from None
        return config


class BotChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, *args: Any, **kwargs: Any) -> QuerySet[Bot]:
        return super().get_queryset(request, *args, **kwargs).defer(*BOT_FIGURES)


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    form = BotAdminForm
    list_display = ("__str__", "owner", "symbol", "mode", "status", "grid", "status_reason",
                    "started_at")  # fmt: skip
    list_filter = (
        "status", "mode", "exchange", "symbol", ("archived_at", admin.EmptyFieldListFilter),
    )  # fmt: skip
    search_fields = ("name", "symbol", "owner__email")
    list_select_related = ("owner",)
    # Only the name and a stopped bot's config are an operator's to change: moving a bot to
    # another owner, or switching its mode, status, market or keys, is not (a live bot moved
    # to another owner would trade on the first owner's keys).
    readonly_fields = tuple(
        f.name for f in Bot._meta.concrete_fields if f.name not in {"id", "name", "config"}
    )
    inlines = [OrderInline, TradeInline]
    actions = ["stop_bots", "stop_and_sell_bots", "emergency_stop_owners"]

    @admin.display(description="grid")
    def grid(self, bot: Bot) -> str:
        return grid_summary(bot)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BotChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        running = obj is not None and obj.is_running
        return (*self.readonly_fields, "config") if running else self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # bots are made by their owners (bots.services.create_bot)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A running bot has orders on the book: stop it first (an action), then delete it.
        running = obj is not None and obj.is_running
        return not running and super().has_delete_permission(request, obj)

    @admin.action(description="Stop the selected bots (cancel their resting orders)")
    def stop_bots(self, request: HttpRequest, queryset: QuerySet[Bot], sell: bool = False) -> None:
        stopped = 0
        for bot in Bot.objects.filter(pk__in=queryset.values("pk")).running():
            try:
                services.stop_bot(bot, reason=f"stopped by operator {request.user}", sell=sell)
                stopped += 1
            except BotError as e:
                self.message_user(request, str(e), messages.ERROR)
        sold = " and sold their coins at market" if sell else ""
        self.message_user(request, f"Stopped {stopped} bot(s){sold}.", messages.SUCCESS)

    @admin.action(description="Stop the selected bots and sell their coins at market")
    def stop_and_sell_bots(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        self.stop_bots(request, queryset, sell=True)

    @admin.action(description="Emergency stop: every bot of the selected bots' owners")
    def emergency_stop_owners(self, request: HttpRequest, queryset: QuerySet[Bot]) -> None:
        owners = get_user_model().objects.filter(pk__in=queryset.values("owner_id"))
        total = 0
        for owner in owners:
            try:
                total += services.emergency_stop(
                    owner, reason=f"emergency stop by operator {request.user}"
                )
            except BotError as e:
                self.message_user(request, f"{owner}: {e}", messages.ERROR)
        self.message_user(request, f"Emergency stop: {total} bot(s) stopped.", messages.WARNING)


class LedgerAdmin(admin.ModelAdmin):
    """A record of what happened (written by the services): viewed, never typed or moved to
    another bot; the bot is shown without loading its figures."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return without_bot_figures(super().get_queryset(request), "bot")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(LedgerAdmin):
    list_display = ("id", "bot", "slot", "side", "kind", "price", "amount", "status", "created_at")
    list_filter = ("status", "side", "kind", "bot__mode")
    search_fields = ("client_order_id", "exchange_order_id", "bot__owner__email")


@admin.register(Trade)
class TradeAdmin(LedgerAdmin):
    list_display = ("id", "bot", "slot", "amount", "buy_price", "sell_price", "profit", "closed_at")
    list_filter = ("bot__mode",)


@admin.register(BotEvent)
class BotEventAdmin(LedgerAdmin):
    list_display = ("at", "bot", "kind", "message")
    list_filter = ("kind",)


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(LedgerAdmin):
    list_display = ("at", "bot", "price", "equity")


@admin.register(PaperBalance)
class PaperBalanceAdmin(admin.ModelAdmin):
    """A user's paper wallet: an operator may top up ``free``; whose it is, its asset and what
    running bots hold of it (``locked``) are not theirs to change."""

    list_display = ("owner", "asset", "free", "locked")
    list_select_related = ("owner",)
    search_fields = ("owner__email",)
    readonly_fields = ("owner", "asset", "locked")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made on first use (bots.ledger.paper_balance)


@admin.register(LiveGateWaiver)
class LiveGateWaiverAdmin(admin.ModelAdmin):
    """Lift the paper-first gate for one trader: the operator gives the reason; who lifted it
    and when are recorded, never typed. A waiver is a record: delete it to close the gate."""

    list_display = ("user", "reason", "granted_by", "granted_at")
    list_select_related = ("user", "granted_by")
    search_fields = ("user__email", "reason")
    raw_id_fields = ("user",)
    fields = ("user", "reason", "granted_by", "granted_at")
    readonly_fields = ("granted_by", "granted_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.granted_by = request.user  # type: ignore[assignment]
        obj.granted_at = timezone.now()
        super().save_model(request, obj, form, change)
