"""What the advisor tells Claude, and the tool Claude must answer with. Pure: no Django, no I/O.

The prompt is built only from an `AdvisorContext`. That type deliberately has no field for
exchange credentials, API keys or who the user is (email, name, id): what is not in the
context cannot reach Claude, so keep it that way when adding fields.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ai_advisor.profiles import PROFILES, RiskLevel, profile_for

SUGGESTION_TOOL_NAME = "submit_grid_suggestion"


@dataclass(frozen=True, slots=True)
class AdvisorContext:
    """Market facts and the bot's constraints, all that Claude gets to see.

    Prices and amounts are in quote per base / quote currency, as `Decimal`. No credentials
    and no user identity: see the module docstring.
    """

    exchange: str
    symbol: str
    base: str
    quote: str
    price: Decimal
    rsi14: Decimal
    volatility_daily: Decimal  # standard deviation of daily returns, as a fraction
    atr14: Decimal
    support: Decimal
    resistance: Decimal
    volume_24h: tuple[Decimal, Decimal]  # (in base, in quote)
    range_7d: tuple[Decimal, Decimal]  # (low, high)
    range_30d: tuple[Decimal, Decimal]  # (low, high)
    tick: Decimal
    step: Decimal
    min_notional: Decimal
    fee: Decimal  # per fill, as a fraction: 0.001 is 0.1 %
    capital: Decimal
    risk_preference: RiskLevel
    min_levels: int
    max_levels: int
    # lower, upper, levels, spacing, stop_loss_pct, take_profit (and trigger_price and the
    # trailing settings when set) of the bot as it is now
    current_config: dict[str, Any] | None = None
    # The exchange's price filter, never shown to Claude; 0 where the market states none.
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)


# The input schema IS the suggestion: client.RawSuggestion parses exactly these fields.
SUGGESTION_TOOL: dict[str, Any] = {
    "name": SUGGESTION_TOOL_NAME,
    "description": (
        "Submit the suggested spot-grid parameters for this market, with your reasoning. "
        "Call this exactly once."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "grid_lower": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Lowest grid line (quote per base), below the current price.",
            },
            "grid_upper": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Highest grid line (quote per base), above the current price.",
            },
            "num_levels": {
                "type": "integer",
                "description": "Number of price lines N (N-1 grids).",
            },
            "spacing": {
                "type": "string",
                "enum": ["arithmetic", "geometric"],
                "description": "arithmetic: equal price differences; geometric: equal ratios.",
            },
            "stop_loss_pct": {
                "type": "number",
                "minimum": 0,
                "maximum": 10,
                "description": "Stop-loss distance below grid_lower in percent; 0 disables it.",
            },
            "take_profit": {
                "type": ["number", "null"],
                "description": "Optional price above grid_upper that ends the bot; null for none.",
            },
            "trigger_price": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": (
                    "Optional price the bot waits for before it places anything; it then starts "
                    "there. Must lie inside grid_lower..grid_upper. null (or omitted): start now."
                ),
            },
            "trailing_up": {
                "type": "boolean",
                "description": (
                    "Let the grid follow a rising price: past the top line it moves up one line "
                    "at a time (the lowest buy moves to the top). Default false."
                ),
            },
            "trailing_up_limit": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": (
                    "With trailing_up: no line above this price; above grid_upper and below "
                    "take_profit. null: no limit."
                ),
            },
            "trailing_down": {
                "type": "boolean",
                "description": (
                    "Let the grid follow a falling price with the coins it holds: past the "
                    "bottom line it moves down one line at a time. Needs trailing_down_limit. "
                    "Default false."
                ),
            },
            "trailing_down_limit": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": (
                    "The floor for trailing_down, required with it: below grid_lower and above "
                    "the stop-loss price. null without trailing_down."
                ),
            },
            "confidence": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "How confident you are in this suggestion, 0..100.",
            },
            "risk_level": {
                "type": "string",
                "enum": ["low", "medium", "high"],
                "description": "The risk of this grid as you judge it.",
            },
            "reasoning": {
                "type": "string",
                "description": "Why these numbers, in plain words a trader understands.",
            },
        },
        "required": [
            "grid_lower",
            "grid_upper",
            "num_levels",
            "spacing",
            "stop_loss_pct",
            "confidence",
            "risk_level",
            "reasoning",
        ],
        "additionalProperties": False,
    },
}


def suggestion_tool(ctx: AdvisorContext) -> dict[str, Any]:
    """SUGGESTION_TOOL with num_levels bounded by this context's min/max levels."""
    tool = copy.deepcopy(SUGGESTION_TOOL)
    levels = tool["input_schema"]["properties"]["num_levels"]
    levels["minimum"] = ctx.min_levels
    levels["maximum"] = ctx.max_levels
    return tool


SYSTEM_PROMPT = """\
You advise a trader who runs a spot grid-trading bot. You choose the grid's parameters for \
one market and submit them with the {tool} tool.

How the grid works:
- N price lines p_0 < ... < p_(N-1) span grid_lower..grid_upper, equally spaced \
(arithmetic) or with equal ratios (geometric), rounded to the market's tick. The N-1 gaps \
between neighbouring lines are the grids (slots).
- Each slot always rests exactly one order: a buy at its lower line, or, once that buy has \
filled, a sell at its upper line. Every order has the same amount q of the base currency.
- Each fill pays the fee rate on its value, so a buy-then-sell round trip pays about \
2 x fee. The profit per grid (the gap between neighbouring lines, as a fraction of the \
price) must clearly beat that round-trip fee, or the bot trades for nothing. More levels \
mean narrower grids: more trades, each earning less.
- The capital is split over the slots, so q is roughly capital / (N x price). q times \
grid_lower must exceed the market's minimum order value (min notional), and q must be at \
least one amount step; too many levels for the capital makes orders too small.
- grid_lower must be below the current price and grid_upper above it, so the grid works \
on both sides from the start (with a trigger_price, the range must contain that price too: \
the grid starts there). A range that the price leaves stops earning, unless it trails.
- The stop-loss price is grid_lower x (1 - stop_loss_pct/100), below grid_lower; \
stop_loss_pct 0 disables it. If hit, the bot sells everything and stops. An optional \
take_profit is a price above grid_upper that does the same with a gain.
- Optional extensions, off unless you set them: trigger_price makes the bot wait, placing \
nothing, until the price reaches it, then start the grid there (useful to enter on a dip or \
a breakout). trailing_up moves the whole grid up one line each time the price rises past the \
top line while every grid holds quote (no trade: the lowest buy moves to the old top), up to \
trailing_up_limit if set; it suits an uptrend. trailing_down moves the grid down one line \
each time the price falls past the bottom line while every grid holds coins (no new money: \
the top grid's coins rest a sell at the old bottom, realising a loss when it fills), never \
below trailing_down_limit, which it requires and which must be above the stop-loss price. \
Use them only when the indicators show a trend worth following; they are backtested like \
the rest of the grid.

The trader's risk preference sets bands your grid must stay inside (the context gives \
the one chosen, in numbers): the range's width (grid_upper - grid_lower) as a share of the \
current price, the narrowest grid's gain in round-trip fees, and stop_loss_pct.
{profiles}
Use the indicators (volatility, ATR, RSI, support and resistance, recent ranges, volume) \
to place the range and choose the number of levels inside the chosen band. Keep \
num_levels within the allowed bounds. Explain your reasoning in plain words a trader \
understands, without jargon or formulas. All numbers in the context are exact decimals."""


def _fmt(value: object) -> str:
    """Decimals as plain strings, never in exponent form (1E-7) and never via float."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if value is None:
        return "none"
    return str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return _fmt(value)
    return value


def _percent(fraction: Decimal) -> str:
    return _fmt((fraction * 100).normalize()) + " %"


def _profiles(fee: Decimal) -> str:
    return "\n".join(f"- {level}: {p.describe(fee)}" for level, p in PROFILES.items())


def render_context(ctx: AdvisorContext) -> str:
    """The user turn: the market and the bot's constraints, one fact per line."""
    q = ctx.quote
    lines = [
        f"Market: {ctx.symbol} on {ctx.exchange} (base {ctx.base}, quote {ctx.quote}).",
        f"Current price: {_fmt(ctx.price)} {q}",
        f"RSI(14): {_fmt(ctx.rsi14)}",
        f"Daily volatility: {_fmt(ctx.volatility_daily)} (fraction of the price)",
        f"ATR(14): {_fmt(ctx.atr14)} {q}",
        f"Support: {_fmt(ctx.support)} {q}; resistance: {_fmt(ctx.resistance)} {q}",
        f"24h volume: {_fmt(ctx.volume_24h[0])} {ctx.base} ({_fmt(ctx.volume_24h[1])} {q})",
        f"7-day range: {_fmt(ctx.range_7d[0])} .. {_fmt(ctx.range_7d[1])} {q}",
        f"30-day range: {_fmt(ctx.range_30d[0])} .. {_fmt(ctx.range_30d[1])} {q}",
        f"Tick (price increment): {_fmt(ctx.tick)} {q}",
        f"Step (amount increment): {_fmt(ctx.step)} {ctx.base}",
        f"Minimum order value (min notional): {_fmt(ctx.min_notional)} {q}",
        f"Fee per fill: {_fmt(ctx.fee)} ({_percent(ctx.fee)}); "
        f"a round trip costs about {_fmt(ctx.fee * 2)} ({_percent(ctx.fee * 2)})",
        f"Capital for the bot: {_fmt(ctx.capital)} {q}",
        f"Trader's risk preference: {ctx.risk_preference} "
        f"({profile_for(ctx.risk_preference).describe(ctx.fee)})",
        f"Allowed num_levels: {ctx.min_levels} .. {ctx.max_levels}",
    ]
    if ctx.current_config:
        config = json.dumps(_jsonable(ctx.current_config), sort_keys=True)
        lines.append(f"The bot's current configuration: {config}")
        lines.append("Improve on it, or keep what already works and say why.")
    else:
        lines.append("The bot has no configuration yet.")
    lines.append(f"Submit your suggestion with the {SUGGESTION_TOOL_NAME} tool.")
    return "\n".join(lines)


def build_messages(
    ctx: AdvisorContext, *, correction: str | None = None, previous: dict[str, Any] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages) for the Messages API.

    For the one corrective retry pass `previous`, the tool_use block Claude sent (type, id,
    name, input), and `correction`, what was wrong with it in words: they go back as that
    tool_use and a tool_result with is_error=true, so Claude answers the exact problem.
    """
    if (correction is None) != (previous is None):
        raise ValueError("a corrective retry needs both the previous tool_use and the correction")
    system = SYSTEM_PROMPT.format(tool=SUGGESTION_TOOL_NAME, profiles=_profiles(ctx.fee))
    messages: list[dict[str, Any]] = [{"role": "user", "content": render_context(ctx)}]
    if previous is not None and correction is not None:
        tool_use = {
            "type": "tool_use",
            "id": previous["id"],
            "name": previous["name"],
            "input": previous["input"],
        }
        messages.append({"role": "assistant", "content": [tool_use]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": previous["id"],
                        "is_error": True,
                        "content": correction,
                    },
                    {
                        "type": "text",
                        "text": "Call the tool again with the problem fixed.",
                    },
                ],
            }
        )
    return system, messages


def context_json(ctx: AdvisorContext) -> dict[str, Any]:
    """The context as plain JSON (Decimals as exact strings), for storing with a run."""
    out = {name: getattr(ctx, name) for name in ctx.__dataclass_fields__}
    result = _jsonable(out)
    assert isinstance(result, dict)
    return result
