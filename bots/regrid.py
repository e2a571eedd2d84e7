"""A new grid on a running paper bot (``services.regrid_bot``), in one transaction.

The bot goes on: its history and statistics are kept (orders, round trips, events, equity
marks, started_at; its totals carry into the new grid's engine, what the old grid made or lost
into ``Bot.profit_before``), and so are the coins it holds: only the difference between what it
holds and what the new grid's sells need is bought or sold at market, at the bot's last price
with the market's (taker) fee, booked as a market order. The new grid is funded like a fresh
start with its capital: what the old grid made beyond it goes to the paper wallet, what it
lost is made up from there (its statistics keep both). Keys the new config does not set are
the old config's; every key kept, changed or dropped is said in words, returned and logged.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from django.db import transaction
from django.utils import timezone

from aibo import metrics
from bots import config as schema
from bots import ledger, push, starting
from bots.errors import BotError
from bots.grid.engine import GridEngine, MarketTrade, Side
from bots.grid.params import EXACT, InvalidGrid
from bots.models import Bot, BotEvent, EquitySnapshot, Order
from market.precision import canonical, floor_amount, plain

ZERO = Decimal(0)
REGRID = "regrid"  # the label of the difference's market order (one per generation)
UNSET = (None, "")


def regrid(bot: Bot, config: dict[str, Any]) -> list[str]:
    """Lay a new grid on the running paper ``bot`` (see the module); returns the notes."""
    if bot.mode == Bot.Mode.LIVE:
        raise BotError(
            f"{bot} is trading live: stop it first, then change its grid. aibo does not cancel "
            "and re-buy on an exchange inside one step."
        )
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if not bot.is_running or bot.engine_state is None:
            raise BotError(f"{bot} is not running: change its grid with Edit instead.")
        old = bot.engine()
        if old.is_stopped:
            raise BotError(f"{bot} is stopping ({bot.status_reason}): it keeps no grid to change.")
        merged, notes = merge(bot, config)
        price = canonical(bot.last_price or old.start_price)
        grid = schema.grid_config_for(merged, exchange=bot.exchange, symbol=bot.symbol)
        try:
            new = GridEngine.start(grid, price)
        except InvalidGrid as e:
            raise schema.config_error(e) from None
        notes += _lay(bot, old, new, price, merged, said=notes)
    transaction.on_commit(lambda: push.publish_bot(bot.pk))
    return notes


# --- the config: what the new one sets, and what it keeps ------------------------------------

LABELS = {
    "capital": "capital",
    "grid_levels": "price lines",
    "spacing": "spacing",
    "stop_loss_pct": "stop-loss",
    "max_daily_loss": "daily loss limit",
    "take_profit": "take profit",
}
# Settings that are off at these values: "kept" is said only of one that is on.
OFF = {"stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": ""}


def _shown(bot: Bot, key: str, value: str) -> str:
    if value in UNSET or (key in OFF and _same(value, OFF[key])):
        return "none"
    if key == "stop_loss_pct":
        return f"{value}% below the lower price"
    if key in ("capital", "max_daily_loss"):
        return f"{value} {bot.quote_asset}"
    return value


def _same(a: str, b: str) -> bool:
    try:
        return Decimal(a or "0") == Decimal(b or "0")
    except ArithmeticError:
        return a == b


def merge(bot: Bot, config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The new config with the old one's values for the keys it does not set (absent, None or
    ''), normalised; and what was kept or changed, in words. A kept take-profit the new range
    reaches is dropped, and said."""
    old = bot.config
    wanted = {k: v for k, v in config.items() if k in schema.KEYS and v not in UNSET}
    merged = schema.normalise({**old, **wanted})
    notes = []
    before = (old.get("lower_bound", ""), old.get("upper_bound", ""))
    after = (merged["lower_bound"], merged["upper_bound"])
    if not (_same(before[0], after[0]) and _same(before[1], after[1])):
        notes.append(f"range {before[0]}–{before[1]} changed to {after[0]}–{after[1]}")
    for key, label in LABELS.items():
        was, now = old.get(key, ""), merged[key]
        if (was != now) if key == "spacing" else not _same(was, now):
            notes.append(f"{label} {_shown(bot, key, was)} changed to {_shown(bot, key, now)}")
        elif not (key in OFF and _same(was, OFF[key])) and was not in UNSET:
            notes.append(f"{label} {_shown(bot, key, was)} kept")  # not set, or set the same
    take = merged["take_profit"]
    if take and "take_profit" not in wanted and Decimal(take) <= Decimal(merged["upper_bound"]):
        merged["take_profit"] = ""
        notes = [n for n in notes if not n.startswith("take profit")]
        notes.append(
            f"take profit {take} dropped: it is not above the new upper price "
            f"{merged['upper_bound']}"
        )
    schema.validate(merged, exchange=bot.exchange, symbol=bot.symbol)
    return merged, notes


# --- the money: coins carried, the difference traded, the wallet settled ---------------------


def _lay(
    bot: Bot, old: GridEngine, new: GridEngine, price: Decimal, config: dict[str, str],
    *, said: list[str],
) -> list[str]:  # fmt: skip
    """Inside the transaction holding the bot: trade the difference, settle with the wallet,
    swap the grids and write it all down (the bot row saved), with the notes ``said`` of the
    config. Returns the notes of the money."""
    grid, at = new.config, bot.cursor
    base, quote = bot.base_asset, bot.quote_asset
    held = old.base + old.dust
    need = new.base  # what the new grid's sells hold
    capital, old_capital = grid.capital, bot.capital
    value = old.equity(price)  # what the old grid holds, at the price now
    notes: list[str] = []
    trade: MarketTrade | None = None
    bought = sold = ZERO
    if need > held:
        bought = need - held
        if bought * price < grid.min_notional:  # the market's minimum order: buy that much
            least = (grid.min_notional / (price * grid.step)).to_integral_value(ROUND_CEILING)
            bought = least * grid.step
    elif held > need:
        sold = floor_amount(held - need, grid.step)
        if sold * price < grid.min_notional:
            if sold:
                notes.append(
                    f"kept {plain(held - need)} {base} beyond what the new grid needs: worth less "
                    f"than the market's minimum order of {plain(grid.min_notional)} {quote}"
                )
            sold = ZERO
    with localcontext(EXACT):
        if bought:
            trade = MarketTrade(Side.BUY, price, bought, grid.fee * price * bought)
        elif sold:
            trade = MarketTrade(Side.SELL, price, sold, grid.fee * price * sold)
        fee = trade.fee if trade else ZERO
        coins = held + bought - sold
        new.dust = coins - need
        new.quote = capital - coins * price - fee
        # From the wallet to the bot (negative: to the wallet): the old grid's gain or loss.
        transfer = capital - value
    if new.quote < 0:  # coins too few to sell are worth more than the grid's quote
        raise BotError(
            f"{bot} holds more {base} than a grid of {plain(capital)} {quote} can take: raise "
            "the capital."
        )
    new.start_buy = trade if bought else None
    new.fees_paid = fee
    starting.continue_statistics(bot, new)  # the old grid's totals, its result to profit_before

    wallet = ledger.paper_balance(bot.owner, quote, for_update=True)
    if transfer > wallet.free:
        raise BotError(
            f"The new grid's {plain(capital)} {quote} needs {transfer:,.2f} {quote} from your "
            f"paper wallet beside what {bot} holds, and it has {wallet.free:,.2f} {quote}: "
            "lower the capital."
        )
    wallet.free -= transfer
    wallet.locked = max(wallet.locked + capital - old_capital, ZERO)
    wallet.save(update_fields=["free", "locked"])

    held_words = f"{plain(min(held, need))} {base} the bot held carried into the new grid"
    if min(held, need):
        notes.append(held_words)
    if trade is not None:
        verb = "bought" if bought else "sold"
        notes.append(
            f"{verb} {plain(trade.amount)} {base} at {plain(price)} at market for the "
            f"difference; fee {trade.fee:.8f} {quote}"
        )
    if transfer < 0:
        notes.append(f"{-transfer:,.2f} {quote} beyond the capital moved to your paper wallet")
    elif transfer > 0:
        notes.append(f"{transfer:,.2f} {quote} added from your paper wallet to fund the capital")
    notes.append(
        f"statistics kept: {new.total_trades} round trips, grid profit "
        f"{new.grid_profit:,.2f} {quote}"
    )

    cancelled = Order.objects.filter(bot=bot, status__in=Order.RESTING).update(
        status=Order.Status.CANCELLED, reason="replaced by a new grid", updated_at=timezone.now()
    )
    bot.generation += 1
    bot.order_key = ledger.run_key(bot, bot.generation)
    bot.config = config
    bot.keep_engine(new)
    bot.last_equity = new.equity(price)
    # The equity moved to or from the wallet is no loss or gain of the day, nor a drawdown.
    if bot.day_open_equity is not None:
        bot.day_open_equity += transfer
    bot.peak_equity = max((bot.peak_equity or capital) + transfer, bot.last_equity)
    bot.save()

    orders = [ledger.open_order(bot, d) for d in new.desired_orders(bot.key)]
    if trade is not None:
        orders.insert(0, ledger.market_order(bot, trade, REGRID, at))
    Order.objects.bulk_create(orders)
    metrics.orders(Bot.Mode.PAPER, "placed", len(orders))
    n_buys = sum(1 for o in orders if o.slot is not None and o.side == Side.BUY)
    headline = (
        f"New grid at {plain(price)}: {len(new.lines)} lines from {plain(grid.lower)} to "
        f"{plain(grid.upper)}, {n_buys} buys below and {len(new.slots) - n_buys} sells above, "
        f"{plain(new.q)} {base} each; cancelled {cancelled} order(s) of the old grid."
    )
    BotEvent.objects.bulk_create(
        [ledger.event(bot, BotEvent.Kind.REGRID, headline, at)]
        + [
            ledger.event(bot, BotEvent.Kind.REGRID, f"{n[:1].upper()}{n[1:]}.", at)
            for n in said + notes
        ]
    )
    if at is not None:
        EquitySnapshot.objects.update_or_create(
            bot=bot, at=at, defaults={"price": price, "quote": new.quote,
                                      "base": new.base + new.dust, "equity": bot.last_equity},
        )  # fmt: skip
    return notes
