"""Notifications: where a user hears about their bots (channels), what they hear about
(kinds, per channel, with per-bot mutes), and every message sent or still trying (deliveries).

The bots' event log (``bots.BotEvent``), their round trips (``bots.Trade``) and the advisor's
finished runs are the outbox: ``notifications.services.dispatch`` turns new rows into
deliveries, and Huey sends them (``notifications.tasks``), never the bot cycle itself.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q


class Kind(models.TextChoices):
    FILL = "fill", "Fills"
    ROUND_TRIP = "round_trip", "Round trips"
    STOPPED = "stopped", "Stops"
    ERROR = "error", "Errors"
    ADVISOR = "advisor", "Advisor suggestion ready"
    DAILY = "daily", "Daily summary"


# What a bot can be muted for (the daily summary is the user's, not one bot's).
BOT_KINDS = (Kind.FILL, Kind.ROUND_TRIP, Kind.STOPPED, Kind.ERROR, Kind.ADVISOR)
# A new channel's kinds: everything but single fills, which a busy grid makes by the hundred.
DEFAULT_KINDS = [k.value for k in Kind if k != Kind.FILL]
TEST = "test"  # a "send test" delivery's kind: not a subscription


def default_kinds() -> list[str]:
    return list(DEFAULT_KINDS)


class ChannelQuerySet(models.QuerySet["Channel"]):
    def owned_by(self, user: Any) -> ChannelQuerySet:
        return self.filter(owner=user)


class Channel(models.Model):
    """One way to reach a user: their email address, a webhook, or a Telegram chat.

    A webhook's signing secret and a Telegram bot's token are encrypted at rest exactly like
    exchange keys (``accounts.crypto``, bound to this row's ``uid`` and the column); only
    ``secret_hint`` (the last four characters) is ever shown."""

    class Type(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"
        TELEGRAM = "telegram", "Telegram"

    ENCRYPTED_FIELDS = ("secret_encrypted",)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_channels"
    )
    type = models.CharField(max_length=10, choices=Type.choices)
    label = models.CharField(max_length=60)
    enabled = models.BooleanField(default=True)
    kinds = models.JSONField(default=default_kinds)
    # Webhook: where to POST. Telegram: the chat the bot writes to.
    url = models.URLField(max_length=500, blank=True)
    chat_id = models.CharField(max_length=64, blank=True)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Webhook: the HMAC-SHA256 signing secret; Telegram: the bot token. Empty for email.
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(max_length=8, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "label"], name="one_channel_label_per_user"),
            models.CheckConstraint(
                condition=Q(type__in=["email", "webhook", "telegram"]), name="channel_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_type_display()})"

    def __repr__(self) -> str:  # never the encrypted field, even in tracebacks
        return f"<Channel {self.pk} {self}>"

    def wants(self, kind: str) -> bool:
        return self.enabled and kind in (self.kinds or [])

    @property
    def url_hint(self) -> str:
        """The webhook's URL as pages show it: scheme, host and the path's start and last four
        characters. Many services put a token in the path (Discord, Slack): never all of it."""
        parts = urlsplit(self.url)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(tail) > 16:
            tail = f"{tail[:8]}••••{tail[-4:]}"
        return f"{parts.scheme}://{parts.netloc}{tail}"

    def _context(self) -> bytes:
        from accounts import crypto

        return crypto.context("notificationchannel", self.uid, "secret_encrypted")

    def set_secret(self, plain: str) -> None:
        from accounts import crypto

        self.secret_encrypted = crypto.encrypt(plain, context=self._context())
        self.secret_hint = crypto.mask(plain)

    def secret(self) -> str:
        """The decrypted secret (webhook signing secret, Telegram token): only for sending.
        A value stored under an older key is re-encrypted under the current one, and saved,
        unless the row changed meanwhile."""
        from accounts import crypto

        plain = crypto.decrypt(self.secret_encrypted, context=self._context())
        if self.pk is not None and not crypto.is_current(self.secret_encrypted):
            before = self.secret_encrypted
            self.set_secret(plain)
            written = Channel.objects.filter(pk=self.pk, secret_encrypted=before).update(
                secret_encrypted=self.secret_encrypted
            )
            if not written:
                self.secret_encrypted = before
        return plain

    def readable(self) -> bool:
        """Whether this server can still decrypt the secret (the keyring may have changed)."""
        from accounts import crypto

        if not self.secret_encrypted:
            return True
        try:
            crypto.decrypt(self.secret_encrypted, context=self._context())
        except crypto.UndecryptableSecret:
            return False
        return True


class BotMute(models.Model):
    """A bot its owner does not want to hear about for one kind (on every channel)."""

    bot = models.ForeignKey("bots.Bot", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bot", "kind"], name="one_mute_per_bot_kind")
        ]

    def __str__(self) -> str:
        return f"{self.bot_id}: no {self.kind}"


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def owned_by(self, user: Any) -> DeliveryQuerySet:
        return self.filter(channel__owner=user)


class Delivery(models.Model):
    """One message to one channel, and how sending it went.

    ``key`` names what it tells (``trip:<trade id>``, ``fills:<bot>:<first>-<last event>``,
    ``daily:<date>``, ...): unique per channel, so a dispatch run twice never sends twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    key = models.CharField(max_length=100)
    kind = models.CharField(max_length=12)
    bot = models.ForeignKey(
        "bots.Bot", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    subject = models.CharField(max_length=200)
    text = models.TextField()
    # The webhook's JSON "data": amounts as strings, never floats.
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While one worker sends it; a worker that died lets go when this passes.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["channel", "-created_at"], name="delivery_channel_recent"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["channel", "key"], name="one_delivery_per_channel_key"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed"]),
                name="delivery_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.channel_id} ({self.status})"


class OutboxCursor(models.Model):
    """How far ``dispatch`` has read one outbox table: the highest id read, and the ids below
    it not yet seen (``holes``: a transaction that took an id may commit after a later one;
    each hole is read again until it shows up or is old enough to have been rolled back)."""

    name = models.CharField(max_length=30, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    holes = models.JSONField(default=list, blank=True)  # [[id, first missed (unix s)], ...]
    # For outboxes read by time (the advisor's finished runs).
    since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.last_id}"
