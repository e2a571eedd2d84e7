"""Encryption of exchange keys at rest: AES-256-GCM (``cryptography``'s AEAD) under a keyring.

A stored secret is one self-describing text value::

    v2:<key id>:<url-safe base64 of nonce (12 random bytes) + ciphertext + 16-byte tag>

The associated data is the secret's place, ``aibo:<model>:<row uid>:<field>``
(``context``): a ciphertext copied to another row or column does not decrypt, nor does one
with a single bit changed (``UndecryptableSecret`` either way).

The keyring (``CREDENTIALS_KEYS``) is ``<id>:<key>[,<id>:<key>...]``: an id of letters,
digits, ``_`` and ``-`` (at most 32; ``sk-`` and ``ck-`` are taken), a key of 32 bytes in
base64 (url-safe or standard, padding optional). The first key encrypts, every key decrypts.
To rotate: put a new key first, run ``manage.py rotate_encryption_key``, then drop the old ones.

Without a keyring the encrypting key is derived (HKDF-SHA256) from ``CREDENTIALS_KEY`` when it
is set, else from ``SECRET_KEY``, so a copy of the database alone never reveals a key. Those
derived keys always decrypt too (ids ``ck-``/``sk-`` + a fingerprint), as do the Fernet tokens
stored before this format (under ``CREDENTIALS_KEY`` or the key derived from ``SECRET_KEY``):
the model re-encrypts those on first read, the command all at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION = "v2"
NONCE_BYTES = 12  # 96 bits: GCM's own size, random per secret
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
RESERVED_PREFIXES = ("sk-", "ck-")  # the derived keys' ids
KEY_HINT = (
    "python -c 'import base64, secrets; "
    'print("k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())\''
)


class UndecryptableSecret(Exception):
    """The stored value does not decrypt here: its key is not in the keyring (CREDENTIALS_KEYS,
    CREDENTIALS_KEY or SECRET_KEY changed), or the value was altered or moved."""


@dataclass(frozen=True)
class Keyring:
    primary: str  # the id of the key that encrypts
    keys: dict[str, bytes]  # every id that decrypts -> its 32 bytes
    fernets: tuple[Fernet, ...]  # the former format's keys, read only

    def cipher(self, key_id: str) -> AESGCM:
        return AESGCM(self.keys[key_id])


def parse_keyring(text: str) -> list[tuple[str, bytes]]:
    """``CREDENTIALS_KEYS`` as (id, key) pairs, first first; ValueError says what is wrong
    (never quoting a key)."""
    pairs: list[tuple[str, bytes]] = []
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep:
            raise ValueError(f"entry {n} is not <id>:<base64 key>")
        if not KEY_ID.match(key_id) or key_id.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"entry {n}: a key id is 1 to 32 letters, digits, '_' or '-', and does not "
                "start with 'sk-' or 'ck-'"
            )
        if any(key_id == seen for seen, _ in pairs):
            raise ValueError(f"entry {n}: the key id {key_id!r} is listed twice")
        key = _b64decode(encoded.strip())
        if key is None or len(key) != 32:
            raise ValueError(f"entry {n} ({key_id}): the key must be 32 bytes in base64")
        pairs.append((key_id, key))
    return pairs


def _b64decode(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def _derived(material: bytes, prefix: str) -> tuple[str, bytes]:
    """An AES-256 key derived from a configured secret, and its id: a fingerprint that names
    which secret it came from without revealing anything of it."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"aibo exchange credentials", info=b"aes-256-gcm"
    ).derive(material)
    return f"{prefix}{hashlib.sha256(b'aibo key id' + key).hexdigest()[:8]}", key


@cache
def _keyring(configured: str, credentials_key: str, secret_key: str) -> Keyring:
    try:
        ring = parse_keyring(configured)
    except ValueError as e:
        raise ImproperlyConfigured(f"CREDENTIALS_KEYS: {e}. A new key: {KEY_HINT}") from None
    keys = dict(ring)
    fernets = []
    derived = []
    if credentials_key:
        derived.append(_derived(credentials_key.encode(), "ck-"))
        # Not a Fernet key (the system check says so): nothing was ever stored under it.
        with contextlib.suppress(ValueError):
            fernets.append(Fernet(credentials_key.encode()))
    derived.append(_derived(secret_key.encode(), "sk-"))
    legacy = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"aibo exchange credentials", info=b"fernet"
    ).derive(secret_key.encode())
    fernets.append(Fernet(base64.urlsafe_b64encode(legacy)))
    for key_id, key in derived:
        keys.setdefault(key_id, key)
    primary = ring[0][0] if ring else derived[0][0]
    return Keyring(primary=primary, keys=keys, fernets=tuple(fernets))


def keyring() -> Keyring:
    """The keys of this server's settings (cached per settings: a test may change them)."""
    return _keyring(
        settings.CREDENTIALS_KEYS or "", settings.CREDENTIALS_KEY or "", settings.SECRET_KEY
    )


def context(model: str, uid: object, field: str) -> bytes:
    """The associated data that ties a ciphertext to its row and column."""
    return f"aibo:{model}:{uid}:{field}".encode()


def encrypt(plain: str, *, context: bytes) -> str:
    ring = keyring()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = ring.cipher(ring.primary).encrypt(nonce, plain.encode(), context)
    return f"{VERSION}:{ring.primary}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def decrypt(stored: str, *, context: bytes) -> str:
    ring = keyring()
    version, _, rest = stored.partition(":")
    if version != VERSION:
        return _decrypt_fernet(stored, ring)
    key_id, _, payload = rest.partition(":")
    if key_id not in ring.keys:
        raise UndecryptableSecret(
            f"This exchange key was stored under the encryption key “{key_id}”, which this "
            "server does not have (CREDENTIALS_KEYS, CREDENTIALS_KEY or SECRET_KEY changed); "
            "enter it again, or put that key back in CREDENTIALS_KEYS."
        )
    raw = _b64decode(payload) or b""
    try:
        plain = ring.cipher(key_id).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
    except (InvalidTag, ValueError):  # altered, truncated, or moved from another row/column
        raise UndecryptableSecret(
            "This exchange key's stored value does not match its place (altered or copied "
            "from another row); enter it again."
        ) from None
    return plain.decode()


def _decrypt_fernet(token: str, ring: Keyring) -> str:
    for fernet in ring.fernets:
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            continue
    raise UndecryptableSecret(
        "This exchange key was stored under another CREDENTIALS_KEY or SECRET_KEY; enter it again."
    )


def is_current(stored: str) -> bool:
    """Whether the value is in this format under the key that encrypts now."""
    return stored.startswith(f"{VERSION}:{keyring().primary}:")


def key_id(stored: str) -> str:
    """The id of the key a stored value was encrypted under; "fernet" for the former format."""
    version, _, rest = stored.partition(":")
    return rest.partition(":")[0] if version == VERSION else "fernet"


def mask(plain: str) -> str:
    """What a person may see of a key: its last four characters."""
    return "••••" + plain[-4:] if len(plain) > 8 else "••••"
