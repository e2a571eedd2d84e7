"""Issue 17: the advisor's tool takes a trigger price and trailing up and down; advice with them
is checked by the one config schema, backtested like any other, and carried to the bot form
and to the bot it is accepted for."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse

from ai_advisor import services, suggestions
from ai_advisor.client import MalformedSuggestion, RawSuggestion
from ai_advisor.models import AdvisorRun
from ai_advisor.prompt import SUGGESTION_TOOL, render_context
from bots.models import Bot
from tests.ai_advisor.conftest import BOT_CONFIG, good_input
from tests.fakes import anthropic_fakes as fakes

pytestmark = pytest.mark.django_db

EXTENSIONS = ("trigger_price", "trailing_up", "trailing_up_limit", "trailing_down",
              "trailing_down_limit")  # fmt: skip
TRAILING_INPUT = {
    "trigger_price": 64500.5,
    "trailing_up": True,
    "trailing_up_limit": 75000,
    "trailing_down": True,
    "trailing_down_limit": 61000,
}


def raw(**overrides: Any) -> RawSuggestion:
    return RawSuggestion.from_tool_input(good_input(**overrides), min_levels=10, max_levels=50)


def ask(client: Any, **body: Any) -> Any:
    payload = {"pair": "BTC/USDT", "capital": 1000, **body}
    body = json.dumps(payload)
    return client.post("/api/ai/optimize", data=body, content_type="application/json")


def test_the_tool_schema_offers_the_extensions_as_optional():
    schema = SUGGESTION_TOOL["input_schema"]
    for name in EXTENSIONS:
        assert name in schema["properties"], name
        assert schema["properties"][name]["description"]
        assert name not in schema["required"]
    assert schema["properties"]["trailing_up"]["type"] == "boolean"
    assert "null" in schema["properties"]["trailing_down_limit"]["type"]


def test_a_suggestion_without_them_leaves_them_off():
    s = raw()
    assert (s.trigger_price, s.trailing_up, s.trailing_down) == (None, False, False)
    assert s.trailing_up_limit is None and s.trailing_down_limit is None


def test_the_extensions_parse_exactly():
    s = raw(**TRAILING_INPUT)
    assert str(s.trigger_price) == "64500.5" and s.trailing_up and s.trailing_down
    assert str(s.trailing_up_limit) == "75000" and str(s.trailing_down_limit) == "61000"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"trailing_up": "true"}, "trailing_up must be true or false"),
        ({"trailing_down": 1}, "trailing_down must be true or false"),
        ({"trigger_price": -5}, "trigger_price must be greater than 0"),
        ({"trailing_up_limit": "75000"}, "trailing_up_limit must be a number"),
    ],
)
def test_a_malformed_extension_is_named(overrides, says):
    with pytest.raises(MalformedSuggestion) as refused:
        raw(**overrides)
    assert says in str(refused.value)


def _ctx(user: Any) -> Any:
    run = services.create_run(user, symbol="BTC/USDT", capital="1000")
    return services.build_context(run, current=None)


def test_the_config_stores_them_as_the_schema_does(user, market, no_key):
    ctx = _ctx(user)
    config = suggestions.suggestion_config(raw(**TRAILING_INPUT), ctx)
    assert {k: config[k] for k in EXTENSIONS} == {
        "trigger_price": "64500.5", "trailing_up": "true", "trailing_up_limit": "75000",
        "trailing_down": "true", "trailing_down_limit": "61000",
    }  # fmt: skip
    off = suggestions.suggestion_config(raw(), ctx)
    assert not set(EXTENSIONS) & set(off)  # off: stored as before they existed


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({}, None),
        (TRAILING_INPUT, None),
        ({"trailing_down": True}, "trailing_down_limit"),  # the floor is required
        ({"trigger_price": 69000}, "trigger_price 69,000.00 must lie inside the range"),
        # the take-profit 70,500.25 of good_input is below this limit
        ({"trailing_up": True, "trailing_up_limit": 80000, "take_profit": 70500.25}, "take"),
    ],
)
def test_advice_with_extensions_is_checked_by_the_schema(user, market, no_key, overrides, says):
    reason = suggestions.check_suggestion(raw(**overrides), _ctx(user))
    if says is None:
        assert reason is None
    else:
        assert reason is not None and says in reason, reason


def test_advice_with_trailing_is_backtested_and_its_form_link_carries_it(client, user, bot, claude):
    fake = claude([fakes.tool_use(good_input(**TRAILING_INPUT))])
    client.force_login(user)

    data = ask(client, bot=bot.pk).json()

    assert len(fake.requests) == 1
    assert data["config"]["trailing_up"] == "true"
    assert data["config"]["trigger_price"] == "64500.5"
    suggestion = data["backtests"]["candidates"][0]
    assert suggestion["key"] == "suggestion" and suggestion["config"]["trailing_down"] == "true"
    for days in ("7", "30"):
        result = suggestion["results"][days]
        assert "error" not in result, result
        assert {"shifts_up", "shifts_down", "triggered_at"} <= set(result)
    run = AdvisorRun.objects.get()
    page = client.get(reverse("ai_advisor:run", args=[run.pk])).text
    link = re.search(r'href="([^"]*)"[^>]*id="advisor-run-\d+-use"', page)
    assert link is not None
    query = parse_qs(urlparse(unescape(link.group(1))).query)
    assert query["trailing_up"] == ["true"] and query["trailing_up_limit"] == ["75000"]
    assert query["trigger_price"] == ["64500.5"] and query["trailing_down_limit"] == ["61000"]


def test_accepting_trailing_advice_gives_the_bot_its_trailing(client, user, bot, claude):
    claude([fakes.tool_use(good_input(**TRAILING_INPUT))])
    client.force_login(user)
    run_id = ask(client, bot=bot.pk).json()["run_id"]

    client.post(reverse("ai_advisor:accept", args=[run_id]), headers={"HX-Request": "true"})

    bot = Bot.objects.get(pk=bot.pk)
    assert bot.config["trailing_up"] == "true" and bot.config["trailing_down_limit"] == "61000"
    assert bot.config["trigger_price"] == "64500.5"


def test_the_prompt_shows_the_bots_own_trailing(user, market, no_key, make_bot):
    bot = make_bot(BOT_CONFIG | {"trailing_up": "true", "trailing_up_limit": "72000"})
    run = services.create_run(user, capital="1000", bot=bot)
    ctx = services.build_context(run, current=services.current_config_of(run))
    text = render_context(ctx)
    assert '"trailing_up": true' in text and '"trailing_up_limit": "72000"' in text
    assert "trailing_down" not in text  # off: not said


def test_the_advice_diff_shows_trailing_only_when_either_grid_uses_it(client, user, bot, claude):
    claude([fakes.tool_use(good_input(**TRAILING_INPUT)), fakes.tool_use(good_input())])
    client.force_login(user)
    with_trailing = ask(client, bot=bot.pk).json()["run_id"]
    without = ask(client, bot=bot.pk).json()["run_id"]

    def diff_of(run_id: int) -> str:
        page = client.get(reverse("ai_advisor:run", args=[run_id])).text
        table = re.search(r'<table class="advisor-diff">.*?</table>', page, re.S)
        assert table is not None
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table.group(0)))

    shown = diff_of(with_trailing)
    assert "Trailing up off on" in shown and "Trigger price — 64,500.50" in shown
    assert "Trailing down floor — 61,000.00" in shown
    plain = diff_of(without)
    assert "Trailing" not in plain and "Trigger" not in plain
