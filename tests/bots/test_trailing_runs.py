"""A page backtest with trigger and trailing stores what the walk reports (issue 17)."""

from __future__ import annotations

import datetime as dt

import pytest

from bots import config as schema
from bots.backtest_runs import chart_data, run_backtest_job, stored_candles
from bots.grid.backtest import run_backtest
from bots.models import BacktestRun
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles

pytestmark = pytest.mark.django_db

# The worked example's candles, then a rise to 120 that sells both slots and moves the grid up
# twice (to 115 and to 120; 125 is beyond the segment's end).
ROWS = [*WORKED_CANDLES, (240_000, "97", "120", "97", "119")]


def test_a_backtest_run_stores_shifts_and_the_trigger_time(user, rules, settings):
    settings.GRID_MIN_LEVELS = 2  # the worked example's three lines
    add_candles(ROWS)
    config = schema.normalise({**WORKED_CONFIG, "trigger_price": "107", "trailing_up": True})
    run = BacktestRun.objects.create(
        owner=user, symbol="BTC/USDT", config=config,
        start=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), end=dt.datetime(1970, 1, 2, tzinfo=dt.UTC),
    )  # fmt: skip
    run_backtest_job(run.pk)
    run.refresh_from_db()
    assert run.status == BacktestRun.Status.DONE, run.error
    grid = schema.grid_config_for(config, exchange="binance", symbol="BTC/USDT")
    expected = run_backtest(
        grid, stored_candles("binance", "BTC/USDT", start=None, end=None, tick=grid.tick)
    )
    assert (expected.shifts_up, expected.shifts_down, expected.triggered_at) == (2, 0, 120_000)
    result = run.result
    assert (result["shifts_up"], result["shifts_down"], result["triggered_at"]) == (2, 0, 120_000)
    assert result["fills"] == expected.fills and result["grid_profit"] == str(expected.grid_profit)
    assert result["levels"] == ["110", "115", "120"]
    assert result["start_levels"] == ["100", "105", "110"]
    assert [m[1:] for m in result["grid_moves"]] == [["up", "105", "115"], ["up", "110", "120"]]
    data = chart_data(run)
    assert data["start_lines"] == ["100", "110"] and len(data["moves"]) == 2
