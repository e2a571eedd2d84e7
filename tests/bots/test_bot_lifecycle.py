"""Bots to manage (issue 14): delete (stopped first, history removed) and archive (stopped
bots only, listed apart, not started until taken out). Live deletes: test_live_trading.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots import services
from bots.errors import BotError
from bots.models import BacktestRun, Bot, BotEvent, EquitySnapshot, Order, PaperBalance
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles

pytestmark = pytest.mark.django_db


def test_delete_stops_a_running_paper_bot_returns_its_holdings_and_removes_its_history(
    worked_bot,
):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    from bots import cycle

    cycle.run_cycle(worked_bot.pk)
    worked_bot.refresh_from_db()
    quote, base = worked_bot.engine().quote, worked_bot.engine().base
    assert worked_bot.trades.exists()
    run = BacktestRun.objects.create(
        owner=worked_bot.owner, bot=worked_bot, symbol="BTC/USDT",
        start="2025-01-01T00:00Z", end="2025-01-02T00:00Z",
    )  # fmt: skip

    services.delete_bot(worked_bot)

    assert not Bot.objects.filter(pk=worked_bot.pk).exists()
    for model in (Order, BotEvent, EquitySnapshot):
        assert not model.objects.filter(bot_id=worked_bot.pk).exists()
    usdt = PaperBalance.objects.get(owner=worked_bot.owner, asset="USDT")
    btc = PaperBalance.objects.get(owner=worked_bot.owner, asset="BTC")
    assert (usdt.free, usdt.locked) == (Decimal(9000) + quote, Decimal(0))
    assert btc.free == base == Decimal("9.794")
    run.refresh_from_db()
    assert run.bot is None  # a backtest the bot was made from stays


def test_delete_with_sell_sells_the_coins_first(worked_bot):
    services.start_bot(worked_bot)

    services.delete_bot(worked_bot, sell=True)

    assert not Bot.objects.filter(pk=worked_bot.pk).exists()
    assert not PaperBalance.objects.filter(owner=worked_bot.owner, asset="BTC", free__gt=0)
    usdt = PaperBalance.objects.get(owner=worked_bot.owner, asset="USDT")
    assert usdt.free == Decimal(9000) + Decimal("998.981424")


def test_delete_a_stopped_bot_leaves_the_wallet_as_the_stop_left_it(worked_bot):
    services.start_bot(worked_bot)
    services.stop_bot(worked_bot)
    before = list(PaperBalance.objects.values_list("asset", "free", "locked"))

    services.delete_bot(worked_bot)

    assert not Bot.objects.filter(pk=worked_bot.pk).exists()
    assert list(PaperBalance.objects.values_list("asset", "free", "locked")) == before


def test_archive_refuses_a_running_bot(worked_bot):
    services.start_bot(worked_bot)

    with pytest.raises(BotError, match="Stop .* before archiving it"):
        services.archive_bot(worked_bot)

    worked_bot.refresh_from_db()
    assert worked_bot.archived_at is None


def test_an_archived_bot_cannot_start_until_unarchived(worked_bot):
    services.archive_bot(worked_bot)
    assert worked_bot.is_archived

    with pytest.raises(BotError, match="archived: take it out of the archive to start it"):
        services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert not PaperBalance.objects.filter(owner=worked_bot.owner, locked__gt=0).exists()

    services.archive_bot(worked_bot, archived=False)
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    assert worked_bot.is_running and worked_bot.archived_at is None


def test_active_and_archived_list_bots_apart(worked_bot, make_bot):
    kept = make_bot(WORKED_CONFIG, name="kept")
    services.archive_bot(worked_bot)

    owned = Bot.objects.owned_by(worked_bot.owner)
    assert list(owned.active()) == [kept]
    assert list(owned.archived()) == [worked_bot]


def test_archiving_twice_keeps_the_first_time(worked_bot):
    services.archive_bot(worked_bot)
    first = Bot.objects.get(pk=worked_bot.pk).archived_at

    services.archive_bot(worked_bot)

    assert Bot.objects.get(pk=worked_bot.pk).archived_at == first


def test_operators_can_stop_and_sell_and_list_archived_bots_in_the_admin(admin_client, worked_bot):
    services.start_bot(worked_bot)
    action = {"action": "stop_and_sell_bots", "_selected_action": [worked_bot.pk]}

    assert admin_client.post("/admin/bots/bot/", action).status_code == 302

    worked_bot.refresh_from_db()
    assert worked_bot.status == Bot.Status.STOPPED
    assert worked_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").count() == 1
    services.archive_bot(worked_bot)
    archived = admin_client.get("/admin/bots/bot/?archived_at__isempty=0")
    assert archived.status_code == 200 and str(worked_bot) in archived.text
    assert str(worked_bot) not in admin_client.get("/admin/bots/bot/?archived_at__isempty=1").text
