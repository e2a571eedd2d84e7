from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from accounts.models import ExchangeCredential, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin, adapted to the email login (there is no username)."""

    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(ExchangeCredential)
class ExchangeCredentialAdmin(admin.ModelAdmin):
    """Operators see whose keys exist and whether they work, never the keys themselves: the
    encrypted columns are not in any form, nothing is editable, and nobody can type in a
    user's keys here. Deleting is allowed (revoking keys a user reports as leaked)."""

    list_display = (
        "owner",
        "label",
        "exchange",
        "testnet",
        "key_hint",
        "created_at",
        "verified_at",
    )
    list_filter = ("exchange", "testnet")
    list_select_related = ("owner",)
    search_fields = ("owner__email", "label")
    fields = (
        "owner",
        "label",
        "exchange",
        "testnet",
        "key_hint",
        "created_at",
        "verified_at",
        "check_warning",
    )
    readonly_fields = fields
    exclude = ("api_key_encrypted", "secret_encrypted")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
