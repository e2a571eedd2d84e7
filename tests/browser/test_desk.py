"""The trading desk end to end in a real Chromium, on the embedded stack (in-memory layer).

Register, create a paper bot through the form and its live preview, start it, watch the chart
draw the grid and the resting orders, make the market cross the next buy (stored candles and
one bot cycle, run from the test thread: its push reaches the page over the websocket), then
stop everything with the emergency stop.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal as D

import pytest
from django.db import connection

from bots import cycle, services
from bots.models import BacktestRun, Bot, Order
from market.push import publish_price
from tests.browser.conftest import log_in, register, screenshot

pytestmark = pytest.mark.browser

PRICE = D("65000")
T0 = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)


def market(symbol: str = "BTC/USDT") -> None:
    """Rules for the pair, an hour of candles around 65,000 and the latest price."""
    from market.models import Candle, LatestPrice, MarketRules

    MarketRules.objects.update_or_create(
        exchange="binance",
        symbol=symbol,
        defaults={
            "base": "BTC",
            "quote": "USDT",
            "tick": D("0.01"),
            "step": D("0.00001"),
            "min_notional": D("5"),
            "fee": D("0.001"),
        },
    )
    Candle.objects.bulk_create(
        candle(T0 + dt.timedelta(minutes=i), PRICE + (i % 5) * 20, PRICE + (i % 3) * 20)
        for i in range(60)
    )
    LatestPrice.objects.update_or_create(
        exchange="binance",
        symbol=symbol,
        defaults={"price": PRICE, "at": T0 + dt.timedelta(hours=1)},
    )


def candle(at: dt.datetime, open_: D, close: D, low: D | None = None, high: D | None = None):
    from market.models import Candle

    return Candle(
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="1m",
        open_time=at,
        open=open_,
        high=high or max(open_, close) + 10,
        low=low or min(open_, close) - 10,
        close=close,
        volume=D("1"),
    )


def in_thread(fn: Callable[[], object]) -> None:
    """Run ``fn`` in a thread of its own: Playwright keeps an event loop running in this one,
    and a push (async_to_sync onto the shared in-memory layer) needs a thread without."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # re-raised in the test thread
            errors.append(e)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if errors:
        raise errors[0]


def test_the_desk_from_a_new_bot_to_a_live_fill_and_the_emergency_stop(page, live_url):
    market()
    register(page, live_url, "desk@example.com")
    assert page.get_by_text("No bots yet").is_visible()
    page.get_by_role("link", name="Create your first bot").click()

    # The form and its live grid preview (the advisor's dialog has fields of its own).
    form = page.locator("#bot-form")
    form.get_by_label("Name", exact=True).fill("Desk grid")
    form.get_by_label("Capital", exact=True).fill("1000")
    form.get_by_label("Lower price", exact=True).fill("60000")
    form.get_by_label("Upper price", exact=True).fill("70000")
    form.get_by_label("Price lines").fill("20")
    preview = page.locator("#grid-preview")
    lines = preview.get_by_test_id("preview-lines")
    lines.filter(has_text="20 from 60,000.00 to 70,000.00").wait_for()
    amount_20 = preview.get_by_test_id("preview-amount").inner_text()
    form.get_by_label("Price lines").fill("30")
    lines.filter(has_text="30 from").wait_for()
    assert preview.get_by_test_id("preview-amount").inner_text() != amount_20
    assert preview.locator("line.buy").count() > 0 and preview.locator("line.sell").count() > 0

    # An invalid range: an error in words next to the field, and nothing saved.
    form.get_by_label("Upper price", exact=True).fill("50000")
    error = page.locator("#id_upper_bound-errors")
    error.get_by_text("The upper price must be above the lower price").wait_for()
    page.get_by_role("button", name="Create bot").click()
    page.locator("#id_upper_bound-errors").get_by_text("upper price must be above").wait_for()
    assert not Bot.objects.exists()
    form.get_by_label("Upper price", exact=True).fill("70000")
    form.get_by_label("Price lines").fill("20")
    lines.filter(has_text="20 from").wait_for()
    screenshot(page, "desk-new-bot")
    page.get_by_role("button", name="Create bot").click()
    page.wait_for_url(f"{live_url}/bots/*/")
    bot = Bot.objects.get(name="Desk grid")

    # Start it: the status card swaps, the chart draws 20 grid lines and 19 resting orders.
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    page.locator(f"#bot-{bot.pk}-status").get_by_role("button", name="Start").click()
    page.locator(f"#bot-{bot.pk}-status").get_by_text("Running").wait_for()
    chart = page.locator("#bot-chart")
    chart.locator("canvas").first.wait_for()
    page.wait_for_function(
        "() => document.querySelector('#bot-chart').dataset.restingOrders === '19'", timeout=10_000
    )
    assert chart.get_attribute("data-grid-lines") == "20"
    assert int(chart.get_attribute("data-candles")) == 60
    ladder = page.locator(f"#bot-{bot.pk}-ladder")
    assert ladder.locator(".order-status.open").count() == 19
    assert Order.objects.filter(bot=bot, status=Order.Status.OPEN).count() == 19

    # The market falls through the next buy and comes back through the sell above it.
    bot.refresh_from_db()
    buy = bot.engine().next_buy_price
    sell_after = buy + (D("70000") - D("60000")) / 19
    from market.models import Candle

    t = T0 + dt.timedelta(minutes=60)
    Candle.objects.bulk_create(
        [
            candle(t, PRICE, buy + 5, low=buy - 50),
            candle(t + dt.timedelta(minutes=1), buy + 5, sell_after + 30, high=sell_after + 60),
        ]
    )
    page.evaluate("window.__noReload = true")
    in_thread(lambda: cycle.run_cycle(bot.pk))
    page.locator(f"#bot-{bot.pk}-trades .trade").first.wait_for(timeout=10_000)
    page.locator(f"#bot-{bot.pk}-events").get_by_text("Filled").first.wait_for()
    page.wait_for_function("() => Number(document.querySelector('#bot-chart').dataset.fills) >= 2")
    # A price tick from the feed moves the price on the page and the chart's last candle.
    at = T0 + dt.timedelta(minutes=62)
    tick = {"time_ms": int(at.timestamp() * 1000), "open": "65100", "high": "65200",
            "low": "65050", "close": "65123.45"}  # fmt: skip
    in_thread(lambda: publish_price("binance", "BTC/USDT", D("65123.45"), at, candle=tick))
    page.locator(f"#bot-{bot.pk}-price").get_by_text("65,123.45").wait_for()
    assert page.evaluate("window.__noReload") is True  # it all came live, no reload
    screenshot(page, "desk-bot-page")

    # The dashboard, then the emergency stop.
    page.goto(f"{live_url}/")
    card = page.locator(f"#bot-{bot.pk}-card")
    card.get_by_text("Running").wait_for()
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    screenshot(page, "desk-dashboard")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Emergency stop all bots").click()
    page.locator(f"#bot-{bot.pk}-card").get_by_text("Stopped", exact=True).wait_for()
    page.get_by_text("Emergency stop: 1 bot(s) stopped").wait_for()
    assert not Order.objects.filter(bot=bot, status=Order.Status.OPEN).exists()
    bot.refresh_from_db()
    assert bot.status == Bot.Status.STOPPED
    screenshot(page, "desk-dashboard-stopped")


def test_the_desk_fits_a_phone(page, live_url, django_user_model):
    market()
    user = django_user_model.objects.create_user(
        email="phone@example.com", password="a-Long-pw-123"
    )
    bot = services.create_bot(
        user,
        symbol="BTC/USDT",
        name="Phone grid",
        config={
            "capital": "1000",
            "lower_bound": "60000",
            "upper_bound": "70000",
            "grid_levels": "12",
            "spacing": "geometric",
            "stop_loss_pct": "5",
            "max_daily_loss": "0",
            "take_profit": "",
        },
    )
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.locator("#bot-chart canvas").first.wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the bot page scrolls sideways on a phone ({width}px)"
    screenshot(page, "desk-bot-page-phone")
    page.goto(f"{live_url}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "desk-dashboard-phone")


def test_a_backtest_from_the_bot_page_shows_its_result_and_chart(page, live_url, django_user_model):
    market()
    user = django_user_model.objects.create_user(email="bt@example.com", password="a-Long-pw-123")
    bot = services.create_bot(
        user,
        symbol="BTC/USDT",
        name="Backtested grid",
        config={
            "capital": "1000",
            "lower_bound": "64900",
            "upper_bound": "65200",
            "grid_levels": "10",
            "spacing": "arithmetic",
            "stop_loss_pct": "0",
            "max_daily_loss": "0",
            "take_profit": "",
        },
    )
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.get_by_role("link", name="Backtest this grid").click()
    assert page.get_by_label("Lower price", exact=True).input_value() == "64900"
    page.get_by_label("From").fill("2025-06-02")
    page.get_by_label("To (inclusive)").fill("2025-06-02")
    page.get_by_role("button", name="Run backtest").click()
    page.wait_for_url(f"{live_url}/backtests/*/")
    page.get_by_role("heading", name="Result").wait_for(timeout=20_000)  # polled, no reload
    page.locator("#backtest-chart canvas").first.wait_for()
    page.wait_for_function("() => document.querySelector('#backtest-chart').dataset.ready === '1'")
    assert page.locator("#backtest-chart").get_attribute("data-grid-lines") == "10"
    run = BacktestRun.objects.get(owner=user)
    assert run.status == BacktestRun.Status.DONE and run.result["candles"] == 60
    screenshot(page, "desk-backtest")
