"""The published JSON API, ``/api/``: django-ninja with the apps' routers, one way to sign in,
one shape of error, one way numbers travel.

- **Signing in**: ``Authorization: Bearer <token>`` (``accounts.tokens``, from
  ``/api/auth/login``) or the browser's session (with its CSRF token on writes).
- **Errors**: JSON ``{"detail": "..."}``; bad input 422 naming the field (``config.capital:
  …``), no credentials 401, anything not yours 404, an illegal state change 409, too many
  requests 429 with ``Retry-After``. A refused request changes nothing.
- **Numbers**: Decimals are answered as JSON strings, exact and never in exponent form
  (``"61578.95"``); sent, JSON numbers and strings are both read exactly. Times are ISO 8601 UTC.
- **Limits**: per user (``API_REQUESTS_PER_USER_PER_MINUTE``) and per client address
  (``API_REQUESTS_PER_CLIENT_PER_MINUTE``), counted like the pages' limits
  (``accounts.throttle``: proxies only from ``TRUSTED_PROXIES``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from ninja.security import HttpBearer, SessionAuth

from accounts import tokens
from accounts.api import router as auth_router
from ai_advisor.api import router as advisor_router
from aibo.api_common import API_LIMITS, Refused
from bots.api import router as bots_router
from bots.errors import BotError, ConfigError, Throttled
from bots.starting import ConfirmationNeeded
from market.api import router as market_router
from market.precision import plain


class DecimalParser(Parser):
    """JSON bodies with their numbers read as Decimals: ``0.1`` stays exactly 0.1."""

    def parse_body(self, request: HttpRequest) -> Any:
        return json.loads(request.body, parse_float=Decimal)


class PlainDecimalEncoder(NinjaJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return plain(o)
        return super().default(o)


class Renderer(JSONRenderer):
    encoder_class = PlainDecimalEncoder


class Token(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = tokens.user_of(token)
        if user is not None:
            request.user = user
        return user


class Session(SessionAuth):
    """The browser's session (CSRF checked on writes), only once fully signed in."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = request.user
        return user if user.is_authenticated and user.is_active else None


api = NinjaAPI(
    title="aibo API",
    version="1",
    description=__doc__,
    urls_namespace="api",
    auth=[Token(), Session()],
    parser=DecimalParser(),
    renderer=Renderer(),
    docs=Swagger(),
    throttle=API_LIMITS,
)
api.add_router("/auth/", auth_router)
api.add_router("/bots", bots_router)
api.add_router("/market/", market_router)
api.add_router("/ai/", advisor_router)


def _detail(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """422 with the first problem named by its field: ``config.capital: …``."""
    first = exc.errors[0] if exc.errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "payload", "query")]
    where = ".".join(p for p in loc if not p.isdigit() or len(loc) == 1) or "body"
    message = f"{where}: {first.get('msg', 'invalid')}"
    return api.create_response(request, {"detail": message, "errors": exc.errors}, status=422)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _detail(request, "Sign in: send Authorization: Bearer <token>.", 401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    response = _detail(request, str(exc), exc.status_code)
    if isinstance(exc, Refused):
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(BotError)
def _bot_error(request: HttpRequest, exc: BotError) -> HttpResponse:
    """The services' refusals: a config's on its field (422), too many (429), a live start
    without its pair typed (409, with what the start would do), any other state (409)."""
    if isinstance(exc, ConfigError):
        where = "pair" if exc.field == "symbol" else f"config.{exc.field or ''}".rstrip(".")
        return _detail(request, f"{where}: {exc.sentence()}", 422)
    if isinstance(exc, Throttled):
        response = _detail(request, exc.sentence(), 429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, ConfirmationNeeded):
        lines = "; ".join(exc.summary.text())
        return _detail(request, f"{exc.sentence()} Send {{\"confirm\": \"{exc.summary.symbol}\"}} "
                       f"to start: {lines}.", 409)  # fmt: skip
    return _detail(request, exc.sentence(), 409)
