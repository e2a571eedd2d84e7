"""Issue 15: every endpoint answers exactly as published, field by field, through a real HTTP
client against the served app; errors are ``{detail}`` with the right status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bots.models import Bot, Order
from tests.api.conftest import CONFIG, Client
from tests.bots.conftest import add_candles

pytestmark = pytest.mark.django_db(transaction=True)

BOT_FIELDS = {"id", "strategy", "pair", "status", "config"}


def _create(client: Client, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {"strategy": "grid", "pair": "BTC/USDT", "config": CONFIG} | overrides
    answer = client.post("/api/bots", json=body, headers=auth)
    assert answer.status_code == 201, answer.text
    return answer.json()


# --- auth ------------------------------------------------------------------------------------


def test_register_answers_a_token_that_signs_in(client: Client, db: None) -> None:
    answer = client.post(
        "/api/auth/register", json={"email": "New@Example.com", "password": "a-long-pass-83"}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"token", "user_id"} and isinstance(body["user_id"], int)
    me = client.get("/api/bots", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json() == []
    again = client.post(
        "/api/auth/login", json={"email": "new@example.com", "password": "a-long-pass-83"}
    )
    assert again.status_code == 200 and set(again.json()) == {"token", "user_id"}
    assert again.json()["user_id"] == body["user_id"]


def test_register_refuses_a_weak_password_and_a_taken_address_naming_the_field(
    client: Client, user: Any
) -> None:
    weak = client.post("/api/auth/register", json={"email": "x@example.com", "password": "123"})
    assert weak.status_code == 422 and weak.json()["detail"].startswith("password: ")
    taken = client.post(
        "/api/auth/register", json={"email": user.email, "password": "a-long-pass-83"}
    )
    assert taken.status_code == 409 and taken.json()["detail"].startswith("email: ")


def test_login_failures_share_the_pages_throttle(client: Client, user: Any, settings: Any) -> None:
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        wrong = client.post("/api/auth/login", json={"email": user.email, "password": "nope"})
        assert wrong.status_code == 401 and set(wrong.json()) == {"detail"}
    locked = client.post("/api/auth/login", json={"email": user.email, "password": "pw-Tr4der!x"})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    # the page counts the same failures: its sign-in from this address is locked too
    page = client.post("/accounts/login/", data={"username": user.email, "password": "pw-Tr4der!x"})
    assert page.status_code in (403, 429)  # 403: the page's CSRF check comes first


def test_a_token_ends_when_the_password_changes(
    client: Client, user: Any, auth: dict[str, str]
) -> None:
    assert client.get("/api/bots", headers=auth).status_code == 200
    user.set_password("another-pass-91")
    user.save()
    answer = client.get("/api/bots", headers=auth)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"


def test_no_credentials_or_a_forged_token_is_401(client: Client, db: None) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic eDp5"}):
        answer = client.get("/api/bots", headers=headers)
        assert answer.status_code == 401 and set(answer.json()) == {"detail"}


# --- bots ------------------------------------------------------------------------------------


def test_a_bots_life_through_the_api(
    client: Client, auth: dict[str, str], market: Decimal, user: Any
) -> None:
    created = _create(client, auth, pair="BTCUSDT")
    assert set(created) == BOT_FIELDS
    assert created["strategy"] == "grid" and created["pair"] == "BTC/USDT"
    assert created["status"] == "stopped"
    assert created["config"]["capital"] == "1000" and created["config"]["grid_levels"] == "20"
    bot_id = created["id"]

    listed = client.get("/api/bots", headers=auth).json()
    assert [set(b) for b in listed] == [BOT_FIELDS | {"created_at"}]
    detail = client.get(f"/api/bots/{bot_id}", headers=auth).json()
    assert set(detail) == BOT_FIELDS | {"created_at", "updated_at"}
    assert datetime.fromisoformat(detail["created_at"]).utcoffset() == timedelta(0)

    put = client.put(
        f"/api/bots/{bot_id}", json={"config": CONFIG | {"capital": "1500.50"}}, headers=auth
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"id": bot_id, "updated_config": put.json()["updated_config"]}
    assert put.json()["updated_config"]["capital"] == "1500.5"

    started = client.post(f"/api/bots/{bot_id}/start", headers=auth)
    assert started.status_code == 200 and started.json() == {"status": "started"}
    again = client.post(f"/api/bots/{bot_id}/start", headers=auth)
    assert again.status_code == 409 and "running" in again.json()["detail"]
    running_edit = client.put(f"/api/bots/{bot_id}", json={"config": CONFIG}, headers=auth)
    assert running_edit.status_code == 409

    orders = client.get(f"/api/bots/{bot_id}/orders?status=open", headers=auth).json()
    assert orders and {tuple(sorted(o)) for o in orders} == {
        ("amount", "created_at", "id", "price", "side", "status")
    }
    assert {o["status"] for o in orders} == {"open"} and {o["side"] for o in orders} <= {
        "buy",
        "sell",
    }
    assert Order.objects.filter(bot_id=bot_id, status="open").count() == len(orders)
    assert all(isinstance(o["price"], str) and "E" not in o["price"] for o in orders)

    balance = client.get(f"/api/bots/{bot_id}/balance", headers=auth).json()
    assert set(balance) == {"free", "locked", "total"}
    free, locked, total = (Decimal(balance[k]) for k in ("free", "locked", "total"))
    assert free + locked == total and locked > 0 and total > 0

    stats = client.get(f"/api/bots/{bot_id}/stats", headers=auth).json()
    assert set(stats) == {"total_trades", "win_rate", "total_profit", "max_drawdown"}
    assert stats["total_trades"] == 0

    assert client.get(f"/api/bots/{bot_id}/trades?limit=50&offset=0", headers=auth).json() == []

    stopped = client.post(f"/api/bots/{bot_id}/stop", headers=auth)
    assert stopped.status_code == 200 and stopped.json() == {"status": "stopped"}
    assert client.post(f"/api/bots/{bot_id}/stop", headers=auth).status_code == 409
    assert client.get(f"/api/bots/{bot_id}/orders?status=open", headers=auth).json() == []

    deleted = client.delete(f"/api/bots/{bot_id}", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {"status": "deleted"}
    assert client.get(f"/api/bots/{bot_id}", headers=auth).status_code == 404
    assert not Bot.objects.filter(pk=bot_id).exists()


def test_trades_are_round_trips_newest_first_and_paged(
    client: Client, auth: dict[str, str], market: Decimal, user: Any
) -> None:
    bot = Bot.objects.get(pk=_create(client, auth)["id"])
    from bots.models import Trade

    buy = Order.objects.create(
        bot=bot,
        side="buy",
        price=Decimal("60000"),
        amount=Decimal("0.001"),
        status="filled",
        client_order_id="t-b",
    )
    sell = Order.objects.create(
        bot=bot,
        side="sell",
        price=Decimal("60500"),
        amount=Decimal("0.001"),
        status="filled",
        client_order_id="t-s",
    )
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    for i, profit in enumerate(("0.377", "-0.000319", "0.1")):
        Trade.objects.create(
            bot=bot,
            slot=i,
            buy_order=buy,
            sell_order=sell,
            amount=Decimal("0.001"),
            buy_price=Decimal("60000"),
            sell_price=Decimal("60500"),
            profit=Decimal(profit),
            fees=Decimal("0.1205"),
            closed_at=t0 + timedelta(minutes=i),
        )
    page = client.get(f"/api/bots/{bot.pk}/trades?limit=2&offset=0", headers=auth).json()
    assert [t["profit"] for t in page] == ["0.1", "-0.000319"]
    assert set(page[0]) == {"id", "buy_price", "sell_price", "profit", "created_at"}
    assert page[0]["buy_price"] == "60000" and page[0]["sell_price"] == "60500"
    assert page[0]["created_at"].startswith("2025-06-01T00:02:00")
    rest = client.get(f"/api/bots/{bot.pk}/trades?limit=2&offset=2", headers=auth).json()
    assert [t["profit"] for t in rest] == ["0.377"]
    bad = client.get(f"/api/bots/{bot.pk}/trades?limit=0", headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("limit: ")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (CONFIG | {"capital": "-50"}, "config.capital"),
        (CONFIG | {"capital": "0"}, "config.capital"),
        (CONFIG | {"capital": "1000001"}, "config.capital"),
        (CONFIG | {"grid_levels": 500}, "config.grid_levels"),
        (CONFIG | {"grid_levels": "many"}, "config.grid_levels"),
        (CONFIG | {"lower_bound": "abc"}, "config.lower_bound"),
        (CONFIG | {"stop_loss_pct": "11"}, "config.stop_loss_pct"),
        (CONFIG | {"max_daily_loss": "-1"}, "config.max_daily_loss"),
        ({k: v for k, v in CONFIG.items() if k != "upper_bound"}, "config.upper_bound"),
    ],
)
def test_a_bad_config_is_422_naming_its_field_and_changes_nothing(
    client: Client, auth: dict[str, str], market: Decimal, config: dict[str, Any], field: str
) -> None:
    answer = client.post(
        "/api/bots", json={"strategy": "grid", "pair": "BTC/USDT", "config": config}, headers=auth
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"{field}: "), answer.json()
    assert not Bot.objects.exists()


def test_numbers_travel_exactly_both_ways(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    # a JSON number with more digits than a float holds is read exactly
    raw = (
        '{"strategy": "grid", "pair": "BTC-USDT", "config": {"capital": 1000.123456789012345, '
        '"lower_bound": 60000.01, "upper_bound": "70000", "grid_levels": 20}}'
    )
    answer = client.post("/api/bots", data=raw, headers=auth | {"Content-Type": "application/json"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["config"]["capital"] == "1000.123456789012345"
    assert answer.json()["config"]["lower_bound"] == "60000.01"


def test_malformed_bodies_are_4xx_never_5xx(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    for body in (
        "",
        "{",
        "[]",
        "null",
        '{"pair": 5}',
        '{"config": "x", "pair": "BTC/USDT"}',
        '{"pair": "NOPE/NOPE", "config": {}}',
    ):
        answer = client.post(
            "/api/bots", data=body, headers=auth | {"Content-Type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)
        assert "detail" in answer.json()
    unknown = client.post(
        "/api/bots", json={"strategy": "grid", "pair": "NOPE/USDT", "config": CONFIG}, headers=auth
    )
    assert unknown.status_code == 422 and unknown.json()["detail"].startswith("pair: ")


def test_a_live_start_needs_its_pair_typed_and_says_what_it_would_do(
    client: Client, auth: dict[str, str], market: Decimal, user: Any
) -> None:
    from accounts.models import ExchangeCredential
    from tests.bots.conftest import open_live_gate

    open_live_gate(user)
    credential = ExchangeCredential(owner=user, label="main", verified_at=timezone.now())
    credential.set_keys("k" * 64, "s" * 64)
    credential.save()
    bot = _create(client, auth, mode="live", credential_id=credential.pk)
    answer = client.post(f"/api/bots/{bot['id']}/start", headers=auth)
    assert answer.status_code == 409, answer.text
    assert '"confirm": "BTC/USDT"' in answer.json()["detail"]
    assert "Capital: 1,000 USDT" in answer.json()["detail"]
    assert Bot.objects.get(pk=bot["id"]).status == "stopped"


# --- owners only ----------------------------------------------------------------------------


def test_another_users_bot_is_404_on_every_endpoint(
    client: Client, auth: dict[str, str], other_auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _create(client, auth)["id"]
    calls = [
        ("GET", f"/api/bots/{bot_id}", None),
        ("PUT", f"/api/bots/{bot_id}", {"config": CONFIG}),
        ("POST", f"/api/bots/{bot_id}/start", None),
        ("POST", f"/api/bots/{bot_id}/stop", None),
        ("DELETE", f"/api/bots/{bot_id}", None),
        ("GET", f"/api/bots/{bot_id}/orders", None),
        ("GET", f"/api/bots/{bot_id}/trades", None),
        ("GET", f"/api/bots/{bot_id}/balance", None),
        ("GET", f"/api/bots/{bot_id}/stats", None),
    ]
    for method, path, body in calls:
        answer = client.request(method, path, json=body, headers=other_auth)
        assert answer.status_code == 404, (method, path, answer.status_code)
        assert set(answer.json()) == {"detail"}
    assert client.get("/api/bots", headers=other_auth).json() == []
    assert Bot.objects.get(pk=bot_id).status == "stopped"


# --- market ----------------------------------------------------------------------------------


def test_price_answers_the_pair_with_a_slash(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    for written in ("BTCUSDT", "BTC-USDT", "btc_usdt"):
        answer = client.get(f"/api/market/price/{written}", headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "symbol": "BTC/USDT",
            "price": "65000",
            "timestamp": "2025-06-01T00:00:00Z",
        }
    assert client.get("/api/market/price/NOPEUSDT", headers=auth).status_code == 404


def test_history_groups_minutes_into_the_interval(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    start = int(datetime(2025, 6, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows = [
        (start + i * 60_000, 100 + i, 100 + i + 5, 100 + i - 5, 101 + i, "0.5") for i in range(120)
    ]
    add_candles([tuple(str(x) if not isinstance(x, str) else x for x in r) for r in rows])
    answer = client.get("/api/market/history/BTCUSDT?interval=1h&limit=2", headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {
            "time": "2025-06-01T01:00:00Z",
            "open": "100",
            "high": "164",
            "low": "95",
            "close": "160",
            "volume": "30",
        },
        {
            "time": "2025-06-01T02:00:00Z",
            "open": "160",
            "high": "224",
            "low": "155",
            "close": "220",
            "volume": "30",
        },
    ]
    too_many = client.get("/api/market/history/BTCUSDT?interval=1d&limit=1000", headers=auth)
    assert too_many.status_code == 422
    assert client.get("/api/market/history/BTCUSDT?interval=7m", headers=auth).status_code == 422


def test_indicators_answer_their_five_fields(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    start = int(datetime(2025, 6, 1, 1, tzinfo=UTC).timestamp() * 1000)
    add_candles(
        [
            (
                start + i * 60_000,
                str(65000 + (i % 90) * 10),
                str(65000 + (i % 90) * 10 + 20),
                str(65000 + (i % 90) * 10 - 20),
                str(65000 + (i % 90) * 10 + 5),
                "0.25",
            )
            for i in range(20 * 60)
        ]
    )
    answer = client.get("/api/market/indicators/BTC-USDT", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"rsi", "volatility", "support", "resistance", "volume_24h"}
    assert 0 <= Decimal(body["rsi"]) <= 100
    assert Decimal(body["support"]) <= Decimal(body["resistance"])
    # the last 24 hours: 20 of these, and the feed's candle at midnight (volume 1)
    assert Decimal(body["volume_24h"]) == Decimal("0.25") * 20 * 60 + 1


# --- docs and limits -------------------------------------------------------------------------


def test_openapi_and_docs_are_served_without_a_cdn(client: Client, db: None) -> None:
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/bots",
        "/api/bots/{bot_id}",
        "/api/bots/{bot_id}/start",
        "/api/bots/{bot_id}/stop",
        "/api/bots/{bot_id}/orders",
        "/api/bots/{bot_id}/trades",
        "/api/bots/{bot_id}/balance",
        "/api/bots/{bot_id}/stats",
        "/api/market/price/{symbol}",
        "/api/market/indicators/{symbol}",
        "/api/market/history/{symbol}",
    ):
        assert path in paths, path
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "/static/ninja/swagger-ui-bundle" in docs.text and "cdn" not in docs.text.lower()


def test_requests_beyond_the_per_user_limit_are_429_with_retry_after(
    client: Client, auth: dict[str, str], settings: Any
) -> None:
    settings.API_REQUESTS_PER_USER_PER_MINUTE = 3
    answers = [client.get("/api/bots", headers=auth) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    assert set(answers[-1].json()) == {"detail"}


def test_deleting_a_running_bot_stops_it_first(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _create(client, auth)["id"]
    assert client.post(f"/api/bots/{bot_id}/start", headers=auth).status_code == 200
    assert Order.objects.filter(bot_id=bot_id, status="open").exists()
    deleted = client.delete(f"/api/bots/{bot_id}", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {"status": "deleted"}
    assert not Bot.objects.filter(pk=bot_id).exists()
    assert not Order.objects.filter(bot_id=bot_id).exists()


# --- the advisor -----------------------------------------------------------------------------


@pytest.fixture
def advisor_market(db: None, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The advisor tests' market (ten days of candles around 65,000), no Claude key: the
    advisor answers with its quantitative baseline."""
    from tests.ai_advisor import conftest as advisor

    settings.ANTHROPIC_API_KEY = ""
    advisor.market.__wrapped__(None, monkeypatch)


def test_optimize_answers_the_published_fields(
    client: Client, auth: dict[str, str], advisor_market: None
) -> None:
    answer = client.post(
        "/api/ai/optimize", json={"pair": "BTC/USDT", "capital": "1000"}, headers=auth
    )
    assert answer.status_code == 200, answer.text  # tasks run in-line in the tests
    body = answer.json()
    assert {
        "grid_lower",
        "grid_upper",
        "num_levels",
        "confidence",
        "reasoning",
        "risk_level",
    } <= set(body)
    assert Decimal(body["grid_lower"]) < Decimal(body["grid_upper"])
    assert isinstance(body["num_levels"], int) and 0 <= body["confidence"] <= 100
    again = client.get(f"/api/ai/runs/{body['run_id']}", headers=auth)
    assert again.status_code == 200 and again.json()["run_id"] == body["run_id"]


def test_optimize_refuses_bad_input_by_field_and_another_users_run_is_404(
    client: Client, auth: dict[str, str], other_auth: dict[str, str], advisor_market: None
) -> None:
    bad = client.post("/api/ai/optimize", json={"pair": "BTC/USDT", "capital": -5}, headers=auth)
    assert bad.status_code == 422 and "capital" in bad.json()["detail"]
    run_id = client.post(
        "/api/ai/optimize", json={"pair": "BTC/USDT", "capital": "1000"}, headers=auth
    ).json()["run_id"]
    assert client.get(f"/api/ai/runs/{run_id}", headers=other_auth).status_code == 404


def test_a_grid_that_loses_after_fees_needs_accept_loss_as_the_form_does(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    # 50 lines over 65,000..65,100: each grid earns about 0.003 % before 0.2 % of fees
    losing = {"capital": "1000", "lower_bound": "65000", "upper_bound": "65100", "grid_levels": 50}
    body = {"strategy": "grid", "pair": "BTC/USDT", "config": losing}
    refused = client.post("/api/bots", json=body, headers=auth)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("accept_loss: ")
    assert not Bot.objects.exists()
    created = client.post("/api/bots", json=body | {"accept_loss": True}, headers=auth)
    assert created.status_code == 201, created.text
    bot_id = created.json()["id"]
    edit = client.put(f"/api/bots/{bot_id}", json={"config": losing | {"capital": "900"}},
                      headers=auth)  # fmt: skip
    assert edit.status_code == 422 and "accept_loss" in edit.json()["detail"]


def test_the_readmes_python_script_creates_starts_and_watches_a_bot(
    client: Client, user: Any, market: Decimal
) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    script = re.search(r"```python\n(import json, requests.*?)```", readme, re.S).group(1)
    script = script.replace("http://localhost:8000", client.base_url)
    script = script.replace("ws://localhost:8000", client.base_url.replace("http", "ws"))
    script = script.replace('"me@example.com"', repr(user.email)).replace('"..."', '"pw-Tr4der!x"')
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        first = run.stdout.readline()  # type: ignore[union-attr]
    finally:
        run.kill()
        run.wait(timeout=10)
    assert "'status': 'running'" in first and "'open_orders'" in first, first
    assert Bot.objects.get(owner=user).status == "running"
