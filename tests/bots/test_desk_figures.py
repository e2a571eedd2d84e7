"""Figures a trader must be able to trust on the bot page and the dashboard (issue 14): each
test is named after the bug it proves fixed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest

from bots import services
from bots.models import Bot, Order, Trade
from bots.templatetags.money import money_signed
from tests.bots.conftest import CONFIG

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
LOSS = D("-0.000319")


@pytest.fixture
def running_bot(user: Any, rules: None, price: D) -> Bot:
    b = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name="Running grid")
    services.start_bot(b)
    b.refresh_from_db()
    return b


def losing_round_trip(bot: Bot) -> None:
    """One round trip that lost 0.000319 USDT, on the books and in the engine's grid profit."""
    sell = Order.objects.create(
        bot=bot, slot=3, side="sell", price=D("61578.95"), amount=D("0.00016"),
        status=Order.Status.FILLED, client_order_id=f"loss-{bot.pk}",
        filled_at=dt.datetime(2025, 6, 2, 0, 7, tzinfo=dt.UTC),
    )  # fmt: skip
    Trade.objects.create(
        bot=bot, slot=3, sell_order=sell, amount=D("0.00016"), buy_price=D("61052.63"),
        sell_price=D("61578.95"), profit=LOSS, fees=D("0.019"),
        closed_at=dt.datetime(2025, 6, 2, 0, 7, tzinfo=dt.UTC),
    )  # fmt: skip
    state = dict(bot.engine_state)
    state["grid_profit"], state["total_trades"] = str(LOSS), 1
    bot.engine_state = state
    bot.save(update_fields=["engine_state"])


# --- a loss under a cent ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("-0.000319", "-0.00032 USDT"),
        ("0.000319", "+0.00032 USDT"),
        ("-0.0049", "-0.0049 USDT"),
        ("-0.005", "-0.01 USDT"),
        ("0.004", "+0.004 USDT"),
        ("0", "0.00 USDT"),
        ("-0", "0.00 USDT"),
        ("-0E-12", "0.00 USDT"),
        ("-1234.567", "-1,234.57 USDT"),
        ("12.5", "+12.50 USDT"),
    ],
)
def test_a_signed_amount_keeps_its_sign_true(value, shown):
    assert money_signed(D(value), "USDT") == shown


def test_a_loss_under_a_cent_never_shows_as_plus_zero(client, user, running_bot):
    losing_round_trip(running_bot)
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    trades = page.split(f'id="bot-{running_bot.pk}-trades"')[1].split("</section>")[0]
    assert '<td class="num neg">-0.00032 USDT</td>' in trades
    stats = page.split(f'id="bot-{running_bot.pk}-stats"')[1].split("</section>")[0]
    assert 'Grid profit</dt><dd class="num neg">-0.00032 USDT' in stats
    for text in (page, client.get("/").text):
        assert "+0.00 USDT" not in text and "-0.00 USDT" not in text
    card = client.get("/").text.split(f'id="bot-{running_bot.pk}-card"')[1].split("</article>")[0]
    assert '<dd class="num neg">-0.00032 USDT</dd>' in card


# --- a stopped bot's open orders ----------------------------------------------------------------


def test_a_stopped_bot_shows_no_open_orders_and_labels_the_grid_it_would_place(
    client, user, running_bot
):
    services.stop_bot(running_bot, reason="stopped by you")
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    stats = page.split(f'id="bot-{running_bot.pk}-stats"')[1].split("</section>")[0]
    assert f'id="bot-{running_bot.pk}-open-orders">0</dd>' in stats
    ladder = page.split(f'id="bot-{running_bot.pk}-ladder"')[1].split("</section>")[0]
    assert "Stopped: no orders rest on the book" in ladder
    assert ">Would place</th>" in ladder and ">Resting order</th>" not in ladder
    assert 'class="order-status' not in ladder and "not yet" not in ladder


def test_a_running_bot_counts_the_orders_resting_on_the_book(client, user, running_bot):
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    assert f'id="bot-{running_bot.pk}-open-orders">19</dd>' in page
    assert ">Resting order</th>" in page


# --- APR only from a day on ---------------------------------------------------------------------


def ran_for(bot: Bot, elapsed: dt.timedelta, profit: D) -> None:
    """The bot ran ``elapsed`` of market time and its equity is ``profit`` above its capital."""
    state = dict(bot.engine_state)
    state["quote"] = str(D(state["quote"]) + profit)
    bot.engine_state = state
    bot.last_equity = (bot.last_equity or bot.capital) + profit
    bot.cursor = bot.market_started_at + elapsed
    bot.save(update_fields=["engine_state", "last_equity", "cursor"])


def test_two_hours_show_the_return_not_an_apr_projected_from_them(client, user, running_bot):
    ran_for(running_bot, dt.timedelta(hours=2), D("-0.37"))
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    stats = page.split(f'id="bot-{running_bot.pk}-stats"')[1].split("</section>")[0]
    assert "<dt>APR</dt>" not in stats
    assert "<dt>Return (2 h 0 min)</dt>" in stats
    card = client.get("/").text.split(f'id="bot-{running_bot.pk}-card"')[1].split("</article>")[0]
    assert "<dt>APR</dt>" not in card and "Return (2 h 0 min)" in card


def test_from_a_day_on_the_apr_is_shown(client, user, running_bot):
    ran_for(running_bot, dt.timedelta(days=2), D("10"))
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    stats = page.split(f'id="bot-{running_bot.pk}-stats"')[1].split("</section>")[0]
    # The equity moved by the engine's marks too: the APR is the return over two days x 182.5.
    apr = stats.split("<dt>APR</dt>")[1].split("</dd>")[0]
    assert apr.endswith(" %") and "Return" not in stats
    card = client.get("/").text.split(f'id="bot-{running_bot.pk}-card"')[1].split("</article>")[0]
    assert "<dt>APR</dt>" in card


# --- one clock ----------------------------------------------------------------------------------


def test_started_the_log_and_round_trips_run_on_one_labelled_clock(
    client, user, running_bot, settings
):
    settings.MARKET_FEED = "replay"
    losing_round_trip(running_bot)
    client.force_login(user)
    page = client.get(f"/bots/{running_bot.pk}/").text
    # The start happened at the market's last candle (2025-06-01 00:00), whatever the wall says.
    status = page.split(f'id="bot-{running_bot.pk}-status"')[1].split("</section>")[0]
    assert '2025-06-01 00:00:00</time> <span class="clock">(replay market time, UTC)' in status
    events = page.split(f'id="bot-{running_bot.pk}-events"')[1].split("</section>")[0]
    assert "(replay market time, UTC)" in events and ">2025-06-01 00:00:00</time>" in events
    trades = page.split(f'id="bot-{running_bot.pk}-trades"')[1].split("</section>")[0]
    assert 'Closed <span class="clock">(replay market time, UTC)' in trades
    assert ">2025-06-02 00:07:00</time>" in trades
    settings.MARKET_FEED = "live"
    assert "replay market time" not in client.get(f"/bots/{running_bot.pk}/").text


# --- risk settings ------------------------------------------------------------------------------


def test_the_bot_page_shows_its_risk_settings(client, user, make_bot, rules, price):
    bot = make_bot(CONFIG | {"stop_loss_pct": "5", "take_profit": "75000", "max_daily_loss": "20"})
    plain = make_bot(dict(CONFIG))
    client.force_login(user)
    risk = client.get(f"/bots/{bot.pk}/").text.split(f'id="bot-{bot.pk}-risk"')[1]
    risk = risk.split("</dl>")[0]
    assert 'Stop-loss</dt><dd class="num">57,000.00 USDT' in risk and "5 % below" in risk
    assert 'Take-profit</dt><dd class="num">75,000.00 USDT' in risk
    assert 'Daily loss limit</dt><dd class="num">20.00 USDT' in risk
    off = client.get(f"/bots/{plain.pk}/").text.split(f'id="bot-{plain.pk}-risk"')[1]
    assert off.split("</dl>")[0].count(">off</span>") == 3


# --- the paper wallet's value and the totals ----------------------------------------------------


def test_the_paper_wallet_shows_its_value_at_the_prices_now(client, user, running_bot):
    from bots.ledger import paper_balance

    coins = paper_balance(user, "BTC")
    coins.free = D("0.01")  # kept from an earlier stop
    coins.save()
    client.force_login(user)
    page = client.get("/").text
    wallet = page.split('id="paper-balance"')[1].split("</section>")[0]
    # 9,000 free + 0.01 BTC at 65,000 + the running bot's 1,000 USDT of capital, as it stands.
    equity = running_bot.engine().equity(D("65000"))
    total = D("9000") + D("650") + equity
    assert f'Value now</span> <strong class="num">{total:,.2f} USDT</strong>' in wallet
    assert "650.00 USDT in coins" in wallet and f"{equity:,.2f} USDT in running bots" in wallet


def test_the_dashboard_adds_up_every_bot(client, user, running_bot, make_bot):
    second = make_bot(CONFIG | {"capital": "500"}, name="Second")
    Bot.objects.filter(pk=second.pk).update(last_equity=D("512.5"))
    Bot.objects.filter(pk=running_bot.pk).update(last_equity=D("990"))
    client.force_login(user)
    row = client.get("/").text.split('id="total-usdt"')[1].split("</tr>")[0]
    assert ">2</td>" in row and "1,500.00 USDT" in row
    assert '<td class="num pos">+2.50 USDT</td>' in row and "0.17 %" in row


def test_a_card_shows_range_capital_profit_and_return(client, user, running_bot):
    client.force_login(user)
    card = client.get("/").text.split(f'id="bot-{running_bot.pk}-card"')[1].split("</article>")[0]
    assert "<dt>Range</dt>" in card and "60,000.00 – 70,000.00" in card
    assert "<dt>Capital</dt>" in card and "1,000.00 USDT" in card
    assert "<dt>Total profit</dt>" in card and "<dt>Return (0 min)</dt>" in card


# --- stop: keep the coins or sell them -----------------------------------------------------------


def test_stop_asks_first_whether_to_keep_or_sell_the_coins(client, user, running_bot):
    client.force_login(user)
    dialog = client.get(f"/bots/{running_bot.pk}/stop/?on=card", headers=HX).text
    assert 'id="start-confirm"' in dialog and "<dialog" in dialog and "data-show-modal" in dialog
    assert "19 open orders are cancelled" in dialog
    assert 'name="sell" value="0" checked' in dialog and 'name="sell" value="1"' in dialog
    assert "Keep the BTC" in dialog and "Sell it at market" in dialog
    assert f'hx-target="#bot-{running_bot.pk}-card"' in dialog
    running_bot.refresh_from_db()
    assert running_bot.is_running  # asking stops nothing
    page = client.get(f"/bots/{running_bot.pk}/stop/").text  # without JavaScript: a page
    assert "<html" in page and 'name="sell" value="1"' in page


def test_stop_refreshes_every_card_of_the_bot_page(client, user, running_bot):
    client.force_login(user)
    response = client.post(
        f"/bots/{running_bot.pk}/stop/",
        {"sell": "0"},
        headers=HX | {"HX-Target": f"bot-{running_bot.pk}-status"},
    )
    text = response.text
    pk = running_bot.pk
    assert text.lstrip().startswith(f'<section class="card status-card" id="bot-{pk}-status"')
    for part in ("stats", "ladder", "trades", "events"):
        head = text.split(f'id="bot-{pk}-{part}"')[1].split(">")[0]
        assert 'hx-swap-oob="true"' in head, part
    assert f'id="bot-{pk}-open-orders">0</dd>' in text
    assert "Stopped: no orders rest on the book" in text
    assert 'id="start-confirm" hx-swap-oob="true"' in text  # the dialog closes
    assert "Running grid stopped." in text


def test_stop_selling_the_coins_sells_them_at_market(client, user, running_bot):
    from bots.models import PaperBalance

    assert running_bot.engine().base > 0
    client.force_login(user)
    response = client.post(
        f"/bots/{running_bot.pk}/stop/",
        {"sell": "1"},
        headers=HX | {"HX-Target": f"bot-{running_bot.pk}-card"},
    )
    assert "Its BTC was sold at market." in response.text
    running_bot.refresh_from_db()
    assert running_bot.status == Bot.Status.STOPPED
    assert not PaperBalance.objects.filter(owner=user, asset="BTC", free__gt=0).exists()
    assert running_bot.orders.filter(kind=Order.Kind.MARKET, side="sell").exists()


def test_stop_keeping_the_coins_returns_them_to_the_wallet(client, user, running_bot):
    from bots.models import PaperBalance

    held = running_bot.engine().base
    client.force_login(user)
    client.post(f"/bots/{running_bot.pk}/stop/", {"sell": "0"})
    assert PaperBalance.objects.get(owner=user, asset="BTC").free >= held > 0


# --- CSV exports --------------------------------------------------------------------------------


def test_round_trips_export_as_csv_with_exact_figures_and_utc_times(client, user, running_bot):
    losing_round_trip(running_bot)
    client.force_login(user)
    response = client.get(f"/bots/{running_bot.pk}/round-trips.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        f'attachment; filename="btc-usdt-grid-{running_bot.pk}-round-trips.csv"'
    )
    lines = response.content.decode().splitlines()
    assert lines[0] == "closed_utc,grid,amount,buy_price,sell_price,fees,profit,quote_asset"
    assert lines[1] == ("2025-06-02T00:07:00Z,3,0.00016,61052.63,61578.95,0.019,-0.000319,USDT")


def test_trades_export_lists_every_fill_oldest_first(client, user, running_bot):
    losing_round_trip(running_bot)
    client.force_login(user)
    response = client.get(f"/bots/{running_bot.pk}/trades.csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = response.content.decode().splitlines()
    assert rows[0].startswith("time_utc,side,type,price,amount,value,fee,fee_asset,grid,")
    start_buy, loss_sell = rows[1].split(","), rows[2].split(",")
    assert start_buy[1:3] == ["buy", "market"] and start_buy[0] == "2025-06-01T00:00:00Z"
    assert loss_sell[:5] == ["2025-06-02T00:07:00Z", "sell", "limit", "61578.95", "0.00016"]
    assert loss_sell[5] == str(D("61578.95") * D("0.00016")).rstrip("0") and loss_sell[8] == "3"
    assert len(rows) == 3  # resting orders are not trades


def test_another_users_export_is_not_found(client, other_user, running_bot):
    client.force_login(other_user)
    for name in ("round-trips", "trades"):
        assert client.get(f"/bots/{running_bot.pk}/{name}.csv").status_code == 404


def test_stop_asked_of_a_bot_not_running_or_stopping_already_says_so(client, user, running_bot):
    client.force_login(user)
    Bot.objects.filter(pk=running_bot.pk).update(stopping_reason="stopped by you")
    dialog = client.get(f"/bots/{running_bot.pk}/stop/", headers=HX).text
    assert "is stopping already (stopped by you)" in dialog and 'name="sell"' not in dialog
    Bot.objects.filter(pk=running_bot.pk).update(status=Bot.Status.STOPPED, stopping_reason="")
    page = client.get(f"/bots/{running_bot.pk}/stop/").text
    assert "is not running: there is nothing to stop" in page and 'name="sell"' not in page
