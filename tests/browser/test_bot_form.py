"""The new-bot and backtest forms in Chromium (issue 14): every field's message on submit and
a preview that keeps them, no htmx out-of-band error, the pair's chart beside the form from
the first second with the grid drawn on it as the trader types, a losing grid refused until
the trader ticks the box, and no sideways scrolling at phone size."""

from __future__ import annotations

from typing import Any

import pytest

from bots.models import Bot
from tests.bots.conftest import add_candles, make_rules
from tests.browser.conftest import register, screenshot
from tests.browser.test_desk import market

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
ETH_T0_MS = 1748822400000  # 2025-06-02 00:00 UTC, beside test_desk's BTC/USDT hour


def htmx_errors(page: Any) -> list[str]:
    """Console lines htmx writes for a failed swap (htmx:oobErrorNoTarget and the like)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "htmx:" in m.text else None)
    return seen


def settled(page: Any) -> None:
    """No htmx request in flight (the preview that fires on load has been swapped in)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    page.wait_for_timeout(400)  # the input debounce (300 ms) and one more swap


def fill_grid(form: Any, capital: str, lower: str, upper: str, lines: str) -> None:
    form.get_by_label("Capital", exact=True).fill(capital)
    form.get_by_label("Lower price", exact=True).fill(lower)
    form.get_by_label("Upper price", exact=True).fill(upper)
    form.get_by_label("Price lines").fill(lines)


def test_the_bot_form_logs_no_htmx_oob_error_for_a_user_without_keys(page, live_url):
    market()
    errors = htmx_errors(page)
    register(page, live_url, "nokeys@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    fill_grid(form, "1000", "60000", "70000", "20")
    page.get_by_test_id("preview-lines").filter(has_text="20 from").wait_for()
    form.get_by_label("Upper price", exact=True).fill("50000")  # an error, swapped out of band
    page.locator("#id_upper_bound-errors").get_by_text("upper price must be above").wait_for()
    settled(page)

    assert not [e for e in errors if "oobErrorNoTarget" in e], errors


def test_submitting_empty_and_non_numeric_fields_shows_every_message_and_keeps_them(page, live_url):
    market()
    register(page, live_url, "empty@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    form.get_by_label("Lower price", exact=True).fill("abc")
    page.get_by_role("button", name="Create bot").click()
    page.wait_for_load_state()
    settled(page)  # the preview fired on load must not wipe what the submit said

    assert page.locator("#id_capital-errors").inner_text() == "Enter the capital, such as 1000."
    assert "Enter a number" in page.locator("#id_lower_bound-errors").inner_text()
    assert "Enter the upper price" in page.locator("#id_upper_bound-errors").inner_text()
    assert "price lines" in page.locator("#id_grid_levels-errors").inner_text()
    assert form.get_by_label("Lower price", exact=True).input_value() == "abc"
    screenshot(page, "bot-form-submitted-empty")
    # Fixing one field clears its message; the others stay.
    form.get_by_label("Capital", exact=True).fill("1000")
    page.locator("#id_capital-errors").filter(has_text="Enter").wait_for(state="detached")
    settled(page)
    assert "Enter the upper price" in page.locator("#id_upper_bound-errors").inner_text()
    assert not Bot.objects.exists()


def test_the_chart_is_beside_the_form_from_the_start_and_draws_the_grid_as_you_type(page, live_url):
    market()
    register(page, live_url, "chart@example.com")
    page.goto(f"{live_url}/bots/new/")
    chart = page.locator("#pair-chart")
    # The price and the candles before anything is typed.
    page.locator("#pair-chart[data-ready='1']").wait_for()
    assert int(chart.get_attribute("data-candles")) == 60
    assert page.get_by_test_id("price-now").inner_text() == "65,000.00"

    form = page.locator("#bot-form")
    fill_grid(form, "1000", "60000", "70000", "20")
    page.locator("#pair-chart[data-grid-lines='20']").wait_for()
    assert int(chart.get_attribute("data-resting-orders")) == 19  # one line carries no order
    form.get_by_label("Price lines").fill("30")
    page.locator("#pair-chart[data-grid-lines='30']").wait_for()

    capital = form.get_by_label("Capital", exact=True).bounding_box()
    box = chart.bounding_box()
    assert box["x"] >= capital["x"] + capital["width"]  # beside the form, not below it
    assert box["y"] < capital["y"] + 300
    screenshot(page, "bot-form-chart")


def test_a_grid_that_loses_after_fees_is_created_only_once_the_box_is_ticked(page, live_url):
    market()
    register(page, live_url, "loss@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    consent = form.get_by_label("I understand each grid loses money after fees")
    fill_grid(form, "1000", "60000", "70000", "20")
    page.get_by_test_id("preview-lines").filter(has_text="20 from").wait_for()
    assert consent.count() == 0  # a grid that earns asks nothing

    fill_grid(form, "1000", "64900", "65100", "50")
    page.get_by_test_id("loss-warning").filter(has_text="Every grid loses money").wait_for()
    consent.wait_for()
    page.get_by_role("button", name="Create bot").click()
    page.locator("#id_accept_loss-errors").get_by_text("Tick this box").wait_for()
    assert not Bot.objects.exists()

    settled(page)  # the refused page's own preview (on load) has answered
    form.get_by_label("I understand each grid loses money after fees").check()
    settled(page)
    assert form.get_by_label("I understand each grid loses money after fees").is_checked()
    page.get_by_role("button", name="Create bot").click()
    page.wait_for_url(f"{live_url}/bots/*/")
    assert Bot.objects.get().config["grid_levels"] == "50"


def test_at_phone_size_the_forms_fit_and_the_chart_follows_the_range(browser, live_url):
    market()
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        register(page, live_url, "phone-form@example.com")
        page.goto(f"{live_url}/bots/new/")
        form = page.locator("#bot-form")
        fill_grid(form, "1000", "60000", "70000", "20")
        page.locator("#pair-chart[data-grid-lines='20']").wait_for()
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], width
        upper = form.get_by_label("Upper price", exact=True).bounding_box()
        chart = page.locator("#pair-chart").bounding_box()
        stop_loss = form.get_by_label("Stop-loss (% below the lower price)").bounding_box()
        # Right after the grid's fields (not 1,000 px below), before the risk settings.
        assert upper["y"] < chart["y"] < stop_loss["y"]
        assert chart["y"] - upper["y"] < 500
        screenshot(page, "bot-form-phone")

        page.goto(f"{live_url}/backtests/new/")
        page.locator("#pair-chart[data-ready='1']").wait_for()
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], width
        screenshot(page, "backtest-form-phone")
    finally:
        context.close()


def test_the_backtest_forms_chart_follows_the_chosen_pair_and_draws_the_grid(page, live_url):
    market()
    make_rules("ETH/USDT")
    add_candles(
        [(ETH_T0_MS + i * 60_000, "2500", "2510", "2490", "2505") for i in range(30)],
        symbol="ETH/USDT",
    )
    register(page, live_url, "backtest-chart@example.com")
    page.goto(f"{live_url}/backtests/new/")
    page.locator("#pair-chart[data-ready='1'][data-symbol='BTC/USDT']").wait_for()
    assert page.get_by_test_id("price-now").inner_text() == "now 65,000.00"

    pair = page.get_by_label("Pair", exact=True)
    pair.fill("eth/usdt")
    pair.press("Tab")
    chart = page.locator("#pair-chart[data-ready='1'][data-symbol='ETH/USDT']")
    chart.wait_for()
    assert chart.get_attribute("data-candles") == "30"
    assert page.locator("#pair-chart-title").inner_text().startswith("ETH/USDT now 2,505.00")
    # The grid, priced at the first stored candle of the days, drawn as it is typed.
    form = page.locator("#backtest-form")
    fill_grid(form, "1000", "2400", "2600", "20")
    page.locator("#pair-chart[data-grid-lines='20']").wait_for()
    assert page.get_by_test_id("start-price").inner_text() == "2,505.00 USDT"
    screenshot(page, "backtest-form-chart")
