"""A candle applied to many paper bots in one batch (issue 16) does what their own cycles do."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from bots import batch, cycle, locks, paper_trading, services, tasks
from bots.models import Bot, BotEvent, EquitySnapshot, Order, Trade
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, WORKER_CONFIG, add_candles, at
from tests.bots.test_crash import Crash, comparable, snapshot

pytestmark = pytest.mark.django_db

# The worked example, a ten-line grid, and the worked example with a stop-loss at 97 that
# candle 3 (low 96) sets off: fills, round trips, placed orders and a halt between them.
CONFIGS = [WORKED_CONFIG, WORKER_CONFIG, {**WORKED_CONFIG, "stop_loss_pct": "3"}]


@pytest.fixture(autouse=True)
def _rich_paper_wallet(settings: Any) -> None:
    settings.PAPER_STARTING_BALANCE = Decimal("1000000")


def pairs(make_bot: Any, n: int = 1, configs: list[dict] = CONFIGS) -> list[tuple[Bot, Bot]]:
    """For each config, ``n`` pairs of running bots: one for the batch, one cycled alone."""
    made = []
    for config in configs * n:
        one, other = make_bot(config), make_bot(config)
        services.start_bot(one)
        services.start_bot(other)
        made.append((one, other))
    return made


def full(bot_id: int) -> dict:
    """Everything a cycle writes of a bot, without what differs between two bots by
    construction (their ids, and so their client order ids)."""
    bot = Bot.objects.get(pk=bot_id)
    return comparable(snapshot(bot_id)) | {
        "status": (bot.status, bot.status_reason),
        "prices": (bot.next_buy_price, bot.next_sell_price, bot.last_price, bot.last_equity),
        "peak": (bot.peak_equity, bot.day, bot.day_open_equity),
        "events": [(e.kind, e.message, e.market_time)
                   for e in BotEvent.objects.filter(bot_id=bot_id).order_by("id")],
        "equity": list(EquitySnapshot.objects.filter(bot_id=bot_id).order_by("at")
                       .values_list("at", "price", "quote", "base", "equity")),
        "filled": sorted((o.side, o.price, o.filled, o.fee, o.filled_at)
                         for o in Order.objects.filter(bot_id=bot_id, status="filled")),
    }  # fmt: skip


def test_a_batch_writes_what_each_bots_own_cycle_writes(worked_market, make_bot):
    made = pairs(make_bot)
    add_candles(WORKED_CANDLES[1:])

    done = batch.apply_candles([a.pk for a, _ in made])
    for _, alone in made:
        cycle.run_cycle(alone.pk)

    assert (done.bots, done.skipped) == (3, 0)
    for batched, alone in made:
        assert full(batched.pk) == full(alone.pk)
    halted = Bot.objects.get(pk=made[2][0].pk)
    assert halted.status == Bot.Status.STOPPED and "stop-loss" in halted.status_reason
    assert Trade.objects.filter(bot=made[0][0]).count() == 2


def test_candle_by_candle_batches_equal_one_cycle_over_all_candles(worked_market, make_bot):
    made = pairs(make_bot)
    for row in WORKED_CANDLES[1:]:
        add_candles([row])
        batch.apply_candles([a.pk for a, _ in made])
    for _, alone in made:
        cycle.run_cycle(alone.pk)
    for batched, alone in made:
        assert full(batched.pk)["engine"] == full(alone.pk)["engine"]
        assert full(batched.pk)["orders"] == full(alone.pk)["orders"]


def test_bots_at_different_cursors_each_walk_their_own_candles(worked_market, make_bot):
    """One bot already walked candle 1 alone; the batch walks it from candle 2 only."""
    (ahead, reference), (behind, _) = pairs(make_bot, 2)[::3]
    add_candles(WORKED_CANDLES[1:2])
    cycle.run_cycle(ahead.pk)
    add_candles(WORKED_CANDLES[2:])

    batch.apply_candles([ahead.pk, behind.pk])
    cycle.run_cycle(reference.pk)

    # Its log and equity series have a cycle's worth more points: compared as two cycles are.
    same = {"events": [], "equity": []}
    assert full(ahead.pk) | same == full(reference.pk) | same
    assert full(behind.pk) == full(reference.pk)


# Each statement of a batch's writes, in the order it runs them, and the walk of its third bot.
STEPS = [
    ("UPDATE", "bots_order"),  # the orders filled
    ("INSERT", "bots_order"),  # the orders placed
    ("INSERT", "bots_trade"),
    ("INSERT", "bots_botevent"),
    ("INSERT", "bots_equitysnapshot"),
    ("UPDATE", "bots_bot"),  # the engines: the last write before the commit
    ("walk", "walk_candles"),
]


@pytest.mark.parametrize("step", STEPS, ids=[" ".join(step) for step in STEPS])
def test_a_crash_in_a_batch_leaves_every_bot_as_it_was_and_the_redo_doubles_nothing(
    worked_market, make_bot, monkeypatch, step: tuple[str, str]
):
    made = pairs(make_bot, 2)
    add_candles(WORKED_CANDLES[1:])
    for _, alone in made:
        cycle.run_cycle(alone.pk)
    before = {a.pk: snapshot(a.pk) for a, _ in made}
    walk, walked = paper_trading.walk_candles, []

    def crash_third_walk(*args: Any, **kwargs: Any) -> Any:
        walked.append(1)
        if len(walked) == 3:  # in the middle of the batch
            raise Crash("injected in the walk")
        return walk(*args, **kwargs)

    def crash_at_step(execute: Any, sql: str, *args: Any) -> Any:
        if sql.startswith(step[0]) and sql.split('"')[1] == step[1]:
            raise Crash(f"injected at {sql[:40]}")
        return execute(sql, *args)

    if step[0] == "walk":
        monkeypatch.setattr(paper_trading, "walk_candles", crash_third_walk)
    with pytest.raises(Crash), connection.execute_wrapper(crash_at_step):
        batch.apply_candles([a.pk for a, _ in made])
    monkeypatch.undo()

    assert {a.pk: snapshot(a.pk) for a, _ in made} == before  # all or nothing, every bot
    assert batch.apply_candles([a.pk for a, _ in made]).bots == len(made)  # the redo
    for batched, alone in made:
        assert full(batched.pk) == full(alone.pk)
    resting = Order.objects.filter(status__in=Order.RESTING, slot__isnull=False)
    assert resting.count() == len({(o.bot_id, o.slot) for o in resting})


def test_a_failed_batch_task_changes_nothing_and_the_chains_catch_up(
    worked_market, make_bot, monkeypatch
):
    made = pairs(make_bot)
    add_candles(WORKED_CANDLES[1:])

    def crash(execute: Any, sql: str, *args: Any) -> Any:
        if sql.startswith('INSERT INTO "bots_trade"'):
            raise Crash("injected")
        return execute(sql, *args)

    with connection.execute_wrapper(crash):
        tasks.apply_candles_task.call_local([a.pk for a, _ in made])  # logged, not raised
    assert {Bot.objects.get(pk=a.pk).cursor for a, _ in made} == {at(0)}
    for batched, alone in made:
        assert tasks.cycle_once(batched.pk).candles == 3
        cycle.run_cycle(alone.pk)
        assert full(batched.pk) == full(alone.pk)


def test_a_bot_whose_lease_is_held_is_skipped_and_catches_up_on_its_chain(worked_market, make_bot):
    made = pairs(make_bot)
    add_candles(WORKED_CANDLES[1:])
    held = made[0][0]
    token = locks.take(held.pk)  # a cycle, start or stop of it is under way elsewhere

    done = batch.apply_candles([a.pk for a, _ in made])

    assert (done.bots, done.skipped) == (2, 1)
    assert Bot.objects.get(pk=held.pk).cursor == Bot.objects.get(pk=made[0][1].pk).cursor
    assert tasks.cycle_once(held.pk) is None  # its own chain waits for the holder too
    locks.give_back(held.pk, token)
    assert tasks.cycle_once(held.pk).candles == 3
    for batched, alone in made:
        cycle.run_cycle(alone.pk)
        assert full(batched.pk) == full(alone.pk)


def test_after_a_batch_the_bots_chain_cycle_is_idle_and_costs_one_query(
    worked_market, make_bot, django_assert_num_queries
):
    made = pairs(make_bot)
    add_candles(WORKED_CANDLES[1:])
    batch.apply_candles([a.pk for a, _ in made])
    with django_assert_num_queries(1):
        result = tasks.cycle_once(made[0][0].pk)
    assert result is not None and (result.candles, result.running) == (0, True)
    assert batch.apply_candles([a.pk for a, _ in made]).bots == 0  # nothing new: nothing


def test_live_bots_woken_with_a_batch_get_their_own_cycle(worked_market, make_bot, monkeypatch):
    from accounts.models import ExchangeCredential

    made = pairs(make_bot)
    live = made[0][1]
    keys = ExchangeCredential(owner=live.owner, label="main")
    keys.set_keys("k" * 64, "s" * 64)
    keys.save()
    Bot.objects.filter(pk=live.pk).update(mode=Bot.Mode.LIVE, credential=keys)
    state = Bot.objects.get(pk=live.pk).engine_state
    woken: list[int] = []
    monkeypatch.setattr(tasks, "bot_cycle_task", woken.append)
    add_candles(WORKED_CANDLES[1:])
    tasks.apply_candles_task.call_local([made[0][0].pk, live.pk])
    assert woken == [live.pk]
    assert Bot.objects.get(pk=live.pk).engine_state == state  # not walked here


def test_the_feed_wakes_crossed_bots_in_batches(worked_market, make_bot, monkeypatch, settings):
    from market.feed import ClosedCandle, record_candles

    monkeypatch.setattr(batch, "BATCH_BOTS", 2)
    pairs(make_bot, 2)
    sizes: list[int] = []
    apply = batch.apply_candles
    monkeypatch.setattr(batch, "apply_candles", lambda ids: sizes.append(len(ids)) or apply(ids))
    _, o, h, low, c = WORKED_CANDLES[1]
    candle = ClosedCandle("binance", "BTC/USDT", at(60_000), *map(Decimal, (o, h, low, c)), 1)
    record_candles([candle])
    assert sorted(sizes) == [2, 2, 2, 2, 2, 2]  # twelve crossed bots, two a task
    assert all(b.cursor == at(60_000) for b in Bot.objects.all())
    assert {b.engine().fills for b in Bot.objects.filter(config__grid_levels="3")} == {2}


def count_queries(make_bot: Any, n: int, configs: list[dict]) -> list[str]:
    Bot.objects.all().delete()
    paper_trading.Candle.objects.filter(open_time__gt=at(0)).delete()
    made = pairs(make_bot, n, configs)
    add_candles(WORKED_CANDLES[1:])
    with CaptureQueriesContext(connection) as ctx:
        done = batch.apply_candles([a.pk for a, _ in made])
    assert done.bots == len(configs) * n and done.fills > 0
    return [q["sql"] for q in ctx.captured_queries]


def test_a_batchs_queries_do_not_grow_with_its_bots(worked_market, make_bot):
    """The live ones among the bots asked for, the bots loaded and locked in one query, the
    candles in one, the crossed bots' open orders in one, and one statement per table."""
    configs = CONFIGS[:2]  # fills, round trips, new orders, equity marks
    # SQLite takes at most 999 parameters a statement, so Django splits a bulk write of more
    # rows than that: there, a few bots show it; PostgreSQL has no such split.
    n = 10 if connection.vendor == "postgresql" else 3
    few = count_queries(make_bot, 1, configs)
    many = count_queries(make_bot, n, configs)
    assert len(few) == len(many) <= 12, "\n".join(q[:90] for q in many)


def test_a_bot_the_walk_stops_costs_its_own_queries_only(worked_market, make_bot):
    """Closing a bot's books (its wallet, its log) is one bot's work: only stopped bots pay it."""
    one = count_queries(make_bot, 1, CONFIGS)
    four = count_queries(make_bot, 4, CONFIGS)
    running = count_queries(make_bot, 4, CONFIGS[:2])
    assert len(four) - len(running) == 4 * (len(one) - len(count_queries(make_bot, 1, CONFIGS[:2])))


@pytest.mark.django_db(transaction=True)
def test_a_bot_another_transaction_locks_is_skipped(worked_market, make_bot):
    """PostgreSQL: a bot whose row another worker locked (a stop, a cycle) is skipped, not
    waited for (SKIP LOCKED); the others are walked."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    made = pairs(make_bot)
    add_candles(WORKED_CANDLES[1:])
    locked, release = threading.Event(), threading.Event()

    def another_worker() -> None:
        with transaction.atomic():
            Bot.objects.select_for_update().get(pk=made[0][0].pk)
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=another_worker)
    holder.start()
    try:
        assert locked.wait(10)
        done = batch.apply_candles([a.pk for a, _ in made])
    finally:
        release.set()
        holder.join()
    assert (done.bots, done.skipped) == (2, 1)
    assert tasks.cycle_once(made[0][0].pk).candles == 3  # its chain catches it up
    for batched, alone in made:
        cycle.run_cycle(alone.pk)
        assert full(batched.pk) == full(alone.pk)
