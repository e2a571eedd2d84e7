"""Per-client limits on the views anyone signed in (or not) can hammer: previews, candle data,
advisor runs. Per-user limits live with their services; these count by client address
(``accounts.throttle.client_ip``, proxies only from ``TRUSTED_PROXIES``), so many accounts
from one address share one budget."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts import throttle


def per_client(scope: str, *, limit_setting: str, window: int) -> Callable[..., Any]:
    """At most ``settings.<limit_setting>`` requests per ``window`` seconds from one client;
    beyond that a 429 with ``Retry-After`` (JSON for ``json`` views, words otherwise)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            limit = getattr(settings, limit_setting)
            wait = throttle.hit(scope, throttle.client_ip(request), limit, window)
            if wait is None:
                return view(request, *args, **kwargs)
            message = f"Too many requests from your address; try again {throttle.wait_words(wait)}."
            if request.path.endswith(".json") or request.path.startswith("/api/"):
                response: HttpResponse = JsonResponse({"error": message}, status=429)
            else:
                response = HttpResponse(message, status=429, content_type="text/plain")
            return throttle.too_many(response, wait)

        return limited

    return decorate
