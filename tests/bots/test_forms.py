from __future__ import annotations

import datetime as dt

import pytest

from bots import config as schema
from bots.errors import ConfigError
from bots.forms import BacktestForm, BotForm
from bots.grid.params import GridConfig, InvalidGrid
from tests.bots.conftest import CONFIG, FORM, add_candles

pytestmark = pytest.mark.django_db


def test_a_valid_form_gives_the_config_as_strings(rules):
    form = BotForm(FORM | {"capital": "1000.50", "stop_loss_pct": "2.0"})
    assert form.is_valid(), form.errors
    assert form.config() == CONFIG | {"capital": "1000.5", "stop_loss_pct": "2"}
    assert form.grid is not None and len(form.grid.lines) == 20


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"upper_bound": "59000"}, "upper_bound", "upper price must be above the lower price"),
        ({"take_profit": "65000"}, "take_profit", "take-profit must be above the upper price"),
        ({"stop_loss_pct": "11"}, "stop_loss_pct", "from 0 to 10 % (0 turns it off)"),
        ({"grid_levels": "51"}, "grid_levels", "between 10 and 50"),
        ({"grid_levels": "9"}, "grid_levels", "between 10 and 50"),
        ({"lower_bound": "69999.99", "upper_bound": "70000"}, "grid_levels", "collide"),
        ({"capital": "0"}, "capital", "Capital must be more than 0 USDT."),
        ({"mode": "live"}, "mode", "add your exchange keys first"),
        ({"symbol": "DOGE/USDT"}, "symbol", "only the pairs stored here can be chosen now"),
        ({"symbol": "BTC"}, "symbol", "Write the pair as BASE/QUOTE"),
    ],
)
def test_invalid_input_is_an_error_on_its_field_in_words(rules, changes, field, words):
    form = BotForm(FORM | changes)
    assert not form.is_valid()
    assert words in " ".join(form.errors[field]), form.errors


def test_engine_messages_map_onto_fields(rules):
    """The grid's refusals name their field; the schema puts them on the config key."""

    def field_of(changes: dict[str, str]) -> str | None:
        with pytest.raises(ConfigError) as refused:
            schema.grid_config_for(CONFIG | changes, exchange="binance", symbol="BTC/USDT")
        return refused.value.field

    assert field_of({"take_profit": "1"}) == "take_profit"
    assert field_of({"capital": "0"}) == "capital"
    assert field_of({"grid_levels": "60"}) == "grid_levels"
    assert field_of({"upper_bound": "1"}) == "upper_bound"
    assert field_of({"lower_bound": "abc"}) == "lower_bound"
    assert field_of({"max_daily_loss": "-1"}) == "max_daily_loss"
    needs_more = schema.grid_config_for(CONFIG, exchange="binance", symbol="BTC/USDT")
    with pytest.raises(InvalidGrid) as refused:
        GridConfig(**{**needs_more.to_dict(), "capital": "1"}).order_amount(needs_more.lower)
    assert schema.config_error(refused.value).field == "capital"  # "needs at least ..."


def test_live_option_is_shown_disabled_with_the_reason(rules):
    html = str(BotForm()["mode"])
    assert '<option value="live" disabled>' in html
    assert "add your exchange keys first" in html


def test_backtest_range_is_whole_utc_days(rules):
    add_candles(
        [(1748822400000 + i * 86_400_000, "65000", "65000", "65000", "65000") for i in range(3)]
    )
    data = {k: v for k, v in FORM.items() if k not in ("name", "mode", "max_daily_loss")}
    form = BacktestForm(data | {"start": "2025-06-02", "end": "2025-06-03"})
    assert form.is_valid(), form.errors
    assert form.time_range() == (
        dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        dt.datetime(2025, 6, 4, tzinfo=dt.UTC),
    )
    bad = BacktestForm(data | {"start": "2025-06-03", "end": "2025-06-02"})
    assert not bad.is_valid() and "on or after the start" in bad.errors["end"][0]
