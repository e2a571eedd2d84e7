"""Issue 14, "help to choose a grid": the advisor's confidence comes from the held-out backtest,
the risk choice changes the grid visibly, one click fills the new-bot form, and every number on
the dialog and the run page is formatted."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from ai_advisor import confidence, services
from ai_advisor.models import AdvisorRun
from ai_advisor.profiles import PROFILES, profile_for, shape_of
from ai_advisor.prompt import render_context
from ai_advisor.templatetags.advice import price_at_tick
from bots.models import Bot
from tests.ai_advisor.conftest import good_input
from tests.fakes import anthropic_fakes as fakes

API = "/api/ai/optimize"


def ask(client: Any, **body: Any) -> Any:
    payload = {"pair": "BTC/USDT", "capital": 1000, **body}
    return client.post(API, data=json.dumps(payload), content_type="application/json")


def panel(client: Any, run: AdvisorRun) -> str:
    url = reverse("ai_advisor:run", args=[run.pk])
    return client.get(url, headers={"HX-Request": "true"}).text


def visible(html: str) -> str:
    """The text a person reads: tags (and their attributes, URLs, ids) gone."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def done_run(user: Any, *, risk: str = "medium", bot: Bot | None = None) -> AdvisorRun:
    run = services.create_run(
        user, symbol="BTC/USDT", capital="1000", risk=risk, bot=bot, throttle=False
    )
    services.execute_run(run)
    assert run.status == "done", run.error
    return run


# --- confidence from the held-out result -------------------------------------------------------


def period(**stats: Any) -> dict[str, Any]:
    base = {"from": "2025-06-08T00:00:00Z", "to": "2025-06-15T00:00:00Z", "days": "7",
            "total_profit": "20", "return": "0.02", "total_trades": 12, "time_in_range": "0.9",
            "stopped": None}  # fmt: skip
    return base | stats


FIT = period(**{"from": "2025-05-16T00:00:00Z", "to": "2025-06-08T00:00:00Z", "days": "23",
                "total_profit": "23", "return": "0.023"})  # fmt: skip


def test_a_held_out_loss_caps_the_confidence_low_whatever_claude_said():
    held = {"fit": FIT, "holdout": period(total_profit="-3.21", **{"return": "-0.00321"})}

    c = confidence.assess(held, quote="USDT", stated=100)

    assert c.score <= confidence.CAP_LOSS
    assert c.stated == 100
    assert c.reasons[0] == (
        "It lost money on the held-out 2025-06-08 .. 2025-06-15, data it was not fitted to: "
        "-3.21 USDT (-0.32 %)."
    )
    assert c.reasons[-1] == "Claude's own estimate was 100; it counts only when it is lower."


def test_a_held_out_return_far_below_the_fitted_one_caps_the_confidence_at_half():
    # 3 % a day on the fit, 0.1 % a day held out: still a profit, but far below.
    held = {"fit": period(**{"days": "23", "return": "0.69"}),
            "holdout": period(**{"return": "0.007", "total_profit": "7"})}  # fmt: skip

    c = confidence.assess(held, quote="USDT")

    assert c.score <= confidence.CAP_FAR_BELOW_FIT
    assert "It earned 0.10 % a day on the held-out 2025-06-08 .. 2025-06-15, far below the " \
        "3.00 % a day" in c.reasons[0]  # fmt: skip


def test_a_held_out_result_that_holds_up_earns_its_time_in_range():
    held = {"fit": FIT, "holdout": period(time_in_range="0.9")}  # 0.29 % a day, 0.1 % fitted

    c = confidence.assess(held, quote="USDT")

    assert c.score == 90
    assert c.reasons == [
        "It made +20.00 USDT (2.00 %) on the held-out 2025-06-08 .. 2025-06-15, data it was "
        "not fitted to, with the price in its range 90.00 % of the time."
    ]


def test_claudes_own_figure_can_lower_the_confidence_but_never_raise_it():
    held = {"fit": FIT, "holdout": period()}
    assert confidence.assess(held, quote="USDT", stated=40).score == 40
    assert confidence.assess(held, quote="USDT", stated=100).score == 90
    lowered = confidence.assess(held, quote="USDT", stated=40)
    assert lowered.reasons[-1] == "Claude rated it lower (40), and the lower figure is kept."


@pytest.mark.parametrize(
    ("holdout", "at_most", "says"),
    [
        (None, confidence.CAP_NO_HOLDOUT, "Too few candles are stored to hold any back"),
        ({"from": "2025-06-08T00:00:00Z", "error": "the grid needs at least 12 USDT"},
         confidence.CAP_CANNOT_RUN, "this grid could not run: the grid needs at least 12 USDT"),
        (period(stopped="stop_loss", total_profit="-40", **{"return": "-0.04"}),
         confidence.CAP_STOPPED, "Its stop-loss was hit on the held-out"),
        (period(total_profit="0", total_trades=0, **{"return": "0"}), confidence.CAP_NO_TRADES,
         "It completed no round trip on the held-out"),
        (period(time_in_range="0.3"), confidence.CAP_OUT_OF_RANGE,
         "The price was inside its range only 30.00 % of the time"),
    ],
)  # fmt: skip
def test_each_weakness_of_the_held_out_result_caps_the_confidence_and_says_why(
    holdout, at_most, says
):
    c = confidence.assess({"fit": FIT, "holdout": holdout}, quote="USDT", stated=95)
    assert c.score <= at_most
    assert says in c.reasons[0]


def test_a_tiny_held_out_loss_keeps_its_sign_in_the_reason():
    held = {"fit": FIT, "holdout": period(total_profit="-0.000319", **{"return": "-0.0000003"})}
    c = confidence.assess(held, quote="USDT")
    assert "-0.00032 USDT" in c.reasons[0] and "+0.00" not in c.reasons[0]


def test_claudes_confidence_100_beside_a_held_out_loss_is_not_what_is_shown(
    client, user, market, claude
):
    claude([fakes.tool_use(good_input(confidence=100))])
    client.force_login(user)

    data = ask(client).json()

    held = data["backtests"]["held_out"]
    assert Decimal(held["holdout"]["return"]) < 0  # on these candles the grid lost, held out
    assert held["fit"]["to"] <= held["holdout"]["from"]
    assert data["stated_confidence"] == 100
    assert data["confidence"] <= confidence.CAP_LOSS
    assert data["confidence_reasons"][0].startswith("It lost money on the held-out")
    text = visible(panel(client, AdvisorRun.objects.get()))
    assert f"confidence {data['confidence']} / 100" in text
    assert "It lost money on the held-out" in text
    assert "Claude's own estimate was 100; it counts only when it is lower." in text
    assert "confidence 100" not in text


# --- the risk choice ----------------------------------------------------------------------------


def test_the_three_risk_choices_give_three_different_grids_on_the_same_data(
    client, user, market, no_key
):
    runs = {risk: done_run(user, risk=risk) for risk in ("low", "medium", "high")}

    configs = {risk: run.suggestion["config"] for risk, run in runs.items()}
    shapes = {
        risk: shape_of(config, Decimal("65000"), Decimal("0.001"))
        for risk, config in configs.items()
    }
    # Three different grids: a wide one, a middle one, a tight one, each inside its band.
    assert shapes["low"]["width"] > shapes["medium"]["width"] > shapes["high"]["width"]
    for risk, shape in shapes.items():
        low, high = PROFILES[risk].width
        assert low * Decimal("0.999") <= shape["width"] <= high * Decimal("1.001"), risk
        assert shape["grid_fees"] >= PROFILES[risk].min_grid_fees * Decimal("0.999"), risk
    stop_losses = [Decimal(c["stop_loss_pct"]) for c in configs.values()]
    assert stop_losses == [Decimal(3), Decimal(6), Decimal(10)]  # each band's own
    # The page says how the choice shaped it.
    client.force_login(user)
    for risk, run in runs.items():
        text = visible(panel(client, run))
        label = PROFILES[risk].label
        assert f"How your risk choice shaped it. {label}: a range" in text
        assert f"the {label.lower()} band" in run.suggestion["reasoning"]
        assert f"This grid: a range {shapes[risk]['width'] * 100:.2f} % of the price wide" in text


def test_the_bots_own_stop_loss_is_kept_when_it_fits_the_risk_choice(user, bot, no_key):
    assert done_run(user, risk="medium", bot=bot).suggestion["config"]["stop_loss_pct"] == "5"
    assert done_run(user, risk="low", bot=bot).suggestion["config"]["stop_loss_pct"] == "5"
    assert done_run(user, risk="high", bot=bot).suggestion["config"]["stop_loss_pct"] == "5"


def test_the_prompt_says_what_each_risk_choice_means_in_numbers(user, market, no_key):
    turns = {}
    for risk in ("low", "medium", "high"):
        run = services.create_run(
            user, symbol="BTC/USDT", capital="1000", risk=risk, throttle=False
        )
        turns[risk] = render_context(services.build_context(run, current=None))
    assert "Trader's risk preference: low (Conservative: a range 10-30 % of the price wide, " \
        "each grid earning at least 2.5 x the round-trip fee (0.5 %), a stop-loss 2-5 % below " \
        "the lower price." in turns["low"]  # fmt: skip
    assert "medium (Moderate: a range 5-10 % of the price wide" in turns["medium"]
    assert "high (Aggressive: a range 1.5-5 % of the price wide" in turns["high"]
    assert "a stop-loss of at most 10 % below the lower price, or none" in turns["high"]


def test_claude_is_asked_again_when_its_grid_does_not_fit_the_risk_choice(
    client, user, market, claude
):
    conservative = good_input(grid_lower=58000, grid_upper=72000, num_levels=20, stop_loss_pct=3)
    fake = claude([fakes.tool_use(good_input()), fakes.tool_use(conservative)])
    client.force_login(user)

    data = ask(client, risk="conservative").json()

    system = fake.bodies[0]["system"]
    for profile in PROFILES.values():
        assert f"{profile.label}: a range" in system
    correction = fake.bodies[1]["messages"][-1]["content"][0]["content"]
    assert (
        "for a conservative trader the range must be 10-30 % of the current price wide; "
        "grid_lower..grid_upper is 6.15 % wide" in correction
    )
    assert (data["grid_lower"], data["grid_upper"]) == ("58000", "72000")
    assert data["risk"] == "low"
    assert AdvisorRun.objects.get().risk_preference == "low"


def test_the_dialog_offers_the_three_risk_choices_in_words_and_numbers(client, user, bot):
    client.force_login(user)
    page = client.get(reverse("bots:detail", args=[bot.pk])).text
    for level, profile in PROFILES.items():
        assert f'<option value="{level}"' in page
        assert f"{profile.label}: {profile.summary()}" in page
    assert profile_for("moderate").summary() == "range 5-10 % wide, stop-loss 3-8 %"


# --- one click fills the form -------------------------------------------------------------------


def test_use_these_settings_opens_the_new_bot_form_filled_in_and_creates_nothing(
    client, user, market, no_key
):
    run = done_run(user, risk="low")
    client.force_login(user)

    html = panel(client, run)

    link = re.search(r'<a class="button" href="([^"]+)" id="advisor-run-\d+-use">', html)
    assert link, html
    url = link.group(1).replace("&amp;", "&")
    config = run.suggestion["config"]
    parts = urlsplit(url)
    assert parts.path == reverse("bots:new")
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == {
        "symbol": "BTC/USDT", "capital": "1000", "lower_bound": config["lower_bound"],
        "upper_bound": config["upper_bound"], "grid_levels": config["grid_levels"],
        "spacing": "arithmetic", "stop_loss_pct": "3",
    }  # fmt: skip
    # Its backtested return is beside it.
    seven = run.backtests["candidates"][0]["results"]["7"]
    shown = f"Backtested on the last 7 days: {_signed(seven['total_profit'])} USDT"
    assert shown in visible(html)
    # No "create" button: the form is where the trader edits and creates.
    assert "Create a bot with this grid" not in html and ">Accept</button>" not in html

    form = client.get(url)

    assert form.status_code == 200
    assert f'value="{config["lower_bound"]}"' in form.text
    assert f'value="{config["upper_bound"]}"' in form.text
    assert not Bot.objects.exists()
    run.refresh_from_db()
    assert run.decision == "pending"


def test_a_bots_advice_keeps_accept_and_also_offers_a_new_bot_with_these_settings(
    client, user, bot, no_key
):
    run = done_run(user, bot=bot)
    client.force_login(user)
    html = panel(client, run)
    assert ">Accept</button>" in html
    assert "Use these settings for a new bot" in html


def _signed(value: str) -> str:
    d = Decimal(value).quantize(Decimal("0.01"))
    return f"{d:+,}"


# --- numbers are formatted ----------------------------------------------------------------------


def test_the_dialog_and_the_run_page_show_no_raw_decimal_strings(client, user, bot, claude):
    claude([fakes.tool_use(good_input())])
    client.force_login(user)
    run = services.create_run(user, capital="1000", bot=bot)
    services.execute_run(run)

    for html in (panel(client, run), client.get(reverse("ai_advisor:run", args=[run.pk])).text):
        text = visible(html.split("<main", 1)[-1])
        assert not re.search(r"\d{5,}", text), re.findall(r"\S*\d{5,}\S*", text)
        assert not re.search(r"\.\d{3,}\b", text.replace("$0.0091", "")), re.findall(
            r"\S*\.\d{3,}\S*", text
        )
        # Prices to the market's tick (0.01), USDT and percentages to 2 decimals.
        assert "Lower price 60,000.00 63,000.00" in text
        assert "Capital 1,000.00 USDT 1,000.00 USDT" in text
        assert "Stop-loss below the range 5 % 3.5 %" in text
        assert re.search(r"[+-][\d,]+\.\d\d USDT \(-?\d+\.\d\d %\)", text)
        assert "$0.0091" in text  # Claude's cost, to a hundredth of a cent


def test_a_tiny_backtested_loss_keeps_its_sign_beside_use_these_settings(
    client, user, market, no_key
):
    run = done_run(user)
    backtests = run.backtests
    backtests["candidates"][0]["results"]["7"].update(total_profit="-0.000319", **{"return": "0"})
    AdvisorRun.objects.filter(pk=run.pk).update(backtests=backtests)
    client.force_login(user)

    text = visible(panel(client, run))

    assert "Backtested on the last 7 days: -0.00032 USDT" in text
    assert "+0.00 USDT" not in text


@pytest.mark.parametrize(
    ("value", "tick", "shown"),
    [
        ("108584.160000000000", "0.01", "108,584.16"),
        ("65000", "0.10", "65,000.0"),
        ("0.123456", "0.00001", "0.12346"),
        ("65005", "10", "65,010"),
        ("", "0.01", "—"),
    ],
)
def test_prices_show_to_the_markets_tick(value, tick, shown):
    assert price_at_tick(value, tick) == shown


def test_the_held_out_check_places_the_same_shape_at_the_price_then(user, market, no_key):
    run = done_run(user, risk="medium")
    config = run.suggestion["config"]
    held = run.backtests["held_out"]
    price = Decimal("65000")
    ratio = Decimal(config["upper_bound"]) / Decimal(config["lower_bound"])

    for part in ("fit", "holdout"):
        period_ = held[part]
        start = Decimal(period_["start_price"])
        lower, upper = Decimal(period_["lower_bound"]), Decimal(period_["upper_bound"])
        assert abs(lower - Decimal(config["lower_bound"]) * start / price) <= Decimal("0.01")
        assert abs(upper / lower - ratio) < Decimal("0.000001")
        assert Decimal(period_["days"]) > 0 and period_["candles"] > 0
    # The held-out days follow the fitted ones and end with the stored candles.
    assert held["fit"]["to"] <= held["holdout"]["from"]
    assert held["holdout"]["to"] == run.backtests["windows"][0]["to"]
