"""Claude behind a thin wrapper: a forced tool call in, a parsed suggestion out, own errors.

No Django here. The official `anthropic` SDK (2.x, built on httpx2) does the HTTP, including
its bounded retries on 408/409/429/5xx/529 and connection errors; this module maps whatever
is left to `AdvisorError`s whose messages can be shown to the user as they are. SDK
exceptions never escape, and the API key is never part of a message, a log line or a repr.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import httpx2

from ai_advisor.prompt import (
    SUGGESTION_TOOL,
    SUGGESTION_TOOL_NAME,
    AdvisorContext,
    RiskLevel,
    build_messages,
    suggestion_tool,
)

if TYPE_CHECKING:
    import anthropic

logger = logging.getLogger(__name__)

Spacing = Literal["arithmetic", "geometric"]

MAX_TOKENS = 2048

# USD per million tokens (input, output): Anthropic's list prices for the families we know.
# Longest matching prefix of the model name wins. A model matching none (a new family whose
# price we have not written down) gets cost_usd None, "unknown", rather than a guess. The
# default model (settings.ANTHROPIC_MODEL, a Sonnet 4.x) is priced by the "claude-sonnet-4" row.
PRICES_PER_MTOK: dict[str, tuple[Decimal, Decimal]] = {
    "claude-opus-4-5": (Decimal("5"), Decimal("25")),
    "claude-opus-4-6": (Decimal("5"), Decimal("25")),
    "claude-opus-4-1": (Decimal("15"), Decimal("75")),
    "claude-opus-4-0": (Decimal("15"), Decimal("75")),
    "claude-opus-4-2025": (Decimal("15"), Decimal("75")),
    "claude-sonnet-4": (Decimal("3"), Decimal("15")),
    "claude-3-7-sonnet": (Decimal("3"), Decimal("15")),
    "claude-haiku-4-5": (Decimal("1"), Decimal("5")),
    "claude-3-5-haiku": (Decimal("0.80"), Decimal("4")),
}

_MILLION = Decimal(1_000_000)


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    """What these tokens cost on this model, from PRICES_PER_MTOK; None for an unknown model."""
    prefixes = [p for p in PRICES_PER_MTOK if model.startswith(p)]
    if not prefixes:
        return None
    price_in, price_out = PRICES_PER_MTOK[max(prefixes, key=len)]
    return (input_tokens * price_in + output_tokens * price_out) / _MILLION


# --- errors -------------------------------------------------------------------------------


class AdvisorError(Exception):
    """Claude could not give a suggestion; str(error) says why, in words for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AdvisorUnavailable(AdvisorError):
    """Overloaded, rate-limited, timed out or unreachable, after the SDK's bounded retries."""


class AdvisorRefused(AdvisorError):
    """Claude declined (stop_reason "refusal") or answered without calling the tool."""


class MalformedSuggestion(AdvisorError):
    """The tool input does not fit the schema: a missing field, a wrong type, out of range."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Claude's suggestion was malformed: {reason}")
        self.reason = reason


class InvalidSuggestion(AdvisorError):
    """Well-formed, but the caller's validation rejected it, also after the corrective retry."""

    def __init__(self, reason: str, *, suggestion: RawSuggestion) -> None:
        super().__init__(f"Claude's suggestion is not a usable grid: {reason}")
        self.reason = reason
        self.suggestion = suggestion


# --- the suggestion -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawSuggestion:
    """Claude's tool input, type-checked; whether it makes a valid grid is the caller's call."""

    grid_lower: Decimal
    grid_upper: Decimal
    num_levels: int
    spacing: Spacing
    stop_loss_pct: Decimal
    take_profit: Decimal | None
    confidence: int
    risk_level: RiskLevel
    reasoning: str
    # The optional extensions (GRID_SPEC.md, Extensions): off unless Claude sets them.
    trigger_price: Decimal | None = None
    trailing_up: bool = False
    trailing_up_limit: Decimal | None = None
    trailing_down: bool = False
    trailing_down_limit: Decimal | None = None

    @classmethod
    def from_tool_input(cls, data: object, *, min_levels: int, max_levels: int) -> RawSuggestion:
        """Parse strictly against SUGGESTION_TOOL's schema; MalformedSuggestion says what's off."""
        if not isinstance(data, Mapping):
            raise MalformedSuggestion("the tool input is not a JSON object")
        schema = SUGGESTION_TOOL["input_schema"]
        missing = [name for name in schema["required"] if name not in data]
        if missing:
            raise MalformedSuggestion(f"missing field(s): {', '.join(missing)}")
        unknown = sorted(str(name) for name in data if name not in schema["properties"])
        if unknown:
            raise MalformedSuggestion(f"unknown field(s): {', '.join(unknown)}")

        grid_lower = _positive(data, "grid_lower")
        grid_upper = _positive(data, "grid_upper")
        stop_loss_pct = _number(data, "stop_loss_pct")
        if not 0 <= stop_loss_pct <= 10:
            raise MalformedSuggestion(f"stop_loss_pct must be 0..10, got {stop_loss_pct}")
        take_profit = None if data.get("take_profit") is None else _positive(data, "take_profit")
        num_levels = _integer(data, "num_levels")
        if not min_levels <= num_levels <= max_levels:
            raise MalformedSuggestion(
                f"num_levels must be {min_levels}..{max_levels}, got {num_levels}"
            )
        confidence = _integer(data, "confidence")
        if not 0 <= confidence <= 100:
            raise MalformedSuggestion(f"confidence must be 0..100, got {confidence}")
        reasoning = data["reasoning"]
        if not isinstance(reasoning, str) or not reasoning.strip():
            raise MalformedSuggestion("reasoning must be a non-empty string")
        return cls(
            grid_lower=grid_lower,
            grid_upper=grid_upper,
            num_levels=num_levels,
            spacing=_choice(data, "spacing", ("arithmetic", "geometric")),
            stop_loss_pct=stop_loss_pct,
            take_profit=take_profit,
            confidence=confidence,
            risk_level=_choice(data, "risk_level", ("low", "medium", "high")),
            reasoning=reasoning.strip(),
            trigger_price=_optional_price(data, "trigger_price"),
            trailing_up=_flag(data, "trailing_up"),
            trailing_up_limit=_optional_price(data, "trailing_up_limit"),
            trailing_down=_flag(data, "trailing_down"),
            trailing_down_limit=_optional_price(data, "trailing_down_limit"),
        )


def _describe(value: object) -> str:
    return "true/false" if isinstance(value, bool) else f"a {type(value).__name__}: {value!r:.40}"


def _number(data: Mapping[str, Any], name: str) -> Decimal:
    value = data[name]
    # bool is an int in Python, but true is no price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedSuggestion(f"{name} must be a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MalformedSuggestion(f"{name} must be a finite number, got {value}")
    return Decimal(str(value))  # via str: 0.1 stays 0.1, not 0.1000000000000000055511...


def _positive(data: Mapping[str, Any], name: str) -> Decimal:
    value = _number(data, name)
    if value <= 0:
        raise MalformedSuggestion(f"{name} must be greater than 0, got {value}")
    return value


def _optional_price(data: Mapping[str, Any], name: str) -> Decimal | None:
    """An optional price: absent or null is None, else a number above 0."""
    return None if data.get(name) is None else _positive(data, name)


def _flag(data: Mapping[str, Any], name: str) -> bool:
    """An optional JSON boolean (absent: false); 1 or "true" are not booleans."""
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise MalformedSuggestion(f"{name} must be true or false, got {_describe(value)}")
    return value


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    # JSON Schema's "integer" admits 20.0; it does not admit 20.5, "20" or true.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedSuggestion(f"{name} must be an integer, got {_describe(value)}")
    return value


def _choice(data: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> Any:
    value = data[name]
    if value not in allowed or not isinstance(value, str):
        raise MalformedSuggestion(
            f"{name} must be one of {', '.join(allowed)}, got {_describe(value)}"
        )
    return value


@dataclass(frozen=True, slots=True)
class ClaudeResult:
    suggestion: RawSuggestion
    raw_response: dict[str, Any]  # the final Message, model_dump(mode="json")
    model: str  # as Claude reported it in the final Message
    input_tokens: int  # summed over attempts
    output_tokens: int
    cost_usd: Decimal | None  # None: the model is not in PRICES_PER_MTOK
    latency_ms: int  # wall time of the whole suggest() call, retries included
    attempts: int  # Messages API calls that got an answer: 1, or 2 after a correction


# --- the client ---------------------------------------------------------------------------


class ClaudeAdvisor:
    """Asks Claude for grid parameters through a forced tool call.

    `http_client` is for tests and proxies: an `httpx2.Client` (the SDK's HTTP library; plain
    `httpx` objects are rejected by the SDK), e.g. with a `MockTransport`.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        timeout_s: float = 30,
        max_retries: int = 2,
        http_client: httpx2.Client | None = None,
    ) -> None:
        if not api_key:
            raise AdvisorError("No Anthropic API key is configured.")
        import anthropic  # the SDK loads when Claude is asked, not when the app starts

        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client = anthropic.Anthropic(
            api_key=api_key, max_retries=max_retries, timeout=timeout_s, http_client=http_client
        )

    def __repr__(self) -> str:
        return f"ClaudeAdvisor(model={self.model!r}, timeout_s={self.timeout_s!r})"

    def close(self) -> None:
        self._client.close()

    def suggest(
        self, ctx: AdvisorContext, *, validate: Callable[[RawSuggestion], str | None]
    ) -> ClaudeResult:
        """Ask once; on a malformed or invalid answer, ask once more saying what was wrong.

        `validate` returns None for a usable suggestion, or what is wrong with it in words
        (the grid and market rules live with the caller).
        """
        started = time.monotonic()
        tool = suggestion_tool(ctx)
        input_tokens = output_tokens = 0
        correction: str | None = None
        previous: dict[str, Any] | None = None
        for attempt in (1, 2):
            system, messages = build_messages(ctx, correction=correction, previous=previous)
            message = self._create(system, messages, tool)
            input_tokens += message.usage.input_tokens
            output_tokens += message.usage.output_tokens
            tool_use = self._tool_use(message)
            try:
                suggestion = RawSuggestion.from_tool_input(
                    tool_use.input, min_levels=ctx.min_levels, max_levels=ctx.max_levels
                )
            except MalformedSuggestion as e:
                if attempt == 2:
                    raise
                logger.info("advisor: malformed suggestion, asking again: %s", e.reason)
                correction = f"The input does not fit the tool's schema: {e.reason}."
            else:
                problem = validate(suggestion)
                if problem is None:
                    return ClaudeResult(
                        suggestion=suggestion,
                        raw_response=message.model_dump(mode="json"),
                        model=message.model,
                        input_tokens=input_tokens,
                        output_tokens=output_tokens,
                        cost_usd=cost_usd(message.model, input_tokens, output_tokens),
                        latency_ms=round((time.monotonic() - started) * 1000),
                        attempts=attempt,
                    )
                if attempt == 2:
                    raise InvalidSuggestion(problem, suggestion=suggestion)
                logger.info("advisor: invalid suggestion, asking again: %s", problem)
                correction = f"This grid cannot be used: {problem}"
            previous = {
                "type": "tool_use",
                "id": tool_use.id,
                "name": tool_use.name,
                # Sent back as it came, unless it is no object at all: the API would reject that.
                "input": tool_use.input if isinstance(tool_use.input, dict) else {},
            }
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _create(
        self, system: str, messages: list[dict[str, Any]], tool: dict[str, Any]
    ) -> anthropic.types.Message:
        import anthropic

        try:
            return self._client.messages.create(
                model=self.model,
                max_tokens=MAX_TOKENS,
                system=system,
                messages=messages,  # type: ignore[arg-type]  # plain dicts of MessageParam shape
                tools=[tool],  # type: ignore[list-item]
                tool_choice={"type": "tool", "name": SUGGESTION_TOOL_NAME},
            )
        except anthropic.AnthropicError as e:
            self._raise_mapped(e)

    def _tool_use(self, message: anthropic.types.Message) -> anthropic.types.ToolUseBlock:
        if message.stop_reason == "refusal":
            why = message.stop_details.explanation if message.stop_details else None
            raise AdvisorRefused(
                "Claude declined to suggest parameters for this market"
                + (f": {self._scrub(why)}" if why else ".")
            )
        for block in message.content:
            if block.type == "tool_use" and block.name == SUGGESTION_TOOL_NAME:
                return block
        raise AdvisorRefused(
            f"Claude answered without a suggestion (stop reason: {message.stop_reason})."
        )

    def _raise_mapped(self, e: anthropic.AnthropicError) -> NoReturn:
        """Turn an SDK exception into ours. `from None`: the SDK's request (and its headers,
        which carry the key) must not ride along in tracebacks."""
        import anthropic

        tried = f"tried {_tries(e)} time{'s' if _tries(e) != 1 else ''}"
        later = "Try again in a minute."
        if isinstance(e, anthropic.APITimeoutError):
            raise AdvisorUnavailable(
                f"Claude did not answer within {self.timeout_s:g} s; {tried}. {later}"
            ) from None
        if isinstance(e, anthropic.APIConnectionError):
            raise AdvisorUnavailable(
                f"Could not reach Claude (connection failed); {tried}. {later}"
            ) from None
        if not isinstance(e, anthropic.APIStatusError):
            # APIResponseValidationError and the like: log the type only, never the text.
            logger.warning("advisor: unexpected %s from the Anthropic SDK", type(e).__name__)
            raise AdvisorError("Claude's answer could not be read. Try again later.") from None
        status = e.status_code
        detail = self._scrub(e.api_message or "")
        if isinstance(e, anthropic.OverloadedError) or status == 529:
            raise AdvisorUnavailable(
                f"Claude is busy right now (HTTP 529 overloaded); {tried}. {later}"
            ) from None
        if isinstance(e, anthropic.RateLimitError):
            raise AdvisorUnavailable(
                f"Claude is rate-limiting this API key (HTTP 429 rate limited); {tried}. {later}"
            ) from None
        if isinstance(e, anthropic.InternalServerError) or status in (408, 409):
            raise AdvisorUnavailable(
                f"Claude had a server problem (HTTP {status}); {tried}. {later}"
            ) from None
        if isinstance(e, anthropic.AuthenticationError):
            raise AdvisorError(
                "Claude rejected the request: the API key was rejected (HTTP 401). "
                "Check ANTHROPIC_API_KEY."
            ) from None
        if isinstance(e, anthropic.PermissionDeniedError):
            raise AdvisorError(
                f"The API key may not use this (HTTP 403): {detail or 'permission denied'}"
            ) from None
        if isinstance(e, anthropic.NotFoundError):
            raise AdvisorError(
                f"Claude does not know the model {self.model!r} (HTTP 404): {detail}"
            ) from None
        if isinstance(e, anthropic.BadRequestError):
            raise AdvisorError(f"Claude rejected the request (HTTP 400): {detail}") from None
        raise AdvisorError(f"Claude returned an error (HTTP {status}): {detail}") from None

    def _scrub(self, text: str) -> str:
        """Belt and braces: an API message should never hold the key, but if one did..."""
        key = self._client.api_key
        return text.replace(key, "[redacted]") if key else text


def _tries(e: anthropic.AnthropicError) -> int:
    """HTTP calls the SDK made: it stamps its retry count on every request it sends."""
    request = getattr(e, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return 1
