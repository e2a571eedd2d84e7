"""The outbox read: bot events, round trips and advisor runs become deliveries, once, to the
channels of the bot's owner that want them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from ai_advisor.models import AdvisorRun
from bots import services as bot_services
from bots.models import BotEvent
from notifications import services
from notifications.models import BotMute, Delivery, Kind, OutboxCursor

pytestmark = pytest.mark.django_db

ALL = [k.value for k in Kind]


def test_a_burst_of_fills_is_one_message_per_channel_naming_the_bot_and_pair(trade, make_channel):
    hook = make_channel("webhook", kinds=ALL)
    telegram = make_channel("telegram", kinds=ALL)
    trade()
    services.dispatch()
    for channel in (hook, telegram):
        fills = Delivery.objects.get(channel=channel, kind=Kind.FILL)
        assert fills.subject == "Worked grid · BTC/USDT · paper: 5 fills"
        assert len(fills.text.splitlines()) == 5  # each fill's line from the bot's log
        assert len(fills.data["fills"]) == 5
    assert Delivery.objects.filter(kind=Kind.FILL).count() == 2


def test_round_trips_say_the_profit_in_money_format(trade, make_channel):
    hook = make_channel("webhook", kinds=ALL)
    trade()
    services.dispatch()
    trips = Delivery.objects.get(channel=hook, kind=Kind.ROUND_TRIP)
    # 23.481115 + 28.334042, as the pages show money: two decimals, signed, with the unit.
    assert trips.subject == "Worked grid · BTC/USDT · paper: 2 round trips, +51.82 USDT"
    assert "+23.48 USDT" in trips.text and "+28.33 USDT" in trips.text
    assert "The bot's total profit is now -3.06 USDT." in trips.text
    assert trips.data["profit"] == "51.815157"
    assert [t["profit"] for t in trips.data["round_trips"]] == ["23.481115", "28.334042"]


def test_dispatching_again_writes_nothing_twice(trade, make_channel):
    make_channel("webhook", kinds=ALL)
    trade()
    assert services.dispatch() == 2  # the fills and the round trips
    assert services.dispatch() == 0
    assert Delivery.objects.count() == 2


def test_each_channel_gets_only_its_kinds(trade, make_channel):
    only_trips = make_channel("webhook", label="trips", kinds=[Kind.ROUND_TRIP])
    nothing = make_channel("webhook", label="off", kinds=ALL, enabled=False)
    trade()
    services.dispatch()
    assert list(Delivery.objects.values_list("channel", "kind")) == [
        (only_trips.pk, Kind.ROUND_TRIP)
    ]
    assert not Delivery.objects.filter(channel=nothing).exists()


def test_a_bot_muted_for_a_kind_is_not_told_of_on_any_channel(trade, make_channel):
    make_channel("webhook", kinds=ALL)
    make_channel("email", kinds=ALL)
    bot = trade()
    BotMute.objects.create(bot=bot, kind=Kind.FILL)
    services.dispatch()
    assert set(Delivery.objects.values_list("kind", flat=True)) == {Kind.ROUND_TRIP}
    assert Delivery.objects.count() == 2


def test_another_users_bot_never_reaches_my_channels(trade, make_channel, other_user):
    mine = make_channel("webhook", label="mine", kinds=ALL)
    theirs = make_channel("webhook", label="theirs", kinds=ALL, owner=other_user)
    trade()
    services.dispatch()
    assert Delivery.objects.filter(channel=mine).count() == 2
    assert not Delivery.objects.filter(channel=theirs).exists()


def test_a_stop_says_why_and_the_total(trade, make_channel):
    hook = make_channel("webhook", kinds=ALL)
    bot = trade()
    services.dispatch()
    bot_services.stop_bot(bot, reason="stopped by you")
    services.dispatch()
    stop = Delivery.objects.get(channel=hook, kind=Kind.STOPPED)
    assert stop.subject == "Worked grid · BTC/USDT · paper stopped"
    assert "Stopped: stopped by you." in stop.text
    assert "Total profit: " in stop.text and "USDT" in stop.text


def test_an_error_stop_is_an_error_notice(trade, make_channel):
    hook = make_channel("webhook", kinds=[Kind.ERROR])
    bot = trade()
    services.dispatch()
    BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.ERROR, message="Halted: boom.")
    services.dispatch()
    error = Delivery.objects.get(channel=hook)
    assert error.kind == Kind.ERROR
    assert error.subject.endswith("stopped on an error")
    assert "Halted: boom." in error.text


def test_a_channel_added_after_the_news_is_not_told_of_it(trade, make_channel):
    channel = make_channel("webhook", kinds=ALL)
    trade()
    channel.created_at = timezone.now()  # as if added just after the cycle
    channel.save(update_fields=["created_at"])
    services.dispatch()
    # The fills happened before the channel; round trips count as news when read.
    assert list(Delivery.objects.values_list("kind", flat=True)) == [Kind.ROUND_TRIP]


def test_history_from_before_notifications_is_never_sent(trade, make_channel):
    make_channel("webhook", kinds=ALL)
    trade()
    OutboxCursor.objects.all().delete()  # as on the first run after an upgrade
    assert services.dispatch() == 0
    cursor = OutboxCursor.objects.get(name="bot_events")
    assert cursor.last_id == BotEvent.objects.order_by("-id").first().pk


def test_an_id_committed_after_a_later_one_is_still_read(worked_bot):
    """A transaction that took id n may commit after the one that took n+1."""
    cursor = OutboxCursor(name="probe", last_id=0)
    first = BotEvent.objects.create(bot=worked_bot, kind="filled", message="a")
    late_id = first.pk + 1
    third = BotEvent.objects.create(bot=worked_bot, kind="filled", message="c", id=first.pk + 2)
    assert services.read_new_ids(cursor, BotEvent)[-2:] == [first.pk, third.pk]
    assert late_id in [i for i, _ in cursor.holes]
    BotEvent.objects.create(bot=worked_bot, kind="filled", message="b", id=late_id)
    assert services.read_new_ids(cursor, BotEvent) == [late_id]
    assert late_id not in [i for i, _ in cursor.holes]
    assert services.read_new_ids(cursor, BotEvent) == []


def test_a_finished_advisor_run_is_told_once(user, make_channel, worked_bot):
    hook = make_channel("webhook", kinds=[Kind.ADVISOR])
    run = AdvisorRun.objects.create(
        owner=user, bot=worked_bot, symbol="BTC/USDT", capital=Decimal(1000),
        status=AdvisorRun.Status.DONE, finished_at=timezone.now(),
        suggestion={"confidence": 72, "config": {"lower_bound": "95"}},
    )  # fmt: skip
    AdvisorRun.objects.create(owner=user, symbol="ETH/USDT", capital=Decimal(1000))  # queued
    services.dispatch()
    services.dispatch()
    notice = Delivery.objects.get(channel=hook)
    assert notice.kind == Kind.ADVISOR
    assert notice.key == f"advisor:{run.pk}"
    assert notice.subject == f"Advisor suggestion ready: {services.bot_label(worked_bot)}"
    assert "Confidence: 72 / 100." in notice.text


def test_the_daily_summary_counts_the_days_round_trips_and_bots(trade, make_channel):
    hook = make_channel("webhook", kinds=[Kind.DAILY])
    trade()
    today = timezone.now().date()
    assert services.daily_summary(today) == 1
    assert services.daily_summary(today) == 0  # the crontab firing twice sends one
    summary = Delivery.objects.get(channel=hook)
    assert summary.subject == f"Daily summary {today}: 2 round trips, +51.82 USDT"
    assert "Running: 1 of 1 bot" in summary.text
    assert "In error: 0" in summary.text
    assert "- Worked grid · BTC/USDT · paper: 2 round trips, +51.82 USDT" in summary.text
    assert summary.data["profit"] == {"USDT": "51.815157"}
    yesterday = today - timezone.timedelta(days=1)
    services.daily_summary(yesterday)
    assert Delivery.objects.get(key=f"daily:{yesterday}").data["round_trips"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_skips_while_one_dispatches(postgres, trade, make_channel):
    """Row locks are PostgreSQL's: a dispatch finding the cursor locked returns at once."""
    import threading

    from django.db import connection, transaction

    make_channel("webhook", kinds=ALL)
    # The cursors first (a flushed database has none, and a new cursor starts at the table's
    # end), then the trade, told.
    services.dispatch()
    trade()
    assert services.dispatch() > 0
    OutboxCursor.objects.filter(name="trades").update(last_id=0)
    locked, release, answers = threading.Event(), threading.Event(), []

    def other_worker() -> None:
        with transaction.atomic():
            OutboxCursor.objects.select_for_update().get(name="bot_events")
            locked.set()
            release.wait(10)
        connection.close()

    worker = threading.Thread(target=other_worker)
    worker.start()
    assert locked.wait(10)
    answers.append(services.dispatch())
    release.set()
    worker.join()
    assert answers == [0]  # skipped, not blocked, nothing written
    assert services.dispatch() == 0  # then it reads on, and the keys hold: nothing twice
    assert Delivery.objects.count() == 2


def test_bots_whose_owner_has_no_channel_on_cost_no_words(trade, make_channel, monkeypatch):
    make_channel("webhook", kinds=ALL, enabled=False)
    trade()

    def expensive(bot):
        raise AssertionError("statistics computed for nobody")

    monkeypatch.setattr(services, "_total_profit", expensive)
    assert services.dispatch() == 0
