"""Work on the encrypted exchange keys across rows: which cannot be read, and re-encrypting them
all under the keyring's first key (accounts.crypto)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from accounts.crypto import UndecryptableSecret
from accounts.models import ExchangeCredential

logger = logging.getLogger(__name__)


def unreadable_credentials(owner: Any = None) -> list[ExchangeCredential]:
    """The exchange keys this server can no longer decrypt (a key left the keyring, or the
    stored value was altered): all owners' for the readiness probe and operators, one
    owner's for their pages. Nothing is written."""
    rows = (
        ExchangeCredential.objects.all()
        if owner is None
        else ExchangeCredential.objects.owned_by(owner)
    )
    return [c for c in rows.select_related("owner") if not c.readable()]


@dataclass
class Rotation:
    rotated: int = 0
    current: int = 0
    unreadable: list[ExchangeCredential] = field(default_factory=list)


def rotate_encryption_key() -> Rotation:
    """Re-encrypt every stored exchange key under the keyring's first key, one row at a time
    (locked while it is rewritten). Rows already under it are left alone; rows that do not
    decrypt are left as they are and listed: nothing is lost."""
    result = Rotation()
    for pk in ExchangeCredential.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            cred = (
                ExchangeCredential.objects.select_for_update()
                .select_related("owner")
                .filter(pk=pk)
                .first()
            )
            if cred is None:  # deleted meanwhile
                continue
            was_current = cred.encrypted_under_current_key()
            try:
                cred.keys()  # re-encrypts under the first key when it was not (and saves)
            except UndecryptableSecret:
                result.unreadable.append(cred)
                continue
            if was_current:
                result.current += 1
            else:
                result.rotated += 1
    logger.info(
        "exchange keys re-encrypted: %s rotated, %s already current, %s unreadable",
        result.rotated,
        result.current,
        len(result.unreadable),
    )
    return result
