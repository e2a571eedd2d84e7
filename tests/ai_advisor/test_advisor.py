"""The advisor end to end: the real anthropic SDK against the fake Messages API, the stored
run, the backtest comparison, the decision, and the bot left alone whenever anything fails."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from ai_advisor import services, suggestions
from ai_advisor.models import AdvisorRun
from bots import config as schema
from bots import services as bot_services
from bots.errors import BotError
from bots.models import Bot, Order
from market.indicators import market_snapshot
from market.services import load_bundled_sample
from tests.ai_advisor.conftest import API_KEY, BOT_CONFIG, good_input
from tests.fakes import anthropic_fakes as fakes

API = "/api/ai/optimize"


def ask(client: Any, **body: Any) -> Any:
    payload = {"pair": "BTC/USDT", "capital": 1000, **body}
    return client.post(API, data=json.dumps(payload), content_type="application/json")


def bot_state(bot: Bot) -> Any:
    bot.refresh_from_db()
    orders = list(Order.objects.filter(bot=bot).order_by("pk").values_list(
        "pk", "status", "side", "price", "amount"))  # fmt: skip
    return (bot.config, bot.status, bot.generation, bot.engine_state, orders)


@pytest.fixture
def running_bot(bot: Bot) -> Bot:
    bot_services.start_bot(bot)
    bot.refresh_from_db()
    assert bot.is_running
    assert Order.objects.filter(bot=bot, status="open").exists()
    return bot


# --- Claude answers ---------------------------------------------------------------------------


def test_a_good_tool_call_is_stored_with_tokens_cost_latency_and_the_comparison(
    client, user, bot, claude
):
    fake = claude([fakes.tool_use(good_input(), input_tokens=1500, output_tokens=300)])
    client.force_login(user)

    response = ask(client, bot=bot.pk, current_price=65010, volatility=0.02, volume_24h=12345)

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["source"] == "claude"
    assert (data["grid_lower"], data["grid_upper"], data["num_levels"]) == ("63000", "67000", 20)
    # Claude's 72 is kept as what it said; the confidence is earned on the held-out candles.
    assert data["stated_confidence"] == 72
    assert 0 <= data["confidence"] <= 72 and data["confidence_reasons"]
    assert data["risk_level"] == "medium"
    assert data["reasoning"].startswith("The price has ranged")
    run = AdvisorRun.objects.get(pk=data["run_id"])
    assert run.owner == user and run.bot == bot
    assert run.status == "done" and run.decision == "pending"
    assert run.source == "claude" and run.model == fakes.MODEL
    assert (run.input_tokens, run.output_tokens) == (1500, 300)
    assert str(run.cost_usd) == "0.009000"  # $3 in, $15 out per million tokens
    assert run.latency_ms is not None and run.latency_ms >= 0
    assert run.validation == "ok" and run.attempts == 1
    assert run.raw_response["content"][0]["input"]["grid_lower"] == 63000
    assert run.inputs["symbol"] == "BTC/USDT" and run.inputs["price"] == "65000"
    assert run.inputs["client_hints"] == {
        "current_price": "65010", "volatility": "0.02", "volume_24h": "12345"
    }  # fmt: skip
    # The comparison: suggestion, the bot's current grid and the baseline, on 7 and 30 days.
    backtests = data["backtests"]
    assert [c["key"] for c in backtests["candidates"]] == ["suggestion", "current", "baseline"]
    assert [w["days"] for w in backtests["windows"]] == [7, 30]
    assert "only 10.0 days" in backtests["windows"][1]["note"]
    for cand in backtests["candidates"]:
        for days in ("7", "30"):
            r = cand["results"][days]
            assert {"total_profit", "grid_profit", "total_trades", "max_drawdown",
                    "time_in_range"} <= set(r)  # fmt: skip
            assert len(r["equity_curve"]) > 10
    assert backtests["candidates"][1]["config"]["lower_bound"] == "60000"
    # Asking changes nothing about the bot.
    bot.refresh_from_db()
    assert bot.config == schema.normalise(BOT_CONFIG)
    assert len(fake.requests) == 1


def test_an_out_of_range_suggestion_gets_a_corrective_retry_then_succeeds(
    client, user, bot, claude
):
    fake = claude([
        fakes.tool_use(good_input(grid_lower=70000, grid_upper=75000)),
        fakes.tool_use(good_input()),
    ])  # fmt: skip
    client.force_login(user)

    response = ask(client, bot=bot.pk)

    assert response.status_code == 200
    assert len(fake.requests) == 2
    correction = fake.bodies[1]["messages"][-1]["content"][0]
    assert correction["type"] == "tool_result" and correction["is_error"] is True
    assert "must contain the current price 65,000.00" in correction["content"]
    run = AdvisorRun.objects.get()
    assert run.attempts == 2 and run.status == "done"
    assert run.suggestion["grid_lower"] == "63000"
    assert (run.input_tokens, run.output_tokens) == (2 * 1480, 2 * 312)


@pytest.mark.parametrize(
    ("replies", "says"),
    [
        pytest.param(
            [fakes.tool_use(good_input(num_levels="twenty")) for _ in range(2)],
            "malformed: num_levels must be an integer",
            id="malformed",
        ),
        pytest.param([fakes.refusal()], "Claude declined", id="refusal"),
        pytest.param(
            [fakes.overloaded() for _ in range(3)], "(HTTP 529 overloaded); tried 3 times", id="529"
        ),
        pytest.param(
            [fakes.read_timeout] * 3, "did not answer within 30 s; tried 3 times", id="timeout"
        ),  # fmt: skip
        pytest.param(
            [
                fakes.tool_use(good_input(num_levels=50, grid_lower=64900, grid_upper=65100))
                for _ in range(2)
            ],
            "does not beat the round-trip fee",
            id="invalid-twice",
        ),
    ],
)
def test_every_failure_is_a_clear_error_and_changes_nothing_about_the_bot(
    client, user, running_bot, claude, no_backoff, replies, says
):
    fake = claude(replies)
    before = bot_state(running_bot)
    client.force_login(user)

    response = ask(client, bot=running_bot.pk)

    assert response.status_code == 502
    assert says in response.json()["detail"]
    run = AdvisorRun.objects.get(pk=response.json()["run_id"])
    assert run.status == "failed" and says in run.error
    assert run.backtests is None and run.decision == "pending"
    assert bot_state(running_bot) == before
    assert len(fake.requests) == len(replies)
    # A failed run cannot be accepted either.
    response = client.post(reverse("ai_advisor:accept", args=[run.pk]))
    assert "cannot be accepted" in response.text
    assert bot_state(running_bot) == before


def test_an_invalid_suggestion_keeps_the_last_answer_and_why(client, user, bot, claude):
    claude([fakes.tool_use(good_input(grid_lower=70000, grid_upper=75000)) for _ in range(2)])
    client.force_login(user)

    ask(client, bot=bot.pk)

    run = AdvisorRun.objects.get()
    assert "must contain the current price" in run.validation
    assert run.suggestion["grid_lower"] == "70000"


# --- without a key: the baseline ----------------------------------------------------------------


def test_without_a_key_the_api_answers_with_the_labelled_baseline(
    client, user, bot, no_key, monkeypatch
):
    fake = fakes.FakeAnthropic()
    monkeypatch.setattr(services, "HTTP_CLIENT_FACTORY", fake.http_client)
    client.force_login(user)

    response = ask(client, bot=bot.pk)

    assert response.status_code == 200
    data = response.json()
    assert data["source"] == "baseline"
    assert data["reasoning"].startswith("Quantitative baseline, not Claude")
    assert data["model"] == "" and data["input_tokens"] == 0
    assert [c["key"] for c in data["backtests"]["candidates"]] == ["suggestion", "current"]
    assert data["backtests"]["candidates"][0]["label"] == "Quantitative baseline (suggested)"
    assert fake.requests == []
    lower, upper = float(data["grid_lower"]), float(data["grid_upper"])
    assert lower < 65000 < upper
    assert 10 <= data["num_levels"] <= 50


def test_the_baseline_is_fitted_on_older_candles_and_scored_on_newer_ones(user, bot, no_key):
    run = services.create_run(user, capital="1000", bot=bot)
    services.execute_run(run)

    report = run.backtests["baseline"]
    assert report["fit"]["to"] <= report["holdout"]["from"]
    assert report["fit"]["from"] < report["fit"]["to"]
    assert 0 < report["candidates_tried"] <= 7 * 6
    assert "total_profit" in report["holdout"]
    # The suggestion runs at the current price under the market's rules.
    config = run.suggestion["config"]
    ctx = services.build_context(run, current=None)
    assert suggestions.check_config(config, ctx) is None
    assert config["stop_loss_pct"] == "5"  # the bot's own stop-loss is kept


# --- the decision -------------------------------------------------------------------------------


def _done_run(user: Any, bot: Bot | None = None) -> AdvisorRun:
    run = services.create_run(user, symbol="BTC/USDT", capital="1000", bot=bot)
    services.execute_run(run)
    assert run.status == "done", run.error
    return run


def test_accept_updates_a_stopped_bot(client, user, bot, no_key):
    run = _done_run(user, bot)
    client.force_login(user)

    response = client.post(
        reverse("ai_advisor:accept", args=[run.pk]), headers={"HX-Request": "true"}
    )

    assert response.headers["HX-Redirect"] == reverse("bots:detail", args=[bot.pk])
    bot.refresh_from_db()
    expected = dict(run.suggestion["config"], max_daily_loss="50")  # the trader's limit stays
    assert bot.config == expected
    assert bot.status == "stopped"
    run.refresh_from_db()
    assert run.decision == "accepted" and run.decided_at is not None


def test_accept_on_a_running_bot_asks_first_then_lays_the_new_grid_keeping_its_history(
    client, user, running_bot, no_key
):
    run = _done_run(user, running_bot)
    before = bot_state(running_bot)
    old_orders = set(
        Order.objects.filter(bot=running_bot, status="open").values_list("pk", flat=True)
    )
    client.force_login(user)
    url = reverse("ai_advisor:accept", args=[run.pk])

    response = client.post(url, headers={"HX-Request": "true"})
    assert "is running: accepting cancels its orders and lays the new grid" in response.text
    assert "Lay the new grid on it" in response.text
    assert bot_state(running_bot) == before

    response = client.post(url, {"confirm": "restart"}, headers={"HX-Request": "true"})

    assert response.headers["HX-Redirect"] == reverse("bots:detail", args=[running_bot.pk])
    started_at = running_bot.started_at
    running_bot.refresh_from_db()
    assert running_bot.is_running
    assert running_bot.generation == before[2] + 1
    assert running_bot.started_at == started_at  # one run: its history and statistics go on
    assert not running_bot.events.filter(kind="stopped").exists()
    assert running_bot.config["lower_bound"] == run.suggestion["config"]["lower_bound"]
    engine = running_bot.engine()
    assert (
        engine.config.lower == engine.lines[0] == Decimal(run.suggestion["config"]["lower_bound"])
    )
    assert len(engine.lines) == run.suggestion["num_levels"]
    assert not Order.objects.filter(pk__in=old_orders, status="open").exists()
    assert (
        Order.objects.filter(bot=running_bot, status="open").count() == len(engine.lines) - 1
    )  # one per slot
    run.refresh_from_db()
    assert run.decision == "accepted"


def test_a_new_grid_that_cannot_be_laid_leaves_the_bot_running_as_it_was(
    client, user, running_bot, no_key, monkeypatch
):
    run = _done_run(user, running_bot)
    before = bot_state(running_bot)

    def refuse(bot: Bot, config: dict) -> list[str]:
        raise BotError("the paper wallet is short")

    monkeypatch.setattr(bot_services, "regrid_bot", refuse)
    client.force_login(user)

    response = client.post(reverse("ai_advisor:accept", args=[run.pk]), {"confirm": "restart"})

    assert "the paper wallet is short" in response.text
    assert bot_state(running_bot) == before
    run.refresh_from_db()
    assert run.decision == "pending"


def test_accept_without_a_bot_creates_one(client, user, market, no_key):
    run = _done_run(user)
    client.force_login(user)

    response = client.post(reverse("ai_advisor:accept", args=[run.pk]))

    bot = Bot.objects.get(owner=user)
    assert response.url == reverse("bots:detail", args=[bot.pk])
    assert bot.config == run.suggestion["config"] and bot.status == "stopped"


def test_reject_stores_the_reason_and_changes_nothing(client, user, bot, no_key):
    run = _done_run(user, bot)
    before = bot_state(bot)
    client.force_login(user)

    response = client.post(
        reverse("ai_advisor:reject", args=[run.pk]), {"reason": "too narrow for me"}
    )

    assert "Rejected: too narrow for me" in response.text
    run.refresh_from_db()
    assert (run.decision, run.decision_reason) == ("rejected", "too narrow for me")
    assert bot_state(bot) == before
    # Decided is decided.
    response = client.post(reverse("ai_advisor:accept", args=[run.pk]))
    assert "rejected already" in response.text
    assert bot_state(bot) == before


# --- access and throttling ----------------------------------------------------------------------


def test_another_users_run_or_bot_is_a_404(client, user, other_user, bot, no_key):
    run = _done_run(user, bot)
    before = bot_state(bot)
    client.force_login(other_user)

    assert client.get(reverse("ai_advisor:run", args=[run.pk])).status_code == 404
    assert client.post(reverse("ai_advisor:accept", args=[run.pk])).status_code == 404
    assert client.post(reverse("ai_advisor:reject", args=[run.pk])).status_code == 404
    response = client.post(reverse("ai_advisor:run_create"), {"bot": bot.pk, "capital": "1000"})
    assert response.status_code == 404
    response = ask(client, bot=bot.pk)
    assert response.status_code == 404 and response.json() == {"detail": "No such bot."}
    assert bot_state(bot) == before
    run.refresh_from_db()
    assert run.decision == "pending"
    assert AdvisorRun.objects.count() == 1


def test_the_api_needs_a_session_or_a_token(client, market):
    response = ask(client)
    assert response.status_code == 401
    assert "Sign in" in response.json()["detail"]


def test_the_api_checks_csrf_like_any_django_post(user, market, no_key):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert ask(client).status_code == 403
    client.get(reverse("bots:dashboard"))  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    body = json.dumps({"pair": "BTC/USDT", "capital": 1000})
    headers = {"X-CSRFToken": token}
    response = client.post(API, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("not json", 400, "Cannot parse request body"),
        ("[1, 2]", 422, "Field required"),
        (json.dumps({"capital": 1000}), 422, "pair is required"),
        (json.dumps({"pair": "BTC/USDT"}), 422, "capital: Field required"),
        (json.dumps({"pair": "BTC/USDT", "capital": "lots"}), 422, "capital: "),
        (json.dumps({"pair": "BTC/USDT", "capital": -5}), 422, "capital must be a number above 0"),
        (
            json.dumps(
                {"pair": "BTC/USDT", "capital": 1000, "lower_bound": 70000, "upper_bound": 60000}
            ),
            422,
            "lower_bound must be below upper_bound",
        ),  # fmt: skip
        (
            json.dumps({"pair": "BTC/USDT", "capital": 1000, "volatility": True}),
            422,
            "volatility: ",
        ),
        (json.dumps({"pair": "BTC/USDT", "capital": 1000, "risk": "yolo"}), 422, "risk: "),
        (json.dumps({"pair": "DOGE/EUR", "capital": 1000}), 422, "No market rules for DOGE/EUR"),
    ],
)
def test_bad_input_is_a_4xx_with_a_clear_json_error_naming_the_field(
    client, user, market, no_key, body, status, says
):
    client.force_login(user)
    response = client.post(API, data=body, content_type="application/json")
    assert response.status_code == status
    assert says in response.json()["detail"]
    assert not AdvisorRun.objects.exists()


def test_the_api_compares_against_a_range_given_with_its_levels(client, user, market, no_key):
    client.force_login(user)
    response = ask(client, lower_bound=60000, upper_bound=70000, grid_levels=12)
    data = response.json()
    assert [c["key"] for c in data["backtests"]["candidates"]] == ["suggestion", "current"]
    assert data["backtests"]["candidates"][1]["config"]["grid_levels"] == "12"
    run = AdvisorRun.objects.get()
    assert run.inputs["compare_config"]["lower_bound"] == "60000"
    assert run.inputs["current_config"]["lower"] == "60000"  # as the prompt put it
    page = client.get(reverse("ai_advisor:run", args=[run.pk]), headers={"HX-Request": "true"})
    assert "(changed)" in page.text and "60,000.00" in page.text


def test_throttling_is_a_429_with_a_clear_message(client, user, market, no_key, settings):
    settings.ADVISOR_RATE_PER_HOUR = 2
    client.force_login(user)
    assert ask(client).status_code == 200
    assert ask(client).status_code == 200

    response = ask(client)

    assert response.status_code == 429
    assert "You have asked the advisor 2 times in the last hour" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) > 0
    assert AdvisorRun.objects.count() == 2
    # The dialog says the same, in place.
    response = client.post(
        reverse("ai_advisor:run_create"),
        {"symbol": "BTC/USDT", "capital": "1000"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "You have asked the advisor 2 times" in response.text
    response = client.post(reverse("ai_advisor:run_create"), {"symbol": "BTC/USDT", "capital": "1"})
    assert response.status_code == 429


# --- secrets ------------------------------------------------------------------------------------


def test_the_prompt_holds_no_secret(client, user, bot, claude, settings):
    exchange_key = "binance-api-key-PLANTED-4f1c"
    exchange_secret = "binance-secret-PLANTED-Zq81mFx0pLw"
    Bot.objects.filter(pk=bot.pk).update(
        config={**bot.config, "api_key": exchange_key, "secret": exchange_secret}
    )
    user.first_name = "Ada-PLANTED"
    user.save()
    fake = claude([
        fakes.tool_use(good_input(grid_lower=70000, grid_upper=75000)),
        fakes.tool_use(good_input()),
    ])  # fmt: skip
    client.force_login(user)

    assert ask(client, bot=bot.pk).status_code == 200

    planted = [exchange_key, exchange_secret, user.email, "pw-Tr4der!x", "Ada-PLANTED",
               settings.SECRET_KEY, API_KEY]  # fmt: skip
    assert len(fake.requests) == 2
    for request in fake.requests:
        body = request.content.decode()
        for secret in planted:
            assert secret not in body
    fields = ("inputs", "raw_response", "suggestion", "backtests", "error")
    stored = json.dumps(AdvisorRun.objects.values(*fields).get(), default=str)
    for secret in planted:
        assert secret not in stored


def test_on_the_bundled_market_the_prompt_carries_the_real_indicators(client, user, claude):
    # No stubbed snapshot here: market.indicators reads the stored real BTC candles.
    load_bundled_sample()
    snap = market_snapshot("binance", "BTC/USDT")
    price = float(snap.price)
    fake = claude([fakes.tool_use(fakes.suggestion_input(
        grid_lower=round(price * 0.97), grid_upper=round(price * 1.03), num_levels=20,
        take_profit=None,
    ))])  # fmt: skip
    client.force_login(user)

    response = ask(client)

    assert response.status_code == 200, response.content
    assert response.json()["source"] == "claude"
    prompt = fake.requests[0].content.decode()
    figures = (snap.price, snap.rsi14, snap.volatility_daily, snap.atr14, snap.support,
               snap.resistance, *snap.range_7d, *snap.range_30d)  # fmt: skip
    for figure in figures:
        assert format(figure, "f") in prompt
    run = AdvisorRun.objects.get()
    assert run.inputs["price"] == format(snap.price, "f")
    assert run.inputs["rsi14"] == format(snap.rsi14, "f")
