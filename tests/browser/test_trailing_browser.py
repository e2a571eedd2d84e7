"""Issue 17 in Chromium: a trader opens the new-bot form's Advanced block, sets a trigger price
and trailing up and down, sees the preview say (and the chart draw) where the bot waits, where
the grid would go next and where trailing stops, and creates the bot with them."""

from __future__ import annotations

from typing import Any

import pytest

from bots.models import Bot
from tests.browser.conftest import register, screenshot
from tests.browser.test_bot_form import fill_grid, settled
from tests.browser.test_desk import market

pytestmark = pytest.mark.browser


def open_advanced(page: Any) -> Any:
    block = page.locator("details.advanced")
    if not block.evaluate("el => el.open"):
        block.locator("summary").click()
    return block


def test_a_bot_with_a_trigger_and_trailing_shows_where_its_grid_goes_next_and_is_created(
    page, live_url
):
    market()
    register(page, live_url, "trends@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    fill_grid(form, "1000", "60000", "70000", "20")
    page.get_by_test_id("preview-lines").filter(has_text="20 from").wait_for()
    assert not page.locator("details.advanced").evaluate("el => el.open")  # folded by default

    block = open_advanced(page)
    block.get_by_label("Trigger price").fill("64000")
    block.get_by_label("Trailing up", exact=True).check()
    block.get_by_label("Trailing up limit").fill("75000")
    block.get_by_label("Trailing down", exact=True).check()
    block.get_by_label("Trailing down floor").fill("55000")

    trigger = page.get_by_test_id("preview-trigger")
    trigger.filter(has_text="falls to 64,000.00").wait_for()
    up = page.get_by_test_id("preview-trailing-up")
    up.filter(has_text="Trailing stops at").wait_for()
    down = page.get_by_test_id("preview-trailing-down")
    down.filter(has_text="Trailing stops at").wait_for()
    settled(page)
    assert "70,526.32" in up.inner_text()  # the next line a shift up adds: 70,000 + 526.32
    assert "75,000.00" in up.inner_text() and "55,000.00" in down.inner_text()
    # the chart draws the trigger, the next lines and where trailing stops
    chart = page.locator("#pair-chart")
    page.wait_for_function(
        "() => (document.querySelector('#pair-chart').dataset.marks || '').includes('up-stop')"
    )
    marks = chart.get_attribute("data-marks") or ""
    for kind in ("trigger", "next-up", "up-stop", "next-down", "down-stop"):
        assert kind in marks.split(), marks
    screenshot(page, "bot-form-trailing-preview")

    page.get_by_role("button", name="Create bot").click()
    page.wait_for_url(f"{live_url}/bots/*/")
    bot = Bot.objects.get()
    assert {k: bot.config.get(k) for k in (
        "trigger_price", "trailing_up", "trailing_up_limit", "trailing_down",
        "trailing_down_limit")} == {
        "trigger_price": "64000", "trailing_up": "true", "trailing_up_limit": "75000",
        "trailing_down": "true", "trailing_down_limit": "55000",
    }  # fmt: skip


def test_trailing_down_without_a_floor_says_so_on_the_floor_field(page, live_url):
    market()
    register(page, live_url, "floorless@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    fill_grid(form, "1000", "60000", "70000", "20")
    open_advanced(page).get_by_label("Trailing down", exact=True).check()
    settled(page)
    page.get_by_role("button", name="Create bot").click()
    page.wait_for_load_state()
    settled(page)

    assert page.locator("details.advanced").evaluate("el => el.open")  # the error is in sight
    assert page.locator("#id_trailing_down_limit-errors").inner_text().strip()
    assert page.get_by_label("Trailing down", exact=True).is_checked()  # kept as ticked
    screenshot(page, "bot-form-trailing-down-without-floor")
    assert not Bot.objects.exists()


def test_a_clone_opens_with_its_trigger_and_trailing(page, live_url):
    market()
    register(page, live_url, "cloner@example.com")
    from django.contrib.auth import get_user_model

    from bots import services

    owner = get_user_model().objects.get(email="cloner@example.com")
    bot = services.create_bot(
        owner, symbol="BTC/USDT", name="Trend",
        config={"capital": "1000", "lower_bound": "60000", "upper_bound": "70000",
                "grid_levels": "20", "spacing": "arithmetic", "stop_loss_pct": "0",
                "max_daily_loss": "0", "take_profit": "", "trigger_price": "64000",
                "trailing_up": "true"},
    )  # fmt: skip
    page.goto(f"{live_url}/bots/new/?clone={bot.pk}")
    assert page.locator("details.advanced").evaluate("el => el.open")
    assert page.get_by_label("Trigger price").input_value() == "64000"
    assert page.get_by_label("Trailing up", exact=True).is_checked()
    assert not page.get_by_label("Trailing down", exact=True).is_checked()
    page.get_by_test_id("preview-trailing-up").wait_for()


def test_the_bot_chart_draws_the_grid_moving_and_the_log_names_each_move(page, live_url):
    import datetime as dt

    from django.contrib.auth import get_user_model

    from bots import services
    from bots.models import BotEvent
    from tests.browser.test_desk import T0

    market()
    register(page, live_url, "mover@example.com")
    owner = get_user_model().objects.get(email="mover@example.com")
    bot = services.create_bot(
        owner, symbol="BTC/USDT", name="Mover",
        config={"capital": "1000", "lower_bound": "60000", "upper_bound": "70000",
                "grid_levels": "20", "spacing": "arithmetic", "stop_loss_pct": "0",
                "max_daily_loss": "0", "take_profit": "", "trailing_up": "true"},
    )  # fmt: skip
    for minutes, lines, text in (
        (10, ["60526.32", "70526.32"], "Grid moved up at 70600: a buy at 70000."),
        (30, ["61052.64", "71052.64"], "Grid moved up at 71100: a buy at 70526.32."),
    ):
        BotEvent.objects.create(
            bot=bot, kind="shift", message=text, market_time=T0 + dt.timedelta(minutes=minutes),
            data={"grid_event": "shift_up", "lines": lines, "price": "70600"},
        )  # fmt: skip

    page.goto(f"{live_url}/bots/{bot.pk}/")
    chart = page.locator("#bot-chart")
    page.wait_for_function("() => document.querySelector('#bot-chart').dataset.ready === '1'")
    assert chart.get_attribute("data-grid-moves") == "2"
    log = page.locator(f"#bot-{bot.pk}-events")
    assert log.locator(".event.shift_up .kind").first.inner_text() == "Grid moved up"
    assert "a buy at 70526.32" in log.inner_text()
    screenshot(page, "bot-chart-grid-moving")


def test_backtesting_a_trailing_bot_shows_its_trigger_and_the_grid_following_the_price(
    page, live_url, django_user_model
):
    from bots import services
    from bots.models import BacktestRun
    from tests.browser.conftest import log_in

    market()  # an hour from 65,000 swinging up to 65,080
    user = django_user_model.objects.create_user(email="bt@example.com", password="a-Long-pw-123")
    bot = services.create_bot(
        user, symbol="BTC/USDT", name="Follower",
        config={"capital": "1000", "lower_bound": "64900", "upper_bound": "65000",
                "grid_levels": "10", "spacing": "arithmetic", "stop_loss_pct": "0",
                "max_daily_loss": "0", "take_profit": "", "trigger_price": "65020",
                "trailing_up": "true", "trailing_up_limit": "65100"},
    )  # fmt: skip
    log_in(page, live_url, user.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    page.get_by_role("link", name="Backtest this grid").click()
    assert page.locator("details.advanced").evaluate("el => el.open")
    assert page.get_by_label("Trigger price").input_value() == "65020"
    assert page.get_by_label("Trailing up", exact=True).is_checked()
    page.get_by_label("From").fill("2025-06-02")
    page.get_by_label("To (inclusive)").fill("2025-06-02")
    page.get_by_role("button", name="Run backtest").click()
    page.wait_for_url(f"{live_url}/backtests/*/")
    page.get_by_role("heading", name="Result").wait_for(timeout=20_000)
    page.wait_for_function("() => document.querySelector('#backtest-chart').dataset.ready === '1'")

    run = BacktestRun.objects.get(owner=user)
    assert run.result["shifts_up"] > 0, run.result
    assert page.get_by_test_id("shifts-up").inner_text() == f"{run.result['shifts_up']} up"
    assert "at 65,020.00" in page.get_by_test_id("triggered-at").inner_text()
    moves = page.locator("#backtest-chart").get_attribute("data-grid-moves")
    assert moves == str(run.result["shifts_up"])
    screenshot(page, "backtest-trailing-result")
