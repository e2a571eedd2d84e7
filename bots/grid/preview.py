"""The grid preview a user sees while typing a config: what the engine would do at a price.

The engine does the grid (lines, slot states at the start price, the order amount); this
module only arranges its answers for the page: which line rests which order, the profit of
one round trip on the narrowest and widest grid after fees, and how much capital the grid
needs for the exchange's minimum order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from bots.grid.engine import (
    TRAILING_DOWN_STOPPED,
    TRAILING_UP_STOPPED,
    GridEngine,
    Slot,
)
from bots.grid.params import ZERO, GridConfig, InvalidGrid, SlotState

# How far ahead the preview follows trailing: a grid with no limit in sight is "at least" this.
PREVIEW_SHIFTS = 500


@dataclass
class TrailingPreview:
    """Where a trigger waits and where trailing would take the grid (GRID_SPEC.md, Extensions),
    worked out by the engine's own rules from the grid as configured.

    ``next_up``/``next_down``: the line the first shift would add (None: it cannot shift).
    ``up_stop``: the top line after the last shift trailing up can make, ``up_shifts`` of them,
    stopped by ``up_stop_reason`` ("limit", "min_order", or "" when none was met within
    ``PREVIEW_SHIFTS``); ``down_stop`` likewise, the bottom line trailing down reaches.
    ``trigger_side``: "below" or "above" the price now (the bot waits for a fall or a rise to
    it), "" when it is the price now (or there is no price).
    """

    trigger_price: Decimal | None = None
    trigger_side: str = ""
    next_up: Decimal | None = None
    up_stop: Decimal | None = None
    up_stop_reason: str = ""
    up_shifts: int = 0
    next_down: Decimal | None = None
    down_stop: Decimal | None = None
    down_stop_reason: str = ""
    down_shifts: int = 0


@dataclass(frozen=True)
class PreviewLine:
    index: int
    price: Decimal
    side: str  # "buy" below the price, "sell" above it, "" for the line nearest the price


@dataclass
class GridPreview:
    config: GridConfig
    price: Decimal | None
    lines: list[PreviewLine]
    order_amount: Decimal | None = None
    start_buy_amount: Decimal | None = None
    # One round trip's profit after both fees, in quote and as a share of the buy, on the
    # grid that earns least and the one that earns most.
    min_profit: Decimal | None = None
    max_profit: Decimal | None = None
    min_profit_pct: Decimal = Decimal(0)
    max_profit_pct: Decimal = Decimal(0)
    round_trip_fee_pct: Decimal = Decimal(0)
    capital_needed: Decimal | None = None
    buys: int = 0  # lines below the price that rest a buy
    sells: int = 0  # lines above the price that rest a sell
    # The narrowest grid's width as a share of its lower line (what a round trip earns before
    # fees), and how many grids earn nothing after both fees.
    min_step_pct: Decimal = Decimal(0)
    losing_grids: int = 0
    # "below" or "above" when the price is outside the range; "" inside it or without a price.
    outside: str = ""
    # The trigger price and trailing, when the grid has any (None without).
    trailing: TrailingPreview | None = None
    # The page words these; numbers stay numbers here (formatted where they are shown).

    @property
    def grids(self) -> int:
        return len(self.lines) - 1

    @property
    def short_of_capital(self) -> bool:
        """The capital is below what the exchange's minimum order needs at this price."""
        return self.capital_needed is not None and self.config.capital < self.capital_needed

    @property
    def ok(self) -> bool:
        return not self.short_of_capital

    def drawing(self, height: int = 160, pad: int = 6) -> dict[str, object]:
        """Y positions (SVG, top = upper price) of the lines and of the price, for a sketch."""
        lo, hi = self.config.lower, self.config.upper
        top = max(hi, self.price) if self.price is not None else hi
        bottom = min(lo, self.price) if self.price is not None else lo
        span = (top - bottom) or Decimal(1)

        def y(p: Decimal) -> str:
            return f"{pad + float((top - p) / span) * (height - 2 * pad):.1f}"

        return {
            "height": height,
            "lines": [(y(line.price), line.side, line.price) for line in self.lines],
            "price_y": y(self.price) if self.price is not None else None,
        }

    @property
    def unprofitable(self) -> bool:
        """Some grid earns nothing after the round trip's fees."""
        return self.losing_grids > 0

    @property
    def all_losing(self) -> bool:
        return self.losing_grids == self.grids

    @property
    def worst_loss(self) -> Decimal | None:
        """What one round trip on the narrowest grid loses after fees, in quote (positive)."""
        return -self.min_profit if self.min_profit is not None else None

    @property
    def worst_loss_pct(self) -> Decimal:
        return -self.min_profit_pct


def min_capital(config: GridConfig, price: Decimal) -> Decimal:
    """The least capital whose order amount meets the step and the minimum order value.

    GridConfig.order_amount says this number only in its error message, so it is worked out
    here from the same parts (the test holds the two together: order_amount succeeds at
    exactly this capital and fails one tick below it).
    """
    states = config.start_states(price)
    per_q = sum(
        (
            price if s == SlotState.BASE else line
            for line, s in zip(config.lines, states, strict=False)
        ),
        Decimal(0),
    )
    cost = per_q * (1 + config.fee)
    lowest = config.lines[0]
    steps = (config.min_notional / (lowest * config.step)).to_integral_value(ROUND_CEILING)
    q = max(config.step, steps * config.step)
    return (q * cost / config.tick).to_integral_value(ROUND_CEILING) * config.tick


def round_trip_pcts(config: GridConfig) -> list[Decimal]:
    """Each grid's round trip (buy at its lower line, sell at its upper) after both fees, as a
    share of the buy: what it earns whatever the order amount."""
    lines, fee = config.lines, config.fee
    return [(hi - lo) / lo - fee * (hi + lo) / lo for lo, hi in zip(lines, lines[1:], strict=False)]


def grid_preview(config: GridConfig, price: Decimal | None) -> GridPreview:
    """What this grid would do if it started at ``price`` (None: no price yet)."""
    lines = config.lines
    fee = config.fee
    pcts = round_trip_pcts(config)
    preview = GridPreview(
        config=config,
        price=price,
        lines=[PreviewLine(i, p, "") for i, p in enumerate(lines)],
        min_profit_pct=min(pcts),
        max_profit_pct=max(pcts),
        round_trip_fee_pct=2 * fee,
        min_step_pct=min((hi - lo) / lo for lo, hi in zip(lines, lines[1:], strict=False)),
        losing_grids=sum(1 for p in pcts if p <= 0),
    )
    preview.trailing = trailing_preview(config, price)
    if price is None:
        return preview

    states = config.start_states(price)
    sides = [""] * len(lines)
    for i, state in enumerate(states):
        if state == SlotState.QUOTE:
            sides[i] = "buy"
        else:
            sides[i + 1] = "sell"
    preview.lines = [PreviewLine(i, p, sides[i]) for i, p in enumerate(lines)]
    preview.buys = sides.count("buy")
    preview.sells = sides.count("sell")
    preview.capital_needed = min_capital(config, price)
    if price < config.lower or price > config.upper:
        preview.outside = "below" if price < config.lower else "above"
    try:
        q = config.order_amount(price)
    except InvalidGrid:
        return preview  # short of capital: capital_needed says how much is enough
    preview.order_amount = q
    preview.start_buy_amount = states.count(SlotState.BASE) * q
    profits = [
        q * (hi - lo) - fee * q * (hi + lo) for lo, hi in zip(lines, lines[1:], strict=False)
    ]
    preview.min_profit, preview.max_profit = min(profits), max(profits)
    return preview


def trailing_preview(config: GridConfig, price: Decimal | None) -> TrailingPreview | None:
    """Where the trigger waits and where trailing would go and stop, for a grid started at
    ``price`` (at its trigger price when it has one); None when the grid has none of them."""
    if not config.extended:
        return None
    out = TrailingPreview(trigger_price=config.trigger_price)
    if config.trigger_price is not None and price is not None and price != config.trigger_price:
        out.trigger_side = "below" if config.trigger_price < price else "above"
    start = config.trigger_price if config.trigger_price is not None else price
    q = None
    if start is not None:
        try:
            q = config.order_amount(start)
        except InvalidGrid:
            q = None  # short of capital: the page says so; the lines still move as shown
    if config.trailing_up:
        out.next_up, out.up_stop, out.up_stop_reason, out.up_shifts = _follow(config, q, up=True)
    if config.trailing_down:
        out.next_down, out.down_stop, out.down_stop_reason, out.down_shifts = _follow(
            config, q, up=False
        )
    return out


def _follow(
    config: GridConfig, q: Decimal | None, *, up: bool
) -> tuple[Decimal | None, Decimal | None, str, int]:
    """Shift a grid of every slot QUOTE (up) or BASE (down) one line at a time through the
    engine until trailing stops: (first new line, last outer line, why it stopped, shifts).
    Without an order amount (no price yet, or too little capital) the minimum order is not
    judged, only the limits."""
    # Without an amount, one so large no shift meets the minimum order: only the limits count.
    amount = q if q is not None else Decimal(10) ** 15
    state = SlotState.QUOTE if up else SlotState.BASE
    lines = list(config.lines)
    slots = [
        Slot(state, acquired=None if up else lines[i], id=i, amount=amount)
        for i in range(len(lines) - 1)
    ]
    engine = GridEngine(
        config, lines=lines, q=amount, slots=slots, quote=ZERO, base=ZERO, start_price=lines[0]
    )
    first: Decimal | None = None
    reason = ""
    for _ in range(PREVIEW_SHIFTS):
        target = engine.next_line_up() if up else engine.next_line_down()
        before = engine.shifts_up if up else engine.shifts_down
        if up:
            engine.trail(target - 1, target)
        else:
            engine.trail(target + 1, target)
        if (engine.shifts_up if up else engine.shifts_down) == before:
            stopped = [e for e in engine.drain_events()
                       if e.kind in (TRAILING_UP_STOPPED, TRAILING_DOWN_STOPPED)]  # fmt: skip
            if stopped:
                reason = "min_order" if up and engine.up_stopped else "limit"
            break
        if first is None:
            first = target
    shifts = engine.shifts_up if up else engine.shifts_down
    edge = engine.lines[-1] if up else engine.lines[0]
    return first, edge if shifts else None, reason, shifts
