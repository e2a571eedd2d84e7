"""The one bot config schema: its keys, how it is stored, and how it becomes a ``GridConfig``.

The bot form, the services, the advisor (and the JSON API) all go through here. A config is
stored as strings (``Bot.config``, ``BacktestRun.config``), Decimals exact and never in
exponent form. Every way a config can be wrong is a ``ConfigError`` whose ``field`` is the
config key to change: the grid's own ``InvalidGrid`` is translated here, once, from its
``GridConfig`` field to the config key.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from django.conf import settings

from bots.errors import ConfigError
from bots.grid.params import GridConfig, InvalidGrid
from bots.grid.preview import min_capital
from bots.templatetags.money import format_money
from market import services as market_services
from market.precision import canonical, plain, round_price

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
    "trigger_price",
    "trailing_up",
    "trailing_up_limit",
    "trailing_down",
    "trailing_down_limit",
)
REQUIRED = ("capital", "lower_bound", "upper_bound", "grid_levels")
DEFAULTS = {"spacing": "arithmetic", "stop_loss_pct": "0", "max_daily_loss": "0"}
# GRID_SPEC.md's extensions: optional, and stored only when on (a config without them reads,
# and compares, as it always did). The flags are stored "true"; the prices as typed.
EXTENSION_KEYS = (
    "trigger_price",
    "trailing_up",
    "trailing_up_limit",
    "trailing_down",
    "trailing_down_limit",
)
FLAGS = ("trailing_up", "trailing_down")
TRUE_WORDS = ("true", "1", "on", "yes")
FALSE_WORDS = ("false", "0", "off", "no", "")
# GridConfig's fields (what InvalidGrid names) → the config keys a person types.
KEY_OF_GRID_FIELD = {
    "lower": "lower_bound",
    "upper": "upper_bound",
    "levels": "grid_levels",
    "capital": "capital",
    "spacing": "spacing",
    "stop_loss_pct": "stop_loss_pct",
    "take_profit": "take_profit",
    **{key: key for key in EXTENSION_KEYS},
}


# Bounds on every number a config holds. Capital: the design's bound. Prices: the market's own
# price filter, and never more than the money columns hold (30 digits, 12 after the point) or
# finer than the tick. Typed numbers: finite, of sane length, and not so tiny that exact
# arithmetic on them explodes; each key's own bound (below) then says what is allowed.
MAX_CAPITAL = Decimal(1_000_000)
MAX_PRICE = Decimal(10) ** 12  # where the market states no maximum
MAX_NUMBER_CHARS = 400
MIN_EXPONENT = -18  # 1e-18: finer than any market's tick or step


class MarketFilters(Protocol):
    """What a grid needs of a market (``market.models.MarketRules`` has it)."""

    tick: Decimal
    step: Decimal
    min_notional: Decimal
    fee: Decimal
    min_price: Decimal  # 0: the market states none (the tick is the floor then)
    max_price: Decimal  # 0: the market states none (MAX_PRICE is the ceiling then)


def level_limits() -> tuple[int, int]:
    """The fewest and most price lines a grid may have (settings ``GRID_MIN_LEVELS`` and
    ``GRID_MAX_LEVELS``): every form says these and every check uses them."""
    return settings.GRID_MIN_LEVELS, settings.GRID_MAX_LEVELS


# --- quote amounts in messages: as the pages show them ----------------------------------------


def money_text(value: Decimal, unit: str = "", *, at_least: bool = False) -> str:
    """A quote amount in cents, or every digit it has when cents would change it;
    ``at_least``: rounded up to the cent (a minimum shown must be enough)."""
    value = canonical(value)
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_CEILING if at_least else ROUND_HALF_UP)
    if at_least or cents == value:
        return format_money(cents, unit)
    text = f"{value:,f}"
    return f"{text} {unit}" if unit else text


def flag(raw: Any, key: str) -> bool:
    """A trailing switch as typed or stored: a bool, or "true"/"false" (also on/off, 1/0)."""
    if isinstance(raw, bool) or raw is None:
        return bool(raw)
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{key.replace('_', ' ')} must be true or false, not {text[:10]!r}",
                      field=key)  # fmt: skip


def normalise(config: dict[str, Any]) -> dict[str, str]:
    """A config as stored: every key, every value a string (Decimals plain), defaults filled.

    The extensions (trigger price, trailing) are kept only when on: a flag as "true", a price
    as typed; off or empty, the key is left out."""
    out = {}
    for key in KEYS:
        value = config.get(key)
        if key in EXTENSION_KEYS:
            if key in FLAGS:
                try:
                    on = flag(value, key)
                except ConfigError:
                    on = True  # kept as typed: the schema's check says what is wrong with it
                    out[key] = str(value)
                    continue
                if on:
                    out[key] = "true"
            elif value not in (None, ""):
                out[key] = plain(value) if isinstance(value, Decimal) else str(value)
            continue
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


def number(raw: Any, key: str) -> Decimal:
    """A typed number as an exact, finite Decimal of sane size; a ConfigError on ``key``."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise ConfigError("not a number", field=key)
    text = str(raw).strip()
    if len(text) > MAX_NUMBER_CHARS:
        raise ConfigError(f"not a number of sane size ({len(text)} characters)", field=key)
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise ConfigError(f"not a number: {text!r}", field=key) from None
    if not value.is_finite():
        raise ConfigError(f"not a finite number: {text!r}", field=key)
    if value and value.adjusted() < MIN_EXPONENT:
        raise ConfigError(f"too small: use 0 or at least 1e{MIN_EXPONENT}", field=key)
    return value


def _decimal(config: dict[str, Any], key: str, default: str | None = None) -> Decimal:
    raw = config.get(key)
    if raw in (None, ""):
        if default is None:
            raise ConfigError(f"the config is missing {key}", field=key)
        raw = default
    return number(raw, key)


def check_capital(capital: Decimal, quote: str = "") -> Decimal:
    """The design's bound: above 0 and at most ``MAX_CAPITAL`` (one message for 0 and -50)."""
    unit = f" {quote}" if quote else ""
    if capital <= 0:
        raise ConfigError(f"capital must be more than 0{unit}", field="capital")
    if capital > MAX_CAPITAL:
        raise ConfigError(f"capital can be at most {MAX_CAPITAL:,}{unit}", field="capital")
    return capital


def capital_floor(filters: MarketFilters, levels: int) -> Decimal:
    """Below this no grid of ``levels`` lines can work here: each of its ``levels - 1`` orders
    must reach the market's minimum order value (the engine's exact check comes later)."""
    return canonical(filters.min_notional) * (levels - 1)


PRICE_WORDS = {
    "lower_bound": "lower price",
    "upper_bound": "upper price",
    "take_profit": "take-profit",
    "trigger_price": "trigger price",
    "trailing_up_limit": "trailing-up limit",
    "trailing_down_limit": "trailing-down limit",
}


def check_price(price: Decimal, key: str, filters: MarketFilters) -> Decimal:
    """A price the market accepts: from its tick (or stated minimum) to its stated maximum.
    The bounds are written as a person types them (to the tick, no separators)."""
    tick = canonical(filters.tick)
    low = max(canonical(filters.min_price or Decimal(0)), tick)
    high = canonical(filters.max_price or Decimal(0)) or MAX_PRICE
    what = PRICE_WORDS.get(key, "price")
    if price <= 0:
        raise ConfigError(f"the {what} must be more than 0", field=key)
    if price < low:
        raise ConfigError(f"the {what} must be at least {_typed(low, tick)}", field=key)
    if price > high:
        raise ConfigError(
            f"the {what} can be at most {_typed(high, tick)} on this market", field=key
        )
    return price


def _typed(price: Decimal, tick: Decimal) -> str:
    """As typed into the form: to the tick's decimals (``0.01``, ``1000000.00``)."""
    return f"{round_price(price, tick).quantize(tick):f}"


def grid_config(
    config: dict[str, Any],
    *,
    symbol: str,
    filters: MarketFilters,
    min_levels: int | None = None,
    max_levels: int | None = None,
) -> GridConfig:
    """The engine's GridConfig for a config on a market with these filters.

    Every number is bounded first (see ``MAX_CAPITAL`` and ``check_price``), so a config that
    passes here fits every column, template and computation it meets later."""
    base, quote = symbol.split("/")
    capital = check_capital(_decimal(config, "capital"), quote)
    daily = _decimal(config, "max_daily_loss", "0")
    if daily < 0:
        raise ConfigError(
            "the daily loss limit cannot be negative (0 disables it)", field="max_daily_loss"
        )
    if daily > capital:
        raise ConfigError(
            "the daily loss limit can be at most the capital (0 disables it)",
            field="max_daily_loss",
        )
    levels = config.get("grid_levels")
    text = str(levels).strip() if levels is not None else ""
    if not text:
        raise ConfigError("the config is missing grid_levels", field="grid_levels")
    if len(text) > 4 or not (text.isascii() and text.isdigit()):
        raise ConfigError(f"not a whole number of lines: {text[:10]!r}", field="grid_levels")
    prices = {key: _decimal(config, key) for key in ("lower_bound", "upper_bound")}
    for key in ("take_profit", "trigger_price", "trailing_up_limit", "trailing_down_limit"):
        if config.get(key) not in (None, ""):
            prices[key] = _decimal(config, key)
    for key, price in prices.items():
        check_price(price, key, filters)
    trailing_up = flag(config.get("trailing_up"), "trailing_up")
    trailing_down = flag(config.get("trailing_down"), "trailing_down")
    try:
        return GridConfig(
            lower=prices["lower_bound"],
            upper=prices["upper_bound"],
            levels=int(text),
            spacing=config.get("spacing") or DEFAULTS["spacing"],
            capital=capital,
            fee=canonical(filters.fee),
            tick=canonical(filters.tick),
            step=canonical(filters.step),
            min_notional=canonical(filters.min_notional),
            stop_loss_pct=_decimal(config, "stop_loss_pct", "0"),
            take_profit=prices.get("take_profit"),
            trigger_price=prices.get("trigger_price"),
            trailing_up=trailing_up,
            trailing_up_limit=prices.get("trailing_up_limit"),
            trailing_down=trailing_down,
            trailing_down_limit=prices.get("trailing_down_limit"),
            min_levels=level_limits()[0] if min_levels is None else min_levels,
            max_levels=level_limits()[1] if max_levels is None else max_levels,
            base_asset=base,
            quote_asset=quote,
        )
    except InvalidGrid as e:
        raise config_error(e) from None


def grid_config_for(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """``grid_config`` under the market's stored (or bundled) rules."""
    return grid_config(config, symbol=symbol, filters=rules_for(exchange, symbol))


def reference_price(exchange: str, symbol: str) -> Decimal | None:
    """The price a new grid is judged at (it starts there): the feed's latest, else the close
    of the newest stored candle; None when the market has neither."""
    price = market_services.latest_price(exchange, symbol)
    if price is None:
        candle = market_services.last_candle(exchange, symbol)
        price = candle[1] if candle else None
    return canonical(price) if price is not None else None


def check_funding(grid: GridConfig, price: Decimal) -> None:
    """Enough capital for every order of the grid, started at ``price`` (at its trigger price
    when it has one: it starts there), to reach the market's minimum order; the ConfigError on
    the capital names the least that is enough."""
    if grid.trigger_price is not None:
        price = grid.trigger_price
    try:
        grid.order_amount(price)
    except InvalidGrid as e:
        if e.field != "capital":
            raise config_error(e) from None
        quote = grid.quote_asset
        need = money_text(min_capital(grid, price), quote, at_least=True)
        minimum = money_text(grid.min_notional, quote)
        raise ConfigError(
            f"capital must be at least {need} for this grid: each of its {grid.levels - 1} "
            f"orders must be worth the exchange's minimum of {minimum}; add capital or use "
            "fewer price lines",
            field="capital",
        ) from None


def validate(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """``grid_config_for``, plus the capital check at the price now when there is one."""
    grid = grid_config_for(config, exchange=exchange, symbol=symbol)
    price = reference_price(exchange, symbol)
    if price is not None:
        check_funding(grid, price)
    return grid
