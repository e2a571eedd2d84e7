from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wakes: the apps below this one say something changed (signals); this app listens.
        # They never import it, so a broken or slow channel cannot reach their code. Importing
        # the tasks registers the periodic ones with Huey in every process: the embedded
        # ``serve`` (whose consumer looks for no tasks modules) as well as ``run_huey``.
        from django.db.models.signals import post_save

        import notifications.tasks  # noqa: F401
        from ai_advisor.models import AdvisorRun
        from bots.push import bot_published
        from notifications import wake

        bot_published.connect(wake.on_bot_published, dispatch_uid="notifications.bot")
        post_save.connect(
            wake.on_advisor_run_saved, sender=AdvisorRun, dispatch_uid="notifications.advisor"
        )
