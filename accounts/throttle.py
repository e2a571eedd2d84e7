"""Throttles: counters in the cache (Redis when scaled, local memory embedded), in windows.

The general tool is ``hit(scope, key, limit, window)``: it counts one event for ``key`` and
answers ``None`` while the key is within ``limit`` events per ``window`` seconds, else the
seconds until its window ends (what a 429's ``Retry-After`` says). A window starts at a key's
first event and is not stretched by later ones. Any app can use it for a per-client limit::

    from accounts import throttle

    retry_after = throttle.hit("preview", throttle.client_ip(request), limit=60, window=60)
    if retry_after is not None:
        return throttle.too_many(HttpResponse("Too many previews.", status=429), retry_after)

Scopes keep the counters of different limits apart; keys are hashed, so email addresses never
sit in a shared cache. ``client_ip(request)`` is the client's address, read through the
proxies named in ``TRUSTED_PROXIES`` only.

Sign-in is throttled by account and by client together, like a real service does it (OWASP's
"device cookie" scheme), so that a stranger can slow an account down but never lock its owner
out. See ``LoginAttempt``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import salted_hmac

# --- the general counter -------------------------------------------------------------------------


def _key(scope: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"throttle:{scope}:{digest}"


def hit(scope: str, key: str, limit: int, window: int) -> int | None:
    """Count one event; ``None`` while within ``limit`` per ``window`` seconds, else the seconds
    left in the window (at least 1)."""
    name = _key(scope, key)
    # add() starts a window only for a new key; incr() keeps the window's expiry.
    if cache.add(name, 1, timeout=window):
        cache.set(f"{name}:ends", time.time() + window, timeout=window)
        count = 1
    else:
        try:
            count = cache.incr(name)
        except ValueError:  # expired between add and incr: a new window
            return hit(scope, key, limit, window)
    return None if count <= limit else _seconds_left(name, window)


def blocked(scope: str, key: str, limit: int, window: int) -> int | None:
    """Without counting: ``None`` while fewer than ``limit`` events are counted, else the
    seconds left in the window."""
    name = _key(scope, key)
    count = cache.get(name, 0)
    return None if count < limit else _seconds_left(name, window)


def reset(scope: str, key: str) -> None:
    name = _key(scope, key)
    cache.delete_many([name, f"{name}:ends"])


def _seconds_left(name: str, window: int) -> int:
    ends = cache.get(f"{name}:ends")
    if ends is None:  # the counter was made a moment ago by another request
        return window
    return max(1, math.ceil(ends - time.time()))


def too_many(response: HttpResponse, retry_after: int) -> HttpResponse:
    """Make ``response`` a 429 that says when to come back."""
    response.status_code = 429
    response["Retry-After"] = str(retry_after)
    return response


def wait_words(seconds: int) -> str:
    """``in 40 seconds``, ``in 1 minute``, ``in 15 minutes``: for messages beside a 429."""
    if seconds < 60:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


# --- the client's address ------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)
    except ValueError as e:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {e}") from e


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(request: HttpRequest) -> str:
    """The address of the client: ``REMOTE_ADDR``, unless that is one of ``TRUSTED_PROXIES``;
    then the right-most address in ``X-Forwarded-For`` that is not a trusted proxy (each proxy
    appends the address it was called from, so what lies left of that is the client's to say).
    """
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not _trusted(remote, networks):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop[:64]
    # Every hop is a trusted proxy (or there are none): the request began inside.
    return hops[0][:64] if hops else remote


def check_trusted_proxies(**kwargs: Any) -> list[CheckMessage]:
    """System check (registered in apps.py): a bad TRUSTED_PROXIES fails at start, not per
    request."""
    try:
        _networks(tuple(settings.TRUSTED_PROXIES))
    except ImproperlyConfigured as e:
        return [Error(str(e), hint="Comma-separated IP addresses or CIDRs.", id="accounts.E001")]
    return []


# --- sign-in -------------------------------------------------------------------------------------

DEVICE_COOKIE = "aibo_device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600
DEVICES_PER_COOKIE = 5  # accounts one browser is remembered for


def _account(email: str) -> str:
    return email.strip().lower()


def _account_tag(account: str) -> str:
    return salted_hmac("accounts.device", account).hexdigest()[:32]


def _devices(request: HttpRequest) -> list[list[str]]:
    raw = request.COOKIES.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        value = signing.loads(raw, salt="accounts.device", max_age=DEVICE_COOKIE_AGE)
    except signing.BadSignature:
        return []
    return [pair for pair in value if isinstance(pair, list) and len(pair) == 2][
        :DEVICES_PER_COOKIE
    ]


def known_device(request: HttpRequest, email: str) -> str | None:
    """The nonce of this browser's device cookie for the account, if it has one."""
    tag = _account_tag(_account(email))
    return next((nonce for t, nonce in _devices(request) if t == tag), None)


def remember_device(response: HttpResponse, request: HttpRequest, email: str) -> None:
    """Mark this browser as one the account signs in from (after a sign-in or a password reset:
    both prove the person holds the account)."""
    tag = _account_tag(_account(email))
    others = [pair for pair in _devices(request) if pair[0] != tag]
    value = [[tag, secrets.token_urlsafe(12)], *others][:DEVICES_PER_COOKIE]
    response.set_cookie(
        DEVICE_COOKIE,
        signing.dumps(value, salt="accounts.device"),
        max_age=DEVICE_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


@dataclass(frozen=True)
class Refusal:
    retry_after: int
    reason: str  # which limit: "attempts" (this account from here), "client", "account", "user"


@dataclass(frozen=True)
class LoginAttempt:
    """One sign-in attempt: the account asked for and the client asking.

    Failures are counted in ``LOGIN_FAILURE_WINDOW_SECONDS`` windows, for accounts that exist
    and accounts that do not alike (the answer must not tell them apart):

    - per (account, client) pair: ``LOGIN_FAILURE_LIMIT`` failures lock that pair only. A
      stranger's failures lock the stranger, not the owner signing in from elsewhere.
    - per client, across accounts: ``LOGIN_CLIENT_FAILURE_LIMIT`` failures lock the client
      (trying one password on many accounts).
    - per account, across clients: ``LOGIN_ACCOUNT_FAILURE_LIMIT`` failures (many addresses
      guessing one account) close the account to *unknown* browsers for the rest of the window.

    A browser that has signed in to the account before (or reset its password) holds a signed
    device cookie for it. Its attempts are counted against that cookie alone: neither the
    client's nor the account's counters stop it, so the owner's own browser stays open however
    long a stranger keeps trying; from a new browser, a password reset opens it. A stolen
    cookie only gets its own ``LOGIN_FAILURE_LIMIT`` per window. Attempts refused by a lock
    are not counted, so a lock ends with its window.
    """

    account: str
    ip: str
    device: str | None  # the nonce of this browser's device cookie for the account

    @classmethod
    def of(cls, request: HttpRequest) -> LoginAttempt:
        email = request.POST.get("username", "")
        return cls(_account(email), client_ip(request), known_device(request, email))

    @classmethod
    def by_token(cls, request: HttpRequest, email: str) -> LoginAttempt:
        """An API sign-in: the same counters as the page's, with no device cookie."""
        return cls(_account(email), client_ip(request), None)

    def _counters(self) -> list[tuple[str, str, int, str]]:
        """(scope, key, limit, reason) of the counters this attempt is judged by."""
        limit = settings.LOGIN_FAILURE_LIMIT
        if self.device:
            return [("login-device", f"{self.account}|{self.device}", limit, "attempts")]
        return [
            ("login-pair", f"{self.account}|{self.ip}", limit, "attempts"),
            ("login-client", self.ip, settings.LOGIN_CLIENT_FAILURE_LIMIT, "client"),
            ("login-account", self.account, settings.LOGIN_ACCOUNT_FAILURE_LIMIT, "account"),
        ]

    def refusal(self) -> Refusal | None:
        window = settings.LOGIN_FAILURE_WINDOW_SECONDS
        refusals = [
            Refusal(retry, reason)
            for scope, key, limit, reason in self._counters()
            if (retry := blocked(scope, key, limit, window)) is not None
        ]
        return max(refusals, key=lambda r: r.retry_after, default=None)

    def failed(self) -> None:
        window = settings.LOGIN_FAILURE_WINDOW_SECONDS
        for scope, key, limit, _reason in self._counters():
            hit(scope, key, limit, window)

    def succeeded(self) -> None:
        # Only this pair's (or cookie's) count: a success must not clear a spraying client's.
        scope, key, _limit, _reason = self._counters()[0]
        reset(scope, key)


# --- other per-client limits ---------------------------------------------------------------------

KEY_CHECKS_PER_HOUR = 10


def key_check_refusal(user_id: int, ip: str) -> Refusal | None:
    """Each check of exchange keys is a signed request from this server's address: a user may
    ask ``KEY_CHECKS_PER_HOUR`` an hour and a client address ``KEY_CHECKS_PER_CLIENT_PER_HOUR``
    (many accounts from one place), so the page cannot be used to try keys in bulk (nor get the
    address banned that the live bots trade from)."""
    if (retry := hit("key-check", str(user_id), KEY_CHECKS_PER_HOUR, 3600)) is not None:
        return Refusal(retry, "user")
    limit = settings.KEY_CHECKS_PER_CLIENT_PER_HOUR
    if (retry := hit("key-check-client", ip, limit, 3600)) is not None:
        return Refusal(retry, "client")
    return None


MAILS_PER_ADDRESS_PER_HOUR = 3


def may_mail(address: str) -> bool:
    """Whether one more account email may go to ``address`` this hour: sign-ups and reset
    requests must not become a way to flood someone's inbox. Over the limit, mail is dropped
    silently (the page answers the same either way)."""
    return hit("mail-to", _account(address), MAILS_PER_ADDRESS_PER_HOUR, 3600) is None
