"""The operators' admin (issue 10, finding 11): what is a bot owner's stays theirs, a config
passes the one schema, a bot's keys are its owner's everywhere, and one unreadable row does not
break the pages of the others."""

from __future__ import annotations

import json
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts.models import ExchangeCredential
from ai_advisor.models import AdvisorRun
from bots import services
from bots.models import Bot
from tests.bots.conftest import WORKED_CONFIG


class _FormFields(HTMLParser):
    """The fields a browser would send back from the admin's change form, as it shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in {"submit", "checkbox"}:
            self.data[name] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


def change_url(bot: Bot) -> str:
    return f"/admin/bots/bot/{bot.pk}/change/"


def form_data(client: Any, bot: Bot) -> dict[str, str]:
    page = client.get(change_url(bot))
    assert page.status_code == 200
    fields = _FormFields()
    fields.feed(page.text)
    fields.data.pop("csrfmiddlewaretoken", None)
    fields.data["config"] = fields.data["config"].strip()
    return fields.data


def credential_of(owner: Any, label: str = "main") -> ExchangeCredential:
    cred = ExchangeCredential(owner=owner, label=label)
    cred.set_keys("admin-test-key-0000wxyz", "admin-test-secret-1111")
    cred.save()
    return cred


@pytest.fixture
def live_bot(worked_market: None, make_bot: Any, user: Any) -> Bot:
    return make_bot(WORKED_CONFIG, mode=Bot.Mode.LIVE, credential=credential_of(user))


def test_admin_cannot_move_a_bot_to_another_owner(admin_client, live_bot, other_user):
    page = admin_client.get(change_url(live_bot)).text
    for field in ("owner", "mode", "status", "credential", "symbol", "exchange"):
        assert f'name="{field}"' not in page, field
    data = form_data(admin_client, live_bot)
    data.update(owner=str(other_user.pk), mode="paper", status="running", symbol="ETH/USDT",
                credential="", name="renamed")  # fmt: skip
    assert admin_client.post(change_url(live_bot), data).status_code == 302
    live_bot.refresh_from_db()
    assert live_bot.name == "renamed"  # what the operator may change, changed
    assert (live_bot.owner, live_bot.mode, live_bot.status, live_bot.symbol) == (
        live_bot.credential.owner,
        Bot.Mode.LIVE,
        Bot.Status.STOPPED,
        "BTC/USDT",
    )
    assert admin_client.get("/admin/bots/bot/add/").status_code == 403


def test_admin_keeps_the_ledger_a_record(admin_client, worked_bot, other_user):
    services.start_bot(worked_bot)
    order = worked_bot.orders.first()
    other_bot = services.create_bot(other_user, symbol="BTC/USDT", config=WORKED_CONFIG)
    url = f"/admin/bots/order/{order.pk}/change/"
    assert admin_client.get(url).status_code == 200  # viewable
    admin_client.post(url, {"bot": other_bot.pk, "status": "cancelled", "price": "1"})
    order.refresh_from_db()
    assert (order.bot_id, order.status) == (worked_bot.pk, "open")
    for page in ("order", "trade", "botevent", "equitysnapshot", "paperbalance"):
        assert admin_client.get(f"/admin/bots/{page}/add/").status_code == 403, page
    # A running bot is stopped first (it has orders on the book), then deleted.
    delete = admin_client.post(f"/admin/bots/bot/{worked_bot.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert Bot.objects.filter(pk=worked_bot.pk).exists()


def test_a_bots_credential_belongs_to_its_owner(live_bot, other_user):
    cred = live_bot.credential
    # The model: every save (services, admin, shell) and full_clean refuse it.
    live_bot.owner = other_user
    with pytest.raises(ValidationError, match="owner's exchange keys"):
        live_bot.full_clean()
    with pytest.raises(ValidationError, match="owner's exchange keys"):
        live_bot.save()
    with pytest.raises(ValidationError, match="owner's exchange keys"):
        Bot.objects.create(owner=other_user, symbol="BTC/USDT", mode=Bot.Mode.LIVE,
                           credential=cred, config=WORKED_CONFIG)  # fmt: skip
    # The database: writes that skip the model are refused too.
    with pytest.raises(IntegrityError), transaction.atomic():
        Bot.objects.filter(pk=live_bot.pk).update(owner=other_user)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeCredential.objects.filter(pk=cred.pk).update(owner=other_user)
    theirs = credential_of(other_user, "theirs")
    with pytest.raises(IntegrityError), transaction.atomic():
        Bot.objects.filter(pk=live_bot.pk).update(credential=theirs)
    live_bot.refresh_from_db()
    assert live_bot.owner_id == cred.owner_id
    # Writes that do not touch the owner or the keys need no extra check, and pass.
    live_bot.status_reason = "checked"
    live_bot.save(update_fields=["status_reason"])


def test_admin_config_is_validated_by_the_schema(admin_client, worked_bot):
    data = form_data(admin_client, worked_bot)
    bad = {**WORKED_CONFIG, "lower_bound": "120"}  # above the upper bound
    response = admin_client.post(change_url(worked_bot), {**data, "config": json.dumps(bad)})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["config"]
    assert errors["config"][0].startswith("upper_bound:") or "lower" in errors["config"][0]
    worked_bot.refresh_from_db()
    assert worked_bot.config == WORKED_CONFIG

    for nonsense in ('["not", "an", "object"]', json.dumps({**WORKED_CONFIG, "capital": "lots"})):
        response = admin_client.post(change_url(worked_bot), {**data, "config": nonsense})
        assert "config" in response.context["adminform"].form.errors

    good = {"capital": "900", "lower_bound": "100", "upper_bound": "110", "grid_levels": 3}
    saved = admin_client.post(change_url(worked_bot), {**data, "config": json.dumps(good)})
    assert saved.status_code == 302
    worked_bot.refresh_from_db()
    assert worked_bot.config == {**WORKED_CONFIG, "capital": "900"}  # normalised, as stored

    services.start_bot(worked_bot)
    page = admin_client.get(change_url(worked_bot)).text
    assert 'name="config"' not in page  # a running bot's grid is changed by stopping it first


def test_admin_bot_list_survives_an_unreadable_row(admin_client, worked_bot, make_bot, user):
    services.start_bot(worked_bot)
    broken = make_bot(WORKED_CONFIG, name="broken bot")
    absurd = {**WORKED_CONFIG, "upper_bound": "1e20", "capital": {"not": "a number"}}
    Bot.objects.filter(pk=broken.pk).update(config=absurd)
    if connection.vendor == "sqlite":  # PostgreSQL refuses a number too wide for its column
        Bot.objects.filter(pk=broken.pk).update(last_price=Decimal("1e20"))
    AdvisorRun.objects.create(owner=user, bot=broken, symbol="BTC/USDT", capital=Decimal(1000))

    listing = admin_client.get("/admin/bots/bot/")
    assert listing.status_code == 200
    assert "broken bot" in listing.text and str(worked_bot) in listing.text
    assert "100–1e20 × 3" in listing.text  # shown as stored
    assert admin_client.get("/admin/bots/bot/?status__exact=running").status_code == 200
    assert admin_client.get(change_url(worked_bot)).status_code == 200
    for page in ("bots/order", "bots/trade", "bots/botevent", "bots/equitysnapshot",
                 "ai_advisor/advisorrun"):  # fmt: skip
        assert admin_client.get(f"/admin/{page}/").status_code == 200, page
    run = AdvisorRun.objects.get()
    assert admin_client.get(f"/admin/ai_advisor/advisorrun/{run.pk}/change/").status_code == 200
    # The actions on the list still work for the bots that can be read.
    stop = {"action": "stop_bots", "_selected_action": [worked_bot.pk]}
    assert admin_client.post("/admin/bots/bot/", stop).status_code == 302
    assert Bot.objects.filter(pk=worked_bot.pk, status=Bot.Status.STOPPED).exists()
