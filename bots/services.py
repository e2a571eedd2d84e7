"""Bots: the verbs. Create, reconfigure, start, stop and emergency-stop bots.

The grid engine decides; ``bots.config`` says what a valid config is; ``ledger`` writes the
rows; ``live_trading`` talks to the exchange; ``cycle`` runs a bot once started. Every verb
either does all of its work or raises ``BotError`` (in words for the owner) having changed
nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bots import config as schema
from bots import ledger, live_trading, push
from bots.errors import BotError, LiveError
from bots.grid import order_ids
from bots.grid.engine import GridEngine
from bots.grid.params import InvalidGrid
from bots.locks import bot_lock
from bots.models import Bot, BotEvent, EquitySnapshot, Order
from market import services as market_services
from market.exchange import ExchangeError
from market.precision import canonical

logger = logging.getLogger(__name__)


def create_bot(
    owner: Any,
    *,
    symbol: str,
    config: dict[str, Any],
    name: str = "",
    mode: str = Bot.Mode.PAPER,
    exchange: str = "binance",
    credential: Any = None,
) -> Bot:
    check_credential(owner, mode, exchange, credential)
    config = schema.normalise(config)
    schema.validate(config, exchange=exchange, symbol=symbol)
    return Bot.objects.create(
        owner=owner, name=name, symbol=symbol, exchange=exchange, mode=mode, config=config,
        credential=credential if mode == Bot.Mode.LIVE else None,
    )  # fmt: skip


def check_credential(owner: Any, mode: str, exchange: str, credential: Any) -> None:
    """A live bot needs its owner's keys for its exchange; a paper bot needs none."""
    if mode != Bot.Mode.LIVE:
        return
    if credential is None:
        raise BotError("A live bot trades with your exchange keys: add them under Exchange keys.")
    if credential.owner_id != owner.pk:
        raise BotError("Those exchange keys are not yours.")
    if credential.exchange != exchange:
        raise BotError(f"Those keys are for {credential.exchange}, not {exchange}.")


def update_bot_config(bot: Bot, config: dict[str, Any]) -> None:
    if bot.is_running:
        raise BotError("Stop the bot before changing its grid.")
    config = schema.normalise(config)
    schema.validate(config, exchange=bot.exchange, symbol=bot.symbol)
    bot.config = config
    bot.save(update_fields=["config", "updated_at"])


def start_bot(bot: Bot) -> None:
    """Validate against the market and the paper balance, buy the start, rest the grid.

    A live bot starts under its cycle lock (never beside a cycle or another start), and its
    grid is sent by the first cycle, which runs as soon as the start is committed.
    """
    if bot.mode == Bot.Mode.LIVE:
        if settings.MARKET_FEED != "live":
            raise BotError(
                "Live bots trade on live prices: set MARKET_FEED=live (the market feed is "
                "replaying recorded candles now)."
            )
        with bot_lock(bot.pk):
            token = _start(Bot.objects.select_related("credential").get(pk=bot.pk))
    else:
        token = _start(bot)
    transaction.on_commit(lambda: _after_start(bot.pk, token))


def _start(bot: Bot) -> str:
    if bot.is_running:
        raise BotError(f"{bot} is already running.")
    candle = market_services.last_candle(bot.exchange, bot.symbol)
    if candle is None:
        raise BotError(
            f"There is no price for {bot.symbol} yet: the market feed has not delivered one."
        )
    at, p0 = candle[0], canonical(candle[1])  # the column pads to 12 places
    grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    live_mode = bot.mode == Bot.Mode.LIVE
    if live_mode:  # the account's own commission rate is the grid's fee
        gw = live_trading.gateway(bot)
        grid = live_trading.account_fee(bot, gw, grid)
    try:
        engine = GridEngine.start(grid, p0)
    except InvalidGrid as e:
        raise schema.config_error(e) from None
    if live_mode:  # the exchange first: funds, then the start buy (idempotent on retries)
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
            bot=bot, at=at, defaults={"price": p0, "quote": engine.quote, "base": engine.base,
                                      "equity": bot.last_equity},
        )  # fmt: skip
    return bot.chain_token


def _after_start(bot_id: int, token: str) -> None:
    from bots.tasks import bot_cycle_task  # the tasks call back into the cycle, not here

    push.publish_bot(bot_id)
    if Bot.objects.filter(pk=bot_id, mode=Bot.Mode.LIVE).exists():
        bot_cycle_task(bot_id, token)  # the first link now: it sends the grid
    else:
        bot_cycle_task.schedule((bot_id, token), delay=settings.BOT_CYCLE_SECONDS)


def stop_bot(bot: Bot, *, reason: str = "stopped by you", status: str = Bot.Status.STOPPED) -> None:
    """Cancel every resting order; a paper bot's holdings go back to the paper wallet, a live
    bot's stay in the exchange account."""
    if bot.mode == Bot.Mode.LIVE:
        # Written down first: whatever happens next, every later cycle finishes this stop.
        if bot.is_running:
            ledger.note_stopping(bot, reason=reason, sells=False)
        try:
            with bot_lock(bot.pk):
                bot = Bot.objects.select_related("credential").get(pk=bot.pk)
                if not bot.is_running:
                    return
                live_trading.halt(bot, live_trading.gateway(bot), reason=reason, status=status)
        except (LiveError, ExchangeError) as e:
            raise BotError(
                f"{bot} is stopping: its orders could not be cancelled on {bot.exchange} yet "
                f"({e}). Every cycle tries again until none is left; you can also cancel "
                "them on the exchange."
            ) from None
        except BotError:  # busy with its exchange: the cycle that holds it finishes the stop
            raise BotError(
                f"{bot} is stopping: it is busy with {bot.exchange} right now, and its next "
                "cycle finishes the stop."
            ) from None
        return
    ledger.halt(bot, reason=reason, status=status)


def emergency_stop(user: Any, *, reason: str = "emergency stop") -> int:
    """Stop all of a user's bots and cancel all their orders. Returns how many stopped; a live
    bot whose exchange cannot be reached is reported after all the others are stopped."""
    stopped, failed = 0, []
    # One bot at a time, by id: a row that cannot be read must not keep the others running.
    for bot_id in Bot.objects.owned_by(user).running().values_list("pk", flat=True):
        try:
            stop_bot(Bot.objects.select_related("credential").get(pk=bot_id), reason=reason)
            stopped += 1
        except BotError as e:
            failed.append(str(e))
        except Exception:  # one bot's surprise must not keep the others running
            logger.exception("emergency stop: bot %s", bot_id)
            if ledger.force_halt(bot_id, reason=reason):
                failed.append(
                    f"Bot {bot_id} was halted, but its stored state could not be read: check "
                    "its balances (an unexpected error, logged)."
                )
    if failed:
        raise BotError(f"Stopped {stopped}; not stopped: " + " ".join(failed))
    return stopped


def running_bot_ids(symbol: str | None = None) -> Iterable[int]:
    qs = Bot.objects.running()
    if symbol:
        qs = qs.filter(symbol=symbol)
    return qs.values_list("pk", flat=True)
