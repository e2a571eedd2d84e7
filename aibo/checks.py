"""System checks for the secrets: the keyring's format (always), and at `manage.py check
--deploy` the secrets a deployment must not ship with.

Exchange keys are encrypted under the keyring CREDENTIALS_KEYS (accounts/crypto.py), or a key
derived from the former CREDENTIALS_KEY, or from SECRET_KEY when both are empty, which the
embedded default does. A placeholder from `.env.example` is public, so a deployment using one
has no secret at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from accounts.crypto import KEY_HINT, parse_keyring

# The placeholder SECRET_KEY .env.example shipped before it said how to make a key: .env files
# copied from it are still about.
OLD_PLACEHOLDERS = frozenset(
    {"change-me-to-a-long-random-string-of-at-least-fifty-characters-please"}
)
SECRET_NAMES = (
    "SECRET_KEY",
    "CREDENTIALS_KEYS",
    "CREDENTIALS_KEY",
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
)
FERNET_HINT = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def placeholders(example: Path | None = None) -> frozenset[str]:
    """Every secret value `.env.example` shows (commented-out lines too) and the old ones."""
    path = example or Path(settings.BASE_DIR) / ".env.example"
    values = set(OLD_PLACEHOLDERS)
    if path.exists():  # the image has it; a bare checkout without it still knows the old ones
        for line in path.read_text().splitlines():
            name, sep, value = line.lstrip("# ").partition("=")
            if sep and name.strip() in SECRET_NAMES and value.strip():
                values.add(value.strip())
    return frozenset(values)


@register(Tags.security)
def check_keyring(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A malformed CREDENTIALS_KEYS stops every page that touches exchange keys: say so at start."""
    try:
        parse_keyring(settings.CREDENTIALS_KEYS or "")
    except ValueError as e:
        return [
            Error(
                f"CREDENTIALS_KEYS: {e} (the format: <id>:<32 bytes in base64>[,<id>:<key>]).",
                hint=KEY_HINT,
                id="aibo.E007",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    public = placeholders()
    errors: list[CheckMessage] = []
    if settings.SECRET_KEY in public:
        errors.append(
            Error(
                "SECRET_KEY is the placeholder from .env.example: anyone can sign sessions and "
                "decrypt the exchange keys derived from it.",
                hint="python -c 'import secrets; print(secrets.token_urlsafe(64))'",
                id="aibo.E001",
            )
        )
    credentials_key = settings.CREDENTIALS_KEY
    keyring = settings.CREDENTIALS_KEYS
    if credentials_key and credentials_key in public:
        errors.append(
            Error("CREDENTIALS_KEY is the placeholder from .env.example.", id="aibo.E002")
        )
    if keyring and keyring in public:
        errors.append(
            Error("CREDENTIALS_KEYS is the placeholder from .env.example.", id="aibo.E008")
        )
    if credentials_key:
        try:
            Fernet(credentials_key.encode())
        except ValueError:
            errors.append(
                Error(
                    "CREDENTIALS_KEY (the former key) is not a Fernet key (32 url-safe "
                    "base64-encoded bytes); put new keys in CREDENTIALS_KEYS.",
                    hint=FERNET_HINT,
                    id="aibo.E003",
                )
            )
    # The scaled deployment keeps the two apart: a leaked SECRET_KEY (in a web server's memory,
    # a log, a backup of .env) must not decrypt every user's exchange keys too.
    if not settings.DEBUG and not settings.EMBEDDED:
        if not (keyring or credentials_key):
            errors.append(
                Error(
                    "CREDENTIALS_KEYS must be set in the scaled deployment (it encrypts the "
                    "exchange keys; without it they are encrypted under SECRET_KEY).",
                    hint=KEY_HINT,
                    id="aibo.E004",
                )
            )
        elif credentials_key == settings.SECRET_KEY:
            errors.append(Error("CREDENTIALS_KEY must differ from SECRET_KEY.", id="aibo.E005"))
    if settings.REDIS_URL:
        password = urlsplit(settings.REDIS_URL).password
        if password is None:
            errors.append(
                Warning(
                    "REDIS_URL has no password: whoever reaches Redis can queue Huey tasks, "
                    "which the workers unpickle (run code).",
                    hint="redis://:PASSWORD@host:6379/0 with redis-server --requirepass",
                    id="aibo.W001",
                )
            )
        elif password in public:
            errors.append(
                Error("REDIS_URL's password is the placeholder from .env.example.", id="aibo.E006")
            )
    if settings.DATABASE_URL and urlsplit(settings.DATABASE_URL).password in public:
        errors.append(
            Warning(
                "DATABASE_URL's password is the placeholder from .env.example.",
                hint="set POSTGRES_PASSWORD in .env",
                id="aibo.W002",
            )
        )
    return errors
