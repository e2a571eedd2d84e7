from __future__ import annotations

from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from market import feed
        from market.status import poll_system_status

        post_migrate.connect(_candle_policies, sender=self, dispatch_uid="market.timescale")

        if poll_system_status not in feed.companions:
            feed.companions.append(poll_system_status)


def _candle_policies(sender: object, using: str = "default", **kwargs: object) -> None:
    from market import timescale

    timescale.apply_policies(using)
