"""Paper = backtest with a trigger price and trailing on (issue 17): a paper bot replayed over a
rising stretch of real candles waits for its trigger, starts there, follows the price up, and
ends exactly where the backtest of the same candles does; each shift cancels one order and
places one, and the log names it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots import config as schema
from bots import cycle, pages, services
from bots.grid.backtest import Candles, run_backtest
from bots.models import Bot, BotEvent, Order, Trade
from market.feed import ReplayFeed, ReplayTrack
from market.management.commands.run_market_feed import Command as FeedCommand
from market.precision import plain
from market.services import SAMPLES, load_market_rules, read_csv_rows
from tests.bots.conftest import add_candles

pytestmark = pytest.mark.django_db

FIRST = 9_705  # 2025-06-08 17:45 UTC: BTC rises from about 105,900 to 107,800 the next day
HISTORY = 300  # candles stored before the bot starts
REPLAYED = 1_500  # candles the feed then replays, one per pump


def test_paper_bot_with_trigger_and_trailing_matches_the_backtest(user):
    exchange, symbol, path = SAMPLES[0]
    rules = load_market_rules(exchange, symbol)
    rows = list(read_csv_rows(path))[FIRST : FIRST + HISTORY + REPLAYED]
    assert rows[HISTORY][1] == rows[HISTORY - 1][4]  # P0: the last stored close, the first open
    add_candles(rows[:HISTORY])
    replayed = rows[HISTORY:]
    p0 = Decimal(replayed[0][1])
    config = schema.normalise({
        "capital": "10000", "lower_bound": str(p0 - 1200), "upper_bound": str(p0 + 1500),
        "grid_levels": "10", "spacing": "geometric", "stop_loss_pct": "0",
        "max_daily_loss": "0", "take_profit": "", "trigger_price": str(p0 - 100),
        "trailing_up": True, "trailing_down": True, "trailing_down_limit": str(p0 - 5000),
    })  # fmt: skip
    bot = services.create_bot(user, symbol=symbol, config=config)
    services.start_bot(bot)
    bot.refresh_from_db()
    assert bot.engine().waiting
    assert not Order.objects.filter(bot=bot).exists()  # waiting: nothing placed, nothing bought

    track = ReplayTrack.after(
        exchange, symbol, replayed, rules.tick, int(rows[HISTORY - 1][0]), rows[HISTORY - 1][4]
    )
    feed = ReplayFeed([track], candles_per_second=Decimal(0))
    command = FeedCommand()
    for _ in range(REPLAYED):
        assert command.pump(feed) == 1
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    grid = schema.grid_config_for(config, exchange=exchange, symbol=symbol)
    expected = run_backtest(grid, Candles.from_rows(replayed, grid.tick))
    assert expected.triggered_at is not None and expected.shifts_up >= 3
    engine = bot.engine()
    stats = pages.bot_statistics(bot)
    assert not engine.waiting
    assert (engine.shifts_up, engine.shifts_down) == (expected.shifts_up, expected.shifts_down)
    assert engine.lines == expected.levels
    assert engine.fills == expected.fills
    assert stats.total_trades == expected.total_trades
    assert stats.grid_profit == expected.grid_profit
    assert stats.equity == expected.final_equity
    assert stats.total_profit == expected.total_profit
    trades = Trade.objects.filter(bot=bot)
    assert sorted(t.profit for t in trades) == sorted(t.profit for t in expected.round_trips)
    assert bot.status == Bot.Status.RUNNING

    # The book is the engine's: one open order per slot, under the slot's stable id.
    open_orders = Order.objects.filter(bot=bot, status=Order.Status.OPEN)
    assert sorted((o.slot, o.client_order_id) for o in open_orders) == sorted(
        (d.slot, d.client_id) for d in engine.desired_orders(bot.key)
    )
    # The start buy at the trigger price, and one cancelled order per shift.
    start = Order.objects.get(bot=bot, kind=Order.Kind.MARKET)
    assert start.price == grid.trigger_price and start.amount == expected.start_buy_amount
    assert (
        Order.objects.filter(bot=bot, status=Order.Status.CANCELLED, reason="trailing").count()
        == expected.shifts_up + expected.shifts_down
    )
    # No other order was touched by a shift: nothing renumbered, nothing replaced.
    assert not Order.objects.filter(bot=bot, reason="replaced").exists()
    moves = BotEvent.objects.filter(bot=bot, data__grid_event="shift_up")
    assert moves.count() == expected.shifts_up
    last = moves.order_by("-id").first()
    assert last.data["lines"] == [plain(engine.lines[0]), plain(engine.lines[-1])]
    assert BotEvent.objects.filter(bot=bot, data__grid_event="triggered").count() == 1


def open_orders(bot: Bot) -> list[tuple[int | None, str, Decimal]]:
    return sorted((o.slot, o.side, o.price) for o in bot.orders.filter(status=Order.Status.OPEN))


def test_a_shift_down_cancels_one_order_and_places_one_in_a_paper_bot(worked_market, make_bot):
    from tests.bots.conftest import WORKED_CONFIG

    config = {**WORKED_CONFIG, "trailing_down": "true", "trailing_down_limit": "88"}
    bot = make_bot(config)
    services.start_bot(bot)  # at 104: a buy at 100 (slot 0), a sell at 110 (slot 1)
    add_candles([(60_000, "104", "104", "96", "96")])  # the buy at 100 fills: all hold coins
    cycle.run_cycle(bot.pk)
    assert open_orders(bot) == [(0, "sell", Decimal("105")), (1, "sell", Decimal("110"))]
    add_candles([(120_000, "96", "96", "89", "89")])  # 95 and 90 reached: two shifts; 85 < 88
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    # Slot 1's coins (bought at 104) now sell at 100 as slot 2; slot 0's (bought at 100) at 95
    # as slot 3: each shift cancelled one sell and placed one.
    assert open_orders(bot) == [(2, "sell", Decimal("100")), (3, "sell", Decimal("95"))]
    cancelled = bot.orders.filter(status=Order.Status.CANCELLED, reason="trailing")
    assert sorted((o.slot, o.price) for o in cancelled) == [(0, 105), (1, 110)]
    assert not bot.orders.filter(reason="replaced").exists()
    shifts = bot.events.filter(kind=BotEvent.Kind.SHIFT).order_by("id")
    assert [e.data["lines"] for e in shifts] == [["95", "105"], ["90", "100"]]
    assert bot.engine().shifts_down == 2

    add_candles([(180_000, "89", "101", "89", "101")])  # both sell, at a loss: 95 < 100, 100 < 104
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    trades = sorted((t.slot, t.buy_price, t.sell_price) for t in Trade.objects.filter(bot=bot))
    assert trades == [(2, Decimal(104), Decimal(100)), (3, Decimal(100), Decimal(95))]
    assert open_orders(bot) == [(2, "buy", Decimal("95")), (3, "buy", Decimal("90"))]
