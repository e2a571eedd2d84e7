"""The one config schema takes the trigger price and trailing (issue 17): keys, storage, errors."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from bots import config as schema
from bots.errors import ConfigError
from tests.bots.conftest import WORKED_CONFIG

D = Decimal


@dataclass
class Filters:
    tick: Decimal = D("0.01")
    step: Decimal = D("0.001")
    min_notional: Decimal = D(5)
    fee: Decimal = D("0.001")
    min_price: Decimal = D(0)
    max_price: Decimal = D(0)


def grid(**extra: object):
    return schema.grid_config({**WORKED_CONFIG, **extra}, symbol="BTC/USDT", filters=Filters(),
                              min_levels=2, max_levels=500)  # fmt: skip


def test_the_schema_has_the_extension_keys() -> None:
    assert schema.KEYS[-5:] == (
        "trigger_price", "trailing_up", "trailing_up_limit", "trailing_down",
        "trailing_down_limit",
    )  # fmt: skip


def test_off_or_empty_extensions_are_not_stored_and_flags_are_stored_as_true() -> None:
    off = {"trigger_price": "", "trailing_up": "false", "trailing_up_limit": None,
           "trailing_down": False, "trailing_down_limit": ""}  # fmt: skip
    assert schema.normalise({**WORKED_CONFIG, **off}) == schema.normalise(WORKED_CONFIG)
    assert schema.normalise(WORKED_CONFIG) == WORKED_CONFIG
    on = schema.normalise({**WORKED_CONFIG, "trailing_up": True, "trigger_price": D("102.50"),
                           "trailing_down": "on", "trailing_down_limit": "90"})  # fmt: skip
    assert (on["trailing_up"], on["trailing_down"]) == ("true", "true")
    assert (on["trigger_price"], on["trailing_down_limit"]) == ("102.5", "90")
    assert "trailing_up_limit" not in on


def test_a_config_with_extensions_becomes_the_engines_grid() -> None:
    g = grid(trigger_price="102", trailing_up="true", trailing_up_limit="130",
             trailing_down="true", trailing_down_limit="80")  # fmt: skip
    assert (g.trigger_price, g.trailing_up, g.trailing_up_limit) == (D(102), True, D(130))
    assert (g.trailing_down, g.trailing_down_limit) == (True, D(80))
    plain = grid()
    assert plain.trigger_price is None and not plain.trailing_up and not plain.trailing_down


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"trailing_up": "maybe"}, "trailing_up", "true or false"),
        ({"trigger_price": "abc"}, "trigger_price", "not a number"),
        ({"trigger_price": "-1"}, "trigger_price", "trigger price must be more than 0"),
        ({"trigger_price": "102.001"}, "trigger_price", "multiple of the tick"),
        ({"trailing_up": "true", "trailing_up_limit": "109"}, "trailing_up_limit",
         "above the upper price"),
        ({"trailing_up": "true", "trailing_up_limit": "130", "take_profit": "120"},
         "take_profit", "above the trailing-up limit"),
        ({"trailing_down": "true"}, "trailing_down_limit", "needs a trailing-down limit"),
        ({"trailing_down": "true", "trailing_down_limit": "100"}, "trailing_down_limit",
         "below the lower price"),
        ({"trailing_down": "true", "trailing_down_limit": "94", "stop_loss_pct": "5"},
         "trailing_down_limit", "above the stop-loss price"),
    ],
)  # fmt: skip
def test_extension_errors_name_their_field_in_one_sentence(
    extra: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as e:
        grid(**extra)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_the_capital_is_checked_at_the_trigger_price_where_the_grid_starts() -> None:
    # 10 USDT at 99 (below the range, both slots bought at 99): q = floor(10/(198*1.001))
    # = 0.050, worth 5 at 100: enough. At the trigger 109 both slots buy (at 100 and 105):
    # q = floor(10/(205*1.001)) = 0.048, worth 4.80: too little, and the grid starts there.
    schema.check_funding(grid(capital="10"), D(99))
    with pytest.raises(ConfigError, match="capital must be at least") as e:
        schema.check_funding(grid(capital="10", trigger_price="109"), D(99))
    assert e.value.field == "capital"
