"""The AI advisor in Chromium (issue 14): ask from the new-bot form with a risk choice, read a
confidence earned on held-out candles and how the choice shaped the grid, and fill the form
with one click ("Use these settings"); nothing is created until the trader submits it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ai_advisor import services
from ai_advisor.models import AdvisorRun
from bots.models import Bot
from tests.ai_advisor.conftest import END_MS, PRICE, snapshot, synthetic_rows
from tests.bots.conftest import make_rules
from tests.browser.conftest import register, screenshot
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.browser


@pytest.fixture
def advised_market(
    live_url: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    fake_binance: Callable[..., FakeBinance],
) -> str:
    """BTC/USDT rules, ten days of stored candles ending at 65,000, its indicators, the fake
    Binance for the form's pair list, and no Claude key: the quantitative baseline answers
    (in-line, like every task here)."""
    from market.models import Candle, LatestPrice

    fake_binance(as_exchange=True, prices={"BTCUSDT": "65000"})
    settings.ANTHROPIC_API_KEY = ""
    make_rules()
    Candle.objects.bulk_create(
        Candle(exchange="binance", symbol="BTC/USDT", timeframe="1m",
               open_time=datetime.fromtimestamp(t / 1000, UTC), open=o, high=h, low=lo, close=c,
               volume=Decimal(1))
        for t, o, h, lo, c in synthetic_rows()
    )  # fmt: skip
    LatestPrice.objects.update_or_create(
        exchange="binance", symbol="BTC/USDT",
        defaults={"price": PRICE, "at": datetime.fromtimestamp(END_MS / 1000, UTC)},
    )  # fmt: skip
    monkeypatch.setattr(services, "market_snapshot", snapshot)
    return live_url


def test_use_these_settings_fills_the_new_bot_form_with_the_advice_and_creates_nothing(
    page: Any, advised_market: str
) -> None:
    live_url = advised_market
    register(page, live_url, "advice@example.com")
    page.goto(f"{live_url}/bots/new/")

    page.get_by_role("button", name="Ask the AI advisor").click()
    dialog = page.locator("#advisor-dialog")
    dialog.get_by_label("Capital").fill("1000")
    dialog.get_by_label("Risk").select_option("low")
    assert "Conservative: range 10-30 % wide" in dialog.get_by_label("Risk").inner_text()
    dialog.get_by_role("button", name="Ask", exact=True).click()

    use = dialog.get_by_role("link", name="Use these settings")
    use.wait_for()
    run = AdvisorRun.objects.get()
    config = run.suggestion["config"]
    badge = dialog.locator(".advisor-confidence-badge")
    assert badge.inner_text() == f"confidence {run.suggestion['confidence']} / 100"
    confidence_text = dialog.locator(".advisor-confidence").inner_text()
    assert run.suggestion["confidence_reasons"][0] in confidence_text
    assert "held out" in confidence_text
    risk_text = dialog.locator(".advisor-risk").inner_text()
    assert "How your risk choice shaped it. Conservative: a range 10-30 %" in risk_text
    backtested = dialog.locator(".advisor-backtested").inner_text()
    assert re.match(r"Backtested on the last 7 days: [+-][\d,]+\.\d+ USDT \(-?\d+\.\d\d %\)",
                    backtested), backtested  # fmt: skip
    # Prices to the tick with separators, nowhere a database's padded decimal.
    assert re.search(r"Lower price\s+[\d,]+\.\d\d", dialog.inner_text())
    assert not re.search(r"\d\.\d*0{6,}", dialog.inner_text())
    screenshot(page, "advisor-dialog-conservative")

    use.click()

    page.wait_for_url(re.compile(r"/bots/new/\?symbol=BTC%2FUSDT&capital=1000&lower_bound="))
    form = page.locator("#bot-form")
    assert form.get_by_label("Lower price", exact=True).input_value() == config["lower_bound"]
    assert form.get_by_label("Upper price", exact=True).input_value() == config["upper_bound"]
    assert form.get_by_label("Price lines").input_value() == config["grid_levels"]
    assert form.get_by_label("Capital", exact=True).input_value() == "1000"
    assert Bot.objects.count() == 0
    screenshot(page, "advisor-filled-form")

    # The trader edits what they like and creates it themselves.
    form.get_by_label("Name").fill("From the advisor")
    form.get_by_role("button", name="Create bot").click()
    page.wait_for_url(re.compile(r"/bots/\d+/$"))
    bot = Bot.objects.get()
    assert bot.name == "From the advisor"
    assert (bot.config["lower_bound"], bot.config["upper_bound"], bot.config["grid_levels"]) == (
        config["lower_bound"], config["upper_bound"], config["grid_levels"]
    )  # fmt: skip
    assert bot.config["stop_loss_pct"] == config["stop_loss_pct"] == "3"


def test_the_risk_choice_changes_the_suggested_grid_on_the_page(
    page: Any, advised_market: str
) -> None:
    live_url = advised_market
    register(page, live_url, "risk@example.com")
    page.goto(f"{live_url}/bots/new/")
    page.get_by_role("button", name="Ask the AI advisor").click()
    dialog = page.locator("#advisor-dialog")
    dialog.get_by_label("Capital").fill("1000")

    seen = {}
    for level, label in (("low", "Conservative"), ("high", "Aggressive")):
        dialog.get_by_label("Risk").select_option(level)
        dialog.get_by_role("button", name="Ask", exact=True).click()
        risk = dialog.locator(".advisor-risk")
        risk.filter(has_text=f"How your risk choice shaped it. {label}: a range").wait_for()
        diff = dialog.locator("table.advisor-diff")
        seen[level] = (
            diff.locator("tr", has_text="Lower price").locator("td").inner_text(),
            diff.locator("tr", has_text="Upper price").locator("td").inner_text(),
            re.search(r"This grid: a range ([\d.]+) %", risk.inner_text()).group(1),
        )
        screenshot(page, f"advisor-risk-{level}")

    assert seen["low"][:2] != seen["high"][:2]
    assert float(seen["low"][2]) >= 10 > 5 >= float(seen["high"][2])
    runs = {r.risk_preference: r.suggestion["config"] for r in AdvisorRun.objects.all()}
    assert seen["low"][0] == f"{Decimal(runs['low']['lower_bound']):,.2f}"
    assert seen["high"][0] == f"{Decimal(runs['high']['lower_bound']):,.2f}"
