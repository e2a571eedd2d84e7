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
    """The process can do its work: the database and, when configured, Redis answer, and no
    running live bot has lost its keys. Exchange keys that cannot be decrypted are named."""
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
        checks["credentials"] = _credentials()
    # An unreadable credential is named ("warning") but does not take the server out of
    # rotation: its owner needs the pages to enter the keys again.
    ready = all(not value.startswith("error") for value in checks.values())
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


def _credentials() -> str:
    """Stored exchange keys this server cannot decrypt (a key left CREDENTIALS_KEYS, or
    CREDENTIALS_KEY or SECRET_KEY changed): counts and ids, never whose or what."""
    from accounts.models import ExchangeCredential
    from accounts.services import unreadable_credentials

    unreadable = unreadable_credentials()
    if not unreadable:
        return "ok"
    ids = ", ".join(str(c.pk) for c in unreadable)
    total = ExchangeCredential.objects.count()
    return (
        f"warning: {len(unreadable)} of {total} exchange credential(s) cannot be decrypted "
        f"with this keyring (credentials {ids}); put their key back in CREDENTIALS_KEYS or "
        "have their owners enter them again"
    )
