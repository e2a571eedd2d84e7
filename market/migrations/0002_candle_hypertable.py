"""Candles become a TimescaleDB hypertable where the extension is available; a plain table
elsewhere (PostgreSQL without it, SQLite)."""

from __future__ import annotations

from django.db import migrations


def timescale_available(schema_editor) -> bool:
    if schema_editor.connection.vendor != "postgresql":
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        return cursor.fetchone() is not None


def make_hypertable(apps, schema_editor) -> None:
    if not timescale_available(schema_editor):
        return
    table = apps.get_model("market", "Candle")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        # Every unique index of a hypertable must hold its time column, the primary key too.
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        cursor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id, open_time)")
        cursor.execute(
            "SELECT create_hypertable(%s, 'open_time', migrate_data => true, "
            "chunk_time_interval => INTERVAL '7 days')",
            [table],
        )


class Migration(migrations.Migration):
    dependencies = [("market", "0001_initial")]
    operations = [migrations.RunPython(make_hypertable, migrations.RunPython.noop)]
