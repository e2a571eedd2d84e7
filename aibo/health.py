"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The process can do its work: the database and, when configured, Redis answer."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as e:  # any failure means not ready; say which
        checks["database"] = f"error: {e.__class__.__name__}"
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"error: {e.__class__.__name__}"
    if checks["database"] == "ok":
        checks["exchange_keys"] = _exchange_keys()
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _exchange_keys() -> str:
    """Running live bots whose keys cannot be decrypted (a changed CREDENTIALS_KEY or
    SECRET_KEY): their grids rest on the exchange with no one watching them."""
    from bots.models import Bot
    from bots.pages import live_bots_without_keys

    blind = [b for b in live_bots_without_keys() if b.status == Bot.Status.RUNNING]
    if not blind:
        return "ok"
    ids = ", ".join(str(b.pk) for b in blind)
    return f"error: {len(blind)} running live bot(s) cannot read their exchange keys (bots {ids})"
