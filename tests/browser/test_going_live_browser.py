"""Starting a live bot in a real Chromium: Start opens a dialog that says what will happen, the
pair typed wrong is refused by the server, typed right the bot starts on the fake Binance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ExchangeCredential
from bots import services
from bots.models import Bot
from market.models import Candle, LatestPrice, MarketRules
from tests.bots.conftest import open_live_gate
from tests.browser.conftest import log_in, screenshot

pytestmark = pytest.mark.browser

API_KEY = "live-key-Br0wser7890abcd"
SECRET = "live-secret-Br0wser123456"
CONFIG = {
    "capital": "1000", "lower_bound": "95000", "upper_bound": "105000", "grid_levels": "10",
    "spacing": "arithmetic", "stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": "",
}  # fmt: skip


@pytest.fixture
def live_market(transactional_db: None, settings: Any) -> None:
    settings.MARKET_FEED = "live"  # live bots trade on live prices only
    now = timezone.now()
    MarketRules.objects.update_or_create(
        exchange="binance", symbol="BTC/USDT",
        defaults={"base": "BTC", "quote": "USDT", "tick": Decimal("0.01"),
                  "step": Decimal("0.00001"), "min_notional": Decimal("5"),
                  "min_amount": Decimal("0.00001"), "fee": Decimal("0.001")},
    )  # fmt: skip
    price = Decimal(100000)
    Candle.objects.create(
        exchange="binance", symbol="BTC/USDT", timeframe="1m",
        open_time=now.replace(second=0, microsecond=0), open=price, high=price, low=price,
        close=price, volume=Decimal(1),
    )  # fmt: skip
    LatestPrice.objects.update_or_create(
        exchange="binance", symbol="BTC/USDT", defaults={"price": price, "at": now}
    )


def signed_in_with_a_live_bot(
    page: Any, live_url: str, fake_binance: Any, django_user_model: Any, email: str, name: str
) -> tuple[Any, Bot]:
    """The fake Binance, and a trader past paper first with verified keys and a stopped live
    bot ``name`` on them, signed in on the dashboard."""
    fake = fake_binance(
        api_key=API_KEY, secret=SECRET, balances={"USDT": "5000"}, prices={"BTCUSDT": "100000"},
        as_exchange=True, timeout_ms=2000,
    )  # fmt: skip
    user = django_user_model.objects.create_user(email=email, password="a-Long-pw-123")
    open_live_gate(user, reason="browser test of the confirmation")
    keys = ExchangeCredential(owner=user, label="main", verified_at=timezone.now())
    keys.set_keys(API_KEY, SECRET)
    keys.save()
    bot = services.create_bot(
        user, symbol="BTC/USDT", name=name, config=CONFIG, mode=Bot.Mode.LIVE, credential=keys
    )
    log_in(page, live_url, user.email)
    return fake, bot


def test_a_live_start_is_confirmed_in_a_dialog_by_typing_the_pair(
    page, live_url, live_market, fake_binance, django_user_model
):
    fake, bot = signed_in_with_a_live_bot(
        page, live_url, fake_binance, django_user_model, "live@example.com", "Real grid"
    )
    page.goto(f"{live_url}/bots/{bot.pk}/")
    # The page's socket sends a fresh status card as it connects: click after that.
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    status = page.locator(f"#bot-{bot.pk}-status")
    status.get_by_role("button", name="Start").click()

    # The summary, in a modal dialog: nothing has happened on the exchange yet.
    dialog = page.get_by_role("dialog", name="Start Real grid on Binance (real money)?")
    dialog.wait_for()
    summary = dialog.get_by_test_id("confirm-summary")
    assert "keys “main”" in summary.inner_text()
    assert "BTC/USDT at 100,000.00 USDT" in summary.inner_text()
    assert "1,000.00 USDT" in summary.inner_text()
    assert "for about" in dialog.get_by_test_id("confirm-buy").inner_text()
    assert dialog.get_by_test_id("confirm-orders").inner_text() == (
        "9 limit orders on 10 price lines"
    )
    assert page.evaluate(f"document.getElementById('bot-{bot.pk}-confirm').open") is True
    assert fake.orders() == []
    screenshot(page, "going-live-confirm")

    # Typed wrong: the server refuses and asks again, nothing is sent.
    dialog.get_by_label("Type BTC/USDT to start it").fill("ETH/USDT")
    dialog.get_by_role("button", name="Start live").click()
    page.get_by_role("dialog").get_by_text("You typed “ETH/USDT”, not BTC/USDT").wait_for()
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED and fake.orders() == []

    # Typed right: the bot runs, its grid rests on the exchange.
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Type BTC/USDT to start it").fill("BTC/USDT")
    dialog.get_by_role("button", name="Start live").click()
    status.get_by_text("Running").wait_for()
    page.get_by_text("Real grid started.").wait_for()
    assert page.get_by_role("dialog").count() == 0
    bot.refresh_from_db()
    assert bot.is_running
    assert sum(1 for o in fake.orders("BTCUSDT") if o.type == "MARKET") == 1
    screenshot(page, "going-live-running")


def test_cancel_closes_the_dialog_and_starts_nothing(
    page, live_url, live_market, fake_binance, django_user_model
):
    fake, bot = signed_in_with_a_live_bot(
        page, live_url, fake_binance, django_user_model, "wary@example.com", "Wary grid"
    )

    # From the dashboard's card this time.
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    card = page.locator(f"#bot-{bot.pk}-card")
    card.get_by_role("button", name="Start").click()
    dialog = page.get_by_role("dialog", name="Start Wary grid on Binance (real money)?")
    dialog.wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED and fake.orders() == []
