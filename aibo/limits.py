"""Limits on what one user or one client can ask of the server.

Per client, on the views anyone can hammer (previews, candle data, advisor runs): counted by
client address (``accounts.throttle.client_ip``, proxies only from ``TRUSTED_PROXIES``), so
many accounts from one address share one budget. Per user, on jobs (backtests, advisor runs):
``under_way`` and ``hourly_wait`` count the user's job rows in the database, so every web
process and worker sees the same counts; the services say what the numbers mean."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

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


# A job a dead worker left queued or running stops counting after this: it cannot block its
# owner forever.
STALE_JOB_SECONDS = 15 * 60


def under_way(jobs: QuerySet[Any], *, active: Iterable[str]) -> int:
    """How many of ``jobs`` (one user's) are queued or running, the stale ones left out."""
    since = timezone.now() - timedelta(seconds=STALE_JOB_SECONDS)
    return jobs.filter(status__in=list(active), created_at__gte=since).count()


def hourly_wait(jobs: QuerySet[Any], limit: int) -> int | None:
    """None while fewer than ``limit`` of ``jobs`` started in the last hour; else the seconds
    until the oldest of them leaves the hour (at least a minute)."""
    recent = jobs.filter(created_at__gte=timezone.now() - timedelta(hours=1))
    if recent.count() < limit:
        return None
    oldest = recent.order_by("created_at").values_list("created_at", flat=True)[0]
    return max(60, int(3600 - (timezone.now() - oldest).total_seconds()))
