"""Re-encrypt every stored exchange key under the first key of CREDENTIALS_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import crypto, services


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored exchange key (and the former Fernet tokens) under the first "
        "key of CREDENTIALS_KEYS, and report how many were rotated, already current or "
        "unreadable. Once none is unreadable, the other keys can leave the keyring."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        primary = crypto.keyring().primary
        result = services.rotate_encryption_key()
        self.stdout.write(
            f"Exchange keys under “{primary}”: {result.rotated} rotated, "
            f"{result.current} already current, {len(result.unreadable)} unreadable."
        )
        if result.unreadable:
            for cred in result.unreadable:
                self.stderr.write(
                    f"  unreadable: credential {cred.pk} “{cred.label_with_mode}” "
                    f"({cred.exchange}, {cred.owner}) stored under "
                    f"“{crypto.key_id(cred.api_key_encrypted)}”"
                )
            # A non-zero exit for scripts: keep the old keys until these are sorted out.
            raise CommandError(
                f"{len(result.unreadable)} exchange key(s) could not be decrypted with this "
                "keyring: keep its old keys, or have their owners enter them again."
            )
        self.stdout.write("Every exchange key is under the first key: the others may be removed.")
