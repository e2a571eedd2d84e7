"""Exchange keys: the page, its owner scoping, verification against the fake Binance, and the
promise that a key or secret never shows up again: not in pages, the admin, logs or the DB."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from accounts.crypto import UndecryptableSecret
from accounts.models import ExchangeCredential
from bots.models import Bot
from market import exchange
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

API_KEY = "aibo-test-key-AbCd1234wxyz"
SECRET = "aibo-test-secret-QrSt5678uvZZ"
PAGE = reverse("accounts:credentials")
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _no_real_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(exchange: str, api_key: str, secret: str) -> Any:
        raise AssertionError("this test would have called the real exchange")

    monkeypatch.setattr(exchange, "CLIENT_FACTORY", refuse)


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    """The exchange the key check reaches (``market.exchange`` builds its clients against it)."""
    return fake_binance(api_key=API_KEY, secret=SECRET, balances={"USDT": "1000"}, as_exchange=True)


def add(client: Any, **overrides: str) -> Any:
    data = {"label": "Main account", "exchange": "binance", "api_key": API_KEY, "secret": SECRET}
    return client.post(PAGE, {**data, **overrides})


def credential(owner: Any, label: str = "Main account", **fields: Any) -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label, **fields)
    cred.set_keys(API_KEY, SECRET)
    cred.save()
    return cred


def assert_no_keys(text: str) -> None:
    assert API_KEY not in text
    assert SECRET not in text


# --- the page ------------------------------------------------------------------------------------


def test_keys_page_requires_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_keys_page_is_linked_from_the_nav_and_offers_an_empty_form(client, user):
    client.force_login(user)
    assert f'href="{PAGE}">Exchange keys</a>' in client.get(reverse("bots:dashboard")).text
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "No exchange keys yet" in page.text
    assert 'type="password" name="secret"' in page.text
    assert '<option value="binance" selected>Binance</option>' in page.text


def test_adding_keys_the_exchange_accepts_saves_them_verified(client, user, fake):
    client.force_login(user)
    response = add(client)
    assert response.status_code == 302
    assert response["Location"] == PAGE

    cred = ExchangeCredential.objects.get()
    assert (cred.owner, cred.label, cred.exchange) == (user, "Main account", "binance")
    assert cred.key_hint == "••••wxyz"
    assert cred.verified_at is not None
    assert fake.calls("GET", "/account") == 1

    page = client.get(PAGE)
    assert "Keys “Main account” added: the exchange accepted them." in page.text
    assert f'id="credential-{cred.pk}-row"' in page.text
    assert "••••wxyz" in page.text
    assert_no_keys(page.text)


def test_keys_are_stripped_of_surrounding_whitespace(client, user, fake):
    client.force_login(user)
    assert add(client, api_key=f"  {API_KEY}\n", secret=f"\t{SECRET} ").status_code == 302
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"secret": "not-the-secret-at-all"}, "Signature for this request is not valid."),
        ({"api_key": "not-the-key-at-all-000"}, "Invalid API-key, IP, or permissions for action."),
    ],
)
def test_keys_the_exchange_refuses_are_not_saved_and_the_error_is_worded(
    client, user, fake, overrides, words
):
    client.force_login(user)
    response = add(client, **overrides)
    assert response.status_code == 200
    assert f"The exchange refused these keys: {words}" in response.text
    assert ExchangeCredential.objects.count() == 0
    assert_no_keys(response.text)
    for value in overrides.values():
        assert value not in response.text
    assert 'value="Main account"' in response.text  # the label is kept, the keys are not


def test_keys_are_saved_unverified_when_the_exchange_cannot_be_reached(client, user, fake):
    fake.fail_next("/account", "drop")
    client.force_login(user)
    response = add(client)
    assert response.status_code == 302
    cred = ExchangeCredential.objects.get()
    assert cred.verified_at is None
    page = client.get(PAGE)
    assert "saved, but they could not be verified now" in page.text
    assert "not verified" in page.text


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"label": "  "}, "label", "Give these keys a label"),
        ({"api_key": ""}, "api_key", "Paste the api key from your exchange account."),
        ({"secret": ""}, "secret", "Paste the secret key from your exchange account."),
        ({"api_key": "short-key"}, "api_key", "too short (9 characters; at least 16)"),
        ({"secret": "x" * 513}, "secret", "too long (513 characters; at most 512)"),
        ({"api_key": "aibo-test key-AbCd1234"}, "api_key", "contains spaces or line breaks"),
        ({"secret": "aibo-test-secret\nQrSt5678"}, "secret", "contains spaces or line breaks"),
        ({"exchange": "kraken"}, "exchange", "Select a valid choice."),
    ],
)
def test_invalid_input_is_explained_and_never_echoes_the_keys(
    client, user, fake, overrides, field, words
):
    client.force_login(user)
    response = add(client, **overrides)
    assert response.status_code == 200
    assert words in response.text
    assert f'id="id_{field}-errors"><p class="error"' in response.text
    assert ExchangeCredential.objects.count() == 0
    assert fake.calls("GET", "/account") == 0  # nothing is sent to the exchange
    assert_no_keys(response.text)


def test_a_label_is_unique_per_user_whatever_its_case(client, user, other_user, fake):
    credential(other_user, "Main account")  # another user's label does not count
    client.force_login(user)
    assert add(client).status_code == 302
    response = add(client, label="MAIN ACCOUNT")
    assert "You already have exchange keys labelled “MAIN ACCOUNT”." in response.text
    assert ExchangeCredential.objects.owned_by(user).count() == 1
    assert_no_keys(response.text)


def test_keys_are_encrypted_at_rest_and_round_trip(client, user, fake):
    client.force_login(user)
    add(client)
    row = ExchangeCredential.objects.values_list("api_key_encrypted", "secret_encrypted").get()
    for column in row:
        assert_no_keys(column)
        assert "wxyz" not in column
    assert row[0] != row[1]
    assert ExchangeCredential.objects.get().keys() == (API_KEY, SECRET)


def test_the_keys_never_reach_the_logs(client, user, fake, caplog):
    caplog.set_level(logging.DEBUG)
    client.force_login(user)
    add(client)
    add(client, label="Other", secret="not-the-secret-at-all")
    cred = ExchangeCredential.objects.get()
    client.post(reverse("accounts:credential_verify", args=[cred.pk]))
    assert "exchange keys" in caplog.text  # something was logged ...
    assert_no_keys(caplog.text)  # ... but not the keys
    assert "not-the-secret-at-all" not in caplog.text


def test_a_crash_report_would_hide_the_posted_keys(rf, user):
    from django.views.debug import SafeExceptionReporterFilter

    from accounts.views import credential_list

    # No exchange chosen: the form is invalid, so nothing is sent anywhere.
    request = rf.post(PAGE, {"label": "x", "api_key": API_KEY, "secret": SECRET})
    request.user = user
    request.htmx = False
    response = credential_list(request)  # the decorator marks the request
    assert_no_keys(response.content.decode())
    shown = SafeExceptionReporterFilter().get_post_parameters(request)
    assert shown["label"] == "x"
    assert_no_keys(str(dict(shown)))


# --- verify again --------------------------------------------------------------------------------


def test_verify_again_records_when_the_exchange_accepted_the_keys(client, user, fake):
    cred = credential(user)
    client.force_login(user)
    response = client.post(reverse("accounts:credential_verify", args=[cred.pk]), headers=HTMX)
    assert response.status_code == 200
    assert 'id="credential-table"' in response.text
    assert 'id="messages" class="messages" aria-live="polite" hx-swap-oob="true"' in response.text
    assert "Keys “Main account” verified: the exchange accepted them." in response.text
    cred.refresh_from_db()
    assert cred.verified_at is not None
    assert_no_keys(response.text)


def test_verify_again_with_revoked_keys_says_so_and_clears_verified(client, user, fake):
    cred = credential(user)
    client.force_login(user)
    client.post(reverse("accounts:credential_verify", args=[cred.pk]))
    fake.secret = "the-key-was-regenerated-on-binance"  # as if revoked on the exchange
    response = client.post(reverse("accounts:credential_verify", args=[cred.pk]), follow=True)
    assert "The exchange refused the keys “Main account”: Signature for this request" in (
        response.text
    )
    cred.refresh_from_db()
    assert cred.verified_at is None
    assert ExchangeCredential.objects.filter(pk=cred.pk).exists()  # kept: the user decides


def test_verify_again_when_the_exchange_is_down_keeps_the_keys_as_they_were(client, user, fake):
    cred = credential(user)
    fake.fail_next("/account", 503)
    client.force_login(user)
    response = client.post(reverse("accounts:credential_verify", args=[cred.pk]), follow=True)
    assert (
        "could not be verified now: the exchange did not answer (busy or unreachable)"
        in response.text
    )
    cred.refresh_from_db()
    assert cred.verified_at is None


# --- delete --------------------------------------------------------------------------------------


def test_deleting_keys_removes_them(client, user):
    cred = credential(user)
    client.force_login(user)
    response = client.post(reverse("accounts:credential_delete", args=[cred.pk]))
    assert response.status_code == 302
    assert not ExchangeCredential.objects.exists()
    page = client.get(PAGE)
    assert "Keys “Main account” deleted." in page.text
    assert "No exchange keys yet" in page.text


def test_deleting_keys_with_htmx_returns_the_table_and_asks_first(client, user):
    cred = credential(user)
    client.force_login(user)
    assert 'hx-confirm="Delete the keys “Main account”?' in client.get(PAGE).text
    response = client.post(reverse("accounts:credential_delete", args=[cred.pk]), headers=HTMX)
    assert response.status_code == 200
    assert 'id="credential-table"' in response.text
    assert "deleted" in response.text
    assert "<html" not in response.text
    assert not ExchangeCredential.objects.exists()


def test_delete_and_verify_need_post(client, user):
    cred = credential(user)
    client.force_login(user)
    assert client.get(reverse("accounts:credential_delete", args=[cred.pk])).status_code == 405
    assert client.get(reverse("accounts:credential_verify", args=[cred.pk])).status_code == 405
    assert ExchangeCredential.objects.exists()


@pytest.mark.skipif(
    "credential" not in {f.name for f in Bot._meta.get_fields()},
    reason="Bot.credential does not exist yet",
)
def test_keys_a_bot_uses_are_not_deleted_and_the_page_says_why(client, user):
    cred = credential(user)
    Bot.objects.create(owner=user, name="BTC grid", symbol="BTCUSDT", mode="live", credential=cred)
    client.force_login(user)
    response = client.post(reverse("accounts:credential_delete", args=[cred.pk]), follow=True)
    assert "Keys “Main account” were not deleted: the bot “BTC grid” uses them." in response.text
    assert ExchangeCredential.objects.filter(pk=cred.pk).exists()


# --- owner scoping -------------------------------------------------------------------------------


def test_other_users_keys_are_invisible_and_404(client, user, other_user, fake):
    theirs = credential(other_user, "Their secret stash")
    client.force_login(user)
    page = client.get(PAGE)
    assert "Their secret stash" not in page.text
    assert f"credential-{theirs.pk}-row" not in page.text
    delete = client.post(reverse("accounts:credential_delete", args=[theirs.pk]))
    verify = client.post(reverse("accounts:credential_verify", args=[theirs.pk]))
    assert (delete.status_code, verify.status_code) == (404, 404)
    assert ExchangeCredential.objects.filter(pk=theirs.pk).exists()
    assert fake.calls("GET", "/account") == 0


def test_keys_are_added_for_the_signed_in_user_only(client, user, other_user, fake):
    client.force_login(user)
    add(client, owner=str(other_user.pk))
    assert ExchangeCredential.objects.get().owner == user


# --- the admin -----------------------------------------------------------------------------------


@pytest.fixture
def operator(client: Any, django_user_model: Any) -> Any:
    admin = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    client.force_login(admin)
    return admin


def test_the_admin_lists_keys_without_ever_showing_them(client, user, operator):
    cred = credential(user)
    encrypted = (cred.api_key_encrypted, cred.secret_encrypted)
    changelist = client.get(reverse("admin:accounts_exchangecredential_changelist"))
    change = client.get(reverse("admin:accounts_exchangecredential_change", args=[cred.pk]))
    search = client.get(
        reverse("admin:accounts_exchangecredential_changelist"), {"q": "trader@example"}
    )
    for response in (changelist, change, search):
        assert response.status_code == 200
        assert "••••wxyz" in response.text
        assert_no_keys(response.text)
        for token in encrypted:
            assert token not in response.text
    assert "Main account" in search.text
    assert 'name="api_key_encrypted"' not in change.text
    assert 'name="secret_encrypted"' not in change.text


def test_operators_cannot_add_or_edit_keys_but_can_delete_them(client, user, operator):
    cred = credential(user)
    add_page = client.get(reverse("admin:accounts_exchangecredential_add"))
    assert add_page.status_code == 403
    change_url = reverse("admin:accounts_exchangecredential_change", args=[cred.pk])
    client.post(change_url, {"label": "renamed", "api_key_encrypted": "x", "secret_encrypted": "y"})
    cred.refresh_from_db()
    assert cred.label == "Main account"
    assert cred.keys() == (API_KEY, SECRET)

    delete_url = reverse("admin:accounts_exchangecredential_delete", args=[cred.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not ExchangeCredential.objects.exists()


# --- a changed encryption key --------------------------------------------------------------------


@pytest.fixture
def new_credentials_key(settings: Any) -> Callable[[], None]:
    """Call it to replace the keys, as an operator who lost the old ones would (the keys were
    stored under the one derived from SECRET_KEY: no keyring in the tests' settings)."""

    def switch() -> None:
        settings.CREDENTIALS_KEYS = f"new:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"
        settings.SECRET_KEY = base64.urlsafe_b64encode(os.urandom(48)).decode()

    return switch


def test_keys_stored_under_a_key_no_longer_in_the_keyring_cannot_be_read(user, new_credentials_key):
    cred = credential(user)
    new_credentials_key()
    with pytest.raises(
        UndecryptableSecret, match="which this server does not have.*enter it again"
    ):
        ExchangeCredential.objects.get(pk=cred.pk).keys()


def test_verify_again_explains_keys_that_cannot_be_decrypted(
    client, user, fake, new_credentials_key
):
    cred = credential(user)
    new_credentials_key()
    client.force_login(user)
    response = client.post(reverse("accounts:credential_verify", args=[cred.pk]), follow=True)
    assert "Keys “Main account”: This exchange key was stored under the encryption key" in (
        response.text
    )
    assert fake.calls("GET", "/account") == 0


def test_key_checks_are_throttled_per_user(client, user, fake):
    client.force_login(user)
    for i in range(10):
        assert add(client, label=f"Account {i}").status_code == 302
    response = add(client, label="One too many")
    assert response.status_code == 429
    assert "checked exchange keys 10 times this hour" in response.text
    assert not ExchangeCredential.objects.filter(label="One too many").exists()


def test_key_checks_are_limited_per_client(client, user, other_user, fake, settings):
    # Two accounts behind one address: together they get KEY_CHECKS_PER_CLIENT_PER_HOUR.
    settings.KEY_CHECKS_PER_CLIENT_PER_HOUR = 3
    mine, theirs = credential(user), credential(other_user)
    here = {"REMOTE_ADDR": "198.51.100.20"}

    def verify(who: Any, cred: ExchangeCredential, **meta: str) -> Any:
        client.force_login(who)
        url = reverse("accounts:credential_verify", args=[cred.pk])
        return client.post(url, headers=HTMX, **{**here, **meta})

    assert verify(user, mine).status_code == 200
    assert verify(user, mine).status_code == 200
    assert verify(other_user, theirs).status_code == 200
    response = verify(other_user, theirs)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 3500
    assert "Too many exchange key checks from your network" in response.text
    assert fake.calls("GET", "/account") == 3
    # Another address is not held back by this one.
    assert verify(other_user, theirs, REMOTE_ADDR="203.0.113.9").status_code == 200
