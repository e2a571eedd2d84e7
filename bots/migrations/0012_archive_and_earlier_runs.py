"""Bots to manage (issue 14): ``Bot.archived_at`` (put away by its owner), ``profit_before``
(what earlier runs made: statistics go on across a stop and a start), and the event kind of a
new grid laid on a running bot.

SQLite rebuilds bots_bot to add NOT NULL columns, which drops its triggers: the credential-owner
triggers of 0004 are dropped before and made again after, as in 0007.
"""

from __future__ import annotations

import importlib
from decimal import Decimal

from django.db import migrations, models


# 0007's two functions (see above), not a copy of them.
_stopping = importlib.import_module("bots.migrations.0007_bot_stopping")
drop_on_sqlite, create_on_sqlite = _stopping.drop_on_sqlite, _stopping.create_on_sqlite


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0011_live_gate_waiver"),
    ]

    operations = [
        migrations.RunPython(drop_on_sqlite, create_on_sqlite),
        migrations.AddField(
            model_name="bot",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="bot",
            name="profit_before",
            field=models.DecimalField(decimal_places=12, default=Decimal("0"), max_digits=30),
        ),
        migrations.RunPython(create_on_sqlite, drop_on_sqlite),
        migrations.AlterField(
            model_name="botevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("started", "Started"),
                    ("placed", "Placed"),
                    ("filled", "Filled"),
                    ("round_trip", "Round trip"),
                    ("cancelled", "Cancelled"),
                    ("skipped", "Skipped"),
                    ("stopped", "Stopped"),
                    ("error", "Error"),
                    ("regrid", "New grid"),
                ],
                max_length=12,
            ),
        ),
    ]
