"""The dialog on the bot page and form, the run page, the advise command and the admin."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from ai_advisor import services, suggestions
from ai_advisor.client import RawSuggestion
from ai_advisor.models import AdvisorRun
from tests.ai_advisor.conftest import good_input
from tests.fakes import anthropic_fakes as fakes


def test_the_bot_page_and_forms_offer_the_advisor(client, user, bot):
    client.force_login(user)
    for url in (reverse("bots:detail", args=[bot.pk]), reverse("bots:edit", args=[bot.pk])):
        page = client.get(url).text
        assert "Ask the AI advisor" in page
        assert '<dialog id="advisor-dialog"' in page
        assert f'name="bot" value="{bot.pk}"' in page
    page = client.get(reverse("bots:new")).text
    assert '<dialog id="advisor-dialog"' in page
    assert 'hx-include="#id_symbol"' in page


def test_the_dialog_runs_the_advice_in_huey_and_polls_until_the_comparison_shows(
    client, user, bot, claude, django_capture_on_commit_callbacks
):
    claude([fakes.tool_use(good_input())])
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("ai_advisor:run_create"),
            {"bot": bot.pk, "capital": "1000", "risk": "medium"},
            headers={"HX-Request": "true"},
        )

    run = AdvisorRun.objects.get()
    assert f'id="advisor-run-{run.pk}"' in response.text
    assert 'hx-trigger="every 1s"' in response.text  # queued when the panel was rendered
    run.refresh_from_db()
    assert run.status == "done" and run.risk_preference == "medium"

    panel = client.get(reverse("ai_advisor:run", args=[run.pk]), headers={"HX-Request": "true"})

    text = panel.text
    assert "every 1s" not in text
    assert "Claude suggests" in text
    assert "The price has ranged" in text
    # The diff against the bot's grid: 60 000 → 63 000 is a change.
    assert "Lower price" in text and "60,000.00" in text and "63,000.00" in text
    assert "(changed)" in text
    # One row per candidate and window, each with a sparkline.
    for key in ("suggestion", "current", "baseline"):
        assert text.count(f'data-candidate="{key}"') == 2
    assert text.count("<polyline points=") == 6
    assert "30 days: only 10.0 days of candles are stored" in text
    assert "Accept on the running bot" not in text and ">Accept</button>" in text
    assert "Reject" in text
    assert "1480 + 312 tokens" in text
    # The whole page works without htmx too.
    page = client.get(reverse("ai_advisor:run", args=[run.pk]))
    assert "<html" in page.text and "Claude suggests" in page.text


def test_the_dialog_says_when_it_is_the_baseline(client, user, bot, no_key):
    client.force_login(user)
    response = client.post(
        reverse("ai_advisor:run_create"), {"bot": bot.pk, "capital": "1000"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    run = AdvisorRun.objects.get()
    services.execute_run(run)
    text = client.get(reverse("ai_advisor:run", args=[run.pk]), headers={"HX-Request": "true"}).text
    assert "No Anthropic API key is configured" in response.text
    assert "quantitative baseline" in text and "The baseline suggests" in text
    assert "not fitted to" in text


def test_a_failed_run_shows_the_error_and_no_accept(client, user, bot, claude):
    claude([fakes.refusal()])
    client.force_login(user)
    run = services.create_run(user, capital="1000", bot=bot)
    services.execute_run(run)
    text = client.get(reverse("ai_advisor:run", args=[run.pk]), headers={"HX-Request": "true"}).text
    assert "Claude declined" in text
    assert "Nothing about your bot changed." in text
    assert "Accept" not in text


def test_the_dialog_reports_bad_input_in_place(client, user, market, no_key):
    client.force_login(user)
    response = client.post(
        reverse("ai_advisor:run_create"), {"symbol": "BTC/USDT", "capital": "0"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert response.status_code == 200
    # (The one schema's sentence; "forms" is rewording it: either wording is the field's.)
    assert re.search(r"[Cc]apital must be (above|more than) 0", response.text)
    assert not AdvisorRun.objects.exists()


def test_the_dialog_needs_a_login(client, market):
    response = client.post(reverse("ai_advisor:run_create"), {"capital": "1000"})
    assert response.status_code == 302 and "/accounts/login" in response.url


# --- validation -------------------------------------------------------------------------------


def raw(**overrides: Any) -> RawSuggestion:
    return RawSuggestion.from_tool_input(good_input(**overrides), min_levels=10, max_levels=50)


@pytest.mark.parametrize(
    ("overrides", "capital", "says"),
    [
        ({}, "1000", None),
        ({"grid_lower": 66000, "grid_upper": 70000}, "1000", "must contain the current price"),
        ({"grid_lower": 60000, "grid_upper": 64000}, "1000", "must contain the current price"),
        ({"num_levels": 50}, "100", "the grid needs at least"),
        (
            {"num_levels": 50, "grid_lower": 64500, "grid_upper": 65500},
            "1000",
            "does not beat the round-trip fee of 0.20 %",
        ),  # fmt: skip
        ({"take_profit": 66000}, "1000", "take-profit must be above the upper price"),
    ],
)
def test_a_suggestion_must_be_a_grid_that_runs_at_the_current_price(
    user, market, no_key, overrides, capital, says
):
    run = services.create_run(user, symbol="BTC/USDT", capital=capital)
    ctx = services.build_context(run, current=None)
    reason = suggestions.check_suggestion(raw(**overrides), ctx)
    if says is None:
        assert reason is None
    else:
        assert says in reason


def test_the_context_carries_the_market_rules_and_the_bots_grid_only(user, bot, no_key, market):
    run = services.create_run(user, capital="750", bot=bot, risk="high")
    ctx = services.build_context(run, current=services.current_config_of(run))
    assert (ctx.tick, ctx.step, ctx.min_notional, ctx.fee) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal("5"), Decimal("0.001"),
    )  # fmt: skip
    assert ctx.capital == Decimal("750") and ctx.risk_preference == "high"
    assert ctx.price == Decimal("65000")
    assert ctx.current_config == {
        "lower": Decimal("60000"), "upper": Decimal("70000"), "levels": 12,
        "spacing": "arithmetic", "stop_loss_pct": Decimal("5"), "take_profit": None,
    }  # fmt: skip
    assert market == [("binance", "BTC/USDT")]


def test_too_little_market_data_fails_the_run_in_words(user, bot, no_key, monkeypatch):
    from market.services import MarketDataError

    def short(exchange: str, symbol: str) -> Any:
        raise MarketDataError("only 20 candles stored; RSI(14) on days needs 15 days")

    monkeypatch.setattr(services, "market_snapshot", short)
    run = services.create_run(user, capital="1000", bot=bot)
    services.execute_run(run)
    assert run.status == "failed"
    assert run.error.startswith("Not enough market data for BTC/USDT: only 20 candles")


# --- the command and the admin ------------------------------------------------------------------


def test_advise_prints_the_comparison(bot, no_key):
    out = StringIO()
    call_command("advise", "BTC/USDT", "--capital", "1000", "--bot", str(bot.pk), stdout=out)
    text = out.getvalue()
    assert "Quantitative baseline" in text
    assert "no ANTHROPIC_API_KEY is configured" in text
    assert "Current config" in text and "drawdown" in text
    assert "Note (30 days): only 10.0 days" in text
    run = AdvisorRun.objects.get()
    assert run.bot == bot and run.owner == bot.owner


def test_advise_with_claude_prints_tokens_and_cost(market, claude):
    claude([fakes.tool_use(good_input())])
    out = StringIO()
    call_command("advise", "BTC/USDT", "--capital", "1000", "--risk", "moderate", stdout=out)
    text = out.getvalue()
    assert "Claude" in text and "1480 + 312 tokens" in text and "$0.00912," in text
    assert "risk choice: moderate" in text
    run = AdvisorRun.objects.get()
    assert f"confidence {run.suggestion['confidence']} / 100, from the held-out backtest:" in text
    assert f"    - {run.suggestion['confidence_reasons'][0]}" in text
    assert run.owner is None


def test_advise_says_what_went_wrong(market, claude):
    claude([fakes.refusal()])
    with pytest.raises(CommandError, match="Claude declined"):
        call_command("advise", "BTC/USDT", "--capital", "1000", stdout=StringIO())
    with pytest.raises(CommandError, match="No bot 999"):
        call_command("advise", "BTC/USDT", "--capital", "1000", "--bot", "999")


def test_the_admin_lists_runs_with_filters(admin_client, user, bot, no_key):
    run = services.create_run(user, capital="1000", bot=bot)
    services.execute_run(run)
    response = admin_client.get("/admin/ai_advisor/advisorrun/?source__exact=baseline")
    assert response.status_code == 200
    assert "BTC/USDT" in response.text
    assert admin_client.get(f"/admin/ai_advisor/advisorrun/{run.pk}/change/").status_code == 200
