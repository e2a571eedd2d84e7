"""A crash at any step of a cycle leaves no duplicate order and no forgotten fill."""

from __future__ import annotations

import pytest

from bots import cycle, services
from bots.models import Bot, BotEvent, EquitySnapshot, Order, Trade
from tests.bots.conftest import WORKED_CANDLES, WORKED_CONFIG, add_candles

pytestmark = pytest.mark.django_db


class Crash(Exception):
    pass


def snapshot(bot_id: int) -> dict:
    bot = Bot.objects.get(pk=bot_id)
    return {
        "engine": bot.engine_state,
        "cursor": bot.cursor,
        "drawdown": bot.max_drawdown,
        "status": bot.status,
        "orders": sorted(
            (
                o.slot if o.slot is not None else -1,
                o.side,
                str(o.price),
                o.status,
                o.client_order_id.split("-", 1)[-1],
            )
            for o in Order.objects.filter(bot_id=bot_id)
        ),
        "trades": sorted((t.slot, str(t.profit)) for t in Trade.objects.filter(bot_id=bot_id)),
    }


def comparable(state: dict) -> dict:
    """The state without what differs between two bots by construction (their ids)."""
    return {**state, "orders": [o[:4] for o in state["orders"]]}


# Each step of a cycle's persistence, in the order the cycle runs them.
STEPS = [
    (Order.objects, "bulk_update"),  # marking filled orders: mid-fill application
    (Order.objects, "bulk_create"),  # placing the orders the fills call for
    (Trade.objects, "bulk_create"),  # recording round trips
    (BotEvent.objects, "bulk_create"),  # the event log
    (EquitySnapshot.objects, "bulk_create"),  # the equity mark, just before commit
    (Bot, "save"),  # the engine state itself: the last write before the commit
]


@pytest.mark.parametrize(
    ("target", "name"),
    STEPS,
    ids=[f"{t.model.__name__ if hasattr(t, 'model') else t.__name__}.{n}" for t, n in STEPS],
)
def test_a_crash_at_any_step_of_a_cycle_loses_nothing(
    worked_bot, make_bot, monkeypatch, target, name
):
    reference = make_bot(WORKED_CONFIG)
    services.start_bot(worked_bot)
    services.start_bot(reference)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(reference.pk)
    before = snapshot(worked_bot.pk)

    original = getattr(target, name)

    def crash(*args, **kwargs):
        raise Crash(f"injected at {name}")

    monkeypatch.setattr(target, name, crash)
    with pytest.raises(Crash):
        cycle.run_cycle(worked_bot.pk)
    monkeypatch.setattr(target, name, original)

    assert snapshot(worked_bot.pk) == before  # all or nothing
    cycle.run_cycle(worked_bot.pk)  # the next cycle redoes the work
    assert comparable(snapshot(worked_bot.pk)) == comparable(snapshot(reference.pk))
    assert Order.objects.filter(bot=worked_bot, status="open").count() == 2


def test_a_crash_during_cancel_leaves_the_bot_running_and_a_retry_stops_it(worked_bot, monkeypatch):
    services.start_bot(worked_bot)
    original = Order.objects.filter

    def crash(*args, **kwargs):
        raise Crash("injected during cancel")

    monkeypatch.setattr(type(Order.objects), "filter", crash)
    with pytest.raises(Crash):
        services.stop_bot(worked_bot)
    monkeypatch.undo()
    bot = Bot.objects.get(pk=worked_bot.pk)
    assert bot.status == Bot.Status.RUNNING
    assert original(bot=bot, status="open").count() == 2
    services.stop_bot(bot)
    assert Bot.objects.get(pk=bot.pk).status == Bot.Status.STOPPED
    assert not Order.objects.filter(bot=bot, status="open").exists()


def test_a_repeated_cycle_after_a_commit_does_not_double_anything(worked_bot):
    services.start_bot(worked_bot)
    add_candles(WORKED_CANDLES[1:])
    cycle.run_cycle(worked_bot.pk)
    done = snapshot(worked_bot.pk)
    # As if a worker crashed after committing but before acknowledging its task: run again.
    cycle.run_cycle(worked_bot.pk)
    assert snapshot(worked_bot.pk) == done
