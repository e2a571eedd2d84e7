"""Exchange keys at rest: AES-256-GCM under a keyring, bound to their row and column; the former
Fernet tokens migrate (on first read, by the migration, by the command) with nothing lost; a
rotation re-encrypts every row so the old keys can go; a lost key is named, never silent."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from accounts import crypto, services
from accounts.crypto import UndecryptableSecret
from accounts.models import ExchangeCredential

pytestmark = pytest.mark.django_db

API_KEY = "aibo-test-key-AbCd1234wxyz"
SECRET = "aibo-test-secret-QrSt5678uvZZ"
FERNET_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte 0x80, then the time)


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def keyring(settings: Any) -> Any:
    """``keyring("new", "old")``: CREDENTIALS_KEYS with those ids (fresh keys, kept per id)."""
    made: dict[str, str] = {}

    def configure(*ids: str) -> None:
        for key_id in ids:
            made.setdefault(key_id, new_key())
        settings.CREDENTIALS_KEYS = ",".join(f"{i}:{made[i]}" for i in ids)

    return configure


def credential(owner: Any, label: str = "Main account", **fields: Any) -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label, **fields)
    cred.set_keys(API_KEY, SECRET)
    cred.save()
    return cred


def raw_rows() -> list[tuple[str, str]]:
    """The encrypted columns as the database holds them (no ORM in between)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key_encrypted, secret_encrypted FROM accounts_exchangecredential"
        )
        return [tuple(row) for row in cursor.fetchall()]


def assert_nothing_readable_at_rest(under: str) -> None:
    rows = raw_rows()
    assert rows
    for row in rows:
        for value in row:
            assert API_KEY not in value and SECRET not in value and "wxyz" not in value
            assert not value.startswith(FERNET_PREFIX)
            assert value.startswith(f"v2:{under}:")


def legacy_fernet(settings: Any) -> Fernet:
    """The Fernet key the former code used: CREDENTIALS_KEY, else one derived from SECRET_KEY."""
    if settings.CREDENTIALS_KEY:
        return Fernet(settings.CREDENTIALS_KEY.encode())
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"aibo exchange credentials", info=b"fernet"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def store_as_fernet(cred: ExchangeCredential, fernet: Fernet) -> None:
    """The row as the former code left it: both columns Fernet tokens."""
    ExchangeCredential.objects.filter(pk=cred.pk).update(
        api_key_encrypted=fernet.encrypt(API_KEY.encode()).decode(),
        secret_encrypted=fernet.encrypt(SECRET.encode()).decode(),
    )


# --- the format ----------------------------------------------------------------------------------


def test_keys_are_stored_as_aes_gcm_under_the_first_key_of_the_keyring(user, keyring):
    keyring("k2", "k1")
    cred = credential(user)
    assert_nothing_readable_at_rest(under="k2")
    nonce_and_sealed = base64.urlsafe_b64decode(cred.api_key_encrypted.split(":")[2])
    # 12-byte nonce + ciphertext as long as the key + 16-byte tag
    assert len(nonce_and_sealed) == 12 + len(API_KEY) + 16
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)


def test_every_secret_gets_its_own_nonce(user, keyring):
    keyring("k1")
    first, second = credential(user, "one"), credential(user, "two")
    assert first.api_key_encrypted != second.api_key_encrypted
    nonces = {
        base64.urlsafe_b64decode(c.api_key_encrypted.split(":")[2])[:12] for c in (first, second)
    }
    assert len(nonces) == 2


def test_without_a_keyring_the_key_is_derived_from_secret_key(user, settings):
    settings.CREDENTIALS_KEYS = ""
    settings.CREDENTIALS_KEY = ""
    cred = credential(user)
    assert crypto.key_id(cred.api_key_encrypted).startswith("sk-")
    assert cred.keys() == (API_KEY, SECRET)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40  # the derived key is gone with it
    with pytest.raises(UndecryptableSecret, match="which this server does not have"):
        ExchangeCredential.objects.get().keys()


def test_with_only_the_former_credentials_key_the_key_is_derived_from_it(user, settings):
    # A scaled deployment keeps exchange keys apart from SECRET_KEY: upgrading must not undo it.
    settings.CREDENTIALS_KEYS = ""
    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    cred = credential(user)
    assert crypto.key_id(cred.api_key_encrypted).startswith("ck-")
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("k1", "is not <id>:<base64 key>"),
        ("k 1:" + "A" * 43, "a key id is 1 to 32 letters"),
        ("sk-mine:" + "A" * 43, "does not start with 'sk-' or 'ck-'"),
        ("k1:c2hvcnQ=", "the key must be 32 bytes in base64"),
        ("k1:not base64 at all!", "the key must be 32 bytes in base64"),
        (f"k1:{'A' * 43},k1:{'B' * 43}", "listed twice"),
    ],
)
def test_a_malformed_keyring_is_refused_with_the_reason(settings, value, words):
    settings.CREDENTIALS_KEYS = value
    with pytest.raises(ImproperlyConfigured, match=words):
        crypto.keyring()


def test_the_keyring_takes_standard_and_url_safe_base64_with_or_without_padding(settings):
    raw = secrets.token_bytes(32)
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    settings.CREDENTIALS_KEYS = f" a:{standard} , b:{urlsafe} "
    ring = crypto.keyring()
    assert ring.primary == "a"
    assert ring.keys["a"] == ring.keys["b"] == raw


# --- tampering and swapping ----------------------------------------------------------------------


def test_a_tampered_ciphertext_is_refused(user, keyring):
    keyring("k1")
    cred = credential(user)
    version, key_id, payload = cred.secret_encrypted.split(":")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[20] ^= 0x01  # one bit of the ciphertext
    tampered = f"{version}:{key_id}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    ExchangeCredential.objects.filter(pk=cred.pk).update(secret_encrypted=tampered)
    stored = ExchangeCredential.objects.get()
    with pytest.raises(UndecryptableSecret, match="does not match its place"):
        stored.keys()
    assert not stored.readable()


def test_a_truncated_ciphertext_is_refused(user, keyring):
    keyring("k1")
    cred = credential(user)
    ExchangeCredential.objects.filter(pk=cred.pk).update(secret_encrypted="v2:k1:AAAA")
    with pytest.raises(UndecryptableSecret):
        ExchangeCredential.objects.get().keys()


def test_a_ciphertext_copied_from_another_row_is_refused(user, other_user, keyring):
    keyring("k1")
    mine, theirs = credential(user), credential(other_user)
    # Someone with write access to the database gives my row their (valid) ciphertexts.
    ExchangeCredential.objects.filter(pk=mine.pk).update(
        api_key_encrypted=theirs.api_key_encrypted, secret_encrypted=theirs.secret_encrypted
    )
    with pytest.raises(UndecryptableSecret, match="does not match its place"):
        ExchangeCredential.objects.get(pk=mine.pk).keys()
    assert ExchangeCredential.objects.get(pk=theirs.pk).keys() == (API_KEY, SECRET)


def test_a_ciphertext_swapped_between_the_columns_is_refused(user, keyring):
    keyring("k1")
    cred = credential(user)
    ExchangeCredential.objects.filter(pk=cred.pk).update(
        api_key_encrypted=cred.secret_encrypted, secret_encrypted=cred.api_key_encrypted
    )
    with pytest.raises(UndecryptableSecret):
        ExchangeCredential.objects.get().keys()


def test_a_key_that_left_the_keyring_is_named(user, keyring):
    keyring("old")
    credential(user)
    keyring("new")
    with pytest.raises(UndecryptableSecret, match="encryption key “old”, which this server"):
        ExchangeCredential.objects.get().keys()


# --- the former Fernet tokens --------------------------------------------------------------------


@pytest.mark.parametrize("former_key", ["derived from SECRET_KEY", "CREDENTIALS_KEY"])
def test_fernet_rows_are_reencrypted_on_first_read(user, settings, keyring, former_key):
    if former_key == "CREDENTIALS_KEY":
        settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    keyring("k1")
    cred = credential(user)
    store_as_fernet(cred, legacy_fernet(settings))
    assert all(v.startswith(FERNET_PREFIX) for v in raw_rows()[0])

    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)

    assert_nothing_readable_at_rest(under="k1")
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)


def test_a_row_under_an_older_key_of_the_keyring_moves_to_the_first_on_read(user, keyring):
    keyring("k1")
    credential(user)
    keyring("k2", "k1")
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)
    assert_nothing_readable_at_rest(under="k2")


def test_readable_only_looks_and_writes_nothing(user, settings, keyring):
    keyring("k1")
    cred = credential(user)
    store_as_fernet(cred, legacy_fernet(settings))
    assert ExchangeCredential.objects.get().readable()
    assert all(v.startswith(FERNET_PREFIX) for v in raw_rows()[0])


def test_a_fernet_token_under_a_lost_key_stays_as_it_was(user, settings, keyring):
    keyring("k1")
    cred = credential(user)
    store_as_fernet(cred, Fernet(Fernet.generate_key()))  # a key nobody has any more
    before = raw_rows()
    with pytest.raises(UndecryptableSecret, match="another CREDENTIALS_KEY or SECRET_KEY"):
        ExchangeCredential.objects.get().keys()
    assert raw_rows() == before


# --- rotation ------------------------------------------------------------------------------------


def test_a_rotation_reencrypts_every_row_and_the_old_keys_can_then_go(
    user, other_user, settings, keyring, capsys
):
    keyring("k1")
    old = [credential(user, "one"), credential(other_user, "two")]
    fernet_row = credential(user, "three")
    store_as_fernet(fernet_row, legacy_fernet(settings))
    keyring("k2", "k1")  # the operator puts a new key first
    credential(user, "four")  # already under k2

    call_command("rotate_encryption_key")

    out = capsys.readouterr().out
    assert "Exchange keys under “k2”: 3 rotated, 1 already current, 0 unreadable." in out
    assert "the others may be removed" in out
    assert_nothing_readable_at_rest(under="k2")

    keyring("k2")  # k1 dropped, and SECRET_KEY changed: neither matters any more
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    for cred in ExchangeCredential.objects.all():
        assert cred.keys() == (API_KEY, SECRET)
    assert {c.pk for c in old} <= set(ExchangeCredential.objects.values_list("pk", flat=True))

    call_command("rotate_encryption_key")
    assert "0 rotated, 4 already current, 0 unreadable" in capsys.readouterr().out


def test_a_rotation_leaves_unreadable_rows_alone_names_them_and_fails(user, keyring, capsys):
    keyring("lost")
    unreadable = credential(user, "Lost")
    keyring("k1")
    fine = credential(user, "Fine")
    before = ExchangeCredential.objects.values_list("api_key_encrypted", flat=True).get(
        pk=unreadable.pk
    )

    with pytest.raises(CommandError, match="1 exchange key"):
        call_command("rotate_encryption_key")

    captured = capsys.readouterr()
    assert "0 rotated, 1 already current, 1 unreadable." in captured.out
    assert f"credential {unreadable.pk} “Lost” (binance, {user.email}) stored under “lost”" in (
        captured.err
    )
    assert ExchangeCredential.objects.get(pk=unreadable.pk).api_key_encrypted == before
    assert ExchangeCredential.objects.get(pk=fine.pk).keys() == (API_KEY, SECRET)
    assert API_KEY not in captured.out + captured.err


def test_unreadable_credentials_are_listed_per_owner(user, other_user, keyring):
    keyring("lost")
    mine, theirs = credential(user, "Mine"), credential(other_user, "Theirs")
    keyring("k1")
    credential(user, "Readable")
    assert [c.pk for c in services.unreadable_credentials(user)] == [mine.pk]
    assert {c.pk for c in services.unreadable_credentials()} == {mine.pk, theirs.pk}


@pytest.mark.django_db(transaction=True)
def test_the_migration_reencrypts_fernet_rows_and_keeps_unreadable_ones_as_they_were(settings):
    from django.db.migrations.executor import MigrationExecutor

    settings.CREDENTIALS_KEYS = f"k1:{new_key()}"
    before = [("accounts", "0003_credential_testnet")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        owner = old.get_model("accounts", "User").objects.create(email="old@example.com")
        Credential = old.get_model("accounts", "ExchangeCredential")
        fernet = legacy_fernet(settings)
        for label, key in (("Readable", fernet), ("Lost", Fernet(Fernet.generate_key()))):
            Credential.objects.create(
                owner=owner,
                label=label,
                key_hint="••••wxyz",
                api_key_encrypted=key.encrypt(API_KEY.encode()).decode(),
                secret_encrypted=key.encrypt(SECRET.encode()).decode(),
            )
        lost_before = Credential.objects.values_list("api_key_encrypted", flat=True).get(
            label="Lost"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    readable = ExchangeCredential.objects.get(label="Readable")
    assert readable.api_key_encrypted.startswith("v2:k1:")
    assert readable.secret_encrypted.startswith("v2:k1:")
    assert readable.keys() == (API_KEY, SECRET)
    lost = ExchangeCredential.objects.get(label="Lost")
    assert lost.api_key_encrypted == lost_before  # nothing lost: the right key may come back
    assert not lost.readable()
    uids = set(ExchangeCredential.objects.values_list("uid", flat=True))
    assert len(uids) == 2 and None not in uids
