"""The grid engine: GRID_SPEC.md in code. Stdlib only: no Django, no ORM, no I/O.

Everything is ``Decimal`` and exact: prices are on the tick, amounts on the step, and the
arithmetic runs in a context that raises instead of rounding (``decimal.Inexact``), so a
backtest, a paper run and a live run agree to the last digit. The engine is deterministic:
the same config, start price and price path always give the same fills.

A bot persists its engine with ``to_dict()`` (JSON-safe) and rebuilds it every cycle with
``from_dict()``. Backtests and paper runs feed it candles (``walk_candle``); live bots feed it
the exchange's fills (``apply_fill``), which must match a resting order exactly.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, fields
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

# The one rounding helper pair (stdlib only), shared with the market rules and the feed.
from bots.grid.order_ids import client_order_id
from market.precision import round_price

Spacing = Literal["arithmetic", "geometric"]
StopReason = Literal["stop_loss", "take_profit"]

STOP_LOSS: StopReason = "stop_loss"
TAKE_PROFIT: StopReason = "take_profit"

# Money arithmetic: wide enough for any realistic price * amount * fee, and loud if not.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


class GridError(ValueError):
    """The root of the grid layer's errors."""


class InvalidGrid(GridError):
    """The grid cannot run as configured; the message says why, in words a user can act on.

    ``field`` names the ``GridConfig`` field to change (None: the grid as a whole), so a form
    can put the message beside it without reading the words.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FillMismatch(GridError):
    """A fill that matches no resting order: applying it would corrupt the engine's state."""


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class SlotState(StrEnum):
    QUOTE = "quote"  # holds quote, rests a buy at its lower line
    BASE = "base"  # holds q base, rests a sell at its upper line


def _ceil_to(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(rounding=ROUND_CEILING) * unit


def grid_lines(
    lower: Decimal, upper: Decimal, levels: int, spacing: Spacing, tick: Decimal
) -> list[Decimal]:
    """Price lines p_0..p_{N-1}, each rounded half-up to the tick."""
    return list(_grid_lines(lower, upper, levels, spacing, tick))


# A running bot rebuilds its engine every cycle: remember recent grids (a pure function).
@lru_cache(maxsize=4096)
def _grid_lines(
    lower: Decimal, upper: Decimal, levels: int, spacing: Spacing, tick: Decimal
) -> tuple[Decimal, ...]:
    steps = Decimal(levels - 1)
    # The powers are irrational: compute them far past the tick, then round once.
    with localcontext(prec=40):
        if spacing == "geometric":
            ratio = upper / lower
            raw = [lower * ratio ** (Decimal(i) / steps) for i in range(levels)]
            raw[-1] = upper  # exactly, whatever the last power rounded to
        else:
            raw = [lower + (upper - lower) * i / steps for i in range(levels)]
        lines = [round_price(p, tick) for p in raw]
    if len(set(lines)) < levels:
        raise InvalidGrid(
            f"{levels} price lines between {lower} and {upper} collide after rounding to the "
            f"tick of {tick}; use fewer levels or a wider range",
            field="levels",
        )
    return tuple(lines)


def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _money(value: Decimal, unit: Decimal) -> str:
    """1257 -> '1,257.00' with the unit's decimals, for messages."""
    return f"{value.quantize(unit, rounding=ROUND_HALF_UP):,}"


# --- the configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class GridConfig:
    """A grid as a user configured it, with the market's filters (GRID_SPEC.md, Inputs).

    Constructing one validates everything that does not depend on the start price; the
    capital check needs it and happens in ``GridEngine.start`` (or ``order_amount``).
    ``base_asset``/``quote_asset`` only label messages.
    """

    lower: Decimal
    upper: Decimal
    levels: int
    spacing: Spacing
    capital: Decimal
    fee: Decimal = Decimal("0.001")
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.00001")
    min_notional: Decimal = Decimal("5")
    stop_loss_pct: Decimal = Decimal("0")
    take_profit: Decimal | None = None
    min_levels: int = 2
    max_levels: int = 500
    base_asset: str = "BTC"
    quote_asset: str = "USDT"
    lines: list[Decimal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        name = ""
        try:
            for name in ("lower", "upper", "capital", "fee", "tick", "step", "min_notional"):
                set_(self, name, _dec(getattr(self, name)))
            name = "stop_loss_pct"
            set_(self, name, _dec(self.stop_loss_pct or 0))
            if self.take_profit is not None:
                name = "take_profit"
                set_(self, name, _dec(self.take_profit))
        except (ArithmeticError, ValueError, TypeError) as e:
            raise InvalidGrid(f"not a number: {e}", field=name) from None
        self.validate()

    def validate(self) -> None:
        """Raise ``InvalidGrid`` unless the grid can be laid out; sets ``lines``."""
        if not all(x.is_finite() for x in (self.lower, self.upper, self.capital, self.fee)):
            raise InvalidGrid("prices, capital and fee must be finite numbers")
        if self.spacing not in ("arithmetic", "geometric"):
            raise InvalidGrid("spacing must be 'arithmetic' or 'geometric'", field="spacing")
        if not self.min_levels <= self.levels <= self.max_levels:
            raise InvalidGrid(
                f"levels must be between {self.min_levels} and {self.max_levels}, "
                f"not {self.levels}",
                field="levels",
            )
        if self.lower <= 0:
            raise InvalidGrid("the lower price must be above 0", field="lower")
        if self.upper <= self.lower:
            raise InvalidGrid(
                f"the upper price must be above the lower price ({self.upper} <= {self.lower})",
                field="upper",
            )
        if self.capital <= 0:
            raise InvalidGrid("the capital must be above 0", field="capital")
        if not 0 <= self.fee < 1:
            raise InvalidGrid("the fee rate must be between 0 and 1 (0.001 is 0.1 %)", field="fee")
        if self.tick <= 0 or self.step <= 0 or self.min_notional < 0:
            raise InvalidGrid("the market's tick and step must be above 0")
        if not 0 <= self.stop_loss_pct <= 10:
            raise InvalidGrid(
                f"the stop-loss must be between 0 and 10 % below the lower price, "
                f"not {self.stop_loss_pct} %",
                field="stop_loss_pct",
            )
        if self.take_profit is not None and self.take_profit <= self.upper:
            raise InvalidGrid(
                f"the take-profit must be above the upper price {self.upper}, "
                f"not {self.take_profit}",
                field="take_profit",
            )
        object.__setattr__(
            self,
            "lines",
            grid_lines(self.lower, self.upper, self.levels, self.spacing, self.tick),
        )

    @property
    def stop_price(self) -> Decimal | None:
        """``lower * (1 - stop_loss_pct/100)``, exact, not rounded; None when disabled."""
        if not self.stop_loss_pct:
            return None
        with localcontext(_EXACT):
            return self.lower * (_ONE - self.stop_loss_pct / _HUNDRED)

    def start_states(self, p0: Decimal) -> list[SlotState]:
        """Each slot's state at the start price (GRID_SPEC.md, Slots and the start)."""
        lines = self.lines
        states = []
        for lo, hi in zip(lines, lines[1:], strict=False):
            if hi <= p0:
                states.append(SlotState.QUOTE)
            elif lo >= p0:
                states.append(SlotState.BASE)
            else:  # lo < p0 < hi: the nearer line gets no order; a tie goes to QUOTE
                states.append(SlotState.BASE if p0 - lo < hi - p0 else SlotState.QUOTE)
        return states

    def order_amount(self, p0: Decimal) -> Decimal:
        """The amount q of every order when starting at ``p0``; ``InvalidGrid`` if too small."""
        p0 = _dec(p0)
        if not p0.is_finite() or p0 <= 0:
            raise InvalidGrid(f"the start price must be above 0, not {p0}")
        states = self.start_states(p0)
        with localcontext(_EXACT):
            n_base = states.count(SlotState.BASE)
            per_q = n_base * p0 + sum(
                (p for p, s in zip(self.lines, states, strict=False) if s == SlotState.QUOTE),
                _ZERO,
            )
            cost = per_q * (_ONE + self.fee)  # capital spent per unit of q
            # Integer division is exact: no rounding before the floor.
            q = (self.capital // (cost * self.step)) * self.step
            lowest = self.lines[0]
            if q >= self.step and q * lowest >= self.min_notional:
                return q
            steps = self.min_notional // (lowest * self.step)  # exact, like q above
            if steps * lowest * self.step < self.min_notional:
                steps += 1
            smallest = max(self.step, steps * self.step)
            needed = _ceil_to(smallest * cost, self.tick)
        base, quote = self.base_asset, self.quote_asset
        if q < self.step:
            order = f"less than the minimum amount of {self.step} {base}"
        else:
            order = f"{q} {base} ({_money(q * lowest, self.tick)} {quote} at {lowest})"
        raise InvalidGrid(
            f"each order would be {order}, below the exchange minimum of "
            f"{self.min_notional} {quote}: the grid needs at least "
            f"{_money(needed, self.tick)} {quote} (or fewer levels)",
            field="capital",
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "lines":
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridConfig:
        known = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        self.grid_profit = _ZERO
        self.fees_paid = start_buy.fee if start_buy else _ZERO
        self.round_trips: list[RoundTrip] = []
        self.stopped: StopReason | None = None
        self.stop_sale: MarketTrade | None = None
        self.stop_mark: Decimal | None = None  # the price equity is marked at once stopped
        self._stop_price = config.stop_price
        self._take_profit = config.take_profit
        self._fee = config.fee

    @classmethod
    def start(cls, config: GridConfig, p0: Decimal) -> GridEngine:
        """Lay out the slots at start price ``p0`` and make the start market buy."""
        p0 = _dec(p0)
        q = config.order_amount(p0)  # validates p0 and the capital
        states = config.start_states(p0)
        slots = [Slot(s, acquired=p0 if s == SlotState.BASE else None) for s in states]
        with localcontext(_EXACT):
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
            return _ZERO
        return Decimal(self.wins) / Decimal(self.total_trades)

    def equity(self, mark: Decimal) -> Decimal:
        with localcontext(_EXACT):
            return self.quote + self.base * mark

    def resting_order(self, slot: int, bot_key: str = "") -> DesiredOrder:
        s = self.slots[slot]
        if s.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[slot]
        else:
            side, price = Side.SELL, self.lines[slot + 1]
        cid = client_order_id(bot_key, slot, side, price, s.seq)
        return DesiredOrder(slot, side, price, self.q, s.seq, cid)

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
        with localcontext(_EXACT):
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
        if self.stopped:
            raise FillMismatch(f"the grid has stopped ({self.stopped}); no order rests")
        if not 0 <= fill.slot < len(self.slots):
            raise FillMismatch(f"no slot {fill.slot}: the grid has {len(self.slots)} slots")
        slot = self.slots[fill.slot]
        if slot.state == SlotState.QUOTE:
            side, price = Side.BUY, self.lines[fill.slot]
        else:
            side, price = Side.SELL, self.lines[fill.slot + 1]
        if (fill.side, fill.price, fill.amount) != (side, price, self.q):
            raise FillMismatch(
                f"fill {fill.side} {fill.amount} @ {fill.price} on slot {fill.slot} does not "
                f"match its resting order {side} {self.q} @ {price}"
            )
        q = self.q
        with localcontext(_EXACT):
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
        with localcontext(_EXACT):
            amount = self.base
            fee = self._fee * price * amount
            self.stop_sale = MarketTrade(Side.SELL, price, amount, fee)
            self.quote = self.quote + price * amount - fee
            self.base = _ZERO
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
            "slots": [
                {
                    "state": s.state.value,
                    "acquired": None if s.acquired is None else str(s.acquired),
                    "seq": s.seq,
                }
                for s in self.slots
            ],
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
        return engine
