"""The desk's pages. Its fixtures (rules, price, bot) and CONFIG/FORM are in conftest.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from django.urls import reverse

from bots import services
from bots.errors import BotError
from bots.models import BacktestRun, Bot, Order, Trade
from tests.bots.conftest import CONFIG, FORM

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def make_candles(
    symbol: str, n: int, *, start: dt.datetime | None = None, base: D = D("65000")
) -> None:
    from market.models import Candle

    start = start or dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
    rows = []
    for i in range(n):
        o = base + (i % 7) * 10
        c = o + (5 if i % 2 else -5)
        rows.append(
            Candle(
                exchange="binance",
                symbol=symbol,
                open_time=start + dt.timedelta(minutes=i),
                open=o,
                high=max(o, c) + 20,
                low=min(o, c) - 20,
                close=c,
                volume=D("1.5"),
            )
        )
    Candle.objects.bulk_create(rows)


def make_trades(bot: Bot, n: int) -> None:
    first = Trade.objects.filter(bot=bot).count()
    closed = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
    for i in range(first, first + n):
        sell = Order.objects.create(
            bot=bot,
            slot=None,
            side="sell",
            price=D("61000"),
            amount=D("0.001"),
            status=Order.Status.FILLED,
            client_order_id=f"t-{bot.pk}-{i}",
        )
        Trade.objects.create(
            bot=bot,
            slot=i % 19,
            sell_order=sell,
            amount=D("0.001"),
            buy_price=D("60500"),
            sell_price=D("61000"),
            profit=D("0.38"),
            fees=D("0.12"),
            closed_at=closed + dt.timedelta(minutes=i),
        )


@pytest.fixture
def running_bot(user: Any, rules: None, price: D) -> Bot:
    b = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name="Running grid")
    services.start_bot(b)
    b.refresh_from_db()
    return b


@pytest.fixture
def backtest_run(user: Any) -> BacktestRun:
    return BacktestRun.objects.create(
        owner=user,
        symbol="BTC/USDT",
        start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 3, tzinfo=dt.UTC),
        config=CONFIG,
    )


# --- access: every view, another user's bot is a 404 ---------------------------------------------

BOT_URLS = [
    ("get", "bots:detail"),
    ("get", "bots:stop"),
    ("get", "bots:round_trips_csv"),
    ("get", "bots:fills_csv"),
    ("get", "bots:edit"),
    ("post", "bots:edit"),
    ("post", "bots:start"),
    ("post", "bots:stop"),
    ("get", "bots:candles"),
]


@pytest.mark.parametrize(("method", "name"), BOT_URLS)
def test_another_users_bot_is_not_found(client, other_user, bot, method, name):
    client.force_login(other_user)
    response = getattr(client, method)(reverse(name, args=[bot.pk]))
    assert response.status_code == 404


def test_another_users_bot_cannot_prefill_a_backtest(client, other_user, bot):
    client.force_login(other_user)
    assert client.get(reverse("bots:backtest_new") + f"?bot={bot.pk}").status_code == 404


@pytest.mark.parametrize("name", ["bots:backtest", "bots:backtest_data"])
def test_another_users_backtest_is_not_found(client, other_user, backtest_run, name):
    client.force_login(other_user)
    assert client.get(reverse(name, args=[backtest_run.pk])).status_code == 404


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/"),
        ("get", "/bots/new/"),
        ("post", "/bots/preview/"),
        ("post", "/bots/emergency-stop/"),
        ("get", "/backtests/new/"),
        ("get", "/bots/1/"),
        ("get", "/bots/1/candles.json"),
        ("get", "/backtests/1/"),
    ],
)
def test_pages_require_login(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


# --- dashboard -----------------------------------------------------------------------------------


def test_empty_dashboard_tells_a_new_user_what_to_do(client, user):
    client.force_login(user)
    response = client.get("/")
    assert "No bots yet" in response.text
    assert 'href="/bots/new/"' in response.text
    assert "ws-connect" not in response.text  # nothing to watch yet


def test_dashboard_card_shows_the_bot(client, user, running_bot):
    client.force_login(user)
    response = client.get("/")
    text = response.text
    assert f'id="bot-{running_bot.pk}-card"' in text
    assert "BTC/USDT" in text and "Paper" in text and "Running" in text
    assert f'id="bot-{running_bot.pk}-price"' in text and "65,000.00" in text
    assert 'ws-connect="/ws/dashboard/"' in text
    assert "Emergency stop all bots" in text and "hx-confirm" in text


def test_dashboard_shows_why_a_bot_stopped(client, user, bot):
    bot.status_reason = "stop-loss at 57,000"
    bot.save()
    client.force_login(user)
    assert "Stop-loss at 57,000" in client.get("/").text


def test_dashboard_lists_only_my_bots(client, user, other_user, bot, rules):
    theirs = Bot.objects.create(
        owner=other_user, symbol="BTC/USDT", config=bot.config, name="Theirs"
    )
    client.force_login(user)
    text = client.get("/").text
    assert f"bot-{bot.pk}-card" in text and f"bot-{theirs.pk}-card" not in text


# --- start / stop / emergency --------------------------------------------------------------------


def test_start_from_the_card_swaps_the_card(client, user, bot):
    client.force_login(user)
    response = client.post(
        reverse("bots:start", args=[bot.pk]), headers=HX | {"HX-Target": f"bot-{bot.pk}-card"}
    )
    assert response.status_code == 200
    assert f'id="bot-{bot.pk}-card"' in response.text and "Running" in response.text
    assert 'id="messages"' in response.text and "started" in response.text
    assert "9,000.00 USDT" in response.text and "1,000.00 USDT in bots" in response.text
    bot.refresh_from_db()
    assert bot.status == Bot.Status.RUNNING
    assert bot.orders.filter(status=Order.Status.OPEN).count() == int(bot.config["grid_levels"]) - 1


def test_start_on_the_bot_page_returns_the_status_card(client, user, bot):
    client.force_login(user)
    response = client.post(
        reverse("bots:start", args=[bot.pk]), headers=HX | {"HX-Target": f"bot-{bot.pk}-status"}
    )
    assert f'id="bot-{bot.pk}-status"' in response.text
    assert f'hx-get="/bots/{bot.pk}/stop/?on=status"' in response.text  # Stop asks first


def test_start_that_cannot_start_says_why_and_changes_nothing(client, user, bot, monkeypatch):
    def refuse(b):
        raise BotError("no price for BTC/USDT yet")

    monkeypatch.setattr(services, "start_bot", refuse)
    client.force_login(user)
    response = client.post(
        reverse("bots:start", args=[bot.pk]), headers=HX | {"HX-Target": f"bot-{bot.pk}-card"}
    )
    assert "did not start: no price for BTC/USDT yet" in response.text
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED


def test_stop_returns_the_status_card(client, user, running_bot):
    client.force_login(user)
    response = client.post(f"/bots/{running_bot.pk}/stop/", headers=HX)
    assert f'id="bot-{running_bot.pk}-status"' in response.text
    running_bot.refresh_from_db()
    assert running_bot.status == Bot.Status.STOPPED
    assert not running_bot.orders.filter(status=Order.Status.OPEN).exists()


def test_start_without_htmx_redirects_to_the_bot(client, user, bot):
    client.force_login(user)
    response = client.post(reverse("bots:start", args=[bot.pk]))
    assert response.status_code == 302 and response["Location"] == f"/bots/{bot.pk}/"


def test_emergency_stop_stops_every_bot_and_cancels_every_order(client, user, running_bot, bot):
    services.start_bot(bot)
    client.force_login(user)
    response = client.post("/bots/emergency-stop/", headers=HX)
    assert response.status_code == 200
    assert 'id="bot-cards"' in response.text and "Emergency stop: 2 bot(s) stopped" in response.text
    wallet = response.text.split('id="paper-balance"')[1]
    assert wallet.split(">")[0].endswith('hx-swap-oob="true"')  # the wallet rides along
    assert "in bots" not in wallet  # the capital is back in it
    assert not Bot.objects.filter(owner=user, status=Bot.Status.RUNNING).exists()
    assert not Order.objects.filter(bot__owner=user, status=Order.Status.OPEN).exists()


def test_emergency_stop_leaves_other_users_bots_alone(client, other_user, running_bot):
    client.force_login(other_user)
    client.post("/bots/emergency-stop/")
    running_bot.refresh_from_db()
    assert running_bot.status == Bot.Status.RUNNING


def test_start_and_stop_need_post(client, user, bot):
    client.force_login(user)
    assert client.get(reverse("bots:start", args=[bot.pk])).status_code == 405
    assert client.get("/bots/emergency-stop/").status_code == 405


# --- new / edit / preview ------------------------------------------------------------------------


def test_new_bot_form_has_labels_and_a_live_preview(client, user, rules):
    client.force_login(user)
    text = client.get("/bots/new/").text
    for label in ("Pair", "Capital", "Lower price", "Upper price", "Price lines", "Spacing"):
        assert f">{label}</label>" in text
    assert 'hx-post="/bots/preview/"' in text and "input changed delay:300ms" in text
    assert '<option value="live" disabled' in text and "add your exchange keys first" in text
    assert '<option value="ETH/USDT">' in text


def test_create_bot_saves_and_redirects(client, user, rules, price):
    client.force_login(user)
    response = client.post("/bots/new/", FORM | {"name": "My grid"})
    bot = Bot.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/bots/{bot.pk}/"
    assert bot.name == "My grid" and bot.symbol == "BTC/USDT" and bot.mode == "paper"
    assert bot.config == CONFIG
    assert bot.status == Bot.Status.STOPPED


def test_invalid_range_shows_an_inline_error_and_saves_nothing(client, user, rules, price):
    client.force_login(user)
    response = client.post("/bots/new/", FORM | {"lower_bound": "70000", "upper_bound": "60000"})
    assert response.status_code == 200
    assert 'id="id_upper_bound-errors"' in response.text
    assert "The upper price must be above the lower price" in response.text
    assert not Bot.objects.exists()


def test_live_mode_is_refused_with_the_reason(client, user, rules, price):
    client.force_login(user)
    response = client.post("/bots/new/", FORM | {"mode": "live"})
    assert "add your exchange keys first" in response.text
    assert not Bot.objects.exists()


def test_service_refusal_is_shown_on_the_form(client, user, rules, price, monkeypatch):
    def refuse(*a, **kw):
        raise BotError("your paper balance is 100 USDT, the grid needs 1,000 USDT")

    monkeypatch.setattr(services, "create_bot", refuse)
    client.force_login(user)
    response = client.post("/bots/new/", FORM)
    assert 'id="form-errors"' in response.text and "paper balance is 100 USDT" in response.text


def test_preview_shows_lines_amount_and_profit(client, user, rules, price):
    client.force_login(user)
    response = client.post("/bots/preview/", FORM, headers=HX)
    text = response.text
    assert 'id="grid-preview"' in text
    assert "20 from 60,000.00 to 70,000.00" in text
    assert "Each order" in text and "BTC" in text
    assert "buys" in text and "sells" in text
    assert "Profit per grid after fees" in text
    assert text.count("<line ") >= 20


def test_preview_changes_with_the_levels(client, user, rules, price):
    client.force_login(user)
    a = client.post("/bots/preview/", FORM, headers=HX).text
    b = client.post("/bots/preview/", FORM | {"grid_levels": "40"}, headers=HX).text
    assert "20 from" in a and "40 from" in b


def test_preview_warns_when_a_grid_earns_less_than_its_fees(client, user, rules, price):
    client.force_login(user)
    data = FORM | {"lower_bound": "64900", "upper_bound": "65100", "grid_levels": "50"}
    text = client.post("/bots/preview/", data, headers=HX).text
    assert 'data-testid="loss-warning"' in text and "money after fees" in text


def test_preview_puts_errors_next_to_their_fields_out_of_band(client, user, rules, price):
    client.force_login(user)
    data = FORM | {"lower_bound": "70000", "upper_bound": "60000"}
    text = client.post("/bots/preview/", data, headers=HX).text
    assert 'id="id_upper_bound-errors" hx-swap-oob="true"><p class="error"' in text
    assert "The upper price must be above the lower price" in text
    # An empty field while typing is not an error yet; the fixed range clears the old error.
    text = client.post("/bots/preview/", FORM | {"capital": ""}, headers=HX).text
    assert 'id="id_capital-errors" hx-swap-oob="true"></div>' in text
    assert 'id="id_upper_bound-errors" hx-swap-oob="true"></div>' in text


def test_preview_says_how_much_capital_the_grid_needs(client, user, rules, price):
    client.force_login(user)
    text = client.post("/bots/preview/", FORM | {"capital": "50"}, headers=HX).text
    assert "the grid needs at least" in text


def test_edit_prefills_and_saves_the_grid(client, user, bot):
    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/edit/").text
    assert 'value="60000"' in page and "a bot keeps its pair and mode" in page
    response = client.post(f"/bots/{bot.pk}/edit/", FORM | {"grid_levels": "30", "name": "New"})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.config["grid_levels"] == "30" and bot.name == "New"


def test_edit_of_a_running_bot_is_refused_in_words(client, user, running_bot):
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/edit/").text
    assert "stop it before changing its grid" in page
    before = dict(running_bot.config)
    client.post(f"/bots/{running_bot.pk}/edit/", FORM | {"grid_levels": "30"})
    running_bot.refresh_from_db()
    assert running_bot.config == before


# --- the bot page --------------------------------------------------------------------------------


def test_bot_page_shows_chart_ladder_stats_history_and_events(client, user, running_bot):
    client.force_login(user)
    text = client.get(f"/bots/{running_bot.pk}/").text
    pk = running_bot.pk
    assert f'ws-connect="/ws/bots/{pk}/"' in text
    assert f'data-url="/bots/{pk}/candles.json"' in text
    for part in ("status", "stats", "ladder", "trades", "events"):
        assert f'id="bot-{pk}-{part}"' in text
    assert text.count('class="order-status open"') == 19
    assert "lightweight-charts.standalone.production.js" in text


def test_bot_page_says_prices_are_replayed(client, user, bot, settings):
    client.force_login(user)
    settings.MARKET_FEED = "replay"
    assert "Prices are replayed" in client.get(f"/bots/{bot.pk}/").text
    settings.MARKET_FEED = "live"
    assert "Prices are replayed" not in client.get(f"/bots/{bot.pk}/").text


def test_stopped_bot_ladder_shows_what_it_would_place(client, user, bot):
    client.force_login(user)
    text = client.get(f"/bots/{bot.pk}/").text
    assert "Not started" in text and text.count('<span class="buy">Buy</span>') > 0


def test_trade_history_is_paginated(client, user, running_bot):
    make_trades(running_bot, 45)
    client.force_login(user)
    text = client.get(f"/bots/{running_bot.pk}/").text
    assert text.count('class="trade"') == 20 and "Page 1 of 3" in text
    page3 = client.get(f"/bots/{running_bot.pk}/?trades=3", headers=HX).text
    assert page3.count('class="trade"') == 5 and "Page 3 of 3" in page3
    assert "<html" not in page3


def test_candles_json_has_candles_lines_orders_and_fills(client, user, running_bot):
    make_candles("BTC/USDT", 30)
    Order.objects.create(
        bot=running_bot,
        slot=None,
        side="buy",
        price=D("61000"),
        amount=D("0.001"),
        status=Order.Status.FILLED,
        client_order_id="x-start",
        filled_at=dt.datetime(2025, 6, 2, 0, 5, tzinfo=dt.UTC),
    )
    Order.objects.create(
        bot=running_bot,
        slot=3,
        side="buy",
        price=D("61578.95"),
        amount=D("0.001"),
        status=Order.Status.FILLED,
        client_order_id="x-fill",
        filled_at=dt.datetime(2025, 6, 2, 0, 7, tzinfo=dt.UTC),
    )
    client.force_login(user)
    data = client.get(f"/bots/{running_bot.pk}/candles.json").json()
    assert len(data["candles"]) == 31  # the 30 and the one the price fixture closed
    assert data["candles"][0][0] < data["candles"][-1][0]
    assert len(data["lines"]) == 20
    assert len(data["orders"]) == 19 and {o["side"] for o in data["orders"]} == {"buy", "sell"}
    assert data["fills"] == [{"time_ms": 1748822820000, "side": "buy", "price": "61578.95"}]


# --- backtests -----------------------------------------------------------------------------------


def test_backtest_form_is_prefilled_from_a_bot(client, user, bot):
    client.force_login(user)
    text = client.get(f"/backtests/new/?bot={bot.pk}").text
    assert 'value="60000"' in text and 'value="20"' in text
    assert 'type="date"' in text


def test_backtest_runs_and_shows_its_result(
    client, user, rules, monkeypatch, django_capture_on_commit_callbacks
):
    make_candles("BTC/USDT", 600, start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC))
    ran = []
    monkeypatch.setattr("bots.tasks.backtest_task", lambda pk: ran.append(pk))
    client.force_login(user)
    data = FORM | {"start": "2025-06-02", "end": "2025-06-02"}
    data.pop("name"), data.pop("mode"), data.pop("max_daily_loss")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/backtests/new/", data)
    run = BacktestRun.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/backtests/{run.pk}/"
    assert run.start == dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
    assert run.end == dt.datetime(2025, 6, 3, tzinfo=dt.UTC)
    assert ran == [run.pk]

    polling = client.get(f"/backtests/{run.pk}/", headers=HX).text
    assert 'hx-trigger="every 1s"' in polling and "Queued" in polling

    from bots.backtest_runs import run_backtest_job

    run_backtest_job(run.pk)
    run.refresh_from_db()
    assert run.status == BacktestRun.Status.DONE and run.progress == 100
    done = client.get(f"/backtests/{run.pk}/", headers=HX).text
    assert "every 1s" not in done and "Total profit" in done and "Round trips" in done
    chart = client.get(f"/backtests/{run.pk}/data.json").json()
    assert len(chart["candles"]) == 600 and len(chart["lines"]) == 20
    assert chart["equity"]


def test_backtest_without_candles_fails_in_words(client, user, rules):
    run = BacktestRun.objects.create(
        owner=user,
        symbol="BTC/USDT",
        start=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2020, 1, 2, tzinfo=dt.UTC),
        config=CONFIG,
    )
    from bots.backtest_runs import run_backtest_job

    run_backtest_job(run.pk)
    run.refresh_from_db()
    assert run.status == BacktestRun.Status.FAILED and "import them first" in run.error
    client.force_login(user)
    assert "The backtest failed" in client.get(f"/backtests/{run.pk}/").text


def test_trades_fixture_sanity(running_bot):
    make_trades(running_bot, 2)
    assert Trade.objects.filter(bot=running_bot).count() == 2
