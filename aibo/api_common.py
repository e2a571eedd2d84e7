"""What every part of the JSON API shares: the error body and the errors an endpoint may give
(so the OpenAPI document lists them and clients can rely on them), a refusal that says when to
come back, and the request limits."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Schema
from ninja.errors import HttpError
from ninja.throttling import BaseThrottle

from accounts import throttle


class Error(Schema):
    detail: str
    errors: list[dict[str, Any]] | None = None  # a 422's problems, each with its field (loc)


def errors(*codes: int) -> dict[int, type[Error]]:
    """``{code: Error}`` for an endpoint's ``response``: 401, 422 (a malformed path or query
    parameter) and 429 everywhere, and ``codes``."""
    return dict.fromkeys((401, 422, 429, *codes), Error)


class Refused(HttpError):
    """A 429 with ``Retry-After`` (``aibo.api``'s handler adds the header)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


class Limit(BaseThrottle):
    """At most ``settings.<setting>`` requests per ``window`` seconds per ``by`` (``user`` or
    ``client``), counted like the pages' limits (``accounts.throttle``: shared by every process
    through the cache, the client's address from ``TRUSTED_PROXIES`` only)."""

    def __init__(self, by: str, setting: str, *, scope: str = "", window: int = 60) -> None:
        self.by, self.setting, self.window = by, setting, window
        self.scope = scope or f"api-{by}"
        self._local = threading.local()  # one instance serves every request thread

    def allow_request(self, request: HttpRequest) -> bool:
        key = throttle.client_ip(request)
        if self.by == "user":
            key = str(getattr(getattr(request, "auth", None), "pk", "") or key)
        wait = throttle.hit(self.scope, key, getattr(settings, self.setting), self.window)
        self._local.wait = wait
        return wait is None

    def wait(self) -> float | None:
        return getattr(self._local, "wait", None)


# Every endpoint's limits (an endpoint with limits of its own lists these too).
API_LIMITS = [
    Limit("client", "API_REQUESTS_PER_CLIENT_PER_MINUTE"),
    Limit("user", "API_REQUESTS_PER_USER_PER_MINUTE"),
]
