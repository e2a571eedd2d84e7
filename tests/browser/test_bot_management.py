"""Managing bots in a real Chromium (issue 14): Stop asks and offers Binance's choice, and its
answer refreshes every card of the page; a loss under a cent is a red minus; delete after the
CSV export; archive and unarchive from the dashboard."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from bots import services
from bots.models import Bot, Order, PaperBalance, Trade
from tests.browser.conftest import log_in, screenshot
from tests.browser.test_desk import in_thread, market

pytestmark = pytest.mark.browser

CONFIG = {
    "capital": "1000", "lower_bound": "60000", "upper_bound": "70000", "grid_levels": "20",
    "spacing": "arithmetic", "stop_loss_pct": "5", "max_daily_loss": "25", "take_profit": "",
}  # fmt: skip
RED = "rgb(239, 83, 80)"  # --sell


def trader(django_user_model: Any, email: str) -> Any:
    return django_user_model.objects.create_user(email=email, password="a-Long-pw-123")


def running(user: Any, name: str = "Managed grid") -> Bot:
    bot = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name=name)
    # A start pushes to the bot's watchers: from a thread without Playwright's event loop.
    in_thread(lambda: services.start_bot(bot))
    bot.refresh_from_db()
    return bot


def test_stop_asks_keep_or_sell_and_its_answer_refreshes_every_card(
    page, live_url, django_user_model
):
    market()
    user = trader(django_user_model, "stop@example.com")
    bot = running(user)
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    stats = page.locator(f"#bot-{bot.pk}-stats")
    assert stats.locator(f"#bot-{bot.pk}-open-orders").inner_text() == "19"
    # The protection is on the page: the stop-loss 5 % under the range, the daily limit.
    risk = page.locator(f"#bot-{bot.pk}-risk")
    assert "57,000.00 USDT" in risk.inner_text() and "25.00 USDT" in risk.inner_text()
    page.evaluate("window.__noReload = true")

    page.locator(f"#bot-{bot.pk}-status").get_by_role("link", name="Stop…").click()
    dialog = page.locator(f"#bot-{bot.pk}-stop-confirm")
    dialog.wait_for()
    assert dialog.get_by_text("19 open orders are cancelled").is_visible()
    assert dialog.get_by_label("Keep the BTC").is_checked()  # the default keeps the coins
    screenshot(page, "stop-choice")
    dialog.get_by_label("Sell it at market").check()
    dialog.get_by_role("button", name="Stop the bot").click()

    dialog.wait_for(state="detached")  # the answer empties the confirmation slot
    status = page.locator(f"#bot-{bot.pk}-status")
    status.get_by_text("Stopped", exact=True).wait_for()
    # Every card, not only Status: open orders, the ladder, the log.
    page.locator(f"#bot-{bot.pk}-open-orders").filter(has_text="0").wait_for()
    ladder = page.locator(f"#bot-{bot.pk}-ladder")
    assert "Stopped: no orders rest on the book" in ladder.inner_text()
    assert ladder.locator(".order-status").count() == 0
    events = page.locator(f"#bot-{bot.pk}-events")
    assert "Stopped: stopped by you" in events.inner_text()
    assert "sold at market" in page.locator("#messages").inner_text()
    assert page.evaluate("window.__noReload") is True
    assert not PaperBalance.objects.filter(owner=user, asset="BTC", free__gt=0).exists()
    assert not Order.objects.filter(bot=bot, status=Order.Status.OPEN).exists()
    screenshot(page, "stop-every-card")


def test_a_loss_under_a_cent_is_a_red_minus_on_the_page_and_the_dashboard(
    page, live_url, django_user_model
):
    market()
    user = trader(django_user_model, "loss@example.com")
    bot = running(user)
    sell = Order.objects.create(
        bot=bot, slot=3, side="sell", price=D("61578.95"), amount=D("0.00016"),
        status=Order.Status.FILLED, client_order_id="loss-1",
        filled_at=dt.datetime(2025, 6, 2, 0, 59, tzinfo=dt.UTC),
    )  # fmt: skip
    Trade.objects.create(
        bot=bot, slot=3, sell_order=sell, amount=D("0.00016"), buy_price=D("61052.63"),
        sell_price=D("61578.95"), profit=D("-0.000319"), fees=D("0.019"),
        closed_at=dt.datetime(2025, 6, 2, 0, 59, tzinfo=dt.UTC),
    )  # fmt: skip
    state = dict(bot.engine_state)
    state["grid_profit"], state["total_trades"] = "-0.000319", 1
    Bot.objects.filter(pk=bot.pk).update(engine_state=state)
    log_in(page, live_url, user.email)
    card = page.locator(f"#bot-{bot.pk}-card")
    grid_profit = card.locator("dt:text-is('Grid profit') + dd")
    expect(grid_profit).to_have_text("-0.00032 USDT")
    expect(grid_profit).to_have_css("color", RED)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    profit = page.locator(f"#bot-{bot.pk}-trades .trade td").last
    expect(profit).to_have_text("-0.00032 USDT")
    expect(profit).to_have_css("color", RED)
    assert "+0.00" not in page.locator("main").inner_text()


def test_delete_offers_the_csv_export_first_then_removes_the_bot(page, live_url, django_user_model):
    market()
    user = trader(django_user_model, "delete@example.com")
    bot = running(user, "Doomed grid")
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.get_by_role("link", name="Delete…").click()
    page.wait_for_url(f"{live_url}/bots/{bot.pk}/delete/")
    assert "is running" in page.locator("main").inner_text()
    with page.expect_download() as download:
        page.get_by_role("link", name="Trades (CSV)").click()
    rows = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("time_utc,side,type,price,amount") and ",buy,market," in rows[1]
    assert download.value.suggested_filename == f"btc-usdt-grid-{bot.pk}-trades.csv"
    page.get_by_role("button", name="Delete Doomed grid").click()
    page.wait_for_url(f"{live_url}/")
    page.get_by_text("Doomed grid was deleted, with its history.").wait_for()
    assert not Bot.objects.filter(pk=bot.pk).exists()
    assert PaperBalance.objects.get(owner=user, asset="USDT").locked == 0


def test_archive_and_unarchive_from_the_dashboard(page, live_url, django_user_model):
    market()
    user = trader(django_user_model, "archive@example.com")
    keep = running(user, "Kept grid")
    old = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name="Old grid")
    log_in(page, live_url, user.email)
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    page.locator(f"#bot-{old.pk}-card").get_by_role("button", name="Archive").click()
    archived = page.locator("#archived-bots")
    archived.get_by_role("link", name="Old grid").wait_for()
    assert page.locator(f"#bot-{old.pk}-card").count() == 0
    assert page.locator(f"#bot-{keep.pk}-card").is_visible()
    assert "1,000.00 USDT" in page.locator("#total-usdt").inner_text()  # the active bot only
    screenshot(page, "dashboard-archived")
    archived.get_by_role("button", name="Unarchive").click()
    page.locator(f"#bot-{old.pk}-card").wait_for()
    assert page.locator("#archived-bots").count() == 0
    page.get_by_text("is back among your bots").wait_for()


def test_stop_from_a_dashboard_card_keeping_the_coins_updates_card_totals_and_wallet(
    page, live_url, django_user_model
):
    market()
    user = trader(django_user_model, "card-stop@example.com")
    bot = running(user, "Card grid")
    held = bot.engine().base
    log_in(page, live_url, user.email)
    page.locator(".live-indicator[data-live-state='live']").wait_for()
    wallet = page.locator("#paper-balance")
    assert "in running bots" in wallet.inner_text()
    page.evaluate("window.__noReload = true")
    card = page.locator(f"#bot-{bot.pk}-card")
    card.get_by_role("link", name="Stop…").click()
    dialog = page.locator(f"#bot-{bot.pk}-stop-confirm")
    dialog.get_by_label("Keep the BTC").check()
    dialog.get_by_role("button", name="Stop the bot").click()
    dialog.wait_for(state="detached")
    card.get_by_text("Stopped", exact=True).wait_for()
    expect(card.locator("dt:text-is('Open orders') + dd")).to_have_text("0")
    # The wallet, out of band: the coins are back in it as BTC and valued at the price now.
    expect(wallet).to_contain_text(f"{held.normalize():f} BTC")
    expect(wallet).to_contain_text("in coins")
    expect(wallet).not_to_contain_text("in running bots")
    assert card.get_by_role("button", name="Archive").is_visible()  # a stopped bot can be
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "dashboard-card-stopped")


def test_the_management_pages_fit_a_phone(page, live_url, django_user_model):
    from bots.models import BacktestRun

    market()
    user = trader(django_user_model, "phone-manage@example.com")
    bot = running(user, "Phone grid")
    put_away = services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG), name="Old one")
    services.archive_bot(put_away)
    BacktestRun.objects.create(
        owner=user, symbol="BTC/USDT", start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 9, tzinfo=dt.UTC), config=CONFIG,
        status=BacktestRun.Status.DONE, progress=100,
        result={"total_profit": "-12.345", "total_trades": 40},
    )  # fmt: skip
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_url, user.email)

    def fits(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} scrolls sideways on a phone ({width}px)"

    page.locator("#archived-bots").wait_for()
    fits("the dashboard with totals and archived bots")
    page.goto(f"{live_url}/backtests/")
    page.locator("table.backtests").wait_for()
    fits("the backtest history")
    page.goto(f"{live_url}/bots/{bot.pk}/delete/")
    fits("the delete page")
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.locator(f"#bot-{bot.pk}-status").get_by_role("link", name="Stop…").click()
    dialog = page.locator(f"#bot-{bot.pk}-stop-confirm")
    dialog.wait_for()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    fits("the bot page with Stop's dialog")
    screenshot(page, "stop-choice-phone")
