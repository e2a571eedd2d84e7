"""The backtester: the worked example, and the fast path equal to a naive walk of every candle."""

from __future__ import annotations

import gzip
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bots.grid.backtest import Candles, load_csv, run_backtest
from bots.grid.params import GridConfig, InvalidGrid
from tests.bots.conftest import example_config

D = Decimal
TICK = D("0.01")
REPO = Path(__file__).resolve().parents[2]
SAMPLE = "binance_spot_BTCUSDT_1m_2025-06-02_2025-06-15.csv"

EXAMPLE_CSV = """timestamp_ms,open,high,low,close,volume
0,104,106,99,105,1
60000,105,111,104,108,1
120000,108,108,96,97,1
"""


def sample_path() -> Path:
    """The real BTC/USDT sample: market/data/ in the repo, or $AIBO_SHARED_DATA."""
    places = [REPO / "market" / "data"]
    if os.environ.get("AIBO_SHARED_DATA"):
        places.append(Path(os.environ["AIBO_SHARED_DATA"]))
    for place in places:
        for name in (SAMPLE, SAMPLE + ".gz"):
            if (place / name).exists():
                return place / name
    pytest.skip(f"real candle sample {SAMPLE} not found in {', '.join(map(str, places))}")


def assert_same(fast: object, naive: object) -> None:
    assert fast.stats() == naive.stats()  # type: ignore[attr-defined]
    assert fast.round_trips == naive.round_trips  # type: ignore[attr-defined]
    assert fast.fill_points == naive.fill_points  # type: ignore[attr-defined]
    assert fast.levels == naive.levels  # type: ignore[attr-defined]
    np.testing.assert_allclose(fast.equity_curve, naive.equity_curve, rtol=1e-12)  # type: ignore[attr-defined]


# --- loading -----------------------------------------------------------------------------------


def test_load_csv_with_and_without_header_plain_and_gzipped() -> None:
    with_header = load_csv(io.StringIO(EXAMPLE_CSV), TICK)
    without = load_csv(io.StringIO(EXAMPLE_CSV.split("\n", 1)[1]), TICK)
    zipped = load_csv(io.BytesIO(gzip.compress(EXAMPLE_CSV.encode())), TICK)
    for candles in (with_header, without, zipped):
        assert len(candles) == 3
        assert candles.time_ms.tolist() == [0, 60000, 120000]
        assert candles.low.tolist() == [9900, 10400, 9600]  # in ticks
        assert candles.ohlc(1) == (D(105), D(111), D(104), D(108))
        assert candles.unit == TICK


def test_prices_off_the_tick_get_a_finer_exact_unit() -> None:
    candles = load_csv(io.StringIO("0,100.005,100.5,99.995,100.123,1\n"), TICK)
    assert candles.unit == D("0.001")
    assert candles.ohlc(0) == (D("100.005"), D("100.5"), D("99.995"), D("100.123"))


def test_bad_candles_are_refused() -> None:
    with pytest.raises(ValueError, match="low/high"):
        load_csv(io.StringIO("0,100,99,98,100,1\n"), TICK)
    with pytest.raises(ValueError, match="no candles"):
        load_csv(io.StringIO("timestamp_ms,open,high,low,close,volume\n"), TICK)


# --- the worked example ------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_worked_example(fast: bool) -> None:
    result = run_backtest(example_config(), load_csv(io.StringIO(EXAMPLE_CSV), TICK), fast=fast)
    assert result.levels == [D(100), D(105), D(110)]
    assert result.order_amount == D("4.897")
    assert result.start_buy_amount == D("4.897")
    assert [t.profit for t in result.round_trips] == [D("23.481115"), D("28.334042")]
    assert result.fills == 5
    assert result.total_trades == 2
    assert result.win_rate == 1
    assert result.grid_profit == D("51.815157")
    assert result.final_base == D("9.794")
    assert result.final_quote == D("46.926272")
    assert result.final_equity == D("996.944272")
    assert result.total_profit == D("-3.055728")
    assert result.peak_equity == D("1051.815157")
    assert round(result.max_drawdown, 7) == D("0.0521678")
    assert result.max_drawdown == (D("1051.815157") - D("996.944272")) / D("1051.815157")
    assert result.stopped is None
    assert [(p.time_ms, p.side, p.price) for p in result.fill_points] == [
        (0, "buy", D(100)),
        (0, "sell", D(105)),
        (60000, "sell", D(110)),
        (120000, "buy", D(105)),
        (120000, "buy", D(100)),
    ]
    assert result.walked_candles == 3
    assert result.time_in_range == D(2) / D(3)
    assert result.equity_curve is not None
    assert result.equity_curve.tolist() == pytest.approx([1027.868827, 1051.815157, 996.944272])
    as_json = json.loads(json.dumps(result.to_json_dict()))
    assert as_json["grid_profit"] == "51.815157"
    assert as_json["levels"] == ["100", "105", "110"]


def test_stop_loss_in_a_backtest() -> None:
    csv = "0,104,104,103,103,1\n60000,103,103,94,96,1\n120000,96,150,96,150,1\n"
    config = example_config(stop_loss_pct=D(5))
    fast = run_backtest(config, load_csv(io.StringIO(csv), TICK))
    naive = run_backtest(config, load_csv(io.StringIO(csv), TICK), fast=False)
    assert_same(fast, naive)
    assert fast.stopped == "stop_loss"
    assert fast.stop_time_ms == 60000
    assert fast.final_base == 0
    assert fast.final_equity == fast.final_quote


def test_an_invalid_grid_is_reported_not_run() -> None:
    with pytest.raises(InvalidGrid, match="needs at least"):
        run_backtest(example_config(capital=D(1)), load_csv(io.StringIO(EXAMPLE_CSV), TICK))


# --- fast == naive -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"spacing": "geometric", "levels": 40},
        {"stop_loss_pct": D("0.3")},
        {"take_profit_above": D(150)},
        {"levels": 150, "fee": D(0)},
    ],
)
def test_fast_equals_naive_on_real_candles(overrides: dict[str, object]) -> None:
    candles = load_csv(sample_path(), TICK).slice(0, 3000)
    close = candles.close * 0.01
    lower, upper = D(str(round(np.percentile(close, 10)))), D(str(round(np.percentile(close, 90))))
    overrides = dict(overrides)
    if "take_profit_above" in overrides:
        overrides["take_profit"] = upper + overrides.pop("take_profit_above")  # type: ignore[operator]
    config = GridConfig(
        lower=lower,
        upper=upper,
        **{"levels": 20, "spacing": "arithmetic", "capital": D(100000), **overrides},  # type: ignore[arg-type]
    )
    fast = run_backtest(config, candles)
    naive = run_backtest(config, candles, fast=False)
    assert fast.fills > 20
    assert fast.walked_candles < len(candles)
    assert_same(fast, naive)


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[GridConfig, Candles]:
    base = draw(st.integers(5_000, 50_000))
    span = draw(st.integers(50, 5_000))
    levels = draw(st.integers(2, 15))
    n = draw(st.integers(1, 120))
    volatility = draw(st.integers(1, span // 2 + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    price = base + int(rng.integers(-span, 2 * span))
    rows = []
    for t in range(n):
        o = price if t == 0 or rng.random() < 0.8 else price + int(rng.integers(-5, 6))
        c = max(1, o + int(rng.integers(-volatility, volatility + 1)))
        h = max(o, c) + int(rng.integers(0, volatility + 1))
        lo = max(1, min(o, c) - int(rng.integers(0, volatility + 1)))
        rows.append((t * 60000, *(D(x) * TICK for x in (max(1, o), h, lo, c))))
        price = c
    stop = draw(st.sampled_from([0, 0, 1, 3]))
    tp = draw(st.sampled_from([None, None, D(span // 2) * TICK]))
    try:
        config = GridConfig(
            lower=D(base) * TICK,
            upper=D(base + span) * TICK,
            levels=levels,
            spacing=draw(st.sampled_from(["arithmetic", "geometric"])),
            capital=D(draw(st.integers(1000, 1_000_000))),
            step=D("0.0001"),
            min_notional=D(1),
            fee=D(draw(st.sampled_from(["0", "0.001"]))),
            stop_loss_pct=D(stop),
            take_profit=None if tp is None else D(base + span) * TICK + tp,
        )
    except InvalidGrid:
        assume(False)
        raise
    return config, Candles.from_rows(rows, TICK)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_runs())
def test_fast_equals_naive_on_random_candles(run: tuple[GridConfig, Candles]) -> None:
    config, candles = run
    try:
        fast = run_backtest(config, candles)
    except InvalidGrid:
        assume(False)
        return
    assert_same(fast, run_backtest(config, candles, fast=False))


def test_flat_and_stopped_stretches_are_exact_and_cheap() -> None:
    """Long runs of equal equity (all in quote, or after a stop) collapse to one exact value."""
    n = 50_000
    rng = np.random.default_rng(7)
    close = 20_000_00 + np.cumsum(rng.integers(-500, 501, n))
    rows = np.column_stack(
        [
            np.arange(n) * 60_000.0,
            np.r_[close[0], close[:-1]] / 100,
            (np.maximum(np.r_[close[0], close[:-1]], close) + 100) / 100,
            (np.minimum(np.r_[close[0], close[:-1]], close) - 100) / 100,
            close / 100,
        ]
    )
    candles = Candles.from_floats(rows, TICK)
    above = GridConfig(
        lower=D(1000), upper=D(2000), levels=10, spacing="arithmetic", capital=D(10_000)
    )
    result = run_backtest(above, candles)
    assert (result.max_drawdown, result.peak_equity, result.fills) == (0, D(10_000), 0)
    start = candles.price(candles.open[0])
    stopped = GridConfig(
        lower=start - 300,
        upper=start + 300,
        levels=7,
        spacing="geometric",
        capital=D(10_000),
        stop_loss_pct=D("0.5"),
        take_profit=start + 400,
    )
    fast = run_backtest(stopped, candles)
    assert fast.stopped is not None
    assert_same(fast, run_backtest(stopped, candles, fast=False))
