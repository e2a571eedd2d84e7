"""Live bots: the same grid engine, with a real exchange account behind it (through ccxt).

A paper bot's fills come from the engine's own matching over candles; a live bot's come from
the exchange. Its cycle (``run_cycle``):

1. takes the fills the account's user data stream wrote down (``bots.user_streams``), and,
   when a REST reconciliation is due (no stream, a gap in it, or ``LIVE_RECONCILE_SECONDS``),
   fetches the account's new trades for the pair by trade id (outside any transaction);
2. books each new trade once, in one transaction: every exchange trade is stored by its trade
   id, so one fetched again after a crash is recognised and never applied twice; each part of
   an order is booked as it comes, and its slot turns when the order is done; a turned slot's
   counter-order is written down in that transaction, with its send write-down, and sent
   first (``cycle.counters``);
3. checks the risk rules against the latest price (stop-loss and take-profit cancel the grid
   and sell the bot's coins at market; the daily loss limit cancels the grid), then lets the
   trigger price and trailing act (``follow_moves``, the last section);
4. reconciles the book: open orders with the bot's prefix that it does not know are adopted or
   cancelled, vanished ones are looked up (never assumed; the exchange's book is asked for
   only with REST, the stream tells of the rest), and an order the engine wants is
   written as ``pending`` and committed *before* it is sent (``send_once``), then sent with
   its deterministic client order id and marked ``open``. A crash between the two leaves a
   pending row, and the next cycle finds the order by its client id instead of placing a
   second one; an id is sent once.

Stops are written down before they act and finished by every later cycle (``halt``). The
start lives in ``bots.starting``. Nothing here holds a database transaction open across a
network call.

Over 400 lines because the steps above share one crash-safety argument; the ledger, the risk
rules, the start and the gateways they use live in their own modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.crypto import UndecryptableSecret
from accounts.models import ExchangeCredential
from aibo import metrics
from bots import bulk, gateways, ledger, orders_first, reads, risk, trailing, user_streams
from bots import config as schema
from bots.errors import LiveError
from bots.gateways.base import ExchangeFill, OpenOrder, OrderRequest, in_order
from bots.grid import order_ids
from bots.grid.engine import DesiredOrder, Fill, FillMismatch, GridEngine, MarketTrade, Side
from bots.grid.params import SOLD, STOP_LOSS, TAKE_PROFIT
from bots.models import (
    Bot,
    BotEvent,
    EquitySnapshot,
    ExchangeFillRecord,
    Order,
    StreamedFill,
    Trade,
)
from market import services as market_services
from market import status as exchange_status
from market.exchange import (
    NOT_VISIBLE_FOR,
    ExchangeError,
    NotSent,
    OrderNotVisibleYet,
    OrderRejected,
    OrderWouldCross,
    TemporaryExchangeError,
    spending_reserve,
    without_queries,
)
from market.models import MarketRules
from market.precision import canonical, floor_amount

logger = logging.getLogger(__name__)
T = TypeVar("T")
ZERO = Decimal(0)
# A grid order the exchange refuses is sent again by the next cycles; this many refusals in a
# row stop the bot in ERROR with the exchange's words.
REFUSALS_BEFORE_ERROR = 5
# Fills are fetched again from this long before the last look, for trades the exchange lists
# a little late.
CURSOR_MARGIN_MS = 5 * 60_000
RESTING = reads.in_list(Order.RESTING)  # the placeholders of an order's resting statuses


def gateway(bot: Bot) -> Any:
    if bot.credential_id is not None and not Bot.credential.is_cached(bot):  # type: ignore[attr-defined]
        bot.credential = reads.row(ExchangeCredential, "id = %s", [bot.credential_id])
    if bot.credential is None:
        raise LiveError(f"{bot} has no exchange keys: choose an account on its settings.")
    if bot.credential.owner_id != bot.owner_id:
        raise LiveError("These exchange keys belong to someone else.")
    try:
        return gateways.gateway_for(bot.credential, bot.symbol)
    except UndecryptableSecret as e:
        raise LiveError(str(e)) from None


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class FeeValues:
    """What a fill's fee cost the grid's quote balance: a fee in the quote is itself; one paid
    in another coin (BNB) is worth that coin's last trade price, asked once per cycle; one
    taken in the base coin costs the quote nothing (the dust pays it, ``take_base_fee``)."""

    def __init__(self, bot: Bot, gw: Any) -> None:
        self.bot, self.gw = bot, gw
        self.prices: dict[str, Decimal] = {}

    def __call__(self, fill: ExchangeFill) -> Decimal:
        asset, quote = fill.fee_asset, self.bot.quote_asset
        if not fill.fee or asset == quote:
            return fill.fee
        if asset in ("", self.bot.base_asset):
            return ZERO
        if asset not in self.prices:
            self.prices[asset] = self.gw.last_trade_price(f"{asset}/{quote}")
        return fill.fee * self.prices[asset]

    def base_fee(self, fills: list[ExchangeFill]) -> Decimal:
        return sum((f.fee for f in fills if f.fee_asset == self.bot.base_asset), ZERO)


def fill_totals(fills: list[ExchangeFill], values: FeeValues) -> tuple[Decimal, Decimal, Decimal]:
    """(amount, cost in quote, fees' worth in quote) of one order's fills."""
    amount = sum((f.amount for f in fills), ZERO)
    cost = sum((f.price * f.amount for f in fills), ZERO)
    return amount, cost, sum((values(f) for f in fills), ZERO)


# --- sending -----------------------------------------------------------------------------------


def send_once(client_id: str, send: Callable[[datetime | None], T], *, written: bool = False) -> T:
    """Send an order written down first (``ledger.send_attempt``), with when it first went
    out, if it did. One the exchange refused left nothing under the id (a resend is refused
    only once the gateway has proven the first absent); one that never reached the exchange
    (held back by the request budget, a closed market) leaves nothing either, unless an
    earlier send did: either way the write-down is forgotten again. ``written``: the caller
    wrote it down (new) and committed it already."""
    sent_before = None if written else ledger.send_attempt(client_id)
    try:
        return send(sent_before)
    except OrderRejected:
        ledger.forget_attempt(client_id)
        raise
    except NotSent:
        if sent_before is None:
            ledger.forget_attempt(client_id)
        raise


def fill_record(bot: Bot, order: Order, f: ExchangeFill, fee_quote: Decimal) -> ExchangeFillRecord:
    return ExchangeFillRecord(
        bot=bot, order=order, trade_id=f.trade_id, price=f.price, amount=f.amount, fee=f.fee,
        fee_asset=f.fee_asset, fee_quote=fee_quote, at=_time(f.at_ms),
    )  # fmt: skip


# --- the cycle --------------------------------------------------------------------------------


@dataclass
class LiveCycle:
    fills: int = 0
    round_trips: int = 0
    placed: int = 0
    turned: set[int] = field(default_factory=set)  # slots whose order filled completely
    # The counter-orders of a streamed fill, written down with its booking, to send at once.
    counters: list[Order] | None = None
    # Their send write-downs, made in that transaction too (``ledger.write_attempts``).
    written: set[str] = field(default_factory=set)
    snapshot: EquitySnapshot | None = None  # the equity chart's point for this cycle's fills
    chain_token: str = ""  # the bot's, as read under its lease


def first_reads(bot_id: int, read: dict[str, Any]) -> None:
    """What a cycle reads first, into ``read`` (handed over as ``reads`` statements' answers
    come: inside ``together``, when it ends): the bot with its keys (for ``gateway``) and the
    fills the stream wrote down."""
    reads.row_with(Bot, "credential", "t.id = %s", [bot_id],
                   then=lambda found: read.update(bot=found))  # fmt: skip
    _streamed(bot_id, then=lambda found: read.update(streamed=found))


def run_cycle(bot_id: int, read: dict[str, Any] | None = None) -> LiveCycle | None:
    """One live cycle (under the bot's lock); None when the bot is not running. Temporary
    exchange trouble ends the cycle early with nothing half-done: the next one picks up from
    the same place. Anything a person must look at stops the bot with the reason. ``read``:
    ``first_reads``'s, when the caller read them under the lease already."""
    if read is None:
        read = {}
        with reads.together():  # one round trip
            first_reads(bot_id, read)
    bot: Bot | None = read["bot"]
    if bot is None or not bot.is_running:
        return None
    cycle = LiveCycle(chain_token=bot.chain_token)
    # The exchange's status, the account's stream and the market's price: one cache read.
    known = cache.get_many([
        exchange_status.cache_key(bot.exchange), user_streams.cache_key(bot.credential_id),
        market_services.price_key(bot.exchange, bot.symbol),
    ])  # fmt: skip
    paused = exchange_status.maintenance(bot.exchange, known=known)
    if paused:  # nothing can be sent or trusted now: the bot waits, and says so once
        _note_once(bot, paused)
        return cycle
    began = timezone.now()
    rest = user_streams.rest_due(bot, began, known=known)  # else the stream has told of all
    # The feed's price, read once: the stop check and the marks use it.
    price = risk.fresh_price(bot, known=known)
    # A stop under way, or one the price calls for, takes risk off: it may spend the request
    # budget's spare share, so a busy minute never holds back a stop-loss.
    stop_due = price is not None and bool(risk.price_reason(bot, price))
    streamed: list[StreamedFill] = read["streamed"]
    calm = not (stop_due or bot.stopping_reason) and price is not None
    if calm and not (rest or streamed) and _quiet(bot, price) and not moves_due(bot, price):
        # The stream told of no fill and nothing waits to go out: the book is as it was, so
        # the cycle only marks the bot at the price (its risk rules have just looked).
        mark_to_market(bot, price)
        return cycle
    try:
        _run_cycle(bot, cycle, streamed, price=price, rest=rest, stop_due=stop_due, began=began,
                   counters_at=price if calm else None)  # fmt: skip
    finally:
        if cycle.snapshot is not None:
            bulk.insert_rows(EquitySnapshot, [cycle.snapshot], unique=["bot", "at"],
                             update=["price", "quote", "base", "equity"])  # fmt: skip
    return cycle


def _run_cycle(
    bot: Bot, cycle: LiveCycle, streamed: list[StreamedFill], *, price: Decimal | None,
    rest: bool, stop_due: bool, began: datetime, counters_at: Decimal | None,
) -> None:  # fmt: skip
    """The cycle's exchange work: fills, a stop under way, the risk rules, the book
    (``counters_at``: the price, when a streamed fill's counter-orders may go out at once)."""
    bot_id = bot.pk
    with spending_reserve(bool(bot.stopping_reason) or stop_due):
        try:
            gw = gateway(bot)
            if streamed and counters_at is not None:
                # A streamed fill: booked, its counter-order written down with it and sent,
                # before anything else is looked at or asked (a REST reconciliation that is
                # due comes after), and before the bookkeeping of the process's other woken
                # cycles (``orders_first``). Then the cycle ends, so the next bot a burst of
                # fills woke gets its turn (the risk rules looked at the price above; the
                # chain's next cycle, within BOT_CYCLE_SECONDS, marks the bot and sends
                # anything else).
                orders_first.begin()
                try:
                    sync_fills(bot, gw, cycle, streamed, rest=False, counters_at=counters_at)
                    streamed = []
                    if cycle.counters is not None:
                        cycle.placed += _send(bot, gw, cycle.counters, last=price,
                                              written=cycle.written)  # fmt: skip
                finally:
                    orders_first.end()
                if cycle.counters is not None and not rest:
                    return
            if not sync_fills(bot, gw, cycle, streamed, rest=rest):
                bot.refresh_from_db()
            if not bot.is_running:
                return
            if bot.stopping_reason:  # a stop written down but not finished: finish it, only that
                why = bot.stopping_reason
                status = Bot.Status.ERROR if why.startswith(ERROR_STOP) else Bot.Status.STOPPED
                halt(bot, gw, reason=why.removeprefix(ERROR_STOP), sell=bot.stopping_sells,
                     status=status)  # fmt: skip
                return
            stop_sale = pending_stop_sale(bot)
            if stop_sale is not None:  # a stop whose sale did not finish: finish it first
                halt(bot, gw, reason=stop_sale.reason, sell=True)
                return
            if bot.engine().is_stopped:  # stopped and sold, but not yet recorded as stopped
                halt(bot, gw, reason=bot.status_reason or "stopped")
                return
            fresh = mark_to_market(bot, price)
            if not fresh:  # the risk rules never go silent: they ask the exchange itself
                mark_to_market(bot, gw.last_trade_price())
                _note_once(bot, f"No fresh price from the market feed: the stop-loss, take-profit "
                                f"and daily loss limit use {bot.exchange}'s last trade price, and "
                                "no new buys are placed until the feed is back.")  # fmt: skip
            reason = risk.price_reason(bot)
            if reason:
                halt(bot, gw, reason=reason, sell=risk.sells_out(reason))
                return
            # The trigger price and trailing (below): the grid they start or move is placed by
            # the reconciliation, as every other order.
            follow_moves(bot, gw, price if fresh else None)
            cycle.placed += reconcile(bot, gw, buys=fresh, rest=rest)
            if rest:  # fills and the book, all asked for since ``began``: the stream takes over
                Bot.objects.filter(pk=bot.pk).update(rest_synced_at=began)
        except TemporaryExchangeError as e:
            logger.warning("bot %s: %s; retrying next cycle", bot_id, e)
            _note_trouble(bot, str(e))
        except (ExchangeError, LiveError, FillMismatch, IntegrityError) as e:
            # Keys revoked, symbol delisted, an order refused, a fill that does not fit the grid:
            # a person must look. The bot stops with the reason; its orders are cancelled when the
            # exchange lets us.
            logger.exception("bot %s: live cycle failed", bot_id)
            _error(bot, without_queries(f"{type(e).__name__}: {e}"))


def _streamed(
    bot_id: int, *, then: Callable[[list[StreamedFill]], None] | None = None
) -> list[StreamedFill]:
    """The fills the user data stream told of, not yet booked (or handed to ``then``:
    ``reads.rows``)."""
    return reads.rows(StreamedFill, "bot_id = %s ORDER BY at_ms, id", [bot_id], then=then)


def _quiet(bot: Bot, price: Decimal) -> bool:
    """No order waiting that could go out now: none but post-only grid orders whose line the
    price has passed (a refused one, a stop's sale, one the price came back to: not quiet)."""
    waiting = Order.objects.filter(bot=bot, status=Order.Status.PENDING).values_list(
        "kind", "side", "price", "refusals"
    )
    return all(
        kind == Order.Kind.LIMIT
        and not refusals
        and (at >= price if side == Order.Side.BUY else at <= price)
        for kind, side, at, refusals in waiting
    )


def _note_trouble(bot: Bot, message: str) -> None:
    """Exchange trouble the cycle retries, on the bot's event log once (not every cycle)."""
    _note_once(bot, f"{bot.exchange} trouble, retrying every cycle: {without_queries(message)}")


def _note_once(bot: Bot, text: str) -> None:
    """An event, unless it is already the bot's latest one."""
    text = text[:500]
    last = bot.events.order_by("-id").values_list("message", flat=True).first()
    if last != text:
        BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED, message=text)


def sync_fills(
    bot: Bot, gw: Any, cycle: LiveCycle, streamed: list[StreamedFill] | None = None, *,
    rest: bool = True, counters_at: Decimal | None = None,
) -> bool:  # fmt: skip
    """Apply the bot's new fills, once each: those the user data stream told of (``streamed``,
    read here when not given) and, with ``rest``, the account's trades since the cursor,
    fetched. True when there were any (``bot`` is then as their booking left it);
    ``counters_at``: see ``_apply_fills``."""
    if streamed is None:
        streamed = _streamed(bot.pk)
    fetched: list[ExchangeFill] = []
    if rest:
        asked_at = int(timezone.now().timestamp() * 1000)
        fetched = gw.fetch_fills(bot.fill_cursor_ms, from_id=bot.fill_cursor_trade)
        if not fetched:
            # Nothing new: the next fetch starts a little before now, not at the last fill, so
            # it stays one request however long the grid has been quiet.
            cursor = asked_at - CURSOR_MARGIN_MS
            if bot.fill_cursor_ms is None or cursor > bot.fill_cursor_ms:
                Bot.objects.filter(pk=bot.pk).update(fill_cursor_ms=cursor)
    if not fetched and not streamed:
        return False
    by_trade = {f.trade_id: f for f in user_streams.streamed_fills(streamed)}
    by_trade.update((f.trade_id, f) for f in fetched)
    fills = in_order(by_trade.values())
    return _apply_fills(
        bot, gw, cycle, fills, fetched=fetched, streamed=[r.pk for r in streamed],
        counters_at=counters_at,
    )  # fmt: skip


def _apply_fills(
    bot: Bot,
    gw: Any,
    cycle: LiveCycle,
    fills: list[ExchangeFill],
    *,
    fetched: list[ExchangeFill],
    streamed: list[int],
    counters_at: Decimal | None = None,
) -> bool:
    """Book fills in one transaction; the stream's rows are deleted in it, and the REST cursor
    moves past what was ``fetched`` (never past what only the stream told of: a trade the
    stream missed is still fetched next time). ``bot`` is reloaded under its row lock first
    (returns True).

    ``counters_at`` (the price, when the cycle may send at once): the counter-orders of the
    slots the fills turned are written down as pending in the same transaction and left in
    ``cycle.counters`` for the caller to send, unless the bot is stopping or stopped."""
    values = FeeValues(bot, gw)
    for f in fills:
        values(f)  # a BNB fee's price is asked for now, not inside the transaction
    ids = [f.trade_id for f in fills]
    # The stop's sale too: one waiting to go out holds back any counter-order.
    sale_id = stop_sale_id(bot)
    client_ids = [*{f.client_id for f in fills}, sale_id]
    read: dict[str, Any] = {}
    with transaction.atomic():
        with reads.together():  # the bot locked and read again, and what the booking needs
            reads.reload(bot, lock=True, then=lambda found: read.update(found=found))
            reads.column(ExchangeFillRecord, "trade_id",
                         f"bot_id = %s AND trade_id IN {reads.in_list(ids)}", [bot.pk, *ids],
                         then=lambda found: read.update(seen=set(found)))  # fmt: skip
            _orders(bot, client_ids, then=lambda found: read.update(book=found))
            _read_rules(bot, then=lambda found: read.update(rules=found))
        if not read["found"] or bot.engine_state is None:
            return True
        seen: set[str] = read["seen"]
        if stop_sale_id(bot) != sale_id:  # started again since it was read: its own ids
            client_ids[-1] = sale_id = stop_sale_id(bot)
            read["book"] = _orders(bot, client_ids)
        book = {o.client_order_id: o for o in read["book"]}
        engine = bot.engine()
        records: list[ExchangeFillRecord] = []
        trades: list[Trade] = []
        events: list[BotEvent] = []
        touched: dict[int, Order] = {}
        for f in fills:
            order = book.get(f.client_id)
            if order is None and f.trade_id not in seen:
                order = _adopt_filled(bot, engine, f.client_id)
                if order is not None:
                    book[f.client_id] = order
                    events.append(ledger.event(bot, BotEvent.Kind.SKIPPED, _adopted(bot, order)))
            if f.trade_id in seen or order is None or order.kind != Order.Kind.LIMIT:
                continue  # applied already, not this bot's, or the start / stop sale
            record = fill_record(bot, order, f, values(f))
            records.append(record)
            if order.status not in Order.RESTING or (
                bot.started_at is not None and order.created_at < bot.started_at
            ):
                # An order of an earlier run, or one marked cancelled that filled anyway: the
                # coins moved in the account, but it is not this grid's order.
                status = order.get_status_display().lower()
                events.append(BotEvent(
                    bot=bot, kind=BotEvent.Kind.SKIPPED, market_time=record.at,
                    message=f"{bot.exchange} filled {f.amount} {bot.base_asset} of a {status} "
                            f"{order.side} at {order.price}, not part of the running grid: not "
                            "applied to it (the coins are in your account).",
                ))  # fmt: skip
                continue
            # Every part is booked as it comes, at the order's line; an order that met the
            # market when it was sent filled at a better price, and the quote keeps that.
            side = Side(order.side)
            engine.book_part(Fill(order.slot, side, order.price, f.amount, record.fee_quote))
            better = (f.price - order.price) * f.amount
            engine.quote += -better if side == Side.BUY else better
            if f.fee_asset == bot.base_asset and f.fee:
                engine.take_base_fee(f.fee, f.fee * f.price)
            order.filled += f.amount
            order.fee += record.fee_quote
            touched[order.pk] = order
            verb = "Bought" if side == Side.BUY else "Sold"
            if order.filled < order.amount:
                events.append(ledger.event(
                    bot, BotEvent.Kind.FILLED,
                    f"{verb} {f.amount} {bot.base_asset} at {f.price} (slot {order.slot}) on "
                    f"{bot.exchange}: {order.filled} of {order.amount} so far; booked now, the "
                    "rest stays on the book.", record.at,
                ))  # fmt: skip
                continue
            order.status, order.filled_at = Order.Status.FILLED, record.at
            trip = engine.complete(order.slot)
            cycle.fills += 1
            cycle.turned.add(order.slot)
            mine = [r for r in records if r.order is order]
            if order.filled > sum((r.amount for r in mine), ZERO):  # parts of earlier cycles
                mine += list(order.exchange_fills.all())
            cost = sum((r.price * r.amount for r in mine), ZERO)
            gained = (cost - order.price * order.amount) * (1 if side == Side.SELL else -1)
            better = f" (filled at {cost / order.amount}, {gained:+.8f} {bot.quote_asset})"
            base_fees = sum((r.fee for r in mine if r.fee_asset == bot.base_asset), ZERO)
            fee = (
                f"{base_fees} {bot.base_asset}"
                if base_fees
                else f"{order.fee:.8f} {bot.quote_asset}"
            )
            events.append(ledger.event(
                bot, BotEvent.Kind.FILLED,
                f"{verb} {order.amount} {bot.base_asset} at {order.price}"
                f"{better if gained else ''} (slot {order.slot}) on {bot.exchange}; fee {fee}.",
                record.at,
            ))  # fmt: skip
            if trip is not None:
                cycle.round_trips += 1
                trade, event = ledger.round_trip_rows(bot, order, trip, record.at)
                trades.append(trade)
                events.append(event)
        now = timezone.now()
        for booked in touched.values():
            booked.updated_at = now
        if fetched:
            bot.fill_cursor_ms = max(f.at_ms for f in fetched)
            bot.fill_cursor_trade = next_trade_id(fetched, bot.fill_cursor_trade)
        bot.keep_engine(engine)
        fields = ["engine_state", "next_buy_price", "next_sell_price", "fill_cursor_ms",
                  "fill_cursor_trade", "last_equity", "updated_at"]  # fmt: skip
        if cycle.fills:
            mark = bot.last_price or engine.start_price
            risk.mark(bot, engine.equity(mark))
            fields += ["peak_equity", "max_drawdown"]
            # A chart point, written when the cycle ends (after the counter-orders went out).
            cycle.snapshot = EquitySnapshot(
                bot=bot, at=now.replace(second=0, microsecond=0), price=mark,
                quote=engine.quote, base=engine.base + engine.dust, equity=bot.last_equity,
            )  # fmt: skip
        bot.updated_at = now
        sale = book.get(sale_id)
        wanted = {}
        if (
            counters_at is not None and cycle.turned and bot.is_running
            and not bot.stopping_reason and not engine.is_stopped
            and (sale is None or sale.status != Order.Status.PENDING)
        ):  # fmt: skip
            wanted = {d.client_id: d for d in engine.desired_orders(bot.key)
                      if d.slot in cycle.turned}  # fmt: skip
        # Written as arrays (``bots.bulk``): building Django's bulk statements cost more CPU
        # than the counter-order's way to the exchange (a burst of fills shares the cores). And
        # sent together, with what the counter-orders' write-down reads after them: one round
        # trip for all. They skip ``auto_now``: the orders socket reads ``updated_at``.
        with reads.together():
            bulk.insert_rows(ExchangeFillRecord, records)
            bulk.update_rows(Order, list(touched.values()),
                             ["filled", "fee", "status", "filled_at", "updated_at"])  # fmt: skip
            bulk.insert_rows(Trade, trades)
            bulk.insert_rows(BotEvent, events)
            bulk.delete_rows(StreamedFill, streamed)
            bulk.update_rows(Bot, [bot], fields)
            if wanted:
                _orders(bot, wanted, then=lambda found: read.update(have=found))
                _resting_sells(bot, then=lambda found: read.update(resting=found))
        if wanted:
            rules = _rules(bot, read["rules"])
            cycle.counters = _write_missing(bot, engine, wanted, rules, buys=True,
                                            have=read["have"], resting=read["resting"],
                                            written=cycle.written)  # fmt: skip
    return True


def _adopt_filled(bot: Bot, engine: GridEngine, client_id: str) -> Order | None:
    """A trade of an order this run sent but never booked (a crash between send and save):
    when it is the order a slot wants, it is booked now, so its fills are never lost."""
    if not order_ids.belongs_to(client_id, bot.key):
        return None
    wanted = {d.client_id: d for d in engine.desired_orders(bot.key)}.get(client_id)
    if wanted is None or Order.objects.filter(client_order_id=client_id).exists():
        return None
    return _book_adopted(bot, wanted)


def _book_adopted(
    bot: Bot, wanted: DesiredOrder, exchange_id: str = "", amount: Decimal | None = None
) -> Order:
    """The row of an order found on the exchange (``amount``: what the exchange says it is;
    from a fill alone, the slot's own, set right by ``_vanished`` when it closes)."""
    order = Order(
        bot=bot, slot=wanted.slot, side=wanted.side, price=wanted.price,
        amount=amount or wanted.amount,
        status=Order.Status.OPEN, client_order_id=wanted.client_id,
        exchange_order_id=exchange_id,
    )  # fmt: skip
    Order.objects.filter(bot=bot, slot=wanted.slot, status__in=Order.RESTING).update(
        status=Order.Status.CANCELLED, reason="replaced by the order found on the exchange"
    )
    order.save()
    return order


def _adopted(bot: Bot, order: Order) -> str:
    return (
        f"Found the {order.side} at {order.price} (slot {order.slot}) on {bot.exchange}, sent "
        "by this bot but never booked (a crash between sending and saving): adopted."
    )


def next_trade_id(fills: list[ExchangeFill], cursor: int | None) -> int | None:
    """The trade id to fetch from next: one past the newest seen (ids that are not numbers,
    which Binance never sends, leave the cursor as it was)."""
    ids = [int(f.trade_id) for f in fills if f.trade_id.isdigit()]
    return max([*ids, (cursor or 1) - 1]) + 1 if ids else cursor


def mark_to_market(bot: Bot, price: Decimal | None = None) -> bool:
    """The latest price (the feed's, or ``price`` when given), the equity at it, and the UTC
    day the daily loss limit counts; False (changing nothing) when there is no fresh price."""
    price = price if price is not None else risk.fresh_price(bot)
    if price is None or bot.engine_state is None:
        bot.last_price = None  # the risk rules never act on an old price
        return False
    bot.last_price = price
    risk.mark(bot, bot.engine().equity(price))
    risk.roll_day(bot, timezone.now().date(), bot.last_equity)
    bot.save(update_fields=["last_price", "last_equity", "day", "day_open_equity",
                            "peak_equity", "max_drawdown", "updated_at"])  # fmt: skip
    return True


def reconcile(bot: Bot, gw: Any, *, buys: bool = True, rest: bool = True) -> int:
    """Make the exchange's book the engine's: take in or cancel what rests there unbooked,
    cancel what is no longer wanted, look up what vanished, write what is missing as pending,
    then send every pending order. Returns how many were sent. Without ``buys`` (no fresh
    market price) no new buy is written or sent; sells still are. Without ``rest`` the
    exchange's book is not asked for: the user data stream, up since the last time it was,
    has told of every fill, and of every order that ended otherwise (which asks for REST)."""
    engine = bot.engine()
    book = list(Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT))
    if rest:
        exchange_book = gw.open_orders()
        on_exchange = {o.client_id for o in exchange_book}
        if _take_in_strays(bot, gw, engine, exchange_book, {o.client_order_id for o in book}):
            book = list(Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT))
    else:
        on_exchange = {o.client_order_id for o in book if o.status == Order.Status.OPEN}
    desired = {d.client_id: d for d in engine.desired_orders(bot.key)}
    rules = schema.rules_for(bot.exchange, bot.symbol)
    for order in book:
        cid = order.client_order_id
        if cid not in desired:
            gw.cancel(cid)
            order.status, order.reason = Order.Status.CANCELLED, "replaced"
            order.save(update_fields=["status", "reason", "updated_at"])
        elif order.status == Order.Status.OPEN and cid not in on_exchange:
            engine = _vanished(bot, gw, order, engine, rules) or engine
    desired = {d.client_id: d for d in engine.desired_orders(bot.key)}
    return _place(bot, gw, engine, desired, rules, buys=buys, last=bot.last_price)


def _place(
    bot: Bot,
    gw: Any,
    engine: GridEngine,
    desired: dict[str, DesiredOrder],
    rules: Any,
    *,
    buys: bool,
    last: Decimal | None,
) -> int:
    """Write the ``desired`` orders that have no row as pending, then send every pending one;
    returns how many were sent. ``last``: the price, which a post-only order must not have
    passed."""
    _write_missing(bot, engine, desired, rules, buys=buys)
    pending = Order.objects.filter(bot=bot, status=Order.Status.PENDING, kind=Order.Kind.LIMIT)
    if not buys:
        pending = pending.exclude(side=Order.Side.BUY)
    return _send(bot, gw, list(pending.order_by("slot")), last=last)


def _write_missing(
    bot: Bot, engine: GridEngine, desired: dict[str, DesiredOrder], rules: Any, *, buys: bool,
    have: list[Order] | None = None, resting: list[Order] | None = None,
    written: set[str] | None = None,
) -> list[Order]:  # fmt: skip
    """Write the ``desired`` orders that have no row as pending (no buy without ``buys``);
    returns the pending ones among them, by slot. ``have`` (the rows under the desired ids)
    and ``resting`` (``_resting_sells``): read already, else read here. ``written`` (to be
    sent as soon as this commits): the new orders' send write-downs are made with them, in
    the same round trip, and the ids written down added to it (``_send``)."""
    # Any row already under a wanted id counts (a rejected one too: ids are unique, and an
    # order the exchange refused is not sent again blindly).
    mine = {o.client_order_id: o for o in (_orders(bot, desired) if have is None else have)}
    missing = [d for cid, d in desired.items() if cid not in mine and (buys or d.side != Side.BUY)]
    sells = [d for d in missing if d.side == Side.SELL]
    amounts = sell_amounts(bot, engine, sells, rules.step, resting=resting)
    for slot, amount in amounts.items():
        if below_minimum(rules, amount, engine.lines[engine.index_of(slot) + 1]):
            # The account holds too few of the grid's coins for this sell (a start that
            # bought less than planned): it waits rather than be refused.
            missing = [d for d in missing if d.slot != slot]
            _note_once(bot, f"The sell of slot {slot} waits: the grid holds {amount} "
                            f"{bot.base_asset} for it, below the exchange's minimum.")  # fmt: skip
    created = [
        Order(bot=bot, slot=d.slot, side=d.side, price=d.price,
              amount=amounts.get(d.slot, d.amount), status=Order.Status.PENDING,
              client_order_id=d.client_id)
        for d in missing
    ]  # fmt: skip
    with reads.together():
        bulk.insert_rows(Order, created)
        if written is not None:
            ledger.write_attempts([o.client_order_id for o in created], then=written.update)
    pending = [
        o for o in [*mine.values(), *created]
        if o.status == Order.Status.PENDING and o.kind == Order.Kind.LIMIT
        and (buys or o.side != Order.Side.BUY)
    ]  # fmt: skip
    return sorted(pending, key=lambda o: o.slot)


def _orders(
    bot: Bot, client_ids: Iterable[str], *, then: Callable[[list[Order]], None] | None = None
) -> list[Order]:
    """The bot's orders under these client ids (or handed to ``then``: ``reads.rows``)."""
    ids = list(client_ids)
    return reads.rows(Order, f"bot_id = %s AND client_order_id IN {reads.in_list(ids)}",
                      [bot.pk, *ids], then=then)  # fmt: skip


def _resting_sells(bot: Bot, *, then: Callable[[list[Order]], None] | None = None) -> list[Order]:
    """The bot's grid sells on the book or on their way to it (or handed to ``then``:
    ``reads.rows``)."""
    return reads.rows(
        Order, f"bot_id = %s AND kind = %s AND side = %s AND status IN {RESTING}",
        [bot.pk, Order.Kind.LIMIT, Order.Side.SELL, *Order.RESTING], then=then,
    )  # fmt: skip


def _read_rules(bot: Bot, *, then: Callable[[list[MarketRules]], None]) -> None:
    """The market's rules row, read without the ORM (every streamed fill's booking needs it)
    and handed to ``then`` (``reads.rows``); ``_rules`` makes the rules of it."""
    reads.rows(MarketRules, "exchange = %s AND symbol = %s", [bot.exchange, bot.symbol],
               then=then)  # fmt: skip


def _rules(bot: Bot, found: list[MarketRules]) -> Any:
    """The market's rules: the row ``_read_rules`` found, else ``config.rules_for``'s."""
    return found[0] if found else schema.rules_for(bot.exchange, bot.symbol)


def _send(
    bot: Bot, gw: Any, orders: list[Order], *, last: Decimal | None,
    written: Collection[str] = (),
) -> int:  # fmt: skip
    """Send these pending orders, each written down first (``send_once``; those ``written``
    were, with their rows), and mark each placed one open; returns how many were sent.
    ``last``: the price, which a post-only order must not have passed."""
    # Written down but not sent (passed by the price, or the cycle ended before them): the
    # write-down is forgotten, or the next cycle would take it for a send and wait to see it.
    unsent = {o.client_order_id for o in orders if o.client_order_id in written}
    try:
        return _send_each(bot, gw, orders, last=last, unsent=unsent)
    finally:
        if unsent:
            ledger.forget_attempt(*unsent)


def _send_each(
    bot: Bot, gw: Any, orders: list[Order], *, last: Decimal | None, unsent: set[str]
) -> int:
    sent = 0
    for order in orders:
        if last is not None and (
            order.price >= last if order.side == Order.Side.BUY else order.price <= last
        ):  # a post-only order the market has passed would be refused: not sent, it waits
            _note_once(bot, _would_cross(bot, order))
            continue
        request = OrderRequest(order.client_order_id, order.side, order.price, order.amount)
        written = request.client_id in unsent
        unsent.discard(request.client_id)  # from here ``send_once`` keeps its write-down true
        try:
            placed = send_once(
                request.client_id,
                lambda before, r=request: gw.place(r, sent_before=before, new=before is None),
                written=written,
            )
        except OrderNotVisibleYet as e:  # sent before, not visible yet: this one waits
            _note_once(bot, f"Waiting for {bot.exchange} to show the {order.side} at "
                            f"{order.price} (slot {order.slot}): {e}.")  # fmt: skip
            continue
        except OrderWouldCross:  # post-only: the market is past its line; not an error
            _note_once(bot, _would_cross(bot, order))
            continue
        except OrderRejected as e:  # nothing exists under the id: it may be sent again
            metrics.orders(Bot.Mode.LIVE, "rejected", reason="refused")
            order.refusals, order.reason = order.refusals + 1, str(e)[:300]
            what = f"the {order.side} at {order.price} (slot {order.slot})"
            if order.refusals >= REFUSALS_BEFORE_ERROR:
                order.status = Order.Status.REJECTED
                order.save(update_fields=["status", "refusals", "reason", "updated_at"])
                raise LiveError(
                    f"{bot.exchange} refused {what} {order.refusals} times in a row: {e}"
                ) from None
            order.save(update_fields=["refusals", "reason", "updated_at"])
            _note_once(bot, f"{bot.exchange} refused {what}: {e}; it is sent again next cycle "
                            f"({order.refusals} of {REFUSALS_BEFORE_ERROR} tries before the bot "
                            "stops).")  # fmt: skip
            continue
        orders_first.sent()  # on the wire: other cycles' counter-orders before this one's books
        order.status, order.exchange_order_id = Order.Status.OPEN, placed.exchange_id
        order.updated_at = timezone.now()  # (an array write skips auto_now)
        bulk.update_rows(Order, [order], ["status", "exchange_order_id", "updated_at"])
        metrics.orders(Bot.Mode.LIVE, "placed")
        bulk.insert_rows(BotEvent, [ledger.event(
            bot, BotEvent.Kind.PLACED, f"Placed {order.side} {order.amount} {bot.base_asset} at "
                                       f"{order.price} (slot {order.slot}) on {bot.exchange}.",
        )])  # fmt: skip
        sent += 1
    return sent


def _take_in_strays(
    bot: Bot, gw: Any, engine: GridEngine, exchange_book: list[OpenOrder], booked: set[str]
) -> bool:
    """Every open order with this bot's prefix is known: one this run sent but never booked
    (a crash between send and save) is adopted when it is what its slot wants, and cancelled
    otherwise, as is anything of the bot's earlier runs or of this installation's bots that no
    longer run. The trader's own orders, and other installations', are left alone. Returns
    whether an order was adopted."""
    mine = order_ids.parse_key(bot.key)
    if mine is None:
        return False
    installation, bot_id, _generation = mine
    strays = []
    for o in exchange_book:
        theirs = order_ids.key_of(o.client_id)
        if theirs is None or o.client_id in booked or theirs[0] != installation:
            continue
        if theirs[1] == bot_id or installation:  # legacy ids: only this bot's own are known
            strays.append((o, theirs))
    if not strays:
        return False
    others = {t[1] for _o, t in strays if t[1] != bot_id}
    running_keys = set(
        Bot.objects.running().filter(pk__in=others).values_list("order_key", flat=True)
    )
    wanted = {d.client_id: d for d in engine.desired_orders(bot.key)}
    adopted = False
    for o, (_inst, owner, generation) in strays:
        if owner != bot_id and order_ids.bot_key(owner, generation, installation) in running_keys:
            continue  # a running bot's own order: that bot looks after it
        want = wanted.get(o.client_id)
        if want is not None and not Order.objects.filter(client_order_id=o.client_id).exists():
            with transaction.atomic():
                order = _book_adopted(bot, want, o.exchange_id, o.amount)
                BotEvent.objects.create(
                    bot=bot, kind=BotEvent.Kind.SKIPPED, message=_adopted(bot, order)
                )
            adopted = True
            continue
        gw.cancel(o.client_id)
        whose = "this bot's" if owner == bot_id else f"bot {owner}'s"
        _note_once(bot, f"Cancelled the {o.side} at {o.price} ({o.client_id}) on "
                        f"{bot.exchange}: an order of {whose} with aibo's prefix that no "
                        "running grid wants.")  # fmt: skip
    return adopted


def _vanished(bot: Bot, gw: Any, order: Order, engine: GridEngine, rules: Any) -> GridEngine | None:
    """An open order gone from the exchange's book: looked up, never assumed. Filled (its
    trades late) or not visible yet: left alone and looked at again next cycle. Cancelled or
    expired (by the trader on the exchange, self-trade prevention, maintenance, a stop that
    died before it was recorded), its fills all booked: what is left goes out again under a
    new id (an id is sent once), or, too small to send, the slot turns now. Returns the
    engine when it changed."""
    state = gw.order_status(order.client_order_id)
    if state is None:
        return None
    status, filled = state
    if status == "open":
        return None
    if filled > order.filled:
        _note_once(bot, f"The {order.side} at {order.price} (slot {order.slot}) filled "
                        f"{filled} on {bot.exchange}; its trades are not in the account's trade "
                        "list yet.")  # fmt: skip
        return None
    if status == "closed":  # done, all booked, for less than its row said (an adopted order)
        engine.complete(order.slot)
        with transaction.atomic():
            order.amount, order.status = filled, Order.Status.FILLED
            order.save(update_fields=["amount", "status", "updated_at"])
            bot.keep_engine(engine)
            bot.save(update_fields=["engine_state", "next_buy_price", "next_sell_price",
                                    "updated_at"])  # fmt: skip
        return engine
    engine.reissue(order.slot)  # what is left of the slot's order goes out under a new id
    wanted = engine.resting_order(order.slot, bot.key)
    rest = wanted.amount
    if wanted.side == Side.SELL:
        rest = sell_amounts(bot, engine, [wanted], rules.step, ending=order)[wanted.slot]
    after = "sending it again" if not filled else f"the other {rest} goes out again"
    if filled and below_minimum(rules, rest, order.price):
        engine.complete(order.slot)
        after = f"the other {rest} is below {bot.exchange}'s minimum order: the slot turns now"
    with transaction.atomic():
        metrics.orders(Bot.Mode.LIVE, "cancelled", reason="on the exchange")
        order.status = Order.Status.CANCELLED
        order.reason = f"cancelled on the exchange, {filled} filled"
        order.save(update_fields=["status", "reason", "updated_at"])
        bot.keep_engine(engine)
        bot.save(update_fields=["engine_state", "next_buy_price", "next_sell_price", "updated_at"])
        done = (
            f" after {filled} of {order.amount} {bot.base_asset} filled (booked)" if filled else ""
        )
        BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED,
                                message=f"The {order.side} at {order.price} (slot {order.slot}) "
                                        f"was no longer on {bot.exchange}: cancelled or expired "
                                        f"there{done}; {after}.")  # fmt: skip
    return engine


def below_minimum(rules: Any, amount: Decimal, price: Decimal) -> bool:
    """Whether an order of ``amount`` at ``price`` is below the market's minimum order (its
    amount, one step, its notional): the exchange would refuse it."""
    return amount < max(rules.min_amount, rules.step) or amount * price < rules.min_notional


def _would_cross(bot: Bot, order: Order) -> str:
    return (
        f"The {order.side} at {order.price} (slot {order.slot}) would trade at once (the price "
        "has passed its line): it is placed as a maker order when the price allows."
    )


def sell_amounts(
    bot: Bot,
    engine: GridEngine,
    sells: list[DesiredOrder],
    step: Decimal,
    *,
    ending: Order | None = None,
    resting: list[Order] | None = None,
) -> dict[int, Decimal]:
    """What each new sell can sell, by slot: what is left of ``q`` for it, cut to the
    market's step so that all the sells together never ask for more coins than the account
    holds for the grid. The dust (base fees taken, less what earlier cuts left over) is paid
    by the first cuts; so a fee shortens the sells by itself over time, not by a step each.
    ``ending``: a resting sell that is on its way out (its rest is one of ``sells``).
    ``resting``: the bot's resting sells (``_resting_sells``), when read already."""
    if not sells:
        return {}
    pool = engine.dust
    if resting is None:
        resting = _resting_sells(bot)
    slots = {s.id: s for s in engine.slots}
    for order in (o for o in resting if ending is None or o.pk != ending.pk):
        slot = slots.get(order.slot)  # by its id; none: a shift's cancel not committed yet
        if slot is not None:
            pool += (slot.amount - slot.filled) - (order.amount - order.filled)
    amounts = {}
    for d in sorted(sells, key=lambda d: d.slot):
        amount = min(d.amount, floor_amount(d.amount + pool, step))
        pool += d.amount - amount
        amounts[d.slot] = amount
    return amounts


# --- stopping ---------------------------------------------------------------------------------


def cancel_book(bot: Bot, gw: Any) -> None:
    """Cancel every order of this bot on the exchange, then take in the fills that came
    before the cancels (an order may fill a moment before it is cancelled)."""
    for cid in (
        Order.objects.resting()
        .filter(bot=bot, kind=Order.Kind.LIMIT)
        .values_list("client_order_id", flat=True)
    ):
        gw.cancel(cid)
    # Then whatever the exchange still has of this run, the database's or not.
    for order in gw.open_orders():
        if order_ids.belongs_to(order.client_id, bot.key):
            gw.cancel(order.client_id)
    sync_fills(bot, gw, LiveCycle())


def _all_fills_taken_in(bot: Bot, gw: Any) -> None:
    """Before a stop closes the books (and sells what they hold): every order of the grid,
    now cancelled, has all its fills booked. An order whose trades the exchange lists late,
    or that it does not show yet, makes the stop wait (OrderNotVisibleYet: the written-down
    stop is finished by a later cycle), so no fill is forgotten and no sale sells coins the
    books do not have."""
    for order in Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT):
        state = gw.order_status(order.client_order_id)
        if state is None:
            first = ledger.sent_before(order.client_order_id)
            if order.status == Order.Status.OPEN or (
                first is not None and timezone.now() < first + NOT_VISIBLE_FOR
            ):
                raise OrderNotVisibleYet(
                    f"the {order.side} at {order.price} is not visible on {bot.exchange} yet"
                )
            continue  # written, never sent (or never arrived): nothing filled
        if state[1] > order.filled:
            raise OrderNotVisibleYet(
                f"the {order.side} at {order.price} filled {state[1]}, but {bot.exchange} "
                "does not list all its trades yet"
            )


def _note_partial_fills(bot: Bot) -> None:
    """An order cancelled after part of it filled: that part is in the grid's books (every
    part is booked as it fills), and a stop-loss or take-profit sells it with the rest."""
    partial = Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT, filled__gt=0)
    BotEvent.objects.bulk_create(
        [
            BotEvent(bot=bot, kind=BotEvent.Kind.CANCELLED,
                     message=f"The {o.side} at {o.price} (slot {o.slot}) had filled "
                             f"{o.filled} of {o.amount} {bot.base_asset} when it was "
                             "cancelled: that part is in the grid's books.")
            for o in partial
        ]
    )  # fmt: skip


def stop_sale_id(bot: Bot) -> str:
    return order_ids.market_order_id(bot.key, order_ids.STOP)


def pending_stop_sale(bot: Bot) -> Order | None:
    return Order.objects.filter(
        bot=bot, client_order_id=stop_sale_id(bot), status=Order.Status.PENDING
    ).first()


def halt(bot: Bot, gw: Any, *, reason: str, sell: bool = False,
         status: str = Bot.Status.STOPPED) -> None:  # fmt: skip
    """Cancel the grid on the exchange; for stop-loss and take-profit sell the bot's coins at
    market; then mark the bot stopped with ``reason``.

    The sale is written as a pending order before it is sent and sent under a fixed client
    id, so a crash or a lost answer is finished by the next cycle without selling twice; while
    it is pending the bot stays running (and sends no grid orders).
    """
    with spending_reserve():  # a stop takes risk off: it may spend the budget's spare share
        _halt(bot, gw, reason=reason, sell=sell, status=status)


def _halt(bot: Bot, gw: Any, *, reason: str, sell: bool, status: str) -> None:
    ledger.note_stopping(bot, reason=reason, sells=sell)
    # A stop written down first decides (a Stop pressed during a stop-loss still sells), and
    # a sale already sent is finished whatever the stop now: it cannot be unsent.
    sell = sell or bot.stopping_sells or pending_stop_sale(bot) is not None
    settle_trigger_buy(bot, gw)
    cancel_book(bot, gw)
    _all_fills_taken_in(bot, gw)
    _note_partial_fills(bot)
    bot.refresh_from_db()
    if sell:
        sale = pending_stop_sale(bot)
        if sale is None:
            engine = bot.engine()
            amount = sellable(bot, gw, engine.base + engine.dust)
            price = bot.last_price or engine.start_price
            if amount > 0 and (kept := ledger.below_minimum(bot, amount, price)):
                amount = ZERO  # the exchange would refuse it: the coins stay, and it is said
                BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED,
                                        message=f"Not sold at market: {kept}."[:500])  # fmt: skip
            if amount > 0:
                sale = Order.objects.create(
                    bot=bot, side=Order.Side.SELL, kind=Order.Kind.MARKET, price=price,
                    amount=amount, status=Order.Status.PENDING,
                    client_order_id=stop_sale_id(bot), reason=reason[:300],
                )  # fmt: skip
        if sale is not None:
            try:
                cid, amount = sale.client_order_id, sale.amount
                fills = send_once(
                    cid, lambda before: gw.market_sell(cid, amount, sent_before=before)
                )
            except TemporaryExchangeError:
                raise  # the cycle retries: the pending sale is finished next time
            except ExchangeError as e:
                raise LiveError(f"the stop sale failed ({e}); the grid is cancelled") from None
            record_stop_sale(bot, sale, fills, FeeValues(bot, gw))
            bot.refresh_from_db()
    ledger.halt(bot, reason=reason, status=status)


def record_stop_sale(bot: Bot, sale: Order, fills: list[ExchangeFill], values: FeeValues) -> None:
    """The sale's fills into the order, the records and the engine (stopped), at once. What
    it could not sell (less than a step) stays as the bot's dust."""
    amount, cost, fee = fill_totals(fills, values)
    fees = [values(f) for f in fills]
    if not amount:
        raise LiveError(f"{bot.exchange} did not fill the stop sale {sale.client_order_id}")
    average = cost / amount
    with transaction.atomic():
        locked = Bot.objects.select_for_update().get(pk=bot.pk)
        engine = locked.engine()
        sale.price, sale.filled, sale.fee = average, amount, fee
        sale.status, sale.filled_at = Order.Status.FILLED, timezone.now()
        sale.save(update_fields=["price", "filled", "fee", "status", "filled_at", "updated_at"])
        ExchangeFillRecord.objects.bulk_create(
            [fill_record(locked, sale, f, v) for f, v in zip(fills, fees, strict=True)],
            ignore_conflicts=True,
        )
        engine.stopped = (
            STOP_LOSS if sale.reason.startswith("stop-loss")
            else TAKE_PROFIT if sale.reason.startswith("take-profit")
            else SOLD  # its owner's choice on Stop
        )  # fmt: skip
        engine.stop_sale = MarketTrade(Side.SELL, average, amount, fee)
        engine.quote += cost - fee
        engine.dust += engine.base - amount
        engine.base = ZERO
        engine.fees_paid += fee
        engine.stop_mark = average
        locked.keep_engine(engine)
        BotEvent.objects.create(
            bot=locked, kind=BotEvent.Kind.FILLED,
            message=f"Sold {canonical(amount)} {locked.base_asset} at market at "
            f"{canonical(average)} on average for {canonical(cost)} {locked.quote_asset}; fee "
            f"{fee:.8f} {locked.quote_asset}.",
        )  # fmt: skip
        locked.status_reason = sale.reason
        locked.save(update_fields=["engine_state", "next_buy_price", "next_sell_price",
                                   "status_reason", "updated_at"])  # fmt: skip


def sellable(bot: Bot, gw: Any, held: Decimal) -> Decimal:
    """What the stop sale can sell: the bot's base, at most what the account has free (a fee
    taken in the base asset leaves a little less), to the market's step."""
    balance = gw.balances().get(bot.base_asset)
    free = balance.free if balance else ZERO
    return floor_amount(min(held, free), schema.rules_for(bot.exchange, bot.symbol).step)


ERROR_STOP = "error: "  # a written-down stop that ends in ERROR, not STOPPED


def _error(bot: Bot, reason: str) -> None:
    """Stop a bot whose exchange said something a person must see; cancel what we can. When
    the exchange is only down for now, the stop is written down and every cycle retries it."""
    try:
        with spending_reserve():
            gw = gateway(bot)
            settle_trigger_buy(bot, gw)  # a trigger buy that went out is in the books first
            cancel_book(bot, gw)
    except TemporaryExchangeError as e:
        ledger.note_stopping(bot, reason=f"{ERROR_STOP}{reason}", sells=False)
        _note_trouble(bot, f"stopping after an error; its orders are cancelled when {e} ends")
        return
    except (ExchangeError, LiveError) as e:
        reason += f" (its orders could not be cancelled: {e}; cancel them on {bot.exchange})"
    except Exception as e:  # the fills after the cancels do not fit: stop all the same
        logger.exception("bot %s: taking in its last fills failed", bot.pk)
        reason += f" (its last fills could not be booked: {type(e).__name__}: {e})"
    logger.error("bot %s stopped: %s", bot.pk, reason)
    ledger.halt(bot, reason=reason, status=Bot.Status.ERROR)


# --- a new grid on a running bot (``bots.regrid.regrid_live``, issue 17) ----------------------


def clear_for_regrid(bot: Bot, gw: Any) -> None:
    """Take the old grid off the exchange before a new one is laid: cancel every order of the
    bot there, then take in every fill that came before the cancels, so the books the new grid
    starts from are the account's (``OrderNotVisibleYet`` when the exchange does not show all
    of them yet). The rows stay as they are: only the new grid's commit replaces them."""
    cancel_book(bot, gw)
    _all_fills_taken_in(bot, gw)


def regrid_abandoned(bot: Bot, why: str) -> None:
    """A new grid that did not go through: the old grid goes on. Its orders already cancelled
    on the exchange are found missing and placed again by the next cycle, which is made to
    ask the exchange's book over REST (the user data stream told of cancels it did not ask
    for); the log says so."""
    Bot.objects.filter(pk=bot.pk).update(rest_due_at=timezone.now())
    BotEvent.objects.create(
        bot=bot, kind=BotEvent.Kind.REGRID,
        message=f"The new grid was not laid: {without_queries(why)} The old grid goes on; its "
                "orders cancelled on the exchange are placed again by the next cycle."[:500],
    )  # fmt: skip


def regrid_trade(
    bot: Bot, gw: Any, client_id: str, planned: MarketTrade | None
) -> tuple[MarketTrade | None, list[tuple[ExchangeFill, Decimal]], Decimal]:
    """The new grid's market order for the difference, sent once under ``client_id`` (written
    down first, ``send_once``). When an earlier try sent one under the id (its answer lost),
    its fills are looked up and never sent again: if it executed, it is the trade, whatever
    this try planned (the new grid's dust takes the difference). Returns the trade as it
    filled (average price, amount, fees' worth in the quote), its fills with each fee's worth,
    and the fee taken in the base coin; (None, [], 0) when no order trades."""
    fills: list[ExchangeFill] = []
    earlier = ledger.sent_before(client_id)
    if earlier is not None:
        fills = gw.market_fills(client_id, sent_before=earlier)
        if not fills:
            ledger.forget_attempt(client_id)  # it never executed: this try may send
    if not fills and planned is not None:
        send = gw.market_buy if planned.side == Side.BUY else gw.market_sell
        fills = send_once(
            client_id, lambda before: send(client_id, planned.amount, sent_before=before)
        )
    if not fills:
        if planned is None:
            return None, [], ZERO
        raise OrderRejected(f"{bot.exchange} filled nothing of the market order {client_id}")
    values = FeeValues(bot, gw)
    amount, cost, fee = fill_totals(fills, values)
    trade = MarketTrade(Side(fills[0].side), cost / amount, amount, fee)
    return trade, [(f, values(f)) for f in fills], values.base_fee(fills)


def write_regrid_orders(bot: Bot, engine: GridEngine) -> list[Order]:
    """Inside the new grid's transaction: its orders written as pending intents, the way a
    cycle writes what is missing (sells cut to what the account holds, none below the
    market's minimum); returns them, to send after the commit."""
    rules = schema.rules_for(bot.exchange, bot.symbol)
    desired = {d.client_id: d for d in engine.desired_orders(bot.key)}
    return _write_missing(bot, engine, desired, rules, buys=True)


def send_regrid_orders(bot: Bot, gw: Any, orders: list[Order], *, last: Decimal | None) -> int:
    """Send the new grid's pending orders now, as a cycle does (``_send``). What the request
    budget holds back or the exchange does not answer stays pending and goes out with the
    next cycles; a refusal is counted and retried as a cycle's is. Returns how many went."""
    try:
        return _send(bot, gw, orders, last=last)
    except TemporaryExchangeError as e:
        _note_trouble(bot, f"the new grid's orders wait for the next cycles: {e}")
    except (ExchangeError, LiveError) as e:
        logger.exception("bot %s: sending the new grid failed", bot.pk)
        _error(bot, without_queries(f"{type(e).__name__}: {e}"))
    return 0


# --- the trigger price and trailing (GRID_SPEC.md, Extensions; issue 17) ---------------------
# The engine decides, as for backtests and paper bots; these steps do what its moves mean for
# a real account, once per cycle, after the fills are booked and the risk rules looked, before
# the reconciliation that sends the grid's orders (``_run_cycle``).
#
# Trigger price: a waiting bot places nothing. When the cycle's fresh price reached the trigger,
# the engine starts there and its start buy goes out at market under the run's start id through
# the very path of a live start (``market_start_buy``: written down first, sent once, found by
# its id after a crash, never sent twice); then the started grid, the buy's row and trades and
# the log lines are committed at once, and the reconciliation places the grid. A buy an earlier
# cycle wrote down is finished whatever the price does meanwhile (and before a stop).
#
# Trailing: with the price outside the grid (it came there across the grid's outer line, the
# segment the engine walks), the engine shifts the grid as often as the price calls for. Each
# shift's one cancelled order is cancelled on the exchange first and looked up (one that
# filled before its cancel holds the move back: the fill is booked by the next cycle, and the
# engine never shifts over a part-filled slot); then the moved grid, the cancelled rows
# (reason ``trailing``) and the log lines are committed, and the reconciliation places the one
# new order each shift wants. A crash after the cancels repeats them (cancelling a cancelled
# order changes nothing). Every other order keeps its client id; every request goes through
# the gateway and its request budget.


TRAILING_FLAGS = ("trailing_up", "trailing_down")


def trigger_buy_id(bot: Bot) -> str:
    """The client id of the buy a running bot's trigger makes: the run's start buy id."""
    return order_ids.market_order_id(bot.key, order_ids.START)


def moves_due(bot: Bot, price: Decimal) -> bool:
    """Whether the trigger or a trailing shift may act at ``price``, from the bot row alone
    (its wake prices, ``Bot.keep_engine``): a quiet cycle, which otherwise only marks the bot,
    goes the whole way then. Never for a bot without a trigger or trailing; always for a
    waiting bot whose trigger buy was written down (it is finished whatever the price)."""
    state = bot.engine_state or {}
    waiting = bool(state.get("waiting"))
    if not waiting and not any(state.get("config", {}).get(k) for k in TRAILING_FLAGS):
        return False
    low, high = bot.next_buy_price, bot.next_sell_price
    if (low is not None and price <= low) or (high is not None and price >= high):
        return True
    return waiting and ledger.sent_before(trigger_buy_id(bot)) is not None


def follow_moves(bot: Bot, gw: Any, price: Decimal | None) -> bool:
    """The trigger and trailing at the cycle's price (None without a fresh one: then only a
    trigger buy already written down is finished). True when the grid changed (``bot`` is
    then reloaded, for the reconciliation that follows)."""
    state = bot.engine_state or {}
    if state.get("waiting"):
        return start_at_trigger(bot, gw, price)
    if price is not None and any(state.get("config", {}).get(k) for k in TRAILING_FLAGS):
        return shift_grid(bot, gw, price)
    return False


def start_at_trigger(bot: Bot, gw: Any, price: Decimal | None) -> bool:
    """Start a waiting grid when ``price`` has reached its trigger price, or finish a start
    whose buy an earlier cycle wrote down (see the section's text). True when it started."""
    engine = bot.engine()
    client_id = trigger_buy_id(bot)
    trigger = engine.start_price
    reached = price is not None and (
        price <= trigger if engine.wait_side == "below" else price >= trigger
    )
    if not reached and ledger.sent_before(client_id) is None:
        return False
    # The price path since the start: from where the bot began to wait to the price now.
    began = bot.start_price if bot.start_price is not None else trigger
    if not engine.check_trigger(began, price if reached and price is not None else trigger):
        return False
    triggered = engine.drain_events()
    try:
        fills = market_start_buy(bot, gw, engine, client_id)
    except OrderRejected as e:  # nothing exists under the id: a person must look
        raise LiveError(f"{bot.exchange} refused the buy at the trigger price: {e}") from None
    at = timezone.now()
    with transaction.atomic():
        locked = _locked_as_read(bot)
        if locked is None:
            return False
        rows = [trailing.event_row(locked, e, at) for e in triggered]
        bought = engine.start_buy
        if bought is not None:
            order = ledger.market_order(locked, bought, order_ids.START, at)
            order.save()
            record_start(locked, order, fills)
            cost = sum((f.price * f.amount for f, _fee in fills), Decimal(0))
            rows.append(ledger.event(
                locked, BotEvent.Kind.FILLED,
                f"Bought {canonical(bought.amount)} {locked.base_asset} at market on "
                f"{locked.exchange} at {canonical(bought.price)} on average for "
                f"{canonical(cost)} {locked.quote_asset}; fee {bought.fee:.8f} "
                f"{locked.quote_asset}.", at,
            ))  # fmt: skip
        locked.keep_engine(engine)
        risk.mark(locked, engine.equity(price if price is not None else trigger))
        locked.save(update_fields=["engine_state", "next_buy_price", "next_sell_price",
                                   "last_equity", "peak_equity", "max_drawdown",
                                   "updated_at"])  # fmt: skip
        BotEvent.objects.bulk_create(rows)
    if bought is not None:
        metrics.orders(Bot.Mode.LIVE, "placed")
    bot.refresh_from_db()
    return True


def _locked_as_read(bot: Bot) -> Bot | None:
    """The bot's row, locked in the caller's transaction; None when its engine changed since
    ``bot`` was read (another cycle moved it: the next cycle looks again)."""
    locked = Bot.objects.select_for_update().get(pk=bot.pk)
    return locked if locked.engine_state == bot.engine_state else None


def shift_grid(bot: Bot, gw: Any, price: Decimal) -> bool:
    """Trailing at ``price``: the shifts it calls for, each order they cancel cancelled on the
    exchange first, then the moved grid committed (see the section's text). True when the
    engine changed (a shift, or a word that trailing stopped)."""
    engine = bot.engine()
    if engine.is_stopped or not engine.slots:
        return False
    lines = engine.lines
    if lines[0] <= price <= lines[-1]:
        return False
    # The price left the grid across its outer line: the segment the engine walks.
    engine.trail(lines[-1] if price > lines[-1] else lines[0], price)
    events = engine.drain_events()
    if not events:
        return False
    gone = {e.cancelled.slot for e in events if e.cancelled is not None}
    rows = list(Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT, slot__in=gone))
    for row in rows:
        if not _withdrawn(bot, gw, row):
            return False
    at = timezone.now()
    with transaction.atomic():
        locked = _locked_as_read(bot)
        if locked is None:
            return False
        lines_out = [trailing.event_row(locked, e, at) for e in events]
        for row in rows:
            row.status, row.reason = Order.Status.CANCELLED, trailing.REASON
            row.save(update_fields=["status", "reason", "updated_at"])
            lines_out.append(trailing.cancelled_row(locked, row, at, on=locked.exchange))
        locked.keep_engine(engine)
        locked.save(update_fields=["engine_state", "next_buy_price", "next_sell_price",
                                   "updated_at"])  # fmt: skip
        BotEvent.objects.bulk_create(lines_out)
    metrics.orders(Bot.Mode.LIVE, "cancelled", len(rows), reason=trailing.REASON)
    bot.refresh_from_db()
    return True


def _withdrawn(bot: Bot, gw: Any, row: Order) -> bool:
    """Cancel a shift's order on the exchange and make sure none of it filled unbooked: False
    (the shift waits) when the exchange filled more of it than its row has booked."""
    cid = row.client_order_id
    if row.status == Order.Status.PENDING and ledger.sent_before(cid) is None:
        return True  # written, never sent: nothing rests on the exchange
    gw.cancel(cid)
    state = gw.order_status(cid)
    if state is None or state[1] <= row.filled:
        return True
    text = (
        f"Trailing waits: the {row.side} at {row.price} (slot {row.slot}) filled "
        f"{state[1]} on {bot.exchange} before its cancel arrived; that fill is booked first."
    )
    if bot.events.order_by("-id").values_list("message", flat=True).first() != text:
        BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED, message=text)
    return False


def settle_trigger_buy(bot: Bot, gw: Any) -> None:
    """Before a stop: a trigger buy that an earlier cycle wrote down but never booked (a crash)
    is taken in when it executed, so the stop keeps or sells its coins in the books, and is
    forgotten when the exchange proves it never did. Nothing is sent."""
    if not (bot.engine_state or {}).get("waiting"):
        return
    client_id = trigger_buy_id(bot)
    earlier = ledger.sent_before(client_id)
    if earlier is None:
        return
    if not gw.market_fills(client_id, sent_before=earlier):
        ledger.forget_attempt(client_id)
        return
    start_at_trigger(bot, gw, None)  # found by its id: booked, not sent again


def market_start_buy(
    bot: Bot, gw: Any, engine: GridEngine, client_id: str
) -> list[tuple[ExchangeFill, Decimal]]:
    """The engine's start buy (``engine.start_buy``: a start's, or a trigger's) at market under
    ``client_id``, written down first and sent once (``send_once``): a buy an
    earlier try sent is found by its id, never sent again, and is the one that counts. The
    engine takes what it really cost; returns its fills with what each fee cost in quote.
    The exchange's errors are the caller's to word."""
    planned = engine.start_buy
    earlier = ledger.sent_before(client_id)
    if planned is None and earlier is None:
        return []
    if planned is None:  # no buy wanted now, but an earlier try sent one: take it in
        fills = gw.market_fills(client_id, sent_before=earlier)
    else:
        fills = send_once(
            client_id,
            lambda before: gw.market_buy(client_id, planned.amount, sent_before=before),
        )
    values = FeeValues(bot, gw)
    amount, cost, fee = fill_totals(fills, values)
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
    engine.fees_paid += fee - (planned.fee if planned else ZERO)  # earlier runs' fees stay
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
        [fill_record(bot, order, f, fee) for f, fee in fills], ignore_conflicts=True
    )
    if fills:  # never back: a trigger's buy comes after the running bot's cursor
        bot.fill_cursor_ms = max([*(f.at_ms for f, _fee in fills), bot.fill_cursor_ms or 0])
        bot.fill_cursor_trade = next_trade_id([f for f, _fee in fills], bot.fill_cursor_trade)
        bot.save(update_fields=["fill_cursor_ms", "fill_cursor_trade"])
