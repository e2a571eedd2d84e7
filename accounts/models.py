from __future__ import annotations

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
    leaves this model except to the exchange client.
    """

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="credentials")
    exchange = models.CharField(max_length=30, default="binance")
    label = models.CharField(max_length=60)
    # A Binance spot testnet key (testnet.binance.vision): play money, so no paper-first gate.
    testnet = models.BooleanField(
        default=False, help_text="A spot testnet key: its bots trade play money, never real funds."
    )
    key_hint = models.CharField(max_length=8, editable=False)
    api_key_encrypted = models.TextField(editable=False)
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)

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

    def set_keys(self, api_key: str, secret: str) -> None:
        from accounts import crypto

        self.api_key_encrypted = crypto.encrypt(api_key)
        self.secret_encrypted = crypto.encrypt(secret)
        self.key_hint = crypto.mask(api_key)

    def keys(self) -> tuple[str, str]:
        """(api_key, secret), decrypted: only for building the exchange client."""
        from accounts import crypto

        return crypto.decrypt(self.api_key_encrypted), crypto.decrypt(self.secret_encrypted)

    def readable(self) -> bool:
        """Whether this server can still decrypt the keys (CREDENTIALS_KEY or SECRET_KEY may
        have changed since they were stored); nothing decrypted leaves this method."""
        from accounts import crypto

        try:
            self.keys()
        except crypto.UndecryptableSecret:
            return False
        return True
