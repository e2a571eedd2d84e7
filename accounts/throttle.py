"""Throttles: login failures per email or IP address, and key checks per user, in a window."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _keys(email: str, ip: str) -> list[str]:
    # Hashed so that raw email addresses never sit in a shared cache.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [f"login-fail:email:{digest}", f"login-fail:ip:{ip}"]


def is_locked_out(email: str, ip: str) -> bool:
    counts = cache.get_many(_keys(email, ip)).values()
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts)


def record_failure(email: str, ip: str) -> None:
    for key in _keys(email, ip):
        # add() starts a window only for a new key; incr() keeps the window's expiry.
        if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def clear_failures(email: str, ip: str) -> None:
    # Only the email's counter: a success must not reset a spraying IP's count.
    cache.delete(_keys(email, ip)[0])


def client_ip(request_meta: dict[str, str]) -> str:
    return request_meta.get("REMOTE_ADDR") or "unknown"


KEY_CHECKS_PER_HOUR = 10


def allow_key_check(user_id: int) -> bool:
    """Each check of exchange keys is a signed request from this server's address: a user may
    ask ``KEY_CHECKS_PER_HOUR`` an hour, so the page cannot be used to try keys in bulk (nor
    get the address banned that the live bots trade from)."""
    key = f"key-check:{user_id}"
    if cache.add(key, 1, timeout=3600):
        return True
    try:
        return cache.incr(key) <= KEY_CHECKS_PER_HOUR
    except ValueError:  # expired in between
        return cache.add(key, 1, timeout=3600)
