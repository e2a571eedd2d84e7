"""Managing bots from the desk (issue 14): delete, archive, clone, a bot from a backtest, the
history of backtests. The verbs are ``bots.services``'; these are the pages around them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D
from typing import Any

import pytest

from bots import services
from bots.errors import BotError
from bots.models import BacktestRun, Bot, BotEvent, Order, PaperBalance, Trade
from tests.bots.conftest import CONFIG
from tests.bots.test_views import make_trades

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def running_bot(user: Any, rules: None, price: D) -> Bot:
    b = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name="Running grid")
    services.start_bot(b)
    b.refresh_from_db()
    return b


def done_run(owner: Any, *, profit: str, symbol: str = "BTC/USDT", **config: str) -> BacktestRun:
    return BacktestRun.objects.create(
        owner=owner, symbol=symbol, start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 9, tzinfo=dt.UTC), config=CONFIG | config,
        status=BacktestRun.Status.DONE, progress=100,
        result={"total_profit": profit, "total_trades": 12, "chart": {"bars": [[0] * 5] * 50}},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "delete"), ("post", "delete"), ("post", "archive")],
)
def test_another_users_bot_cannot_be_deleted_or_archived(client, other_user, bot, method, path):
    client.force_login(other_user)
    assert getattr(client, method)(f"/bots/{bot.pk}/{path}/").status_code == 404
    assert Bot.objects.filter(pk=bot.pk, archived_at__isnull=True).exists()


@pytest.mark.parametrize("url", ["/bots/1/delete/", "/backtests/"])
def test_management_pages_require_login(client, url):
    assert client.get(url).status_code == 302


# --- delete --------------------------------------------------------------------------------------


def test_delete_asks_first_and_offers_the_csv_exports(client, user, running_bot):
    make_trades(running_bot, 3)
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/delete/").text
    assert "3 round trips" in page
    assert f'href="/bots/{running_bot.pk}/round-trips.csv"' in page
    assert f'href="/bots/{running_bot.pk}/trades.csv"' in page
    assert "is running" in page and "stopped first" in page and "19 open orders" in page
    assert 'name="sell" value="1"' in page  # Stop's choice for its coins
    assert Bot.objects.filter(pk=running_bot.pk, status=Bot.Status.RUNNING).exists()


def test_delete_removes_the_bot_and_its_whole_history(client, user, bot):
    services.start_bot(bot)
    make_trades(bot, 2)
    services.stop_bot(bot)
    client.force_login(user)
    response = client.post(f"/bots/{bot.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Bot.objects.filter(pk=bot.pk).exists()
    assert not Trade.objects.filter(bot_id=bot.pk).exists()
    assert not Order.objects.filter(bot_id=bot.pk).exists()
    assert not BotEvent.objects.filter(bot_id=bot.pk).exists()
    assert "was deleted, with its history" in client.get("/").text


def test_deleting_a_running_bot_stops_it_first_and_gives_its_money_back(client, user, running_bot):
    client.force_login(user)
    client.post(f"/bots/{running_bot.pk}/delete/", {"sell": "1"})
    assert not Bot.objects.filter(pk=running_bot.pk).exists()
    usdt = PaperBalance.objects.get(owner=user, asset="USDT")
    assert usdt.locked == 0 and usdt.free > D("9990")  # the capital, less the start's fees
    assert not PaperBalance.objects.filter(owner=user, asset="BTC", free__gt=0).exists()


def test_a_delete_the_service_refuses_says_why_and_keeps_the_bot(client, user, bot, monkeypatch):
    def refuse(b, **kw):
        raise BotError(f"{b} was not deleted: it is still stopping")

    monkeypatch.setattr(services, "delete_bot", refuse)
    client.force_login(user)
    response = client.post(f"/bots/{bot.pk}/delete/", follow=True)
    assert "was not deleted: it is still stopping" in response.text
    assert Bot.objects.filter(pk=bot.pk).exists()


# --- archive -------------------------------------------------------------------------------------


def test_an_archived_bot_is_listed_apart_on_the_dashboard(client, user, bot, running_bot):
    client.force_login(user)
    response = client.post(f"/bots/{bot.pk}/archive/", {"archived": "1", "back": "dashboard"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").text
    assert f'id="bot-{bot.pk}-card"' not in page and f'id="bot-{running_bot.pk}-card"' in page
    archived = page.split('id="archived-bots"')[1].split("</section>")[0]
    assert f'id="bot-{bot.pk}-archived"' in archived and "Unarchive" in archived
    assert ">1</td>" in page.split('id="total-usdt"')[1].split("</tr>")[0]  # totals: active only
    assert "archived: listed apart" in page


def test_unarchive_brings_the_bot_back_among_the_cards(client, user, bot):
    services.archive_bot(bot)
    client.force_login(user)
    bot_page = client.get(f"/bots/{bot.pk}/").text
    assert "Archived on" in bot_page and "Unarchive" in bot_page
    assert f'hx-post="/bots/{bot.pk}/start/"' not in bot_page  # no Start while archived
    response = client.post(f"/bots/{bot.pk}/archive/", {"archived": "0"}, headers=HX)
    assert response["HX-Redirect"] == f"/bots/{bot.pk}/"
    bot.refresh_from_db()
    assert bot.archived_at is None
    assert f'id="bot-{bot.pk}-card"' in client.get("/").text


def test_archiving_a_running_bot_is_refused_in_words(client, user, running_bot):
    client.force_login(user)
    response = client.post(f"/bots/{running_bot.pk}/archive/", {"archived": "1"}, follow=True)
    assert "before archiving it" in response.text
    running_bot.refresh_from_db()
    assert running_bot.archived_at is None


def test_all_bots_archived_is_not_an_empty_desk(client, user, bot):
    services.archive_bot(bot)
    client.force_login(user)
    page = client.get("/").text
    assert "All your bots are archived" in page and "No bots yet" not in page


# --- clone, a bot from a backtest, the history of backtests --------------------------------------


def test_clone_links_to_the_prefilled_form(client, user, bot):
    client.force_login(user)
    assert f'href="/bots/new/?clone={bot.pk}"' in client.get(f"/bots/{bot.pk}/").text
    assert f'href="/bots/new/?clone={bot.pk}"' in client.get("/").text


def test_a_finished_backtest_offers_to_create_a_bot_from_it(client, user):
    run = done_run(user, profit="12.5")
    client.force_login(user)
    page = client.get(f"/backtests/{run.pk}/").text
    assert f'href="/bots/new/?backtest={run.pk}"' in page
    assert "Create a bot from this backtest" in page
    assert 'href="/backtests/"' in page  # the history


def test_the_backtest_history_lists_my_runs_with_pair_range_and_return(client, user, other_user):
    older = done_run(user, profit="-0.000319")
    newer = done_run(user, profit="25", symbol="ETH/USDT", capital="500")
    failed = BacktestRun.objects.create(
        owner=user, symbol="BTC/USDT", start=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2020, 1, 2, tzinfo=dt.UTC), config=CONFIG,
        status=BacktestRun.Status.FAILED, error="no stored candles",
    )  # fmt: skip
    theirs = done_run(other_user, profit="1")
    client.force_login(user)
    page = client.get("/backtests/").text
    rows = page.split("<tbody>")[1]
    assert rows.index(f"backtest-{failed.pk}-row") < rows.index(f"backtest-{newer.pk}-row")
    assert rows.index(f"backtest-{newer.pk}-row") < rows.index(f"backtest-{older.pk}-row")
    assert f"backtest-{theirs.pk}-row" not in page
    new_row = rows.split(f'id="backtest-{newer.pk}-row"')[1].split("</tr>")[0]
    assert "ETH/USDT" in new_row and "2025-06-02 – 2025-06-08" in new_row
    assert "+25.00 USDT" in new_row and "5.00 %" in new_row and ">12</td>" in new_row
    assert f'href="/bots/new/?backtest={newer.pk}"' in new_row
    old_row = rows.split(f'id="backtest-{older.pk}-row"')[1].split("</tr>")[0]
    assert "-0.00032 USDT" in old_row
    failed_row = rows.split(f'id="backtest-{failed.pk}-row"')[1].split("</tr>")[0]
    assert "Failed: no stored candles" in failed_row and "?backtest=" not in failed_row
    assert 'href="/backtests/"' in client.get("/").text  # linked from the dashboard


def test_the_backtest_history_does_not_load_the_stored_results(
    client, user, django_assert_max_num_queries
):
    for i in range(40):
        done_run(user, profit=str(i))
    client.force_login(user)
    client.get("/backtests/")
    with django_assert_max_num_queries(6) as ctx:
        page = client.get("/backtests/?page=2").text
    assert page.count('-row"') == 10 and "Page 2 of 2" in page
    # The headline figures come out of the JSON in the query; the result itself is not read
    # (it is no column of the select list: one would be followed by the next column).
    column = re.compile(r'"bots_backtestrun"\."result",\s*"bots_backtestrun"\.')
    assert not any(column.search(q["sql"]) for q in ctx.captured_queries)
