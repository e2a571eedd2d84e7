from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from market import feed
        from market.signals import candles_closed

        candles_closed.connect(wake_crossed_bots, dispatch_uid="bots.wake_crossed_bots")
        if running_bot_markets not in feed.symbol_providers:
            feed.symbol_providers.append(running_bot_markets)
        from bots.tasks import run_user_streams

        if run_user_streams not in feed.companions:
            feed.companions.append(run_user_streams)


def running_bot_markets() -> list[tuple[str, str]]:
    from bots.models import Bot

    return list(Bot.objects.running().values_list("exchange", "symbol").distinct())


def wake_crossed_bots(sender: Any, *, symbol: str, low: Any, high: Any, **kwargs: Any) -> None:
    """The feed stored candles: run a cycle now for every bot whose next order they crossed."""
    from bots.models import Bot
    from bots.tasks import wake_bots

    wake_bots(list(Bot.objects.crossed_by(symbol, low, high).values_list("pk", flat=True)))
