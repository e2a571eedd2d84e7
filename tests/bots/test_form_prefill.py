"""Filling the forms without creating anything (issue 14): a clone of the user's bot, a bot
from the user's backtest, the advisor's plain field names; another user's bot or run is a 404.
And the forms' chart data: a stored pair's candles and price, signed in, limited per client."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from bots.models import BacktestRun, Bot
from tests.bots.conftest import CONFIG

pytestmark = pytest.mark.django_db


def value_of(html: str, name: str) -> str | None:
    """The value an input named ``name`` shows (None: no such input, or no value)."""
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    if tag is None:
        return None
    found = re.search(r'value="([^"]*)"', tag.group(0))
    return found.group(1) if found else None


def selected(html: str, name: str) -> str | None:
    select = re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S)
    assert select is not None, name
    found = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(0))
    return found.group(1) if found else None


@pytest.fixture
def run(user: Any, rules: None) -> BacktestRun:
    return BacktestRun.objects.create(
        owner=user,
        symbol="ETH/USDT",
        start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 5, tzinfo=dt.UTC),
        config=CONFIG | {"lower_bound": "2400", "upper_bound": "2600", "grid_levels": "15",
                         "spacing": "geometric", "stop_loss_pct": "3"},
    )  # fmt: skip


def test_clone_fills_the_form_with_the_bots_pair_mode_grid_and_risk(client, user, make_bot, price):
    bot = make_bot(CONFIG | {"stop_loss_pct": "2", "take_profit": "71000"}, name="Steady")
    client.force_login(user)

    page = client.get(f"/bots/new/?clone={bot.pk}").text

    assert value_of(page, "name") == "Copy of Steady"
    assert value_of(page, "symbol") == "BTC/USDT" and selected(page, "mode") == "paper"
    assert (value_of(page, "capital"), value_of(page, "lower_bound")) == ("1000", "60000")
    assert (value_of(page, "upper_bound"), value_of(page, "grid_levels")) == ("70000", "20")
    assert value_of(page, "stop_loss_pct") == "2" and value_of(page, "take_profit") == "71000"
    assert Bot.objects.count() == 1  # nothing created


def test_a_bot_from_a_backtest_takes_its_pair_and_grid(client, user, run, price):
    client.force_login(user)

    page = client.get(f"/bots/new/?backtest={run.pk}").text

    assert value_of(page, "symbol") == "ETH/USDT"
    assert (value_of(page, "lower_bound"), value_of(page, "upper_bound")) == ("2400", "2600")
    assert value_of(page, "grid_levels") == "15" and selected(page, "spacing") == "geometric"
    assert value_of(page, "stop_loss_pct") == "3"
    assert not Bot.objects.exists()


def test_the_advisors_link_fills_plain_field_names(client, user, price):
    client.force_login(user)
    query = (
        "symbol=ETH/USDT&lower_bound=2400.5&upper_bound=2610&grid_levels=24&spacing=geometric"
        "&capital=750&stop_loss_pct=4&unknown=1"
    )

    page = client.get(f"/bots/new/?{query}").text

    assert value_of(page, "symbol") == "ETH/USDT" and value_of(page, "capital") == "750"
    assert (value_of(page, "lower_bound"), value_of(page, "upper_bound")) == ("2400.5", "2610")
    assert value_of(page, "grid_levels") == "24" and selected(page, "spacing") == "geometric"
    assert value_of(page, "stop_loss_pct") == "4" and "unknown" not in page
    assert not Bot.objects.exists()


def test_the_link_can_change_a_clone(client, user, bot):
    client.force_login(user)
    page = client.get(f"/bots/new/?clone={bot.pk}&grid_levels=30").text
    assert value_of(page, "grid_levels") == "30" and value_of(page, "lower_bound") == "60000"


@pytest.mark.parametrize("raw", ["{other}", "abc", "1.5", "99999999", ""])
def test_another_users_bot_or_run_cannot_be_cloned(client, user, other_user, make_bot, rules, raw):
    theirs = make_bot(dict(CONFIG), owner=other_user)
    run = BacktestRun.objects.create(
        owner=other_user, symbol="BTC/USDT", config=dict(CONFIG),
        start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC), end=dt.datetime(2025, 6, 3, tzinfo=dt.UTC),
    )  # fmt: skip
    client.force_login(user)
    for param, pk in (("clone", theirs.pk), ("backtest", run.pk)):
        value = raw.format(other=pk)
        status = client.get(f"/bots/new/?{param}={value}").status_code
        assert status == (200 if value == "" else 404), (param, value)
    assert client.get(f"/backtests/new/?backtest={run.pk}").status_code == 404


def test_the_backtest_form_runs_a_backtest_again_with_its_days(client, user, run):
    client.force_login(user)

    page = client.get(f"/backtests/new/?backtest={run.pk}").text

    assert value_of(page, "symbol") == "ETH/USDT" and value_of(page, "grid_levels") == "15"
    assert value_of(page, "start") == "2025-06-02" and value_of(page, "end") == "2025-06-04"


def test_the_forms_pages_need_a_sign_in(client, bot):
    for path in ("/bots/new/", f"/bots/new/?clone={bot.pk}", "/pairs/candles.json?symbol=BTC/USDT"):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], path


def test_pair_candles_give_a_stored_pairs_candles_and_price(client, user, price):
    client.force_login(user)

    data = client.get("/pairs/candles.json", {"symbol": "btc/usdt"}).json()

    assert data["symbol"] == "BTC/USDT" and data["price"] == "65000"
    assert data["candles"] and len(data["candles"][0]) == 5
    unknown = client.get("/pairs/candles.json", {"symbol": "NOPE/USDT"}).json()
    assert unknown["candles"] == [] and unknown["price"] is None


def test_pair_candles_are_limited_per_client(client, user, other_user, price, settings):
    settings.CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE = 2
    client.force_login(user)
    assert client.get("/pairs/candles.json", {"symbol": "BTC/USDT"}).status_code == 200
    client.force_login(other_user)  # another account, the same address
    assert client.get("/pairs/candles.json", {"symbol": "BTC/USDT"}).status_code == 200
    assert client.get("/pairs/candles.json", {"symbol": "BTC/USDT"}).status_code == 429
