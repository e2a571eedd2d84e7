"""A paper bot driven by the replayed real candles ends exactly where the backtest does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from bots import config as schema
from bots import cycle, pages, services
from bots.grid.backtest import Candles, run_backtest
from bots.models import Bot, Trade
from market.feed import ReplayFeed, ReplayTrack
from market.management.commands.run_market_feed import Command as FeedCommand
from market.services import SAMPLES, load_market_rules, read_csv_rows
from tests.bots.conftest import add_candles

pytestmark = pytest.mark.django_db

HISTORY = 300  # candles stored before the bot starts
REPLAYED = 1_500  # candles the feed then replays, one per pump


def test_paper_bot_on_replayed_candles_matches_the_backtest(user):
    exchange, symbol, path = SAMPLES[0]
    rules = load_market_rules(exchange, symbol)
    rows = list(read_csv_rows(path))[: HISTORY + REPLAYED]
    # Binance opens each minute at the previous close, so the paper start price P0 (the last
    # stored close) is the backtest's P0 (the first replayed open).
    assert rows[HISTORY][1] == rows[HISTORY - 1][4]
    add_candles(rows[:HISTORY])
    replayed = rows[HISTORY:]
    closes = [r[4] for r in replayed]
    config = {
        "capital": "10000", "lower_bound": str(min(closes) - 100),
        "upper_bound": str(max(closes) + 100), "grid_levels": "30", "spacing": "geometric",
        "stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": "",
    }  # fmt: skip
    bot = services.create_bot(user, symbol=symbol, config=config)
    services.start_bot(bot)

    track = ReplayTrack.after(
        exchange, symbol, replayed, rules.tick, int(rows[HISTORY - 1][0]), rows[HISTORY - 1][4]
    )
    feed = ReplayFeed([track], candles_per_second=Decimal(0))
    command = FeedCommand()
    for _ in range(REPLAYED):
        assert command.pump(feed) == 1  # stores, publishes, wakes the bots it crossed
    cycle.run_cycle(bot.pk)  # catch up the quiet tail, as the next chain link would

    bot.refresh_from_db()
    grid = schema.grid_config_for(config, exchange=exchange, symbol=symbol)
    expected = run_backtest(grid, Candles.from_rows(replayed, grid.tick))
    engine = bot.engine()
    stats = pages.bot_statistics(bot)
    assert expected.fills > 20, "the window should trade"
    assert engine.fills == expected.fills
    assert stats.total_trades == expected.total_trades
    assert stats.grid_profit == expected.grid_profit
    assert stats.equity == expected.final_equity
    assert stats.total_profit == expected.total_profit
    if connection.vendor == "sqlite":
        # SQLite keeps NUMERIC columns as 8-byte floats (15 significant digits): compare the
        # ratio to 15 places there; PostgreSQL stores it exactly.
        assert round(bot.max_drawdown, 15) == round(expected.max_drawdown, 15)
    else:
        assert bot.max_drawdown == expected.max_drawdown
    trades = Trade.objects.filter(bot=bot)
    assert trades.count() == expected.total_trades
    assert sorted(t.profit for t in trades) == sorted(t.profit for t in expected.round_trips)
    assert bot.status == Bot.Status.RUNNING
