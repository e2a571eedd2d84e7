"""The Claude client against the real anthropic SDK, talking to a fake API over MockTransport."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import traceback
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from ai_advisor.client import (
    AdvisorError,
    AdvisorRefused,
    AdvisorUnavailable,
    ClaudeAdvisor,
    InvalidSuggestion,
    MalformedSuggestion,
    RawSuggestion,
    cost_usd,
)
from ai_advisor.prompt import SUGGESTION_TOOL, AdvisorContext, build_messages, suggestion_tool
from tests.fakes import anthropic_fakes as fakes

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-ant-api03-TEST-KEY-must-never-leak-0123456789"
EMAIL = "trader@example.com"
EXCHANGE_SECRET = "binance-secret-Zq81mFx0pLw"

CONTEXT_FIELDS: dict[str, Any] = {
    "exchange": "binance",
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "price": Decimal("65012.34"),
    "rsi14": Decimal("48.2"),
    "volatility_daily": Decimal("0.0231"),
    "atr14": Decimal("1210.5"),
    "support": Decimal("62100"),
    "resistance": Decimal("68250"),
    "volume_24h": (Decimal("18234.12345"), Decimal("1185432100.55")),
    "range_7d": (Decimal("61890.01"), Decimal("68420.00")),
    "range_30d": (Decimal("57010"), Decimal("71200")),
    "tick": Decimal("0.01"),
    "step": Decimal("0.00001"),
    "min_notional": Decimal("5"),
    "fee": Decimal("0.001"),
    "capital": Decimal("1000"),
    "risk_preference": "medium",
    "min_levels": 10,
    "max_levels": 50,
    "current_config": {
        "lower": Decimal("60000"),
        "upper": Decimal("70000"),
        "levels": 12,
        "spacing": "arithmetic",
        "stop_loss_pct": Decimal("5"),
        "take_profit": None,
    },
}


def make_context(**overrides: Any) -> AdvisorContext:
    return AdvisorContext(**{**CONTEXT_FIELDS, **overrides})


def accept(suggestion: RawSuggestion) -> str | None:
    return None


def make_advisor(fake: fakes.FakeAnthropic, **kwargs: Any) -> ClaudeAdvisor:
    options: dict[str, Any] = {"api_key": API_KEY, "model": fakes.MODEL, **kwargs}
    return ClaudeAdvisor(http_client=fake.http_client(), **options)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Timeouts carry no retry-after header, so the SDK would back off 0.5 s, 1 s, ...:
    record its sleeps instead of sleeping them."""
    sleeps: list[float] = []
    monkeypatch.setattr(anthropic._base_client.time, "sleep", sleeps.append)
    return sleeps


def suggest(
    fake: fakes.FakeAnthropic,
    validate: Callable[[RawSuggestion], str | None] = accept,
    **kwargs: Any,
) -> Any:
    return make_advisor(fake, **kwargs).suggest(make_context(), validate=validate)


# --- the happy path -----------------------------------------------------------------------


def test_a_good_tool_call_is_parsed_into_decimals_with_tokens_cost_and_latency():
    fake = fakes.FakeAnthropic(
        [fakes.tool_use(fakes.suggestion_input(), input_tokens=1500, output_tokens=300)]
    )

    result = suggest(fake)

    s = result.suggestion
    assert s.grid_lower == Decimal("62000.5")
    assert isinstance(s.grid_lower, Decimal)
    assert s.grid_upper == Decimal("68000")
    assert s.num_levels == 20
    assert s.spacing == "geometric"
    assert s.stop_loss_pct == Decimal("3.5")
    assert s.take_profit == Decimal("70500.25")
    assert s.confidence == 72
    assert s.risk_level == "medium"
    assert s.reasoning.startswith("The price has ranged")
    assert result.attempts == 1
    assert (result.input_tokens, result.output_tokens) == (1500, 300)
    # claude-sonnet-4-6: $3 in, $15 out per million tokens
    assert result.cost_usd == Decimal("0.009")
    assert result.model == fakes.MODEL
    assert isinstance(result.latency_ms, int)
    assert result.latency_ms >= 0
    assert result.raw_response["type"] == "message"
    assert result.raw_response["id"].startswith("msg_")
    assert result.raw_response["content"][0]["input"]["grid_lower"] == 62000.5
    json.dumps(result.raw_response)  # plain JSON, storable as is
    assert len(fake.requests) == 1


def test_the_request_forces_the_suggestion_tool_and_uses_the_configured_model():
    fake = fakes.FakeAnthropic([fakes.tool_use(fakes.suggestion_input())])

    suggest(fake, model="claude-haiku-4-5")

    request = fake.requests[0]
    body = fake.bodies[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/messages"
    # SDK 2.x sends the key as a bearer token (1.x used x-api-key).
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "claude-haiku-4-5"
    assert body["tool_choice"] == {"type": "tool", "name": SUGGESTION_TOOL["name"]}
    [tool] = body["tools"]
    assert tool["name"] == SUGGESTION_TOOL["name"]
    levels = tool["input_schema"]["properties"]["num_levels"]
    assert (levels["minimum"], levels["maximum"]) == (10, 50)
    assert body["max_tokens"] > 0
    assert isinstance(body["system"], str)
    assert body["messages"][0]["role"] == "user"
    assert "65012.34" in body["messages"][0]["content"]


def test_take_profit_may_be_null_or_absent():
    fake = fakes.FakeAnthropic(
        [
            fakes.tool_use(fakes.suggestion_input(take_profit=None)),
            fakes.tool_use(
                {k: v for k, v in fakes.suggestion_input().items() if k != "take_profit"}
            ),
        ]
    )
    advisor = make_advisor(fake)

    assert advisor.suggest(make_context(), validate=accept).suggestion.take_profit is None
    assert advisor.suggest(make_context(), validate=accept).suggestion.take_profit is None


def test_an_sdk_retried_529_is_invisible_but_the_answer_counts_once():
    fake = fakes.FakeAnthropic([fakes.overloaded(), fakes.tool_use(fakes.suggestion_input())])

    result = suggest(fake)

    assert len(fake.requests) == 2  # the SDK's own retry
    assert result.attempts == 1


# --- the corrective retry -----------------------------------------------------------------


def test_an_invalid_suggestion_gets_one_corrective_retry_carrying_the_reason():
    reason = "grid_lower 70000 is above the current price 65012.34"
    first = fakes.suggestion_input(grid_lower=70000, grid_upper=72000)
    fake = fakes.FakeAnthropic(
        [
            fakes.tool_use(first, input_tokens=1000, output_tokens=200),
            fakes.tool_use(fakes.suggestion_input(), input_tokens=1400, output_tokens=250),
        ]
    )

    def validate(s: RawSuggestion) -> str | None:
        return reason if s.grid_lower > Decimal("65012.34") else None

    result = suggest(fake, validate=validate)

    assert result.attempts == 2
    assert result.suggestion.grid_lower == Decimal("62000.5")
    assert (result.input_tokens, result.output_tokens) == (2400, 450)
    assert result.cost_usd == Decimal("2400") * 3 / 10**6 + Decimal("450") * 15 / 10**6
    assert len(fake.requests) == 2
    retry = fake.bodies[1]
    assert retry["tool_choice"] == {"type": "tool", "name": SUGGESTION_TOOL["name"]}
    user, assistant, answer = retry["messages"]
    assert user == fake.bodies[0]["messages"][0]
    [tool_use] = assistant["content"]
    assert assistant["role"] == "assistant"
    assert tool_use["type"] == "tool_use"
    assert tool_use["input"] == first
    first_id = json.loads(fake.responses[0].content)["content"][0]["id"]
    assert first_id.startswith("toolu_")
    assert tool_use["id"] == first_id
    tool_result = answer["content"][0]
    assert answer["role"] == "user"
    assert tool_result["type"] == "tool_result"
    assert tool_result["tool_use_id"] == first_id
    assert tool_result["is_error"] is True
    assert reason in tool_result["content"]


def test_still_invalid_after_the_retry_raises_invalid_suggestion_with_the_last_one():
    fake = fakes.FakeAnthropic(
        [
            fakes.tool_use(fakes.suggestion_input(grid_lower=70000)),
            fakes.tool_use(fakes.suggestion_input(grid_lower=69000)),
        ]
    )

    with pytest.raises(InvalidSuggestion) as caught:
        suggest(fake, validate=lambda s: f"grid_lower {s.grid_lower} is above the price")

    assert len(fake.requests) == 2
    assert caught.value.suggestion.grid_lower == Decimal("69000")
    assert caught.value.reason == "grid_lower 69000 is above the price"
    assert "grid_lower 69000 is above the price" in str(caught.value)


@pytest.mark.parametrize(
    ("tool_input", "complaint"),
    [
        ({k: v for k, v in fakes.suggestion_input().items() if k != "grid_upper"}, "grid_upper"),
        (fakes.suggestion_input(grid_lower="62000"), "grid_lower must be a number"),
        (fakes.suggestion_input(stop_loss_pct="about three"), "stop_loss_pct must be a number"),
    ],
    ids=["missing-field", "numeric-string", "non-numeric-string"],
)
def test_a_malformed_answer_is_retried_then_raises_malformed(tool_input, complaint):
    fake = fakes.FakeAnthropic([fakes.tool_use(tool_input), fakes.tool_use(tool_input)])

    with pytest.raises(MalformedSuggestion) as caught:
        suggest(fake)

    assert len(fake.requests) == 2
    assert complaint in caught.value.reason
    tool_result = fake.bodies[1]["messages"][2]["content"][0]
    assert tool_result["is_error"] is True
    assert complaint in tool_result["content"]


def test_a_malformed_answer_then_a_good_one_succeeds():
    fake = fakes.FakeAnthropic(
        [
            fakes.tool_use(fakes.suggestion_input(num_levels=True)),
            fakes.tool_use(fakes.suggestion_input()),
        ]
    )

    result = suggest(fake)

    assert result.attempts == 2
    assert result.suggestion.num_levels == 20


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"grid_lower": True}, "grid_lower must be a number"),
        ({"grid_upper": None}, "grid_upper must be a number"),
        ({"grid_lower": 0}, "grid_lower must be greater than 0"),
        ({"num_levels": 20.5}, "num_levels must be an integer"),
        ({"num_levels": "20"}, "num_levels must be an integer"),
        ({"num_levels": 9}, "num_levels must be 10..50"),
        ({"num_levels": 51}, "num_levels must be 10..50"),
        ({"confidence": 101}, "confidence must be 0..100"),
        ({"confidence": -1}, "confidence must be 0..100"),
        ({"stop_loss_pct": 12}, "stop_loss_pct must be 0..10"),
        ({"spacing": "logarithmic"}, "spacing must be one of"),
        ({"risk_level": "extreme"}, "risk_level must be one of"),
        ({"reasoning": ""}, "reasoning must be a non-empty string"),
        ({"take_profit": "none"}, "take_profit must be a number"),
        ({"leverage": 10}, "unknown field(s): leverage"),
    ],
)
def test_parsing_is_strict(overrides, complaint):
    with pytest.raises(MalformedSuggestion) as caught:
        RawSuggestion.from_tool_input(
            fakes.suggestion_input(**overrides), min_levels=10, max_levels=50
        )

    assert complaint in caught.value.reason


def test_parsing_keeps_decimal_digits_and_accepts_an_integral_float_for_an_integer():
    s = RawSuggestion.from_tool_input(
        fakes.suggestion_input(grid_lower=0.1, num_levels=20.0, stop_loss_pct=0),
        min_levels=10,
        max_levels=50,
    )

    assert s.grid_lower == Decimal("0.1")
    assert s.num_levels == 20
    assert isinstance(s.num_levels, int)
    assert s.stop_loss_pct == Decimal("0")


def test_a_non_object_input_is_malformed():
    with pytest.raises(MalformedSuggestion):
        RawSuggestion.from_tool_input([1, 2], min_levels=10, max_levels=50)


# --- refusals -----------------------------------------------------------------------------


def test_a_refusal_raises_advisor_refused():
    fake = fakes.FakeAnthropic([fakes.refusal()])

    with pytest.raises(AdvisorRefused) as caught:
        suggest(fake)

    assert "declined" in str(caught.value)
    assert len(fake.requests) == 1


def test_an_answer_without_a_tool_call_raises_advisor_refused():
    fake = fakes.FakeAnthropic([fakes.text_only()])

    with pytest.raises(AdvisorRefused) as caught:
        suggest(fake)

    assert "without a suggestion" in str(caught.value)


def test_a_refusal_on_the_corrective_retry_raises_advisor_refused():
    fake = fakes.FakeAnthropic(
        [fakes.tool_use(fakes.suggestion_input(confidence=500)), fakes.refusal()]
    )

    with pytest.raises(AdvisorRefused):
        suggest(fake)


# --- the API failing ----------------------------------------------------------------------


def test_overloaded_529_every_time_is_unavailable_after_max_retries_plus_one_calls():
    fake = fakes.FakeAnthropic([fakes.overloaded() for _ in range(5)])

    with pytest.raises(AdvisorUnavailable) as caught:
        suggest(fake, max_retries=2)

    assert len(fake.requests) == 3
    assert str(caught.value) == (
        "Claude is busy right now (HTTP 529 overloaded); tried 3 times. Try again in a minute."
    )


def test_the_retry_bound_follows_the_constructor():
    fake = fakes.FakeAnthropic([fakes.overloaded() for _ in range(5)])

    with pytest.raises(AdvisorUnavailable, match="tried 1 time\\."):
        suggest(fake, max_retries=0)

    assert len(fake.requests) == 1


def test_rate_limited_429_is_unavailable():
    fake = fakes.FakeAnthropic([fakes.rate_limited() for _ in range(3)])

    with pytest.raises(AdvisorUnavailable, match="HTTP 429 rate limited"):
        suggest(fake, max_retries=2)

    assert len(fake.requests) == 3


def test_a_server_error_is_unavailable():
    fake = fakes.FakeAnthropic(
        [fakes.error(500, "api_error", "Internal server error", **{"retry-after-ms": "1"})] * 2
    )

    with pytest.raises(AdvisorUnavailable, match="HTTP 500"):
        suggest(fake, max_retries=1)


def test_a_timeout_is_unavailable_after_the_bounded_retries(no_backoff):
    fake = fakes.FakeAnthropic([fakes.read_timeout] * 3)

    with pytest.raises(AdvisorUnavailable) as caught:
        suggest(fake, max_retries=2, timeout_s=7.5)

    assert len(fake.requests) == 3
    assert len(no_backoff) == 2  # the SDK backed off twice
    assert str(caught.value) == (
        "Claude did not answer within 7.5 s; tried 3 times. Try again in a minute."
    )


def test_a_rejected_key_says_so_without_echoing_it(caplog):
    caplog.set_level(logging.DEBUG)
    fake = fakes.FakeAnthropic([fakes.authentication_error()])

    with pytest.raises(AdvisorError) as caught:
        suggest(fake)

    error = caught.value
    assert type(error) is AdvisorError
    assert "the API key was rejected" in str(error)
    assert len(fake.requests) == 1  # a 401 is not retried
    shown = "".join(traceback.format_exception(error)) + repr(error) + caplog.text
    assert API_KEY not in shown
    assert API_KEY[-12:] not in shown
    # The SDK exception (whose request carries the key header) is not chained for display.
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_a_bad_request_carries_the_api_message():
    fake = fakes.FakeAnthropic([fakes.bad_request("tools.0.input_schema: JSON schema is invalid")])

    with pytest.raises(AdvisorError) as caught:
        suggest(fake)

    assert str(caught.value) == (
        "Claude rejected the request (HTTP 400): tools.0.input_schema: JSON schema is invalid"
    )


def test_sdk_exceptions_never_escape():
    replies = [
        fakes.error(403, "permission_error", "no access to this model"),
        fakes.error(404, "not_found_error", "model: claude-nope"),
        fakes.error(413, "request_too_large", "Request exceeds the maximum allowed size"),
    ]
    for reply in replies:
        fake = fakes.FakeAnthropic([reply])
        with pytest.raises(AdvisorError) as caught:
            suggest(fake)
        assert not isinstance(caught.value, anthropic.AnthropicError)
        assert str(reply.status_code) in str(caught.value)


def test_the_advisor_repr_hides_the_key():
    advisor = make_advisor(fakes.FakeAnthropic())

    assert API_KEY not in repr(advisor)
    assert API_KEY not in str(advisor)


def test_an_empty_key_is_refused_up_front():
    with pytest.raises(AdvisorError, match="No Anthropic API key"):
        ClaudeAdvisor(api_key="", model=fakes.MODEL)


# --- what reaches Claude ------------------------------------------------------------------


def test_the_request_carries_no_key_no_exchange_secret_and_no_email():
    # A caller holding more than market facts (a bot row's owner, its exchange credentials)...
    bot_like = {
        **CONTEXT_FIELDS,
        "api_secret": EXCHANGE_SECRET,
        "exchange_credentials": {"apiKey": "binance-key", "secret": EXCHANGE_SECRET},
        "owner_email": EMAIL,
    }
    # ...cannot hand them over: the context type has no field for them.
    with pytest.raises(TypeError):
        AdvisorContext(**bot_like)
    names = {f.name for f in dataclasses.fields(AdvisorContext)}
    assert not {n for n in names if any(w in n for w in ("secret", "key", "email", "user"))}
    ctx = AdvisorContext(**{k: v for k, v in bot_like.items() if k in names})

    fake = fakes.FakeAnthropic(
        [
            fakes.tool_use(fakes.suggestion_input(grid_lower=70000)),
            fakes.tool_use(fakes.suggestion_input()),
        ]
    )
    advisor = make_advisor(fake)
    advisor.suggest(ctx, validate=lambda s: "too high" if s.grid_lower > ctx.price else None)

    assert len(fake.requests) == 2  # the corrective retry is checked too
    for request in fake.requests:
        body = request.content.decode()
        assert API_KEY not in body
        assert EXCHANGE_SECRET not in body
        assert EMAIL not in body
        assert "binance-key" not in body


# --- the prompt ---------------------------------------------------------------------------


def test_the_prompt_explains_the_grid_and_renders_decimals_as_strings():
    system, messages = build_messages(make_context(step=Decimal("1E-7")))

    assert "2 x fee" in system
    assert "min notional" in system
    assert "stop-loss" in system.lower()
    assert "plain words" in system
    [user] = messages
    text = user["content"]
    assert "0.0000001" in text  # never 1E-7
    assert "Current price: 65012.34 USDT" in text
    assert "Fee per fill: 0.001 (0.1 %)" in text
    assert "0.002" in text
    assert "Allowed num_levels: 10 .. 50" in text
    assert '"lower": "60000"' in text  # current config, decimals as strings


def test_without_a_current_config_the_prompt_says_so():
    _, [user] = build_messages(make_context(current_config=None))

    assert "no configuration yet" in user["content"]


def test_a_correction_needs_the_previous_tool_use():
    with pytest.raises(ValueError):
        build_messages(make_context(), correction="too wide")


def test_the_tool_schema_is_the_suggestion():
    tool = suggestion_tool(make_context(min_levels=12, max_levels=40))
    schema = tool["input_schema"]

    # optional: the take-profit, and the trigger and trailing (issue 17), off when left out
    optional = {"take_profit", "trigger_price", "trailing_up", "trailing_up_limit",
                "trailing_down", "trailing_down_limit"}  # fmt: skip
    assert set(schema["required"]) == set(schema["properties"]) - optional
    assert schema["properties"]["num_levels"]["minimum"] == 12
    assert schema["properties"]["num_levels"]["maximum"] == 40
    assert {f.name for f in dataclasses.fields(RawSuggestion)} == set(schema["properties"])
    assert "minimum" not in SUGGESTION_TOOL["input_schema"]["properties"]["num_levels"]


# --- cost ---------------------------------------------------------------------------------


def test_cost_comes_from_the_model_family_and_is_none_for_an_unknown_model():
    assert cost_usd("claude-sonnet-4-5-20250929", 1_000_000, 0) == Decimal("3")
    assert cost_usd("claude-haiku-4-5", 0, 1_000_000) == Decimal("5")
    assert cost_usd("claude-opus-4-1-20250805", 1_000_000, 0) == Decimal("15")
    assert cost_usd("claude-opus-4-5", 1_000_000, 0) == Decimal("5")
    assert cost_usd("some-future-model", 1000, 1000) is None


def test_an_unpriced_model_gives_no_cost():
    fake = fakes.FakeAnthropic([fakes.tool_use(fakes.suggestion_input(), model="claude-next-9")])

    assert suggest(fake, model="claude-next-9").cost_usd is None


def test_an_api_message_that_echoes_the_key_is_redacted():
    fake = fakes.FakeAnthropic([fakes.bad_request(f"bad header value {API_KEY}")])

    with pytest.raises(AdvisorError) as caught:
        suggest(fake)

    assert API_KEY not in str(caught.value)
    assert "[redacted]" in str(caught.value)


@pytest.mark.parametrize("module", ["ai_advisor/client.py", "ai_advisor/prompt.py"])
def test_the_client_and_prompt_import_nothing_from_django(module):
    imported: list[str] = []
    for node in ast.walk(ast.parse((ROOT / module).read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")

    assert not [name for name in imported if name.split(".")[0] == "django"]
