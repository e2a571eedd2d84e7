"""A suggestion checked against the market: its bot config, whether it can run, its JSON.

A suggestion (Claude's or the baseline's) becomes a stored bot config through the one schema
(``bots.config``); ``check_config`` says, in words Claude can act on, why a config cannot run at
the current price, or None.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ai_advisor.client import RawSuggestion
from ai_advisor.prompt import AdvisorContext
from bots import config as schema
from bots.errors import ConfigError
from bots.grid.params import GridConfig, InvalidGrid
from market.precision import canonical, plain, round_price


def suggestion_config(s: RawSuggestion, ctx: AdvisorContext) -> dict[str, str]:
    """The bot config a suggestion stands for (bounds on the tick, the context's capital)."""
    return schema.normalise(
        {
            "capital": ctx.capital,
            "lower_bound": canonical(round_price(s.grid_lower, ctx.tick)),
            "upper_bound": canonical(round_price(s.grid_upper, ctx.tick)),
            "grid_levels": s.num_levels,
            "spacing": s.spacing,
            "stop_loss_pct": canonical(s.stop_loss_pct),
            "max_daily_loss": "",  # the trader's own limit: accepting keeps the bot's
            "take_profit": canonical(s.take_profit) if s.take_profit is not None else "",
        }
    )


def grid_for(config: dict[str, str], ctx: AdvisorContext) -> GridConfig:
    """The engine's GridConfig for a config under the context's market rules and line bounds
    (the one schema's translation; a ConfigError names the field)."""
    return schema.grid_config(
        config,
        symbol=ctx.symbol,
        filters=ctx,
        min_levels=ctx.min_levels,
        max_levels=ctx.max_levels,
    )


def check_config(config: dict[str, str], ctx: AdvisorContext) -> str | None:
    """None when the config is a grid that can run at the current price; else why not."""
    try:
        grid = grid_for(config, ctx)
    except ConfigError as e:
        return str(e)
    price = ctx.price
    if not grid.lower < price < grid.upper:
        return (
            f"the range {grid.lower} .. {grid.upper} must contain the current price {price}: "
            "grid_lower below it and grid_upper above it"
        )
    try:
        grid.order_amount(price)
    except InvalidGrid as e:
        return str(e)
    # The narrowest grid, as a share of the price it sells at, must beat the round trip's fees.
    lines = grid.lines
    gap, top = min(((hi - lo) / hi, hi) for lo, hi in zip(lines, lines[1:], strict=False))
    if gap <= 2 * ctx.fee:
        return (
            f"the narrowest grid (just below {top}) earns {pct(gap)} per round trip, which does "
            f"not beat the round-trip fee of {pct(2 * ctx.fee)}; use fewer levels or a wider range"
        )
    return None


def check_suggestion(s: RawSuggestion, ctx: AdvisorContext) -> str | None:
    return check_config(suggestion_config(s, ctx), ctx)


def pct(fraction: Decimal) -> str:
    """A fraction as a percentage for people: Decimal('0.0123') → '1.23 %'."""
    return f"{(fraction * 100).quantize(Decimal('0.001')).normalize():f} %"


def money(value: str) -> str:
    """An amount with its sign, to the cent: '12.3456' → '+12.35'."""
    return f"{Decimal(value).quantize(Decimal('0.01')):+,}"


def suggestion_json(s: RawSuggestion, ctx: AdvisorContext) -> dict[str, Any]:
    return {
        "grid_lower": plain(s.grid_lower),
        "grid_upper": plain(s.grid_upper),
        "num_levels": s.num_levels,
        "spacing": s.spacing,
        "stop_loss_pct": plain(s.stop_loss_pct),
        "take_profit": plain(s.take_profit) if s.take_profit is not None else None,
        "confidence": s.confidence,
        "risk_level": s.risk_level,
        "reasoning": s.reasoning,
        "config": suggestion_config(s, ctx),
    }
