"""Re-encrypt every Telegram bot token and webhook signing secret under the first key of
CREDENTIALS_KEYS (the companion of accounts' ``rotate_encryption_key``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import crypto
from notifications import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every notification secret (Telegram bot tokens, webhook signing secrets) "
        "under the first key of CREDENTIALS_KEYS, and report how many were rotated, already "
        "current or unreadable. Run it with rotate_encryption_key before removing old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        primary = crypto.keyring().primary
        rotated, current, unreadable = services.rotate_secrets()
        self.stdout.write(
            f"Notification secrets under “{primary}”: {rotated} rotated, {current} already "
            f"current, {len(unreadable)} unreadable."
        )
        if unreadable:
            for channel in unreadable:
                self.stderr.write(
                    f"  unreadable: channel {channel.pk} “{channel.label}” ({channel.owner}) "
                    f"stored under “{crypto.key_id(channel.secret_encrypted)}”"
                )
            raise CommandError(
                f"{len(unreadable)} notification secret(s) could not be decrypted with this "
                "keyring: keep its old keys, or have their owners enter them again."
            )
