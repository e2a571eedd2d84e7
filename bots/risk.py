"""The risk rules, one of each for paper and live bots: stop-loss and take-profit (the grid
engine decides them on a paper bot's price path; a live bot checks them at the latest price),
the daily loss limit, and the equity marks they act on.

A live bot's rules act only on a fresh price: an old one would sell at a price long gone, or
miss a fall."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from bots.grid.backtest import mark_drawdown
from bots.grid.engine import GridEngine
from bots.grid.params import STOP_LOSS, TAKE_PROFIT
from bots.models import Bot
from market import services as market_services
from market.precision import canonical

# A live bot's risk rules act only on a price at most this old.
FRESH_PRICE = timedelta(minutes=3)


def fresh_price(bot: Bot, *, known: dict[str, Any] | None = None) -> Decimal | None:
    """The price to mark a live bot at: the feed's latest price (the streamed one in the cache,
    else the saved one) if it is fresh and the market's, not a replay's; else None
    (``known``: as ``market.services.price_now``)."""
    now = market_services.price_now(bot.exchange, bot.symbol, known=known)
    if now is None or now.replayed or now.age() > FRESH_PRICE:
        return None
    return canonical(now.price)


def roll_day(bot: Bot, day: date, open_equity: Decimal | None) -> None:
    """A new (UTC) day for the daily loss limit opens with ``open_equity`` (not saved)."""
    if bot.day != day:
        bot.day, bot.day_open_equity = day, open_equity


def mark(bot: Bot, equity: Decimal) -> None:
    """The bot's equity now, its peak and its max drawdown (not saved)."""
    bot.last_equity = equity
    bot.peak_equity, bot.max_drawdown = mark_drawdown(bot.peak_equity, bot.max_drawdown, equity)


def daily_loss_reason(bot: Bot, equity: Decimal) -> str:
    """Why the daily loss limit stops the bot at this equity, in words; or ''."""
    limit = bot.max_daily_loss
    if not limit or bot.day_open_equity is None:
        return ""
    lost = bot.day_open_equity - equity
    if lost < limit:
        return ""
    return (
        f"daily loss limit: lost {lost:,.2f} {bot.quote_asset} today (UTC), the limit is "
        f"{limit:,.2f}"
    )


def stopped_words(engine: GridEngine, bot: Bot) -> str:
    """Why the engine stopped the grid on its price path (and what it sold), in words."""
    sale = engine.stop_sale
    sold = f"; sold {sale.amount} {bot.base_asset} at {sale.price}" if sale and sale.amount else ""
    if engine.stopped == STOP_LOSS:
        return f"stop-loss: the price fell to the stop price {engine.stop_price}{sold}"
    if engine.stopped == TAKE_PROFIT:
        return f"take-profit: the price rose to {engine.config.take_profit}{sold}"
    return f"{engine.stopped}{sold}"


def price_reason(bot: Bot, price: Decimal | None = None) -> str:
    """Stop-loss, take-profit or the daily loss limit at a live bot's latest price (or at
    ``price``), in words; or '' (also when there is no fresh price)."""
    price = price if price is not None else bot.last_price
    if price is None or bot.engine_state is None:
        return ""
    engine = bot.engine()
    stop, take = engine.stop_price, engine.config.take_profit
    if stop is not None and price <= stop:
        return f"stop-loss: the price fell to {price}, at or below the stop price {stop}"
    if take is not None and price >= take:
        return f"take-profit: the price rose to {price}, at or above {take}"
    return daily_loss_reason(bot, engine.equity(price))


def sells_out(reason: str) -> bool:
    """Stop-loss and take-profit sell the bot's coins; the daily loss limit keeps them."""
    return reason.startswith(("stop-loss", "take-profit"))
