"""/readyz names the exchange keys this server can no longer decrypt (issue 13): counts and ids,
never whose or what; the server stays in rotation so their owners can enter them again."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from accounts.models import ExchangeCredential

pytestmark = pytest.mark.django_db


def keyring(settings: Any, key_id: str) -> None:
    settings.CREDENTIALS_KEYS = f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def credential(owner: Any, label: str) -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label)
    cred.set_keys("aibo-test-key-AbCd1234wxyz", "aibo-test-secret-QrSt5678uvZZ")
    cred.save()
    return cred


def test_readyz_says_ok_when_every_credential_reads(client, user, settings):
    keyring(settings, "k1")
    credential(user, "Main")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["exchange_keys"] == "ok"


def test_readyz_counts_and_names_unreadable_credentials(client, user, other_user, settings):
    keyring(settings, "lost")
    mine, theirs = credential(user, "Main"), credential(other_user, "Savings")
    keyring(settings, "k1")
    credential(user, "Readable")
    settings.SECRET_KEY = "changed-" + "z" * 50

    ready = client.get("/readyz")

    words = ready.json()["checks"]["exchange_keys"]
    assert words.startswith("warning: 2 of 3 exchange credential(s) cannot be decrypted")
    assert f"credentials {mine.pk}, {theirs.pk}" in words
    for private in ("Main", "Savings", user.email, other_user.email, "wxyz"):
        assert private not in words
    # Named, not fatal: the owners need the pages to enter their keys again.
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
