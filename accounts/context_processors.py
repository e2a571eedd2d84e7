"""What every signed-in page says about the user's exchange keys: those this server can no
longer decrypt (``templates/accounts/_unreadable_credentials.html``, included by base.html)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts import services


def unreadable_credentials(request: HttpRequest) -> dict[str, Any]:
    """``unreadable_credentials``: the user's own, read only when a template uses it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "unreadable_credentials": SimpleLazyObject(lambda: services.unreadable_credentials(user))
    }
