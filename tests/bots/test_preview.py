from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest

from bots.grid.params import GridConfig, InvalidGrid
from bots.grid.preview import grid_preview, min_capital
from bots.templatetags.money import (
    amount,
    holding,
    money,
    money_signed,
    pct,
    price,
    sign_class,
)
from tests.bots.conftest import example_config


def test_preview_of_the_worked_example_marks_buys_below_and_sells_above_the_price():
    p = grid_preview(example_config(), D(104))
    assert [(line.price, line.side) for line in p.lines] == [
        (D(100), "buy"),
        (D(105), ""),  # the line nearest the price carries no order
        (D(110), "sell"),
    ]
    assert (p.buys, p.sells) == (1, 1)
    assert p.order_amount == D("4.897")  # GRID_SPEC.md's q
    assert p.start_buy_amount == D("4.897")
    assert p.ok and not p.unprofitable and not p.outside


def test_profit_per_grid_is_after_both_fees():
    p = grid_preview(example_config(), D(104))
    q = D("4.897")
    assert p.max_profit == q * 5 - D("0.001") * q * (100 + 105)
    assert p.min_profit == q * 5 - D("0.001") * q * (105 + 110)
    assert p.round_trip_fee_pct == D("0.002")
    assert p.min_profit_pct > 0 and not p.unprofitable


def test_a_grid_narrower_than_the_round_trip_fee_is_warned_about():
    p = grid_preview(
        example_config(lower=D(100), upper=D("100.9"), levels=10, tick=D("0.01")), D(100)
    )
    assert p.unprofitable and p.all_losing and p.losing_grids == p.grids == 9
    assert p.min_profit is not None and p.min_profit < 0
    assert p.worst_loss == -p.min_profit and p.worst_loss_pct == -p.min_profit_pct > 0
    assert p.min_step_pct == D("0.1") / D("100.8")  # the top grid: about half the two fees


def test_only_the_grids_that_lose_after_fees_are_counted():
    # A grid earns when step / (2 * lower + step) > fee: 0.25 / 200.25 beats 0.001 everywhere;
    # with 0.2 steps, 0.2 / 200.2 = 0.000999 beats 0.000997 at the bottom, 0.2 / 201 not at the top.
    p = grid_preview(example_config(lower=D(100), upper=D(101), levels=5, tick=D("0.01")), D(100))
    assert p.losing_grids == 0 and not p.unprofitable
    p = grid_preview(
        example_config(lower=D(100), upper=D("100.6"), levels=4, tick=D("0.01"), fee=D("0.000997")),
        D(100),
    )
    assert 0 < p.losing_grids < p.grids  # 0.2 % steps: the lower grids earn, the top one not


def test_too_little_capital_is_a_problem_that_says_how_much_is_needed():
    c = GridConfig(lower=D(60000), upper=D(70000), levels=50, spacing="geometric", capital=D(100))
    p = grid_preview(c, D(65000))
    assert not p.ok and p.short_of_capital
    assert p.capital_needed == D("280.92")
    assert p.order_amount is None


@pytest.mark.parametrize("price", [D(61000), D(65000), D(69999), D(55000), D(75000)])
def test_min_capital_is_exactly_what_the_engine_needs(price):
    c = GridConfig(lower=D(60000), upper=D(70000), levels=50, spacing="geometric", capital=D(100))
    need = min_capital(c, price)
    assert dataclasses.replace(c, capital=need).order_amount(price) >= c.step
    with pytest.raises(InvalidGrid):
        dataclasses.replace(c, capital=need - c.tick).order_amount(price)


def test_without_a_price_the_lines_show_and_the_preview_says_why_the_amount_is_missing():
    p = grid_preview(example_config(), None)
    assert [line.side for line in p.lines] == ["", "", ""]
    assert p.order_amount is None and p.capital_needed is None and p.ok


def test_a_price_outside_the_range_is_warned_about():
    p = grid_preview(example_config(), D(120))
    assert p.sells == 0 and p.buys == 2
    assert p.outside == "above"
    assert grid_preview(example_config(), D(90)).outside == "below"


def test_drawing_puts_the_upper_line_on_top():
    d = grid_preview(example_config(), D(104)).drawing(height=100, pad=0)
    ys = [float(y) for y, _, _ in d["lines"]]
    assert ys[0] == 100.0 and ys[-1] == 0.0
    assert d["price_y"] == "60.0"


def test_money_filters_use_thousands_separators_and_the_unit():
    assert money(D("1234567.555"), "USDT") == "1,234,567.56 USDT"
    assert money(D("-0.001"), "USDT") == "0.00 USDT"
    assert money_signed(D("12.5"), "USDT") == "+12.50 USDT"
    assert money_signed(D("-12.5")) == "-12.50"
    assert money(None, "USDT") == "—"
    assert money("not a number") == "—"
    assert price(D("67012.50000000")) == "67,012.50"
    assert price("0.00012345") == "0.00012345"
    assert amount(D("0.001230000"), "BTC") == "0.00123 BTC"
    assert amount(D("0E-12")) == "0"
    assert pct(D("0.12345")) == "12.35 %"
    assert pct("0.5", 0) == "50 %"
    assert (sign_class(D(1)), sign_class(D(-1)), sign_class(0)) == ("pos", "neg", "")


def test_wallet_balances_show_cents_for_cash_and_amounts_for_coins():
    assert holding(D("9039.6406"), "USDT") == "9,039.64 USDT"
    assert holding(D("0.007380000000"), "BTC") == "0.00738 BTC"
