"""The installation's own part of client order ids (``Installation``), the prefix each run
of a bot keeps (``Bot.order_key``), and first sends written down for every order, not only
market orders (``MarketAttempt`` is now ``SendAttempt``).

SQLite rebuilds bots_bot to add a NOT NULL column, which drops its triggers: the
credential-owner triggers of 0004 are dropped before and made again after, as in 0007.
"""

from __future__ import annotations

import importlib

from django.db import migrations, models

_0007 = importlib.import_module("bots.migrations.0007_bot_stopping")


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0007_bot_stopping"),
    ]

    operations = [
        migrations.RenameModel(old_name="MarketAttempt", new_name="SendAttempt"),
        migrations.CreateModel(
            name="Installation",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False),
                ),
                ("order_prefix", models.CharField(max_length=4, unique=True)),
            ],
        ),
        migrations.RunPython(_0007.drop_on_sqlite, _0007.create_on_sqlite),
        migrations.AddField(
            model_name="bot",
            name="order_key",
            field=models.CharField(blank=True, max_length=30),
        ),
        migrations.RunPython(_0007.create_on_sqlite, _0007.drop_on_sqlite),
        migrations.AddField(
            model_name="order",
            name="refusals",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="bot",
            name="fill_cursor_trade",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
