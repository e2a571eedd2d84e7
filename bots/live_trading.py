"""Live bots: the same grid engine, with a real exchange account behind it (through ccxt).

A paper bot's fills come from the engine's own matching over candles; a live bot's come from
the exchange. Its cycle (``run_cycle``):

1. fetches the account's fills for the pair since the last cycle (outside any transaction);
2. applies each new fill once, in one transaction: every exchange trade is stored by its trade
   id, so a fill fetched again after a crash is recognised and never applied twice; an order
   counts as filled when its trades add up to its amount;
3. checks the risk rules against the latest price (stop-loss and take-profit cancel the grid
   and sell the bot's base at market; the daily loss limit cancels the grid);
4. reconciles the book: an order the engine wants is written as ``pending`` and committed
   *before* it is sent, then sent with its deterministic client order id and marked ``open``.
   A crash between the two leaves a pending row, and the next cycle sends it again: the
   gateway finds the order by its client id instead of placing a second one.

Nothing here holds a database transaction open across a network call.

Over 400 lines because the four steps above share one crash-safety argument; the ledger,
the risk rules and the gateways they use live in their own modules.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.crypto import UndecryptableSecret
from bots import config as schema
from bots import gateways, ledger, risk
from bots.errors import LiveError
from bots.gateways.base import ExchangeFill, OrderRequest
from bots.grid import order_ids
from bots.grid.engine import Fill, FillMismatch, GridEngine, MarketTrade, Side
from bots.grid.params import STOP_LOSS, TAKE_PROFIT
from bots.models import Bot, BotEvent, EquitySnapshot, ExchangeFillRecord, Order, Trade
from market.exchange import ExchangeError, OrderRejected, TemporaryExchangeError
from market.precision import floor_amount

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
# Fills are fetched again from this long before the last look, for trades the exchange lists
# a little late.
CURSOR_MARGIN_MS = 5 * 60_000


def gateway(bot: Bot) -> Any:
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


def quote_fee(fill: ExchangeFill, quote: str) -> Decimal:
    """The part of a fee the grid's quote balance pays: none when paid in BNB, or in the base
    asset, which Binance takes from a buyer's coins (``sell_shortfall`` accounts for that)."""
    return fill.fee if fill.fee_asset == quote else ZERO


def fill_totals(fills: list[ExchangeFill], quote: str) -> tuple[Decimal, Decimal, Decimal]:
    """(amount, cost in quote, fee paid in quote) of one order's fills."""
    amount = sum((f.amount for f in fills), ZERO)
    cost = sum((f.price * f.amount for f in fills), ZERO)
    return amount, cost, sum((quote_fee(f, quote) for f in fills), ZERO)


def start_client_id(bot: Bot) -> str:
    """The start buy's client id for the generation about to start (stable across retries)."""
    return order_ids.market_order_id(order_ids.bot_key(bot.pk, bot.generation + 1), order_ids.START)


# --- start ------------------------------------------------------------------------------------


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


def start_buy(bot: Bot, gw: Any, engine: GridEngine) -> list[ExchangeFill]:
    """Buy the start amount at market (idempotent by client id) and book what it really cost."""
    planned = engine.start_buy
    if planned is None:
        return []
    try:
        client_id = start_client_id(bot)
        fills = gw.market_buy(
            client_id, planned.amount, sent_before=ledger.market_attempt(client_id)
        )
    except OrderRejected as e:
        raise LiveError(f"{bot.exchange} refused the start buy: {e}") from None
    except ExchangeError as e:
        raise LiveError(
            f"{bot.exchange} did not confirm the start buy ({e}). Nothing was started; "
            "starting again finds that buy if it went through, and never buys twice."
        ) from None
    amount, cost, fee = fill_totals(fills, bot.quote_asset)
    if amount < planned.amount:
        raise LiveError(
            f"The start buy filled only {amount} of {planned.amount} {bot.base_asset}; nothing "
            f"was started. The {amount} {bot.base_asset} it bought stay in your account."
        )
    average = cost / amount
    engine.start_buy = MarketTrade(Side.BUY, average, amount, fee)
    engine.quote = engine.config.capital - cost - fee
    engine.fees_paid = fee
    engine.start_price = average
    for slot in engine.slots:
        if slot.acquired is not None:
            slot.acquired = average  # what the start slots' base really cost
    return fills


def record_start(bot: Bot, order: Order, fills: list[ExchangeFill]) -> None:
    """Inside start's transaction: the start buy's trades, so later fetches skip them."""
    ExchangeFillRecord.objects.bulk_create(
        [_record(bot, order, f) for f in fills], ignore_conflicts=True
    )
    if fills:
        bot.fill_cursor_ms = max(f.at_ms for f in fills)
        bot.save(update_fields=["fill_cursor_ms"])


def _record(bot: Bot, order: Order, f: ExchangeFill) -> ExchangeFillRecord:
    return ExchangeFillRecord(
        bot=bot, order=order, trade_id=f.trade_id, price=f.price, amount=f.amount, fee=f.fee,
        fee_asset=f.fee_asset, fee_quote=quote_fee(f, bot.quote_asset), at=_time(f.at_ms),
    )  # fmt: skip


# --- the cycle --------------------------------------------------------------------------------


@dataclass
class LiveCycle:
    fills: int = 0
    round_trips: int = 0
    placed: int = 0


def run_cycle(bot_id: int) -> LiveCycle | None:
    """One live cycle (under the bot's lock); None when the bot is not running. Temporary
    exchange trouble ends the cycle early with nothing half-done: the next one picks up from
    the same place. Anything a person must look at stops the bot with the reason."""
    bot = Bot.objects.select_related("credential").filter(pk=bot_id).first()
    if bot is None or not bot.is_running:
        return None
    cycle = LiveCycle()
    try:
        gw = gateway(bot)
        sync_fills(bot, gw, cycle)
        bot.refresh_from_db()
        if not bot.is_running:
            return cycle
        if bot.stopping_reason:  # a stop written down but not finished: finish it, only that
            why = bot.stopping_reason
            status = Bot.Status.ERROR if why.startswith(ERROR_STOP) else Bot.Status.STOPPED
            halt(bot, gw, reason=why.removeprefix(ERROR_STOP), sell=bot.stopping_sells,
                 status=status)  # fmt: skip
            return cycle
        stop_sale = pending_stop_sale(bot)
        if stop_sale is not None:  # a stop whose sale did not finish: finish it first
            halt(bot, gw, reason=stop_sale.reason, sell=True)
            return cycle
        if bot.engine().is_stopped:  # stopped and sold, but not yet recorded as stopped
            halt(bot, gw, reason=bot.status_reason or "stopped")
            return cycle
        fresh = mark_to_market(bot)
        if not fresh:  # the risk rules never go silent: they ask the exchange itself
            mark_to_market(bot, gw.last_trade_price())
            _note_once(bot, f"No fresh price from the market feed: the stop-loss, take-profit "
                            f"and daily loss limit use {bot.exchange}'s last trade price, and "
                            "no new buys are placed until the feed is back.")  # fmt: skip
        reason = risk.price_reason(bot)
        if reason:
            halt(bot, gw, reason=reason, sell=risk.sells_out(reason))
            return cycle
        cycle.placed = reconcile(bot, gw, buys=fresh)
    except TemporaryExchangeError as e:
        logger.warning("bot %s: %s; retrying next cycle", bot_id, e)
        _note_trouble(bot, str(e))
    except (ExchangeError, LiveError, FillMismatch, IntegrityError) as e:
        # Keys revoked, symbol delisted, an order refused, a fill that does not fit the grid:
        # a person must look. The bot stops with the reason; its orders are cancelled when the
        # exchange lets us.
        logger.exception("bot %s: live cycle failed", bot_id)
        _error(bot, _without_queries(f"{type(e).__name__}: {e}"))
    return cycle


def _without_queries(message: str) -> str:
    """ccxt's messages can carry request URLs with signed query strings: keep the path only."""
    return re.sub(r"(https?://[^\s?]+)\?\S*", r"\1", message)


def _note_trouble(bot: Bot, message: str) -> None:
    """Exchange trouble the cycle retries, on the bot's event log once (not every cycle)."""
    _note_once(bot, f"{bot.exchange} trouble, retrying every cycle: {_without_queries(message)}")


def _note_once(bot: Bot, text: str) -> None:
    """An event, unless it is already the bot's latest one."""
    text = text[:500]
    last = bot.events.order_by("-id").values_list("message", flat=True).first()
    if last != text:
        BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED, message=text)


def sync_fills(bot: Bot, gw: Any, cycle: LiveCycle) -> None:
    """Fetch the account's fills since the cursor and apply the new ones, once each."""
    asked_at = int(timezone.now().timestamp() * 1000)
    fetched = gw.fetch_fills(bot.fill_cursor_ms)
    if not fetched:
        # Nothing new: the next fetch starts a little before now, not at the last fill, so
        # it stays one request however long the grid has been quiet.
        cursor = asked_at - CURSOR_MARGIN_MS
        if bot.fill_cursor_ms is None or cursor > bot.fill_cursor_ms:
            Bot.objects.filter(pk=bot.pk).update(fill_cursor_ms=cursor)
        return
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot.pk)
        if bot.engine_state is None:
            return
        ids = [f.trade_id for f in fetched]
        seen = set(
            ExchangeFillRecord.objects.filter(bot=bot, trade_id__in=ids).values_list(
                "trade_id", flat=True
            )
        )
        book = {
            o.client_order_id: o
            for o in Order.objects.filter(
                bot=bot, client_order_id__in={f.client_id for f in fetched}
            )
        }
        engine = bot.engine()
        records: list[ExchangeFillRecord] = []
        trades: list[Trade] = []
        events: list[BotEvent] = []
        touched: dict[int, Order] = {}
        for f in fetched:
            order = book.get(f.client_id)
            if f.trade_id in seen or order is None or order.kind != Order.Kind.LIMIT:
                continue  # applied already, not this bot's, or the start / stop sale
            record = _record(bot, order, f)
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
            order.filled += f.amount
            order.fee += record.fee_quote
            touched[order.pk] = order
            if order.filled < order.amount or order.status == Order.Status.FILLED:
                continue
            order.status, order.filled_at = Order.Status.FILLED, record.at
            # A sell short by a buy's base fee sold less than the grid's amount: the coins it
            # did not sell are part of that round trip's cost, valued at the sell price.
            short = engine.q - order.amount
            trip = engine.apply_fill(
                Fill(order.slot, Side(order.side), order.price, engine.q,
                     order.fee + short * order.price)
            )  # fmt: skip
            # The grid books its line price; an order that met the market when it was sent
            # filled at a better one, and the balance keeps the difference.
            mine = [r for r in records if r.order is order] + list(order.exchange_fills.all())
            cost = sum((r.price * r.amount for r in mine), ZERO)
            at_line = order.price * order.amount
            gained = at_line - cost if order.side == Order.Side.BUY else cost - at_line
            engine.quote += gained
            cycle.fills += 1
            verb = "Bought" if order.side == Order.Side.BUY else "Sold"
            average = cost / order.amount
            better = f" (filled at {average}, {gained:+.8f} {bot.quote_asset})" if gained else ""
            events.append(BotEvent(bot=bot, kind=BotEvent.Kind.FILLED, market_time=record.at,
                                   message=f"{verb} {order.amount} {bot.base_asset} at "
                                           f"{order.price}{better} (slot {order.slot}) on "
                                           f"{bot.exchange}; fee {order.fee:.8f} "
                                           f"{bot.quote_asset}."))  # fmt: skip
            if trip is not None:
                cycle.round_trips += 1
                trade, event = ledger.round_trip_rows(bot, order, trip, record.at)
                trades.append(trade)
                events.append(event)
        ExchangeFillRecord.objects.bulk_create(records)
        Order.objects.bulk_update(
            list(touched.values()), ["filled", "fee", "status", "filled_at", "updated_at"]
        )
        Trade.objects.bulk_create(trades)
        BotEvent.objects.bulk_create(events)
        bot.fill_cursor_ms = max(f.at_ms for f in fetched)
        bot.keep_engine(engine)
        fields = ["engine_state", "next_buy_price", "next_sell_price", "fill_cursor_ms",
                  "last_equity", "updated_at"]  # fmt: skip
        if cycle.fills:
            mark = bot.last_price or engine.start_price
            risk.mark(bot, engine.equity(mark))
            fields += ["peak_equity", "max_drawdown"]
            EquitySnapshot.objects.update_or_create(
                bot=bot, at=timezone.now().replace(second=0, microsecond=0),
                defaults={"price": mark, "quote": engine.quote, "base": engine.base,
                          "equity": bot.last_equity},
            )  # fmt: skip
        bot.save(update_fields=fields)


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


def reconcile(bot: Bot, gw: Any, *, buys: bool = True) -> int:
    """Make the exchange's book the engine's: cancel what is no longer wanted, write what is
    missing as pending, then send every pending order. Returns how many were sent. Without
    ``buys`` (no fresh market price) no new buy is written or sent; sells still are."""
    engine = bot.engine()
    desired = {d.client_id: d for d in engine.desired_orders(bot.key)}
    book = list(Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT))
    on_exchange = {o.client_id for o in gw.open_orders()}
    for order in book:
        cid = order.client_order_id
        if cid not in desired:
            gw.cancel(cid)
            order.status, order.reason = Order.Status.CANCELLED, "replaced"
            order.save(update_fields=["status", "reason", "updated_at"])
        elif order.status == Order.Status.OPEN and cid not in on_exchange:
            # Gone from the book: looked up, never assumed. Filled (its trades are late),
            # or not visible yet: it is left alone and looked at again next cycle.
            state = gw.order_status(cid)
            if state is None or state != ("canceled", ZERO):
                if state is not None and state[0] == "closed":
                    _note_once(bot, f"The {order.side} at {order.price} (slot {order.slot}) "
                                    f"filled on {bot.exchange}; its trades are not in the "
                                    "account's trade list yet.")  # fmt: skip
                continue
            # Cancelled outside aibo, or by a stop that crashed before it was recorded (its
            # fills were taken in above): the grid wants it, so it is sent again.
            order.status = Order.Status.PENDING
            order.save(update_fields=["status", "updated_at"])
            BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.SKIPPED,
                                    message=f"The {order.side} at {order.price} (slot "
                                            f"{order.slot}) was no longer on {bot.exchange}; "
                                            "sending it again.")  # fmt: skip
    # Any row already under a wanted id counts (a rejected one too: ids are unique, and an
    # order the exchange refused is not sent again blindly).
    have = set(
        Order.objects.filter(bot=bot, client_order_id__in=list(desired)).values_list(
            "client_order_id", flat=True
        )
    )
    missing = [d for cid, d in desired.items() if cid not in have and (buys or d.side != Side.BUY)]
    if any(d.side == Side.SELL for d in missing):
        step = schema.rules_for(bot.exchange, bot.symbol).step
    Order.objects.bulk_create(
        [
            Order(bot=bot, slot=d.slot, side=d.side, price=d.price,
                  amount=d.amount - (sell_shortfall(bot, engine, d.slot, step)
                                     if d.side == Side.SELL else ZERO),
                  status=Order.Status.PENDING, client_order_id=d.client_id)
            for d in missing
        ]
    )  # fmt: skip
    sent = 0
    pending = Order.objects.filter(bot=bot, status=Order.Status.PENDING, kind=Order.Kind.LIMIT)
    if not buys:
        pending = pending.exclude(side=Order.Side.BUY)
    for order in pending.order_by("slot"):
        request = OrderRequest(order.client_order_id, order.side, order.price, order.amount)
        try:
            placed = gw.place(request)
        except OrderRejected as e:
            order.status, order.reason = Order.Status.REJECTED, str(e)[:300]
            order.save(update_fields=["status", "reason", "updated_at"])
            raise LiveError(
                f"{bot.exchange} refused the {order.side} at {order.price} (slot {order.slot}): {e}"
            ) from None
        order.status, order.exchange_order_id = Order.Status.OPEN, placed.exchange_id
        order.save(update_fields=["status", "exchange_order_id", "updated_at"])
        BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.PLACED,
                                message=f"Placed {order.side} {order.amount} {bot.base_asset} "
                                        f"at {order.price} (slot {order.slot}) on "
                                        f"{bot.exchange}.")  # fmt: skip
        sent += 1
    return sent


def sell_shortfall(bot: Bot, engine: GridEngine, slot: int, step: Decimal) -> Decimal:
    """How much less than the grid's amount a slot's sell can sell: the base fee the exchange
    took from the buy that filled the slot, up to the market's ``step`` (0 with fees in
    quote)."""
    last = (
        Order.objects.filter(bot=bot, slot=slot, kind=Order.Kind.LIMIT,
                             status=Order.Status.FILLED, created_at__gte=bot.started_at)
        .order_by("-filled_at", "-id").first()
    )  # fmt: skip
    if last is not None and last.side == Order.Side.BUY:
        fees = ExchangeFillRecord.objects.filter(order=last, fee_asset=bot.base_asset)
        paid = sum(fees.values_list("fee", flat=True), ZERO)
    else:  # bought by the start buy: its base fee is shared by every slot it filled
        start_id = order_ids.market_order_id(bot.key, order_ids.START)
        start = Order.objects.filter(bot=bot, client_order_id=start_id).first()
        if start is None:
            return ZERO
        fees = ExchangeFillRecord.objects.filter(order=start, fee_asset=bot.base_asset)
        paid = sum(fees.values_list("fee", flat=True), ZERO) / (start.amount / engine.q)
    if not paid:
        return ZERO
    return -floor_amount(-paid, step)  # rounded up to the step


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


def _note_partial_fills(bot: Bot) -> None:
    """An order cancelled after part of it filled: the grid books whole orders only, so the
    part that filled is named on the event log (those coins or that quote are in the
    account, outside the grid's books)."""
    partial = Order.objects.resting().filter(bot=bot, kind=Order.Kind.LIMIT, filled__gt=0)
    BotEvent.objects.bulk_create(
        [
            BotEvent(bot=bot, kind=BotEvent.Kind.CANCELLED,
                     message=f"The {o.side} at {o.price} (slot {o.slot}) had filled "
                             f"{o.filled} of {o.amount} {bot.base_asset} when it was "
                             "cancelled: that part is in your account, outside the grid's "
                             "books.")
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
    ledger.note_stopping(bot, reason=reason, sells=sell)
    cancel_book(bot, gw)
    _note_partial_fills(bot)
    bot.refresh_from_db()
    if sell:
        sale = pending_stop_sale(bot)
        if sale is None:
            amount = sellable(bot, gw, bot.engine().base)
            if amount > 0:
                price = bot.last_price or bot.engine().start_price
                sale = Order.objects.create(
                    bot=bot, side=Order.Side.SELL, kind=Order.Kind.MARKET, price=price,
                    amount=amount, status=Order.Status.PENDING,
                    client_order_id=stop_sale_id(bot), reason=reason[:300],
                )  # fmt: skip
        if sale is not None:
            try:
                sent_before = ledger.market_attempt(sale.client_order_id)
                fills = gw.market_sell(sale.client_order_id, sale.amount, sent_before=sent_before)
            except TemporaryExchangeError:
                raise  # the cycle retries: the pending sale is finished next time
            except ExchangeError as e:
                raise LiveError(f"the stop sale failed ({e}); the grid is cancelled") from None
            record_stop_sale(bot, sale, fills)
            bot.refresh_from_db()
    ledger.halt(bot, reason=reason, status=status)


def record_stop_sale(bot: Bot, sale: Order, fills: list[ExchangeFill]) -> None:
    """The sale's fills into the order, the records and the engine (stopped), at once."""
    amount, cost, fee = fill_totals(fills, bot.quote_asset)
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
            [_record(locked, sale, f) for f in fills], ignore_conflicts=True
        )
        engine.stopped = STOP_LOSS if sale.reason.startswith("stop-loss") else TAKE_PROFIT
        engine.stop_sale = MarketTrade(Side.SELL, average, amount, fee)
        engine.quote += cost - fee
        engine.base -= amount
        engine.fees_paid += fee
        engine.stop_mark = average
        locked.keep_engine(engine)
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
        cancel_book(bot, gateway(bot))
    except TemporaryExchangeError as e:
        ledger.note_stopping(bot, reason=f"{ERROR_STOP}{reason}", sells=False)
        _note_trouble(bot, f"stopping after an error; its orders are cancelled when {e} ends")
        return
    except (ExchangeError, LiveError) as e:
        reason += f" (its orders could not be cancelled: {e}; cancel them on {bot.exchange})"
    logger.error("bot %s stopped: %s", bot.pk, reason)
    ledger.halt(bot, reason=reason, status=Bot.Status.ERROR)
