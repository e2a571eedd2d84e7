"""Bad input, fuzzed: every form and the advisor's JSON API answer 2xx/3xx/4xx, never 5xx, and an
input they refuse changes no row (issue 10, finding 3, and its proof).

The Django test client re-raises a view's exception, so a 500 fails here with its traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_advisor import services as advisor_services
from ai_advisor.models import AdvisorRun
from bots.models import BacktestRun, Bot, BotEvent, Order
from market.models import Candle
from tests.ai_advisor.conftest import snapshot, synthetic_rows
from tests.bots.conftest import make_rules, set_price

# Numbers people (and attackers) type: the findings' own, then anything hypothesis makes up.
NASTY = [
    "1e20", "1e308", "-1e308", "1e-308", "1e-18", "1e19", "1E+19", "9" * 30, "9" * 5000, "1e5000",
    "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "0", "-0", "-1", "1.5", "0.000000001",
    "%00", "\x00", "abc", "", " ", "1,5", "1_000", "٣", "²", "0x10", "1e-5000", "10000001",
]  # fmt: skip
numbers = st.one_of(
    st.sampled_from(NASTY),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.text(max_size=12),
)


def near(valid: str) -> st.SearchStrategy[str]:
    """Mostly the valid value, so that a bad value in one field meets good ones in the rest."""
    return st.one_of(st.just(valid), st.just(valid), numbers)


dates = st.one_of(
    st.sampled_from(["9999-12-31", "0001-01-01", "2025-06-01", "2025-02-30", "", "x", "\x00"]),
    st.dates().map(str),
)
bot_ids = st.sampled_from(["abc", "1.5", "%00", "\x00", "-1", "0", "99999999999999999999", ""])
ROWS = (Bot, BacktestRun, AdvisorRun, Order, BotEvent)
TRIED = {"inputs": 0}


def rows() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in ROWS}


@pytest.fixture
def advisor(signed_in: Client, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored candles for the advisor to read, and no Claude: the baseline answers."""
    settings.ANTHROPIC_API_KEY = ""
    settings.ADVISOR_RATE_PER_HOUR = 10_000
    settings.ADVISOR_RUNS_AT_ONCE = 10_000
    Candle.objects.bulk_create(
        Candle(exchange="binance", symbol="BTC/USDT", timeframe="1m", open=o, high=h, low=lo,
               open_time=datetime.fromtimestamp(t / 1000, UTC), close=c, volume=Decimal(1))
        for t, o, h, lo, c in synthetic_rows()
    )  # fmt: skip
    monkeypatch.setattr(advisor_services, "market_snapshot", snapshot)


@pytest.fixture
def signed_in(db: None, user: Any, settings: Any) -> Client:
    # One client sends every example: lift the per-client limits (tested on their own).
    settings.PREVIEWS_PER_CLIENT_PER_MINUTE = settings.ADVISOR_RUNS_PER_CLIENT_PER_HOUR = 10**6
    make_rules()
    make_rules("ETH/USDT", step="0.0001")
    set_price("BTC/USDT", Decimal("60000"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def post(signed_in: Client) -> Iterator[Callable[..., Any]]:
    """POST, check the answer is no 5xx, and that a refused input changed nothing."""

    def send(path: str, data: Any, *, created_on: tuple[int, ...] = (302,), **kw: Any) -> Any:
        TRIED["inputs"] += 1
        before = rows()
        response = signed_in.post(path, data, **kw)
        assert response.status_code < 500, (path, data, response.status_code)
        if response.status_code not in created_on:
            assert rows() == before, (path, data, response.status_code)
        return response

    yield send


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(
    capital=near("1000"), lower=near("55000"), upper=near("65000"), levels=near("10"),
    stop=near("0"), tp=near(""), daily=near("0"),
    symbol=st.sampled_from(["BTC/USDT", "ETH/USDT", "XXX/YYY", "", "\x00"]),
    spacing=st.sampled_from(["arithmetic", "geometric", "cubic", ""]),
)  # fmt: skip
def test_the_bot_form_never_fails_on_bad_input(
    post: Callable[..., Any], signed_in: Client, **v: str
) -> None:
    data = {
        "name": "fuzz", "symbol": v["symbol"], "mode": "paper", "capital": v["capital"],
        "lower_bound": v["lower"], "upper_bound": v["upper"], "grid_levels": v["levels"],
        "spacing": v["spacing"], "stop_loss_pct": v["stop"], "take_profit": v["tp"],
        "max_daily_loss": v["daily"],
    }  # fmt: skip
    post("/bots/new/", data)
    post("/bots/preview/", data, created_on=())
    bot = Bot.objects.filter(owner__email="trader@example.com").order_by("-pk").first()
    if bot is not None:
        post(f"/bots/{bot.pk}/edit/", data, created_on=())


@FUZZ
@given(
    capital=near("1000"), lower=near("55000"), upper=near("65000"), levels=near("10"),
    stop=near("0"), tp=near(""), start=dates, end=dates, bot=bot_ids,
)  # fmt: skip
def test_the_backtest_form_never_fails_on_bad_input(
    post: Callable[..., Any], signed_in: Client, **v: str
) -> None:
    data = {
        "symbol": "BTC/USDT", "start": v["start"], "end": v["end"], "capital": v["capital"],
        "lower_bound": v["lower"], "upper_bound": v["upper"], "grid_levels": v["levels"],
        "spacing": "arithmetic", "stop_loss_pct": v["stop"], "take_profit": v["tp"],
    }  # fmt: skip
    post("/backtests/new/", data)
    post(f"/backtests/new/?bot={v['bot']}", data)
    assert signed_in.get("/backtests/new/", {"bot": v["bot"]}).status_code < 500


@FUZZ
@given(
    capital=near("1000"), bot=bot_ids,
    risk=st.sampled_from(["low", "medium", "high", "", "x" * 300]),
    symbol=st.sampled_from(["BTC/USDT", "XXX/YYY", "", "BTC", "\x00/\x00"]),
)  # fmt: skip
def test_the_advisor_form_never_fails_on_bad_input(
    post: Callable[..., Any], advisor: None, **v: str
) -> None:
    data = {"symbol": v["symbol"], "capital": v["capital"], "risk": v["risk"], "bot": v["bot"]}
    post("/ai/runs/", data, created_on=(200,))


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), numbers, st.sampled_from(NASTY)
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=6,
)


API_KEYS = ("pair", "capital", "current_price", "lower_bound", "upper_bound", "volatility",
            "volume_24h", "grid_levels", "risk", "bot", "spacing")  # fmt: skip


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {"pair": st.one_of(st.just("BTC/USDT"), json_values), "capital": near("1000")},
        optional=dict.fromkeys(API_KEYS[2:], st.one_of(st.just("60000"), json_values)),
    )
)
def test_the_advisor_api_never_fails_on_bad_input(
    post: Callable[..., Any], advisor: None, body: Any
) -> None:
    raw = json.dumps(body, allow_nan=True)
    # Tasks run in-line here, so an accepted run has answered (200) by the time it returns.
    post("/api/ai/optimize", raw, content_type="application/json", created_on=(200, 202))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"capital": ' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe",
        b'{"pair": "BTC/USDT", "capital": NaN}',
        b'{"pair": "BTC/USDT", "capital": Infinity}',
        b'{"pair": "BTC/USDT", "capital": "1000", "lower_bound": 1, "upper_bound": 2, '
        b'"grid_levels": "1e5000"}',
        b'{"pair": "BTC/USDT", "capital": 1e19}',
        b'{"pair": "BTC/USDT", "capital": "1.5"}',
    ],
    ids=[
        "nested-list",
        "nested-object",
        "not-utf8",
        "nan",
        "infinity",
        "levels-1e5000",
        "capital-1e19",
        "capital-1.5",
    ],  # fmt: skip
)
def test_the_advisor_api_refuses_the_findings_inputs(post: Callable[..., Any], raw: bytes) -> None:
    response = post("/api/ai/optimize", raw, content_type="application/json", created_on=())
    assert response.status_code in (400, 422), response.content
    assert response.json()["detail"]


def test_how_many_inputs_were_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the fuzz tests in this module (pytest keeps file order) and says how many."""
    if not TRIED["inputs"]:
        pytest.skip("run it with the fuzz tests above")
    with capsys.disabled():
        print(f"\nbad-input fuzz: {TRIED['inputs']} inputs tried, none answered 5xx")
