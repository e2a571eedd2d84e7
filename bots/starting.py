"""Starting a bot: check the grid against the market (and the paper balance), buy the start
(live: at market, idempotent by client id), write the running grid.

A live start sends its buy before it writes anything else, so the buy is written down first
(``ledger.send_attempt``): a start whose buy went out but that did not finish (the exchange did
not confirm it in time, or the worker died) is finished by ``finish_unfinished``, run by a
periodic task, and never buys twice.

Going live (issue 13): a live start needs its owner past the paper-first gate (``live_gate``:
a paper or testnet bot of theirs ran ``LIVE_GATE_HOURS`` and completed a round trip, or an
operator's ``LiveGateWaiver``; testnet keys need none), keys verified once and checked again
now (``check_keys``), the pair typed by the person who asked (``check_confirmation``, through
``services.start_asked`` for the views and the command; not for ``finish_unfinished``) and
capital the account really has beside its other live bots (``check_funds``, under
``account_lock`` so two starts on one account never both pass).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts import crypto, key_check
from aibo import metrics
from bots import config as schema
from bots import ledger, live_trading
from bots.errors import BotError, LiveError
from bots.gateways.base import ExchangeFill
from bots.grid import order_ids
from bots.grid.engine import GridEngine, MarketTrade, Side
from bots.grid.params import EXACT, GridConfig, InvalidGrid, SlotState
from bots.locks import bot_lock
from bots.models import (
    Bot,
    BotEvent,
    EquitySnapshot,
    LiveGateWaiver,
    Order,
    PaperBalance,
    Trade,
)
from market import services as market_services
from market.exchange import ExchangeError, OrderRejected
from market.precision import canonical, floor_amount, round_price

ZERO = Decimal(0)

logger = logging.getLogger(__name__)


def start(bot: Bot) -> str:
    """Start the bot (changing nothing when it cannot); returns its new chain token. A live
    bot starts under its cycle lock (never beside a cycle or another start), and its grid is
    sent by its first cycle."""
    if bot.mode != Bot.Mode.LIVE:
        return _start(bot)
    if not market_services.feed_status().live:
        raise BotError(
            "Live bots trade on live prices: set MARKET_FEED=live (the market feed is "
            "replaying recorded candles now)."
        )
    # The account first, then the bot: a cycle or a stop takes only the bot's lease.
    with account_lock(bot.credential_id), bot_lock(bot.pk):
        return _start(Bot.objects.select_related("credential").get(pk=bot.pk))


def finish_unfinished() -> list[tuple[int, str]]:
    """Finish the live starts whose buy went out but that did not finish: the buy is found
    by its client id, never sent twice. Returns (bot, chain token) of each that started; one
    that still cannot says why on its log, once."""
    started = []
    for bot in Bot.objects.filter(mode=Bot.Mode.LIVE).exclude(status=Bot.Status.RUNNING):
        if not start_pending(bot):
            continue
        try:
            started.append((bot.pk, start(bot)))
        except BotError as e:
            logger.warning("bot %s: its start is not finished yet: %s", bot.pk, e)
            message = f"Starting: not finished yet ({e})"[:500]
            if bot.events.order_by("-id").values_list("message", flat=True).first() != message:
                BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED, message=message)
    return started


def _start(bot: Bot) -> str:
    if bot.is_running:
        raise BotError(f"{bot} is already running.")
    if bot.is_archived and not (bot.mode == Bot.Mode.LIVE and start_pending(bot)):
        raise BotError(f"{bot} is archived: take it out of the archive to start it.")
    candle = market_services.last_candle(bot.exchange, bot.symbol)
    if candle is None:
        raise BotError(
            f"There is no price for {bot.symbol} yet: the market feed has not delivered one."
        )
    at, p0 = candle[0], canonical(candle[1])  # the column pads to 12 places
    live_mode = bot.mode == Bot.Mode.LIVE
    # A start whose buy went out passed the checks when it sent it; the buy spent the funds.
    first_try = live_mode and not start_pending(bot)
    if first_try:
        check_going_live(bot)
        check_keys(bot)
    if live_mode:  # the exchange's rules of the moment, not only the stored ones
        gw = live_trading.gateway(bot)
        rules = refresh_rules(bot, gw)
    grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    if live_mode:  # the account's own commission rate is the grid's fee
        grid = account_fee(bot, gw, grid)
    try:
        engine = GridEngine.start(grid, p0)
    except InvalidGrid as e:
        raise schema.config_error(e) from None
    if live_mode:  # every order within the exchange's rules, then funds, then the start buy
        # A grid waiting for its trigger price is checked as it is laid out there.
        ready, at_price = laid_out(grid, engine)
        check_exchange_rules(bot, ready, rules, at_price)
        if first_try:
            check_funds(bot, gw)
        start_fills = start_buy(bot, gw, engine)

    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if bot.is_running:
            raise BotError(f"{bot} is already running.")
        if bot.is_archived and not live_mode:  # a live start's buy went out: it finishes
            raise BotError(f"{bot} is archived: take it out of the archive to start it.")
        capital = bot.capital
        used = ZERO
        if not live_mode:
            used = use_wallet_coins(bot, engine, p0)
            wallet = ledger.paper_balance(bot.owner, bot.quote_asset, for_update=True)
            pay = capital - used * p0  # the coins used count at the price now
            if wallet.free < pay:
                raise BotError(
                    f"Your paper balance is {wallet.free:,.2f} {bot.quote_asset}; this grid "
                    f"needs {pay:,.2f} {bot.quote_asset}"
                    + (f" beside the {used} {bot.base_asset} it uses" if used else "")
                    + ". Lower the capital or stop another bot."
                )
            wallet.free -= pay
            wallet.locked += capital
            wallet.save(update_fields=["free", "locked"])
        continue_statistics(bot, engine)

        bot.generation += 1
        bot.order_key = ledger.run_key(bot, bot.generation)
        bot.status, bot.status_reason = Bot.Status.RUNNING, ""
        bot.start_price, bot.cursor, bot.last_price = p0, at, p0
        # The run's drawdown is marked from its capital; the worst of all runs is kept.
        bot.peak_equity = capital
        bot.day, bot.day_open_equity = at.date(), capital
        bot.started_at, bot.stopped_at = timezone.now(), None
        bot.market_started_at = bot.market_started_at or at  # statistics run from the first
        bot.chain_token = uuid.uuid4().hex
        if live_mode:  # the account's earlier trades are not this grid's: start from now
            now_ms = int(timezone.now().timestamp() * 1000)
            bot.fill_cursor_ms = now_ms - live_trading.CURSOR_MARGIN_MS
            bot.fill_cursor_trade = None  # set by the start buy's trades, or the first seen
        bot.keep_engine(engine)
        bot.last_equity = engine.equity(p0)
        bot.save()

        orders: list[Order] = []
        if engine.start_buy:
            orders.append(ledger.market_order(bot, engine.start_buy, order_ids.START, at))
        desired = engine.desired_orders(bot.key)
        if not live_mode:  # a live grid is written and sent after the commit (reconcile)
            orders += [ledger.open_order(bot, d) for d in desired]
        Order.objects.bulk_create(orders)
        metrics.orders(bot.mode, "placed", len(orders))
        if live_mode and engine.start_buy:
            live_trading.record_start(bot, orders[0], start_fills)
        events = [
            ledger.event(bot, BotEvent.Kind.STARTED, start_words(bot, engine, p0, used=used), at)
        ]
        BotEvent.objects.bulk_create(events)
        # A restart in the market minute of the last cycle replaces that minute's snapshot.
        EquitySnapshot.objects.update_or_create(
            bot=bot, at=at, defaults={"price": p0, "quote": engine.quote,
                                      "base": engine.base + engine.dust,
                                      "equity": bot.last_equity},
        )  # fmt: skip
    return bot.chain_token


def start_words(bot: Bot, engine: GridEngine, p0: Decimal, *, used: Decimal = ZERO) -> str:
    """The start's line on the event log: the grid laid out and what was bought, or, for a
    grid with a trigger price, what it waits for (nothing is placed or bought until then)."""
    cfg, base = engine.config, bot.base_asset
    grid = f"{len(engine.lines)} lines from {cfg.lower} to {cfg.upper}"
    if engine.waiting:
        way = "fall" if engine.wait_side == "below" else "rise"
        return (
            f"Started at {p0}: waits for the price to {way} to {engine.start_price} (the "
            f"trigger price) before it buys or places anything; then it lays out {grid}, "
            f"{engine.q} {base} each, and buys the sells' coins at market."
        )
    buys = sum(1 for s in engine.slots if s.state == SlotState.QUOTE)
    words = (
        f"Started at {p0} with {grid}: {buys} buys below and {len(engine.slots) - buys} "
        f"sells above, {engine.q} {base} each"
    )
    if used:
        words += f"; used {used} {base} from your paper wallet (counted at {p0}, no fee)"
    if engine.start_buy:
        words += f"; bought {engine.start_buy.amount} {base} at {p0} for the sells"
    return words + "."


def laid_out(grid: GridConfig, engine: GridEngine) -> tuple[GridEngine, Decimal]:
    """The grid as it rests once it runs, and the price it starts at: ``engine`` itself, or,
    while it waits for its trigger price, the grid laid out at that price."""
    if not engine.waiting:
        return engine, engine.start_price
    trigger = engine.start_price
    return GridEngine.start(replace(grid, trigger_price=None), trigger), trigger


def use_wallet_coins(bot: Bot, engine: GridEngine, p0: Decimal) -> Decimal:
    """A paper start uses the coins of its base already in the paper wallet (those an earlier
    stop kept, say) before it buys: they move into the grid at the price now, with no fee, and
    only the rest is bought at market (at least the market's minimum order, when a buy is left
    at all). Changes the engine's start buy, quote and fees and the base wallet (in the start's
    transaction); returns the coins used."""
    buy = engine.start_buy
    if buy is None:
        return ZERO
    wallet = (
        PaperBalance.objects.select_for_update()
        .filter(owner_id=bot.owner_id, asset=bot.base_asset, free__gt=0)
        .first()
    )
    if wallet is None:
        return ZERO
    grid = engine.config
    used = min(floor_amount(wallet.free, grid.step), buy.amount)
    rest = buy.amount - used
    if rest > ZERO and rest * p0 < grid.min_notional:  # the market would refuse so small a buy
        least = (grid.min_notional / (p0 * grid.step)).to_integral_value(ROUND_CEILING)
        rest = min(least * grid.step, buy.amount)
        used = buy.amount - rest
    if used <= 0:
        return ZERO
    with localcontext(EXACT):
        fee = grid.fee * p0 * rest
        engine.quote = grid.capital - p0 * buy.amount - fee
    engine.fees_paid = fee
    engine.start_buy = MarketTrade(Side.BUY, p0, rest, fee) if rest else None
    wallet.free -= used
    wallet.save(update_fields=["free"])
    return used


def continue_statistics(bot: Bot, engine: GridEngine) -> None:
    """A new run (a restart, a new grid) goes on with the bot's statistics instead of starting
    them again: the round trips, wins, grid profit, fills and fees of its earlier runs carry
    into the new engine, and what the last run made or lost (its equity at its last mark less
    its capital) is added to ``Bot.profit_before`` (not saved)."""
    if not bot.engine_state:
        return
    old = bot.engine()
    mark = old.stop_mark if old.is_stopped else (bot.last_price or old.start_price)
    with localcontext(EXACT):
        bot.profit_before += old.equity(canonical(mark)) - old.config.capital
        engine.grid_profit += old.grid_profit
        engine.fees_paid += old.fees_paid
    engine.fills += old.fills
    engine.total_trades += old.total_trades
    engine.wins += old.wins


# --- a live start on the exchange ---------------------------------------------------------------


def start_client_id(bot: Bot) -> str:
    """The start buy's client id for the generation about to start (stable across retries)."""
    return order_ids.market_order_id(ledger.run_key(bot, bot.generation + 1), order_ids.START)


def start_pending(bot: Bot) -> bool:
    """Whether a start of this bot sent its buy and did not finish (the exchange did not
    confirm it in time, or the worker died): ``starting.finish_unfinished`` finishes it."""
    return ledger.sent_before(start_client_id(bot)) is not None


def check_funds(bot: Bot, gw: Any) -> None:
    """Refuse a start the account cannot pay for beside its other live bots on these keys (the
    same quote asset): the quote the exchange shows free, less what those bots have not put in
    orders yet (it shows as free too), must cover this bot's capital; and their capital and
    this bot's together must not exceed that free quote plus what they hold (their quote in
    orders, their coins at the price now). A bot whose start buy went out but did not finish
    counts with its capital, nothing held. Exact figures; the caller holds ``account_lock``."""
    try:
        balances = gw.balances()
    except ExchangeError as e:
        raise LiveError(f"{bot.exchange} did not answer: {e}") from None
    quote = bot.quote_asset
    free = balances[quote].free if quote in balances else ZERO
    beside = Bot.objects.filter(
        credential_id=bot.credential_id, mode=Bot.Mode.LIVE, symbol__endswith=f"/{quote}"
    ).exclude(pk=bot.pk)
    running = list(beside.running())
    starting = [b for b in beside.exclude(status=Bot.Status.RUNNING) if start_pending(b)]
    if not running and not starting:
        if free < bot.capital:
            raise LiveError(
                f"Your {bot.exchange} account has {free:,.2f} {quote} free; this grid needs "
                f"{bot.capital:,.2f} {quote}."
            )
        return
    on_book: dict[int, Decimal] = defaultdict(Decimal)
    for bot_id, price, amount, filled in Order.objects.filter(
        bot__in=running, status=Order.Status.OPEN, side=Order.Side.BUY
    ).values_list("bot_id", "price", "amount", "filled"):
        on_book[bot_id] += price * (amount - filled)
    held = unplaced = ZERO
    for other in running:
        engine = other.engine()
        price = (
            market_services.latest_price(other.exchange, other.symbol)
            or other.last_price
            or engine.start_price
        )
        held += engine.quote + (engine.base + engine.dust) * price
        unplaced += max(engine.quote - on_book[other.pk], ZERO)
    committed = sum((b.capital for b in running + starting), ZERO)
    spare = free - unplaced
    bots = f"your {len(running) + len(starting)} other live bot(s) on these keys"
    if bot.capital > spare:
        raise LiveError(
            f"Your {bot.exchange} account has {figure(free)} {quote} free, and "
            f"{figure(unplaced)} {quote} of it is kept for the orders of {bots}: "
            f"{figure(spare)} {quote} is left, and this grid needs {figure(bot.capital)} "
            f"{quote}. Lower the capital or stop another bot."
        )
    pool, need = spare + held, committed + bot.capital
    if need > pool:
        raise LiveError(
            f"{bots[0].upper()}{bots[1:]} have {figure(committed)} {quote} of capital and hold "
            f"{figure(held)} {quote} now ({quote} and coins at the price now); with "
            f"{figure(spare)} {quote} free beside them the account has {figure(pool)} {quote}, "
            f"and this grid's {figure(bot.capital)} {quote} would commit {figure(need)} "
            f"{quote}: {figure(need - pool)} {quote} too much. Lower the capital or stop "
            "another bot."
        )


def figure(value: Decimal) -> str:
    """An exact amount for a person: thousands separated, no padding, never exponent form."""
    return f"{canonical(value):,f}"


def refresh_rules(bot: Bot, gw: Any) -> Any:
    """The market's rules as the exchange states them now (saved for the config checks)."""
    try:
        return market_services.load_market_rules(bot.exchange, bot.symbol, client=gw.client)
    except market_services.MarketDataError as e:
        raise LiveError(f"{bot.exchange} did not give {bot.symbol}'s rules: {e}") from None


def check_exchange_rules(bot: Bot, engine: GridEngine, rules: Any, price: Decimal) -> None:
    """Refuse a start the exchange would refuse order by order, with a sentence naming the
    line and the rule: the symbol not trading, LOT_SIZE's and NOTIONAL's maximums,
    PERCENT_PRICE_BY_SIDE around the price now, and MAX_NUM_ORDERS across the account's
    running bots on the pair."""
    where = f"{bot.exchange}'s {bot.symbol}"
    if rules.status and rules.status != "TRADING":
        raise LiveError(f"{where} is not trading now (status {rules.status}): start it later.")
    for d in engine.desired_orders():
        line = f"The {d.side} at {d.price}"
        if rules.max_amount and d.amount > rules.max_amount:
            most = rules.max_amount.normalize()
            raise LiveError(f"{line}: {d.amount} {bot.base_asset} is above {where} LOT_SIZE "
                            f"maximum of {most:f}; use more lines.")  # fmt: skip
        if rules.max_notional and d.amount * d.price > rules.max_notional:
            raise LiveError(f"{line} is worth more than {where} NOTIONAL maximum of "
                            f"{rules.max_notional.normalize():f}; use more lines.")  # fmt: skip
        low, high = (rules.bid_down, rules.bid_up) if d.side == Side.BUY else (
            rules.ask_down, rules.ask_up)  # fmt: skip
        if low and high and not low * price <= d.price <= high * price:
            bound = "below" if d.price < low * price else "above"
            share = low if bound == "below" else high
            raise LiveError(
                f"{line} is {bound} {share.normalize():f} times the price now ({price}): "
                f"{where} PERCENT_PRICE_BY_SIDE refuses it; bring the range closer to the price."
            )
    if rules.max_orders:
        others = Bot.objects.running().filter(credential_id=bot.credential_id, symbol=bot.symbol)
        resting = sum(
            len((state or {}).get("slots", []))
            for state in others.exclude(pk=bot.pk).values_list("engine_state", flat=True)
        )
        if resting + len(engine.slots) > rules.max_orders:
            raise LiveError(
                f"This grid's {len(engine.slots)} orders and the {resting} of your other bots "
                f"on {bot.symbol} with these keys are more than {where} limit of "
                f"{rules.max_orders} open orders (MAX_NUM_ORDERS); use fewer lines."
            )


def account_fee(bot: Bot, gw: Any, grid: GridConfig) -> GridConfig:
    """The grid under the account's own maker commission rate (Binance ``commissionRates``),
    so round-trip profit and the preview's fee are what this account really pays."""
    try:
        rates = gw.commission_rates()
    except ExchangeError as e:
        raise LiveError(f"{bot.exchange} did not answer: {e}") from None
    if rates is None or rates[0] == grid.fee:
        return grid
    return replace(grid, fee=rates[0])


def start_buy(bot: Bot, gw: Any, engine: GridEngine) -> list[tuple[ExchangeFill, Decimal]]:
    """Buy the start amount at market (idempotent by client id) and book what it really cost;
    returns its fills with what each fee cost in quote."""
    try:
        return live_trading.market_start_buy(bot, gw, engine, start_client_id(bot))
    except OrderRejected as e:  # nothing exists under the id (send_once forgot the send)
        raise LiveError(f"{bot.exchange} refused the start buy: {e}") from None
    except ExchangeError as e:
        raise LiveError(
            f"{bot.exchange} did not confirm the start buy ({e}). The start is finished as "
            f"soon as {bot.exchange} answers, within minutes, and never buys twice."
        ) from None


# --- going live: paper first, keys checked, the pair typed, one start per account at a time ---


@dataclass(frozen=True)
class LiveGate:
    """How far a user is from the paper-first gate: the practice bot (paper, or on testnet
    keys) closest to opening it, how long it has run and its round trips."""

    hours: int
    waived: bool = False
    bot: str = ""
    ran: timedelta = timedelta(0)
    round_trips: int = 0

    @property
    def open(self) -> bool:
        return self.waived or (self.ran >= timedelta(hours=self.hours) and self.round_trips > 0)

    @property
    def hours_left(self) -> int:
        left = timedelta(hours=self.hours) - self.ran
        return max(math.ceil(left.total_seconds() / 3600), 0)

    @property
    def missing(self) -> str:
        """What is still missing, in words ("" when open)."""
        if self.open:
            return ""
        left, trip = self.hours_left, "complete one round trip"
        if not self.bot:
            run = f"run a paper bot for {_hours(self.hours)} and " if self.hours else ""
            return f"{run}{trip}" if run else f"run a paper bot and {trip}"
        if left and not self.round_trips:
            return f"run a paper bot {left} more {'hour' if left == 1 else 'hours'} and {trip}"
        if left:
            return f"keep {self.bot} running {left} more {'hour' if left == 1 else 'hours'}"
        return f"{trip} with {self.bot} (it has run the {_hours(self.hours)})"


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def live_gate(owner_id: int, *, now: datetime | None = None) -> LiveGate:
    """The paper-first gate of a user (``LIVE_GATE_HOURS``): open once one of their paper bots
    (or live bots on testnet keys) has run that long, in wall-clock time summed over its runs
    (from each start to the stop after it, the run going on up to now), and completed a round
    trip; or when an operator lifted it (``LiveGateWaiver``)."""
    hours = settings.LIVE_GATE_HOURS
    if LiveGateWaiver.objects.filter(user_id=owner_id).exists():
        return LiveGate(hours, waived=True)
    practice = list(
        Bot.objects.filter(owner_id=owner_id)
        .filter(Q(mode=Bot.Mode.PAPER) | Q(credential__testnet=True))
        .only("pk", "name", "symbol", "status")
    )
    if not practice:
        return LiveGate(hours)
    ran = time_running(practice, now=now or timezone.now())
    trips = dict(
        Trade.objects.filter(bot__in=practice)
        .values("bot_id")
        .annotate(n=Count("id"))
        .values_list("bot_id", "n")
    )
    full = timedelta(hours=hours)
    # Closest first: the fewest hours left, then a round trip done, then the longest run.
    best = min(
        practice,
        key=lambda b: (max(full - ran[b.pk], timedelta(0)), not trips.get(b.pk), -ran[b.pk]),
    )
    return LiveGate(hours, bot=str(best), ran=ran[best.pk], round_trips=trips.get(best.pk, 0))


def time_running(bots: list[Bot], *, now: datetime) -> dict[int, timedelta]:
    """Wall-clock time each bot has run, from its events: every start to the stop (or error
    stop) after it, and a run going on up to ``now``. A start with no stop written after it
    before the next start counts nothing (it cannot be told how long it ran)."""
    ran: dict[int, timedelta] = defaultdict(timedelta)
    since: dict[int, datetime] = {}
    ends = (BotEvent.Kind.STOPPED, BotEvent.Kind.ERROR)
    rows = (
        BotEvent.objects.filter(bot__in=bots, kind__in=(BotEvent.Kind.STARTED, *ends))
        .order_by("bot_id", "id")
        .values_list("bot_id", "kind", "at")
    )
    for bot_id, kind, at in rows:
        if kind == BotEvent.Kind.STARTED:
            since[bot_id] = at
        elif bot_id in since:
            ran[bot_id] += at - since.pop(bot_id)
    for bot in bots:
        if bot.pk in since and bot.is_running:
            ran[bot.pk] += max(now - since[bot.pk], timedelta(0))
    return ran


def going_live_problem(bot: Bot) -> str:
    """Why this live bot cannot start now, before asking the exchange ("" when it may try):
    its owner is not past paper first (testnet keys need not be), or its keys were never
    verified. A sentence for its owner."""
    if bot.mode != Bot.Mode.LIVE or bot.credential is None:
        return ""
    credential = bot.credential
    if not getattr(credential, "testnet", False):
        gate = live_gate(bot.owner_id)
        if not gate.open:
            return (
                f"Paper first: {gate.missing} before you start a live bot with real money "
                "(a bot on testnet keys needs no wait)."
            )
    if credential.verified_at is None:
        return (
            f"The exchange keys “{credential.label}” were never verified, so no live bot "
            "starts with them: check them again under Exchange keys."
        )
    return ""


def check_going_live(bot: Bot) -> None:
    if problem := going_live_problem(bot):
        raise LiveError(problem)


def check_keys(bot: Bot) -> None:
    """Check the bot's keys with the exchange now (``accounts.key_check``: they work, and can
    trade but not withdraw); a pass is saved as their ``verified_at``."""
    credential = bot.credential
    assert credential is not None  # a live bot has keys (a database constraint)
    label = credential.label
    try:
        reason = key_check.verify_keys(credential)
    except key_check.KeysRefused as e:
        # A key found able to withdraw (KeysNotAllowed) is unverified from now on.
        credential.save(update_fields=["verified_at"])
        raise LiveError(
            f"The exchange keys “{label}” were refused: {e} Nothing was started."
            if str(e).endswith(".")
            else f"The exchange keys “{label}” were refused: {e}. Nothing was started."
        ) from None
    except crypto.UndecryptableSecret:
        raise LiveError(
            f"This server can no longer read the exchange keys “{label}”: enter them again "
            "under Exchange keys. Nothing was started."
        ) from None
    if reason:
        raise LiveError(
            f"The exchange keys “{label}” could not be checked now ({reason}); nothing was "
            "started. Try again in a minute."
        )
    # What the check writes on the row (the time it passed; what it advises, if it says).
    fields = {f.name for f in credential._meta.concrete_fields} & {"verified_at", "check_warning"}
    credential.save(update_fields=sorted(fields))


@dataclass(frozen=True)
class StartSummary:
    """What starting a live bot will do, at the price now and with the market's stored rules,
    for its owner to confirm (the start itself asks the exchange for the rules again)."""

    exchange: str
    testnet: bool
    account: str
    symbol: str
    base_asset: str
    quote_asset: str
    capital: Decimal
    price: Decimal
    buy_amount: Decimal  # to the market's step
    buy_quote: Decimal  # to its tick
    orders: int
    lines: int
    # A grid with a trigger price waits for it: the buy and the orders are those it makes there.
    trigger: Decimal | None = None
    trigger_way: str = ""  # "fall" or "rise": how the price must move to reach it

    @property
    def where(self) -> str:
        money = "testnet, play money" if self.testnet else "real money"
        return f"{self.exchange.capitalize()} ({money})"

    def text(self) -> list[str]:
        """The summary as lines of text (the command prints them)."""
        q, b = self.quote_asset, self.base_asset
        at = "the price" if self.trigger is None else "the trigger price"
        buy = (
            f"buys {figure(self.buy_amount)} {b} at market for about {figure(self.buy_quote)} {q}"
            if self.buy_amount
            else f"buys nothing at market ({at} is below the grid's sells)"
        )
        if self.trigger is not None:
            buy = (
                f"waits for the price to {self.trigger_way} to {figure(self.trigger)} {q} (the "
                f"trigger price), buying and placing nothing until then; there it {buy}"
            )
        return [
            f"Exchange: {self.where}, keys “{self.account}”",
            f"Pair: {self.symbol} at {figure(self.price)} {q} now",
            f"Capital: {figure(self.capital)} {q}",
            f"Start: {buy}",
            f"Grid: {self.orders} limit orders on {self.lines} price lines",
        ]


def start_summary(bot: Bot) -> StartSummary:
    """What a start of this bot would do now (no exchange is asked)."""
    price = market_services.latest_price(bot.exchange, bot.symbol)
    if price is None:
        candle = market_services.last_candle(bot.exchange, bot.symbol)
        if candle is None:
            raise BotError(f"There is no price for {bot.symbol} yet: the market feed has none.")
        price = candle[1]
    price = canonical(price)
    grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    try:
        waiting = GridEngine.start(grid, price)
        engine, at_price = laid_out(grid, waiting)  # a trigger's grid: as it starts there
    except InvalidGrid as e:
        raise schema.config_error(e) from None
    amount = floor_amount(engine.start_buy.amount, grid.step) if engine.start_buy else ZERO
    credential = bot.credential
    return StartSummary(
        exchange=bot.exchange,
        testnet=bool(getattr(credential, "testnet", False)),
        account=credential.label if credential else "",
        symbol=bot.symbol,
        base_asset=bot.base_asset,
        quote_asset=bot.quote_asset,
        capital=bot.capital,
        price=price,
        buy_amount=canonical(amount),
        buy_quote=canonical(round_price(amount * at_price, grid.tick)),
        orders=len(engine.desired_orders()),
        lines=len(engine.lines),
        trigger=waiting.start_price if waiting.waiting else None,
        trigger_way={"below": "fall", "above": "rise"}.get(waiting.wait_side or "", ""),
    )


class ConfirmationNeeded(BotError):
    """A live start asked for without the pair typed (or typed wrong): ``summary`` says what
    the start would do, ``problem`` what was wrong with what was typed ("" when nothing was)."""

    def __init__(self, summary: StartSummary, problem: str = "") -> None:
        super().__init__(problem or f"Type {summary.symbol} to confirm the live start.")
        self.summary = summary
        self.problem = problem


def same_pair(typed: str, symbol: str) -> bool:
    """Whether ``typed`` names ``symbol`` (any case; with or without the slash)."""
    return re.sub(r"[\s/_-]", "", typed).upper() == symbol.replace("/", "").upper()


def check_confirmation(bot: Bot, typed: str | None) -> None:
    """A live start a person asks for needs the pair typed: ``ConfirmationNeeded`` with the
    summary when nothing (None) or something else was typed. Paper bots need none."""
    if bot.mode != Bot.Mode.LIVE or (typed is not None and same_pair(typed, bot.symbol)):
        return
    problem = ""
    if typed is not None:
        shown = typed.strip()[:30]
        problem = (
            f"You typed “{shown}”, not {bot.symbol}: nothing was started."
            if shown
            else f"Type {bot.symbol} to start it: nothing was started."
        )
    raise ConfirmationNeeded(start_summary(bot), problem)


# PostgreSQL advisory locks are keyed by two numbers: this one says "an exchange account".
ACCOUNT_LOCKS = 0x61696201
_account_locks: dict[int, threading.Lock] = {}
_account_locks_guard = threading.Lock()
BUSY_ACCOUNT = "Another start on these exchange keys is in progress; try again in a moment."


@contextmanager
def account_lock(credential_id: int | None, *, wait: float = 30.0) -> Iterator[None]:
    """One live start at a time on an exchange account (its keys), so the funds check and the
    start it allows are never split by another start. PostgreSQL: a session advisory lock,
    let go by the database if the process dies; SQLite (one process by design): a lock in
    this process. ``BotError`` after ``wait`` seconds."""
    if credential_id is None:
        yield
        return
    if connection.vendor != "postgresql":
        with _account_locks_guard:
            lock = _account_locks.setdefault(credential_id, threading.Lock())
        if not lock.acquire(timeout=wait):
            raise BotError(BUSY_ACCOUNT)
        try:
            yield
        finally:
            lock.release()
        return
    key = (ACCOUNT_LOCKS, credential_id % 2**31)
    deadline = time.monotonic() + wait
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            if cursor.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise BotError(BUSY_ACCOUNT)
            time.sleep(0.05)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
