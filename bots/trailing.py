"""What the engine's trigger and trailing events (GRID_SPEC.md, Extensions) make in a bot's
books: the log lines (``BotEvent`` with ``data["grid_event"]`` and the grid's outer lines, which
the bot page's log and chart read), the start buy a trigger makes, and the one order a shift
cancels. The order a shift places is the engine's wish like any other, placed by the caller's
reconciliation of ``desired_orders``. Rows are made, not saved: the caller writes them in its
one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from bots import ledger
from bots.grid import order_ids
from bots.grid.engine import (
    SHIFT_DOWN,
    SHIFT_UP,
    TRAILING_DOWN_STOPPED,
    TRAILING_UP_STOPPED,
    TRIGGERED,
    GridEvent,
)
from bots.models import Bot, BotEvent, Order
from market.precision import plain


class OpenOrders(Protocol):
    """A bot's open orders by slot (``paper_trading.Book``): what a shift cancels is taken off."""

    def pop(self, slot: int | None) -> Order | None: ...


KIND_OF = {
    TRIGGERED: BotEvent.Kind.TRIGGERED,
    SHIFT_UP: BotEvent.Kind.SHIFT,
    SHIFT_DOWN: BotEvent.Kind.SHIFT,
    TRAILING_UP_STOPPED: BotEvent.Kind.TRAILING,
    TRAILING_DOWN_STOPPED: BotEvent.Kind.TRAILING,
}
# An order a shift cancels says so (``Order.reason``).
REASON = "trailing"


def event_row(bot: Bot, event: GridEvent, at: datetime | None) -> BotEvent:
    """The log line of one engine event (not saved)."""
    row = ledger.event(bot, KIND_OF[event.kind], event.text, at)
    row.data = {"grid_event": event.kind, "price": plain(event.price)}
    if event.lowest is not None and event.highest is not None:
        row.data["lines"] = [plain(event.lowest), plain(event.highest)]
    return row


def book_events(
    bot: Bot,
    events: list[GridEvent],
    at: datetime | None,
    *,
    open_book: Callable[[], OpenOrders],
    updated: list[Order],
    created: list[Order],
) -> list[BotEvent]:
    """A paper bot's rows for the engine's events of one candle: the trigger's start buy (a
    market order, filled), and for each shift its cancelled order, taken off ``open_book()``
    (an order created earlier in the same walk is cancelled before it is ever written).
    Returns the log lines."""
    rows: list[BotEvent] = []
    for event in events:
        rows.append(event_row(bot, event, at))
        if event.kind == TRIGGERED and event.start_buy is not None:
            created.append(ledger.market_order(bot, event.start_buy, order_ids.START, at))
        gone = event.cancelled
        if gone is None:
            continue
        order = open_book().pop(gone.slot)
        if order is None:  # the slot's order was never placed: nothing rests to cancel
            continue
        order.status, order.reason = Order.Status.CANCELLED, REASON
        if order.pk:
            updated.append(order)
        rows.append(cancelled_row(bot, order, at))
    return rows


def cancelled_row(bot: Bot, order: Order, at: datetime | None, *, on: str = "") -> BotEvent:
    """The log line of an order a shift cancelled (``on``: the exchange, for a live bot)."""
    where = f" on {on}" if on else ""
    return ledger.event(bot, BotEvent.Kind.CANCELLED,
                        f"Cancelled the {order.side} of {order.amount} at {order.price} (slot "
                        f"{order.slot}){where}: trailing moved the grid.", at)  # fmt: skip
