"""SQLite drops a table's triggers when Django rebuilds it (adding a NOT NULL column with a
default does), and a rebuild of accounts_exchangecredential trips over the bots app's
credential-owner triggers, which name it (bots/migrations/0004_bot_credential_owner.py, whose
SQL this reuses). So a migration here that rebuilds the table drops them first and makes them
again after, on SQLite and only once the bots app has them; PostgreSQL keeps its triggers.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db.migrations.recorder import MigrationRecorder

BOTS_TRIGGERS = ("bots", "0004_bot_credential_owner")


def _bots_have_them(schema_editor: Any) -> bool:
    applied = MigrationRecorder(schema_editor.connection).applied_migrations()
    return schema_editor.connection.vendor == "sqlite" and BOTS_TRIGGERS in applied


def drop_on_sqlite(apps: Any, schema_editor: Any) -> None:
    if _bots_have_them(schema_editor):
        importlib.import_module("bots.migrations.0004_bot_credential_owner").drop(
            apps, schema_editor
        )


def create_on_sqlite(apps: Any, schema_editor: Any) -> None:
    if _bots_have_them(schema_editor):
        importlib.import_module("bots.migrations.0004_bot_credential_owner").create(
            apps, schema_editor
        )
