"""Stop: keep the coins or sell them at market (Binance's choice, issue 14), for paper bots.

The worked example (GRID_SPEC.md) starts at 104 with 4.897 BTC bought at market (fee 0.1 %):
the bot holds 490.202712 USDT and 4.897 BTC. Live bots: tests/bots/test_live_trading.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from bots import pages, services
from bots.models import Bot, BotEvent, Order, PaperBalance
from market.models import MarketRules

pytestmark = pytest.mark.django_db

# 1000 - 104 * 4.897 - 0.001 * 104 * 4.897
QUOTE_AFTER_START = Decimal("490.202712")
START_FEE = Decimal("0.509288")  # 0.001 * 104 * 4.897
SALE = Decimal("509.288")  # 104 * 4.897
SALE_FEE = Decimal("0.509288")


def wallet(bot: Bot, asset: str) -> tuple[Decimal, Decimal]:
    row = PaperBalance.objects.filter(owner=bot.owner, asset=asset).first()
    return (row.free, row.locked) if row else (Decimal(0), Decimal(0))


def test_stop_and_sell_sells_the_coins_at_market_with_the_fee_into_the_quote_wallet(worked_bot):
    services.start_bot(worked_bot)

    services.stop_bot(worked_bot, sell=True)

    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    sale = worked_bot.orders.get(kind=Order.Kind.MARKET, side="sell")
    assert (sale.amount, sale.price, sale.fee, sale.status) == (
        Decimal("4.897"), Decimal("104"), SALE_FEE, Order.Status.FILLED,
    )  # fmt: skip
    assert sale.client_order_id.endswith("-stop")
    quote = QUOTE_AFTER_START + SALE - SALE_FEE
    assert quote == Decimal("998.981424")
    assert wallet(worked_bot, "USDT") == (Decimal(9000) + quote, Decimal(0))
    assert wallet(worked_bot, "BTC") == (Decimal(0), Decimal(0))  # nothing moved into BTC
    sold = worked_bot.events.get(kind=BotEvent.Kind.FILLED, message__startswith="Sold")
    assert "Sold 4.897 BTC at 104 at market for 509.288 USDT" in sold.message


def test_stop_and_sell_counts_the_sale_in_the_statistics(worked_bot):
    services.start_bot(worked_bot)

    services.stop_bot(worked_bot, sell=True)

    worked_bot.refresh_from_db()
    stats = pages.bot_statistics(worked_bot)
    assert stats.base == 0
    assert stats.quote == Decimal("998.981424")
    assert stats.fees_paid == START_FEE + SALE_FEE
    assert stats.equity == Decimal("998.981424")
    assert stats.total_profit == Decimal("-1.018576")
    assert worked_bot.last_equity == Decimal("998.981424")
    assert stats.open_orders == 0


def test_stop_and_keep_returns_the_coins_to_the_wallet_unsold(worked_bot):
    services.start_bot(worked_bot)

    services.stop_bot(worked_bot, sell=False)

    assert not worked_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").exists()
    assert wallet(worked_bot, "BTC") == (Decimal("4.897"), Decimal(0))
    assert wallet(worked_bot, "USDT") == (Decimal(9000) + QUOTE_AFTER_START, Decimal(0))


def test_coins_worth_less_than_the_market_minimum_are_kept_and_said(worked_bot):
    services.start_bot(worked_bot)
    MarketRules.objects.filter(symbol="BTC/USDT").update(min_notional=Decimal(600))

    services.stop_bot(worked_bot, sell=True)

    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert not worked_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").exists()
    assert wallet(worked_bot, "BTC") == (Decimal("4.897"), Decimal(0))
    kept = worked_bot.events.get(kind=BotEvent.Kind.SKIPPED)
    assert "kept 4.897 BTC (worth 509.29 USDT)" in kept.message
    assert "minimum order of 600 USDT" in kept.message


def test_a_bot_stopped_by_its_stop_loss_is_not_sold_again(worked_market, make_bot):
    from tests.bots.conftest import WORKED_CONFIG, add_candles

    bot = make_bot({**WORKED_CONFIG, "stop_loss_pct": "5"})
    services.start_bot(bot)
    add_candles([(60_000, "104", "104", "90", "91")])
    from bots import cycle

    cycle.run_cycle(bot.pk)
    services.stop_bot(bot, sell=True)  # already stopped and sold: nothing more

    assert bot.orders.filter(kind=Order.Kind.MARKET, side="sell").count() == 1


def test_bots_stop_sell_on_the_command_line_sells_the_coins(worked_bot, capsys):
    services.start_bot(worked_bot)

    call_command("bots", "stop", str(worked_bot.pk), "--sell")

    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert worked_bot.status_reason == "stopped by an operator"
    assert worked_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").count() == 1
    assert wallet(worked_bot, "BTC") == (Decimal(0), Decimal(0))
    assert "stopped" in capsys.readouterr().out


def test_bots_stop_without_sell_on_the_command_line_keeps_the_coins(worked_bot):
    services.start_bot(worked_bot)

    call_command("bots", "stop", str(worked_bot.pk))

    assert not worked_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").exists()
    assert wallet(worked_bot, "BTC") == (Decimal("4.897"), Decimal(0))
