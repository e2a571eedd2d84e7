"""Encryption of exchange keys at rest (Fernet: AES-128-CBC with an HMAC-SHA256, from
`cryptography`). The key is CREDENTIALS_KEY, or one derived from SECRET_KEY with HKDF, so a
copy of the database alone never reveals a key."""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class UndecryptableSecret(Exception):
    """The stored value was encrypted under another key (CREDENTIALS_KEY or SECRET_KEY changed)."""


@cache
def _fernet(configured: str, secret_key: str) -> Fernet:
    if configured:
        try:
            return Fernet(configured.encode())
        except ValueError:
            raise ImproperlyConfigured(
                "CREDENTIALS_KEY must be 32 url-safe base64-encoded bytes "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"aibo exchange credentials", info=b"fernet"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def fernet() -> Fernet:
    return _fernet(settings.CREDENTIALS_KEY or "", settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "This exchange key was stored under another CREDENTIALS_KEY or SECRET_KEY; "
            "enter it again."
        ) from None


def mask(plain: str) -> str:
    """What a person may see of a key: its last four characters."""
    return "••••" + plain[-4:] if len(plain) > 8 else "••••"
