"""A bot's credential is its owner's, enforced by the database too (Bot.save checks it first).

Django has no composite foreign key, so triggers do it, on SQLite and PostgreSQL alike: a bot
row whose credential belongs to someone else is refused on insert and update, and so is moving
a credential that bots use to another owner. SQLite drops a table's triggers when Django
rebuilds the table (some AlterField and constraint changes do): a later migration that rebuilds
bots_bot or accounts_exchangecredential on SQLite must create them again.
tests/bots/test_admin.py::test_a_bots_credential_belongs_to_its_owner fails when they are gone.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

MESSAGE = "bot_credential_owner: a bot trades only with its owner's exchange keys"

SQLITE_BOT = """
CREATE TRIGGER bot_credential_owner_{event} BEFORE {clause} ON bots_bot FOR EACH ROW
WHEN NEW.credential_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM accounts_exchangecredential c
    WHERE c.id = NEW.credential_id AND c.owner_id = NEW.owner_id
)
BEGIN SELECT RAISE(ABORT, '{message}'); END
"""
SQLITE_CREDENTIAL = """
CREATE TRIGGER credential_owner_of_bots BEFORE UPDATE OF owner_id ON accounts_exchangecredential
FOR EACH ROW WHEN EXISTS (
    SELECT 1 FROM bots_bot b WHERE b.credential_id = NEW.id AND b.owner_id <> NEW.owner_id
)
BEGIN SELECT RAISE(ABORT, '{message}'); END
"""
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS bot_credential_owner_insert",
    "DROP TRIGGER IF EXISTS bot_credential_owner_update",
    "DROP TRIGGER IF EXISTS credential_owner_of_bots",
]

POSTGRES = [
    """
CREATE FUNCTION bot_credential_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.credential_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM accounts_exchangecredential c
        WHERE c.id = NEW.credential_id AND c.owner_id = NEW.owner_id
    ) THEN
        RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
""",
    """
CREATE TRIGGER bot_credential_owner BEFORE INSERT OR UPDATE OF owner_id, credential_id
ON bots_bot FOR EACH ROW EXECUTE FUNCTION bot_credential_owner()
""",
    """
CREATE FUNCTION credential_owner_of_bots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM bots_bot b WHERE b.credential_id = NEW.id AND b.owner_id <> NEW.owner_id
    ) THEN
        RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
""",
    """
CREATE TRIGGER credential_owner_of_bots BEFORE UPDATE OF owner_id
ON accounts_exchangecredential FOR EACH ROW EXECUTE FUNCTION credential_owner_of_bots()
""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS bot_credential_owner ON bots_bot",
    "DROP FUNCTION IF EXISTS bot_credential_owner()",
    "DROP TRIGGER IF EXISTS credential_owner_of_bots ON accounts_exchangecredential",
    "DROP FUNCTION IF EXISTS credential_owner_of_bots()",
]


def statements(vendor: str) -> list[str]:
    message = MESSAGE.replace("'", "''")
    if vendor == "sqlite":
        return [
            SQLITE_BOT.format(event="insert", clause="INSERT", message=message),
            SQLITE_BOT.format(
                event="update", clause="UPDATE OF owner_id, credential_id", message=message
            ),
            SQLITE_CREDENTIAL.format(message=message),
        ]
    if vendor == "postgresql":
        return [sql.replace("{message}", message) for sql in POSTGRES]
    raise NotImplementedError(f"no bot credential triggers for {vendor}")


def create(apps: Any, schema_editor: Any) -> None:
    for sql in statements(schema_editor.connection.vendor):
        schema_editor.execute(sql, params=None)


def drop(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    for sql in SQLITE_DROP if vendor == "sqlite" else POSTGRES_DROP:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_exchange_credentials"),
        ("bots", "0003_live_trading"),
    ]

    operations = [migrations.RunPython(create, drop)]
