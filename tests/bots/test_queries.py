"""No N+1: the desk's pages and pushes run as many queries for 20 bots or 500 orders as for 1."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots import pages, services
from bots.models import Bot, EquitySnapshot, Order
from tests.bots.conftest import CONFIG
from tests.bots.test_views import make_trades

pytestmark = pytest.mark.django_db

DASHBOARD_MAX = 10


@pytest.fixture(autouse=True)
def _rich_paper_wallet(settings):
    settings.PAPER_STARTING_BALANCE = D("1000000")  # twenty bots of 1,000 each


BOT_PAGE_MAX = 16


def make_bots(user, n: int) -> list[Bot]:
    bots = []
    t0 = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
    for i in range(n):
        bot = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name=f"Grid {i}")
        services.start_bot(bot)
        EquitySnapshot.objects.bulk_create(
            EquitySnapshot(
                bot=bot,
                at=t0 + dt.timedelta(minutes=m),
                price=D("65000"),
                quote=D("500"),
                base=D("0.0077"),
                equity=D("1000") + m,
            )
            for m in range(150)
        )
        make_trades(bot, 3)
        bots.append(bot)
    return bots


def count(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_dashboard_queries_do_not_grow_with_bots(
    client, user, price, django_assert_max_num_queries
):
    make_bots(user, 1)
    client.force_login(user)
    client.get("/")  # warm the session
    one = count(lambda: client.get("/"))
    make_bots(user, 19)
    with django_assert_max_num_queries(DASHBOARD_MAX):
        response = client.get("/")
    assert response.text.count('class="card bot-card') == 20
    assert response.text.count("<polyline") == 20
    assert count(lambda: client.get("/")) == one


def test_bot_page_with_500_orders_runs_a_bounded_number_of_queries(
    client, user, price, django_assert_max_num_queries
):
    (bot,) = make_bots(user, 1)
    Order.objects.bulk_create(
        Order(
            bot=bot,
            slot=None,
            side="buy" if i % 2 else "sell",
            price=D("65000") + i,
            amount=D("0.001"),
            status=Order.Status.FILLED,
            client_order_id=f"hist-{i}",
            filled_at=dt.datetime(2025, 6, 2, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        )
        for i in range(500)
    )
    make_trades(bot, 100)
    client.force_login(user)
    with django_assert_max_num_queries(BOT_PAGE_MAX):
        response = client.get(f"/bots/{bot.pk}/")
    assert response.text.count('class="order-status open"') == 19
    with django_assert_max_num_queries(6):
        client.get(f"/bots/{bot.pk}/candles.json")


def test_pushed_fragments_run_a_bounded_number_of_queries(
    user, price, django_assert_max_num_queries
):
    bots = make_bots(user, 20)
    with django_assert_max_num_queries(4):
        html = pages.render_cards(user.pk, [b.pk for b in bots])
    assert html.count("bot-card") >= 20
    with django_assert_max_num_queries(BOT_PAGE_MAX - 2):
        pages.render_bot(bots[0].pk)
