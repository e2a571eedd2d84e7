"""A new grid on a running paper bot (issue 14): history kept, coins carried, settings kept.

The worked example (GRID_SPEC.md) started at 104: 490.202712 USDT and 4.897 BTC (slot 1's
sell at 110), a buy resting at 100; the wallet 9000 free, 1000 locked. Its value at 104 is
490.202712 + 4.897 * 104 = 999.490712 (the start buy's fee, 0.509288, is its loss so far).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots import cycle, ledger, pages, services
from bots.errors import BotError, ConfigError
from bots.models import Bot, BotEvent, Order, PaperBalance
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles

pytestmark = pytest.mark.django_db

WIDER = {"lower_bound": "95", "upper_bound": "115", "grid_levels": "5"}


def wallet(bot: Bot, asset: str = "USDT") -> tuple[Decimal, Decimal]:
    row = PaperBalance.objects.filter(owner=bot.owner, asset=asset).first()
    return (row.free, row.locked) if row else (Decimal(0), Decimal(0))


def open_orders(bot: Bot) -> list[tuple[int | None, str, Decimal, Decimal]]:
    return sorted(
        (o.slot, o.side, o.price, o.amount) for o in bot.orders.filter(status=Order.Status.OPEN)
    )


@pytest.fixture
def running(worked_bot: Bot) -> Bot:
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    return worked_bot


def test_a_new_grid_buys_only_the_coins_missing_and_keeps_the_bot_running(running):
    started_at, key = running.started_at, running.key

    services.regrid_bot(running, WIDER)

    running.refresh_from_db()
    assert running.is_running and running.started_at == started_at
    # Lines 95..115 at 104: two buys (95, 100), two sells (110, 115), q = 2.478.
    q = Decimal("2.478")
    assert open_orders(running) == [
        (0, "buy", Decimal(95), q), (1, "buy", Decimal(100), q),
        (2, "sell", Decimal(110), q), (3, "sell", Decimal(115), q),
    ]  # fmt: skip
    old = running.orders.filter(client_order_id__startswith=f"{key}-", status="cancelled")
    assert old.count() == 2 and {o.reason for o in old} == {"replaced by a new grid"}
    # 4.956 BTC needed, 4.897 held: 0.059 bought at 104, fee 0.001 * 104 * 0.059.
    diff = running.orders.get(kind=Order.Kind.MARKET, client_order_id__endswith="-regrid")
    assert (diff.side, diff.amount, diff.price, diff.fee) == (
        "buy", Decimal("0.059"), Decimal(104), Decimal("0.006136"),
    )  # fmt: skip
    engine = running.engine()
    assert engine.base == Decimal("4.956")
    assert engine.quote == Decimal("484.569864")  # 1000 - 4.956 * 104 - 0.006136
    # The old grid had lost its start fee: the wallet makes the 1000 whole.
    assert wallet(running) == (Decimal("8999.490712"), Decimal(1000))
    stats = pages.bot_statistics(running)
    assert stats.fees_paid == Decimal("0.515424")  # 0.509288 + 0.006136, nothing paid twice
    assert running.total_profit(stats.equity) == Decimal("-0.515424")


def test_a_new_grid_sells_only_the_coins_beyond_its_needs_and_settles_the_wallet(running):
    services.regrid_bot(running, {"capital": "500"})

    running.refresh_from_db()
    # 500 at 104 on 100..110: q = 2.448, one sell; 4.897 - 2.448 = 2.449 sold at 104.
    diff = running.orders.get(kind=Order.Kind.MARKET, client_order_id__endswith="-regrid")
    assert (diff.side, diff.amount, diff.fee) == ("sell", Decimal("2.449"), Decimal("0.254696"))
    engine = running.engine()
    assert (engine.base, engine.quote) == (Decimal("2.448"), Decimal("245.153304"))
    # 999.490712 held, 500 kept in the grid: 499.490712 back to the wallet, 500 locked.
    assert wallet(running) == (Decimal("9499.490712"), Decimal(500))
    assert running.capital == Decimal(500)
    assert wallet(running, "BTC") == (Decimal(0), Decimal(0))


def test_settings_the_new_grid_does_not_set_are_kept_and_said(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "take_profit": "115", "stop_loss_pct": "5",
                    "max_daily_loss": "20", "spacing": "geometric"})  # fmt: skip
    services.start_bot(bot)

    notes = services.regrid_bot(bot, {"lower_bound": "98", "upper_bound": "112"})

    bot.refresh_from_db()
    assert bot.config["take_profit"] == "115"
    assert bot.config["stop_loss_pct"] == "5"
    assert bot.config["max_daily_loss"] == "20"
    assert bot.config["spacing"] == "geometric"
    assert bot.engine().config.take_profit == Decimal(115)
    for note in ("range 100–110 changed to 98–112", "take profit 115 kept",
                 "stop-loss 5% below the lower price kept", "daily loss limit 20 USDT kept",
                 "spacing geometric kept", "capital 1000 USDT kept"):  # fmt: skip
        assert note in notes
    logged = set(bot.events.filter(kind=BotEvent.Kind.REGRID).values_list("message", flat=True))
    assert "Take profit 115 kept." in logged
    assert any(m.startswith("New grid at 104: 3 lines from 98 to 112") for m in logged)


def test_a_setting_given_again_unchanged_is_said_kept(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "max_daily_loss": "20", "stop_loss_pct": "5"})
    services.start_bot(bot)

    notes = services.regrid_bot(bot, {"max_daily_loss": "20", "stop_loss_pct": "0"})

    assert "daily loss limit 20 USDT kept" in notes
    assert "stop-loss 5% below the lower price changed to none" in notes
    bot.refresh_from_db()
    assert bot.config["stop_loss_pct"] == "0" and bot.engine().stop_price is None


def test_a_kept_take_profit_the_new_range_passes_is_dropped_and_said(worked_market, make_bot):
    bot = make_bot({**WORKED_CONFIG, "take_profit": "115"})
    services.start_bot(bot)

    notes = services.regrid_bot(bot, {"upper_bound": "120"})

    bot.refresh_from_db()
    assert bot.config["take_profit"] == ""
    assert "take profit 115 dropped: it is not above the new upper price 120" in notes
    assert "take profit 115 kept" not in notes


def test_history_and_statistics_survive_a_new_grid(running):
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(running.pk)
    running.refresh_from_db()
    before = pages.bot_statistics(running)
    started, first_market = running.started_at, running.market_started_at
    events, trades = running.events.count(), running.trades.count()
    snapshots = running.equity_snapshots.count()

    notes = services.regrid_bot(running, WIDER)

    running.refresh_from_db()
    after = pages.bot_statistics(running)
    assert (after.total_trades, after.win_rate, after.grid_profit) == (
        2, 1, Decimal("51.815157"),
    )  # fmt: skip
    assert running.trades.count() == trades == 2
    assert running.events.count() > events
    assert running.equity_snapshots.count() >= snapshots
    assert (running.started_at, running.market_started_at) == (started, first_market)
    assert after.max_drawdown == before.max_drawdown
    assert running.profit_before == before.total_profit == Decimal("-3.055728")
    assert "statistics kept: 2 round trips, grid profit 51.82 USDT" in notes


def test_the_new_grid_trades_on_the_next_cycle(running):
    services.regrid_bot(running, WIDER)
    add_candles([(60_000, "104", "104", "99", "101")])  # through the buy at 100

    result = cycle.run_cycle(running.pk)

    running.refresh_from_db()
    assert result.fills == 1
    assert (1, "sell", Decimal(105), Decimal("2.478")) in open_orders(running)


def test_a_failed_new_grid_leaves_the_old_grid_running(running, monkeypatch):
    orders, state = open_orders(running), running.engine_state
    funds = wallet(running)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away halfway")

    monkeypatch.setattr(ledger, "open_order", broken)
    with pytest.raises(RuntimeError):
        services.regrid_bot(running, WIDER)

    running.refresh_from_db()
    assert running.is_running and running.engine_state == state
    assert open_orders(running) == orders
    assert wallet(running) == funds
    assert not running.events.filter(kind=BotEvent.Kind.REGRID).exists()


def test_an_impossible_new_grid_is_refused_in_words_and_changes_nothing(running):
    orders = open_orders(running)

    with pytest.raises(ConfigError, match="capital"):
        services.regrid_bot(running, {"capital": "1"})

    running.refresh_from_db()
    assert open_orders(running) == orders and running.capital == Decimal(1000)


def test_a_new_grid_needing_more_than_the_wallet_has_is_refused(running):
    PaperBalance.objects.filter(owner=running.owner, asset="USDT").update(free=Decimal(10))

    with pytest.raises(BotError, match="needs 1,000.51 USDT from your paper wallet"):
        services.regrid_bot(running, {"capital": "2000"})

    running.refresh_from_db()
    assert running.capital == Decimal(1000)


def test_a_stopped_bot_is_not_regridded(worked_bot):
    with pytest.raises(BotError, match="not running: change its grid with Edit"):
        services.regrid_bot(worked_bot, WIDER)


def test_a_live_bot_is_refused_stop_it_first(worked_market, make_bot, user):
    from accounts.models import ExchangeCredential

    cred = ExchangeCredential(owner=user, label="main")
    cred.set_keys("key-0123456789abcdef", "secret-0123456789abcdef")
    cred.save()
    bot = make_bot(WORKED_CONFIG, mode=Bot.Mode.LIVE, credential=cred)
    Bot.objects.filter(pk=bot.pk).update(status=Bot.Status.RUNNING)
    bot.refresh_from_db()

    with pytest.raises(BotError, match="trading live: stop it first"):
        services.regrid_bot(bot, WIDER)
