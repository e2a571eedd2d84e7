"""A suggestion checked against the market: its bot config, whether it can run, its JSON.

A suggestion (Claude's or the baseline's) becomes a stored bot config through the one schema
(``bots.config``); ``check_config`` says, in words Claude can act on, why a config cannot run at
the current price, or None.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ai_advisor.client import RawSuggestion
from ai_advisor.profiles import profile_for, profile_problem
from ai_advisor.prompt import AdvisorContext
from ai_advisor.templatetags.advice import price_at_tick
from bots import config as schema
from bots.errors import ConfigError
from bots.grid.params import GridConfig, InvalidGrid
from bots.templatetags import money as money_filters
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
            # The extensions as the one schema stores them (prices on the tick, flags as words).
            "trigger_price": _price_or_empty(s.trigger_price, ctx),
            "trailing_up": "true" if s.trailing_up else "false",
            "trailing_up_limit": _price_or_empty(s.trailing_up_limit, ctx),
            "trailing_down": "true" if s.trailing_down else "false",
            "trailing_down_limit": _price_or_empty(s.trailing_down_limit, ctx),
        }
    )


def _price_or_empty(price: Decimal | None, ctx: AdvisorContext) -> Decimal | str:
    return canonical(round_price(price, ctx.tick)) if price is not None else ""


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

    def at(p: Decimal) -> str:
        return price_at_tick(p, ctx.tick)

    if not grid.lower < price < grid.upper:
        return (
            f"the range {at(grid.lower)} .. {at(grid.upper)} must contain the current price "
            f"{at(price)}: "
            "grid_lower below it and grid_upper above it"
        )
    # A triggered grid starts at its trigger (GRID_SPEC.md, Extensions): it must fit there.
    trigger = config.get("trigger_price")
    start = canonical(Decimal(trigger)) if trigger else price
    if not grid.lower < start < grid.upper:
        return (
            f"the trigger_price {at(start)} must lie inside the range {at(grid.lower)} .. "
            f"{at(grid.upper)}: the grid starts there"
        )
    try:
        grid.order_amount(start)
    except InvalidGrid as e:
        return str(e)
    # The narrowest grid, as a share of the price it sells at, must beat the round trip's fees.
    lines = grid.lines
    gap, top = min(((hi - lo) / hi, hi) for lo, hi in zip(lines, lines[1:], strict=False))
    if gap <= 2 * ctx.fee:
        return (
            f"the narrowest grid (just below {at(top)}) earns {pct(gap)} per round trip, which "
            f"does not beat the round-trip fee of {pct(2 * ctx.fee)}; use fewer levels or a "
            "wider range"
        )
    return None


# The config keys whose tool field has another name (the rest are named alike).
TOOL_FIELD = {"lower_bound": "grid_lower", "upper_bound": "grid_upper", "grid_levels": "num_levels"}


def check_suggestion(s: RawSuggestion, ctx: AdvisorContext) -> str | None:
    """Why Claude's answer is not usable (the market's rules, then the trader's risk band);
    a config error names the tool's field to change first (``trailing_down_limit: ...``)."""
    config = suggestion_config(s, ctx)
    try:
        grid_for(config, ctx)
    except ConfigError as e:
        if e.field and e.field not in ("capital", "max_daily_loss", "symbol"):
            return f"{TOOL_FIELD.get(e.field, e.field)}: {e}"
    problem = check_config(config, ctx)
    if problem is None:
        profile = profile_for(ctx.risk_preference)
        problem = profile_problem(config, profile, ctx.price, ctx.fee)
    return problem


def pct(fraction: Decimal) -> str:
    """A fraction as a percentage for people, to 2 decimals: Decimal('0.0123') → '1.23 %'."""
    return money_filters.pct(fraction)


def money(value: str) -> str:
    """An amount with its sign, to the cent (or enough digits to keep a tiny loss's sign)."""
    return money_filters.format_money(value, signed=True)


def suggestion_json(s: RawSuggestion, ctx: AdvisorContext) -> dict[str, Any]:
    return {
        "grid_lower": plain(s.grid_lower),
        "grid_upper": plain(s.grid_upper),
        "num_levels": s.num_levels,
        "spacing": s.spacing,
        "stop_loss_pct": plain(s.stop_loss_pct),
        "take_profit": plain(s.take_profit) if s.take_profit is not None else None,
        # Claude's own figure is an input only: the confidence shown is set from the
        # held-out backtest once it has run (``confidence.assess``).
        "confidence": None,
        "stated_confidence": s.confidence,
        "risk_level": s.risk_level,
        "reasoning": s.reasoning,
        "trigger_price": plain(s.trigger_price) if s.trigger_price is not None else None,
        "trailing_up": s.trailing_up,
        "trailing_up_limit": plain(s.trailing_up_limit) if s.trailing_up_limit else None,
        "trailing_down": s.trailing_down,
        "trailing_down_limit": plain(s.trailing_down_limit) if s.trailing_down_limit else None,
        "config": suggestion_config(s, ctx),
    }
