"""The one bot config schema: its keys, how it is stored, and how it becomes a ``GridConfig``.

The bot form, the services, the advisor (and the JSON API) all go through here. A config is
stored as strings (``Bot.config``, ``BacktestRun.config``), Decimals exact and never in
exponent form. Every way a config can be wrong is a ``ConfigError`` whose ``field`` is the
config key to change: the grid's own ``InvalidGrid`` is translated here, once, from its
``GridConfig`` field to the config key.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from django.conf import settings

from bots.errors import ConfigError
from bots.grid.params import GridConfig, InvalidGrid
from market import services as market_services
from market.precision import canonical, plain

# The keys of a stored config, in the order forms show them.
KEYS = (
    "capital",
    "lower_bound",
    "upper_bound",
    "grid_levels",
    "spacing",
    "stop_loss_pct",
    "max_daily_loss",
    "take_profit",
)
REQUIRED = ("capital", "lower_bound", "upper_bound", "grid_levels")
DEFAULTS = {"spacing": "arithmetic", "stop_loss_pct": "0", "max_daily_loss": "0"}
# GridConfig's fields (what InvalidGrid names) → the config keys a person types.
KEY_OF_GRID_FIELD = {
    "lower": "lower_bound",
    "upper": "upper_bound",
    "levels": "grid_levels",
    "capital": "capital",
    "spacing": "spacing",
    "stop_loss_pct": "stop_loss_pct",
    "take_profit": "take_profit",
}


class MarketFilters(Protocol):
    """What a grid needs of a market (``market.models.MarketRules`` has it)."""

    tick: Decimal
    step: Decimal
    min_notional: Decimal
    fee: Decimal


def normalise(config: dict[str, Any]) -> dict[str, str]:
    """A config as stored: every key, every value a string (Decimals plain), defaults filled."""
    out = {}
    for key in KEYS:
        value = config.get(key)
        if value is None:
            out[key] = ""
        elif isinstance(value, Decimal):
            out[key] = plain(value)
        else:
            out[key] = str(value)
        if not out[key] and key in DEFAULTS:
            out[key] = DEFAULTS[key]
    return out


def config_error(e: InvalidGrid) -> ConfigError:
    """The grid's refusal as the config's: the same words, on the config key."""
    return ConfigError(str(e), field=KEY_OF_GRID_FIELD.get(e.field or ""))


def rules_for(exchange: str, symbol: str) -> Any:
    """The market's rules (``MarketRules``); a ConfigError on the symbol when there are none."""
    try:
        return market_services.load_market_rules(exchange, symbol)
    except Exception as e:  # an unknown symbol, or no network and no snapshot
        raise ConfigError(f"No market rules for {symbol} on {exchange}: {e}", field="symbol") from e


def _decimal(config: dict[str, Any], key: str, default: str | None = None) -> Decimal:
    raw = config.get(key)
    if raw in (None, ""):
        if default is None:
            raise ConfigError(f"the config is missing {key}", field=key)
        raw = default
    try:
        return Decimal(str(raw))
    except (InvalidOperation, ValueError, TypeError):
        raise ConfigError(f"not a number: {raw!r}", field=key) from None


def grid_config(
    config: dict[str, Any],
    *,
    symbol: str,
    filters: MarketFilters,
    min_levels: int | None = None,
    max_levels: int | None = None,
) -> GridConfig:
    """The engine's GridConfig for a config on a market with these filters."""
    if _decimal(config, "max_daily_loss", "0") < 0:
        raise ConfigError(
            "the daily loss limit cannot be negative (0 disables it)", field="max_daily_loss"
        )
    levels = config.get("grid_levels")
    try:
        levels = int(str(levels))
    except (ValueError, TypeError):
        if levels in (None, ""):
            raise ConfigError("the config is missing grid_levels", field="grid_levels") from None
        raise ConfigError(f"not a whole number: {levels!r}", field="grid_levels") from None
    take_profit = config.get("take_profit")
    base, quote = symbol.split("/")
    try:
        return GridConfig(
            lower=_decimal(config, "lower_bound"),
            upper=_decimal(config, "upper_bound"),
            levels=levels,
            spacing=config.get("spacing") or DEFAULTS["spacing"],
            capital=_decimal(config, "capital"),
            fee=canonical(filters.fee),
            tick=canonical(filters.tick),
            step=canonical(filters.step),
            min_notional=canonical(filters.min_notional),
            stop_loss_pct=_decimal(config, "stop_loss_pct", "0"),
            take_profit=_decimal(config, "take_profit") if take_profit not in (None, "") else None,
            min_levels=settings.GRID_MIN_LEVELS if min_levels is None else min_levels,
            max_levels=settings.GRID_MAX_LEVELS if max_levels is None else max_levels,
            base_asset=base,
            quote_asset=quote,
        )
    except InvalidGrid as e:
        raise config_error(e) from None


def grid_config_for(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """``grid_config`` under the market's stored (or bundled) rules."""
    return grid_config(config, symbol=symbol, filters=rules_for(exchange, symbol))


def validate(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """``grid_config_for``, plus the capital check at the current price when there is one."""
    grid = grid_config_for(config, exchange=exchange, symbol=symbol)
    candle = market_services.last_candle(exchange, symbol)
    if candle is not None:
        try:
            grid.order_amount(candle[1])  # says how much capital it needs
        except InvalidGrid as e:
            raise config_error(e) from None
    return grid


def capital(config: dict[str, Any]) -> Decimal:
    return Decimal(config.get("capital") or "0")


def max_daily_loss(config: dict[str, Any]) -> Decimal:
    return Decimal(config.get("max_daily_loss") or "0")
