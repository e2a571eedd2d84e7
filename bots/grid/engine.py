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
    SlotState,
    StopReason,
    to_decimal,
)

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

    @classmethod
    def start(cls, config: GridConfig, p0: Decimal) -> GridEngine:
        """Lay out the slots at start price ``p0`` and make the start market buy."""
        p0 = to_decimal(p0)
        q = config.order_amount(p0)  # validates p0 and the capital
        states = config.start_states(p0)
        slots = [Slot(s, acquired=p0 if s == SlotState.BASE else None) for s in states]
        with localcontext(EXACT):
            amount = states.count(SlotState.BASE) * q
            start_buy = None
            quote = config.capital
            if amount:
                start_buy = MarketTrade(Side.BUY, p0, amount, config.fee * p0 * amount)
                quote = quote - p0 * amount - start_buy.fee
        return cls(
            config,
            lines=list(config.lines),
            q=q,
            slots=slots,
            quote=quote,
            base=amount,
            start_price=p0,
            start_buy=start_buy,
        )

    # --- queries -------------------------------------------------------------------------------

    @property
    def is_stopped(self) -> bool:
        return self.stopped is not None

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
        s = self.slots[slot]
        if s.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[slot]
        else:
            side, price = Side.SELL, self.lines[slot + 1]
        cid = client_order_id(bot_key, slot, side, price, s.seq, s.part)
        return DesiredOrder(slot, side, price, self.q - s.filled, s.seq, cid)

    def desired_orders(self, bot_key: str = "") -> list[DesiredOrder]:
        """One order per slot while running, in slot order; none once stopped."""
        if self.stopped:
            return []
        return [self.resting_order(i, bot_key) for i in range(len(self.slots))]

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
        if self.stopped or a == b:
            return []
        lines, q, fee, slots = self.lines, self.q, self._fee, self.slots
        out = []
        with localcontext(EXACT):
            if b < a:
                # Only lines within [b, a] can fill: bisect instead of scanning every slot.
                for i in range(bisect_right(lines, a) - 1, bisect_left(lines, b) - 1, -1):
                    if i < len(slots) and slots[i].state == SlotState.QUOTE:
                        out.append(Fill(i, Side.BUY, lines[i], q, fee * lines[i] * q))
            else:
                for k in range(max(bisect_left(lines, a), 1), bisect_right(lines, b)):
                    if slots[k - 1].state == SlotState.BASE:
                        p = lines[k]
                        out.append(Fill(k - 1, Side.SELL, p, q, fee * p * q))
        return out

    # --- state changes -------------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> RoundTrip | None:
        """Apply one fill of a resting order; returns the round trip a sell closes.

        Raises ``FillMismatch`` (a ValueError), changing nothing, unless the fill is exactly
        the slot's resting order: same side, price and amount. The quote balance moves by
        the fill's own ``fee``; round-trip profit uses the configured rate (GRID_SPEC.md).
        """
        slot = self._resting_slot(fill)
        if fill.amount != self.q:
            raise FillMismatch(
                f"fill {fill.side} {fill.amount} @ {fill.price} on slot {fill.slot} does not "
                f"match its resting order's amount {self.q}"
            )
        q = self.q
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
        if not ZERO < fill.amount <= self.q - slot.filled:
            raise FillMismatch(
                f"a part of {fill.amount} on slot {fill.slot} does not fit its resting order "
                f"({slot.filled} of {self.q} filled already)"
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

    def complete(self, slot_index: int) -> RoundTrip | None:
        """The slot's resting order is done (its parts booked): the slot turns, as a whole fill
        would turn it. What of ``q`` the order did not trade (a sell cut by the dust, a
        remainder too small to send) moves between the slot's base and the dust, so the books
        keep the account's real coins; the round trip is the grid's, on ``q`` (GRID_SPEC.md)."""
        slot = self.slots[slot_index]
        if self.stopped or not slot.filled:
            raise FillMismatch(f"slot {slot_index} has no filled part to complete")
        q, rest = self.q, self.q - slot.filled
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
            trip = RoundTrip(slot_index, acquired, price, q, q * (price - acquired) - fees, fees)
            self.total_trades += 1
            self.wins += trip.profit > 0
            self.grid_profit += trip.profit
        self.round_trips.append(trip)
        return trip

    def reissue(self, slot_index: int) -> None:
        """The slot's order was cancelled or expired on the exchange (after part of it filled,
        or none): what is left of it goes out under a new client id, so an id is sent once
        (the exchange keeps the old one, closed, with its fills)."""
        if self.stopped:
            raise FillMismatch(f"the grid has stopped ({self.stopped}); no order rests")
        self.slots[slot_index].part += 1

    def take_base_fee(self, amount: Decimal, value: Decimal) -> None:
        """A fee the exchange took in the base coin (from a buy's coins): the dust pays it;
        ``value`` is its worth in quote, for the fees paid."""
        with localcontext(EXACT):
            self.dust -= amount
            self.fees_paid += value

    def _resting_slot(self, fill: Fill) -> Slot:
        if self.stopped:
            raise FillMismatch(f"the grid has stopped ({self.stopped}); no order rests")
        if not 0 <= fill.slot < len(self.slots):
            raise FillMismatch(f"no slot {fill.slot}: the grid has {len(self.slots)} slots")
        slot = self.slots[fill.slot]
        if slot.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[fill.slot]
        else:
            side, price = Side.SELL, self.lines[fill.slot + 1]
        if (fill.side, fill.price) != (side, price):
            raise FillMismatch(
                f"fill {fill.side} @ {fill.price} on slot {fill.slot} does not match its "
                f"resting order {side} @ {price}"
            )
        return slot

    def check_stops(self, a: Decimal, b: Decimal) -> StopReason | None:
        """After the fills of segment a -> b: stop-loss on a fall to the stop price,
        take-profit on a rise to the take-profit price. Returns the reason if it stopped."""
        if self.stopped or a == b:
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

    def walk_segment(self, a: Decimal, b: Decimal) -> list[Fill]:
        """Move the price from a to b: fill what it crosses, then check the stops."""
        fills = self.segment_fills(a, b)
        for f in fills:
            self.apply_fill(f)
        self.check_stops(a, b)
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
        return {
            "version": 1,
            "config": self.config.to_dict(),
            "lines": [str(p) for p in self.lines],
            "q": str(self.q),
            "start_price": str(self.start_price),
            "start_buy": _trade_dict(self.start_buy),
            "slots": [_slot_dict(s) for s in self.slots],
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
        } | ({"dust": str(self.dust)} if self.dust else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridEngine:
        if data.get("version") != 1:
            raise ValueError(f"unknown engine state version {data.get('version')!r}")
        config = GridConfig.from_dict(data["config"])
        lines = [Decimal(p) for p in data["lines"]]
        slots = [
            Slot(
                SlotState(s["state"]),
                None if s["acquired"] is None else Decimal(s["acquired"]),
                int(s["seq"]),
                Decimal(s.get("filled", "0")),
                int(s.get("part", 0)),
            )
            for s in data["slots"]
        ]
        if len(slots) != len(lines) - 1:
            raise ValueError("engine state has a slot count that does not match its lines")
        engine = cls(
            config,
            lines=lines,
            q=Decimal(data["q"]),
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
        return engine


def _slot_dict(s: Slot) -> dict[str, Any]:
    """A slot as JSON; a part filled (live only) is written only when there is one."""
    d: dict[str, Any] = {
        "state": s.state.value,
        "acquired": None if s.acquired is None else str(s.acquired),
        "seq": s.seq,
    }
    if s.filled or s.part:
        d["filled"], d["part"] = str(s.filled), s.part
    return d
