"""Choosing any pair the exchange lists on the bot and backtest forms: the search, the pair's
rules from the exchange, its history imported in the background with progress beside the pair,
and backtests refused for days not imported yet. The real ccxt client against the fake Binance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone

from bots.models import BacktestRun, Bot
from market.models import Candle, HistoryImport, MarketRules
from tests.bots.conftest import FORM
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
MIN = 60_000
NOW = dt.datetime(2025, 6, 10, 12, 0, 30, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000) // MIN * MIN
SOL = FORM | {"symbol": "SOL/USDT"}
BACKTEST = {k: v for k, v in SOL.items() if k not in ("name", "mode", "max_daily_loss")} | {
    "start": "2025-06-09",
    "end": "2025-06-09",
}


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance], settings: Any) -> FakeBinance:
    """Binance lists SOL/USDT (no rules or candles stored here), with a day of its candles;
    a new pair's history is the last day (1,440 candles, two pages)."""
    settings.HISTORY_IMPORT_DAYS = 1
    fake = fake_binance(as_exchange=True, prices={"BTCUSDT": "65000"})
    fake.list_symbol("SOLUSDT", "SOL", "USDT")
    start = NOW_MS - 1440 * MIN
    fake.set_candles(
        "SOLUSDT", [(start + i * MIN, "150", "151", "149", "150.5", "2") for i in range(1440)]
    )
    return fake


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dt.datetime]]:
    """The app's clock stands at ``NOW`` until a test moves it (``clock[0] += ...``)."""
    now = [NOW]
    monkeypatch.setattr(timezone, "now", lambda: now[0])
    yield now


@pytest.fixture
def signed_in(client: Any, user: Any, rules: None) -> Any:
    client.force_login(user)
    return client


def test_the_form_offers_the_exchanges_pairs_and_searches_them(signed_in, fake):
    page = signed_in.get("/bots/new/").text
    assert "Type to search Binance's 4 spot pairs." in page
    assert 'list="pair-options"' in page and 'hx-get="/pairs/"' in page
    assert 'value="BTC/USDT"' in page  # the default pair

    found = signed_in.get("/pairs/", {"symbol": "so"}, headers=HX).text
    assert found == '<datalist id="pair-options"><option value="SOL/USDT"></option></datalist>\n'
    assert "SOL/USDT" not in signed_in.get("/pairs/", {"symbol": "eth"}, headers=HX).text
    assert fake.calls("GET", "/exchangeInfo") == 1  # the list is kept, not asked again


def test_without_the_exchange_the_form_says_only_stored_pairs_can_be_chosen(signed_in):
    page = signed_in.get("/bots/new/").text
    assert "Binance did not answer, so only the pairs stored here can be chosen now" in page
    text = signed_in.post("/bots/preview/", SOL, headers=HX).text
    assert "Try SOL/USDT again in a few minutes." in text
    assert not MarketRules.objects.filter(symbol="SOL/USDT").exists()
    assert not HistoryImport.objects.exists()


def test_choosing_a_new_pair_fetches_its_rules_and_imports_its_history(
    signed_in, fake, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        text = signed_in.post("/bots/preview/", SOL, headers=HX).text

    rules = MarketRules.objects.get(symbol="SOL/USDT")
    assert (rules.source, rules.base) == ("exchange", "SOL")
    assert "20 from 60,000.00 to 70,000.00" in text  # the grid under the pair's own rules
    # Beside the pair, out of band: the import, waiting, polled until it is done.
    assert 'id="pair-history" class="pair-history" aria-live="polite" hx-swap-oob="true"' in text
    assert "SOL/USDT history: waiting to import the last day." in text
    assert 'hx-get="/pairs/history/?symbol=SOL/USDT" hx-trigger="every 2s"' in text
    assert len(queued) == 1 and fake.calls("GET", "/klines") == 0

    queued[0]()  # the worker runs the import
    polled = signed_in.get("/pairs/history/", {"symbol": "SOL/USDT"}, headers=HX).text
    assert "SOL/USDT history: 1,440 candles imported" in polled
    assert "every 2s" not in polled  # done: the polling stops
    assert Candle.objects.filter(symbol="SOL/USDT").count() == 1440


def test_the_progress_of_a_running_import_is_shown_in_numbers(signed_in, fake):
    since = NOW.replace(second=0) - dt.timedelta(days=1)
    HistoryImport.objects.create(
        exchange="binance", symbol="SOL/USDT", since=since, until=NOW.replace(second=0),
        cursor=since + dt.timedelta(minutes=1000), expected=1440, stored=1000,
        status="running", beat_at=NOW,
    )  # fmt: skip
    polled = signed_in.get("/pairs/history/", {"symbol": "SOL/USDT"}, headers=HX).text
    assert "importing the last day, 1,000 of 1,440 candles (69 %)." in polled
    assert '<progress max="100" value="69"' in polled and "every 2s" in polled


def test_a_bot_on_a_new_pair_is_created_and_its_history_imported(
    signed_in, user, fake, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post("/bots/new/", SOL | {"name": "Sol grid"})

    bot = Bot.objects.get(owner=user)
    assert response.status_code == 302 and (bot.symbol, bot.name) == ("SOL/USDT", "Sol grid")
    job = HistoryImport.objects.get(symbol="SOL/USDT")
    assert (job.status, job.stored) == ("done", 1440)


@pytest.mark.parametrize(
    ("symbol", "says"),
    [
        ("DOGE/USDT", "Binance lists no spot pair DOGE/USDT trading now; choose one of its 4"),
        ("SOL", "Write the pair as BASE/QUOTE, e.g. BTC/USDT."),
    ],
)
def test_a_pair_the_exchange_does_not_list_is_an_error_beside_it_and_changes_nothing(
    signed_in, user, fake, symbol, says
):
    text = signed_in.post("/bots/preview/", FORM | {"symbol": symbol}, headers=HX).text
    assert 'id="id_symbol-errors" hx-swap-oob="true"><p class="error" role="alert">' in text
    assert says in text
    page = signed_in.post("/bots/new/", FORM | {"symbol": symbol}).text
    assert says in page
    assert not Bot.objects.exists() and not HistoryImport.objects.exists()
    assert set(MarketRules.objects.values_list("symbol", flat=True)) == {"BTC/USDT", "ETH/USDT"}


def test_a_pair_with_stored_history_starts_no_import(signed_in, fake, price):
    text = signed_in.post("/bots/preview/", FORM, headers=HX).text  # BTC/USDT has candles
    assert 'id="pair-history"' in text and 'data-testid="pair-history"' not in text
    assert not HistoryImport.objects.exists() and fake.calls("GET", "/klines") == 0


def test_a_preview_of_an_imported_pair_asks_the_exchange_nothing(
    signed_in, fake, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post("/bots/preview/", SOL, headers=HX)
    asked = len(fake.requests)
    with django_assert_max_num_queries(8):
        text = signed_in.post("/bots/preview/", SOL, headers=HX).text
    assert "1,440 candles imported" in text and len(fake.requests) == asked


# --- backtests --------------------------------------------------------------------------------


def test_a_backtest_waits_for_the_days_not_imported_yet(
    signed_in, user, fake, clock, django_capture_on_commit_callbacks
):
    response = signed_in.post("/backtests/new/", BACKTEST)  # the import is queued, not run

    assert response.status_code == 200 and not BacktestRun.objects.exists()
    assert (
        "SOL/USDT history is still being imported: 0 of 1,440 candles (0 %), stored up to "
        "2025-06-09 12:00 UTC. Choose earlier days, or wait until it is done."
    ) in response.text.replace("&#x27;", "'")
    assert 'id="pair-history"' in response.text and "every 2s" in response.text

    HistoryImport.objects.update(
        status="failed", error="binance did not answer (timeout).", finished_at=NOW
    )
    refused = signed_in.post("/backtests/new/", BACKTEST).text.replace("&#x27;", "'")
    assert (
        "The SOL/USDT history import failed (binance did not answer (timeout)); candles are "
        "stored up to 2025-06-09 12:00 UTC. Choose earlier days, or try again in a minute: "
        "the import then goes on where it stopped."
    ) in refused

    clock[0] += dt.timedelta(minutes=1, seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post("/backtests/new/", BACKTEST)  # resumes the import
    assert "still being imported" in response.text
    response = signed_in.post("/backtests/new/", BACKTEST)
    run = BacktestRun.objects.get(owner=user)
    assert response.status_code == 302 and (run.symbol, run.config["grid_levels"]) == (
        "SOL/USDT",
        "20",
    )


def test_choosing_a_pair_on_the_backtest_form_starts_its_import_or_says_why_not(
    signed_in, fake, django_capture_on_commit_callbacks
):
    page = signed_in.get("/backtests/new/").text
    assert 'hx-post="/pairs/history/" hx-trigger="change from:#id_symbol"' in page

    with django_capture_on_commit_callbacks(execute=True):
        text = signed_in.post("/pairs/history/", {"symbol": "solusdt"}, headers=HX).text
    assert "SOL/USDT history: waiting to import the last day." in text and "every 2s" in text
    text = signed_in.get("/pairs/history/", {"symbol": "SOL/USDT"}, headers=HX).text
    assert "SOL/USDT history: 1,440 candles imported" in text
    text = signed_in.post("/pairs/history/", {"symbol": "DOGE/USDT"}, headers=HX).text
    assert "Binance lists no spot pair DOGE/USDT" in text
    assert list(HistoryImport.objects.values_list("symbol", flat=True)) == ["SOL/USDT"]


def test_pair_pages_need_a_sign_in(client):
    for response in (
        client.get("/pairs/", {"symbol": "so"}),
        client.get("/pairs/history/", {"symbol": "SOL/USDT"}),
        client.post("/pairs/history/", {"symbol": "SOL/USDT"}),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_previewed_pair_is_streamed_by_the_feed(signed_in, fake):
    """A pair the trader looks at in the form is one the market feed streams (its live price
    beside the form), as the bot page's pair is."""
    from market.services import watched_markets

    signed_in.post("/bots/preview/", SOL, headers=HX)
    assert ("binance", "SOL/USDT") in watched_markets()
