"""Editing a running paper grid in a real Chromium (issue 17): the change shows as a diff of
orders while the fields are typed, Apply lays it, and the bot page's ladder and chart show the
new grid."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from bots import cycle, services
from bots.models import BotEvent
from tests.browser.conftest import log_in, screenshot
from tests.browser.test_bot_management import running, trader
from tests.browser.test_desk import in_thread, market
from tests.browser.test_going_live_browser import (
    live_market,  # noqa: F401  (a fixture)
    signed_in_with_a_live_bot,
)

pytestmark = pytest.mark.browser


def test_edit_a_running_paper_grid_see_the_diff_apply_it_and_see_the_new_grid(
    page, live_url, django_user_model
):
    market()
    user = trader(django_user_model, "edit-grid@example.com")
    bot = running(user, name="Edited grid")
    started_at = bot.started_at
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.locator(f"#bot-{bot.pk}-status").get_by_role("link", name="Edit grid").click()
    page.wait_for_url(f"{live_url}/bots/{bot.pk}/grid/")
    diff = page.locator(f"#bot-{bot.pk}-diff")
    diff.get_by_test_id("diff-none").wait_for()  # nothing typed: nothing changes
    assert diff.get_by_role("button", name="Apply the new grid").is_disabled()

    # A wrong range says why, and offers no apply.
    page.get_by_label("Upper price", exact=True).fill("59000")
    diff.get_by_test_id("diff-problem").wait_for()
    assert page.locator("#id_upper_bound-errors .error").is_visible()
    assert diff.get_by_role("button", name="Apply the new grid").is_disabled()

    # A narrower range with fewer lines: the diff lists what is cancelled and placed.
    page.get_by_label("Upper price", exact=True).fill("68000")
    page.get_by_label("Lower price", exact=True).fill("62000")
    page.get_by_label("Price lines", exact=True).fill("13")
    diff.get_by_test_id("diff-summary").wait_for()
    expect(diff.get_by_test_id("diff-places")).to_have_text(re.compile(r"^12: "))
    assert diff.get_by_test_id("diff-cancels").inner_text() == "19"
    placed = diff.get_by_test_id("diff-placed").locator("tbody tr")
    assert placed.count() == 12
    assert "68,000.00" in diff.get_by_test_id("diff-placed").inner_text()
    notes = diff.get_by_test_id("diff-notes").inner_text()
    assert "Range 60000–70000 changed to 62000–68000." in notes
    assert "Price lines 20 changed to 13." in notes
    assert not page.locator("#id_upper_bound-errors .error").count()
    screenshot(page, "edit-grid-diff")

    diff.get_by_role("button", name="Apply the new grid").click()

    page.wait_for_url(f"{live_url}/bots/{bot.pk}/")
    assert "New grid at" in page.locator("#messages").inner_text()
    ladder = page.locator(f"#bot-{bot.pk}-ladder")
    assert ladder.locator("tbody tr").count() == 12
    assert "68,000.00" in ladder.inner_text() and "70,000.00" not in ladder.inner_text()
    assert "New grid" in page.locator(f"#bot-{bot.pk}-events").inner_text()
    # The chart draws the new grid's lines (what its data says, and what it drew).
    data = page.request.get(f"{live_url}/bots/{bot.pk}/candles.json").json()
    assert [float(p) for p in data["lines"]] == [62000.0 + 500 * i for i in range(13)]
    assert {float(o["price"]) for o in data["orders"]} <= set(map(float, data["lines"]))
    page.locator("#bot-chart canvas").first.wait_for()
    screenshot(page, "edit-grid-applied")

    bot.refresh_from_db()
    assert bot.is_running and bot.started_at == started_at
    assert bot.config["grid_levels"] == "13"
    assert BotEvent.objects.filter(bot=bot, kind=BotEvent.Kind.REGRID).exists()

    # The page fits a phone: the fields, then the diff, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_url}/bots/{bot.pk}/grid/")
    page.get_by_label("Price lines", exact=True).fill("15")
    expect(diff.get_by_test_id("diff-places")).to_have_text(re.compile(r"^14: "))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "edit-grid-phone")


@pytest.mark.usefixtures("live_market")
def test_a_live_grid_change_is_confirmed_in_a_dialog_by_typing_the_pair(
    page, live_url, fake_binance, django_user_model
):
    fake, bot = signed_in_with_a_live_bot(
        page, live_url, fake_binance, django_user_model, "live-edit@example.com", "Live grid"
    )
    in_thread(lambda: services.start_bot(bot))
    in_thread(lambda: cycle.run_cycle(bot.pk))  # the grid rests on the fake Binance
    bot.refresh_from_db()
    old_book = {o.client_id for o in fake.orders("BTCUSDT", "NEW")}
    assert len(old_book) == 9
    page.goto(f"{live_url}/bots/{bot.pk}/grid/")
    diff = page.locator(f"#bot-{bot.pk}-diff")
    page.get_by_label("Lower price", exact=True).fill("97000")
    page.get_by_label("Upper price", exact=True).fill("107000")
    expect(diff.get_by_test_id("diff-cancels")).to_have_text("9")
    diff.get_by_role("button", name="Apply on Binance…").click()

    dialog = page.locator(f"#bot-{bot.pk}-edit-confirm")
    dialog.wait_for()
    assert "real orders with real money" in dialog.inner_text()
    assert "9 orders" in dialog.get_by_test_id("edit-confirm-summary").inner_text()
    dialog.get_by_label("Type BTC/USDT to apply the change").fill("ETH/USDT")
    dialog.get_by_role("button", name="Apply live").click()
    dialog = page.locator(f"#bot-{bot.pk}-edit-confirm")
    dialog.get_by_text("You typed “ETH/USDT”, not BTC/USDT: nothing was changed.").wait_for()
    assert {o.client_id for o in fake.orders("BTCUSDT", "NEW")} == old_book
    screenshot(page, "edit-grid-live-confirm")

    dialog.get_by_label("Type BTC/USDT to apply the change").fill("BTC/USDT")
    dialog.get_by_role("button", name="Apply live").click()

    page.wait_for_url(f"{live_url}/bots/{bot.pk}/")
    bot.refresh_from_db()
    assert bot.config["lower_bound"] == "97000"
    new_book = {o.client_id for o in fake.orders("BTCUSDT", "NEW")}
    assert new_book and not new_book & old_book
    assert new_book == set(
        bot.orders.filter(status__in=["pending", "open"]).values_list("client_order_id", flat=True)
    )
