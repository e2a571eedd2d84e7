"""Any pair the exchange lists: its list (cached), a chosen pair's rules, and its history
imported in the background, through the real ccxt client against the fake Binance."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from market import history, pairs, tasks
from market.models import Candle, HistoryImport, MarketRules
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

D = Decimal
MIN = 60_000
NOW = datetime(2025, 6, 10, 12, 0, 30, tzinfo=UTC)  # the app's clock in these tests
NOW_MS = int(NOW.timestamp() * 1000) // MIN * MIN


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    """The exchange lists SOL/USDT too, and a pair in a trading break."""
    fake = fake_binance(as_exchange=True, prices={"BTCUSDT": "100000"})
    fake.list_symbol("SOLUSDT", "SOL", "USDT", PRICE_FILTER={"tickSize": "0.00100000"})
    fake.list_symbol("OLDBTC", "OLD", "BTC", status="BREAK")
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """The app's clock stands at ``NOW`` until a test moves it (``clock[0] += ...``)."""
    now = [NOW]
    monkeypatch.setattr(timezone, "now", lambda: now[0])
    yield now


@pytest.fixture
def one_day(settings: Any) -> None:
    settings.HISTORY_IMPORT_DAYS = 1  # 1,440 candles: two pages


def minutes(n: int, *, end_ms: int = NOW_MS) -> list[tuple]:
    """``n`` 1-minute candles ending just before ``end_ms``."""
    start = end_ms - n * MIN
    return [(start + i * MIN, "150", "151", "149", "150.5", "2") for i in range(n)]


def fail_the_nth_klines_request(fake: FakeBinance, n: int) -> list[str]:
    """The exchange answers 503 to the ``n``-th klines request (the fake's own failure, aimed
    as the import runs); returns the klines requests seen."""
    calls: list[str] = []
    handle = fake.handle

    def counting(method: str, path: str, body: str, headers: dict[str, str]) -> Any:
        if "/klines" in path:
            calls.append(path)
            if len(calls) == n:
                fake.fail_next("/klines", 503)
        return handle(method, path, body, headers)

    fake.handle = counting  # type: ignore[method-assign]
    return calls


def stored(symbol: str = "SOL/USDT") -> int:
    return Candle.objects.for_series("binance", symbol).count()


# --- the exchange's list ------------------------------------------------------------------------


def test_the_list_is_the_exchanges_spot_pairs_trading_and_it_is_kept(
    fake, django_assert_num_queries
):
    listed = pairs.exchange_pairs("binance")

    assert listed.listed and set(listed.symbols) == {"BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT"}
    assert "OLD/BTC" not in listed  # in a trading break
    assert listed.describe() == "4 spot pairs trading on Binance."
    with django_assert_num_queries(0):
        assert pairs.exchange_pairs("binance") == listed
    assert fake.calls("GET", "/exchangeInfo") == 1  # asked once, then kept
    fake.list_symbol("ADAUSDT", "ADA", "USDT")
    pairs.forget_pairs("binance")
    assert "ADA/USDT" in pairs.exchange_pairs("binance")
    assert fake.calls("GET", "/exchangeInfo") == 2


def test_without_the_exchange_the_list_is_the_stored_pairs_and_says_so(rules_for_sol):
    listed = pairs.exchange_pairs("binance")  # no fake: the exchange cannot be reached

    assert not listed.listed
    assert listed.symbols == ("BTC/USDT", "ETH/USDT", "SOL/USDT")  # bundled, and stored rules
    assert listed.describe() == (
        "Binance did not answer, so only the pairs stored here can be chosen now "
        "(BTC/USDT, ETH/USDT, SOL/USDT)."
    )


@pytest.fixture
def rules_for_sol() -> MarketRules:
    return MarketRules.objects.create(
        exchange="binance", symbol="SOL/USDT", base="SOL", quote="USDT", tick=D("0.01"),
        step=D("0.001"), min_notional=D(5),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("query", "first"),
    [("sol", ["SOL/USDT"]), ("SOL/US", ["SOL/USDT"]), ("bnbusdt", ["BNB/USDT"]),
     ("usdt", ["BNB/USDT", "BTC/USDT", "ETH/USDT", "SOL/USDT"]), ("nope", [])],
)  # fmt: skip
def test_search_the_list(fake, query, first):
    assert pairs.search("binance", query) == first


# --- choosing a pair ------------------------------------------------------------------------


def test_a_new_pair_gets_its_rules_from_the_exchange(fake):
    rules = pairs.choose_pair("binance", "sol/usdt")

    assert (rules.symbol, rules.base, rules.quote) == ("SOL/USDT", "SOL", "USDT")
    assert (rules.tick, rules.status, rules.source) == (D("0.001"), "TRADING", "exchange")
    assert MarketRules.objects.get(symbol="SOL/USDT").tick == D("0.001")
    assert pairs.choose_pair("binance", "SOLUSDT").symbol == "SOL/USDT"  # where the slash goes


def test_a_pair_with_stored_rules_costs_one_query_and_no_request(
    fake, rules_for_sol, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert pairs.choose_pair("binance", "SOL/USDT") == rules_for_sol
    assert fake.requests == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("DOGE/USDT", "Binance lists no spot pair DOGE/USDT trading now; choose one of its 4"),
        ("OLD/BTC", "Binance lists no spot pair OLD/BTC trading now"),
        ("SOL", "Write the pair as BASE/QUOTE, e.g. BTC/USDT."),
        ("\x00/x", "Write the pair as BASE/QUOTE"),
        ("", "Write the pair as BASE/QUOTE"),
    ],
)
def test_a_pair_the_exchange_does_not_list_is_refused_in_words(fake, text, says):
    with pytest.raises(pairs.PairError, match=says):
        pairs.choose_pair("binance", text)
    assert not MarketRules.objects.exists()


def test_rules_the_exchange_does_not_give_are_refused_and_nothing_is_stored(fake):
    pairs.exchange_pairs("binance")  # the list, kept
    fake.fail_next("/exchangeInfo", 503)

    with pytest.raises(pairs.PairError, match="The rules of SOL/USDT could not be fetched"):
        pairs.choose_pair("binance", "SOL/USDT")
    assert not MarketRules.objects.exists()
    assert pairs.choose_pair("binance", "SOL/USDT").tick == D("0.001")  # the next try works


def test_without_the_exchange_only_stored_pairs_can_be_chosen():
    assert pairs.choose_pair("binance", "ETH/USDT").source == "snapshot"  # bundled
    with pytest.raises(pairs.PairError) as refused:
        pairs.choose_pair("binance", "SOL/USDT")
    assert str(refused.value) == (
        "Binance did not answer, so only the pairs stored here can be chosen now "
        "(BTC/USDT, ETH/USDT). Try SOL/USDT again in a few minutes."
    )
    assert list(MarketRules.objects.values_list("symbol", flat=True)) == ["ETH/USDT"]


# --- the history import -------------------------------------------------------------------------


def test_a_pair_without_history_is_imported_in_the_background(
    fake, clock, one_day, django_capture_on_commit_callbacks
):
    fake.set_candles("SOLUSDT", minutes(2 * 1440))  # the exchange has two days

    with django_capture_on_commit_callbacks(execute=True):
        job = tasks.start_history("binance", "SOL/USDT")

    job.refresh_from_db()
    assert (job.status, job.stored, job.expected, job.percent) == ("done", 1440, 1440, 100)
    assert (job.since, job.until) == (
        NOW.replace(second=0) - timedelta(days=1),
        NOW.replace(second=0),
    )
    assert stored() == 1440  # the last day only
    assert fake.calls("GET", "/klines") == 2  # pages of 1,000
    assert job.in_words() == (
        "SOL/USDT history: 1,440 candles imported, 2025-06-09 12:00 to 2025-06-10 12:00 UTC."
    )


def test_one_import_per_pair_and_choosing_it_again_costs_one_query(
    fake, clock, one_day, django_capture_on_commit_callbacks, django_assert_num_queries
):
    fake.set_candles("SOLUSDT", minutes(1440))
    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.start_history("binance", "SOL/USDT")
    with (
        django_capture_on_commit_callbacks(execute=True) as queued,
        django_assert_num_queries(1),
    ):
        again = tasks.start_history("binance", "SOL/USDT")
    assert again.pk == first.pk and queued == []
    assert HistoryImport.objects.count() == 1 and fake.calls("GET", "/klines") == 2


def test_a_pair_with_stored_candles_needs_no_import(fake, clock):
    Candle.objects.create(exchange="binance", symbol="BTC/USDT", open_time=NOW, open=1, high=1,
                          low=1, close=1, volume=1)  # fmt: skip
    assert tasks.start_history("binance", "BTC/USDT") is None
    assert not HistoryImport.objects.exists()


def test_an_import_that_failed_says_why_and_resumes_where_it_stopped(
    fake, clock, one_day, django_capture_on_commit_callbacks
):
    fake.set_candles("SOLUSDT", minutes(1440))
    calls = fail_the_nth_klines_request(fake, 2)
    with django_capture_on_commit_callbacks(execute=True):
        job = tasks.start_history("binance", "SOL/USDT")
    job.refresh_from_db()

    assert (job.status, job.stored, job.percent) == ("failed", 1000, 69)
    assert job.error.startswith("binance did not answer (") and job.error.endswith(".")
    assert "run the import again" not in job.error
    assert job.cursor == job.since + timedelta(minutes=1000)
    assert job.in_words().startswith("SOL/USDT history import failed: binance did not answer (")
    assert job.in_words().endswith(
        "So far 1,000 of 1,440 candles (69 %); choose the pair again to resume."
    )
    # Chosen again at once: not retried yet (the exchange was just down).
    with django_capture_on_commit_callbacks(execute=True) as queued:
        tasks.start_history("binance", "SOL/USDT")
    assert queued == []
    clock[0] += history.RETRY_AFTER + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.start_history("binance", "SOL/USDT")
    job.refresh_from_db()
    assert (job.status, job.stored, job.error) == ("done", 1440, "")
    assert len(calls) == 3  # the first page was not asked for again


def test_a_pair_the_exchange_stopped_listing_fails_in_words(fake, clock, one_day):
    since, until = history.window()
    job = HistoryImport.objects.create(exchange="binance", symbol="GONE/USDT", since=since,
                                       until=until, cursor=since, expected=1440)  # fmt: skip
    history.run_import(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "binance has no market GONE/USDT.")


def test_a_running_import_is_left_to_its_worker_unless_that_worker_died(fake, clock, one_day):
    fake.set_candles("SOLUSDT", minutes(1440))
    since, until = history.window()
    job = HistoryImport.objects.create(
        exchange="binance", symbol="SOL/USDT", since=since, until=until, cursor=since,
        expected=1440, status="running", worker="other", beat_at=NOW - timedelta(minutes=1),
    )  # fmt: skip

    tasks.import_history_task(job.pk)  # a second task for it: returns at once
    assert fake.calls("GET", "/klines") == 0
    job.refresh_from_db()
    assert (job.status, job.worker) == ("running", "other")

    clock[0] += history.STALE_AFTER  # no beat for this long: that worker is gone
    tasks.import_history_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.stored) == ("done", 1440)


def test_an_import_whose_task_was_lost_is_queued_again_when_chosen(
    fake, clock, one_day, django_capture_on_commit_callbacks
):
    fake.set_candles("SOLUSDT", minutes(1440))
    with django_capture_on_commit_callbacks(execute=False):  # the task never runs
        tasks.start_history("binance", "SOL/USDT")
    with django_capture_on_commit_callbacks(execute=True) as queued:
        job = tasks.start_history("binance", "SOL/USDT")  # still waiting its turn: left
    assert queued == [] and job.status == "queued"

    clock[0] += history.STALE_AFTER + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        tasks.start_history("binance", "SOL/USDT")
    job.refresh_from_db()
    assert len(queued) == 1 and (job.status, job.stored) == ("done", 1440)


def test_a_finished_import_is_brought_up_to_date_later(
    fake, clock, one_day, django_capture_on_commit_callbacks
):
    fake.set_candles("SOLUSDT", minutes(3 * 1440, end_ms=NOW_MS + 2 * 1440 * MIN))
    with django_capture_on_commit_callbacks(execute=True):
        job = tasks.start_history("binance", "SOL/USDT")
    clock[0] += timedelta(days=1, hours=1)  # the next day and an hour: only that is fetched
    with django_capture_on_commit_callbacks(execute=True):
        tasks.start_history("binance", "SOL/USDT")
    job.refresh_from_db()
    assert (job.status, job.stored, job.expected) == ("done", 1440, 1440)
    assert job.until == NOW.replace(second=0) + timedelta(days=1, hours=1)
    assert stored() == 2 * 1440  # the hour between the two windows is not history asked for
    assert fake.calls("GET", "/klines") == 4


def test_the_admin_shows_imports_and_resumes_failed_ones(
    admin_client, fake, clock, one_day, django_capture_on_commit_callbacks
):
    fake.set_candles("SOLUSDT", minutes(1440))
    since, until = history.window()
    job = HistoryImport.objects.create(
        exchange="binance", symbol="SOL/USDT", since=since, until=until, cursor=since,
        expected=1440, status="failed", error="binance did not answer (timeout).",
    )  # fmt: skip
    page = admin_client.get("/admin/market/historyimport/").text
    assert "SOL/USDT" in page and "0 of 1,440 candles (0 %)" in page
    assert "binance did not answer (timeout)." in page
    assert admin_client.get("/admin/market/historyimport/add/").status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/market/historyimport/",
            {"action": "resume_imports", "_selected_action": [job.pk]},
            follow=True,
        )
    assert "1 import(s) queued again" in response.text
    job.refresh_from_db()
    assert (job.status, job.stored) == ("done", 1440)


def test_the_import_candles_command_reaches_the_exchange_through_the_factory(fake):
    fake.set_candles("SOLUSDT", minutes(100, end_ms=NOW_MS))
    out = io.StringIO()
    call_command(
        "import_candles", "--symbol", "SOL/USDT", "--since", "2025-06-10",
        "--until", "2025-06-11", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert "SOL/USDT: read 100, inserted 100" in out.getvalue()
    assert stored() == 100
