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
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bots import config as schema
from bots import ledger, live_trading
from bots.errors import BotError
from bots.grid import order_ids
from bots.grid.engine import GridEngine
from bots.grid.params import InvalidGrid
from bots.locks import bot_lock
from bots.models import Bot, BotEvent, EquitySnapshot, Order
from market import services as market_services
from market.precision import canonical

logger = logging.getLogger(__name__)


def start(bot: Bot) -> str:
    """Start the bot (changing nothing when it cannot); returns its new chain token. A live
    bot starts under its cycle lock (never beside a cycle or another start), and its grid is
    sent by its first cycle."""
    if bot.mode != Bot.Mode.LIVE:
        return _start(bot)
    if settings.MARKET_FEED != "live":
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
        if not live_trading.start_pending(bot):
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
        rules = live_trading.refresh_rules(bot, gw)
    grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    if live_mode:  # the account's own commission rate is the grid's fee
        grid = live_trading.account_fee(bot, gw, grid)
    try:
        engine = GridEngine.start(grid, p0)
    except InvalidGrid as e:
        raise schema.config_error(e) from None
    if live_mode:  # every order within the exchange's rules, then funds, then the start buy
        live_trading.check_exchange_rules(bot, engine, rules, p0)
        if not live_trading.start_pending(bot):  # after a first try, the buy spent them
            live_trading.check_funds(bot, gw)
        start_fills = live_trading.start_buy(bot, gw, engine)

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
            live_trading.record_start(bot, orders[0], start_fills)
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
