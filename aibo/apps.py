from __future__ import annotations

from django.apps import AppConfig


class AiboConfig(AppConfig):
    name = "aibo"

    def ready(self) -> None:
        from aibo import (
            checks,  # noqa: F401  (registers the deploy checks)
            metrics,
        )

        metrics.watch_exchanges()
