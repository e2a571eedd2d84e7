from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from notifications.models import Channel, Delivery


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    """Operators see who has which channels and can switch one off or delete it; never a
    secret (the encrypted column is in no form), and nobody types a user's token here."""

    list_display = ("owner", "label", "type", "enabled", "secret_hint", "created_at")
    list_filter = ("type", "enabled")
    list_select_related = ("owner",)
    search_fields = ("owner__email", "label")
    fields = ("owner", "label", "type", "enabled", "kinds", "url_hint", "chat_id", "secret_hint",
              "created_at")  # fmt: skip
    readonly_fields = ("owner", "label", "type", "kinds", "url_hint", "chat_id", "secret_hint",
                       "created_at")  # fmt: skip
    exclude = ("secret_encrypted", "url")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """What was sent, what failed and why (read-only)."""

    list_display = ("created_at", "channel", "kind", "subject", "status", "attempts",
                    "next_attempt_at", "last_error")  # fmt: skip
    list_filter = ("status", "kind", "channel__type")
    list_select_related = ("channel",)
    search_fields = ("channel__owner__email", "subject", "key")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
