"""What every page shows about the market: where its prices come from now."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from market import services


def feed(request: HttpRequest) -> dict[str, Any]:
    """``feed_status`` (``market.services.FeedStatus``), read only when a template uses it."""
    return {"feed_status": SimpleLazyObject(services.feed_status)}
