"""Trigger price and trailing on live bots (issue 17), against the fake Binance through the real
ccxt client and gateway: a waiting bot places nothing on the exchange; on its trigger it buys
once at market and lays its grid there; a shift cancels exactly one order on the exchange and
places exactly one, every other order keeping its client id; a crash anywhere in a trigger
never buys twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from bots import cycle, ledger, live_trading, starting
from bots.grid.params import SlotState
from bots.models import Bot, BotEvent, ExchangeFillRecord, Order, SendAttempt
from tests.bots import test_live_trading as live
from tests.bots.test_live_trading import CONFIG, P0, db_resting, resting, set_price
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

# The live tests' exchange, market, keys and committed start (fixtures, found here by name).
fake, market, keys, start_live = live.fake, live.market, live.keys, live.start_live

TRIGGER = "98000"


@pytest.fixture
def trigger_bot(market, make_bot, keys, fake) -> Bot:
    return make_bot({**CONFIG, "trigger_price": TRIGGER}, mode=Bot.Mode.LIVE, credential=keys)


@pytest.fixture
def trailing_bot(market, make_bot, keys, fake) -> Bot:
    return make_bot({**CONFIG, "trailing_up": "true"}, mode=Bot.Mode.LIVE, credential=keys)


def market_buys(fake: FakeBinance) -> list[Any]:
    return [o for o in fake.orders("BTCUSDT") if o.type == "MARKET" and o.side == "BUY"]


def book(fake: FakeBinance) -> dict[str, str]:
    """Every order the exchange ever took for the pair, by client id, with its status."""
    return {o.client_id: o.status for o in fake.orders("BTCUSDT")}


def open_rows(bot: Bot) -> set[tuple[str, str, Decimal]]:
    return {(o.client_order_id, o.side, o.price) for o in bot.orders.filter(status="open")}


def coins(fake: FakeBinance, asset: str) -> Decimal:
    free, locked = fake.balance(asset)
    return free + locked


def assert_books_are_the_accounts(bot: Bot, fake: FakeBinance) -> None:
    """The grid's coins are the account's (it held none before), its quote the USDT the
    trades left of its capital (the account held 5000)."""
    bot.refresh_from_db()
    engine = bot.engine()
    assert engine.base + engine.dust == coins(fake, "BTC")
    assert engine.quote == coins(fake, "USDT") - Decimal(4000)


def test_a_live_bot_with_a_trigger_waits_then_buys_once_and_lays_its_grid_there(
    trigger_bot, fake, start_live
):
    bot = trigger_bot
    start_live(bot)
    bot.refresh_from_db()
    assert bot.is_running and bot.engine().waiting
    assert fake.orders("BTCUSDT") == []  # no start buy, no grid
    started = bot.events.get(kind=BotEvent.Kind.STARTED).message
    assert "waits for the price to fall to 98000" in started and "0 buys" not in started
    assert (bot.next_buy_price, bot.next_sell_price) == (Decimal(TRIGGER), None)

    for price in ("99500", "98000.01"):  # near, not there
        set_price(fake, price)
        cycle.run_cycle(bot.pk)
    assert fake.orders("BTCUSDT") == [] and not bot.orders.exists()
    assert bot.engine().waiting

    set_price(fake, "97950")
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    engine = bot.engine()
    assert not engine.waiting
    buys = market_buys(fake)
    assert len(buys) == 1 and buys[0].client_id == live_trading.trigger_buy_id(bot)
    assert buys[0].qty == sum(s.amount for s in engine.slots if s.state == SlotState.BASE)
    start = bot.orders.get(kind=Order.Kind.MARKET)
    assert (start.client_order_id, start.status) == (buys[0].client_id, "filled")
    assert start.price == Decimal("97950")  # what it really cost, not the trigger price
    assert ExchangeFillRecord.objects.filter(order=start).count() == 1
    # The grid laid out at the trigger rests on the exchange exactly as the database says.
    assert resting(fake) == db_resting(bot)
    assert len(resting(fake)) == len(engine.slots) == 9
    assert bot.events.filter(kind=BotEvent.Kind.TRIGGERED).count() == 1
    assert_books_are_the_accounts(bot, fake)

    for price in ("97900", "98100"):  # later cycles never buy again
        set_price(fake, price)
        cycle.run_cycle(bot.pk)
    assert len(market_buys(fake)) == 1
    assert resting(fake) == db_resting(bot)


def test_a_live_start_with_a_trigger_says_what_it_waits_for_before_it_is_confirmed(
    trigger_bot,
):
    summary = starting.start_summary(trigger_bot)

    assert summary.trigger == Decimal(TRIGGER) and summary.trigger_way == "fall"
    assert summary.orders == 9 and summary.buy_amount > 0  # the grid it lays out there
    start = next(line for line in summary.text() if line.startswith("Start:"))
    assert start.startswith("Start: waits for the price to fall to 98,000 USDT")
    assert "buying and placing nothing until then" in start


def test_a_live_shift_up_cancels_one_order_and_places_one_leaving_the_rest_alone(
    trailing_bot, fake, start_live
):
    bot = trailing_bot
    start_live(bot)
    set_price(fake, "105500")  # every sell fills; their slots rest buys one line down
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    engine = bot.engine()
    assert all(s.state == SlotState.QUOTE for s in engine.slots) and engine.shifts_up == 0
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9
    top, width = engine.lines[-1], engine.lines[-1] - engine.lines[-2]

    for shifts in (1, 2):
        before, rows_before = book(fake), open_rows(bot)
        bottom = bot.orders.get(status="open", price=bot.engine().lines[0])
        set_price(fake, str(top + shifts * width + 50))  # past the next line up
        cycle.run_cycle(bot.pk)

        bot.refresh_from_db()
        after = book(fake)
        new = set(after) - set(before)
        cancelled = {c for c, status in after.items() if status != before.get(c, status)}
        assert cancelled == {bottom.client_order_id}  # exactly one cancel: the bottom buy
        assert after[bottom.client_order_id] == "CANCELED"
        assert len(new) == 1  # exactly one new order: the new top slot's buy
        engine = bot.engine()
        assert engine.shifts_up == shifts
        placed = bot.orders.get(client_order_id=new.pop())
        assert (placed.side, placed.price) == ("buy", engine.lines[-2])
        assert placed.slot == engine.slots[-1].id == 8 + shifts  # a new slot id, none renumbered
        # Every other order stays as it was, under the same client id.
        kept = rows_before - {(bottom.client_order_id, "buy", bottom.price)}
        assert open_rows(bot) == kept | {(placed.client_order_id, "buy", placed.price)}
        assert resting(fake) == db_resting(bot)
        bottom.refresh_from_db()
        assert (bottom.status, bottom.reason) == ("cancelled", "trailing")

    assert bot.events.filter(kind=BotEvent.Kind.SHIFT).count() == 2
    calm = book(fake)
    cycle.run_cycle(bot.pk)  # the same price again: nothing moves
    assert book(fake) == calm and bot.engine().shifts_up == 2
    assert_books_are_the_accounts(bot, fake)


def test_a_crash_between_writing_down_and_sending_the_trigger_buy_never_buys_twice(
    trigger_bot, fake, start_live, monkeypatch
):
    bot = trigger_bot
    start_live(bot)
    bot.refresh_from_db()
    client_id = live_trading.trigger_buy_id(bot)
    real = ledger.send_attempt

    def written_then_dead(cid: str) -> Any:
        first = real(cid)
        if cid == client_id:
            raise RuntimeError("the worker died after writing the trigger buy down")
        return first

    set_price(fake, "97950")
    with monkeypatch.context() as m:
        m.setattr(ledger, "send_attempt", written_then_dead)
        with pytest.raises(RuntimeError):
            cycle.run_cycle(bot.pk)
    assert market_buys(fake) == [] and SendAttempt.objects.filter(client_order_id=client_id)
    bot.refresh_from_db()
    assert bot.engine().waiting and not bot.orders.exists()

    # The price goes back above the trigger: the buy written down is finished all the same,
    # and only once the exchange can prove it never went out.
    set_price(fake, "98200")
    cycle.run_cycle(bot.pk)
    assert market_buys(fake) == [] and bot.engine().waiting
    SendAttempt.objects.filter(client_order_id=client_id).update(
        first_sent_at=timezone.now() - timedelta(minutes=2)
    )
    cycle.run_cycle(bot.pk)
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    assert len(market_buys(fake)) == 1 and not bot.engine().waiting
    assert bot.orders.filter(kind=Order.Kind.MARKET).count() == 1
    assert open_rows(bot) <= resting(fake) and resting(fake) <= db_resting(bot)
    assert_books_are_the_accounts(bot, fake)


def test_a_crash_after_the_trigger_buy_went_out_books_that_buy_and_never_sends_another(
    trigger_bot, fake, start_live, monkeypatch
):
    bot = trigger_bot
    trigger_buy_then_crash(bot, fake, start_live, monkeypatch)
    assert len(market_buys(fake)) == 1  # bought; the booking died with the worker
    bot.refresh_from_db()
    assert bot.engine().waiting and not bot.orders.exists()

    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    assert len(market_buys(fake)) == 1 and not bot.engine().waiting
    start = bot.orders.get(kind=Order.Kind.MARKET)
    assert start.amount == market_buys(fake)[0].qty
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9
    assert_books_are_the_accounts(bot, fake)


def _die(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("the worker died after the exchange bought")


def trigger_buy_then_crash(bot: Bot, fake: Any, start_live: Any, monkeypatch: Any) -> None:
    """Start the bot, cross its trigger, and let the worker die once the exchange bought,
    before the buy is booked."""
    start_live(bot)
    set_price(fake, "97950")
    with monkeypatch.context() as m:
        m.setattr(live_trading, "record_start", _die)
        with pytest.raises(RuntimeError):
            cycle.run_cycle(bot.pk)


def test_a_bot_without_trigger_or_trailing_never_takes_the_long_way(
    market, make_bot, keys, fake, start_live
):
    """The quiet cycle's shortcut stays for plain grids: ``due`` never asks for more."""
    bot = make_bot(CONFIG, mode=Bot.Mode.LIVE, credential=keys)
    start_live(bot)
    bot.refresh_from_db()
    assert not live_trading.moves_due(bot, Decimal(P0) * 2)
    assert not live_trading.moves_due(bot, Decimal(1))


def test_with_the_user_stream_up_a_waiting_bot_asks_nothing_until_the_price_reaches_its_trigger(
    trigger_bot, fake, start_live, monkeypatch
):
    """The quiet cycle (no fill, nothing to send) only marks the bot; its trigger, reached,
    takes the whole way in the same cycle."""
    from bots import user_streams

    bot = trigger_bot
    start_live(bot)
    monkeypatch.setattr(user_streams, "rest_due", lambda bot, now=None, known=None: False)
    set_price(fake, "98500")
    asked = len(fake.requests)
    cycle.run_cycle(bot.pk)
    cycle.run_cycle(bot.pk)
    assert len(fake.requests) == asked  # quiet: the exchange is not asked

    set_price(fake, "97990")
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    assert len(market_buys(fake)) == 1 and not bot.engine().waiting
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9


def test_with_the_user_stream_up_a_shift_is_not_skipped_as_a_quiet_cycle(
    trailing_bot, fake, start_live, monkeypatch
):
    from bots import user_streams

    bot = trailing_bot
    start_live(bot)
    set_price(fake, "105500")
    cycle.run_cycle(bot.pk)  # over REST: every sell filled, the buys rest
    monkeypatch.setattr(user_streams, "rest_due", lambda bot, now=None, known=None: False)
    bot.refresh_from_db()
    nxt = bot.engine().next_line_up()
    assert bot.next_sell_price == nxt  # the feed wakes the bot there

    set_price(fake, str(nxt + 1))
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    assert bot.engine().shifts_up == 1
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9


def test_the_start_confirmation_dialog_names_the_trigger_price_it_waits_for(
    trigger_bot, fake, client
):
    client.force_login(trigger_bot.owner)

    page = client.post(reverse("bots:start", args=[trigger_bot.pk])).content.decode()

    assert 'data-testid="confirm-trigger"' in page
    assert "Waits for the price to fall to" in page and "98,000" in page
    assert "Bought at market then" in page
    assert not Bot.objects.get(pk=trigger_bot.pk).is_running and fake.orders() == []


def test_a_live_shift_down_moves_the_top_sell_to_the_bottom_with_the_same_coins(
    market, make_bot, keys, fake, start_live
):
    config = {**CONFIG, "trailing_down": "true", "trailing_down_limit": "90000"}
    bot = make_bot(config, mode=Bot.Mode.LIVE, credential=keys)
    start_live(bot)
    set_price(fake, "94500")  # every buy fills; their slots rest sells one line up
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    engine = bot.engine()
    assert all(s.state == SlotState.BASE for s in engine.slots)
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9
    top = bot.orders.get(status="open", price=engine.lines[-1])
    top_slot = engine.slot(top.slot)
    before, rows_before = book(fake), open_rows(bot)

    set_price(fake, str(engine.next_line_down() - 50))
    cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    after = book(fake)
    new = set(after) - set(before)
    assert {c for c, st in after.items() if st != before.get(c, st)} == {top.client_order_id}
    assert after[top.client_order_id] == "CANCELED" and len(new) == 1
    engine = bot.engine()
    assert engine.shifts_down == 1
    placed = bot.orders.get(client_order_id=new.pop())
    # The top slot's coins, unchanged, now wait to be sold at the old bottom line.
    assert (placed.side, placed.price, placed.amount) == ("sell", engine.lines[1], top.amount)
    assert engine.slots[0].acquired == top_slot.acquired and placed.slot == engine.slots[0].id
    kept = rows_before - {(top.client_order_id, "sell", top.price)}
    assert open_rows(bot) == kept | {(placed.client_order_id, "sell", placed.price)}
    assert resting(fake) == db_resting(bot)
    assert_books_are_the_accounts(bot, fake)


def test_a_stop_after_a_crashed_trigger_buy_sells_the_coins_that_buy_bought_once(
    trigger_bot, fake, start_live, monkeypatch
):
    from bots import services

    bot = trigger_bot
    trigger_buy_then_crash(bot, fake, start_live, monkeypatch)
    bought = market_buys(fake)[0].qty
    assert Bot.objects.get(pk=bot.pk).engine().waiting  # the coins are in no books yet

    services.stop_bot(Bot.objects.get(pk=bot.pk), sell=True)

    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED and len(market_buys(fake)) == 1
    sales = [o for o in fake.orders("BTCUSDT") if o.type == "MARKET" and o.side == "SELL"]
    assert [o.qty for o in sales] == [bought] and coins(fake, "BTC") == 0
    assert bot.orders.filter(kind=Order.Kind.MARKET, side="buy").count() == 1


def test_a_shift_whose_order_filled_in_part_before_its_cancel_waits_and_books_that_part(
    trailing_bot, fake, start_live, monkeypatch
):
    """The bottom buy trades a little between the cycle's look at the fills and the shift's
    cancel: the grid does not move over it; the part is booked (the books stay the
    account's) and the engine never shifts a slot with a part filled."""
    from bots.gateways.ccxt_gateway import CcxtGateway

    bot = trailing_bot
    start_live(bot)
    set_price(fake, "105500")
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    engine = bot.engine()
    bottom = bot.orders.get(status="open", price=engine.lines[0])
    real_cancel = CcxtGateway.cancel

    def filled_first(self: CcxtGateway, client_id: str) -> None:
        if client_id == bottom.client_order_id:
            fake.fill_part(client_id, "0.001")
        real_cancel(self, client_id)

    set_price(fake, str(engine.next_line_up() + 50))
    with monkeypatch.context() as m:
        m.setattr(CcxtGateway, "cancel", filled_first)
        cycle.run_cycle(bot.pk)

    bot.refresh_from_db()
    assert bot.engine().shifts_up == 0
    assert bot.events.filter(kind=BotEvent.Kind.SKIPPED, message__startswith="Trailing waits")

    cycle.run_cycle(bot.pk)  # the part is booked; the slot's rest goes out again, once

    bot.refresh_from_db()
    engine = bot.engine()
    assert engine.shifts_up == 0 and engine.slot(bottom.slot).filled == Decimal("0.001")
    assert resting(fake) == db_resting(bot) and len(resting(fake)) == 9
    assert_books_are_the_accounts(bot, fake)


def test_an_error_stop_after_a_crashed_trigger_buy_keeps_its_coins_in_the_books(
    trigger_bot, fake, start_live, monkeypatch
):
    bot = trigger_bot
    trigger_buy_then_crash(bot, fake, start_live, monkeypatch)

    live_trading._error(Bot.objects.get(pk=bot.pk), "the exchange refused something")

    bot.refresh_from_db()
    assert bot.status == Bot.Status.ERROR and len(market_buys(fake)) == 1
    assert not bot.engine().waiting
    assert_books_are_the_accounts(bot, fake)  # the coins bought are the grid's, kept
