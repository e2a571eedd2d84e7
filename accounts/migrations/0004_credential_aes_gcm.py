"""Exchange keys move from Fernet to AES-256-GCM bound to their row (accounts.crypto).

Each row gets its ``uid`` (the associated data's identity), then its Fernet tokens are
re-encrypted under the current key. A row this server cannot decrypt (its key is gone) is left
as it was: nothing is lost, and the pages and /readyz name it until its keys are entered again.
"""

import uuid

from django.db import migrations, models

from accounts.migrations._bot_triggers import create_on_sqlite, drop_on_sqlite


def encrypt_with_aes_gcm(apps, schema_editor):
    from accounts import crypto

    ExchangeCredential = apps.get_model("accounts", "ExchangeCredential")
    fields = ("api_key_encrypted", "secret_encrypted")
    for row in ExchangeCredential.objects.filter(uid__isnull=True).iterator():
        row.uid = uuid.uuid4()
        changed = ["uid"]
        contexts = {f: crypto.context("exchangecredential", row.uid, f) for f in fields}
        try:
            plain = {
                f: crypto.decrypt(getattr(row, f), context=contexts[f])
                for f in fields
                if crypto.key_id(getattr(row, f)) == "fernet"
            }
        except crypto.UndecryptableSecret:
            plain = {}
        for field, value in plain.items():
            setattr(row, field, crypto.encrypt(value, context=contexts[field]))
            changed.append(field)
        row.save(update_fields=changed)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_credential_testnet"),
    ]

    operations = [
        # SQLite rebuilds the table for these columns: the bots' triggers go and come back.
        migrations.RunPython(drop_on_sqlite, create_on_sqlite),
        migrations.AddField(
            model_name="exchangecredential",
            name="check_warning",
            field=models.CharField(blank=True, editable=False, max_length=300),
        ),
        migrations.AddField(
            model_name="exchangecredential",
            name="uid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(encrypt_with_aes_gcm, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="exchangecredential",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.RunPython(create_on_sqlite, drop_on_sqlite),
    ]
