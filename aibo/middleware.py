"""Request ids (taken from X-Request-ID when a proxy sets a sane one, otherwise generated), and
sessions that end when they go idle."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

from aibo.logging import current_request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
            if response.status_code >= 400:
                # Django logs a 404 (or any error a view returns) only after every middleware
                # is done, outside this id; logged here, with it (Django then skips its line).
                log_response(
                    "%s: %s", response.reason_phrase, request.path, response=response,
                    request=request,
                )  # fmt: skip
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class SessionIdleMiddleware:
    """A signed-in session lives ``SESSION_COOKIE_AGE`` seconds past its last request: an
    active one is marked (so saved, with a fresh expiry) at most once a minute."""

    RENEW_EVERY = 60

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if session.session_key and request.user.is_authenticated:
            now = int(time.time())
            if now - session.get("_seen", 0) >= self.RENEW_EVERY:
                session["_seen"] = now
        return self.get_response(request)
