from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        if not (extra["is_staff"] and extra["is_superuser"]):
            raise ValueError("A superuser must have is_staff and is_superuser set")
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who trades: signs in with an email address, not a username."""

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()  # type: ignore[misc]

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class CredentialQuerySet(models.QuerySet["ExchangeCredential"]):
    def owned_by(self, user: Any) -> CredentialQuerySet:
        return self.filter(owner=user)


class ExchangeCredential(models.Model):
    """A user's API key for one exchange account, encrypted at rest (accounts.crypto).

    Only ``key_hint`` (the key's last four characters) is ever shown; the secret never
    leaves this model except to the exchange client. Each encrypted column is bound to this
    row's ``uid`` and its own name (the associated data), so it decrypts nowhere else.
    """

    ENCRYPTED_FIELDS = ("api_key_encrypted", "secret_encrypted")

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="credentials")
    exchange = models.CharField(max_length=30, default="binance")
    label = models.CharField(max_length=60)
    # A Binance spot testnet key (testnet.binance.vision): play money, so no paper-first gate.
    testnet = models.BooleanField(
        default=False, help_text="A spot testnet key: its bots trade play money, never real funds."
    )
    # The row's identity in the encryption's associated data: known before the row is saved.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    key_hint = models.CharField(max_length=8, editable=False)
    api_key_encrypted = models.TextField(editable=False)
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the last check passed (the key works, cannot withdraw, can trade spot); a key
    # never verified cannot start a live bot.
    verified_at = models.DateTimeField(null=True, blank=True)
    # What the last check advises without refusing the key (no IP whitelist), shown on pages.
    check_warning = models.CharField(max_length=300, blank=True, editable=False)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["exchange", "label"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "label"], name="one_credential_label_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.label_with_mode} ({self.exchange} {self.key_hint})"

    def __repr__(self) -> str:  # never the encrypted fields, even in tracebacks
        return f"<ExchangeCredential {self.pk} {self}>"

    @property
    def label_with_mode(self) -> str:
        """The label, with "(testnet)" after it for a testnet key: wherever a key is named."""
        return f"{self.label} (testnet)" if self.testnet else self.label

    def _context(self, field: str) -> bytes:
        from accounts import crypto

        return crypto.context("exchangecredential", self.uid, field)

    def set_keys(self, api_key: str, secret: str) -> None:
        from accounts import crypto

        self.api_key_encrypted = crypto.encrypt(api_key, context=self._context("api_key_encrypted"))
        self.secret_encrypted = crypto.encrypt(secret, context=self._context("secret_encrypted"))
        self.key_hint = crypto.mask(api_key)

    def _decrypted(self) -> tuple[str, str]:
        from accounts import crypto

        api_key, secret = (
            crypto.decrypt(getattr(self, f), context=self._context(f))
            for f in self.ENCRYPTED_FIELDS
        )
        return api_key, secret

    def keys(self) -> tuple[str, str]:
        """(api_key, secret), decrypted: only for building the exchange client. Values stored
        under an older key (or the former Fernet format) are re-encrypted under the current
        one on the way, and saved."""
        api_key, secret = self._decrypted()
        if self.pk is not None and not self.encrypted_under_current_key():
            self.reencrypt(api_key, secret)
        return api_key, secret

    def readable(self) -> bool:
        """Whether this server can still decrypt the keys (CREDENTIALS_KEYS, CREDENTIALS_KEY or
        SECRET_KEY may have changed since they were stored); nothing decrypted leaves this
        method, and nothing is written."""
        from accounts import crypto

        try:
            self._decrypted()
        except crypto.UndecryptableSecret:
            return False
        return True

    def encrypted_under_current_key(self) -> bool:
        from accounts import crypto

        return all(crypto.is_current(getattr(self, f)) for f in self.ENCRYPTED_FIELDS)

    def reencrypt(self, api_key: str, secret: str) -> bool:
        """Store these (decrypted) keys again under the current key, unless the row changed
        meanwhile (then the newer values stand); True when written."""
        before = {f: getattr(self, f) for f in self.ENCRYPTED_FIELDS}
        self.set_keys(api_key, secret)
        after = {f: getattr(self, f) for f in self.ENCRYPTED_FIELDS}
        written = ExchangeCredential.objects.filter(pk=self.pk, **before).update(**after)
        if not written:
            for field, value in before.items():
                setattr(self, field, value)
        return bool(written)
