"""A restart neither buys again nor starts the statistics again (issue 14).

The worked example (GRID_SPEC.md) at 104: capital 1000, 4.897 BTC bought at market for the
sell (fee 0.1 %: 0.509288), 490.202712 USDT left. A stop that keeps the coins puts them in the
paper wallet; the next start uses them (at the price now, no fee) and buys only what is missing.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots import cycle, pages, services
from bots.models import Bot, BotEvent, Order, PaperBalance
from tests.bots.conftest import WORKED_CANDLES, add_candles

pytestmark = pytest.mark.django_db


def wallet(bot: Bot, asset: str) -> tuple[Decimal, Decimal]:
    row = PaperBalance.objects.filter(owner=bot.owner, asset=asset).first()
    return (row.free, row.locked) if row else (Decimal(0), Decimal(0))


def start_buys(bot: Bot) -> list[Decimal]:
    return list(
        bot.orders.filter(kind=Order.Kind.MARKET, side="buy")
        .order_by("pk")
        .values_list("amount", flat=True)
    )


def test_a_restart_uses_the_coins_the_stop_kept_and_pays_no_second_fee(worked_bot):
    services.start_bot(worked_bot)
    services.stop_bot(worked_bot)  # keeps 4.897 BTC in the wallet
    assert wallet(worked_bot, "BTC") == (Decimal("4.897"), Decimal(0))

    services.start_bot(worked_bot)

    worked_bot.refresh_from_db()
    assert start_buys(worked_bot) == [Decimal("4.897")]  # the first start's, no second
    assert wallet(worked_bot, "BTC") == (Decimal(0), Decimal(0))
    # The grid's 1000: 4.897 BTC at 104 (509.288) from the wallet, 490.712 USDT paid in.
    assert wallet(worked_bot, "USDT") == (Decimal("8999.490712"), Decimal(1000))
    engine = worked_bot.engine()
    assert (engine.base, engine.quote) == (Decimal("4.897"), Decimal("490.712"))
    started = worked_bot.events.filter(kind=BotEvent.Kind.STARTED).first()
    assert "used 4.897 BTC from your paper wallet (counted at 104, no fee)" in started.message
    stats = pages.bot_statistics(worked_bot)
    assert stats.fees_paid == Decimal("0.509288")  # one start fee, ever
    assert worked_bot.total_profit(stats.equity) == Decimal("-0.509288")


def test_each_stop_and_start_leaves_the_paper_wallet_where_it_was(worked_bot):
    """Issue 14: each stop/start moved more USDT into BTC in the paper wallet."""
    services.start_bot(worked_bot)
    services.stop_bot(worked_bot)
    after_first = (wallet(worked_bot, "USDT"), wallet(worked_bot, "BTC"))

    for _ in range(3):
        services.start_bot(worked_bot)
        services.stop_bot(worked_bot)

    assert (wallet(worked_bot, "USDT"), wallet(worked_bot, "BTC")) == after_first
    assert after_first == ((Decimal("9490.202712"), Decimal(0)), (Decimal("4.897"), Decimal(0)))


def test_a_restart_buys_only_the_coins_missing(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])  # ends at 97 holding 9.794 BTC and 46.926272 USDT
    cycle.run_cycle(worked_bot.pk)
    services.stop_bot(worked_bot)
    assert wallet(worked_bot, "USDT") == (Decimal("9046.926272"), Decimal(0))

    services.start_bot(worked_bot)  # at 97 both slots hold base: q = 5.149, 10.298 BTC

    worked_bot.refresh_from_db()
    assert start_buys(worked_bot) == [Decimal("4.897"), Decimal("0.504")]  # 10.298 - 9.794
    buy = worked_bot.orders.filter(kind=Order.Kind.MARKET, side="buy").order_by("pk").last()
    assert (buy.price, buy.fee) == (Decimal("97"), Decimal("0.048888"))  # 0.001 * 97 * 0.504
    # 1000 - 9.794 * 97 paid in; 1000 - 10.298 * 97 - 0.048888 left in the grid.
    assert wallet(worked_bot, "USDT") == (Decimal("8996.944272"), Decimal(1000))
    assert wallet(worked_bot, "BTC") == (Decimal(0), Decimal(0))
    assert worked_bot.engine().quote == Decimal("1.045112")


def test_a_restart_buys_at_least_the_market_minimum(worked_bot):
    services.start_bot(worked_bot)
    services.stop_bot(worked_bot)
    PaperBalance.objects.filter(owner=worked_bot.owner, asset="BTC").update(free=Decimal("4.87"))

    services.start_bot(worked_bot)  # 0.027 BTC missing (2.81 USDT): below the minimum of 5

    worked_bot.refresh_from_db()
    # The smallest buy worth 5 USDT at 104 is 0.049 BTC; 4.848 BTC come from the wallet.
    assert start_buys(worked_bot)[-1] == Decimal("0.049")
    assert wallet(worked_bot, "BTC") == (Decimal("0.022"), Decimal(0))


def test_statistics_survive_a_stop_and_a_start(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    worked_bot.refresh_from_db()
    before = pages.bot_statistics(worked_bot)
    first_start = worked_bot.market_started_at
    assert (before.total_trades, before.grid_profit) == (2, Decimal("51.815157"))
    assert before.total_profit == Decimal("-3.055728")
    services.stop_bot(worked_bot)
    worked_bot.refresh_from_db()

    services.start_bot(worked_bot)

    worked_bot.refresh_from_db()
    after = pages.bot_statistics(worked_bot)
    assert (after.total_trades, after.win_rate) == (2, 1)
    assert after.grid_profit == Decimal("51.815157")
    assert after.fees_paid == before.fees_paid + Decimal("0.048888")
    assert after.max_drawdown == before.max_drawdown
    assert worked_bot.market_started_at == first_start
    assert worked_bot.trades.count() == 2
    assert worked_bot.profit_before == Decimal("-3.055728")
    # 1.045112 + 10.298 * 97 = 999.951112: the restart's one fee on top of the first run's loss.
    assert worked_bot.total_profit(after.equity) == Decimal("-3.104616")


def test_bots_list_shows_the_profit_of_every_run(worked_bot):
    from io import StringIO

    from django.core.management import call_command

    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    services.stop_bot(worked_bot)
    services.start_bot(worked_bot)

    out = StringIO()
    call_command("bots", "list", stdout=out)

    row = out.getvalue().splitlines()[1].split()
    assert "-3.10" in row  # -3.055728 before the restart, -0.048888 since
