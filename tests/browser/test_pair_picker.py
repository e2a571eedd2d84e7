"""The pair picker in a real browser: search the exchange's pairs, choose a new one, and watch
its history import beside it (the fake Binance behind the real ccxt client)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from market.models import HistoryImport
from tests.browser.conftest import register, screenshot
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.browser

MIN = 60_000


def test_choose_a_new_pair_and_see_its_history_imported(
    page: Any, live_url: str, fake_binance: Callable[..., FakeBinance], settings: Any
) -> None:
    settings.HISTORY_IMPORT_DAYS = 1
    fake = fake_binance(as_exchange=True, prices={"BTCUSDT": "65000"})
    fake.list_symbol("SOLUSDT", "SOL", "USDT")
    now = int(time.time() * 1000) // MIN * MIN
    fake.set_candles(
        "SOLUSDT",
        [(now - (1440 - i) * MIN, "150", "151", "149", "150.5", "2") for i in range(1440)],
    )
    register(page, live_url, "pairs@example.com")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    pair = form.get_by_label("Pair", exact=True)
    form.get_by_text("Type to search Binance's 4 spot pairs.").wait_for()

    pair.fill("so")
    page.locator('#pair-options option[value="SOL/USDT"]').wait_for(state="attached")
    assert page.locator("#pair-options option").count() == 1

    pair.fill("SOL/USDT")
    form.get_by_label("Capital", exact=True).fill("1000")
    form.get_by_label("Lower price", exact=True).fill("140")
    form.get_by_label("Upper price", exact=True).fill("160")
    form.get_by_label("Price lines").fill("20")
    history = page.get_by_test_id("pair-history")
    # 1,440 candles, or 1,439 when a minute turned since the fake's candles were made.
    history.filter(has_text=re.compile(r"SOL/USDT history: 1,4(40|39) candles imported")).wait_for()
    page.locator("#grid-preview").get_by_test_id("preview-lines").filter(
        has_text="20 from 140.00 to 160.00"
    ).wait_for()
    screenshot(page, "pair-picker")
    assert HistoryImport.objects.get(symbol="SOL/USDT").status == "done"

    pair.fill("DOGE/USDT")
    page.locator("#id_symbol-errors").get_by_text("Binance lists no spot pair DOGE/USDT").wait_for()

    # The backtest form: choosing the pair shows its history beside it.
    page.goto(f"{live_url}/backtests/new/")
    pair = page.get_by_label("Pair", exact=True)
    pair.fill("sol/usdt")
    pair.press("Tab")
    page.get_by_test_id("pair-history").filter(has_text="SOL/USDT history: 1,4").wait_for()
