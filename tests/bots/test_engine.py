"""The grid engine against GRID_SPEC.md: the worked example, hand-computed cases, properties."""

from __future__ import annotations

import ast
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bots.grid.engine import DesiredOrder, Fill, GridEngine, Side
from bots.grid.order_ids import client_order_id
from bots.grid.params import GridConfig, InvalidGrid, SlotState, grid_lines
from market.precision import floor_amount, round_price
from tests.bots.conftest import example_config

D = Decimal

EXAMPLE_CANDLES = [
    (D(104), D(106), D(99), D(105)),
    (D(105), D(111), D(104), D(108)),
    (D(108), D(108), D(96), D(97)),
]


def walk(engine: GridEngine, candles: list[tuple[Decimal, ...]]) -> list[Decimal]:
    """Walk candles as the backtest does and return the equity marked at each close."""
    equities = []
    prev = None
    for o, h, lo, c in candles:
        engine.walk_candle(o, h, lo, c, prev)
        prev = c
        equities.append(engine.equity(engine.stop_mark if engine.is_stopped else c))
    return equities


# --- rounding helpers and lines ---------------------------------------------------------------


def test_round_price_is_half_up_to_the_tick() -> None:
    assert round_price(D("100.005"), D("0.01")) == D("100.01")
    assert round_price(D("100.0049"), D("0.01")) == D("100.00")
    assert round_price(D("7.5"), D("5")) == D("10")
    assert round_price(D("7.4"), D("5")) == D("5")


def test_floor_amount_floors_to_the_step() -> None:
    assert floor_amount(D("4.8970999"), D("0.001")) == D("4.897")
    assert floor_amount(D("0.000099"), D("0.00001")) == D("0.00009")
    assert floor_amount(D("0.3"), D("0.25")) == D("0.25")


def test_arithmetic_lines() -> None:
    assert grid_lines(D(100), D(110), 3, "arithmetic", D("0.01")) == [D(100), D(105), D(110)]
    assert grid_lines(D(100), D(101), 4, "arithmetic", D("0.01")) == [
        D("100.00"),
        D("100.33"),
        D("100.67"),
        D("101.00"),
    ]


def test_geometric_lines_hand_computed() -> None:
    # 100 * 4^(i/2) = 100, 200, 400 exactly; 100 * 2^(1/3) = 125.992..., 2^(2/3) = 158.740...
    assert grid_lines(D(100), D(400), 3, "geometric", D("0.01")) == [D(100), D(200), D(400)]
    assert grid_lines(D(100), D(200), 4, "geometric", D("0.01")) == [
        D("100.00"),
        D("125.99"),
        D("158.74"),
        D("200.00"),
    ]


def test_lines_colliding_after_rounding_are_rejected() -> None:
    with pytest.raises(InvalidGrid, match="use fewer levels"):
        grid_lines(D(100), D("100.02"), 5, "arithmetic", D("0.01"))
    with pytest.raises(InvalidGrid, match="use fewer levels"):
        example_config(upper=D("100.03"), levels=5)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lower": D(110), "upper": D(100)}, "upper price must be above the lower price"),
        ({"lower": D(0)}, "lower price must be above 0"),
        ({"lower": D(-5)}, "lower price must be above 0"),
        ({"levels": 1}, "between 2 and 500"),
        ({"levels": 501}, "between 2 and 500"),
        ({"levels": 9, "min_levels": 10, "max_levels": 50}, "between 10 and 50"),
        ({"capital": D(0)}, "capital must be above 0"),
        ({"stop_loss_pct": D("10.5")}, "stop-loss must be between 0 and 10"),
        ({"stop_loss_pct": D("-1")}, "stop-loss must be between 0 and 10"),
        ({"take_profit": D(110)}, "take-profit must be above the upper price"),
        ({"spacing": "logarithmic"}, "spacing must be"),
    ],
)
def test_invalid_configs_say_why(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidGrid, match=re.escape(message)):
        example_config(**overrides)


def test_capital_too_small_says_how_much_the_grid_needs() -> None:
    config = GridConfig(
        lower=D(99500),
        upper=D(110000),
        levels=50,
        spacing="arithmetic",
        capital=D(100),
    )
    with pytest.raises(InvalidGrid) as caught:
        GridEngine.start(config, D(105000))
    message = str(caught.value)
    assert "below the exchange minimum of 5 USDT" in message
    needed = re.search(r"needs at least ([\d,]+\.\d\d) USDT", message)
    assert needed, message
    # The stated capital is enough, and one tick less is not.
    capital = D(needed.group(1).replace(",", ""))
    GridEngine.start(
        GridConfig(
            lower=D(99500), upper=D(110000), levels=50, spacing="arithmetic", capital=capital
        ),
        D(105000),
    )
    with pytest.raises(InvalidGrid):
        GridEngine.start(
            GridConfig(
                lower=D(99500),
                upper=D(110000),
                levels=50,
                spacing="arithmetic",
                capital=capital - D("0.01"),
            ),
            D(105000),
        )


def test_order_below_one_step_is_rejected_with_needed_capital() -> None:
    with pytest.raises(InvalidGrid, match="needs at least"):
        GridEngine.start(example_config(capital=D("0.0001")), D(104))


def test_start_price_must_be_positive() -> None:
    with pytest.raises(InvalidGrid, match="start price"):
        GridEngine.start(example_config(), D(0))


# --- the worked example ------------------------------------------------------------------------


def test_worked_example_start() -> None:
    engine = GridEngine.start(example_config(), D(104))
    assert engine.lines == [D(100), D(105), D(110)]
    assert [s.state for s in engine.slots] == [SlotState.QUOTE, SlotState.BASE]
    assert engine.q == D("4.897")
    assert engine.start_buy is not None
    assert (engine.start_buy.amount, engine.start_buy.price) == (D("4.897"), D(104))
    assert engine.start_buy.fee == D("0.509288")
    assert engine.slots[1].acquired == D(104)
    assert engine.base == D("4.897")
    assert engine.quote == D("490.202712")
    assert engine.desired_orders() == [
        DesiredOrder(0, Side.BUY, D(100), D("4.897"), 0, engine.desired_orders()[0].client_id),
        DesiredOrder(1, Side.SELL, D(110), D("4.897"), 0, engine.desired_orders()[1].client_id),
    ]
    assert engine.next_buy_price == D(100)
    assert engine.next_sell_price == D(110)


def test_worked_example_candle_by_candle() -> None:
    engine = GridEngine.start(example_config(), D(104))
    first = engine.walk_candle(*EXAMPLE_CANDLES[0])
    assert [(f.side, f.price) for f in first] == [(Side.BUY, D(100)), (Side.SELL, D(105))]
    assert engine.round_trips[0].profit == D("23.481115")
    second = engine.walk_candle(*EXAMPLE_CANDLES[1], prev_close=D(105))
    assert [(f.side, f.price) for f in second] == [(Side.SELL, D(110))]
    assert engine.round_trips[1].profit == D("28.334042")
    assert engine.round_trips[1].buy_price == D(104)
    assert engine.equity(D(108)) == D("1051.815157")
    third = engine.walk_candle(*EXAMPLE_CANDLES[2], prev_close=D(108))
    assert [(f.side, f.price) for f in third] == [(Side.BUY, D(105)), (Side.BUY, D(100))]


def test_worked_example_statistics() -> None:
    engine = GridEngine.start(example_config(), D(104))
    equities = walk(engine, EXAMPLE_CANDLES)
    assert engine.fills == 5
    assert engine.total_trades == 2
    assert engine.win_rate == 1
    assert engine.grid_profit == D("51.815157")
    assert engine.base == D("9.794")
    assert engine.quote == D("46.926272")
    assert equities[-1] == D("996.944272")
    assert equities[-1] - engine.config.capital == D("-3.055728")
    peak, drawdown = engine.config.capital, D(0)
    for equity in equities:
        peak = max(peak, equity)
        drawdown = max(drawdown, (peak - equity) / peak)
    assert peak == D("1051.815157")
    assert round(drawdown, 7) == D("0.0521678")


# --- hand-computed cases -----------------------------------------------------------------------


def test_start_below_the_range_holds_every_slot_in_base() -> None:
    engine = GridEngine.start(example_config(), D(95))
    assert [s.state for s in engine.slots] == [SlotState.BASE, SlotState.BASE]
    # q = floor(1000 / (2*95 * 1.001)) = floor(5.2579...) = 5.257
    assert engine.q == D("5.257")
    assert engine.start_buy is not None and engine.start_buy.amount == D("10.514")
    assert all(s.acquired == D(95) for s in engine.slots)
    assert engine.next_buy_price is None
    assert engine.next_sell_price == D(105)


def test_start_exactly_on_a_line_leaves_that_line_empty() -> None:
    engine = GridEngine.start(example_config(), D(105))
    assert [s.state for s in engine.slots] == [SlotState.QUOTE, SlotState.BASE]
    engine = GridEngine.start(example_config(), D(100))
    assert [s.state for s in engine.slots] == [SlotState.BASE, SlotState.BASE]


def test_start_equidistant_goes_to_quote_and_nearer_lower_to_base() -> None:
    assert GridEngine.start(example_config(), D("102.5")).slots[0].state == SlotState.QUOTE
    assert GridEngine.start(example_config(), D("102.49")).slots[0].state == SlotState.BASE


def test_start_above_the_range_buys_nothing() -> None:
    engine = GridEngine.start(example_config(), D(120))
    assert [s.state for s in engine.slots] == [SlotState.QUOTE, SlotState.QUOTE]
    # q = floor(1000 / ((100 + 105) * 1.001)) = 4.873
    assert engine.q == D("4.873")
    assert engine.start_buy is None
    assert engine.base == 0 and engine.quote == D(1000)
    assert engine.next_sell_price is None


def test_stop_loss_sells_everything_at_the_stop_price() -> None:
    engine = GridEngine.start(example_config(stop_loss_pct=D(5)), D(104))
    assert engine.stop_price == D(95)
    fills = engine.walk_candle(D(104), D(104), D(94), D(96))
    assert [(f.side, f.price) for f in fills] == [(Side.BUY, D(100))]
    assert engine.is_stopped and engine.stopped == "stop_loss"
    # quote before the stop: 490.202712 - 490.1897 = 0.013012; base 9.794 sold at 95 less fee.
    assert engine.stop_sale is not None
    assert engine.stop_sale.amount == D("9.794")
    assert engine.stop_sale.fee == D("0.93043")
    assert engine.base == 0
    assert engine.quote == D("0.013012") + D("930.43") - D("0.93043")
    assert engine.equity(engine.stop_mark) == engine.quote
    assert engine.stop_mark == D(95)
    assert engine.desired_orders() == []
    assert engine.walk_candle(D(96), D(200), D(50), D(60)) == []
    assert engine.fills == 1


def test_stop_loss_needs_the_segment_to_reach_the_stop() -> None:
    engine = GridEngine.start(example_config(stop_loss_pct=D(5)), D(104))
    engine.walk_candle(D(104), D(104), D("95.01"), D(96))
    assert not engine.is_stopped
    engine.walk_candle(D(96), D(97), D(95), D(96), prev_close=D(96))
    assert engine.stopped == "stop_loss"


def test_take_profit_sells_at_the_take_profit_price() -> None:
    engine = GridEngine.start(example_config(take_profit=D(120)), D(104))
    fills = engine.walk_candle(D(104), D(125), D(103), D(121))
    assert [(f.side, f.price) for f in fills] == [(Side.SELL, D(110))]
    assert engine.stopped == "take_profit"
    assert engine.stop_mark == D(120)
    assert engine.base == 0
    assert engine.desired_orders() == []


def test_take_profit_above_the_range_finds_every_sell_already_filled() -> None:
    engine = GridEngine.start(example_config(take_profit=D(120)), D(95))
    # 95 -> 95 -> 120 rises through the sells at 105 and 110 before reaching take-profit.
    fills = engine.walk_candle(D(95), D(120), D(95), D(119))
    assert [f.price for f in fills] == [D(105), D(110)]
    assert engine.stopped == "take_profit"
    assert engine.stop_sale is not None and engine.stop_sale.amount == 0
    assert engine.equity(D(1)) == engine.quote == D(1000) - engine.fees_paid + engine.q * 25


def test_zero_length_segment_fills_nothing() -> None:
    engine = GridEngine.start(example_config(), D(104))
    assert engine.segment_fills(D(100), D(100)) == []
    assert engine.walk_segment(D(100), D(100)) == []


def test_segment_fills_are_ordered() -> None:
    config = example_config(upper=D(140), levels=9, capital=D(100000))
    engine = GridEngine.start(config, D(125))
    falling = engine.segment_fills(D(125), D(100))
    assert [f.price for f in falling] == [D(120), D(115), D(110), D(105), D(100)]
    rising = engine.segment_fills(D(125), D(140))
    assert [f.price for f in rising] == [D(130), D(135), D(140)]
    assert engine.segment_fills(D(125), D(119)) == [falling[0]]


def test_apply_fill_rejects_fills_that_match_no_resting_order() -> None:
    engine = GridEngine.start(example_config(), D(104))
    before = engine.to_dict()
    bad = [
        Fill(0, Side.SELL, D(105), D("4.897"), D("0.514185")),
        Fill(0, Side.BUY, D(105), D("4.897"), D("0.514185")),
        Fill(0, Side.BUY, D(100), D("4.8"), D("0.48")),
        Fill(7, Side.BUY, D(100), D("4.897"), D("0.4897")),
    ]
    for fill in bad:
        with pytest.raises(ValueError, match="resting order|no slot"):
            engine.apply_fill(fill)
    assert engine.to_dict() == before


def test_client_order_ids_are_stable_and_change_after_a_fill() -> None:
    engine = GridEngine.start(example_config(), D(104))
    ids = [o.client_id for o in engine.desired_orders("bot-42")]
    assert ids == [o.client_id for o in engine.desired_orders("bot-42")]
    assert ids != [o.client_id for o in engine.desired_orders("bot-43")]
    engine.walk_segment(D(104), D(100))  # buy on slot 0 fills
    after = [o.client_id for o in engine.desired_orders("bot-42")]
    assert after[0] != ids[0] and after[1] == ids[1]
    long_key = "a-very-long-bot-key/with spaces and ünïcode" * 3
    for side in Side:
        cid = client_order_id(long_key, 499, side, D("123456.78"), 10**9)
        assert len(cid) <= 36
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cid)
        assert cid == client_order_id(long_key, 499, side, D("123456.78"), 10**9)


def test_a_grid_order_id_tells_its_slot() -> None:
    from bots.grid import order_ids

    key = order_ids.bot_key(42, 3, "k9x2")
    for slot, part in [(0, 0), (7, 0), (49, 2)]:
        cid = client_order_id(key, slot, Side.SELL, D("104.5"), 12, part)
        assert order_ids.slot_of(cid) == slot
    assert order_ids.slot_of(f"{key}-{order_ids.START}") is None
    assert order_ids.slot_of("my-own-order") is None
    long_id = client_order_id("a-very-long-bot-key/with spaces" * 3, 5, Side.BUY, D(1), 1)
    assert order_ids.slot_of(long_id) is None  # too long for its readable part


def test_engine_state_round_trips_through_json() -> None:
    engine = GridEngine.start(example_config(stop_loss_pct=D(2), take_profit=D(130)), D(104))
    engine.walk_candle(*EXAMPLE_CANDLES[0])
    state = json.loads(json.dumps(engine.to_dict()))
    copy = GridEngine.from_dict(state)
    assert copy.to_dict() == engine.to_dict()
    assert copy.config == engine.config
    assert copy.walk_candle(*EXAMPLE_CANDLES[1], prev_close=D(105)) == engine.walk_candle(
        *EXAMPLE_CANDLES[1], prev_close=D(105)
    )
    assert copy.to_dict() == engine.to_dict()


def test_engine_imports_neither_django_nor_numpy() -> None:
    grid = Path(__file__).resolve().parents[2] / "bots" / "grid"
    source = grid / "engine.py"
    # The engine and its parameters (GridConfig), which it imports.
    nodes = [
        n for f in ("engine.py", "params.py") for n in ast.walk(ast.parse((grid / f).read_text()))
    ]
    imported: set[str] = set()
    modules: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            modules.add(node.module)
    # The rounding helper lives in market.precision, itself stdlib only; nothing else of ours.
    assert "market.precision" in modules
    assert not imported & {"django", "numpy", "accounts"}, imported
    # Of bots, only its own package's pure neighbours (the client order ids, the parameters).
    assert not {m for m in modules if m.startswith("bots")} - {
        "bots.grid.order_ids",
        "bots.grid.params",
    }
    assert not {m for m in modules if m.startswith("market")} - {"market.precision"}
    helper = ast.parse((source.parents[2] / "market" / "precision.py").read_text())
    helper_imports = {
        (n.module or "").split(".")[0] for n in ast.walk(helper) if isinstance(n, ast.ImportFrom)
    } | {a.name for n in ast.walk(helper) if isinstance(n, ast.Import) for a in n.names}
    assert helper_imports <= {"__future__", "decimal"}, helper_imports


# --- properties --------------------------------------------------------------------------------

TICK = D("0.01")


@st.composite
def configs(draw: st.DrawFn) -> GridConfig:
    lower = D(draw(st.integers(1000, 20000))) * TICK
    width = D(draw(st.integers(100, 20000))) * TICK
    levels = draw(st.integers(2, 12))
    stop = D(draw(st.sampled_from([0, 1, 5, 10])))
    take_profit = draw(st.sampled_from([None, D(2), D(3)]))
    try:
        return GridConfig(
            lower=lower,
            upper=lower + width,
            levels=levels,
            spacing=draw(st.sampled_from(["arithmetic", "geometric"])),
            capital=D(draw(st.integers(100, 100000))),
            fee=D(draw(st.sampled_from(["0", "0.001", "0.0075"]))),
            step=D("0.001"),
            min_notional=D(1),
            stop_loss_pct=stop,
            take_profit=None
            if take_profit is None
            else round_price(lower + width * take_profit, TICK),
        )
    except InvalidGrid:
        assume(False)
        raise


@st.composite
def candle_paths(draw: st.DrawFn, config: GridConfig) -> tuple[Decimal, list[tuple[Decimal, ...]]]:
    """A start price and candles wandering across (and beyond) the grid, on the tick."""
    lo_t = int(config.lower / TICK)
    hi_t = int(config.upper / TICK)
    span = hi_t - lo_t
    low_bound, high_bound = max(1, lo_t - span // 2), hi_t + span // 2
    ints = st.integers(low_bound, high_bound)
    price = draw(ints)
    p0 = D(price) * TICK
    candles = []
    for n in range(draw(st.integers(1, 25))):
        # The first candle opens at P0, as in a backtest; later ones may gap from the close.
        o = price if n == 0 or draw(st.booleans()) else draw(ints)
        c = draw(ints)
        h = max(o, c) + draw(st.integers(0, span // 3 + 1))
        lo = max(1, min(o, c) - draw(st.integers(0, span // 3 + 1)))
        candles.append(tuple(D(x) * TICK for x in (o, h, lo, c)))
        price = c
    return p0, candles


def check_invariants(engine: GridEngine, q: Decimal) -> None:
    assert engine.q == q
    if engine.is_stopped:
        assert engine.base == 0
        assert engine.desired_orders() == []
        return
    orders = engine.desired_orders()
    assert [o.slot for o in orders] == list(range(len(engine.lines) - 1))
    n_base = 0
    for order, slot in zip(orders, engine.slots, strict=True):
        assert order.amount == q
        if slot.state == SlotState.QUOTE:
            assert (order.side, order.price) == (Side.BUY, engine.lines[order.slot])
        else:
            n_base += 1
            assert (order.side, order.price) == (Side.SELL, engine.lines[order.slot + 1])
            assert slot.acquired is not None and slot.acquired < order.price
    assert engine.base == n_base * q
    buys = [o.price for o in orders if o.side == Side.BUY]
    sells = [o.price for o in orders if o.side == Side.SELL]
    if buys and sells:
        assert max(buys) < min(sells)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_accounting_balances_after_every_fill(data: st.DataObject) -> None:
    config = data.draw(configs())
    p0, candles = data.draw(candle_paths(config))
    try:
        engine = GridEngine.start(config, p0)
    except InvalidGrid:
        assume(False)
        return
    q = engine.q
    capital_check = (
        engine.quote + engine.base * p0 + (engine.start_buy.fee if engine.start_buy else 0)
    )
    assert capital_check == config.capital
    prev = None
    for o, h, lo, c in candles:
        path = [o, lo, h, c] if c >= o else [o, h, lo, c]
        if prev is not None:
            path.insert(0, prev)
        for a, b in zip(path, path[1:], strict=False):
            if engine.is_stopped:
                break
            for fill in engine.segment_fills(a, b):
                quote, base, equity = engine.quote, engine.base, engine.equity(fill.price)
                assert fill.amount == q
                assert fill.fee == config.fee * fill.price * q
                acquired = engine.slots[fill.slot].acquired
                trip = engine.apply_fill(fill)
                if fill.side == Side.BUY:
                    assert engine.quote == quote - fill.price * q - fill.fee
                    assert engine.base == base + q
                    assert trip is None
                else:
                    assert engine.quote == quote + fill.price * q - fill.fee
                    assert engine.base == base - q
                    assert trip is not None and acquired is not None
                    assert trip.sell_price > trip.buy_price == acquired
                    assert trip.profit == q * (trip.sell_price - trip.buy_price) - trip.fees
                # At the fill price, a fill only costs its fee.
                assert engine.equity(fill.price) == equity - fill.fee
                check_invariants(engine, q)
            engine.check_stops(a, b)
            check_invariants(engine, q)
        prev = c


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_walk_candle_equals_segment_by_segment_and_survives_persistence(
    data: st.DataObject,
) -> None:
    config = data.draw(configs())
    p0, candles = data.draw(candle_paths(config))
    try:
        whole = GridEngine.start(config, p0)
    except InvalidGrid:
        assume(False)
        return
    persisted = GridEngine.from_dict(json.loads(json.dumps(whole.to_dict())))
    by_segment = GridEngine.from_dict(whole.to_dict())
    prev = None
    for o, h, lo, c in candles:
        expected = whole.walk_candle(o, h, lo, c, prev)
        # Rebuild from JSON every candle, as a paper bot does every cycle.
        persisted = GridEngine.from_dict(json.loads(json.dumps(persisted.to_dict())))
        assert persisted.walk_candle(o, h, lo, c, prev) == expected
        path = [o, lo, h, c] if c >= o else [o, h, lo, c]
        if prev is not None:
            path.insert(0, prev)
        fills = []
        for a, b in zip(path, path[1:], strict=False):
            if by_segment.is_stopped:
                break
            fills += by_segment.walk_segment(a, b)
        assert fills == expected
        prev = c
    assert persisted.to_dict() == whole.to_dict() == by_segment.to_dict()
    assert whole.grid_profit == sum((t.profit for t in whole.round_trips), D(0))
    assert whole.total_trades == len(whole.round_trips)


# --- live fills in parts, and the dust (issue 11, defects 5 and 7) -----------------------------


def test_a_buy_filled_in_parts_books_each_part_and_ends_as_one_whole_fill() -> None:
    whole = GridEngine.start(example_config(), D(104))
    whole.apply_fill(Fill(0, Side.BUY, D(100), D("4.897"), D("0.4897")))
    engine = GridEngine.start(example_config(), D(104))
    cid = engine.desired_orders("k")[0].client_id

    engine.book_part(Fill(0, Side.BUY, D(100), D(2), D("0.2")))

    assert (engine.quote, engine.base) == (D("290.002712"), D("6.897"))
    assert engine.slots[0].state == SlotState.QUOTE  # the slot turns only when it is done
    rest = engine.desired_orders("k")[0]
    assert (rest.amount, rest.client_id) == (D("2.897"), cid)  # the same order rests on
    engine.book_part(Fill(0, Side.BUY, D(100), D("2.897"), D("0.2897")))
    assert engine.complete(0) is None
    assert engine.to_dict() == whole.to_dict()


def test_the_rest_of_a_cancelled_part_goes_out_under_a_new_id() -> None:
    engine = GridEngine.start(example_config(), D(104))
    first = engine.desired_orders("k")[0]
    engine.book_part(Fill(0, Side.BUY, D(100), D(2), D("0.2")))
    engine.reissue(0)
    rest = engine.desired_orders("k")[0]
    assert rest.amount == D("2.897") and rest.client_id != first.client_id
    assert "0b0p1" in rest.client_id
    copy = GridEngine.from_dict(json.loads(json.dumps(engine.to_dict())))
    assert copy.desired_orders("k") == engine.desired_orders("k")
    engine.book_part(Fill(0, Side.BUY, D(100), D("2.897"), D("0.2897")))
    engine.complete(0)
    assert engine.desired_orders("k")[0].client_id == client_order_id("k", 0, "sell", D(105), 1)


def test_a_base_fee_is_paid_by_the_dust_and_a_cut_sell_leaves_the_rest_there() -> None:
    """A buy's 0.004897 fee taken in the coin shortens the next sell (cut to the 0.001 step:
    4.892, not 4.896): the 0.000103 it could not sell stays as dust, and no phantom loss."""
    engine = GridEngine.start(example_config(), D(104))
    engine.book_part(Fill(0, Side.BUY, D(100), D("4.897"), D(0)))
    engine.take_base_fee(D("0.004897"), D("0.4897"))
    engine.complete(0)
    assert engine.dust == D("-0.004897")
    assert engine.equity(D(100)) == engine.quote + (D("9.794") - D("0.004897")) * 100

    engine.book_part(Fill(0, Side.SELL, D(105), D("4.892"), D("0.51366")))
    trip = engine.complete(0)

    assert trip is not None and trip.profit == D("23.481115")  # the grid's, on q (GRID_SPEC)
    assert engine.dust == D("0.000103") and engine.base == D("4.897")
    assert engine.quote == D("490.202712") - D("489.7") + D("513.66") - D("0.51366")
    state = engine.to_dict()
    assert state["dust"] == "0.000103"
    assert GridEngine.from_dict(json.loads(json.dumps(state))).dust == D("0.000103")


def test_a_part_that_does_not_fit_the_resting_order_changes_nothing() -> None:
    engine = GridEngine.start(example_config(), D(104))
    engine.book_part(Fill(0, Side.BUY, D(100), D(4), D(0)))
    before = engine.to_dict()
    for bad in (
        Fill(0, Side.BUY, D(100), D(1), D(0)),  # more than the 0.897 left
        Fill(0, Side.SELL, D(105), D("0.1"), D(0)),
        Fill(0, Side.BUY, D(105), D("0.1"), D(0)),
        Fill(5, Side.BUY, D(100), D("0.1"), D(0)),
    ):
        with pytest.raises(ValueError, match="does not fit|resting order|no slot"):
            engine.book_part(bad)
    with pytest.raises(ValueError, match="no filled part"):
        engine.complete(1)
    assert engine.to_dict() == before


def test_paper_engines_write_no_live_fields() -> None:
    engine = GridEngine.start(example_config(), D(104))
    engine.walk_candle(*EXAMPLE_CANDLES[0])
    state = engine.to_dict()
    assert "dust" not in state and all(
        set(s) == {"state", "acquired", "seq"} for s in state["slots"]
    )
