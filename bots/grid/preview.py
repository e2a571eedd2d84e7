"""The grid preview a user sees while typing a config: what the engine would do at a price.

The engine does the grid (lines, slot states at the start price, the order amount); this
module only arranges its answers for the page: which line rests which order, the profit of
one round trip on the narrowest and widest grid after fees, and how much capital the grid
needs for the exchange's minimum order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from bots.grid.params import GridConfig, InvalidGrid, SlotState


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
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

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
        return self.min_profit_pct <= 0


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


def grid_preview(config: GridConfig, price: Decimal | None) -> GridPreview:
    """What this grid would do if it started at ``price`` (None: no price yet)."""
    lines = config.lines
    fee = config.fee
    round_trip_fee = 2 * fee
    pcts = [(hi - lo) / lo - fee * (hi + lo) / lo for lo, hi in zip(lines, lines[1:], strict=False)]
    preview = GridPreview(
        config=config,
        price=price,
        lines=[PreviewLine(i, p, "") for i, p in enumerate(lines)],
        min_profit_pct=min(pcts),
        max_profit_pct=max(pcts),
        round_trip_fee_pct=round_trip_fee,
    )
    if preview.unprofitable:
        preview.warnings.append(
            f"the narrowest grid earns {(min(pcts) * 100):.3f} % per round trip: less than the "
            f"{(round_trip_fee * 100):.2f} % the two fees cost. Use fewer levels or a wider range."
        )
    if price is None:
        preview.warnings.append(
            f"no price for {config.base_asset}/{config.quote_asset} yet: the order amount and "
            "the side of each line are known once the market feed has a price"
        )
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
        where = "below" if price < config.lower else "above"
        preview.warnings.append(
            f"the price {price} is {where} the range: the grid starts with every order on one side"
        )
    try:
        q = config.order_amount(price)
    except InvalidGrid as e:
        preview.problems.append(str(e))
        return preview
    preview.order_amount = q
    preview.start_buy_amount = states.count(SlotState.BASE) * q
    profits = [
        q * (hi - lo) - fee * q * (hi + lo) for lo, hi in zip(lines, lines[1:], strict=False)
    ]
    preview.min_profit, preview.max_profit = min(profits), max(profits)
    return preview
