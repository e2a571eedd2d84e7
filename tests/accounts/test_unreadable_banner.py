"""Every signed-in page names the user's own exchange keys this server can no longer decrypt
(issue 13): label, testnet or not, exchange and mask; never another user's."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from django.urls import reverse

from accounts.models import ExchangeCredential

pytestmark = pytest.mark.django_db
BANNER = 'id="unreadable-credentials"'


def keyring(settings: Any, key_id: str) -> None:
    settings.CREDENTIALS_KEYS = f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


def credential(owner: Any, label: str, **fields: Any) -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label, **fields)
    cred.set_keys("aibo-test-key-AbCd1234wxyz", "aibo-test-secret-QrSt5678uvZZ")
    cred.save()
    return cred


@pytest.fixture
def lost_keys(settings: Any, user: Any, other_user: Any) -> None:
    """The user's "Main" and testnet "Practice" keys and the other user's "Savings" were stored
    under a key that has left the keyring; the user's "Fresh" was stored after."""
    keyring(settings, "lost")
    credential(user, "Main")
    credential(user, "Practice", testnet=True)
    credential(other_user, "Savings")
    keyring(settings, "k1")
    settings.SECRET_KEY = "changed-" + "z" * 50
    credential(user, "Fresh")


@pytest.mark.parametrize(
    "page", ["bots:dashboard", "accounts:credentials", "accounts:password_change"]
)
def test_every_page_names_the_users_unreadable_keys(client, user, lost_keys, page):
    client.force_login(user)
    text = client.get(reverse(page)).text
    assert BANNER in text
    assert "aibo can no longer decrypt 2 of your exchange keys:" in text
    assert "“Main” (Binance <code>••••wxyz</code>)" in text
    assert "“Practice (testnet)” (Binance <code>••••wxyz</code>)" in text
    assert "Fresh" not in text.split(BANNER)[1].split("</div>")[0]
    assert "Savings" not in text  # another user's


def test_the_banner_stays_away_when_every_key_reads(client, user, settings):
    keyring(settings, "k1")
    credential(user, "Main")
    client.force_login(user)
    assert BANNER not in client.get(reverse("bots:dashboard")).text


def test_signed_out_pages_have_no_banner(client, lost_keys):
    assert BANNER not in client.get(reverse("accounts:login")).text
