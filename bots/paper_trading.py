"""Paper bots: the exchange is the engine's own matching over the market feed's candles.

A paper cycle walks the candles that closed since the last one through ``GridRun`` (the
backtest's own walk, resumed from the saved peak, drawdown and previous close), so a paper
run ends exactly where the backtest of its candles does. The work has two steps, shared by a
bot's own cycle (``bots.cycle``) and the batched application of a candle to many bots
(``bots.batch``): ``walk_candles`` computes what happened and which rows that makes (reading
the bot's open orders only if a fill needs them), ``write`` persists one or many walks with
one statement per table. Everything is written in the caller's one transaction: a crash
anywhere leaves the previous state whole and the next cycle redoes the same work,
deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from aibo import metrics
from bots import bulk, ledger, risk, trailing
from bots.grid import order_ids
from bots.grid.backtest import GridRun
from bots.grid.engine import TRIGGERED, Side
from bots.models import Bot, BotEvent, EquitySnapshot, Order, Trade
from market.models import Candle

# A cycle walks at most this many new candles; a bot that fell further behind catches up over
# the next cycles (each of which is scheduled at once while it is behind).
CYCLE_BATCH = 2_000
TIMEFRAME = "1m"
CandleRow = tuple[datetime, Decimal, Decimal, Decimal, Decimal]


@dataclass
class PaperCycle:
    candles: int = 0
    fills: int = 0
    round_trips: int = 0
    behind: bool = False  # more candles wait: run again at once
    running: bool = True


@dataclass
class Walk:
    """What walking candles did to one bot: its new state (on ``bot``, not saved) and the rows
    to write. ``walk_candles`` makes it; ``write`` persists it."""

    bot: Bot
    result: PaperCycle
    updated: list[Order] = field(default_factory=list)  # rows whose status changed
    created: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    events: list[BotEvent] = field(default_factory=list)
    snapshot: EquitySnapshot | None = None
    halt_reason: str | None = None


def new_candles(bot: Bot) -> list[CandleRow]:
    return candles_after(bot.exchange, bot.symbol, bot.cursor)


def candles_after(exchange: str, symbol: str, cursor: datetime | None) -> list[CandleRow]:
    """The candles after ``cursor``, oldest first: one more than a cycle walks, so a walk
    knows whether more wait."""
    qs = Candle.objects.filter(exchange=exchange, symbol=symbol, timeframe=TIMEFRAME)
    if cursor is not None:
        qs = qs.filter(open_time__gt=cursor)
    return list(
        qs.order_by("open_time").values_list("open_time", "open", "high", "low", "close")[
            : CYCLE_BATCH + 1
        ]
    )


class Book:
    """A bot's open orders by slot, read as plain rows: an ``Order`` is made only for one the
    walk fills or replaces (every slot rests an order; a candle changes few of them, and
    making a model instance costs more than walking a candle)."""

    def __init__(self) -> None:
        self._rows: dict[int | None, tuple[Any, ...]] = {}
        self._orders: dict[int | None, Order] = {}

    @classmethod
    def of_bots(cls, bot_ids: list[int]) -> dict[int, Book]:
        """The books of these bots, in one query (a bot with no open order has an empty one)."""
        books = {pk: cls() for pk in bot_ids}
        rows = Order.objects.filter(bot_id__in=bot_ids, status=Order.Status.OPEN)
        for row in rows.order_by().values_list(*_BOOK_COLUMNS):
            books[row[_BOT]]._rows[row[_SLOT]] = row
        return books

    def client_id(self, slot: int | None) -> str | None:
        """The client order id resting in ``slot``, or None."""
        if slot in self._orders:
            return self._orders[slot].client_order_id
        row = self._rows.get(slot)
        return None if row is None else row[_CLIENT_ID]

    def pop(self, slot: int | None) -> Order | None:
        """The order resting in ``slot``, taken off the book (the walk filled or replaced it)."""
        if slot in self._orders:
            return self._orders.pop(slot)
        row = self._rows.pop(slot, None)
        # As the ORM loads it: the fields not read stay deferred (never written back blank).
        return None if row is None else Order.from_db("default", _BOOK_COLUMNS, row)

    def place(self, order: Order) -> None:
        """An order the walk placed in its slot (not saved yet)."""
        self._rows.pop(order.slot, None)
        self._orders[order.slot] = order


def walk(bot: Bot, candles: list[CandleRow]) -> PaperCycle:
    """Walk candles through the engine (the backtest's own walk) and persist the outcome."""
    done = walk_candles(bot, candles)
    write([done])
    return done.result


def walk_candles(bot: Bot, candles: list[CandleRow], *, book: Book | None = None) -> Walk:
    """Walk candles through the engine and say what to write; writes nothing.

    ``book`` is the bot's open orders by slot when the caller read them already (a batch reads
    those of every bot the candle crossed at once); without it they are read here, and only
    when a fill needs them (idle: never). The bot row takes its new state (not saved)."""
    behind = len(candles) > CYCLE_BATCH
    candles = candles[:CYCLE_BATCH]
    engine = bot.engine()
    run = GridRun(
        engine,
        peak=bot.peak_equity or bot.capital,
        max_drawdown=bot.max_drawdown,
        prev_close=bot.last_price,
    )

    def open_book() -> Book:
        nonlocal book
        if book is None:
            book = Book.of_bots([bot.pk])[bot.pk]
        return book

    # Fills so far per slot, by the slot's id (a trailing shift or the trigger adds slots).
    seqs = {s.id: s.seq for s in engine.slots}
    done = Walk(bot, PaperCycle(candles=len(candles), behind=behind))
    result, updated, created, events = done.result, done.updated, done.created, done.events
    moved = False  # the trigger or a trailing shift changed the grid's orders
    at = bot.cursor
    for at, o, h, low, c in candles:
        risk.roll_day(bot, at.date(), bot.last_equity)
        trips_before = len(engine.round_trips)
        fills = run.step(o, h, low, c)
        trips = iter(engine.round_trips[trips_before:])
        # The engine's moves (GRID_SPEC.md, Extensions): the trigger comes before the candle's
        # fills, a shift after the fills of its segment; a shift's cancelled order is the one
        # resting after the fills (a slot filled first has none left on the book).
        moved_now = engine.drain_events()
        moved = moved or bool(moved_now)
        book_rows = {"open_book": open_book, "updated": updated, "created": created}
        triggered = [e for e in moved_now if e.kind == TRIGGERED]
        events += trailing.book_events(bot, triggered, at, **book_rows)
        for fill in fills:
            seq = seqs.get(fill.slot, 0)
            seqs[fill.slot] = seq + 1
            cid = order_ids.client_order_id(bot.key, fill.slot, fill.side, fill.price, seq)
            order = open_book().pop(fill.slot)
            if order is None or order.client_order_id != cid:
                # Placed and filled within this walk (or the book lagged): record it as both.
                if order is not None:
                    order.status, order.reason = Order.Status.CANCELLED, "replaced"
                    updated.append(order)
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
                updated.append(order)
            verb = "Bought" if fill.side == Side.BUY else "Sold"
            events.append(ledger.event(bot, BotEvent.Kind.FILLED,
                                 f"{verb} {fill.amount} {bot.base_asset} at {fill.price} "
                                 f"(slot {fill.slot}); fee {fill.fee:.8f} {bot.quote_asset}.",
                                 at))  # fmt: skip
            if fill.side == Side.SELL:
                trade, event = ledger.round_trip_rows(bot, order, next(trips), at)
                done.trades.append(trade)
                events.append(event)
            result.fills += 1
        shifts = [e for e in moved_now if e.kind != TRIGGERED]
        events += trailing.book_events(bot, shifts, at, **book_rows)
        result.round_trips += len(engine.round_trips) - trips_before
        bot.last_equity, bot.last_price = run.equity, c
        bot.cursor = at
        if engine.is_stopped:
            sale = engine.stop_sale
            if sale is not None and sale.amount:
                created.append(ledger.market_order(bot, sale, engine.stopped or order_ids.STOP, at))
            done.halt_reason = risk.stopped_words(engine, bot)
            break
        done.halt_reason = risk.daily_loss_reason(bot, run.equity) or None
        if done.halt_reason is not None:
            break

    bot.peak_equity, bot.max_drawdown = run.peak, run.max_drawdown
    # New resting orders for the slots whose order filled or that a shift or the trigger made
    # (placed after the walk). Without either the desired orders are the ones already resting.
    if (result.fills or moved) and not engine.is_stopped and done.halt_reason is None:
        for desired in engine.desired_orders(bot.key):
            resting = open_book().client_id(desired.slot)
            if resting == desired.client_id:
                continue
            if resting is not None:
                replaced = open_book().pop(desired.slot)
                assert replaced is not None
                replaced.status, replaced.reason = Order.Status.CANCELLED, "replaced"
                updated.append(replaced)
            order = ledger.open_order(bot, desired)
            created.append(order)
            open_book().place(order)
            events.append(ledger.event(bot, BotEvent.Kind.PLACED,
                                 f"Placed {desired.side} {desired.amount} "
                                 f"{bot.base_asset} at {desired.price} (slot "
                                 f"{desired.slot}).", at))  # fmt: skip
    bot.keep_engine(engine)
    if result.fills or moved or done.halt_reason is not None or _snapshot_due(at):
        done.snapshot = EquitySnapshot(bot=bot, at=at, price=bot.last_price, quote=engine.quote,
                                       base=engine.base, equity=bot.last_equity)  # fmt: skip
    return done


def write(walks: list[Walk]) -> None:
    """Persist walks (one bot's, or a batch's) in the caller's transaction: one statement per
    table whatever the number of bots; a bot the walk stopped also closes its books. One bot's
    rows go through Django's bulk methods, a batch's through ``bots.bulk`` (faster to build and
    send for hundreds of rows)."""
    now = timezone.now()
    many = len(walks) > 1
    updated = [o for w in walks for o in w.updated]
    for order in updated:  # a bulk update skips auto_now: the orders socket reads updated_at
        order.updated_at = now
    bulk.update_rows(Order, updated, ORDER_FIELDS, many=many)
    # Before the new orders: a slot's replaced order leaves the book before its successor.
    created = [o for w in walks for o in w.created]
    bulk.insert_rows(Order, created, many=many)
    metrics.orders(Bot.Mode.PAPER, "placed", len(created))
    bulk.insert_rows(Trade, [t for w in walks for t in w.trades], many=many)
    bulk.insert_rows(BotEvent, [e for w in walks for e in w.events], many=many)
    snapshots = [w.snapshot for w in walks if w.snapshot is not None]
    bulk.insert_rows(EquitySnapshot, snapshots, ignore_conflicts=True, many=many)
    for w in walks:
        if w.halt_reason is not None:
            ledger.close_books(w.bot, reason=w.halt_reason, status=Bot.Status.STOPPED,
                               at=w.bot.cursor)  # fmt: skip
            w.result.running = False
    if not many:  # Bot.save: every writer of one bot passes there
        walks[0].bot.save(update_fields=CYCLE_FIELDS)
        return
    for w in walks:
        w.bot.updated_at = now
    bulk.update_rows(Bot, [w.bot for w in walks], CYCLE_FIELDS)


# What a walk changes on an order it fills or replaces.
ORDER_FIELDS = ["status", "filled", "fee", "filled_at", "reason", "updated_at"]
# What a cycle changes on the bot row: saving only these keeps the cycle's write small.
CYCLE_FIELDS = [
    "engine_state", "next_buy_price", "next_sell_price", "cursor", "last_price", "last_equity",
    "peak_equity", "max_drawdown", "day", "day_open_equity", "status", "status_reason",
    "stopped_at", "chain_token", "updated_at",
]  # fmt: skip
# Equity is marked at every candle for the drawdown; the stored series (charts, sparklines)
# keeps a point per this many market minutes, and one at every fill.
SNAPSHOT_MINUTES = 15


# What a walk reads of the open orders (the model's column order, as ``Model.from_db`` wants).
_BOOK_READ = {"id", "bot_id", "slot", "side", "price", "amount", "client_order_id", *ORDER_FIELDS}
_BOOK_READ.discard("updated_at")  # written, not read
_BOOK_COLUMNS = [f.attname for f in Order._meta.concrete_fields if f.attname in _BOOK_READ]
_BOT, _SLOT, _CLIENT_ID = (_BOOK_COLUMNS.index(n) for n in ("bot_id", "slot", "client_order_id"))


def _snapshot_due(at: datetime) -> bool:
    return (int(at.timestamp()) // 60) % SNAPSHOT_MINUTES == 0
