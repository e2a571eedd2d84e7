"""A new grid on a running bot: the change as a plan of orders, then laid in one step.

``plan(bot, config)`` is the one place the change is worked out: which orders of the old grid
are cancelled, which the new grid places, what is bought or sold at market for the difference
(with its fee), what moves to or from the wallet, and all of it in words. The edit page shows
it before it is applied, and applying it makes it again and does exactly that (``Shown``: the
plan the trader saw, refused with the new one when it no longer holds).

The bot goes on: its history and statistics are kept (orders, round trips, events, equity
marks, started_at; its totals carry into the new grid's engine, what the old grid made or lost
into ``Bot.profit_before``), and so are the coins it holds: only the difference between what it
holds and what the new grid's sells need is bought or sold at market, at the bot's last price
with the market's (taker) fee, booked as a market order. The new grid is funded like a fresh
start with its capital: what the old grid made beyond it goes to the paper wallet (a live
bot's: stays free in the exchange account), what it lost is made up from there (its statistics
keep both). Keys the new config does not set are the old config's; every key kept, changed or
dropped is said in words, returned and logged.

Paper (``regrid``): one transaction. Live (``regrid_live``, under the bot's lease so no cycle
runs beside it): the old grid is cancelled on the exchange and its last fills taken in, the
difference's market order is sent once under a fixed client id, and only then, in one
transaction, the new grid is written (its orders as pending intents, sent by the normal path
``live_trading``); until that commit the old grid is the bot's grid, and what the exchange
refused or did not answer leaves it so (its cancelled orders are placed again by the next
cycle). See ``regrid_live`` for each failure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from aibo import metrics
from bots import config as schema
from bots import ledger, live_trading, push, risk, starting
from bots.errors import BotError, LiveError
from bots.grid import order_ids
from bots.grid.engine import DesiredOrder, GridEngine, MarketTrade, Side
from bots.grid.params import EXACT, InvalidGrid
from bots.locks import bot_lock
from bots.models import Bot, BotEvent, EquitySnapshot, Order
from market.exchange import Budget, ExchangeError
from market.precision import canonical, floor_amount, plain

ZERO = Decimal(0)
REGRID = "regrid"  # the label of the difference's market order (one per generation)
UNSET = (None, "")
# Applying a plan at a price this far from the one it was shown at asks the trader again.
PRICE_DRIFT = Decimal("0.01")


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """One order of the change: a resting order cancelled, or one the new grid places."""

    side: str
    price: Decimal
    amount: Decimal
    slot: int | None = None
    client_id: str = ""


@dataclass
class Plan:
    """What laying ``config`` on the running bot does at ``price`` (``plan``)."""

    bot_id: int
    mode: str
    config: dict[str, str]  # the new config, the old one's values where it sets none
    price: Decimal
    base_asset: str
    quote_asset: str
    cancels: list[OrderLine]
    places: list[OrderLine]
    market: MarketTrade | None  # bought or sold at market for the difference
    transfer: Decimal  # into the bot from the wallet (the account); negative: out to it
    said: list[str]  # the config's changes, in words
    money: list[str]  # the money's, in words
    changed: bool  # whether the new config differs from the old one at all
    engine: GridEngine = field(repr=False, compare=False)

    @property
    def fee(self) -> Decimal:
        """The fee of the market order (the change's whole cost in fees; 0 without one)."""
        return self.market.fee if self.market else ZERO

    @property
    def notes(self) -> list[str]:
        return self.said + self.money

    @property
    def buys(self) -> int:
        return sum(1 for o in self.places if o.side == Side.BUY)

    @property
    def sells(self) -> int:
        return len(self.places) - self.buys

    @property
    def market_quote(self) -> Decimal:
        """What the market order costs (a buy) or brings (a sell) before its fee."""
        if self.market is None:
            return ZERO
        with localcontext(EXACT):
            return self.market.amount * self.market.price

    @property
    def transfer_in(self) -> Decimal:
        """What the wallet (a live bot's: the account) adds to fund the new capital."""
        return max(self.transfer, ZERO)

    @property
    def transfer_out(self) -> Decimal:
        """What goes back to the wallet (the account's free balance) beyond the capital."""
        return max(-self.transfer, ZERO)

    @property
    def digest(self) -> str:
        """The plan's shape: its config, the orders it cancels, where the new grid's orders
        go and which way the market order trades. Amounts follow the price (``Shown``)."""
        parts = [
            repr(sorted(self.config.items())),
            ",".join(sorted(o.client_id for o in self.cancels)),
            ",".join(f"{o.slot}{o.side}{o.price}" for o in self.places),
            self.market.side if self.market else "-",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def headline(self, cancelled: int | None = None) -> str:
        g = self.engine.config
        n = len(self.cancels) if cancelled is None else cancelled
        return (
            f"New grid at {plain(self.price)}: {len(self.engine.lines)} lines from "
            f"{plain(g.lower)} to {plain(g.upper)}, {self.buys} buys below and {self.sells} "
            f"sells above, {plain(self.engine.q)} {self.base_asset} each; cancelled {n} "
            "order(s) of the old grid."
        )


@dataclass(frozen=True)
class Shown:
    """The plan the trader saw and confirmed: its ``digest`` and the ``price`` it was made at."""

    digest: str
    price: Decimal


class PlanChanged(BotError):
    """The plan made when applying is not the one shown: ``plan`` is the new one to show."""

    def __init__(self, plan: Plan, why: str) -> None:
        super().__init__(f"{why}: nothing was changed. Check the new changes and apply again.")
        self.plan = plan


def check_shown(shown: Shown | None, plan: Plan) -> None:
    """``PlanChanged`` unless ``plan`` is the one ``shown`` (a fill, the price crossing a
    line or moving more than ``PRICE_DRIFT`` since, or another config, all change it)."""
    if shown is None:
        return
    if shown.digest != plan.digest:
        raise PlanChanged(plan, "The grid or the price changed since the preview")
    if shown.price <= 0:
        raise PlanChanged(plan, "The price of the preview was not sent back")
    if abs(plan.price - shown.price) > shown.price * PRICE_DRIFT:
        raise PlanChanged(
            plan,
            f"The price moved from {plain(shown.price)} to {plain(plan.price)} since the preview",
        )


def plan(bot: Bot, config: dict[str, Any], *, price: Decimal | None = None) -> Plan:
    """The change ``config`` makes to the running ``bot``'s grid at ``price`` (default: the
    bot's last price): nothing is written. ``ConfigError`` for a config the market refuses,
    ``BotError`` for a change the bot cannot make (in words for its owner)."""
    if not bot.is_running or bot.engine_state is None:
        raise BotError(f"{bot} is not running: change its grid with Edit instead.")
    if bot.stopping_reason:
        raise BotError(f"{bot} is stopping ({bot.stopping_reason}): it keeps no grid to change.")
    old = bot.engine()
    if old.is_stopped:
        raise BotError(f"{bot} is stopping ({bot.status_reason}): it keeps no grid to change.")
    if getattr(old, "waiting", False):
        raise BotError(
            f"{bot} waits for its trigger price and holds nothing yet: stop it and change it "
            "with Edit (nothing is lost)."
        )
    merged, said = merge(bot, config)
    price = canonical(price or bot.last_price or old.start_price)
    grid = schema.grid_config_for(merged, exchange=bot.exchange, symbol=bot.symbol)
    try:
        new = GridEngine.start(grid, price)
    except InvalidGrid as e:
        raise schema.config_error(e) from None
    trade, transfer, money = _money(bot, old, new, price)
    resting = Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT).order_by("slot")
    key = ledger.run_key(bot, bot.generation + 1)
    return Plan(
        bot_id=bot.pk, mode=bot.mode, config=merged, price=price,
        base_asset=bot.base_asset, quote_asset=bot.quote_asset,
        cancels=[OrderLine(o.side, o.price, o.amount - o.filled, o.slot, o.client_order_id)
                 for o in resting],
        places=[_line(d) for d in new.desired_orders(key)],
        market=trade, transfer=transfer, said=said, money=money,
        changed=schema.normalise(bot.config) != merged, engine=new,
    )  # fmt: skip


def _line(d: DesiredOrder) -> OrderLine:
    return OrderLine(str(d.side), d.price, d.amount, d.slot, d.client_id)


def regrid(bot: Bot, config: dict[str, Any], *, shown: Shown | None = None) -> Plan:
    """Lay a new grid on the running paper ``bot`` in one transaction (see the module):
    a failure anywhere leaves the old grid running. Returns the plan done."""
    if bot.mode == Bot.Mode.LIVE:
        raise BotError(
            f"{bot} is trading live: stop it first, or change its grid on its Edit grid page, "
            "which shows the orders on the exchange and asks you to confirm them."
        )
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        done = plan(bot, config)
        check_shown(shown, done)
        _write(bot, done)
    transaction.on_commit(lambda: push.publish_bot(bot.pk))
    return done


# --- the config: what the new one sets, and what it keeps ------------------------------------

LABELS = {
    "capital": "capital",
    "grid_levels": "price lines",
    "spacing": "spacing",
    "stop_loss_pct": "stop-loss",
    "max_daily_loss": "daily loss limit",
    "take_profit": "take profit",
    "trailing_up": "trailing up",
    "trailing_up_limit": "trailing up limit",
    "trailing_down": "trailing down",
    "trailing_down_limit": "trailing down limit",
}
# Settings that are off at these values: "kept" is said only of one that is on.
OFF = {"stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": "",
       "trailing_up": "", "trailing_up_limit": "", "trailing_down": "",
       "trailing_down_limit": ""}  # fmt: skip
FLAGS = ("trailing_up", "trailing_down")


def _shown(bot: Bot, key: str, value: str) -> str:
    if key in FLAGS:
        return "on" if value == "true" else "off"
    if value in UNSET or (key in OFF and _same(value, OFF[key])):
        return "none"
    if key == "stop_loss_pct":
        return f"{value}% below the lower price"
    if key in ("capital", "max_daily_loss"):
        return f"{value} {bot.quote_asset}"
    return value


def _same(a: str, b: str) -> bool:
    if "true" in (a, b):  # a flag: on, or not
        return a == b
    try:
        return Decimal(a or "0") == Decimal(b or "0")
    except ArithmeticError:
        return a == b


def merge(bot: Bot, config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The new config with the old one's values for the keys it does not set (absent, None or
    ''), normalised; and what was kept or changed, in words. A kept take-profit the new range
    reaches is dropped, and said; so is a trigger price: the running bot's new grid starts at
    the price now."""
    old = bot.config
    wanted = {k: v for k, v in config.items() if k in schema.KEYS and v not in UNSET}
    merged = schema.normalise({**old, **wanted})
    notes = []
    before = (old.get("lower_bound", ""), old.get("upper_bound", ""))
    after = (merged["lower_bound"], merged["upper_bound"])
    if not (_same(before[0], after[0]) and _same(before[1], after[1])):
        notes.append(f"range {before[0]}–{before[1]} changed to {after[0]}–{after[1]}")
    for key, label in LABELS.items():
        was, now = old.get(key, ""), merged.get(key, "")
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
    if trigger := merged.pop("trigger_price", ""):
        notes.append(f"trigger price {trigger} dropped: the new grid starts at the price now")
    schema.validate(merged, exchange=bot.exchange, symbol=bot.symbol)
    return merged, notes


# --- the money: coins carried, the difference traded, the wallet settled ---------------------


def _money(
    bot: Bot, old: GridEngine, new: GridEngine, price: Decimal
) -> tuple[MarketTrade | None, Decimal, list[str]]:
    """Carry the old grid's coins into ``new`` (changed: its quote, dust, start buy and fees),
    trading only the difference at market. Returns the market trade, the transfer into the bot
    (negative: out of it) and the notes of the money. ``BotError`` when it cannot be paid."""
    grid = new.config
    base, quote = bot.base_asset, bot.quote_asset
    held = old.base + old.dust
    need = new.base  # what the new grid's sells hold
    capital = grid.capital
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

    live = bot.mode == Bot.Mode.LIVE
    if not live:
        wallet = ledger.paper_balance(bot.owner, quote)
        _check_wallet(bot, transfer, wallet.free, capital)
    if min(held, need):
        notes.append(f"{plain(min(held, need))} {base} the bot held carried into the new grid")
    if trade is not None:
        verb = "bought" if bought else "sold"
        notes.append(
            f"{verb} {plain(trade.amount)} {base} at {plain(price)} at market for the "
            f"difference; fee {trade.fee:.8f} {quote}"
        )
    where = f"your {bot.exchange} account" if live else "your paper wallet"
    if transfer < 0:
        notes.append(f"{-transfer:,.2f} {quote} beyond the capital moved to {where}")
    elif transfer > 0:
        notes.append(f"{transfer:,.2f} {quote} added from {where} to fund the capital")
    with localcontext(EXACT):
        profit = new.grid_profit + old.grid_profit
    notes.append(
        f"statistics kept: {new.total_trades + old.total_trades} round trips, grid profit "
        f"{profit:,.2f} {quote}"
    )
    return trade, transfer, notes


def _check_wallet(bot: Bot, transfer: Decimal, free: Decimal, capital: Decimal) -> None:
    if transfer > free:
        raise BotError(
            f"The new grid's {plain(capital)} {bot.quote_asset} needs {transfer:,.2f} "
            f"{bot.quote_asset} from your paper wallet beside what {bot} holds, and it has "
            f"{free:,.2f} {bot.quote_asset}: lower the capital."
        )


def _write(
    bot: Bot, done: Plan, *, trade: MarketTrade | None = None,
    at: datetime | None = None, cancelled: int | None = None,
) -> list[Order]:  # fmt: skip
    """Inside the transaction holding the bot: swap the grids and write it all down (the bot
    row saved): statistics carried, the wallet settled (paper), the old grid's rows cancelled,
    the market order booked (``trade``: a live one as it filled, else the plan's), the new
    grid's rows (paper: open; live: left to the caller to write as pending), the events and
    the chart's mark. Returns the rows written."""
    new, price = done.engine, done.price
    at = at if at is not None else bot.cursor
    capital, old_capital = new.config.capital, bot.capital
    trade = trade if trade is not None else done.market
    starting.continue_statistics(bot, new)  # the old grid's totals, its result to profit_before
    paper = bot.mode == Bot.Mode.PAPER
    if paper:
        wallet = ledger.paper_balance(bot.owner, bot.quote_asset, for_update=True)
        _check_wallet(bot, done.transfer, wallet.free, capital)
        wallet.free -= done.transfer
        wallet.locked = max(wallet.locked + capital - old_capital, ZERO)
        wallet.save(update_fields=["free", "locked"])

    n = Order.objects.filter(bot=bot, status__in=Order.RESTING, kind=Order.Kind.LIMIT).update(
        status=Order.Status.CANCELLED, reason="replaced by a new grid", updated_at=timezone.now()
    )
    metrics.orders(bot.mode, "cancelled", n)
    bot.generation += 1
    bot.order_key = ledger.run_key(bot, bot.generation)
    bot.config = done.config
    bot.keep_engine(new)
    bot.last_equity = new.equity(price)
    # The equity moved to or from the wallet is no loss or gain of the day, nor a drawdown.
    if bot.day_open_equity is not None:
        bot.day_open_equity += done.transfer
    bot.peak_equity = max((bot.peak_equity or capital) + done.transfer, bot.last_equity)
    bot.save()

    orders = [ledger.open_order(bot, d) for d in new.desired_orders(bot.key)] if paper else []
    if trade is not None:
        orders.insert(0, ledger.market_order(bot, trade, REGRID, at))
    Order.objects.bulk_create(orders)
    metrics.orders(bot.mode, "placed", len(orders))
    BotEvent.objects.bulk_create(
        [ledger.event(bot, BotEvent.Kind.REGRID, done.headline(cancelled), at)]
        + [
            ledger.event(bot, BotEvent.Kind.REGRID, f"{n[:1].upper()}{n[1:]}.", at)
            for n in done.notes
        ]
    )
    if at is not None:
        EquitySnapshot.objects.update_or_create(
            bot=bot, at=at, defaults={"price": price, "quote": new.quote,
                                      "base": new.base + new.dust, "equity": bot.last_equity},
        )  # fmt: skip
    return orders


# --- a live bot: the old grid off the exchange, the difference traded, then the new grid -------


class ConfirmationNeeded(BotError):
    """A live bot's change asked for without its pair typed (or typed wrong): ``plan`` is what
    it would do, ``problem`` what was wrong with what was typed ("" when nothing was)."""

    def __init__(self, plan: Plan, symbol: str, problem: str = "") -> None:
        super().__init__(problem or f"Type {symbol} to confirm the change on the exchange.")
        self.plan = plan
        self.problem = problem


def live_price(bot: Bot) -> Decimal:
    """The price a live bot's grid is changed at: the feed's fresh one, never an old one."""
    price = risk.fresh_price(bot)
    if price is None:
        raise BotError(
            f"No fresh price for {bot.symbol} from the market feed: a live grid is changed at "
            "the market's price now. Nothing was changed; try again when the feed is back."
        )
    return price


def regrid_live(
    bot: Bot, config: dict[str, Any], *, shown: Shown | None, typed_pair: str | None
) -> Plan:
    """Lay a new grid on the running live ``bot`` as its owner confirmed it (the pair typed,
    the plan ``shown``), under the account's and the bot's locks (no start on the account, no
    cycle of the bot beside it). In order:

    1. the plan at the feed's fresh price, checked against the one shown, and the account's
       free quote against what the new grid adds (``LiveError``: nothing was changed);
    2. the old grid cancelled on the exchange and its last fills taken in; the plan made
       again on the books they leave (a fill in between changes it: ``PlanChanged``);
    3. the difference's market order, written down and sent once under a fixed client id;
    4. one transaction: the old grid's rows cancelled, the trade booked as it filled, the new
       config, engine and generation, the new grid's orders written as pending, the events;
    5. those orders sent as a cycle sends them; what the request budget holds back or the
       exchange refuses stays pending and the cycles send it (a refusal counted, in words on
       the log, the bot stopped in ERROR after ``REFUSALS_BEFORE_ERROR`` in a row).

    A failure in 1–4 (the exchange refused or did not answer, the budget held a request back,
    the database failed) leaves the old grid the bot's grid, said on the log: the next cycle,
    made to ask the exchange's book, places its cancelled orders again. A market order sent
    whose answer was lost (or whose booking failed) is looked up by its id when the change is
    applied again, and never sent twice."""
    starting.check_going_live(bot)
    if typed_pair is None or not starting.same_pair(typed_pair, bot.symbol):
        shown_text = (typed_pair or "").strip()[:30]
        problem = ""
        if typed_pair is not None:
            problem = (
                f"You typed “{shown_text}”, not {bot.symbol}: nothing was changed."
                if shown_text
                else f"Type {bot.symbol} to apply the change: nothing was changed."
            )
        raise ConfirmationNeeded(plan(bot, config, price=live_price(bot)), bot.symbol, problem)
    with starting.account_lock(bot.credential_id), bot_lock(bot.pk):
        bot = Bot.objects.select_related("credential").get(pk=bot.pk)
        price = live_price(bot)
        gw = live_trading.gateway(bot)
        first = plan(bot, config, price=price)
        check_shown(shown, first)
        _check_budget(bot, first)
        _check_account(bot, gw, first)
        client_id = order_ids.market_order_id(ledger.run_key(bot, bot.generation + 1), REGRID)
        try:
            live_trading.clear_for_regrid(bot, gw)
            bot.refresh_from_db()
            done = plan(bot, config, price=price)
            if done.digest != first.digest:
                raise PlanChanged(done, "A fill came in while the old grid was cancelled")
            trade, fills, base_fee = live_trading.regrid_trade(bot, gw, client_id, done.market)
        except PlanChanged as e:
            live_trading.regrid_abandoned(bot, str(e))
            raise
        except (ExchangeError, LiveError, BotError) as e:
            words = _not_laid(bot, e, client_id)
            live_trading.regrid_abandoned(bot, words)
            raise BotError(words) from None
        _as_filled(done, trade, base_fee)
        minute = timezone.now().replace(second=0, microsecond=0)
        try:
            with transaction.atomic():
                locked = Bot.objects.select_for_update().get(pk=bot.pk)
                rows = _write(locked, done, trade=trade, at=minute)
                if trade is not None:
                    live_trading.record_start(locked, rows[0], fills)
                pending = [] if locked.stopping_reason else (
                    live_trading.write_regrid_orders(locked, done.engine)
                )  # fmt: skip
        except Exception as e:  # the trade is done but not booked: said, and found again
            live_trading.regrid_abandoned(bot, _not_laid(bot, e, client_id))
            raise
        live_trading.send_regrid_orders(locked, gw, pending, last=price)
    push.publish_bot(bot.pk)
    return done


def _not_laid(bot: Bot, e: Exception, client_id: str) -> str:
    """Why the new grid was not laid, and what became of the market order, in words."""
    why = str(e).rstrip(".")
    if ledger.sent_before(client_id) is not None:
        return (
            f"the market order for the difference went to {bot.exchange} but was not "
            f"confirmed ({why}). Apply the same change again: it looks the order up by its "
            "id and never trades twice; until then what it bought or sold is in your "
            "account, not in the grid."
        )
    return f"{bot.exchange} did not take the change ({why}); nothing was traded."


def _as_filled(done: Plan, trade: MarketTrade | None, base_fee: Decimal) -> None:
    """The plan's engine booked with the market order as it filled, not as planned: the
    amount's difference is dust, the price's and the fee's are the quote's."""
    engine, planned = done.engine, done.market

    def coins(t: MarketTrade | None) -> Decimal:  # what a trade adds to the coins held
        return ZERO if t is None else t.amount if t.side == Side.BUY else -t.amount

    with localcontext(EXACT):
        was = -coins(planned) * done.price - (planned.fee if planned else ZERO)
        now = -coins(trade) * trade.price - trade.fee if trade else ZERO
        engine.quote += now - was
        engine.dust += coins(trade) - coins(planned)
    engine.fees_paid = trade.fee if trade else ZERO
    engine.start_buy = trade if trade is not None and trade.side == Side.BUY else None
    if base_fee and trade is not None:  # taken from the coins bought
        engine.take_base_fee(base_fee, base_fee * trade.price)
    done.market = trade
    done.money = [n for n in done.money if not n.startswith(("bought ", "sold "))]
    if trade is not None:
        verb = "bought" if trade.side == Side.BUY else "sold"
        fee = f"{trade.fee:.8f} {done.quote_asset}" + (
            f" and {plain(base_fee)} {done.base_asset}" if base_fee else ""
        )
        done.money.insert(0, f"{verb} {plain(trade.amount)} {done.base_asset} at "
                             f"{plain(canonical(trade.price))} on average at market for the "
                             f"difference; fee {fee}")  # fmt: skip


# About what taking the old grid off the exchange weighs in the exchange's request budget
# (Binance's weights): per order a cancel and a look-up; then the book and the account's trades.
WEIGHT_PER_CANCEL = 5
WEIGHT_TO_FINISH = 40


def _check_budget(bot: Bot, done: Plan) -> None:
    """A change the request budget cannot carry through now is refused before anything is
    cancelled (``LiveError``): the exchange paused or banned this server, or the weight
    already used this window leaves less than the old grid's cancels and look-ups need beside
    the spare share kept for stops. The new grid's orders need no room now: they are written
    down as pending and go out as the budget allows, as every cycle sends them."""
    api_key, _secret = bot.credential.keys()  # type: ignore[union-attr]
    budget = Budget(bot.exchange, api_key)
    paused = budget.pause()
    if paused is not None:
        raise LiveError(f"{bot.exchange} is not taking requests from this server now "
                        f"({paused[1]}): nothing was changed; try again later.")  # fmt: skip
    need = WEIGHT_PER_CANCEL * len(done.cancels) + WEIGHT_TO_FINISH
    spare = 1 - Decimal(str(settings.EXCHANGE_BUDGET_HEADROOM))
    for what, used, limit in budget.usage():
        if what.startswith("request weight") and used + need > limit * spare:
            raise LiveError(
                f"{bot.exchange}'s request budget is too busy for this change now ({what}: "
                f"{used:,} of {limit:,} used, the change needs about {need:,}): nothing was "
                "changed; try again in a minute."
            )


def _check_account(bot: Bot, gw: Any, done: Plan) -> None:
    """A new grid that needs more quote than the old one holds (``transfer``) needs it free in
    the exchange account beside what this bot and the account's other live bots have not put
    in orders yet (it shows as free too)."""
    if done.transfer <= 0:
        return
    quote = bot.quote_asset
    try:
        balances = gw.balances()
    except ExchangeError as e:
        raise LiveError(f"{bot.exchange} did not answer: {e}; nothing was changed") from None
    free = balances[quote].free if quote in balances else ZERO
    bots = list(
        Bot.objects.running().filter(
            credential_id=bot.credential_id, mode=Bot.Mode.LIVE, symbol__endswith=f"/{quote}"
        )
    )
    on_book: dict[int, Decimal] = {}
    for bot_id, at, amount, filled in Order.objects.filter(
        bot__in=bots, status=Order.Status.OPEN, side=Order.Side.BUY
    ).values_list("bot_id", "price", "amount", "filled"):
        on_book[bot_id] = on_book.get(bot_id, ZERO) + at * (amount - filled)
    unplaced = sum((max(b.engine().quote - on_book.get(b.pk, ZERO), ZERO) for b in bots), ZERO)
    spare = free - unplaced
    if done.transfer > spare:
        raise LiveError(
            f"The new grid's capital needs {done.transfer:,.2f} {quote} more than {bot} holds, "
            f"and your {bot.exchange} account has {max(spare, ZERO):,.2f} {quote} free beside "
            "what your live bots use: lower the capital. Nothing was changed."
        )
