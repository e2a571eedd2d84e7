"""A stop written down before it acts (``Bot.stopping_reason``, ``stopping_sells``).

SQLite rebuilds bots_bot to add NOT NULL columns, which drops its triggers and trips over the
one on accounts_exchangecredential that names bots_bot: the credential-owner triggers of 0004
are dropped before and made again after (PostgreSQL keeps them, and is left alone).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models


def _owner_triggers() -> Any:
    return importlib.import_module("bots.migrations.0004_bot_credential_owner")


def drop_on_sqlite(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "sqlite":
        _owner_triggers().drop(apps, schema_editor)


def create_on_sqlite(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "sqlite":
        _owner_triggers().create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0006_market_attempt"),
    ]

    operations = [
        migrations.RunPython(drop_on_sqlite, create_on_sqlite),
        migrations.AddField(
            model_name="bot",
            name="stopping_reason",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="bot",
            name="stopping_sells",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(create_on_sqlite, drop_on_sqlite),
    ]
