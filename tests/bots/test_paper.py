"""Paper trading: start, cycles, risk rules, stop — against GRID_SPEC.md's worked example."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots import cycle, pages, services
from bots.errors import BotError
from bots.models import Bot, BotEvent, Order, PaperBalance, Trade
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles

pytestmark = pytest.mark.django_db


def open_orders(bot: Bot) -> list[tuple[int | None, str, Decimal]]:
    return sorted((o.slot, o.side, o.price) for o in bot.orders.filter(status=Order.Status.OPEN))


def test_start_buys_the_sells_and_rests_one_order_per_slot(worked_bot):
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.RUNNING
    assert worked_bot.start_price == Decimal("104")
    start = worked_bot.orders.get(kind=Order.Kind.MARKET)
    assert (start.side, start.amount, start.price) == ("buy", Decimal("4.897"), Decimal("104"))
    assert start.fee == Decimal("0.001") * 104 * Decimal("4.897")
    assert open_orders(worked_bot) == [(0, "buy", Decimal("100")), (1, "sell", Decimal("110"))]
    wallet = PaperBalance.objects.get(owner=worked_bot.owner, asset="USDT")
    assert (wallet.free, wallet.locked) == (Decimal("9000"), Decimal("1000"))
    assert worked_bot.events.filter(kind=BotEvent.Kind.STARTED).exists()


def test_a_cycle_reproduces_the_worked_example(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    result = cycle.run_cycle(worked_bot.pk)
    assert (result.candles, result.fills, result.round_trips) == (3, 5, 2)
    worked_bot.refresh_from_db()
    stats = pages.bot_statistics(worked_bot)
    assert stats.total_trades == 2
    assert stats.win_rate == 1
    assert stats.grid_profit == Decimal("51.815157")
    assert stats.base == Decimal("9.794")
    assert stats.quote == Decimal("46.926272")
    assert stats.equity == Decimal("996.944272")
    assert stats.total_profit == Decimal("-3.055728")
    assert round(stats.max_drawdown, 7) == Decimal("0.0521678")
    profits = sorted(Trade.objects.filter(bot=worked_bot).values_list("profit", flat=True))
    assert profits == [Decimal("23.481115"), Decimal("28.334042")]
    # After candle 3 both slots hold base: two sells rest, at 105 and 110.
    assert open_orders(worked_bot) == [(0, "sell", Decimal("105")), (1, "sell", Decimal("110"))]
    filled = worked_bot.orders.filter(status=Order.Status.FILLED, kind=Order.Kind.LIMIT)
    assert filled.count() == 5


def test_a_second_cycle_with_nothing_new_changes_nothing(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    state = Bot.objects.get(pk=worked_bot.pk).engine_state
    assert cycle.run_cycle(worked_bot.pk).candles == 0
    assert Bot.objects.get(pk=worked_bot.pk).engine_state == state


def test_candle_by_candle_cycles_equal_one_big_cycle(worked_bot, make_bot):
    other = make_bot(WORKED_CONFIG)
    services.start_bot(worked_bot)
    services.start_bot(other)
    for row in WORKED_CANDLES[1:]:
        add_candles([row])
        cycle.run_cycle(worked_bot.pk)
    cycle.run_cycle(other.pk)
    a, b = Bot.objects.get(pk=worked_bot.pk), Bot.objects.get(pk=other.pk)
    assert a.engine_state == b.engine_state
    assert a.max_drawdown == b.max_drawdown
    assert open_orders(a) == open_orders(b)


def test_an_idle_cycle_costs_one_query(worked_bot, django_assert_num_queries):
    services.start_bot(worked_bot)
    with django_assert_num_queries(1):
        assert cycle.run_cycle(worked_bot.pk).candles == 0


def test_start_without_enough_paper_balance_says_why_and_changes_nothing(worked_bot):
    PaperBalance.objects.create(owner=worked_bot.owner, asset="USDT", free=Decimal("500"))
    with pytest.raises(BotError, match="paper balance is 500.00 USDT"):
        services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert not worked_bot.orders.exists()
    assert PaperBalance.objects.get(owner=worked_bot.owner, asset="USDT").free == Decimal("500")


def test_an_invalid_grid_is_refused_in_words(worked_market, user):
    config = {**WORKED_CONFIG, "lower_bound": "120"}
    with pytest.raises(BotError, match="lower"):
        services.create_bot(user, symbol="BTC/USDT", config=config)
    assert not Bot.objects.exists()


def test_too_little_capital_says_how_much_the_grid_needs(worked_market, user):
    config = {**WORKED_CONFIG, "capital": "1"}
    with pytest.raises(BotError, match="(needs|must be) at least"):
        services.create_bot(user, symbol="BTC/USDT", config=config)


def test_starting_needs_a_price(db, settings, user):
    from tests.bots.conftest import make_rules

    settings.GRID_MIN_LEVELS = 2
    make_rules(step="0.001")
    bot = services.create_bot(user, symbol="BTC/USDT", config=WORKED_CONFIG)
    with pytest.raises(BotError, match="no price"):
        services.start_bot(bot)


def test_stop_cancels_every_resting_order_and_returns_the_holdings(worked_bot):
    services.start_bot(worked_bot)
    services.stop_bot(worked_bot)
    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert worked_bot.status_reason == "stopped by you"
    assert not worked_bot.orders.filter(status=Order.Status.OPEN).exists()
    usdt = PaperBalance.objects.get(owner=worked_bot.owner, asset="USDT")
    btc = PaperBalance.objects.get(owner=worked_bot.owner, asset="BTC")
    assert usdt.locked == 0
    assert btc.free == Decimal("4.897")
    assert usdt.free == Decimal("9000") + Decimal("1000") - Decimal("104") * Decimal(
        "4.897"
    ) * Decimal("1.001")
    assert worked_bot.events.filter(kind=BotEvent.Kind.STOPPED).exists()


def test_a_restart_in_the_same_market_minute_replaces_that_minutes_snapshot(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    services.stop_bot(worked_bot)
    services.start_bot(worked_bot)  # no new candle since the stop: the same market minute
    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.RUNNING
    last = worked_bot.equity_snapshots.last()
    assert (last.at, last.equity) == (worked_bot.cursor, worked_bot.last_equity)


def test_emergency_stop_stops_all_of_a_users_bots_and_no_one_elses(
    worked_bot, make_bot, other_user
):
    second = make_bot(WORKED_CONFIG)
    foreign = make_bot(WORKED_CONFIG, owner=other_user)
    for bot in (worked_bot, second, foreign):
        services.start_bot(bot)
    assert services.emergency_stop(worked_bot.owner) == 2
    assert not Order.objects.filter(bot__owner=worked_bot.owner, status="open").exists()
    assert Bot.objects.get(pk=foreign.pk).status == Bot.Status.RUNNING


def test_stop_loss_sells_everything_at_the_stop_price_and_stops(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "stop_loss_pct": "5"})  # stop at 95
    services.start_bot(bot)
    add_candles([(60_000, "104", "104", "90", "91")])
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED
    assert "stop-loss" in bot.status_reason
    sale = bot.orders.get(kind=Order.Kind.MARKET, side="sell")
    assert sale.price == Decimal("95.00")
    assert sale.amount == Decimal("4.897") * 2  # the start buy and the buy at 100
    assert not bot.orders.filter(status=Order.Status.OPEN).exists()
    stats = pages.bot_statistics(bot)
    assert stats.base == 0


def test_take_profit_sells_everything_and_stops(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "take_profit": "115"})
    services.start_bot(bot)
    add_candles([(60_000, "104", "120", "104", "118")])
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED
    assert "take-profit" in bot.status_reason
    assert pages.bot_statistics(bot).base == 0


def test_daily_loss_limit_stops_the_bot_with_that_reason(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "max_daily_loss": "20"})
    services.start_bot(bot)
    # 9.794 BTC held after the buy at 100; a close at 98 loses about 40 from the start.
    add_candles([(60_000, "104", "104", "98", "98")])
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED
    assert bot.status_reason.startswith("daily loss limit")
    assert not bot.orders.filter(status=Order.Status.OPEN).exists()


def test_every_decision_is_in_the_event_log(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    kinds = set(worked_bot.events.values_list("kind", flat=True))
    assert {"started", "filled", "round_trip", "placed"} <= kinds
    first_fill = worked_bot.events.filter(kind="filled").order_by("id").first()
    assert first_fill.message.startswith("Bought 4.897 BTC at 100")


def test_statistics_compare_with_holding(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    worked_bot.refresh_from_db()
    stats = pages.bot_statistics(worked_bot)
    # 1000 USDT held as base from 104 to 97.
    assert stats.hodl_profit == Decimal("1000") / 104 * 97 - 1000
    assert stats.profit_vs_hodl == stats.total_profit - stats.hodl_profit
    assert stats.fees_paid > 0
