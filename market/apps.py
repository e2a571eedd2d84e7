from __future__ import annotations

from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from market import feed
        from market.status import poll_system_status

        if poll_system_status not in feed.companions:
            feed.companions.append(poll_system_status)
