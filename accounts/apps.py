from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import two_factor  # noqa: F401  (connects its signals)
        from accounts.throttle import check_trusted_proxies

        checks.register(check_trusted_proxies)
