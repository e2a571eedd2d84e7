"""Bots: create, start, stop, the per-bot cycle, risk rules and statistics.

The grid engine decides; these functions persist its decisions. A paper bot's exchange is the
engine's own matching over the market feed's candles — exactly the backtest's — so a paper run
predicts a live one, and all of a paper cycle commits in one transaction: a crash anywhere in
it leaves the previous state whole and the next cycle redoes the same work, deterministically.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bots import live, live_trading
from bots.grid import order_ids
from bots.grid.backtest import Candles, GridRun
from bots.grid.engine import (
    STOP_LOSS,
    TAKE_PROFIT,
    GridConfig,
    GridEngine,
    InvalidGrid,
    MarketTrade,
    RoundTrip,
    Side,
)
from bots.grid.order_ids import client_order_id
from bots.models import Bot, BotEvent, EquitySnapshot, Order, PaperBalance, Trade
from market import services as market_services
from market.exchange import ExchangeError
from market.models import Candle, LatestPrice, MarketRules
from market.precision import canonical

logger = logging.getLogger(__name__)

# A cycle walks at most this many new candles; a bot that fell further behind catches up over
# the next cycles (each of which is scheduled at once while it is behind).
CYCLE_BATCH = 2_000
TIMEFRAME = "1m"
ZERO = Decimal(0)


class BotError(Exception):
    """Why an action on a bot cannot be done, in words for its owner; nothing was changed."""


# --- configuration ------------------------------------------------------------------------------


def rules_for(exchange: str, symbol: str) -> MarketRules:
    try:
        return market_services.load_market_rules(exchange, symbol)
    except Exception as e:  # an unknown symbol, or no network and no snapshot
        raise BotError(f"No market rules for {symbol} on {exchange}: {e}") from e


def grid_config_for(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """The engine's GridConfig for a bot config under the market's rules; InvalidGrid if not."""
    rules = rules_for(exchange, symbol)
    base, quote = symbol.split("/")
    take_profit = config.get("take_profit")
    max_daily_loss = Decimal(str(config.get("max_daily_loss") or "0"))
    if max_daily_loss < 0:
        raise InvalidGrid("the daily loss limit cannot be negative (0 disables it)")
    try:
        return GridConfig(
            lower=Decimal(str(config["lower_bound"])),
            upper=Decimal(str(config["upper_bound"])),
            levels=int(config["grid_levels"]),
            spacing=config.get("spacing") or "arithmetic",
            capital=Decimal(str(config["capital"])),
            fee=canonical(rules.fee),
            tick=canonical(rules.tick),
            step=canonical(rules.step),
            min_notional=canonical(rules.min_notional),
            stop_loss_pct=Decimal(str(config.get("stop_loss_pct") or "0")),
            take_profit=Decimal(str(take_profit)) if take_profit not in (None, "") else None,
            min_levels=settings.GRID_MIN_LEVELS,
            max_levels=settings.GRID_MAX_LEVELS,
            base_asset=base,
            quote_asset=quote,
        )
    except KeyError as e:
        raise InvalidGrid(f"the config is missing {e.args[0]}") from None
    except (ArithmeticError, ValueError, TypeError) as e:
        if isinstance(e, InvalidGrid):
            raise
        raise InvalidGrid(f"not a number: {e}") from None


def validate_config(config: dict[str, Any], *, exchange: str, symbol: str) -> GridConfig:
    """grid_config_for, plus the capital check at the current price when there is one."""
    grid = grid_config_for(config, exchange=exchange, symbol=symbol)
    candle = last_candle(exchange, symbol)
    if candle is not None:
        grid.order_amount(candle[1])  # raises InvalidGrid saying how much capital it needs
    return grid


def normalise_config(config: dict[str, Any]) -> dict[str, str]:
    """A bot config as stored: every value a string (Decimals exact), empty take-profit ''."""
    keys = (
        "capital", "lower_bound", "upper_bound", "grid_levels", "spacing",
        "stop_loss_pct", "max_daily_loss", "take_profit",
    )  # fmt: skip
    out = {k: "" if config.get(k) is None else str(config.get(k)) for k in keys}
    out["spacing"] = out["spacing"] or "arithmetic"
    out["stop_loss_pct"] = out["stop_loss_pct"] or "0"
    out["max_daily_loss"] = out["max_daily_loss"] or "0"
    return out


def latest_price(exchange: str, symbol: str) -> Decimal | None:
    row = LatestPrice.objects.filter(exchange=exchange, symbol=symbol).only("price").first()
    return row.price if row else None


# A live bot's risk rules act only on a price at most this old.
FRESH_PRICE = timedelta(minutes=3)


def latest_mark(bot: Bot) -> Decimal | None:
    """The price to mark a live bot at: the feed's latest price if it is fresh, else None."""
    row = LatestPrice.objects.filter(exchange=bot.exchange, symbol=bot.symbol).first()
    if row is None or timezone.now() - row.at > FRESH_PRICE:
        return None
    return canonical(row.price)


def last_candle(exchange: str, symbol: str) -> tuple[datetime, Decimal] | None:
    row = (
        Candle.objects.filter(exchange=exchange, symbol=symbol, timeframe=TIMEFRAME)
        .order_by("-open_time")
        .values_list("open_time", "close")
        .first()
    )
    return (row[0], row[1]) if row else None


# --- lifecycle ----------------------------------------------------------------------------------


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
    config = normalise_config(config)
    try:
        validate_config(config, exchange=exchange, symbol=symbol)
    except InvalidGrid as e:
        raise BotError(str(e)) from None
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
    config = normalise_config(config)
    try:
        validate_config(config, exchange=bot.exchange, symbol=bot.symbol)
    except InvalidGrid as e:
        raise BotError(str(e)) from None
    bot.config = config
    bot.save(update_fields=["config", "updated_at"])


def paper_balance(owner: Any, asset: str, *, for_update: bool = False) -> PaperBalance:
    """The user's paper balance in `asset`; a new user's quote wallet starts funded."""
    initial = settings.PAPER_STARTING_BALANCE if asset in {"USDT", "USDC", "USD"} else ZERO
    qs = PaperBalance.objects.select_for_update() if for_update else PaperBalance.objects
    balance, _ = qs.get_or_create(owner=owner, asset=asset, defaults={"free": initial})
    return balance


def start_bot(bot: Bot) -> None:
    """Validate against the market and the paper balance, buy the start, rest the grid.

    A live bot starts under its cycle lock (never beside a cycle or another start), and its
    grid is sent by the first cycle, which runs as soon as the start is committed.
    """
    if bot.mode == Bot.Mode.LIVE:
        from bots.tasks import bot_lock

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
    candle = last_candle(bot.exchange, bot.symbol)
    if candle is None:
        raise BotError(
            f"There is no price for {bot.symbol} yet: the market feed has not delivered one."
        )
    at, p0 = candle[0], canonical(candle[1])  # the column pads to 12 places
    try:
        engine = GridEngine.start(
            grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol), p0
        )
    except InvalidGrid as e:
        raise BotError(str(e)) from None
    live_mode = bot.mode == Bot.Mode.LIVE
    if live_mode:  # the exchange first: funds, then the start buy (idempotent on retries)
        try:
            gw = live_trading.gateway(bot)
            live_trading.check_funds(bot, gw)
            start_fills = live_trading.start_buy(bot, gw, engine)
        except live_trading.LiveError as e:
            raise BotError(str(e)) from None

    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if bot.is_running:
            raise BotError(f"{bot} is already running.")
        capital = bot.capital
        if not live_mode:
            wallet = paper_balance(bot.owner, bot.quote_asset, for_update=True)
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
        bot.status, bot.status_reason = Bot.Status.RUNNING, ""
        bot.start_price, bot.cursor, bot.last_price = p0, at, p0
        bot.peak_equity, bot.max_drawdown = capital, ZERO
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
            orders.append(_market_order(bot, engine.start_buy, order_ids.START, at))
        desired = engine.desired_orders(bot.key)
        if not live_mode:  # a live grid is written and sent after the commit (reconcile)
            orders += [_open_order(bot, d) for d in desired]
        Order.objects.bulk_create(orders)
        if live_mode and engine.start_buy:
            live_trading.record_start(bot, orders[0], start_fills)
        n_buys = sum(1 for d in desired if d.side == "buy")
        cfg = engine.config
        events = [
            _event(
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
    from bots.tasks import bot_cycle_task

    live.publish_bot(bot_id)
    if Bot.objects.filter(pk=bot_id, mode=Bot.Mode.LIVE).exists():
        bot_cycle_task(bot_id, token)  # the first link now: it sends the grid
    else:
        bot_cycle_task.schedule((bot_id, token), delay=settings.BOT_CYCLE_SECONDS)


def stop_bot(bot: Bot, *, reason: str = "stopped by you", status: str = Bot.Status.STOPPED) -> None:
    """Cancel every resting order; a paper bot's holdings go back to the paper wallet, a live
    bot's stay in the exchange account."""
    if bot.mode == Bot.Mode.LIVE:
        from bots.tasks import bot_lock

        try:
            with bot_lock(bot.pk):
                bot = Bot.objects.select_related("credential").get(pk=bot.pk)
                if not bot.is_running:
                    return
                live_trading.halt(bot, live_trading.gateway(bot), reason=reason, status=status)
        except (live_trading.LiveError, ExchangeError) as e:
            raise BotError(
                f"{bot} is still running: its orders could not be cancelled on "
                f"{bot.exchange} ({e}). Try again, or cancel them on the exchange."
            ) from None
        return
    halt_in_db(bot, reason=reason, status=status)


def halt_in_db(bot: Bot, *, reason: str, status: str = Bot.Status.STOPPED) -> None:
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if not bot.is_running:
            return
        _halt(bot, reason=reason, status=status, at=bot.cursor)
        bot.save()
    transaction.on_commit(lambda: live.publish_bot(bot.pk))


def emergency_stop(user: Any, *, reason: str = "emergency stop") -> int:
    """Stop all of a user's bots and cancel all their orders. Returns how many stopped; a live
    bot whose exchange cannot be reached is reported after all the others are stopped."""
    stopped, failed = 0, []
    for bot in Bot.objects.owned_by(user).running().select_related("credential"):
        try:
            stop_bot(bot, reason=reason)
            stopped += 1
        except BotError as e:
            failed.append(str(e))
        except Exception:  # one bot's surprise must not keep the others running
            logger.exception("emergency stop: bot %s", bot.pk)
            failed.append(f"{bot} could not be stopped (an unexpected error, logged).")
    if failed:
        raise BotError(f"Stopped {stopped}; not stopped: " + " ".join(failed))
    return stopped


def _halt(bot: Bot, *, reason: str, status: str, at: datetime | None) -> None:
    """Inside a transaction holding the bot: cancel its book, release its capital, stop it."""
    cancelled = Order.objects.filter(bot=bot, status__in=Order.RESTING).update(
        status=Order.Status.CANCELLED, reason=reason[:300], updated_at=timezone.now()
    )
    if bot.mode == Bot.Mode.PAPER and bot.engine_state:
        engine = bot.engine()
        quote_wallet = paper_balance(bot.owner, bot.quote_asset, for_update=True)
        quote_wallet.locked = max(quote_wallet.locked - bot.capital, ZERO)
        quote_wallet.free += engine.quote
        quote_wallet.save(update_fields=["free", "locked"])
        if engine.base:
            base_wallet = paper_balance(bot.owner, bot.base_asset, for_update=True)
            base_wallet.free += engine.base
            base_wallet.save(update_fields=["free"])
    bot.status, bot.status_reason = status, reason[:300]
    bot.stopped_at = timezone.now()
    bot.next_buy_price = bot.next_sell_price = None
    bot.chain_token = ""
    BotEvent.objects.create(
        bot=bot,
        kind=BotEvent.Kind.STOPPED if status == Bot.Status.STOPPED else BotEvent.Kind.ERROR,
        message=f"Stopped: {reason}. Cancelled {cancelled} resting order(s).",
        market_time=at,
    )


# --- the cycle ----------------------------------------------------------------------------------


@dataclass
class CycleResult:
    candles: int = 0
    fills: int = 0
    round_trips: int = 0
    behind: bool = False  # more candles wait: run again at once
    running: bool = True
    chain_token: str = ""


def run_cycle(bot_id: int) -> CycleResult:
    """One level-triggered pass for a paper bot: walk the new candles, persist what happened.

    An idle cycle (no new candle) costs one query: the bot, with whether a candle is new.
    """
    row = _probe(bot_id)
    if row is None or row[0] != Bot.Status.RUNNING:
        return CycleResult(running=False)
    if row[3] == Bot.Mode.LIVE:
        return _live_cycle(bot_id, row[1])
    if not row[2]:
        return CycleResult(chain_token=row[1])
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot_id)
        if not bot.is_running:
            return CycleResult(running=False)
        candles = _new_candles(bot)
        if not candles:
            return CycleResult(chain_token=bot.chain_token)
        result = _walk(bot, candles)
        result.chain_token = bot.chain_token
    transaction.on_commit(lambda: live.publish_bot(bot_id, changes=_changes(result)))
    return result


def _probe(bot_id: int) -> tuple[str, str, bool, str] | None:
    """(status, chain_token, has a new candle, mode) in one query.

    The query is written out because idle cycles are most cycles: building it through the ORM
    (an annotated Exists subquery) cost more than running it.
    """
    q = connection.ops.quote_name
    sql = (
        f"SELECT b.{q('status')}, b.{q('chain_token')}, EXISTS (SELECT 1 FROM "
        f"{q(Candle._meta.db_table)} c WHERE c.{q('exchange')} = b.{q('exchange')} AND "
        f"c.{q('symbol')} = b.{q('symbol')} AND c.{q('timeframe')} = %s AND "
        f"c.{q('open_time')} > b.{q('cursor')}), b.{q('mode')} "
        f"FROM {q(Bot._meta.db_table)} b WHERE b.{q('id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [TIMEFRAME, bot_id])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1], bool(row[2]), row[3])


def _live_cycle(bot_id: int, token: str) -> CycleResult:
    cycle = live_trading.run_cycle(bot_id)
    if cycle is None:
        return CycleResult(running=False)
    running = Bot.objects.filter(pk=bot_id, status=Bot.Status.RUNNING).exists()
    result = CycleResult(fills=cycle.fills, round_trips=cycle.round_trips, running=running,
                         chain_token=token)  # fmt: skip
    if cycle.fills or cycle.placed or not running:
        transaction.on_commit(lambda: live.publish_bot(bot_id, changes=_changes(result)))
    return result


def _new_candles(bot: Bot) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]:
    qs = Candle.objects.filter(exchange=bot.exchange, symbol=bot.symbol, timeframe=TIMEFRAME)
    if bot.cursor is not None:
        qs = qs.filter(open_time__gt=bot.cursor)
    return list(
        qs.order_by("open_time").values_list("open_time", "open", "high", "low", "close")[
            : CYCLE_BATCH + 1
        ]
    )


def _changes(result: CycleResult) -> list[str]:
    changes = ["stats"]
    if result.fills:
        changes += ["orders", "events"]
    if result.round_trips:
        changes.append("trades")
    if not result.running:
        changes += ["status", "orders", "events"]
    return changes


def _walk(
    bot: Bot, candles: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]
) -> CycleResult:
    """Walk candles through the engine (the backtest's own walk) and persist the outcome."""
    behind = len(candles) > CYCLE_BATCH
    candles = candles[:CYCLE_BATCH]
    engine = bot.engine()
    run = GridRun(
        engine,
        peak=bot.peak_equity or bot.capital,
        max_drawdown=bot.max_drawdown,
        prev_close=bot.last_price,
    )
    book: dict[int | None, Order] | None = None

    def open_book() -> dict[int | None, Order]:
        """The bot's open orders by slot, read only when a fill needs them (idle: never)."""
        nonlocal book
        if book is None:
            book = {o.slot: o for o in Order.objects.filter(bot=bot, status=Order.Status.OPEN)}
        return book

    seqs = [s.seq for s in engine.slots]
    filled: list[Order] = []
    created: list[Order] = []
    trades: list[Trade] = []
    events: list[BotEvent] = []
    result = CycleResult(candles=len(candles), behind=behind)
    daily_limit = bot.max_daily_loss
    halt_reason: str | None = None
    at = bot.cursor
    for at, o, h, low, c in candles:
        if bot.day != at.date():
            bot.day, bot.day_open_equity = at.date(), bot.last_equity
        trips_before = len(engine.round_trips)
        fills = run.step(o, h, low, c)
        trips = iter(engine.round_trips[trips_before:])
        for fill in fills:
            seq = seqs[fill.slot]
            seqs[fill.slot] += 1
            cid = client_order_id(bot.key, fill.slot, fill.side, fill.price, seq)
            order = open_book().pop(fill.slot, None)
            if order is None or order.client_order_id != cid:
                # Placed and filled within this walk (or the book lagged): record it as both.
                if order is not None:
                    order.status, order.reason = Order.Status.CANCELLED, "replaced"
                    filled.append(order)
                order = Order(bot=bot, slot=fill.slot, side=fill.side, price=fill.price,
                              amount=fill.amount, client_order_id=cid)  # fmt: skip
                created.append(order)
            order.status, order.filled, order.fee, order.filled_at = (
                Order.Status.FILLED,
                fill.amount,
                fill.fee,
                at,
            )
            if order.pk:
                filled.append(order)
            verb = "Bought" if fill.side == Side.BUY else "Sold"
            events.append(_event(bot, BotEvent.Kind.FILLED,
                                 f"{verb} {fill.amount} {bot.base_asset} at {fill.price} "
                                 f"(slot {fill.slot}); fee {fill.fee:.8f} {bot.quote_asset}.",
                                 at))  # fmt: skip
            if fill.side == Side.SELL:
                trade, event = round_trip_rows(bot, order, next(trips), at)
                trades.append(trade)
                events.append(event)
            result.fills += 1
        result.round_trips += len(engine.round_trips) - trips_before
        bot.last_equity, bot.last_price = run.equity, c
        bot.cursor = at
        if engine.is_stopped:
            sale = engine.stop_sale
            if sale is not None and sale.amount:
                created.append(_market_order(bot, sale, engine.stopped or order_ids.STOP, at))
            halt_reason = _stop_words(engine, bot)
            break
        if daily_limit and bot.day_open_equity is not None:
            lost = bot.day_open_equity - run.equity
            if lost >= daily_limit:
                halt_reason = (
                    f"daily loss limit: lost {lost:,.2f} {bot.quote_asset} today (UTC), "
                    f"the limit is {daily_limit:,.2f}"
                )
                break

    bot.peak_equity, bot.max_drawdown = run.peak, run.max_drawdown
    Order.objects.bulk_update(filled, ["status", "filled", "fee", "filled_at", "reason",
                                       "updated_at"])  # fmt: skip
    # New resting orders for the slots whose order filled (placed after the walk).
    # Without fills the desired orders are the ones already resting.
    if result.fills and not engine.is_stopped and halt_reason is None:
        for desired in engine.desired_orders(bot.key):
            resting = open_book().get(desired.slot)
            if resting is not None and resting.client_order_id != desired.client_id:
                resting.status, resting.reason = Order.Status.CANCELLED, "replaced"
                resting.save(update_fields=["status", "reason", "updated_at"])
                resting = None
            if resting is None:
                order = _open_order(bot, desired)
                created.append(order)
                open_book()[desired.slot] = order
                events.append(_event(bot, BotEvent.Kind.PLACED,
                                     f"Placed {desired.side} {desired.amount} "
                                     f"{bot.base_asset} at {desired.price} (slot "
                                     f"{desired.slot}).", at))  # fmt: skip
    Order.objects.bulk_create(created)
    Trade.objects.bulk_create(trades)
    BotEvent.objects.bulk_create(events)
    bot.keep_engine(engine)
    if result.fills or halt_reason is not None or _snapshot_due(at):
        EquitySnapshot.objects.bulk_create(
            [EquitySnapshot(bot=bot, at=at, price=bot.last_price, quote=engine.quote,
                            base=engine.base, equity=bot.last_equity)],
            ignore_conflicts=True,
        )  # fmt: skip
    if halt_reason is not None:
        _halt(bot, reason=halt_reason, status=Bot.Status.STOPPED, at=at)
        result.running = False
    bot.save(update_fields=CYCLE_FIELDS)
    return result


# What a cycle changes on the bot row: saving only these keeps the cycle's write small.
CYCLE_FIELDS = [
    "engine_state", "next_buy_price", "next_sell_price", "cursor", "last_price", "last_equity",
    "peak_equity", "max_drawdown", "day", "day_open_equity", "status", "status_reason",
    "stopped_at", "chain_token", "updated_at",
]  # fmt: skip
# Equity is marked at every candle for the drawdown; the stored series (charts, sparklines)
# keeps a point per this many market minutes, and one at every fill.
SNAPSHOT_MINUTES = 15


def _snapshot_due(at: datetime) -> bool:
    return (int(at.timestamp()) // 60) % SNAPSHOT_MINUTES == 0


def _stop_words(engine: GridEngine, bot: Bot) -> str:
    sale = engine.stop_sale
    sold = f"; sold {sale.amount} {bot.base_asset} at {sale.price}" if sale and sale.amount else ""
    if engine.stopped == STOP_LOSS:
        return f"stop-loss: the price fell to the stop price {engine.stop_price}{sold}"
    if engine.stopped == TAKE_PROFIT:
        return f"take-profit: the price rose to {engine.config.take_profit}{sold}"
    return f"{engine.stopped}{sold}"


def _open_order(bot: Bot, desired: Any) -> Order:
    return Order(
        bot=bot, slot=desired.slot, side=desired.side, price=desired.price,
        amount=desired.amount, status=Order.Status.OPEN, client_order_id=desired.client_id,
    )  # fmt: skip


def _market_order(bot: Bot, trade: MarketTrade, label: str, at: datetime | None) -> Order:
    return Order(
        bot=bot, slot=None, side=trade.side, kind=Order.Kind.MARKET, price=trade.price,
        amount=trade.amount, filled=trade.amount, fee=trade.fee, status=Order.Status.FILLED,
        client_order_id=order_ids.market_order_id(bot.key, label), filled_at=at, reason=label,
    )  # fmt: skip


def round_trip_rows(
    bot: Bot, sell: Order, trip: RoundTrip, at: datetime | None
) -> tuple[Trade, BotEvent]:
    """The Trade row and the event log line of a round trip the sell ``sell`` closed."""
    trade = Trade(bot=bot, slot=trip.slot, sell_order=sell, amount=trip.amount,
                  buy_price=trip.buy_price, sell_price=trip.sell_price, profit=trip.profit,
                  fees=trip.fees, closed_at=at)  # fmt: skip
    message = (
        f"Round trip on slot {trip.slot}: bought at {trip.buy_price}, sold at "
        f"{trip.sell_price}, profit {trip.profit:.6f} {bot.quote_asset}."
    )
    event = _event(bot, BotEvent.Kind.ROUND_TRIP, message, at)
    return trade, event


def _event(bot: Bot, kind: str, message: str, at: datetime | None) -> BotEvent:
    return BotEvent(bot=bot, kind=kind, message=message[:500], market_time=at)


# --- backtests ----------------------------------------------------------------------------------


def stored_candles(
    exchange: str, symbol: str, *, start: datetime | None, end: datetime | None, tick: Decimal
) -> Candles:
    """The stored 1-minute candles of a market with start <= open time < end, oldest first."""
    rows = (
        Candle.objects.for_series(exchange, symbol, TIMEFRAME)
        .between(start, end)
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close")
    )
    # Floats only carry the prices to Candles, which checks they convert back exactly.
    table = np.array(
        [(t.timestamp() * 1000, o, h, low, c) for t, o, h, low, c in rows.iterator(5000)],
        dtype=np.float64,
    ).reshape(-1, 5)
    if not len(table):
        raise BotError(
            f"No stored {symbol} candles on {exchange} in that period: import them first "
            "(manage.py import_candles)."
        )
    return Candles.from_floats(table, tick)


# --- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotStatistics:
    price: Decimal | None
    equity: Decimal
    quote: Decimal
    base: Decimal
    total_trades: int
    win_rate: Decimal
    total_profit: Decimal
    grid_profit: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    max_drawdown: Decimal
    apr: Decimal | None
    hodl_profit: Decimal | None
    profit_vs_hodl: Decimal | None
    open_orders: int


def bot_statistics(bot: Bot, *, open_orders: int | None = None) -> BotStatistics:
    """The numbers a user sees for a bot, from its saved state (no extra query by default)."""
    capital = bot.capital
    if not bot.engine_state:
        return BotStatistics(
            None, capital, capital, ZERO, 0, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, None, None,
            None, 0,
        )  # fmt: skip
    engine = bot.engine()
    price = bot.last_price or engine.start_price
    mark = engine.stop_mark if engine.is_stopped else price
    equity = engine.equity(mark)
    cost_basis = sum((s.acquired * engine.q for s in engine.slots if s.acquired), ZERO)
    unrealized = engine.base * mark - cost_basis if engine.base else ZERO
    total_profit = equity - capital
    apr = None
    if bot.market_started_at and bot.cursor:
        elapsed = (bot.cursor - bot.market_started_at).total_seconds()
        if elapsed >= 3600:
            apr = total_profit / capital * Decimal(365 * 86400) / Decimal(elapsed)
    hodl = capital / engine.start_price * price - capital if engine.start_price else None
    return BotStatistics(
        price=price,
        equity=equity,
        quote=engine.quote,
        base=engine.base,
        total_trades=engine.total_trades,
        win_rate=engine.win_rate,
        total_profit=total_profit,
        grid_profit=engine.grid_profit,
        unrealized_pnl=unrealized,
        fees_paid=engine.fees_paid,
        max_drawdown=bot.max_drawdown,
        apr=apr,
        hodl_profit=hodl,
        profit_vs_hodl=(total_profit - hodl) if hodl is not None else None,
        open_orders=open_orders if open_orders is not None else len(engine.desired_orders()),
    )


def running_bot_ids(symbol: str | None = None) -> Iterable[int]:
    qs = Bot.objects.running()
    if symbol:
        qs = qs.filter(symbol=symbol)
    return qs.values_list("pk", flat=True)
