"""The key check (accounts.key_check.verify_keys), at save, on "Verify again" and at every live
start: the key works, cannot withdraw, can trade spot; no IP whitelist gets advice. A testnet
key talks to the spot testnet only. The real ccxt client against the fake Binance throughout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from accounts import key_check
from accounts.models import ExchangeCredential
from market import exchange
from tests.accounts import test_credentials
from tests.accounts.test_credentials import API_KEY, PAGE, SECRET, add, credential
from tests.fakes.fake_binance import API_RESTRICTIONS, FakeBinance

pytestmark = pytest.mark.django_db

# The keys page's keys, fake exchange and helpers (no test reaches the real exchange).
_no_real_exchange = test_credentials._no_real_exchange
fake = test_credentials.fake


# --- the fake speaks apiRestrictions ---------------------------------------------------------


def test_the_fake_answers_api_restrictions_signed_with_binances_fields_and_weight(fake):
    client = fake.ccxt_client()
    answer = client.sapi_get_account_apirestrictions()
    assert answer["enableWithdrawals"] is False
    assert answer["enableSpotAndMarginTrading"] is True
    assert answer["ipRestrict"] is True
    assert {"enableReading", "createTime", "enableFutures", "permitsUniversalTransfer"} <= set(
        answer
    )
    assert fake.weight_by_endpoint[f"GET {API_RESTRICTIONS}"] == 1
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"
    with pytest.raises(Exception, match="-2015"):
        fake.ccxt_client(api_key="somebody-elses-key-000").sapi_get_account_apirestrictions()


# --- at save ---------------------------------------------------------------------------------


def test_a_key_that_can_withdraw_is_refused_with_how_to_turn_it_off(client, user, fake):
    fake.api_restrictions["enableWithdrawals"] = True
    client.force_login(user)
    response = add(client)
    assert response.status_code == 200
    assert "aibo does not accept these keys: this key can withdraw funds" in response.text
    assert "API Management → Edit restrictions on this key → untick “Enable Withdrawals”" in (
        response.text
    )
    assert not ExchangeCredential.objects.exists()
    assert fake.calls("GET", API_RESTRICTIONS) == 1
    assert API_KEY not in response.text and SECRET not in response.text


def test_a_key_that_cannot_trade_spot_is_refused(client, user, fake):
    fake.api_restrictions["enableSpotAndMarginTrading"] = False
    client.force_login(user)
    response = add(client)
    assert "aibo does not accept these keys: this key cannot trade spot." in response.text
    assert "tick “Enable Spot &amp; Margin Trading”" in response.text
    assert not ExchangeCredential.objects.exists()


def test_a_key_without_an_ip_whitelist_is_saved_verified_with_the_advice_shown(client, user, fake):
    fake.api_restrictions["ipRestrict"] = False
    client.force_login(user)
    assert add(client).status_code == 302
    cred = ExchangeCredential.objects.get()
    assert cred.verified_at is not None
    assert cred.check_warning == key_check.NO_IP_WHITELIST
    page = client.get(PAGE).text
    assert "Keys “Main account” added: the exchange accepted them." in page
    assert f'id="credential-{cred.pk}-warning"' in page
    assert "Restrict access to trusted IPs only" in page


def test_a_key_with_an_ip_whitelist_has_no_warning(client, user, fake):
    client.force_login(user)
    add(client)
    cred = ExchangeCredential.objects.get()
    assert (cred.verified_at is not None, cred.check_warning) == (True, "")
    assert "trusted IPs only" not in client.get(PAGE).text.split('id="credential-table"')[1]


def test_permissions_the_exchange_does_not_state_leave_the_key_unverified(client, user, fake):
    del fake.api_restrictions["enableWithdrawals"]
    client.force_login(user)
    add(client)
    cred = ExchangeCredential.objects.get()
    assert cred.verified_at is None
    page = client.get(PAGE).text
    assert "the exchange did not say whether these keys can withdraw and trade" in page
    assert "no live bot starts with them" in page


def test_permissions_unreadable_for_now_leave_the_key_unverified(client, user, fake):
    fake.fail_next(API_RESTRICTIONS, 503)
    client.force_login(user)
    add(client)
    assert ExchangeCredential.objects.get().verified_at is None
    assert "could not be verified now: the exchange did not answer" in client.get(PAGE).text


# --- at every start (the bots call verify_keys) ------------------------------------------------


def test_verify_keys_refuses_a_key_that_can_withdraw_at_any_time(user, fake):
    cred = credential(user)
    assert key_check.verify_keys(cred) is None
    fake.api_restrictions["enableWithdrawals"] = True  # turned on since it was added
    with pytest.raises(key_check.KeysRefused, match="can withdraw funds") as refused:
        key_check.verify_keys(cred)
    assert isinstance(refused.value, key_check.KeysNotAllowed)
    assert cred.verified_at is None


def test_verify_again_after_withdrawals_were_turned_on_says_so_and_clears_verified(
    client, user, fake
):
    cred = credential(user)
    client.force_login(user)
    client.post(reverse("accounts:credential_verify", args=[cred.pk]))
    cred.refresh_from_db()
    assert cred.verified_at is not None
    fake.api_restrictions["enableWithdrawals"] = True
    response = client.post(reverse("accounts:credential_verify", args=[cred.pk]), follow=True)
    assert "aibo does not accept the keys “Main account”: this key can withdraw funds" in (
        response.text
    )
    cred.refresh_from_db()
    assert cred.verified_at is None


def test_verify_again_records_and_clears_the_ip_advice(client, user, fake):
    cred = credential(user)
    client.force_login(user)
    fake.api_restrictions["ipRestrict"] = False
    client.post(reverse("accounts:credential_verify", args=[cred.pk]))
    cred.refresh_from_db()
    assert cred.check_warning == key_check.NO_IP_WHITELIST
    fake.api_restrictions["ipRestrict"] = True  # the trader added the whitelist
    client.post(reverse("accounts:credential_verify", args=[cred.pk]))
    cred.refresh_from_db()
    assert cred.check_warning == ""


# --- testnet -------------------------------------------------------------------------------------


@pytest.fixture
def live_and_testnet(
    fake_binance: Callable[..., FakeBinance], monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeBinance, FakeBinance]:
    """Two exchanges: the live one, whose clients' sandbox URLs point at the testnet one."""
    live = fake_binance(api_key=API_KEY, secret=SECRET)
    testnet = fake_binance(api_key=API_KEY, secret=SECRET, testnet=True)
    monkeypatch.setattr(
        exchange, "CLIENT_FACTORY", lambda name, k, s: live.ccxt_client(k, s, testnet=testnet)
    )
    return live, testnet


def test_a_testnet_key_never_talks_to_the_live_exchange(client, user, live_and_testnet):
    live, testnet = live_and_testnet
    client.force_login(user)
    assert add(client, testnet="on").status_code == 302
    cred = ExchangeCredential.objects.get()
    assert cred.testnet and cred.verified_at is not None
    assert testnet.calls("GET", "/account") == 1
    # A grid's requests too: markets, prices, an order and its cancel.
    trader = key_check.client_for(cred)
    trader.load_markets()
    order = trader.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
    trader.cancel_order(order["id"], "BTC/USDT")
    assert testnet.calls("POST", "/order") == 1
    assert live.requests == []


def test_a_live_key_never_talks_to_the_testnet(client, user, live_and_testnet):
    live, testnet = live_and_testnet
    client.force_login(user)
    add(client)
    assert live.calls("GET", "/account") == 1
    assert live.calls("GET", API_RESTRICTIONS) == 1
    assert testnet.requests == []


def test_the_testnet_has_no_sapi_and_its_key_check_does_not_ask_it(user, live_and_testnet):
    _, testnet = live_and_testnet
    cred = credential(user, testnet=True)
    testnet.api_restrictions["enableWithdrawals"] = True  # not asked: no such endpoint there
    assert key_check.verify_keys(cred) is None
    assert testnet.calls("GET", API_RESTRICTIONS) == 0


async def test_a_testnet_keys_stream_client_uses_the_testnet_websocket(monkeypatch):
    import ccxt.pro

    made: list[Any] = []

    def real_client(name: str, k: str, s: str) -> Any:
        made.append(getattr(ccxt.pro, name)({"apiKey": k, "secret": s}))
        return made[-1]

    monkeypatch.setattr(exchange, "PRO_CLIENT_FACTORY", real_client)
    testnet = ExchangeCredential(label="Practice", testnet=True)
    testnet.set_keys(API_KEY, SECRET)
    live = ExchangeCredential(label="Main")
    live.set_keys(API_KEY, SECRET)
    try:
        sandboxed = key_check.stream_client_for(testnet)
        real = key_check.stream_client_for(live)
        assert "testnet.binance.vision" in sandboxed.urls["api"]["ws"]["spot"]
        assert "testnet.binance.vision" in sandboxed.urls["api"]["private"]
        assert "testnet" not in real.urls["api"]["ws"]["spot"]
    finally:
        for c in made:
            await c.close()


def test_a_testnet_key_is_labelled_so_wherever_it_is_named(client, user, fake):
    cred = credential(user, testnet=True)
    assert cred.label_with_mode == "Main account (testnet)"
    assert str(cred) == "Main account (testnet) (binance ••••wxyz)"
    assert str(credential(user.__class__.objects.create_user(email="b@example.com"))) == (
        "Main account (binance ••••wxyz)"
    )
    client.force_login(user)
    row = client.get(PAGE).text.split(f'id="credential-{cred.pk}-row"')[1].split("</tr>")[0]
    assert '<span class="badge" title="Spot testnet: play money, never real funds">testnet' in row
