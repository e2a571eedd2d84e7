"""The grid engine: GRID_SPEC.md in code. Stdlib only: no Django, no ORM, no I/O.

Everything is ``Decimal`` and exact: prices are on the tick, amounts on the step, and the
arithmetic runs in a context that raises instead of rounding (``decimal.Inexact``), so a
backtest, a paper run and a live run agree to the last digit. The engine is deterministic:
the same config, start price and price path always give the same fills.

A bot persists its engine with ``to_dict()`` (JSON-safe) and rebuilds it every cycle with
``from_dict()``. Backtests and paper runs feed it candles (``walk_candle``); live bots feed it
the exchange's fills (``apply_fill``), which must match a resting order exactly.

Over 400 lines because ``GridEngine`` is one state machine: its slots, matching, stops and
serialisation share invariants that read best in one class. Its parameters (``GridConfig``,
the line maths) live beside it in ``params.py``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from bots.grid.order_ids import client_order_id
from bots.grid.params import (
    EXACT,
    STOP_LOSS,
    TAKE_PROFIT,
    ZERO,
    GridConfig,
    GridError,
    InvalidGrid,
    SlotState,
    StopReason,
    to_decimal,
)
from market.precision import round_price

# The engine's own: fills, orders, the state machine. Its parameters are ``bots.grid.params``
# (GridConfig, InvalidGrid, the price lines), imported here for its callers too.


class FillMismatch(GridError):
    """A fill that matches no resting order: applying it would corrupt the engine's state."""


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


# --- orders, fills, round trips ----------------------------------------------------------------


@dataclass(frozen=True)
class DesiredOrder:
    """The one order a slot wants resting on the book."""

    slot: int
    side: Side
    price: Decimal
    amount: Decimal
    seq: int = 0
    client_id: str = ""


@dataclass(frozen=True)
class Fill:
    """A grid order that filled, in full; ``fee`` is in quote."""

    slot: int
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal


@dataclass(frozen=True)
class RoundTrip:
    """A sell that closed a slot's buy: ``profit = q*(sell-buy) - fees``."""

    slot: int
    buy_price: Decimal  # the acquisition price: a line, or P0 for slots bought at the start
    sell_price: Decimal
    amount: Decimal
    profit: Decimal
    fees: Decimal


@dataclass(frozen=True)
class MarketTrade:
    """The start buy, or the stop-loss / take-profit sale."""

    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal


@dataclass
class Slot:
    state: SlotState
    acquired: Decimal | None = None  # price paid for the base a BASE slot holds
    seq: int = 0  # fills on this slot so far: part of the resting order's client id
    # Live fills come in parts: how much of the slot's resting order has filled so far, and
    # how often a partly filled order was cancelled and its remainder sent anew (a new id).
    filled: Decimal = ZERO
    part: int = 0
    # The slot's own id, for life: its orders (``Fill.slot``, client ids, ``Order.slot``) carry
    # it, so a trailing shift changes one slot's order and renumbers none. The start's slots
    # are numbered by position; a slot a shift makes takes the engine's next unused id.
    id: int = 0
    # Its orders' amount: the start's q, or the q' of the trailing shift that made it.
    amount: Decimal = ZERO


# What the engine did besides filling orders (GRID_SPEC.md, Extensions), for the bot's log.
TRIGGERED = "triggered"
SHIFT_UP = "shift_up"
SHIFT_DOWN = "shift_down"
TRAILING_UP_STOPPED = "trailing_up_stopped"
TRAILING_DOWN_STOPPED = "trailing_down_stopped"


@dataclass(frozen=True)
class GridEvent:
    """A trigger, a trailing shift, or why trailing stopped: ``text`` says it in one sentence.

    A shift cancels one order (``cancelled``) and places one (``placed``, on the slot
    ``placed_slot``: ``resting_order(placed_slot, key)`` while it rests). Their client ids are
    left empty: the engine knows no bot key. ``lowest``/``highest`` are the grid's outer lines
    after a trigger or a shift.
    """

    kind: str
    text: str
    price: Decimal  # where the price path was: the end of the segment that did it
    cancelled: DesiredOrder | None = None
    placed_slot: int | None = None
    placed: DesiredOrder | None = None
    start_buy: MarketTrade | None = None
    lowest: Decimal | None = None
    highest: Decimal | None = None


def _trade_dict(t: MarketTrade | None) -> dict[str, str] | None:
    if t is None:
        return None
    return {"side": t.side.value, "price": str(t.price), "amount": str(t.amount), "fee": str(t.fee)}


def _trade_from(d: dict[str, str] | None) -> MarketTrade | None:
    if d is None:
        return None
    return MarketTrade(
        Side(d["side"]), Decimal(d["price"]), Decimal(d["amount"]), Decimal(d["fee"])
    )


# --- the engine --------------------------------------------------------------------------------


class GridEngine:
    """One grid's state: slots, balances and statistics, moved by fills.

    ``round_trips`` holds the round trips closed since this object was built (a persisted
    bot stores them as rows); ``total_trades``, ``wins`` and ``grid_profit`` cover the whole
    run and survive ``to_dict``/``from_dict``.
    """

    def __init__(
        self,
        config: GridConfig,
        *,
        lines: list[Decimal],
        q: Decimal,
        slots: list[Slot],
        quote: Decimal,
        base: Decimal,
        start_price: Decimal,
        start_buy: MarketTrade | None = None,
    ) -> None:
        self.config = config
        self.lines = lines
        self.q = q
        self.slots = slots
        self.quote = quote
        self.base = base
        self.start_price = start_price
        self.start_buy = start_buy
        self.fills = 0
        self.total_trades = 0
        self.wins = 0
        self.grid_profit = ZERO
        self.fees_paid = start_buy.fee if start_buy else ZERO
        self.round_trips: list[RoundTrip] = []
        self.stopped: StopReason | None = None
        self.stop_sale: MarketTrade | None = None
        self.stop_mark: Decimal | None = None  # the price equity is marked at once stopped
        # Base the account holds beyond what the BASE slots count (negative: short of it).
        # Live only: a fee taken in the base coin, and a sell cut to the market's step, move
        # it; a sell takes what it can of it, so fees shorten sells by themselves, not a step.
        self.dust = ZERO
        self._stop_price = config.stop_price
        self._take_profit = config.take_profit
        self._fee = config.fee
        # Extensions (GRID_SPEC.md): "below"/"above" while waiting for the trigger price (no
        # slots yet), the trailing shifts so far, and why trailing up stopped for good.
        self.wait_side: str | None = None
        self.shifts_up = 0
        self.shifts_down = 0
        self.up_stopped = ""
        # A limit that blocked a shift is logged once (again only after the grid moved).
        self.up_limit_noted = False
        self.down_limit_noted = False
        self.next_slot_id = len(slots)
        self.events: list[GridEvent] = []
        self._pos = {s.id: i for i, s in enumerate(slots)}

    @classmethod
    def start(cls, config: GridConfig, p0: Decimal) -> GridEngine:
        """Lay out the slots at start price ``p0`` and make the start market buy.

        With a trigger price other than ``p0`` the engine waits instead (``waiting``): no
        slots, no orders, the capital in quote, until the price path reaches the trigger.
        """
        p0 = to_decimal(p0)
        trigger = config.trigger_price
        if trigger is not None and p0 != trigger:
            if not p0.is_finite() or p0 <= 0:
                raise InvalidGrid(f"the start price must be above 0, not {p0}")
            q = config.order_amount(trigger)  # the capital must do at the price it starts at
            engine = cls(
                config,
                lines=list(config.lines),
                q=q,
                slots=[],
                quote=config.capital,
                base=ZERO,
                start_price=trigger,
            )
            engine.wait_side = "below" if trigger < p0 else "above"
            return engine
        q = config.order_amount(p0)  # validates p0 and the capital
        slots, quote, base, start_buy = _lay_out(config, p0, q)
        return cls(
            config,
            lines=list(config.lines),
            q=q,
            slots=slots,
            quote=quote,
            base=base,
            start_price=p0,
            start_buy=start_buy,
        )

    # --- queries -------------------------------------------------------------------------------

    @property
    def is_stopped(self) -> bool:
        return self.stopped is not None

    @property
    def waiting(self) -> bool:
        """Waiting for the trigger price: nothing placed yet (GRID_SPEC.md, Extensions)."""
        return self.wait_side is not None

    def index_of(self, slot_id: int) -> int:
        """The position (in ``slots``, and of its lower line in ``lines``) of slot ``slot_id``."""
        try:
            return self._pos[slot_id]
        except KeyError:
            raise FillMismatch(f"no slot {slot_id}: the grid has {len(self.slots)} slots") from None

    def slot(self, slot_id: int) -> Slot:
        return self.slots[self.index_of(slot_id)]

    @property
    def stop_price(self) -> Decimal | None:
        return self._stop_price

    @property
    def win_rate(self) -> Decimal:
        """Share of round trips with profit > 0 (0 when none)."""
        if not self.total_trades:
            return ZERO
        return Decimal(self.wins) / Decimal(self.total_trades)

    def equity(self, mark: Decimal) -> Decimal:
        with localcontext(EXACT):
            if self.dust:
                return self.quote + (self.base + self.dust) * mark
            return self.quote + self.base * mark

    def resting_order(self, slot: int, bot_key: str = "") -> DesiredOrder:
        """The order slot ``slot`` (its id) rests."""
        return self._order_at(self.index_of(slot), bot_key)

    def _order_at(self, i: int, bot_key: str = "") -> DesiredOrder:
        s = self.slots[i]
        if s.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[i]
        else:
            side, price = Side.SELL, self.lines[i + 1]
        cid = client_order_id(bot_key, s.id, side, price, s.seq, s.part)
        return DesiredOrder(s.id, side, price, s.amount - s.filled, s.seq, cid)

    def desired_orders(self, bot_key: str = "") -> list[DesiredOrder]:
        """One order per slot while running, in price order; none once stopped or waiting."""
        if self.stopped:
            return []
        return [self._order_at(i, bot_key) for i in range(len(self.slots))]

    @property
    def next_buy_price(self) -> Decimal | None:
        """The highest resting buy (None when there is none or the grid stopped)."""
        if self.stopped:
            return None
        slots = self.slots
        for i in range(len(slots) - 1, -1, -1):
            if slots[i].state == SlotState.QUOTE:
                return self.lines[i]
        return None

    @property
    def next_sell_price(self) -> Decimal | None:
        """The lowest resting sell (None when there is none or the grid stopped)."""
        if self.stopped:
            return None
        for i, s in enumerate(self.slots):
            if s.state == SlotState.BASE:
                return self.lines[i + 1]
        return None

    def segment_fills(self, a: Decimal, b: Decimal) -> list[Fill]:
        """The resting orders a move from ``a`` to ``b`` fills, in order; changes nothing.

        Falling: buys with ``b <= price <= a``, highest first. Rising: sells with
        ``a <= price <= b``, lowest first. A move of zero length is neither, and fills nothing.
        """
        if self.stopped or a == b or not self.slots:
            return []
        lines, fee, slots = self.lines, self._fee, self.slots
        out = []
        with localcontext(EXACT):
            if b < a:
                # Only lines within [b, a] can fill: bisect instead of scanning every slot.
                for i in range(bisect_right(lines, a) - 1, bisect_left(lines, b) - 1, -1):
                    if i < len(slots) and slots[i].state == SlotState.QUOTE:
                        s, p = slots[i], lines[i]
                        out.append(Fill(s.id, Side.BUY, p, s.amount, fee * p * s.amount))
            else:
                for k in range(max(bisect_left(lines, a), 1), bisect_right(lines, b)):
                    s = slots[k - 1]
                    if s.state == SlotState.BASE:
                        p = lines[k]
                        out.append(Fill(s.id, Side.SELL, p, s.amount, fee * p * s.amount))
        return out

    # --- state changes -------------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> RoundTrip | None:
        """Apply one fill of a resting order; returns the round trip a sell closes.

        Raises ``FillMismatch`` (a ValueError), changing nothing, unless the fill is exactly
        the slot's resting order: same side, price and amount. The quote balance moves by
        the fill's own ``fee``; round-trip profit uses the configured rate (GRID_SPEC.md).
        """
        slot = self._resting_slot(fill)
        if fill.amount != slot.amount:
            raise FillMismatch(
                f"fill {fill.side} {fill.amount} @ {fill.price} on slot {fill.slot} does not "
                f"match its resting order's amount {slot.amount}"
            )
        q = slot.amount
        with localcontext(EXACT):
            notional = fill.price * q
            self.fills += 1
            self.fees_paid += fill.fee
            slot.seq += 1
            if fill.side == Side.BUY:
                self.quote = self.quote - notional - fill.fee
                self.base += q
                slot.state, slot.acquired = SlotState.BASE, fill.price
                return None
            acquired = slot.acquired
            assert acquired is not None  # a BASE slot always knows what it paid
            self.quote = self.quote + notional - fill.fee
            self.base -= q
            slot.state, slot.acquired = SlotState.QUOTE, None
            fees = self._fee * q * fill.price + self._fee * q * acquired
            trip = RoundTrip(
                fill.slot, acquired, fill.price, q, notional - acquired * q - fees, fees
            )
            self.total_trades += 1
            self.wins += trip.profit > 0
            self.grid_profit += trip.profit
        self.round_trips.append(trip)
        return trip

    def apply_fills(self, fills: list[Fill]) -> list[RoundTrip]:
        trips = []
        for f in fills:
            trip = self.apply_fill(f)
            if trip is not None:
                trips.append(trip)
        return trips

    # --- live fills, which come in parts --------------------------------------------------------

    def book_part(self, fill: Fill) -> None:
        """Part of a slot's resting order filled: the quote and base move now, by the part and
        its ``fee`` (in quote); the slot turns only when its order is done (``complete``).

        Raises ``FillMismatch``, changing nothing, unless the part is of the slot's resting
        order (same side and price) and no more than what is left of it.
        """
        slot = self._resting_slot(fill)
        if not ZERO < fill.amount <= slot.amount - slot.filled:
            raise FillMismatch(
                f"a part of {fill.amount} on slot {fill.slot} does not fit its resting order "
                f"({slot.filled} of {slot.amount} filled already)"
            )
        with localcontext(EXACT):
            notional = fill.price * fill.amount
            self.fees_paid += fill.fee
            slot.filled += fill.amount
            if fill.side == Side.BUY:
                self.quote = self.quote - notional - fill.fee
                self.base += fill.amount
            else:
                self.quote = self.quote + notional - fill.fee
                self.base -= fill.amount

    def complete(self, slot_id: int) -> RoundTrip | None:
        """The slot's resting order is done (its parts booked): the slot turns, as a whole fill
        would turn it. What of ``q`` the order did not trade (a sell cut by the dust, a
        remainder too small to send) moves between the slot's base and the dust, so the books
        keep the account's real coins; the round trip is the grid's, on ``q`` (GRID_SPEC.md)."""
        if self.stopped:
            raise FillMismatch(f"slot {slot_id} has no filled part to complete")
        slot_index = self.index_of(slot_id)
        slot = self.slots[slot_index]
        if not slot.filled:
            raise FillMismatch(f"slot {slot_id} has no filled part to complete")
        q, rest = slot.amount, slot.amount - slot.filled
        with localcontext(EXACT):
            self.fills += 1
            slot.seq += 1
            slot.filled, slot.part = ZERO, 0
            if slot.state == SlotState.QUOTE:
                price = self.lines[slot_index]
                self.base += rest
                self.dust -= rest
                slot.state, slot.acquired = SlotState.BASE, price
                return None
            price = self.lines[slot_index + 1]
            self.base -= rest
            self.dust += rest
            acquired = slot.acquired
            assert acquired is not None
            slot.state, slot.acquired = SlotState.QUOTE, None
            fees = self._fee * q * price + self._fee * q * acquired
            trip = RoundTrip(slot_id, acquired, price, q, q * (price - acquired) - fees, fees)
            self.total_trades += 1
            self.wins += trip.profit > 0
            self.grid_profit += trip.profit
        self.round_trips.append(trip)
        return trip

    def reissue(self, slot_id: int) -> None:
        """The slot's order was cancelled or expired on the exchange (after part of it filled,
        or none): what is left of it goes out under a new client id, so an id is sent once
        (the exchange keeps the old one, closed, with its fills)."""
        if self.stopped:
            raise FillMismatch(f"the grid has stopped ({self.stopped}); no order rests")
        self.slot(slot_id).part += 1

    def take_base_fee(self, amount: Decimal, value: Decimal) -> None:
        """A fee the exchange took in the base coin (from a buy's coins): the dust pays it;
        ``value`` is its worth in quote, for the fees paid."""
        with localcontext(EXACT):
            self.dust -= amount
            self.fees_paid += value

    def _resting_slot(self, fill: Fill) -> Slot:
        if self.stopped:
            raise FillMismatch(f"the grid has stopped ({self.stopped}); no order rests")
        if self.waiting:
            raise FillMismatch("the grid waits for its trigger price; no order rests")
        i = self.index_of(fill.slot)
        slot = self.slots[i]
        if slot.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[i]
        else:
            side, price = Side.SELL, self.lines[i + 1]
        if (fill.side, fill.price) != (side, price):
            raise FillMismatch(
                f"fill {fill.side} @ {fill.price} on slot {fill.slot} does not match its "
                f"resting order {side} @ {price}"
            )
        return slot

    def check_stops(self, a: Decimal, b: Decimal) -> StopReason | None:
        """After the fills of segment a -> b: stop-loss on a fall to the stop price,
        take-profit on a rise to the take-profit price. Returns the reason if it stopped."""
        if self.stopped or self.waiting or a == b:
            return None
        if b < a:
            if self._stop_price is not None and b <= self._stop_price:
                self._liquidate(self._stop_price, STOP_LOSS)
        elif self._take_profit is not None and b >= self._take_profit:
            self._liquidate(self._take_profit, TAKE_PROFIT)
        return self.stopped

    def _liquidate(self, price: Decimal, reason: StopReason) -> None:
        """Cancel every order (they are only implied by the slots) and sell all base."""
        with localcontext(EXACT):
            amount = self.base
            fee = self._fee * price * amount
            self.stop_sale = MarketTrade(Side.SELL, price, amount, fee)
            self.quote = self.quote + price * amount - fee
            self.base = ZERO
            self.fees_paid += fee
        self.stopped = reason
        self.stop_mark = price

    # --- trigger price and trailing (GRID_SPEC.md, Extensions) -----------------------------------

    def check_trigger(self, a: Decimal, b: Decimal) -> bool:
        """While waiting: whether segment a -> b reaches the trigger price (a fall to it when it
        was below the price at the start, a rise to it when above); if so, start there: lay out
        the slots at ``P0 = trigger`` and make the start buy at it."""
        if self.wait_side is None or a == b:
            return False
        trigger = self.start_price
        below = self.wait_side == "below"
        if not (b < a and b <= trigger if below else b > a and b >= trigger):
            return False
        self.slots, self.quote, self.base, self.start_buy = _lay_out(self.config, trigger, self.q)
        self._pos = {s.id: i for i, s in enumerate(self.slots)}
        self.next_slot_id = len(self.slots)
        if self.start_buy is not None:
            self.fees_paid += self.start_buy.fee
        self.wait_side = None
        bought = self.start_buy
        cfg = self.config
        what = (
            f"bought {bought.amount} {cfg.base_asset} at {trigger}"
            if bought
            else "nothing to buy (every line is below it)"
        )
        self._event(
            TRIGGERED,
            f"The price reached the trigger price {trigger} ({b}): the grid started there; {what}.",
            b,
            start_buy=bought,
        )
        return True

    def trail(self, a: Decimal, b: Decimal) -> None:
        """After the fills and the stops of segment a -> b: trailing up on a rise, trailing down
        on a fall, as many shifts as the segment's end calls for."""
        if self.stopped or self.wait_side is not None or a == b:
            return
        if b > a and self.config.trailing_up:
            self._trail_up(b)
        elif b < a and self.config.trailing_down:
            self._trail_down(b)

    def _all(self, state: SlotState) -> bool:
        # A live order filled in part holds both coins and quote: never shift under it.
        return bool(self.slots) and all(s.state == state and not s.filled for s in self.slots)

    def next_line_up(self) -> Decimal:
        """The line a shift up adds: the top line plus the top grid's width (geometric: times
        its ratio), rounded half-up to the tick."""
        top, below = self.lines[-1], self.lines[-2]
        if self.config.spacing == "geometric":
            with localcontext(prec=40):
                return round_price(top * top / below, self.config.tick)
        return top + (top - below)

    def next_line_down(self) -> Decimal:
        """The line a shift down adds: the bottom line less the bottom grid's width (geometric:
        divided by its ratio), rounded half-up to the tick."""
        bottom, above = self.lines[0], self.lines[1]
        if self.config.spacing == "geometric":
            with localcontext(prec=40):
                return round_price(bottom * bottom / above, self.config.tick)
        return bottom - (above - bottom)

    def _up_target(self) -> Decimal | None:
        """The price at or above which a rise does something to trailing up (a shift, or the
        first word that its limit stops it), or None."""
        if not self.config.trailing_up or self.up_stopped or not self._all(SlotState.QUOTE):
            return None
        nxt = self.next_line_up()
        limit = self.config.trailing_up_limit
        if limit is not None and nxt > limit and self.up_limit_noted:
            return None
        return nxt

    def _down_target(self) -> Decimal | None:
        if not self.config.trailing_down or not self._all(SlotState.BASE):
            return None
        nxt = self.next_line_down()
        limit = self.config.trailing_down_limit
        if (limit is not None and nxt < limit or nxt <= 0) and self.down_limit_noted:
            return None
        return nxt

    def _trail_up(self, b: Decimal) -> None:
        cfg = self.config
        while (nxt := self._up_target()) is not None and b >= nxt:
            limit = cfg.trailing_up_limit
            if limit is not None and nxt > limit:
                self.up_limit_noted = True
                self._event(
                    TRAILING_UP_STOPPED,
                    f"Trailing up stopped at its limit: the price reached {b}, but the next "
                    f"line {nxt} would be above the trailing-up limit {limit}.",
                    b,
                )
                return
            bottom, p0, top = self.slots[0], self.lines[0], self.lines[-1]
            with localcontext(EXACT):
                # The quote the cancelled buy held, as a buy at the old top: floored exactly.
                q2 = (bottom.amount * p0) // (top * cfg.step) * cfg.step
                too_small = q2 < cfg.step or q2 * top < cfg.min_notional
            if too_small:
                self.up_stopped = (
                    f"a buy at {top} would be {q2} {cfg.base_asset}, below the exchange's "
                    f"minimum order of {cfg.min_notional} {cfg.quote_asset}"
                )
                self._event(
                    TRAILING_UP_STOPPED,
                    f"Trailing up stopped for good at {b}: {self.up_stopped}.",
                    b,
                )
                return
            cancelled = self._order_at(0)
            new = Slot(SlotState.QUOTE, id=self.next_slot_id, amount=q2)
            self.next_slot_id += 1
            self.slots = [*self.slots[1:], new]
            self.lines = [*self.lines[1:], nxt]
            self._pos = {s.id: i for i, s in enumerate(self.slots)}
            self.shifts_up += 1
            self.down_limit_noted = False
            self._event(
                SHIFT_UP,
                f"Trailing up: the price reached {b}, so the grid moved up one line to "
                f"{self.lines[0]}–{nxt}: cancelled the buy of {cancelled.amount} at {p0}, "
                f"placed a buy of {q2} at {top}.",
                b,
                cancelled=cancelled,
                placed_slot=new.id,
                placed=self._order_at(len(self.slots) - 1),
            )

    def _trail_down(self, b: Decimal) -> None:
        cfg = self.config
        while (nxt := self._down_target()) is not None and b <= nxt:
            limit = cfg.trailing_down_limit
            if limit is not None and nxt < limit or nxt <= 0:
                self.down_limit_noted = True
                self._event(
                    TRAILING_DOWN_STOPPED,
                    f"Trailing down stopped at its limit: the price reached {b}, but the "
                    f"next line {nxt} would be below the trailing-down limit {limit}.",
                    b,
                )
                return
            top = self.slots[-1]
            cancelled = self._order_at(len(self.slots) - 1)
            p0 = self.lines[0]
            new = Slot(
                SlotState.BASE, acquired=top.acquired, id=self.next_slot_id, amount=top.amount
            )
            self.next_slot_id += 1
            self.slots = [new, *self.slots[:-1]]
            self.lines = [nxt, *self.lines[:-1]]
            self._pos = {s.id: i for i, s in enumerate(self.slots)}
            self.shifts_down += 1
            self.up_limit_noted = False
            self._event(
                SHIFT_DOWN,
                f"Trailing down: the price reached {b}, so the grid moved down one line to "
                f"{nxt}–{self.lines[-1]}: cancelled the sell of {cancelled.amount} at "
                f"{cancelled.price}, placed it as a sell at {p0} (bought at {top.acquired}).",
                b,
                cancelled=cancelled,
                placed_slot=new.id,
                placed=self._order_at(0),
            )

    def _event(self, kind: str, text: str, price: Decimal, **extra: Any) -> None:
        lowest = self.lines[0] if self.slots else None
        highest = self.lines[-1] if self.slots else None
        self.events.append(GridEvent(kind, text, price, lowest=lowest, highest=highest, **extra))

    def drain_events(self) -> list[GridEvent]:
        """The events since the last drain (they are not persisted: log them before saving)."""
        events, self.events = self.events, []
        return events

    @property
    def wake_low(self) -> Decimal | None:
        """The highest price a fall must reach for anything to happen: a resting buy, the
        stop-loss, a trailing-down shift, or the trigger below (None: nothing on a fall)."""
        if self.stopped:
            return None
        if self.wait_side is not None:
            return self.start_price if self.wait_side == "below" else None
        found = [
            p for p in (self.next_buy_price, self._stop_price, self._down_target()) if p is not None
        ]
        return max(found) if found else None

    @property
    def wake_high(self) -> Decimal | None:
        """The lowest price a rise must reach for anything to happen: a resting sell, the
        take-profit, a trailing-up shift, or the trigger above (None: nothing on a rise)."""
        if self.stopped:
            return None
        if self.wait_side is not None:
            return self.start_price if self.wait_side == "above" else None
        found = [
            p for p in (self.next_sell_price, self._take_profit, self._up_target()) if p is not None
        ]
        return min(found) if found else None

    def walk_segment(self, a: Decimal, b: Decimal) -> list[Fill]:
        """Move the price from a to b: fill what it crosses, then check the stops, then trail.

        While waiting, a segment that reaches the trigger starts the grid there and walks on
        from the trigger price to b (GRID_SPEC.md, Extensions).
        """
        if self.wait_side is not None:
            if not self.check_trigger(a, b):
                return []
            a = self.start_price
        fills = self.segment_fills(a, b)
        for f in fills:
            self.apply_fill(f)
        self.check_stops(a, b)
        self.trail(a, b)
        return fills

    def walk_candle(
        self,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        prev_close: Decimal | None = None,
    ) -> list[Fill]:
        """Walk ``[prev_close,] O, L, H, C`` (C >= O) or ``[prev_close,] O, H, L, C``."""
        if self.stopped:
            return []
        path = (open, low, high, close) if close >= open else (open, high, low, close)
        fills: list[Fill] = []
        a = path[0]
        if prev_close is not None:
            fills += self.walk_segment(prev_close, a)
        for b in path[1:]:
            if self.stopped:
                break
            fills += self.walk_segment(a, b)
            a = b
        return fills

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (Decimals as strings); ``from_dict`` rebuilds an equal engine."""
        return (
            {
                "version": 1,
                "config": self.config.to_dict(),
                "lines": [str(p) for p in self.lines],
                "q": str(self.q),
                "start_price": str(self.start_price),
                "start_buy": _trade_dict(self.start_buy),
                "slots": [_slot_dict(s, i, self.q) for i, s in enumerate(self.slots)],
                "quote": str(self.quote),
                "base": str(self.base),
                "fills": self.fills,
                "total_trades": self.total_trades,
                "wins": self.wins,
                "grid_profit": str(self.grid_profit),
                "fees_paid": str(self.fees_paid),
                "stopped": self.stopped,
                "stop_sale": _trade_dict(self.stop_sale),
                "stop_mark": None if self.stop_mark is None else str(self.stop_mark),
            }
            | ({"dust": str(self.dust)} if self.dust else {})
            | self._extension_dict()
        )

    def _extension_dict(self) -> dict[str, Any]:
        """The trigger's and trailing's state, written only when there is some (an engine
        without them writes what it always wrote)."""
        out: dict[str, Any] = {}
        if self.wait_side is not None:
            out["waiting"] = self.wait_side
        if self.next_slot_id != len(self.slots):
            out["next_slot_id"] = self.next_slot_id
        for name in ("shifts_up", "shifts_down", "up_stopped", "up_limit_noted",
                     "down_limit_noted"):  # fmt: skip
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridEngine:
        if data.get("version") != 1:
            raise ValueError(f"unknown engine state version {data.get('version')!r}")
        lines = [Decimal(p) for p in data["lines"]]
        # Until a trailing shift moves them, the engine's lines are its config's own.
        moved = data.get("shifts_up") or data.get("shifts_down")
        config = GridConfig.from_dict(data["config"], lines=None if moved else lines)
        q = Decimal(data["q"])
        slots = [
            Slot(
                SlotState(s["state"]),
                None if s["acquired"] is None else Decimal(s["acquired"]),
                int(s["seq"]),
                Decimal(s.get("filled", "0")),
                int(s.get("part", 0)),
                id=int(s.get("id", i)),
                amount=Decimal(s["amount"]) if "amount" in s else q,
            )
            for i, s in enumerate(data["slots"])
        ]
        waiting = data.get("waiting")
        if len(slots) != len(lines) - 1 and not (waiting and not slots):
            raise ValueError("engine state has a slot count that does not match its lines")
        engine = cls(
            config,
            lines=lines,
            q=q,
            slots=slots,
            quote=Decimal(data["quote"]),
            base=Decimal(data["base"]),
            start_price=Decimal(data["start_price"]),
            start_buy=_trade_from(data["start_buy"]),
        )
        engine.fills = int(data["fills"])
        engine.total_trades = int(data["total_trades"])
        engine.wins = int(data["wins"])
        engine.grid_profit = Decimal(data["grid_profit"])
        engine.fees_paid = Decimal(data["fees_paid"])
        engine.stopped = data["stopped"]
        engine.stop_sale = _trade_from(data["stop_sale"])
        engine.stop_mark = None if data["stop_mark"] is None else Decimal(data["stop_mark"])
        engine.dust = Decimal(data.get("dust", "0"))
        engine.wait_side = waiting
        engine.next_slot_id = int(data.get("next_slot_id", len(slots)))
        engine.shifts_up = int(data.get("shifts_up", 0))
        engine.shifts_down = int(data.get("shifts_down", 0))
        engine.up_stopped = str(data.get("up_stopped", ""))
        engine.up_limit_noted = bool(data.get("up_limit_noted", False))
        engine.down_limit_noted = bool(data.get("down_limit_noted", False))
        return engine


def _lay_out(
    config: GridConfig, p0: Decimal, q: Decimal
) -> tuple[list[Slot], Decimal, Decimal, MarketTrade | None]:
    """The start (GRID_SPEC.md, Slots and the start): slots, quote, base and the start buy."""
    states = config.start_states(p0)
    slots = [
        Slot(s, acquired=p0 if s == SlotState.BASE else None, id=i, amount=q)
        for i, s in enumerate(states)
    ]
    with localcontext(EXACT):
        amount = states.count(SlotState.BASE) * q
        start_buy = None
        quote = config.capital
        if amount:
            start_buy = MarketTrade(Side.BUY, p0, amount, config.fee * p0 * amount)
            quote = quote - p0 * amount - start_buy.fee
    return slots, quote, amount, start_buy


def _slot_dict(s: Slot, i: int, q: Decimal) -> dict[str, Any]:
    """A slot as JSON; a part filled (live only), an id other than the slot's position and an
    amount other than the start's (trailing) are written only when there are some."""
    d: dict[str, Any] = {
        "state": s.state.value,
        "acquired": None if s.acquired is None else str(s.acquired),
        "seq": s.seq,
    }
    if s.filled or s.part:
        d["filled"], d["part"] = str(s.filled), s.part
    if s.id != i:
        d["id"] = s.id
    if s.amount != q:
        d["amount"] = str(s.amount)
    return d
