"""Issue 17: the bot and backtest forms take a trigger price and trailing up and down, in an
"Advanced" block; their errors come from the one config schema onto the field it names; a
clone, a bot from a backtest and an edit carry them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest

from bots.forms import BacktestForm, BotForm
from bots.models import BacktestRun, Bot
from tests.bots.conftest import CONFIG, FORM, add_candles
from tests.bots.test_form_prefill import value_of

pytestmark = pytest.mark.django_db

TRAILING = {
    "trigger_price": "64000.01",
    "trailing_up": "true",
    "trailing_up_limit": "80000",
    "trailing_down": "true",
    "trailing_down_limit": "55000",
}
# What a browser sends for the same settings: a ticked box is "on", an unticked one nothing.
TRAILING_POSTED = TRAILING | {"trailing_up": "on", "trailing_down": "on"}


def ticked(html: str, name: str) -> bool:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert tag is not None, name
    return " checked" in tag.group(0)


def field_errors(html: str, name: str) -> str:
    """The text of a field's errors box (``id_<name>-errors``)."""
    box = re.search(rf'id="id_{name}-errors">(.*?)</div>', html, re.S)
    assert box is not None, name
    return re.sub(r"<[^>]+>", "", box.group(1)).strip()


def advanced_block(html: str) -> str:
    block = re.search(r'<details class="advanced"[^>]*>.*?</details>', html, re.S)
    assert block is not None
    return block.group(0)


def test_the_new_bot_form_folds_trigger_and_trailing_into_a_closed_advanced_block(
    client, user, price
):
    client.force_login(user)
    page = client.get("/bots/new/").text
    block = advanced_block(page)
    assert "<summary>Advanced" in block and " open" not in block.split(">")[0]
    for name in TRAILING:
        assert f'name="{name}"' in block, name
    assert not ticked(page, "trailing_up") and not ticked(page, "trailing_down")


def test_a_bot_with_a_trigger_and_trailing_stores_them_exactly(client, user, price):
    client.force_login(user)
    answer = client.post("/bots/new/", FORM | TRAILING_POSTED)
    assert answer.status_code == 302, field_errors(answer.text, "trailing_down_limit")
    bot = Bot.objects.get()
    assert {k: bot.config[k] for k in TRAILING} == TRAILING  # 64000.01 as typed, not a float


def test_a_grid_without_them_has_the_config_it_had_before(rules):
    """Off and empty extensions are no keys at all, as the schema stores them: a plain
    grid's config is what it was before they existed."""
    form = BotForm(FORM)
    assert form.is_valid(), form.errors
    assert form.config() == CONFIG


def test_trailing_down_without_a_floor_is_refused_on_the_floor_field(client, user, price):
    client.force_login(user)
    posted = FORM | {"trailing_down": "on", "trailing_down_limit": ""}
    answer = client.post("/bots/new/", posted)
    assert answer.status_code == 200 and not Bot.objects.exists()
    assert field_errors(answer.text, "trailing_down_limit")  # the schema's words, on the field
    assert " open" in advanced_block(answer.text).split(">")[0]  # the error is not folded away


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trigger_price": "abc"}, "trigger_price"),
        ({"trigger_price": "-1"}, "trigger_price"),
        ({"trailing_up": "on", "trailing_up_limit": "1,000"}, "trailing_up_limit"),
        ({"trailing_down": "on", "trailing_down_limit": "0"}, "trailing_down_limit"),
        # the floor must be above the stop-loss price: 60,000 less 5 % is 57,000
        (
            {"stop_loss_pct": "5", "trailing_down": "on", "trailing_down_limit": "56000"},
            "trailing_down_limit",
        ),
        # a take-profit must be above the trailing up limit
        (
            {"take_profit": "75000", "trailing_up": "on", "trailing_up_limit": "80000"},
            None,  # the schema says which of the two to change
        ),
    ],
)
def test_a_bad_trigger_or_trailing_setting_is_an_error_on_a_field(rules, changes, field):
    form = BotForm(FORM | changes)
    assert not form.is_valid()
    if field is not None:
        assert form.errors.get(field), form.errors
    else:
        assert form.errors.get("take_profit") or form.errors.get("trailing_up_limit"), form.errors


def test_a_valid_trailing_form_gives_the_config_as_the_schema_stores_it(rules):
    form = BotForm(FORM | TRAILING_POSTED)
    assert form.is_valid(), form.errors
    assert form.config() == CONFIG | TRAILING


def test_clone_carries_the_trigger_and_trailing_and_opens_the_advanced_block(
    client, user, make_bot, price
):
    bot = make_bot(CONFIG | TRAILING, name="Trend")
    client.force_login(user)
    page = client.get(f"/bots/new/?clone={bot.pk}").text
    assert value_of(page, "trigger_price") == "64000.01"
    assert value_of(page, "trailing_up_limit") == "80000"
    assert value_of(page, "trailing_down_limit") == "55000"
    assert ticked(page, "trailing_up") and ticked(page, "trailing_down")
    assert " open" in advanced_block(page).split(">")[0]
    assert Bot.objects.count() == 1


def test_a_stored_false_shows_an_unticked_box(client, user, make_bot, price):
    bot = make_bot(CONFIG | {"trailing_up": "false", "trailing_down": "false"})
    client.force_login(user)
    page = client.get(f"/bots/new/?clone={bot.pk}").text
    assert not ticked(page, "trailing_up") and not ticked(page, "trailing_down")


def test_the_edit_form_shows_and_saves_the_bots_trailing(client, user, make_bot, price):
    bot = make_bot(CONFIG | TRAILING)
    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/edit/").text
    assert ticked(page, "trailing_up") and value_of(page, "trigger_price") == "64000.01"
    # untick trailing up, move the trigger: both saved
    posted = FORM | TRAILING_POSTED | {"trigger_price": "63000", "trailing_up_limit": ""}
    del posted["trailing_up"]
    answer = client.post(f"/bots/{bot.pk}/edit/", posted)
    assert answer.status_code == 302, answer.text
    bot.refresh_from_db()
    assert bot.config.get("trailing_up", "false") == "false"
    assert bot.config["trigger_price"] == "63000"
    assert bot.config["trailing_down"] == "true"


def test_a_bot_from_a_backtest_carries_its_trigger_and_trailing(client, user, price):
    run = BacktestRun.objects.create(
        owner=user,
        symbol="BTC/USDT",
        start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 5, tzinfo=dt.UTC),
        config=CONFIG | TRAILING,
    )
    client.force_login(user)
    for url in (f"/bots/new/?backtest={run.pk}", f"/backtests/new/?backtest={run.pk}"):
        page = client.get(url).text
        assert value_of(page, "trigger_price") == "64000.01", url
        assert ticked(page, "trailing_up") and ticked(page, "trailing_down"), url
        assert value_of(page, "trailing_down_limit") == "55000", url


def test_another_users_bot_cannot_be_cloned_with_its_trailing(client, other_user, make_bot, price):
    bot = make_bot(CONFIG | TRAILING)
    client.force_login(other_user)
    assert client.get(f"/bots/new/?clone={bot.pk}").status_code == 404


def test_the_advisors_plain_field_names_prefill_trailing(client, user, price):
    client.force_login(user)
    page = client.get(
        "/bots/new/?trigger_price=64500&trailing_up=true&trailing_up_limit=90000"
    ).text
    assert value_of(page, "trigger_price") == "64500" and ticked(page, "trailing_up")
    assert value_of(page, "trailing_up_limit") == "90000" and not ticked(page, "trailing_down")


def _backtest_candles() -> None:
    start = int(dt.datetime(2025, 6, 2, tzinfo=dt.UTC).timestamp() * 1000)
    add_candles([(start + i * 60_000, "65000", "65100", "64900", "65000") for i in range(5)])


def test_the_backtest_form_takes_trigger_and_trailing_into_the_runs_config(rules):
    _backtest_candles()
    data: dict[str, Any] = FORM | TRAILING_POSTED | {"start": "2025-06-02", "end": "2025-06-02"}
    form = BacktestForm(data, start_import=lambda exchange, symbol: None)
    assert form.is_valid(), form.errors
    config = form.config()
    assert {k: config[k] for k in TRAILING} == TRAILING


def test_the_backtest_form_puts_a_missing_floor_on_its_field(rules):
    _backtest_candles()
    data = FORM | {"start": "2025-06-02", "end": "2025-06-02", "trailing_down": "on"}
    form = BacktestForm(data, start_import=lambda exchange, symbol: None)
    assert not form.is_valid()
    assert form.errors.get("trailing_down_limit"), form.errors


def test_a_triggered_grid_is_previewed_where_it_starts_at_its_trigger(client, user, price):
    """The orders, their sides and the amount are the trigger's (the grid starts there);
    where the trigger lies is said from the price now."""
    client.force_login(user)
    posted = FORM | {"trigger_price": "64000", "trailing_up": "on"}
    answer = client.post("/bots/preview/", posted)
    html = answer.text
    assert re.search(r'data-testid="price-now">65,000.00 USDT<', html)
    assert re.search(r'data-testid="preview-start">64,000.00 USDT', html)
    assert "until the price falls to 64,000.00 USDT" in html and "now 65,000.00" in html
    plain_grid = BotForm(FORM)
    triggered = BotForm(FORM | {"trigger_price": "64000"})
    assert plain_grid.is_valid() and triggered.is_valid(), triggered.errors
    assert triggered.preview is not None and plain_grid.preview is not None
    assert triggered.preview.price == 64000 and triggered.price == 65000
    assert triggered.preview.buys < plain_grid.preview.buys  # fewer lines below 64,000
    assert triggered.preview.order_amount == triggered.grid.order_amount(Decimal("64000"))
    # the chart draws the trigger and the next line up
    marks = re.search(r'data-marks="([^"]*)"', html)
    assert marks is not None and "64000:trigger" in marks.group(1)
    assert "70526.32:next-up" in marks.group(1)


def test_ticking_trailing_down_asks_for_its_floor_at_once(client, user, price):
    """Before any submit an empty field is no error yet, but the floor is required the moment
    trailing down is ticked: the preview says so on the floor, not "fill in the grid"."""
    client.force_login(user)
    html = client.post("/bots/preview/", FORM | {"trailing_down": "on"}).text
    errors = re.search(r'id="id_trailing_down_limit-errors" hx-swap-oob="true">(.*?)</div>', html)
    assert errors is not None and "error" in errors.group(1)
    assert 'data-testid="preview-blocked"' in html
    # an untouched empty trigger price says nothing
    quiet = client.post("/bots/preview/", FORM).text
    assert re.search(r'id="id_trailing_down_limit-errors" hx-swap-oob="true"></div>', quiet)
