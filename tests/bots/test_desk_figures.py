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
