"""Trigger price, trailing up and trailing down against GRID_SPEC.md, "Extensions".

Every number below is worked out by hand from the spec's text (the arithmetic is in the
comments); the engine must agree to the last digit. The grid is the worked example's unless
a test says otherwise: lines 100, 105, 110, capital 1000, fee 0.001, tick 0.01, step 0.001,
minimum order 5.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bots.grid.backtest import Candles, load_csv, run_backtest
from bots.grid.engine import (
    SHIFT_DOWN,
    SHIFT_UP,
    TRAILING_DOWN_STOPPED,
    TRAILING_UP_STOPPED,
    TRIGGERED,
    Fill,
    GridEngine,
    Side,
)
from bots.grid.order_ids import client_order_id
from bots.grid.params import GridConfig, InvalidGrid, SlotState
from market.precision import round_price
from tests.bots.conftest import example_config
from tests.bots.test_backtest import assert_same, random_runs

D = Decimal

EXAMPLE_ROWS = [
    (0, "104", "106", "99", "105"),
    (60000, "105", "111", "104", "108"),
    (120000, "108", "108", "96", "97"),
]


def orders(engine: GridEngine) -> list[tuple[int, str, Decimal, Decimal]]:
    return [(o.slot, o.side.value, o.price, o.amount) for o in engine.desired_orders()]


def roundtrip(engine: GridEngine) -> GridEngine:
    return GridEngine.from_dict(json.loads(json.dumps(engine.to_dict())))


# --- trailing up -------------------------------------------------------------------------------


def sold_out(**overrides: object) -> GridEngine:
    """Started at 104 (slot 0 buys at 100, slot 1 holds 4.897 bought at 104), then a rise to 110
    sells slot 1: every slot is QUOTE, resting buys at 100 and 105."""
    engine = GridEngine.start(example_config(trailing_up=True, **overrides), D(104))
    assert engine.q == D("4.897")
    engine.walk_segment(D(104), D(110))
    assert [s.state for s in engine.slots] == [SlotState.QUOTE, SlotState.QUOTE]
    return engine


def test_trailing_up_waits_for_the_segment_to_reach_the_next_line() -> None:
    engine = sold_out()
    assert engine.next_line_up() == D(115)  # 110 + (110 - 105)
    engine.walk_segment(D(110), D("114.99"))
    assert engine.lines == [D(100), D(105), D(110)] and engine.shifts_up == 0
    assert engine.drain_events() == []
    assert engine.wake_high == D(115)  # the feed must wake the bot there


def test_one_shift_up_cancels_the_bottom_buy_and_buys_at_the_old_top_with_its_quote() -> None:
    engine = sold_out()
    quote, base, equity = engine.quote, engine.base, engine.equity(D(115))
    engine.walk_segment(D(110), D(115))
    assert engine.lines == [D(105), D(110), D(115)]
    # q' = floor(4.897 * 100 / 110, 0.001) = floor(4.45181..) = 4.451
    assert orders(engine) == [
        (1, "buy", D(105), D("4.897")),  # slot 1 keeps its id and its order
        (2, "buy", D(110), D("4.451")),  # the new top slot takes the next id
    ]
    assert engine.shifts_up == 1
    # No trade at a shift.
    assert (engine.quote, engine.base, engine.equity(D(115))) == (quote, base, equity)
    assert engine.fills == 1  # the sell at 110: a shift is no fill
    (event,) = engine.drain_events()
    assert event.kind == SHIFT_UP
    assert (event.cancelled.slot, event.cancelled.side, event.cancelled.price) == (
        0,
        Side.BUY,
        D(100),
    )
    assert event.cancelled.amount == D("4.897")
    assert event.placed_slot == 2
    assert (event.lowest, event.highest) == (D(105), D(115))
    assert "110" in event.text and "115" in event.text


def test_several_shifts_in_one_segment_each_carry_their_own_amount() -> None:
    engine = sold_out()
    engine.walk_segment(D(110), D(125))
    # 115: q' = floor(4.897*100/110) = 4.451 (slot 2)
    # 120: q' = floor(4.897*105/115) = floor(4.47117..) = 4.471 (slot 3)
    # 125: q' = floor(4.451*110/120) = floor(4.08008..) = 4.080 (slot 4)
    # 130 > 125: no fourth.
    assert engine.lines == [D(115), D(120), D(125)]
    assert orders(engine) == [(3, "buy", D(115), D("4.471")), (4, "buy", D(120), D("4.080"))]
    assert engine.shifts_up == 3
    assert [e.kind for e in engine.drain_events()] == [SHIFT_UP] * 3

    # The new slot trades its own amount: a fall to 118 buys 4.080 at 120, a rise sells it
    # at 125: 4.080 * 5 - 0.001*4.080*125 - 0.001*4.080*120 = 20.4 - 0.51 - 0.4896 = 19.4004.
    (buy,) = engine.walk_segment(D(125), D(118))
    assert buy == Fill(4, Side.BUY, D(120), D("4.080"), D("0.4896"))
    (sell,) = engine.walk_segment(D(118), D(125))
    assert sell.slot == 4 and sell.amount == D("4.080")
    assert engine.round_trips[-1].profit == D("19.4004")
    # Orders rest under their ids: the client ids do not renumber after shifts.
    assert engine.resting_order(4, "a1g1").client_id == client_order_id("a1g1", 4, "buy", D(120), 2)


def test_a_shift_up_happens_only_while_every_slot_is_quote() -> None:
    engine = GridEngine.start(example_config(trailing_up=True), D(104))
    engine.walk_segment(D(104), D("109.99"))  # slot 1 still holds its coins
    engine.walk_segment(D("109.99"), D("109.98"))
    engine.trail(D(100), D(200))  # a rise past 115 with a sell resting: nothing
    assert engine.shifts_up == 0 and engine.lines == [D(100), D(105), D(110)]


def test_trailing_up_limit_stops_before_a_line_above_it() -> None:
    # Started above the range (every slot QUOTE): q = floor(1000/((100+105)*1.001)) = 4.873.
    engine = GridEngine.start(example_config(trailing_up=True, trailing_up_limit=D(118)), D(111))
    assert engine.q == D("4.873")
    engine.walk_segment(D(111), D(125))
    # 115 <= 118 shifts (q' = floor(4.873*100/110) = 4.430); 120 > 118 stops it there.
    assert engine.lines == [D(105), D(110), D(115)]
    assert orders(engine) == [(1, "buy", D(105), D("4.873")), (2, "buy", D(110), D("4.430"))]
    assert [e.kind for e in engine.drain_events()] == [SHIFT_UP, TRAILING_UP_STOPPED]
    engine.walk_segment(D(125), D(124))
    engine.walk_segment(D(124), D(140))
    assert engine.drain_events() == []  # said once
    assert engine.wake_high is None  # nothing left to wake for on a rise


def test_minimum_order_stops_trailing_up_for_good() -> None:
    # capital 10.27 above the range: q = floor(10.27 / ((100+105)*1.001)) = floor(0.05004..)
    # = 0.050 (0.050*100 = 5, the minimum). A shift would buy floor(0.050*100/110) = 0.045 at
    # 110: 4.95 < 5, so trailing up stops and the grid stays as it is.
    engine = GridEngine.start(example_config(capital=D("10.27"), trailing_up=True), D(115))
    assert engine.q == D("0.050")
    engine.walk_segment(D(115), D(116))
    assert engine.lines == [D(100), D(105), D(110)] and engine.shifts_up == 0
    (event,) = engine.drain_events()
    assert event.kind == TRAILING_UP_STOPPED and "0.045" in event.text
    assert engine.up_stopped
    engine = roundtrip(engine)  # for good: it survives persistence
    engine.walk_segment(D(116), D(150))
    assert engine.drain_events() == [] and engine.shifts_up == 0


def test_a_shift_below_one_step_also_stops_trailing_up() -> None:
    # step 1: q = floor(1000/(205*1.001)) = 4; q' = floor(4*100/110) = 3 >= 1 shifts once;
    # with capital 400: q = 1, q' = floor(100/110) = 0 < step.
    engine = GridEngine.start(
        example_config(capital=D(400), step=D(1), min_notional=D(1), trailing_up=True), D(111)
    )
    assert engine.q == D(1)
    engine.walk_segment(D(111), D(120))
    assert engine.shifts_up == 0 and engine.up_stopped


def test_geometric_widths_are_ratios_rounded_to_the_tick() -> None:
    config = example_config(lower=D(100), upper=D(200), levels=4, spacing="geometric",
                            trailing_up=True, trailing_down=True,
                            trailing_down_limit=D(50))  # fmt: skip
    assert config.lines == [D(100), D("125.99"), D("158.74"), D(200)]
    engine = GridEngine.start(config, D(150))
    # 200 * 200 / 158.74 = 251.98437.. -> 251.98; 100 * 100 / 125.99 = 79.37137.. -> 79.37
    assert engine.next_line_up() == D("251.98")
    assert engine.next_line_down() == D("79.37")


# --- trailing down -----------------------------------------------------------------------------


def test_trailing_down_moves_the_top_coins_to_a_new_bottom_slot_down_to_its_limit() -> None:
    # Started below the range at 99: both slots BASE, bought at 99;
    # q = floor(1000 / (2*99*1.001)) = floor(5.04545..) = 5.045.
    engine = GridEngine.start(example_config(trailing_down=True, trailing_down_limit=D(88)), D(99))
    assert engine.q == D("5.045")
    assert orders(engine) == [(0, "sell", D(105), D("5.045")), (1, "sell", D(110), D("5.045"))]
    quote, base = engine.quote, engine.base
    engine.walk_segment(D(99), D(90))
    # next 95 (100 - 5): cancel the sell at 110, its coins sell at 100 (slot 2);
    # next 90: cancel the sell at 105 (slot 0), its coins sell at 95 (slot 3); next 85 > 90.
    assert engine.lines == [D(90), D(95), D(100)]
    assert orders(engine) == [(3, "sell", D(95), D("5.045")), (2, "sell", D(100), D("5.045"))]
    assert [s.acquired for s in engine.slots] == [D(99), D(99)]
    assert (engine.quote, engine.base, engine.shifts_down) == (quote, base, 2)
    first, second = engine.drain_events()
    assert first.kind == second.kind == SHIFT_DOWN
    assert (first.cancelled.slot, first.cancelled.price, first.placed_slot) == (1, D(110), 2)
    assert (second.cancelled.slot, second.cancelled.price, second.placed_slot) == (0, D(105), 3)

    # 85 is below the limit 88: a fall to 80 says so, once, and moves nothing.
    assert engine.wake_low == D(85)
    engine.walk_segment(D(90), D(80))
    (stopped,) = engine.drain_events()
    assert stopped.kind == TRAILING_DOWN_STOPPED and "88" in stopped.text
    engine.walk_segment(D(80), D(81))
    engine.walk_segment(D(81), D(70))
    assert engine.drain_events() == [] and engine.shifts_down == 2

    # The loss is realised when the moved coins sell: at 95,
    # 5.045*(95-99) - 0.001*5.045*95 - 0.001*5.045*99 = -20.18 - 0.479275 - 0.499455;
    # at 100: 5.045 - 0.5045 - 0.499455.
    engine.walk_segment(D(70), D(101))
    assert [t.profit for t in engine.round_trips] == [D("-21.158730"), D("4.041045")]
    assert [t.slot for t in engine.round_trips] == [3, 2]


def test_trailing_down_waits_for_every_slot_to_hold_coins() -> None:
    engine = GridEngine.start(example_config(trailing_down=True, trailing_down_limit=D(50)), D(104))
    engine.walk_segment(D(104), D(101))  # slot 0 still rests its buy at 100
    engine.trail(D(200), D(60))
    assert engine.shifts_down == 0


def test_orders_a_shift_places_fill_from_the_next_segment_on() -> None:
    engine = GridEngine.start(example_config(trailing_down=True, trailing_down_limit=D(50)), D(99))
    fills = engine.walk_candle(D(99), D(101), D(94), D(100))  # O L H C: 99 94 101 100
    # The fall to 94 shifts once (95); the rise to 101 then sells at 100 (the new slot 2).
    assert engine.shifts_down == 1
    assert [(f.slot, f.side, f.price) for f in fills] == [(2, Side.SELL, D(100))]


# --- trigger price -----------------------------------------------------------------------------


def test_trigger_below_waits_then_starts_at_the_trigger_price() -> None:
    engine = GridEngine.start(example_config(trigger_price=D(102)), D(104))
    assert engine.waiting and engine.slots == [] and engine.desired_orders() == []
    assert (engine.quote, engine.base, engine.start_buy) == (D(1000), 0, None)
    assert engine.wake_low == D(102) and engine.wake_high is None
    engine = roundtrip(engine)
    assert engine.walk_segment(D(104), D(103)) == [] and engine.waiting
    assert engine.walk_segment(D(103), D(120)) == [] and engine.waiting  # wrong way
    # The fall 104 -> 99 reaches 102: P0 = 102, both slots BASE (102 is nearer 100);
    # q = floor(1000 / (2*102*1.001)) = 4.897; the start buys 9.794 at 102, fee 0.998988.
    fills = engine.walk_candle(D(104), D(106), D(99), D(105))
    assert not engine.waiting and engine.start_price == D(102)
    assert engine.start_buy.amount == D("9.794") and engine.start_buy.fee == D("0.998988")
    # Then 102 -> 99 fills nothing (slot 0 holds coins); 99 -> 106 sells slot 0 at 105:
    # 4.897*3 - 0.001*4.897*105 - 0.001*4.897*102 = 14.691 - 0.514185 - 0.499494.
    assert [(f.slot, f.side, f.price) for f in fills] == [(0, Side.SELL, D(105))]
    assert engine.round_trips[0].profit == D("13.677321")
    assert engine.quote == D("1000") - D("998.988") - D("0.998988") + D("514.185") - D("0.514185")
    (event,) = engine.drain_events()
    assert event.kind == TRIGGERED and event.start_buy == engine.start_buy


def test_trigger_above_waits_for_a_rise() -> None:
    result = run_backtest(
        example_config(trigger_price=D(107)), Candles.from_rows(EXAMPLE_ROWS, D("0.01"))
    )
    # Candle 1 peaks at 106; candle 2 rises 104 -> 111 through 107: P0 = 107, slot 0 QUOTE,
    # slot 1 BASE; q = floor(1000/((107+100)*1.001)) = 4.826; then 107 -> 111 sells at 110:
    # 4.826*3 - 0.001*4.826*110 - 0.001*4.826*107 = 14.478 - 0.53086 - 0.516382 = 13.430758.
    assert result.triggered_at == 60000
    assert result.start_price == D(107) and result.order_amount == D("4.826")
    assert result.grid_profit == D("13.430758") and result.total_trades == 1
    # Candle 3 falls to 96: buys at 105 and 100.
    assert result.fills == 3
    assert result.equity_curve[0] == 1000.0  # waiting: the capital


def test_trigger_equal_to_the_start_price_starts_at_once() -> None:
    candles = Candles.from_rows(EXAMPLE_ROWS, D("0.01"))
    plain = run_backtest(example_config(), candles)
    triggered = run_backtest(example_config(trigger_price=D(104)), candles)
    assert triggered.triggered_at == 0
    assert {k: v for k, v in triggered.stats().items() if k != "triggered_at"} == {
        k: v for k, v in plain.stats().items() if k != "triggered_at"
    }
    assert plain.triggered_at is None and plain.shifts_up == plain.shifts_down == 0


def test_a_trigger_never_reached_trades_nothing() -> None:
    result = run_backtest(
        example_config(trigger_price=D(95)), Candles.from_rows(EXAMPLE_ROWS[:2], D("0.01"))
    )
    assert result.triggered_at is None and result.fills == 0
    assert result.final_equity == D(1000) and result.total_profit == 0


def test_a_waiting_engine_takes_no_fills() -> None:
    engine = GridEngine.start(example_config(trigger_price=D(102)), D(104))
    with pytest.raises(ValueError, match="trigger"):
        engine.apply_fill(Fill(0, Side.BUY, D(100), D("4.897"), D(0)))


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"trigger_price": D("102.005")}, "trigger_price", "multiple of the tick"),
        ({"trigger_price": D(0)}, "trigger_price", "above 0"),
        ({"trigger_price": D(95), "stop_loss_pct": D(5)}, "trigger_price", "stop-loss"),
        ({"trigger_price": D(120), "take_profit": D(115)}, "trigger_price", "take-profit"),
        ({"trailing_up_limit": D(120)}, "trailing_up_limit", "trailing up turned on"),
        ({"trailing_up": True, "trailing_up_limit": D(110)}, "trailing_up_limit", "above"),
        (
            {"trailing_up": True, "trailing_up_limit": D(120), "take_profit": D(120)},
            "take_profit",
            "above the trailing-up limit",
        ),
        ({"trailing_down": True}, "trailing_down_limit", "needs a trailing-down limit"),
        ({"trailing_down_limit": D(90)}, "trailing_down_limit", "trailing down turned on"),
        ({"trailing_down": True, "trailing_down_limit": D(100)}, "trailing_down_limit", "below"),
        (
            {"trailing_down": True, "trailing_down_limit": D(94), "stop_loss_pct": D(5)},
            "trailing_down_limit",
            "stop-loss price 95",
        ),
    ],
)
def test_extension_settings_that_cannot_work_are_refused_on_their_field(
    overrides: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidGrid, match=words) as e:
        example_config(**overrides)
    assert e.value.field == field


def test_configs_without_extensions_write_and_read_what_they_always_did() -> None:
    config = example_config()
    assert not set(config.to_dict()) & {"trigger_price", "trailing_up", "trailing_down"}
    on = example_config(trailing_up=True, trailing_up_limit=D(130), trigger_price=D(103))
    assert GridConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert example_config(trailing_up="false").trailing_up is False


def test_old_engine_states_load_and_shifted_ones_round_trip() -> None:
    engine = GridEngine.start(example_config(), D(104))
    state = engine.to_dict()
    assert not set(state) & {"waiting", "next_slot_id", "shifts_up"}
    shifted = sold_out()
    shifted.walk_segment(D(110), D(125))
    copy = roundtrip(shifted)
    assert copy.to_dict() == shifted.to_dict()
    assert [(s.id, s.amount) for s in copy.slots] == [(3, D("4.471")), (4, D("4.080"))]
    assert copy.next_slot_id == 5 and copy.shifts_up == 3
    copy.walk_segment(D(125), D(130))  # and goes on with the next id
    assert copy.slots[-1].id == 5


# --- the books balance across shifts -----------------------------------------------------------

TICK = D("0.01")


@st.composite
def trailing_configs(draw: st.DrawFn) -> GridConfig:
    lower = D(draw(st.integers(5000, 20000))) * TICK
    width = D(draw(st.integers(100, 10000))) * TICK
    upper = lower + width
    up = draw(st.booleans())
    down = draw(st.booleans())
    try:
        return GridConfig(
            lower=lower,
            upper=upper,
            levels=draw(st.integers(2, 8)),
            spacing=draw(st.sampled_from(["arithmetic", "geometric"])),
            capital=D(draw(st.integers(50, 50000))),
            fee=D(draw(st.sampled_from(["0", "0.001", "0.0075"]))),
            step=D("0.001"),
            min_notional=D(5),
            trailing_up=up,
            trailing_up_limit=(
                round_price(upper + width * draw(st.integers(1, 4)), TICK)
                if up and draw(st.booleans())
                else None
            ),
            trailing_down=down,
            trailing_down_limit=round_price(lower / draw(st.sampled_from([2, 3, 10])), TICK)
            if down
            else None,
            trigger_price=(
                D(draw(st.integers(int(lower / TICK // 2), int(upper / TICK * 2)))) * TICK
                if draw(st.booleans())
                else None
            ),
        )
    except InvalidGrid:
        assume(False)
        raise


def books(engine: GridEngine) -> Decimal:
    """What the grid's money is worth at cost: quote, plus every held slot's coins at what they
    cost with the buy's fee. It only grows by the round trips' profit: capital + grid_profit."""
    fee = engine.config.fee
    held = sum(
        (s.amount * s.acquired * (1 + fee) for s in engine.slots if s.state == SlotState.BASE),
        D(0),
    )
    return engine.quote + held


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_books_balance_across_shifts(data: st.DataObject) -> None:
    config = data.draw(trailing_configs())
    lo_t, hi_t = int(config.lower / TICK), int(config.upper / TICK)
    span = hi_t - lo_t
    prices = st.integers(max(1, lo_t - 2 * span), hi_t + 3 * span)
    p0 = D(data.draw(prices)) * TICK
    try:
        engine = GridEngine.start(config, p0)
    except InvalidGrid:
        assume(False)
        return
    a = p0
    for _ in range(data.draw(st.integers(1, 40))):
        b = D(data.draw(prices)) * TICK
        quote, base, was_waiting = engine.quote, engine.base, engine.waiting
        fills = engine.walk_segment(a, b)
        if engine.is_stopped:
            break
        if engine.waiting:
            assert (engine.quote, engine.base) == (config.capital, 0)
        else:
            assert books(engine) == config.capital + engine.grid_profit
            assert engine.base == sum(
                (s.amount for s in engine.slots if s.state == SlotState.BASE), D(0)
            )
            assert len(engine.lines) == config.levels == len(engine.slots) + 1
            assert engine.lines == sorted(set(engine.lines))
            assert len({s.id for s in engine.slots}) == len(engine.slots)
            assert all(s.id < engine.next_slot_id for s in engine.slots)
        for event in engine.drain_events():
            if event.kind == SHIFT_UP:
                # The new buy never needs more quote than the cancelled one held.
                new, old = event.placed, event.cancelled
                assert (new.side, old.side, new.slot) == (Side.BUY, Side.BUY, event.placed_slot)
                assert new.amount * new.price <= old.amount * old.price
                assert new.amount >= config.step
                assert new.amount * new.price >= config.min_notional
            if event.kind == SHIFT_DOWN:
                new, old = event.placed, event.cancelled
                assert (new.side, old.side, new.amount) == (Side.SELL, Side.SELL, old.amount)
                assert new.price < old.price
            if event.kind in (SHIFT_UP, SHIFT_DOWN) and not fills and not was_waiting:
                assert (engine.quote, engine.base) == (quote, base)  # a shift trades nothing
        engine = roundtrip(engine)
        a = b


# --- backtests ---------------------------------------------------------------------------------

DATA = Path(__file__).resolve().parents[2] / "market" / "data"
BTC = DATA / "binance_spot_BTCUSDT_1m_2025-06-02_2025-06-15.csv.gz"


@pytest.fixture(scope="module")
def btc() -> Candles:
    return load_csv(BTC, D("0.01"))


def test_fast_and_exact_walks_agree_with_trailing_and_a_trigger(btc: Candles) -> None:
    window = btc.slice(0, 6000)
    for options in (
        {"trailing_up": True},
        {"trailing_down": True, "trailing_down_limit": D(90000)},
        {
            "trailing_up": True,
            "trailing_up_limit": D(108000),
            "trailing_down": True,
            "trailing_down_limit": D(98000),
            "trigger_price": D(104500),
        },  # fmt: skip
    ):
        config = GridConfig(lower=D(104000), upper=D(106000), levels=12, spacing="geometric",
                            capital=D(10000), **options)  # fmt: skip
        fast = run_backtest(config, window)
        exact = run_backtest(config, window, fast=False)
        assert fast.stats() == exact.stats()
        assert fast.grid_moves == exact.grid_moves and fast.levels == exact.levels
        assert fast.fill_points == exact.fill_points
        assert fast.shifts_up + fast.shifts_down > 0


def test_trailing_up_makes_more_round_trips_on_a_rising_window(btc: Candles) -> None:
    # 2025-06-08 12:00 to 06-10 12:00 UTC: BTC rises from 105,686.71 to 109,541.28.
    window = btc.slice(9360, 12240)
    grid = {"lower": D(104000), "upper": D(107000), "levels": 8, "spacing": "geometric",
            "capital": D(10000)}  # fmt: skip
    still = run_backtest(GridConfig(**grid), window)
    trailing = run_backtest(GridConfig(**grid, trailing_up=True), window)
    print(
        f"\nwithout: {still.total_trades} round trips, grid profit {still.grid_profit:.2f}, "
        f"total {still.total_profit:.2f}; with trailing up: {trailing.total_trades} round "
        f"trips, grid profit {trailing.grid_profit:.2f}, total {trailing.total_profit:.2f}, "
        f"{trailing.shifts_up} shifts up, grid now {trailing.levels[0]}-{trailing.levels[-1]}"
    )
    assert (still.total_trades, trailing.total_trades) == (5, 9)
    assert trailing.shifts_up == 7 and still.shifts_up == 0
    assert trailing.levels[-1] > window.price(window.close[-1]) > still.levels[-1]
    assert trailing.total_profit > still.total_profit
    assert len(trailing.grid_moves) == 7 and all(m.direction == "up" for m in trailing.grid_moves)


def test_the_backtest_command_takes_trigger_and_trailing(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    csv = tmp_path / "worked.csv"
    csv.write_text("\n".join(",".join(map(str, r)) for r in EXAMPLE_ROWS))
    args = ["backtest", "--csv", str(csv), "--lower", "100", "--upper", "110", "--levels", "3",
            "--capital", "1000", "--step", "0.001"]  # fmt: skip
    out = StringIO()
    call_command(*args, "--trigger-price", "107", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["triggered_at"] == 60000 and result["grid_profit"] == "13.430758"
    assert (result["shifts_up"], result["shifts_down"], result["grid_moves"]) == (0, 0, [])
    out = StringIO()
    call_command(*args, "--trailing-up", "--trailing-up-limit", "120", "--trailing-down",
                 "--trailing-down-limit", "90", stdout=out)  # fmt: skip
    assert "Trailing: " in out.getvalue()
    with pytest.raises(Exception, match="trailing-down limit"):
        call_command(*args, "--trailing-down")


# --- the preview -------------------------------------------------------------------------------


def test_the_preview_says_where_trailing_goes_next_and_where_it_stops() -> None:
    from bots.grid.preview import PREVIEW_SHIFTS, grid_preview, trailing_preview

    assert grid_preview(example_config(), D(104)).trailing is None
    # Up to the limit 118: one shift (to 115), the next line 120 is above it. Trigger below.
    config = example_config(trailing_up=True, trailing_up_limit=D(118), trigger_price=D(102))
    t = grid_preview(config, D(104)).trailing
    assert (t.trigger_price, t.trigger_side) == (D(102), "below")
    assert (t.next_up, t.up_stop, t.up_stop_reason, t.up_shifts) == (D(115), D(115), "limit", 1)
    assert t.next_down is None and t.down_shifts == 0
    assert trailing_preview(config, D(102)).trigger_side == ""  # at the trigger: starts at once
    assert trailing_preview(config, D(101)).trigger_side == "above"
    # The minimum order: 10.27 USDT cannot move a buy up at all (see the engine's test).
    small = example_config(capital=D("10.27"), trailing_up=True)
    t = trailing_preview(small, D(115))
    assert (t.next_up, t.up_stop, t.up_stop_reason, t.up_shifts) == (None, None, "min_order", 0)
    # No price yet: only the limits count; no limit in sight: "at least" PREVIEW_SHIFTS.
    t = trailing_preview(small, None)
    assert (t.next_up, t.up_stop_reason, t.up_shifts) == (D(115), "", PREVIEW_SHIFTS)
    # Down to the floor 88: 95 and 90, then 85 is below it.
    t = trailing_preview(example_config(trailing_down=True, trailing_down_limit=D(88)), D(99))
    assert (t.next_down, t.down_stop, t.down_stop_reason, t.down_shifts) == (
        D(95), D(90), "limit", 2,
    )  # fmt: skip
    t = trailing_preview(example_config(trailing_down=True, trailing_down_limit=D(96)), D(99))
    assert (t.next_down, t.down_stop, t.down_stop_reason, t.down_shifts) == (
        None, None, "limit", 0,
    )  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_equals_exact_walk_with_extensions_on_random_candles(data: st.DataObject) -> None:
    config, candles = data.draw(random_runs())
    width = config.upper - config.lower
    start = candles.price(candles.open[0])
    options: dict[str, object] = {"trailing_up": data.draw(st.booleans())}
    if options["trailing_up"] and data.draw(st.booleans()):
        options["trailing_up_limit"] = config.upper + width * data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):
        options["trailing_down"] = True
        options["trailing_down_limit"] = round_price(config.lower / 3, TICK)
    if data.draw(st.booleans()):
        options["trigger_price"] = round_price(
            start * D(data.draw(st.sampled_from(["0.99", "0.999", "1", "1.001", "1.02"]))), TICK
        )
    try:
        config = replace(config, **options)
        fast = run_backtest(config, candles)
    except InvalidGrid:
        assume(False)
        return
    exact = run_backtest(config, candles, fast=False)
    assert_same(fast, exact)
    assert fast.stats() == exact.stats()
    assert fast.grid_moves == exact.grid_moves and fast.levels == exact.levels
