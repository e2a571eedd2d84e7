"""The websocket boundary: who may open a socket, how many, and for how long.

- ``SameOriginValidator``: a handshake is let through only from a page of this site, the
  Origin's scheme, host and port equal to the request's own (or listed in
  ``CSRF_TRUSTED_ORIGINS``), so no other site, port or plain-http page can ride a user's cookie.
- ``UserSocket``: the base of every consumer. A socket belongs to a signed-in session: it holds
  one of the user's ``WS_MAX_CONNECTIONS_PER_USER`` slots, it is closed when that session ends
  (logout, password change, expiry), and it is closed on any message from the client, since
  no consumer reads one (the server caps frames at ``MAX_FRAME_BYTES`` before that).

A script signs its socket in with an API token instead (``accounts.tokens``: ``?token=`` or
``Authorization: Bearer``; ``TokenAuth``). Such a handshake is judged by its token alone, the
cookie ignored, so the Origin check does not apply to it; the socket is closed when the token
stops signing in (expiry, password change).

Slots are leases in the cache (Redis when ``REDIS_URL`` is set, so every process counts the
same): ``ws-slot:<user>:<i>`` for i < the cap, taken with an atomic ``add`` and a
``SLOT_SECONDS`` expiry, renewed by their socket every ``RENEW_SECONDS``, deleted on
disconnect. A process that dies renews nothing, so its slots free themselves within
``SLOT_SECONDS``; nothing counts a socket that is gone for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.signals import user_logged_out
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.http.request import is_same_domain, split_domain_port, validate_host
from django.utils.crypto import constant_time_compare

from accounts import tokens
from aibo import metrics, push

logger = logging.getLogger(__name__)

# Incoming frames larger than this are refused by the server itself (uvicorn's ws_max_size, in
# manage.py serve and compose.yaml): no consumer reads client messages at all.
MAX_FRAME_BYTES = 4096
SLOT_SECONDS = 90  # a slot nobody renews (its process died) is free again after this
RENEW_SECONDS = 30  # each socket renews its slot and re-reads its session this often

# Close codes (4000-4999 are the application's; htmx's ws extension reconnects on none of them).
CLOSE_UNEXPECTED_MESSAGE = 1003  # RFC 6455 "unsupported data": these sockets only send
CLOSE_SESSION_ENDED = 4401  # logged out, password changed, session expired
CLOSE_TOO_MANY_SOCKETS = 4429  # the user already has WS_MAX_CONNECTIONS_PER_USER open


def user_group(user_pk: Any) -> str:
    """Every socket of a user joins this group: session ends are announced there."""
    return f"user.{user_pk}"


# --- the origin check ----------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(scheme: str, netloc: str) -> tuple[str, str, str] | None:
    domain, port = split_domain_port(netloc)  # lowercased; "" when not a valid host[:port]
    if scheme not in _DEFAULT_PORTS or not domain:
        return None
    return scheme, domain, port or _DEFAULT_PORTS[scheme]


def _parse_origin(value: str) -> tuple[str, str, str] | None:
    scheme, sep, netloc = value.partition("://")
    return _origin(scheme.lower(), netloc) if sep else None


def _is_secure(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    """As Django's ``request.is_secure()``: the trusted proxy's header when it is there."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
        if header in headers:
            return headers[header].decode("latin1").split(",")[0].strip() == secure_value
    return scope.get("scheme") in {"wss", "https"}


def _trusted(origin: tuple[str, str, str]) -> bool:
    """Listed in CSRF_TRUSTED_ORIGINS (``https://*.example.com`` covers its subdomains)."""
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, netloc = entry.partition("://")
        wildcard = netloc.startswith("*.")
        pattern = _origin(scheme.lower(), netloc.removeprefix("*"))
        if pattern is None:
            continue
        if wildcard:
            if origin[0::2] == pattern[0::2] and is_same_domain(origin[1], pattern[1]):
                return True
        elif origin == pattern:
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        if name in (b"origin", b"host") and name in headers:
            return False  # two Origin or Host headers: not from a browser
        headers[name] = value
    if b"origin" not in headers or b"host" not in headers:
        return False
    origin = _parse_origin(headers[b"origin"].decode("latin1"))
    if origin is None:
        return False  # "null", garbage, a path
    if _trusted(origin):
        return True
    host = headers[b"host"].decode("latin1")
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # as Django's request.get_host()
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    own = _origin("https" if _is_secure(scope, headers) else "http", host)
    return own is not None and validate_host(own[1], allowed_hosts) and origin == own


class SameOriginValidator:
    """Refuses (HTTP 403) a websocket handshake whose Origin is not this site's own."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not bearer_token(scope) and not origin_allowed(scope):
            await WebsocketDenier()(scope, receive, send)
            return
        await self.application(scope, receive, send)


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The API token a handshake carries (``Authorization: Bearer`` or ``?token=``), if any."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    token = (query.get("token") or [""])[0].strip()
    return token or None


class TokenAuth:
    """Inside the session's auth: a handshake with a token is signed in by the token alone
    (``scope["user"]`` its user, or anonymous when it does not sign in; the session unused)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        token = bearer_token(scope) if scope["type"] == "websocket" else None
        if token is not None:
            from django.contrib.auth.models import AnonymousUser

            user = await database_sync_to_async(tokens.user_of)(token)
            scope = dict(scope, user=user or AnonymousUser(), session=None, api_token=token)
        await self.application(scope, receive, send)


@database_sync_to_async
def token_signs_in(token: str, user_pk: Any) -> bool:
    user = tokens.user_of(token)
    return user is not None and user.pk == user_pk


# --- slots ---------------------------------------------------------------------------------------


def _slot_keys(user_pk: Any, cap: int) -> list[str]:
    return [f"ws-slot:{user_pk}:{i}" for i in range(cap)]


def acquire_slot(user_pk: Any, token: str, cap: int) -> str | None:
    """One of the user's ``cap`` slots for ``token``, or None when all are held."""
    keys = _slot_keys(user_pk, cap)
    held = cache.get_many(keys)
    for key in keys:
        # add() is atomic (SET NX on Redis): of two processes after one slot, one gets it.
        if key not in held and cache.add(key, token, SLOT_SECONDS):
            return key
    return None


def renew_slot(key: str, token: str, user_pk: Any, cap: int) -> str | None:
    if cache.get(key) == token and cache.touch(key, SLOT_SECONDS):
        return key
    # Lost (this process stalled past the lease and another socket took it): take a free one.
    return acquire_slot(user_pk, token, cap)


def release_slot(key: str, token: str) -> None:
    if cache.get(key) == token:
        cache.delete(key)


@database_sync_to_async
def session_signs_in(session_key: str, user_pk: Any) -> bool:
    """Whether the stored session still signs this user in (read fresh, written never)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if str(session.get(SESSION_KEY)) != str(user_pk):  # flushed, expired, another user
        return False
    backend = session.get(BACKEND_SESSION_KEY)
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return False
    user = load_backend(backend).get_user(user_pk)  # None when deleted or deactivated
    return user is not None and constant_time_compare(
        session.get(HASH_SESSION_KEY) or "", user.get_session_auth_hash()
    )


# --- the base consumer ---------------------------------------------------------------------------


class UserSocket(AsyncWebsocketConsumer):
    """A signed-in session's socket; subclasses write ``connect`` as usual (accept or close).

    Anonymous sockets are refused before ``connect`` runs.
    """

    owner_pk: Any = None
    session_key: str | None = None
    api_token: str | None = None
    auth_hash: str = ""
    slot: str | None = None
    accepted = False
    closed = False
    watch: asyncio.Task[None] | None = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        user = self.scope.get("user")
        session = self.scope.get("session")
        self.api_token = self.scope.get("api_token")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        if self.api_token is None:
            if session is None or not session.session_key:
                await self.close()
                return
            self.session_key = session.session_key
            self.auth_hash = await database_sync_to_async(session.get)(HASH_SESSION_KEY) or ""
        self.owner_pk = user.pk
        self.token = uuid.uuid4().hex
        cap = settings.WS_MAX_CONNECTIONS_PER_USER
        if cap > 0:
            self.slot = await _in_thread(acquire_slot)(self.owner_pk, self.token, cap)
            if self.slot is None:
                # Accepted so that the client sees why: a refused handshake shows only 1006.
                await self.accept()
                await self.close(CLOSE_TOO_MANY_SOCKETS, "too many open sockets for this user")
                return
        # Joined before the subclass accepts, so a logout in between is not missed.
        await self.channel_layer.group_add(user_group(self.owner_pk), self.channel_name)
        await super().websocket_connect(message)
        if not self.accepted:
            await self._leave()
            return
        self.watch = asyncio.ensure_future(self._watch())

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        try:
            await super().websocket_disconnect(message)  # the subclass's disconnect; stops
        finally:
            await self._leave()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        await self.close(CLOSE_UNEXPECTED_MESSAGE, "this socket takes no messages")

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        self.accepted = True
        metrics.WEBSOCKETS.labels(type(self).__name__).inc()
        await super().accept(subprotocol, headers)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if self.closed:
            return  # a push already under way when the socket was closed: drop it
        await super().send(text_data, bytes_data, close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        await super().close(code, reason)

    async def user_logged_out(self, event: dict[str, Any]) -> None:
        if event["session_key"] == self.session_key:
            await self.close(CLOSE_SESSION_ENDED, "session ended")

    async def user_password_changed(self, event: dict[str, Any]) -> None:
        # Sessions signed in before the change carry the old hash (the changing one included:
        # its key is cycled); one signed in since carries the new hash and stays. A token
        # issued before the change no longer signs in.
        if self.api_token is not None:
            if not await token_signs_in(self.api_token, self.owner_pk):
                await self.close(CLOSE_SESSION_ENDED, "token ended")
            return
        if not constant_time_compare(self.auth_hash, event["auth_hash"]):
            await self.close(CLOSE_SESSION_ENDED, "session ended")

    async def _watch(self) -> None:
        """Renew the slot and re-read the session: expiry, admin and CLI changes end it too."""
        cap = settings.WS_MAX_CONNECTIONS_PER_USER
        while not self.closed:
            await asyncio.sleep(RENEW_SECONDS * random.uniform(0.75, 1.0))  # spread the sockets
            try:
                if self.api_token is not None:
                    signed_in = await token_signs_in(self.api_token, self.owner_pk)
                else:
                    signed_in = await session_signs_in(self.session_key or "", self.owner_pk)
                if not signed_in:
                    await self.close(CLOSE_SESSION_ENDED, "session ended")
                    return
                if self.slot is not None:
                    self.slot = await _in_thread(renew_slot)(
                        self.slot, self.token, self.owner_pk, cap
                    )
                    if self.slot is None:
                        await self.close(CLOSE_TOO_MANY_SOCKETS, "too many open sockets")
                        return
            except Exception as e:  # the database or cache away for a moment: try next time
                logger.warning("websocket session check failed: %s", e)

    async def _leave(self) -> None:
        if self.accepted and not getattr(self, "counted_out", False):
            self.counted_out = True
            metrics.WEBSOCKETS.labels(type(self).__name__).dec()
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        if self.owner_pk is not None:
            await self.channel_layer.group_discard(user_group(self.owner_pk), self.channel_name)
        if self.slot is not None:
            slot, self.slot = self.slot, None
            await _in_thread(release_slot)(slot, self.token)


def _in_thread(fn: Any) -> Any:
    # Cache calls only, no ORM: any worker thread will do, no need to queue behind the database.
    return sync_to_async(fn, thread_sensitive=False)


# --- session ends --------------------------------------------------------------------------------


def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        event = {"type": "user.logged_out", "session_key": session_key}
        push.group_send(user_group(user.pk), event)


def _note_password_change(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if raw or instance._state.adding or (update_fields and "password" not in update_fields):
        return
    manager = sender._default_manager.using(kwargs.get("using"))
    old = manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._aibo_password_changed = old is not None and old != instance.password


def _on_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not getattr(instance, "_aibo_password_changed", False):
        return
    instance._aibo_password_changed = False
    group = user_group(instance.pk)
    event = {"type": "user.password_changed", "auth_hash": instance.get_session_auth_hash()}
    transaction.on_commit(lambda: push.group_send(group, event), using=kwargs.get("using"))


user_logged_out.connect(_on_logout, dispatch_uid="aibo.ws.logout")
pre_save.connect(_note_password_change, sender=settings.AUTH_USER_MODEL, dispatch_uid="aibo.ws.pw")
post_save.connect(_on_password_change, sender=settings.AUTH_USER_MODEL, dispatch_uid="aibo.ws.pw")
