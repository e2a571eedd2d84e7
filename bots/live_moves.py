"""A live bot's trigger price and trailing (GRID_SPEC.md, Extensions) on the exchange.

The engine decides, as it does for backtests and paper bots; this module does what its moves
mean for a real account, once per live cycle, after the cycle booked its fills and its risk
rules looked at the price (``live_trading._run_cycle``), before the reconciliation that sends
the grid's orders:

- **Trigger price.** A waiting bot places nothing. When the cycle's fresh price has reached
  the trigger, the engine starts there and its start buy goes out at market under the run's
  start id, through the very path of a live start (``starting.market_start_buy``: written
  down first, sent once, found by its id after a crash, never sent twice); then the started
  grid, the buy's order row and trades and the log lines are committed in one transaction,
  and the reconciliation places the grid's orders. A buy written down by an earlier cycle is
  finished whatever the price does meanwhile: the engine starts at the trigger price and
  takes that buy in.
- **Trailing.** With the price outside the grid (it came there across the grid's outer line,
  the segment the engine walks), the engine shifts the grid as often as the price calls for.
  Each shift cancels one order: it is cancelled on the exchange first and looked up (one
  that filled before its cancel holds the move back: its fill is booked by the next cycle,
  and the engine never shifts a grid with a part-filled slot); then the moved grid, the
  cancelled rows (reason ``trailing``) and the log lines are committed at once, and the
  reconciliation places the one new order each shift wants. A crash after the cancels
  repeats them (cancelling a cancelled order changes nothing) and commits then. Every other
  order keeps its client id and stays on the book.

Every request goes through the gateway, so the request budget holds these as any other order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from aibo import metrics
from bots import ledger, risk, starting, trailing
from bots.errors import LiveError
from bots.grid import order_ids
from bots.models import Bot, BotEvent, Order
from market.exchange import OrderRejected
from market.precision import canonical

FLAGS = ("trailing_up", "trailing_down")


def trigger_buy_id(bot: Bot) -> str:
    """The client id of the buy a running bot's trigger makes: the run's start buy id."""
    return order_ids.market_order_id(bot.key, order_ids.START)


def due(bot: Bot, price: Decimal) -> bool:
    """Whether the trigger or a trailing shift may act at ``price``, from the bot row alone
    (its wake prices, ``Bot.keep_engine``): a quiet cycle, which otherwise only marks the bot,
    goes the whole way then. Never for a bot without a trigger or trailing; always for a
    waiting bot whose trigger buy was written down (it is finished whatever the price)."""
    state = bot.engine_state or {}
    waiting = bool(state.get("waiting"))
    if not waiting and not any(state.get("config", {}).get(k) for k in FLAGS):
        return False
    low, high = bot.next_buy_price, bot.next_sell_price
    if (low is not None and price <= low) or (high is not None and price >= high):
        return True
    return waiting and ledger.sent_before(trigger_buy_id(bot)) is not None


def follow(bot: Bot, gw: Any, price: Decimal | None) -> bool:
    """The trigger and trailing at the cycle's price (None without a fresh one: then only a
    trigger buy already written down is finished). True when the grid changed (``bot`` is
    then reloaded, for the reconciliation that follows)."""
    state = bot.engine_state or {}
    if state.get("waiting"):
        return start_at_trigger(bot, gw, price)
    if price is not None and any(state.get("config", {}).get(k) for k in FLAGS):
        return shift(bot, gw, price)
    return False


def start_at_trigger(bot: Bot, gw: Any, price: Decimal | None) -> bool:
    """Start a waiting grid when ``price`` has reached its trigger price, or finish a start
    whose buy an earlier cycle wrote down (see the module's text). True when it started."""
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
        fills = starting.market_start_buy(bot, gw, engine, client_id)
    except OrderRejected as e:  # nothing exists under the id: a person must look
        raise LiveError(f"{bot.exchange} refused the buy at the trigger price: {e}") from None
    at = timezone.now()
    with transaction.atomic():
        locked = Bot.objects.select_for_update().get(pk=bot.pk)
        if locked.engine_state != bot.engine_state:  # changed under us: the next cycle looks
            return False
        rows = [trailing.event_row(locked, e, at) for e in triggered]
        bought = engine.start_buy
        if bought is not None:
            order = ledger.market_order(locked, bought, order_ids.START, at)
            order.save()
            starting.record_start(locked, order, fills)
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


def shift(bot: Bot, gw: Any, price: Decimal) -> bool:
    """Trailing at ``price``: the shifts it calls for, each order they cancel cancelled on the
    exchange first, then the moved grid committed (see the module's text). True when the
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
        locked = Bot.objects.select_for_update().get(pk=bot.pk)
        if locked.engine_state != bot.engine_state:  # changed under us: the next cycle looks
            return False
        lines_out = [trailing.event_row(locked, e, at) for e in events]
        for row in rows:
            row.status, row.reason = Order.Status.CANCELLED, trailing.REASON
            row.save(update_fields=["status", "reason", "updated_at"])
            lines_out.append(ledger.event(
                locked, BotEvent.Kind.CANCELLED,
                f"Cancelled the {row.side} of {row.amount} at {row.price} (slot {row.slot}) on "
                f"{locked.exchange}: trailing moved the grid.", at,
            ))  # fmt: skip
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
