"""``bots.reads``: the woken live cycle's reads, written out, give the rows the ORM would (the
same values and types on either database: decimals, datetimes, JSON), lock them, and reload a
row in place."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import ExchangeCredential
from bots import reads
from bots.models import Bot, Order
from market.models import MarketRules
from tests.bots import test_live_trading
from tests.bots.test_live_trading import CONFIG

pytestmark = pytest.mark.django_db(transaction=True)

fake, market, keys, start_live, bot = (
    test_live_trading.fake, test_live_trading.market, test_live_trading.keys,
    test_live_trading.start_live, test_live_trading.bot,
)  # fmt: skip


def values(obj: Any) -> dict[str, tuple[type, Any]]:
    return {
        f.attname: (type(getattr(obj, f.attname)), getattr(obj, f.attname))
        for f in type(obj)._meta.concrete_fields
    }


@pytest.fixture
def running(bot: Bot, start_live: Callable[[Bot], None]) -> Bot:
    start_live(bot)
    bot.refresh_from_db()
    return bot


def test_rows_are_the_orms_rows_value_for_value(running: Bot) -> None:
    orders = list(Order.objects.filter(bot=running).order_by("pk"))
    assert len(orders) > 3
    ids = [o.client_order_id for o in orders[:3]] + ["not-ours"]
    got = reads.rows(Order, f"bot_id = %s AND client_order_id IN {reads.in_list(ids)}",
                     [running.pk, *ids])  # fmt: skip
    assert sorted(map(values, got), key=str) == sorted(map(values, orders[:3]), key=str)
    assert all(not o._state.adding and o._state.db == "default" for o in got)

    again = reads.row(Bot, "id = %s", [running.pk])
    assert again is not None and values(again) == values(Bot.objects.get(pk=running.pk))
    assert isinstance(again.engine_state, dict) and again.engine_state == running.engine_state
    assert isinstance(again.last_equity, Decimal)
    assert again.started_at is not None and again.started_at.utcoffset() is not None

    rules = reads.row(MarketRules, "exchange = %s AND symbol = %s", ["binance", "BTC/USDT"])
    assert values(rules) == values(MarketRules.objects.get(symbol="BTC/USDT"))


def test_a_row_with_its_related_row_is_one_statement(running: Bot, keys: Any) -> None:
    with CaptureQueriesContext(connection) as seen:
        bot = reads.row_with(Bot, "credential", "t.id = %s", [running.pk])
        assert bot is not None and bot.credential is not None
        assert bot.credential_id == keys.pk
    assert values(bot.credential) == values(ExchangeCredential.objects.get(pk=keys.pk))
    assert len(seen.captured_queries) == 1
    assert values(bot) == values(Bot.objects.get(pk=running.pk))
    assert reads.row_with(Bot, "credential", "t.id = %s", [0]) is None

    Bot.objects.filter(pk=running.pk).update(credential=None, mode=Bot.Mode.PAPER)  # no keys
    with CaptureQueriesContext(connection) as seen:
        bot = reads.row_with(Bot, "credential", "t.id = %s", [running.pk])
        assert bot is not None and bot.credential is None
    assert len(seen.captured_queries) == 1


def test_an_empty_list_matches_nothing_and_a_column_reads_alone(running: Bot) -> None:
    assert reads.rows(Order, f"bot_id = %s AND id IN {reads.in_list([])}", [running.pk]) == []
    sells = reads.column(Order, "client_order_id", "bot_id = %s AND side = %s",
                         [running.pk, "sell"])  # fmt: skip
    expected = Order.objects.filter(bot=running, side="sell")
    assert sorted(sells) == sorted(expected.values_list("client_order_id", flat=True))
    assert sells


def test_each_statement_is_made_once_and_locks_where_the_database_can(running: Bot) -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as seen:
        reads.row(Bot, "id = %s", [running.pk], lock=True)
        reads.row(Bot, "id = %s", [running.pk], lock=True)
    first, second = (q["sql"] for q in seen.captured_queries)
    assert first == second
    assert first.endswith("FOR UPDATE") == connection.features.has_select_for_update
    assert reads._select(Bot, "id = %s", True) is reads._select(Bot, "id = %s", True)


def test_reload_reads_every_column_again_and_keeps_a_related_row_while_its_key_holds(
    running: Bot, make_bot: Callable[..., Bot], keys: Any
) -> None:
    bot = Bot.objects.select_related("credential").get(pk=running.pk)
    Bot.objects.filter(pk=bot.pk).update(stopping_reason="asked", fill_cursor_ms=7)
    with transaction.atomic():
        assert reads.reload(bot, lock=True)
    assert (bot.stopping_reason, bot.fill_cursor_ms) == ("asked", 7)
    assert values(bot) == values(Bot.objects.get(pk=bot.pk))
    with CaptureQueriesContext(connection) as seen:
        assert bot.credential == keys  # still the row read with it: no query
    assert not seen.captured_queries

    other = make_bot(CONFIG, name="other")
    order = Order.objects.select_related("bot").filter(bot=running).first()
    assert order is not None and order.bot == running
    Order.objects.filter(pk=order.pk).update(bot=other)
    assert reads.reload(order)
    assert order.bot_id == other.pk and order.bot == other  # the stale bot row is dropped

    Order.objects.filter(pk=order.pk).delete()
    assert not reads.reload(order)


def test_reads_sent_together_come_back_at_the_end_of_the_block_as_they_would_alone(
    running: Bot,
) -> None:
    """One round trip for the lot on PostgreSQL (psycopg's pipeline); each at once elsewhere:
    the same rows either way."""
    bot = Bot.objects.get(pk=running.pk)
    Bot.objects.filter(pk=bot.pk).update(fill_cursor_ms=11)
    ids = list(running.orders.values_list("client_order_id", flat=True)[:2])
    got: dict[str, Any] = {}
    with transaction.atomic():
        with reads.together():
            reads.reload(bot, lock=True, then=lambda found: got.update(found=found))
            reads.rows(Order, f"client_order_id IN {reads.in_list(ids)}", ids,
                       then=lambda rows: got.update(orders=rows))  # fmt: skip
            reads.column(Order, "client_order_id", "bot_id = %s", [bot.pk],
                         then=lambda found: got.update(ids=found))  # fmt: skip
            if connection.vendor == "postgresql":
                assert not got and bot.fill_cursor_ms != 11  # sent, not answered yet
        assert got["found"] and bot.fill_cursor_ms == 11
    assert sorted(o.client_order_id for o in got["orders"]) == sorted(ids)
    assert [values(o) for o in sorted(got["orders"], key=lambda o: o.pk)] == [
        values(o) for o in Order.objects.filter(client_order_id__in=ids).order_by("pk")
    ]
    assert sorted(got["ids"]) == sorted(running.orders.values_list("client_order_id", flat=True))
