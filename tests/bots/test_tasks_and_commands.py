"""Huey chains and the watchdog, the feed's wake-ups, management commands and the admin."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from huey.contrib.djhuey import HUEY

from bots import services, tasks
from bots.models import Bot, Order
from market.feed import ClosedCandle, record_candles
from market.models import LatestPrice
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles, at

pytestmark = pytest.mark.django_db


def scheduled_for(bot_id: int) -> list[tuple]:
    return [t.args for t in HUEY.scheduled() if t.args and t.args[0] == bot_id]


def test_a_chain_link_cycles_and_schedules_the_next(worked_bot):
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    token = worked_bot.chain_token
    HUEY.storage.flush_schedule()
    add_candles(WORKED_CANDLES[1:])
    tasks.bot_cycle_task.call_local(worked_bot.pk, token)
    assert Bot.objects.get(pk=worked_bot.pk).engine().fills == 5
    assert scheduled_for(worked_bot.pk) == [(worked_bot.pk, token)]
    assert cache.get(tasks.heartbeat_key(worked_bot.pk)) is not None


def test_a_stale_chain_ends_without_scheduling(worked_bot):
    services.start_bot(worked_bot)
    HUEY.storage.flush_schedule()
    tasks.bot_cycle_task.call_local(worked_bot.pk, "an-old-token")
    assert scheduled_for(worked_bot.pk) == []


def test_a_stopped_bots_chain_ends(worked_bot):
    services.start_bot(worked_bot)
    token = Bot.objects.get(pk=worked_bot.pk).chain_token
    services.stop_bot(worked_bot)
    HUEY.storage.flush_schedule()
    tasks.bot_cycle_task.call_local(worked_bot.pk, token)
    assert scheduled_for(worked_bot.pk) == []


def test_the_watchdog_revives_a_quiet_chain_with_a_new_token(worked_bot, settings):
    services.start_bot(worked_bot)
    old = Bot.objects.get(pk=worked_bot.pk).chain_token
    cache.set(tasks.heartbeat_key(worked_bot.pk), 0, timeout=None)  # last beat long ago
    assert tasks.revive_quiet_chains.call_local() == 1
    assert Bot.objects.get(pk=worked_bot.pk).chain_token != old
    # A beating chain is left alone.
    assert tasks.revive_quiet_chains.call_local() == 0


def test_the_feed_stores_candles_records_the_price_and_wakes_crossed_bots(worked_bot):
    services.start_bot(worked_bot)
    _, o, h, low, c = WORKED_CANDLES[1]
    record_candles(
        [
            ClosedCandle(
                "binance", "BTC/USDT", at(60_000), *map(Decimal, (o, h, low, c)), Decimal(1)
            )
        ],
        replayed=True,
    )
    price = LatestPrice.objects.get(symbol="BTC/USDT")
    assert (price.price, price.replayed) == (Decimal("105"), True)
    # Candle 1 crossed the buy at 100 and the sell at 105: the woken bot walked it already.
    assert Bot.objects.get(pk=worked_bot.pk).engine().fills == 2


def test_a_quiet_candle_wakes_no_bot(worked_bot):
    services.start_bot(worked_bot)
    record_candles(
        [ClosedCandle("binance", "BTC/USDT", at(60_000), *map(Decimal, ("104",) * 4), Decimal(1))]
    )
    bot = Bot.objects.get(pk=worked_bot.pk)
    assert bot.cursor == at(0)  # not cycled: nothing crossed


def test_bots_command_lists_starts_and_stops(worked_bot):
    out = StringIO()
    call_command("bots", "start", str(worked_bot.pk), stdout=out)
    assert "running" in out.getvalue()
    call_command("bots", "list", "--user", worked_bot.owner.email, stdout=out)
    assert "BTC/USDT" in out.getvalue()
    call_command("bots", "stop", str(worked_bot.pk), stdout=out)
    assert Bot.objects.get(pk=worked_bot.pk).status == Bot.Status.STOPPED
    with pytest.raises(CommandError, match="no bot 999999"):
        call_command("bots", "stop", "999999")


def test_starting_from_the_command_line_reports_why_it_cannot(worked_market, make_bot):
    from bots.models import PaperBalance

    bot = make_bot(WORKED_CONFIG)
    PaperBalance.objects.create(owner=bot.owner, asset="USDT", free=Decimal("10"))
    with pytest.raises(CommandError, match="paper balance"):
        call_command("bots", "start", str(bot.pk))


def test_emergency_stop_command(worked_bot, make_bot):
    second = make_bot(WORKED_CONFIG)
    services.start_bot(worked_bot)
    services.start_bot(second)
    out = StringIO()
    call_command("emergency_stop", "--user", worked_bot.owner.email, stdout=out)
    assert "2 bot(s) stopped" in out.getvalue()
    assert not Order.objects.filter(status="open").exists()
    with pytest.raises(CommandError, match="no user"):
        call_command("emergency_stop", "--user", "nobody@example.com")


def test_backtest_command_prints_the_spec_statistics_as_json(tmp_path):
    csv = tmp_path / "worked.csv"
    csv.write_text("\n".join(",".join(r) if isinstance(r[0], str) else ",".join(map(str, r))
                             for r in WORKED_CANDLES[1:]))  # fmt: skip
    out = StringIO()
    call_command(
        "backtest", "--csv", str(csv), "--lower", "100", "--upper", "110", "--levels", "3",
        "--capital", "1000", "--step", "0.001", "--json", stdout=out,
    )  # fmt: skip
    result = json.loads(out.getvalue())
    assert result["fills"] == 5
    assert result["total_trades"] == 2
    assert result["grid_profit"] == "51.815157"
    assert result["final_equity"] == "996.944272"
    assert result["levels"] == ["100", "105", "110"]
    for key in ("order_amount", "win_rate", "total_profit", "max_drawdown", "stopped"):
        assert key in result


def test_backtest_command_on_the_bundled_sample_and_its_plot(tmp_path):
    from market.services import load_bundled_sample

    load_bundled_sample()
    out = StringIO()
    png = tmp_path / "bt.png"
    call_command(
        "backtest", "--symbol", "BTC/USDT", "--lower", "100000", "--upper", "110000",
        "--levels", "30", "--capital", "10000", "--plot", str(png), stdout=out,
    )  # fmt: skip
    assert "Round trips" in out.getvalue() or "round trips" in out.getvalue()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_command_explains_bad_input():
    with pytest.raises(CommandError, match="exactly one of"):
        call_command("backtest", "--lower", "1", "--upper", "2", "--levels", "3", "--capital", "9")
    with pytest.raises(CommandError, match="upper price must be above"):
        call_command(
            "backtest", "--csv", "x.csv", "--lower", "110", "--upper", "100", "--levels", "3",
            "--capital", "1000",
        )  # fmt: skip


def test_admin_lists_bots_and_stops_them_with_an_action(admin_client, worked_bot):
    services.start_bot(worked_bot)
    assert admin_client.get("/admin/bots/bot/?status__exact=running").status_code == 200
    assert admin_client.get(f"/admin/bots/bot/{worked_bot.pk}/change/").status_code == 200
    for page in ("order", "trade", "botevent", "paperbalance", "equitysnapshot"):
        assert admin_client.get(f"/admin/bots/{page}/").status_code == 200, page
    response = admin_client.post(
        "/admin/bots/bot/", {"action": "stop_bots", "_selected_action": [worked_bot.pk]}
    )
    assert response.status_code == 302
    assert Bot.objects.get(pk=worked_bot.pk).status == Bot.Status.STOPPED
