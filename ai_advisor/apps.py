from __future__ import annotations

from django.apps import AppConfig


class AiAdvisorConfig(AppConfig):
    name = "ai_advisor"
    default_auto_field = "django.db.models.BigAutoField"
