"""Starting a bot: check the grid against the market (and the paper balance), buy the start
(live: at market, idempotent by client id), write the running grid.

A live start sends its buy before it writes anything else, so the buy is written down first
(``ledger.send_attempt``): a start whose buy went out but that did not finish (the exchange did
not confirm it in time, or the worker died) is finished by ``finish_unfinished``, run by a
periodic task, and never buys twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from bots import config as schema
from bots import ledger, live_trading
from bots.errors import BotError, LiveError
from bots.gateways.base import ExchangeFill
from bots.grid import order_ids
from bots.grid.engine import GridEngine, MarketTrade, Side
from bots.grid.params import GridConfig, InvalidGrid
from bots.locks import bot_lock
from bots.models import Bot, BotEvent, EquitySnapshot, ExchangeFillRecord, Order
from market import services as market_services
from market.exchange import ExchangeError, OrderRejected
from market.precision import canonical

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
    with bot_lock(bot.pk):
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
    candle = market_services.last_candle(bot.exchange, bot.symbol)
    if candle is None:
        raise BotError(
            f"There is no price for {bot.symbol} yet: the market feed has not delivered one."
        )
    at, p0 = candle[0], canonical(candle[1])  # the column pads to 12 places
    live_mode = bot.mode == Bot.Mode.LIVE
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
        check_exchange_rules(bot, engine, rules, p0)
        if not start_pending(bot):  # after a first try, the buy spent them
            check_funds(bot, gw)
        start_fills = start_buy(bot, gw, engine)

    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if bot.is_running:
            raise BotError(f"{bot} is already running.")
        capital = bot.capital
        if not live_mode:
            wallet = ledger.paper_balance(bot.owner, bot.quote_asset, for_update=True)
            if wallet.free < capital:
                raise BotError(
                    f"Your paper balance is {wallet.free:,.2f} {bot.quote_asset}; this grid "
                    f"needs {capital:,.2f} {bot.quote_asset}. Lower the capital or stop "
                    "another bot."
                )
            wallet.free -= capital
            wallet.locked += capital
            wallet.save(update_fields=["free", "locked"])

        bot.generation += 1
        bot.order_key = ledger.run_key(bot, bot.generation)
        bot.status, bot.status_reason = Bot.Status.RUNNING, ""
        bot.start_price, bot.cursor, bot.last_price = p0, at, p0
        bot.peak_equity, bot.max_drawdown = capital, Decimal(0)
        bot.day, bot.day_open_equity = at.date(), capital
        bot.started_at, bot.stopped_at, bot.market_started_at = timezone.now(), None, at
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
        if live_mode and engine.start_buy:
            record_start(bot, orders[0], start_fills)
        n_buys = sum(1 for d in desired if d.side == "buy")
        cfg = engine.config
        events = [
            ledger.event(
                bot,
                BotEvent.Kind.STARTED,
                f"Started at {p0} with {len(engine.lines)} lines from {cfg.lower} to "
                f"{cfg.upper}: {n_buys} buys below and {len(engine.slots) - n_buys} sells "
                f"above, {engine.q} {bot.base_asset} each"
                + (
                    f"; bought {engine.start_buy.amount} {bot.base_asset} at {p0} for the sells"
                    if engine.start_buy
                    else ""
                )
                + ".",
                at,
            )
        ]
        BotEvent.objects.bulk_create(events)
        # A restart in the market minute of the last cycle replaces that minute's snapshot.
        EquitySnapshot.objects.update_or_create(
            bot=bot, at=at, defaults={"price": p0, "quote": engine.quote,
                                      "base": engine.base + engine.dust,
                                      "equity": bot.last_equity},
        )  # fmt: skip
    return bot.chain_token


# --- a live start on the exchange ---------------------------------------------------------------


def start_client_id(bot: Bot) -> str:
    """The start buy's client id for the generation about to start (stable across retries)."""
    return order_ids.market_order_id(ledger.run_key(bot, bot.generation + 1), order_ids.START)


def start_pending(bot: Bot) -> bool:
    """Whether a start of this bot sent its buy and did not finish (the exchange did not
    confirm it in time, or the worker died): ``starting.finish_unfinished`` finishes it."""
    return ledger.sent_before(start_client_id(bot)) is not None


def check_funds(bot: Bot, gw: Any) -> None:
    try:
        balances = gw.balances()
    except ExchangeError as e:
        raise LiveError(f"{bot.exchange} did not answer: {e}") from None
    free = balances.get(bot.quote_asset)
    have = free.free if free else ZERO
    if have < bot.capital:
        raise LiveError(
            f"Your {bot.exchange} account has {have:,.2f} {bot.quote_asset} free; this grid "
            f"needs {bot.capital:,.2f} {bot.quote_asset}."
        )


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
    planned = engine.start_buy
    client_id = start_client_id(bot)
    earlier = ledger.sent_before(client_id)
    if planned is None and earlier is None:
        return []
    try:
        if planned is None:  # no buy wanted now, but an earlier try sent one: take it in
            fills = gw.market_fills(client_id, sent_before=earlier)
        else:
            fills = live_trading.send_once(
                client_id,
                lambda before: gw.market_buy(client_id, planned.amount, sent_before=before),
            )
    except OrderRejected as e:  # nothing exists under the id (send_once forgot the send)
        raise LiveError(f"{bot.exchange} refused the start buy: {e}") from None
    except ExchangeError as e:
        raise LiveError(
            f"{bot.exchange} did not confirm the start buy ({e}). The start is finished as "
            f"soon as {bot.exchange} answers, within minutes, and never buys twice."
        ) from None
    values = live_trading.FeeValues(bot, gw)
    amount, cost, fee = live_trading.fill_totals(fills, values)
    if not amount and planned is None:
        ledger.forget_attempt(client_id)  # the earlier buy never executed
        return []
    if not amount:
        raise LiveError(f"{bot.exchange} filled nothing of the start buy; nothing was started.")
    average = cost / amount
    # A start tried again at another price plans another amount, but the buy that went out
    # the first time is the one that counts: what it bought beyond (or short of) the plan is
    # the grid's dust, so the books are the account's.
    engine.dust += amount - (planned.amount if planned else ZERO)
    engine.start_buy = MarketTrade(Side.BUY, average, amount, fee)
    engine.quote = engine.config.capital - cost - fee
    engine.fees_paid = fee
    engine.start_price = average
    base_fee = values.base_fee(fills)
    if base_fee:  # taken from the coins bought: the start slots hold that much less
        engine.take_base_fee(base_fee, base_fee * average)
    for slot in engine.slots:
        if slot.acquired is not None:
            slot.acquired = average  # what the start slots' base really cost
    return [(f, values(f)) for f in fills]


def record_start(bot: Bot, order: Order, fills: list[tuple[ExchangeFill, Decimal]]) -> None:
    """Inside start's transaction: the start buy's trades, so later fetches skip them."""
    ExchangeFillRecord.objects.bulk_create(
        [live_trading.fill_record(bot, order, f, fee) for f, fee in fills], ignore_conflicts=True
    )
    if fills:
        bot.fill_cursor_ms = max(f.at_ms for f, _fee in fills)
        bot.fill_cursor_trade = live_trading.next_trade_id(
            [f for f, _fee in fills], bot.fill_cursor_trade
        )
        bot.save(update_fields=["fill_cursor_ms", "fill_cursor_trade"])
