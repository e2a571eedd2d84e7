"""Sending one message on one channel: email (Django's mail backend), a signed webhook, or a
Telegram chat (the Bot API's ``sendMessage``). Each sender raises ``TemporarySendError`` (try
again later) or ``PermanentSendError`` (trying again cannot help); their text never holds a
secret, since it is stored and shown on the settings page.

Webhook requests are signed (``sign``): ``X-Aibo-Signature: sha256=<hex>`` is the HMAC-SHA256,
under the channel's secret, of ``<X-Aibo-Timestamp>.<raw body>``; a receiver recomputes it and
refuses a timestamp older than a few minutes (a replayed request).

HTTP goes through the standard library (``urllib.request``), which logs nothing: a Telegram
token is part of the request's path, and must not end up in a log.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail

from accounts import crypto

SIGNATURE_HEADER = "X-Aibo-Signature"
TIMESTAMP_HEADER = "X-Aibo-Timestamp"
DELIVERY_HEADER = "X-Aibo-Delivery"
EVENT_HEADER = "X-Aibo-Event"
USER_AGENT = "aibo-notifications/1"
TELEGRAM_TEXT_LIMIT = 4096  # the Bot API's limit for one message


class SendError(Exception):
    """Sending failed; ``retry_after``: seconds the other side asked us to wait, if it did."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TemporarySendError(SendError):
    """Worth trying again later: a timeout, a refused connection, a 5xx, a rate limit."""


class PermanentSendError(SendError):
    """Trying again cannot help until the user changes the channel (a bad token, a chat the
    bot may not write to, a webhook that answered 410 Gone)."""


@dataclass(frozen=True)
class Message:
    delivery_id: int
    kind: str
    subject: str
    text: str
    payload: dict[str, Any]  # the webhook's JSON body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header's value for this timestamp and body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does (and the README shows): the signature matches, and the timestamp
    is within ``tolerance`` seconds of now."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- email ------------------------------------------------------------------------------------


def send_email(address: str, message: Message) -> None:
    try:
        send_mail(
            f"[aibo] {message.subject}",
            message.text,
            settings.DEFAULT_FROM_EMAIL,
            [address],
        )
    except (OSError, ValueError) as e:  # smtplib's errors are OSErrors
        raise TemporarySendError(f"the mail server refused it: {type(e).__name__}: {e}") from e


# --- webhook ----------------------------------------------------------------------------------


def webhook_url_problem(url: str) -> str:
    """Why the server will not POST to ``url`` ("" when it will): plain HTTP and addresses
    inside this network are refused unless the settings allow them (a webhook must not be a
    way to reach this server's own services)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a webhook URL starts with https:// and names a host"
    if parts.scheme == "http" and not settings.NOTIFY_WEBHOOK_ALLOW_HTTP:
        return "a webhook URL must use https:// on this server"
    if settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        return ""
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"the host {parts.hostname} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return f"the host {parts.hostname} is inside this network ({address}): not allowed"
    return ""


def send_webhook(url: str, secret: str, message: Message) -> None:
    if problem := webhook_url_problem(url):
        raise PermanentSendError(problem)
    body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: str(message.delivery_id),
        EVENT_HEADER: message.kind,
    }
    status, text, retry_after = _post(url, body, headers, secret=secret)
    if 200 <= status < 300:
        return
    detail = f"the webhook answered HTTP {status}{': ' + text[:200] if text else ''}"
    if status == 410:  # Gone: the receiver says to stop
        raise PermanentSendError(detail)
    raise TemporarySendError(detail, retry_after=retry_after)


# --- Telegram ---------------------------------------------------------------------------------


def send_telegram(token: str, chat_id: str, message: Message) -> None:
    text = f"{message.subject}\n\n{message.text}"
    if len(text) > TELEGRAM_TEXT_LIMIT:
        text = text[: TELEGRAM_TEXT_LIMIT - 1] + "…"
    body = json.dumps({"chat_id": chat_id, "text": text, "disable_web_page_preview": True}).encode()
    url = f"{settings.TELEGRAM_API_URL.rstrip('/')}/bot{token}/sendMessage"
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    status, text_out, retry_after = _post(url, body, headers, secret=token)
    try:
        answer = json.loads(text_out) if text_out else {}
    except ValueError:
        answer = {}
    if 200 <= status < 300 and answer.get("ok"):
        return
    description = _scrub(str(answer.get("description") or text_out[:200]), token)
    detail = f"Telegram answered {status}: {description}".strip()
    retry_after = (answer.get("parameters") or {}).get("retry_after", retry_after)
    # 400 (chat not found, bad request), 401 (bad token), 403 (blocked, kicked), 404 (no such
    # bot): only the user can fix those. Rate limits and Telegram's own trouble pass.
    if status in (400, 401, 403, 404):
        raise PermanentSendError(detail)
    raise TemporarySendError(detail, retry_after=retry_after)


# --- HTTP -------------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive elsewhere without its body: report it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(
    url: str, body: bytes, headers: dict[str, str], *, secret: str
) -> tuple[int, str, float | None]:
    """(status, response text, Retry-After seconds); network trouble is a temporary error
    whose text holds no part of ``secret`` (a Telegram token sits in the URL)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    timeout = settings.NOTIFY_HTTP_TIMEOUT_SECONDS
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.read(4096).decode(errors="replace"), None
    except urllib.error.HTTPError as e:
        text = e.read(4096).decode(errors="replace") if e.fp else ""
        return e.code, _scrub(text, secret), _retry_after(e.headers.get("Retry-After"))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TemporarySendError(
            _scrub(f"could not reach {urlsplit(url).hostname}: {reason}", secret)
        ) from None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, crypto.mask(secret)) if secret else text
