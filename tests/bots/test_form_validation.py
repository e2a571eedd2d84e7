"""Validation that protects money on the new-bot and backtest forms (issue 14): every field's
message on submit and the preview never wiping it, a grid that loses after fees refused
without consent, the capital's minimum on the capital field in one sentence, numbers
formatted, the backtest's limits and stored days checked before anything runs."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from bots import config as schema
from bots.grid.preview import min_capital
from bots.models import BacktestRun, Bot
from market.models import Candle, LatestPrice
from tests.bots.conftest import FORM, add_candles

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
# 64,900..65,100 in 50 lines: each grid is ~0.006 %, the two fees 0.2 %: every grid loses.
LOSING = FORM | {"lower_bound": "64900", "upper_bound": "65100", "grid_levels": "50"}
DAY_MS = 86_400_000
JUNE_1_MS = 1748736000000  # 2025-06-01 00:00 UTC


@pytest.fixture
def signed_in(client: Any, user: Any, price: Decimal) -> Any:
    client.force_login(user)
    return client


def field_errors(html: str, name: str) -> list[str]:
    """The messages in the error box of field ``name`` (``id_<name>-errors``)."""
    box = re.search(rf'id="id_{name}-errors"[^>]*>(.*?)</div>', html, re.S)
    assert box is not None, f"no error box for {name}"
    return re.findall(r'<p class="error"[^>]*>(.*?)</p>', box.group(1), re.S)


# --- every field's message, and a preview that never wipes them --------------------------------


def test_submitting_empty_or_non_numeric_fields_shows_every_fields_message(signed_in):
    data = FORM | {"capital": "", "lower_bound": "abc", "upper_bound": "1,000", "grid_levels": ""}
    page = signed_in.post("/bots/new/", data).text

    assert field_errors(page, "capital") == ["Enter the capital, such as 1000."]
    assert field_errors(page, "lower_bound") == [
        "Enter a number, such as 1000 or 62500.5 (digits and a point, no commas)."
    ]
    assert field_errors(page, "upper_bound") == field_errors(page, "lower_bound")
    assert field_errors(page, "grid_levels") == ["Enter how many price lines the grid has."]
    # What was typed stays in the boxes (text inputs: a number input would drop "abc").
    assert 'value="abc"' in page and 'value="1,000"' in page
    assert not Bot.objects.exists()


def test_the_preview_after_a_submit_says_what_the_submit_said_instead_of_wiping_it(signed_in):
    data = FORM | {"capital": "", "lower_bound": "abc"}
    page = signed_in.post("/bots/new/", data).text
    assert 'name="submitted" value="1"' in page  # the page's preview requests carry it

    preview = signed_in.post("/bots/preview/", data | {"submitted": "1"}, headers=HX).text

    assert field_errors(preview, "capital") == field_errors(page, "capital") != []
    assert field_errors(preview, "lower_bound") == field_errors(page, "lower_bound") != []


def test_before_a_submit_the_preview_leaves_empty_fields_quiet(signed_in):
    page = signed_in.get("/bots/new/").text
    assert 'name="submitted"' not in page

    preview = signed_in.post("/bots/preview/", FORM | {"capital": ""}, headers=HX).text

    assert field_errors(preview, "capital") == []


def test_the_preview_swaps_only_error_boxes_the_page_has(signed_in, bot):
    """htmx:oobErrorNoTarget: a user without keys has no keys field, an edit no pair field."""
    new = signed_in.get("/bots/new/").text
    preview = signed_in.post("/bots/preview/", FORM, headers=HX).text
    edit = signed_in.get(f"/bots/{bot.pk}/edit/").text
    edit_preview = signed_in.post("/bots/preview/", FORM | {"editing": "1"}, headers=HX).text

    for page, swaps in ((new, preview), (edit, edit_preview)):
        targets = re.findall(r'id="([^"]+)"[^>]*hx-swap-oob="true"', swaps)
        assert targets and "id_credential-errors" not in targets
        for target in targets:
            assert f'id="{target}"' in page, target
    assert "id_symbol-errors" not in re.findall(r'id="([^"]+)"[^>]*hx-swap-oob', edit_preview)


def test_a_service_refusal_stays_until_the_next_submit(signed_in, monkeypatch):
    from bots import services
    from bots.errors import BotError

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise BotError("your paper balance is 100 USDT, the grid needs 1,000 USDT")

    monkeypatch.setattr(services, "create_bot", refuse)
    page = signed_in.post("/bots/new/", FORM).text
    assert "Your paper balance is 100 USDT, the grid needs 1,000 USDT." in page

    preview = signed_in.post("/bots/preview/", FORM | {"submitted": "1"}, headers=HX).text
    assert "form-refusal" not in preview  # the preview has no say over it


# --- a grid that loses money after fees ---------------------------------------------------------


def test_a_grid_that_loses_money_after_fees_is_refused_without_the_traders_consent(signed_in):
    page = signed_in.post("/bots/new/", LOSING).text

    assert not Bot.objects.exists()
    assert "This grid loses money on every round trip after fees" in page
    assert 'name="accept_loss"' in page
    assert "I understand each grid loses money after fees" in page
    assert field_errors(page, "accept_loss") == [
        "Tick this box to create a grid that loses money on every round trip, or use fewer "
        "price lines or a wider range."
    ]

    response = signed_in.post("/bots/new/", LOSING | {"accept_loss": "on"})

    assert response.status_code == 302
    assert Bot.objects.get().config["grid_levels"] == "50"


def test_the_loss_consent_appears_only_for_a_grid_that_loses(signed_in):
    losing = signed_in.post("/bots/preview/", LOSING, headers=HX).text
    earning = signed_in.post("/bots/preview/", FORM, headers=HX).text

    assert 'name="accept_loss"' in losing
    assert "Every grid loses money after fees" in losing  # the preview words it plainly
    assert (
        "Every grid loses money after fees: the narrowest grid's lines are 0.006 % apart, "
        "but a buy and its sell pay 0.20 % in fees, so each round trip there loses 0.04 USDT "
        "(0.194 %)." in losing
    )
    assert 'name="accept_loss"' not in earning and 'id="loss-confirm"' in earning
    assert 'name="accept_loss"' not in signed_in.get("/bots/new/").text


def test_editing_a_bot_onto_a_losing_grid_needs_the_same_consent(signed_in, bot):
    refused = signed_in.post(f"/bots/{bot.pk}/edit/", LOSING)
    bot.refresh_from_db()
    assert refused.status_code == 200 and bot.config["grid_levels"] == "20"

    assert (
        signed_in.post(f"/bots/{bot.pk}/edit/", LOSING | {"accept_loss": "on"}).status_code == 302
    )
    bot.refresh_from_db()
    assert bot.config["grid_levels"] == "50"


# --- the capital's messages ----------------------------------------------------------------------


def test_capital_10_is_refused_on_the_capital_field_with_the_minimum_investment(signed_in):
    grid = schema.grid_config_for(dict(FORM), exchange="binance", symbol="BTC/USDT")
    need = schema.money_text(min_capital(grid, Decimal(65000)), "USDT", at_least=True)

    page = signed_in.post("/bots/new/", FORM | {"capital": "10"}).text

    assert field_errors(page, "capital") == [
        f"Capital must be at least {need} for this grid: each of its 19 orders must be worth "
        "the exchange&#x27;s minimum of 5.00 USDT; add capital or use fewer price lines."
    ]
    assert need == "108.90 USDT"
    assert not Bot.objects.exists()
    preview = signed_in.post("/bots/preview/", FORM | {"capital": "10"}, headers=HX).text
    assert field_errors(preview, "capital") == field_errors(page, "capital")


@pytest.mark.parametrize("capital", ["-50", "0", "0.00"])
def test_zero_and_negative_capital_give_one_coherent_message(signed_in, capital):
    page = signed_in.post("/bots/new/", FORM | {"capital": capital}).text

    assert field_errors(page, "capital") == ["Capital must be more than 0 USDT."]


def test_numbers_in_the_preview_are_formatted_not_raw(signed_in):
    LatestPrice.objects.update(price=Decimal("108584.160000000000"))

    text = signed_in.post("/bots/preview/", FORM, headers=HX).text

    assert "108584.16" not in text  # neither raw nor padded
    assert "The price 108,584.16 USDT is above the range" in text
    # A bound in a message is written as it is typed, to the tick.
    page = signed_in.post("/bots/new/", FORM | {"upper_bound": "1e20"}).text
    assert field_errors(page, "upper_bound") == [
        "The upper price can be at most 1000000000000.00 on this market."
    ]


def test_amounts_in_messages_are_cents_or_exact_and_minimums_round_up():
    assert schema.money_text(Decimal("5.000000000000"), "USDT") == "5.00 USDT"
    assert schema.money_text(Decimal("0.0001"), "USDT") == "0.0001 USDT"  # exact, not 0.00
    assert schema.money_text(Decimal("280.911"), "USDT", at_least=True) == "280.92 USDT"


# --- the backtest form ----------------------------------------------------------------------------


def backtest_data(**changes: str) -> dict[str, str]:
    data = {k: v for k, v in FORM.items() if k not in ("name", "mode", "max_daily_loss")}
    return data | {"start": "2025-06-02", "end": "2025-06-03"} | changes


@pytest.fixture
def stored_june(rules: None) -> None:
    """BTC/USDT candles from 2025-06-01 to 2025-06-05, one an hour."""
    add_candles(
        (JUNE_1_MS + i * 3_600_000, "65000", "65010", "64990", "65000") for i in range(5 * 24)
    )


def test_the_backtest_forms_help_and_its_limits_agree(client, user, stored_june, settings):
    low, high = schema.level_limits()
    client.force_login(user)
    page = client.get("/backtests/new/").text
    assert f"{low} to {high} lines." in page and f'max="{high}"' in page

    ran = client.post("/backtests/new/", backtest_data(grid_levels=str(high)))
    assert ran.status_code == 302, field_errors(ran.text, "grid_levels")
    refused = client.post("/backtests/new/", backtest_data(grid_levels=str(high + 1))).text
    assert field_errors(refused, "grid_levels") == [f"Use between {low} and {high} price lines."]
    assert BacktestRun.objects.count() == 1


def test_backtest_days_outside_the_stored_candles_are_refused_before_running(
    client, user, stored_june
):
    client.force_login(user)
    page = client.post("/backtests/new/", backtest_data(start="2025-05-20", end="2025-06-02")).text

    assert not BacktestRun.objects.exists()
    assert field_errors(page, "start") == [
        "BTC/USDT candles are stored for 2025-06-01 to 2025-06-05 (UTC): choose days in that range."
    ]
    assert "manage.py" not in page and "import_candles" not in page
    inside = client.post("/backtests/new/", backtest_data(start="2025-06-01", end="2025-06-05"))
    assert inside.status_code == 302


def test_the_backtest_form_says_which_days_are_stored(client, user, stored_june):
    client.force_login(user)
    assert "2025-06-01 to 2025-06-05 (UTC)" in client.get("/backtests/new/").text


def test_a_backtest_of_a_pair_without_candles_says_so_on_the_form(client, user, rules):
    client.force_login(user)
    page = client.post("/backtests/new/", backtest_data(symbol="ETH/USDT")).text
    assert field_errors(page, "start") == [
        "No ETH/USDT candles are stored yet, so there is nothing to backtest on."
    ]
    assert not BacktestRun.objects.exists()


def test_a_backtest_grid_is_funded_at_its_first_days_price(client, user, stored_june):
    client.force_login(user)
    page = client.post("/backtests/new/", backtest_data(capital="10")).text
    assert field_errors(page, "capital")[0].startswith("Capital must be at least ")


def test_the_backtest_forms_first_dates_are_days_that_are_stored(client, user, stored_june):
    client.force_login(user)
    page = client.get("/backtests/new/").text
    # A week up to the last stored day, cut to the five days stored.
    assert 'name="start" value="2025-06-01"' in page and 'name="end" value="2025-06-05"' in page


def test_choosing_a_pair_on_the_backtest_form_says_its_stored_days(client, user, stored_june):
    client.force_login(user)
    box = client.post("/pairs/history/", {"symbol": "btc/usdt"}, headers=HX).text
    assert 'data-pair="BTC/USDT"' in box  # the chart follows the pair
    assert "Candles stored: 2025-06-01 to 2025-06-05 (UTC)." in box


def test_the_backtest_preview_prices_the_grid_at_its_first_day_and_checks_the_days(
    client, user, stored_june
):
    Candle.objects.filter(open_time__date="2025-06-02").update(close=Decimal("62000"))
    client.force_login(user)

    text = client.post("/backtests/preview/", backtest_data(), headers=HX).text

    assert "20 from 60,000.00 to 70,000.00" in text
    assert re.search(r'data-testid="start-price">62,000.00 USDT<', text)
    assert field_errors(text, "start") == [] and field_errors(text, "capital") == []
    outside = client.post("/backtests/preview/", backtest_data(end="2025-06-09"), headers=HX).text
    assert "choose days in that range" in " ".join(field_errors(outside, "start"))
    assert not BacktestRun.objects.exists()
