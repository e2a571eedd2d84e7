"""The books of a bot: its order, trade and event rows, its round trips, the paper wallet, and
closing the books when a bot stops. Paper and live bots write the same rows through these."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber, TruncDay, TruncHour
from django.utils import timezone

from aibo import metrics
from bots import config as schema
from bots import push, reads
from bots.grid import order_ids
from bots.grid.engine import DesiredOrder, MarketTrade, RoundTrip, Side
from bots.grid.params import EXACT, SOLD
from bots.models import (
    Bot,
    BotEvent,
    EquitySnapshot,
    Installation,
    Order,
    PaperBalance,
    SendAttempt,
    Trade,
)
from market.precision import canonical, floor_amount

ZERO = Decimal(0)
QUOTE_WALLETS = {"USDT", "USDC", "USD"}


def event(bot: Bot, kind: str, message: str, at: datetime | None = None) -> BotEvent:
    """An event log line (not saved), cut to the column's length."""
    return BotEvent(bot=bot, kind=kind, message=message[:500], market_time=at)


def open_order(bot: Bot, desired: DesiredOrder) -> Order:
    """The row of a grid order the engine wants resting (not saved)."""
    return Order(
        bot=bot, slot=desired.slot, side=desired.side, price=desired.price,
        amount=desired.amount, status=Order.Status.OPEN, client_order_id=desired.client_id,
    )  # fmt: skip


def market_order(bot: Bot, trade: MarketTrade, label: str, at: datetime | None) -> Order:
    """The row of a market order that filled (the start buy, a stop sale; not saved)."""
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
    return trade, event(bot, BotEvent.Kind.ROUND_TRIP, message, at)


def paper_balance(owner: Any, asset: str, *, for_update: bool = False) -> PaperBalance:
    """The user's paper balance in `asset`; a new user's quote wallet starts funded."""
    initial = settings.PAPER_STARTING_BALANCE if asset in QUOTE_WALLETS else ZERO
    qs = PaperBalance.objects.select_for_update() if for_update else PaperBalance.objects
    balance, _ = qs.get_or_create(owner=owner, asset=asset, defaults={"free": initial})
    return balance


def close_books(bot: Bot, *, reason: str, status: str, at: datetime | None) -> None:
    """Inside a transaction holding the bot: cancel its book, release its capital, stop it
    (the bot row is changed, not saved)."""
    cancelled = Order.objects.filter(bot=bot, status__in=Order.RESTING).update(
        status=Order.Status.CANCELLED, reason=reason[:300], updated_at=timezone.now()
    )
    metrics.orders(bot.mode, "cancelled", cancelled)
    if bot.mode == Bot.Mode.PAPER and bot.engine_state:
        engine = bot.engine()
        quote_wallet = paper_balance(bot.owner, bot.quote_asset, for_update=True)
        quote_wallet.locked = max(quote_wallet.locked - bot.capital, ZERO)
        quote_wallet.free += engine.quote
        quote_wallet.save(update_fields=["free", "locked"])
        if engine.base + engine.dust:
            base_wallet = paper_balance(bot.owner, bot.base_asset, for_update=True)
            base_wallet.free += engine.base + engine.dust
            base_wallet.save(update_fields=["free"])
    bot.status, bot.status_reason = status, reason[:300]
    bot.stopping_reason, bot.stopping_sells = "", False
    bot.stopped_at = timezone.now()
    bot.next_buy_price = bot.next_sell_price = None
    bot.chain_token = ""
    kind = BotEvent.Kind.STOPPED if status == Bot.Status.STOPPED else BotEvent.Kind.ERROR
    message = f"Stopped: {reason}. Cancelled {cancelled} resting order(s)."
    BotEvent.objects.create(bot=bot, kind=kind, message=message[:500], market_time=at)


def installation() -> str:
    """This database's part of every client order id, made on first use."""
    row, _ = Installation.objects.get_or_create(
        pk=1, defaults={"order_prefix": order_ids.new_installation()}
    )
    return row.order_prefix


def run_key(bot: Bot, generation: int) -> str:
    """The client order id prefix of the bot's run ``generation`` on this installation; a
    start whose buy went out before installations had a part keeps its old key, so its buy
    is found again, never sent twice."""
    legacy = order_ids.bot_key(bot.pk, generation)
    start = order_ids.market_order_id(legacy, order_ids.START)
    if sent_before(start) is not None and not Order.objects.filter(client_order_id=start).exists():
        return legacy
    return order_ids.bot_key(bot.pk, generation, installation())


def sent_before(client_id: str) -> datetime | None:
    """When an order first went out under ``client_id``, if it did (writes nothing)."""
    found = reads.row(SendAttempt, "client_order_id = %s", [client_id])
    return None if found is None else found.first_sent_at


def forget_attempt(*client_ids: str) -> None:
    """The exchange refused the orders, or they never went out: nothing exists under
    ``client_ids``."""
    SendAttempt.objects.filter(client_order_id__in=client_ids).delete()


def send_attempt(client_id: str) -> datetime | None:
    """Write down that an order goes out under ``client_id`` (committed before it is sent);
    when it went out before, the first time it did. One statement when it is new (every
    counter-order of a streamed fill is)."""
    return None if write_attempts([client_id]) else sent_before(client_id)


def write_attempts(
    client_ids: list[str], *, then: Callable[[set[str]], None] | None = None
) -> set[str]:
    """Write down that orders go out under ``client_ids``, in one statement: the ids new here
    (any other went out before: ``sent_before``), or handed to ``then`` (``reads.execute``:
    inside ``together``, when it ends)."""
    # The bot's lease keeps anyone else from sending under its ids: no race to lose here.
    if not client_ids:
        if then is not None:
            then(set())
        return set()
    q = connection.ops.quote_name
    first_sent_at = SendAttempt._meta.get_field("first_sent_at")
    now = first_sent_at.get_db_prep_value(timezone.now(), connection)
    values = ", ".join(["(%s, %s)"] * len(client_ids))
    sql = (
        f"INSERT INTO {q(SendAttempt._meta.db_table)} ({q('client_order_id')}, "
        f"{q(first_sent_at.column)}) VALUES {values} ON CONFLICT DO NOTHING "
        f"RETURNING {q('client_order_id')}"
    )
    params = [value for cid in client_ids for value in (cid, now)]
    if then is not None:
        reads.execute(sql, params, then=lambda found: then({cid for (cid,) in found}))
        return set()
    return {cid for (cid,) in reads.execute(sql, params)}


def note_stopping(bot: Bot, *, reason: str, sells: bool) -> None:
    """Write a stop down before it acts (committed), once: every later cycle finishes it. A
    stop asked again with ``sells`` while one that keeps the coins is under way sells too."""
    if bot.stopping_reason:
        if sells and not bot.stopping_sells:
            Bot.objects.filter(pk=bot.pk).update(stopping_sells=True)
            bot.stopping_sells = True
        return
    bot.stopping_reason, bot.stopping_sells = reason[:300] or "stopped", sells
    Bot.objects.filter(pk=bot.pk, stopping_reason="").update(
        stopping_reason=bot.stopping_reason, stopping_sells=sells
    )
    BotEvent.objects.create(
        bot=bot, kind=BotEvent.Kind.SKIPPED,
        message=f"Stopping: {reason}. Cancelling the grid on the exchange"[:480]
        + (" and selling the bot's coins." if sells else "."),
    )  # fmt: skip


def force_halt(bot_id: int, *, reason: str) -> int:
    """The last resort for a bot whose row or state cannot be worked with: end its cycles with
    plain updates that read nothing of it, and cancel a paper bot's book. Its wallets are left
    as they are (the state that would release them is what failed), a live bot's orders on the
    exchange too; the event says so. Returns the number of rows stopped (0: not running)."""
    with transaction.atomic():
        stopped = Bot.objects.filter(pk=bot_id, status=Bot.Status.RUNNING).update(
            status=Bot.Status.ERROR, status_reason=reason[:300], stopped_at=timezone.now(),
            next_buy_price=None, next_sell_price=None, chain_token="",
        )  # fmt: skip
        if stopped:
            live = Bot.objects.filter(pk=bot_id, mode=Bot.Mode.LIVE).exists()
            if live:  # its orders rest on the exchange until someone cancels them there
                after = "its orders may still rest on the exchange: cancel them there"
            else:
                Order.objects.filter(bot_id=bot_id, status__in=Order.RESTING).update(
                    status=Order.Status.CANCELLED, reason=reason[:300], updated_at=timezone.now()
                )
                after = "its capital was not released: an operator must check it"
            BotEvent.objects.create(
                bot_id=bot_id, kind=BotEvent.Kind.ERROR,
                message=f"Halted: {reason}. Its stored state could not be read; {after}."[:500],
            )  # fmt: skip
    return stopped


def halt(bot: Bot, *, reason: str, status: str = Bot.Status.STOPPED, sell: bool = False) -> None:
    """Stop a running bot in the database (``close_books``, saved) and tell its watchers; with
    ``sell`` a paper bot first sells its coins at market (``sell_paper_coins``)."""
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if not bot.is_running:
            return
        if sell and bot.mode == Bot.Mode.PAPER and bot.engine_state:
            sell_paper_coins(bot, reason=reason)
        close_books(bot, reason=reason, status=status, at=bot.cursor)
        bot.save()
    transaction.on_commit(lambda: push.publish_bot(bot.pk))


def below_minimum(bot: Bot, amount: Decimal, price: Decimal) -> str:
    """Why ``amount`` of the bot's coins cannot be sold at market at ``price`` (less than the
    market's step, or worth less than its minimum order), in words; or '' when it can."""
    rules = schema.rules_for(bot.exchange, bot.symbol)
    step, least = canonical(rules.step), canonical(rules.min_notional)
    base, quote = bot.base_asset, bot.quote_asset
    if floor_amount(amount, step) <= 0:
        return f"kept {canonical(amount)} {base}: less than the market's step of {step} {base}"
    if amount * price < least:
        return (
            f"kept {canonical(amount)} {base} (worth {amount * price:,.2f} {quote}): below the "
            f"market's minimum order of {least} {quote}, too little to sell"
        )
    return ""


def sell_paper_coins(bot: Bot, *, reason: str) -> None:
    """Inside a transaction holding a running paper bot: sell its coins at market at its last
    price with the market's (taker) fee, as the exchange would fill it, booked as a market
    order and an event; the engine is stopped with the sale (``SOLD``), like a stop-loss sale.
    Coins worth less than the market's minimum order are kept, and the event says so."""
    engine = bot.engine()
    held = engine.base + engine.dust
    if held <= 0:
        return
    price = bot.last_price or engine.start_price
    at = bot.cursor
    if kept := below_minimum(bot, held, price):
        BotEvent.objects.create(
            bot=bot, kind=BotEvent.Kind.SKIPPED, market_time=at,
            message=f"Not sold at market: {kept}; they go back to your paper wallet."[:500],
        )  # fmt: skip
        return
    amount = floor_amount(held, canonical(schema.rules_for(bot.exchange, bot.symbol).step))
    with localcontext(EXACT):
        fee = engine.config.fee * price * amount
        engine.quote = engine.quote + price * amount - fee
        engine.fees_paid += fee
        # What the step left over stays with the bot as dust (it goes back to the wallet).
        engine.dust = held - amount
        engine.base = ZERO
    engine.stop_sale = MarketTrade(Side.SELL, price, amount, fee)
    engine.stopped, engine.stop_mark = SOLD, price
    bot.keep_engine(engine)
    bot.last_equity = engine.equity(price)
    Order.objects.create(
        bot=bot, slot=None, side=Order.Side.SELL, kind=Order.Kind.MARKET, price=price,
        amount=amount, filled=amount, fee=fee, status=Order.Status.FILLED,
        client_order_id=order_ids.market_order_id(bot.key, order_ids.STOP), filled_at=at,
        reason=reason[:300],
    )  # fmt: skip
    BotEvent.objects.create(
        bot=bot, kind=BotEvent.Kind.FILLED, market_time=at,
        message=f"Sold {canonical(amount)} {bot.base_asset} at {canonical(price)} at market "
        f"for {canonical(price * amount)} {bot.quote_asset}; fee {fee:.8f} {bot.quote_asset}.",
    )  # fmt: skip
    if at is not None:
        EquitySnapshot.objects.update_or_create(
            bot=bot, at=at, defaults={"price": price, "quote": engine.quote,
                                      "base": engine.dust, "equity": bot.last_equity},
        )  # fmt: skip


# --- the equity series, thinned with age -----------------------------------------------------


def downsample_equity(now: datetime | None = None, *, window: timedelta = timedelta(days=2)) -> int:
    """Thin the stored equity series as it ages: every point for ``EQUITY_FULL_DAYS``, then the
    last point of each hour, and from ``EQUITY_HOURLY_DAYS`` the last of each day (per bot).
    Only the ``window`` just past each threshold is looked at, so an hourly run touches each
    point a few dozen times in its life, however long the history. Returns the points deleted."""
    now = now or timezone.now()
    deleted = 0
    for age, bucket in (
        (timedelta(days=settings.EQUITY_FULL_DAYS), TruncHour("at")),
        (timedelta(days=settings.EQUITY_HOURLY_DAYS), TruncDay("at")),
    ):
        end = now - age
        ranked = (
            EquitySnapshot.objects.filter(at__gte=end - window, at__lt=end)
            .annotate(
                rank=Window(
                    RowNumber(), partition_by=[F("bot_id"), bucket], order_by=F("at").desc()
                )
            )
            .filter(rank__gt=1)
            .values_list("pk", flat=True)
        )
        ids = list(ranked)
        for start in range(0, len(ids), 1000):
            deleted += EquitySnapshot.objects.filter(pk__in=ids[start : start + 1000]).delete()[0]
    return deleted
