"""Liveness and readiness probes for load balancers and orchestrators.

``ProbeMiddleware`` answers them before anything reads the Host header: a container's own
healthcheck asks ``127.0.0.1:8000`` while ``ALLOWED_HOSTS`` names the public host, and a probe
builds no URL from the Host, so nothing there can be poisoned by it."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
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
        try:
            checks["exchange_keys"] = _exchange_keys()
        except Exception as e:  # not migrated yet, say: not ready, and a probe never fails
            checks["exchange_keys"] = f"error: {e.__class__.__name__}"
    # Unreadable keys no running bot uses are named ("warning") but keep the server in
    # rotation: their owners need the pages to enter them again.
    ready = all(not value.startswith("error") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _exchange_keys() -> str:
    """Running live bots whose keys cannot be decrypted (a key left CREDENTIALS_KEYS, or
    CREDENTIALS_KEY or SECRET_KEY changed): their grids rest on the exchange with no one
    watching them (an error). Otherwise, stored keys that cannot be decrypted (a warning)."""
    from bots.models import Bot
    from bots.pages import live_bots_without_keys

    unreadable = _unreadable_credentials()
    blind = [b for b in live_bots_without_keys() if b.status == Bot.Status.RUNNING]
    if blind:
        ids = ", ".join(str(b.pk) for b in blind)
        return (
            f"error: {len(blind)} running live bot(s) cannot read their exchange keys "
            f"(bots {ids}); {unreadable}"
        )
    return f"warning: {unreadable}" if unreadable else "ok"


def _unreadable_credentials() -> str:
    """In words, the stored exchange keys this server cannot decrypt: counts and ids, never
    whose or what; empty when every one reads."""
    from accounts.models import ExchangeCredential
    from accounts.services import unreadable_credentials

    unreadable = unreadable_credentials()
    if not unreadable:
        return ""
    ids = ", ".join(str(c.pk) for c in unreadable)
    total = ExchangeCredential.objects.count()
    return (
        f"{len(unreadable)} of {total} exchange credential(s) cannot be decrypted with this "
        f"keyring (credentials {ids}): put their key back in CREDENTIALS_KEYS or have their "
        "owners enter them again"
    )


class ProbeMiddleware:
    """``/healthz`` and ``/readyz`` whatever the Host header (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.probes = {"/healthz": healthz, "/readyz": readyz}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        return probe(request) if probe is not None else self.get_response(request)
