"""A grid's parameters, validated: ``GridConfig`` (GRID_SPEC.md, Inputs), its price lines and
the order size the capital buys. Stdlib only, like the engine that runs it.

Constructing a ``GridConfig`` checks everything that does not depend on the start price and
raises ``InvalidGrid`` naming the field to change; ``order_amount`` adds the capital check at a
price. ``GridError`` is the root of the grid layer's errors.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, fields
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
from market.precision import round_price

Spacing = Literal["arithmetic", "geometric"]
StopReason = Literal["stop_loss", "take_profit", "sold"]

STOP_LOSS: StopReason = "stop_loss"
TAKE_PROFIT: StopReason = "take_profit"
# Not the engine's own rule: its owner stopped the bot and chose to sell its coins at market.
SOLD: StopReason = "sold"

# Money arithmetic: wide enough for any realistic price * amount * fee, and loud if not.
EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


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


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _money(value: Decimal, unit: Decimal) -> str:
    """1257 -> '1,257.00' with the unit's decimals, for messages."""
    return f"{value.quantize(unit, rounding=ROUND_HALF_UP):,}"


# The extensions' fields (GRID_SPEC.md, Extensions), and how messages name their prices.
EXTENSION_PRICES = ("trigger_price", "trailing_up_limit", "trailing_down_limit")
EXTENSION_FIELDS = ("trigger_price", "trailing_up", "trailing_up_limit", "trailing_down",
                    "trailing_down_limit")  # fmt: skip
WORDS = {
    "trigger_price": "trigger price",
    "trailing_up_limit": "trailing-up limit",
    "trailing_down_limit": "trailing-down limit",
}


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
    # GRID_SPEC.md, Extensions: each off by default (None / False).
    trigger_price: Decimal | None = None
    trailing_up: bool = False
    trailing_up_limit: Decimal | None = None
    trailing_down: bool = False
    trailing_down_limit: Decimal | None = None
    lines: list[Decimal] = field(init=False, repr=False, compare=False)
    # A stored grid's own lines (``from_dict(..., lines=)``): trusted, not laid out again.
    known_lines: InitVar[tuple[Decimal, ...] | None] = None

    def __post_init__(self, known_lines: tuple[Decimal, ...] | None = None) -> None:
        set_ = object.__setattr__
        name = ""
        try:
            for name in ("lower", "upper", "capital", "fee", "tick", "step", "min_notional"):
                set_(self, name, to_decimal(getattr(self, name)))
            name = "stop_loss_pct"
            set_(self, name, to_decimal(self.stop_loss_pct or 0))
            for name in ("take_profit", *EXTENSION_PRICES):
                if getattr(self, name) is not None:
                    set_(self, name, to_decimal(getattr(self, name)))
        except (ArithmeticError, ValueError, TypeError) as e:
            raise InvalidGrid(f"not a number: {e}", field=name) from None
        for name in ("trailing_up", "trailing_down"):
            value = getattr(self, name)
            if isinstance(value, str):  # a stored state's or a form's "true"/"false"
                value = value.strip().lower() in ("true", "1", "on", "yes")
            set_(self, name, bool(value))
        if known_lines is not None:
            # Validated when the grid was made; a geometric grid's powers cost milliseconds,
            # and every bot cycle rebuilds its engine's config.
            set_(self, "lines", list(known_lines))
            return
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
        self._validate_extensions()
        object.__setattr__(
            self,
            "lines",
            grid_lines(self.lower, self.upper, self.levels, self.spacing, self.tick),
        )

    def _validate_extensions(self) -> None:
        """Trigger price and trailing (GRID_SPEC.md, Extensions): each price where it can work."""
        for name in EXTENSION_PRICES:
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value <= 0):
                raise InvalidGrid(f"the {WORDS[name]} must be a price above 0", field=name)
        stop = self.stop_price
        trigger = self.trigger_price
        if trigger is not None:
            if trigger % self.tick:
                raise InvalidGrid(
                    f"the trigger price must be a multiple of the tick {self.tick}, not {trigger}",
                    field="trigger_price",
                )
            if stop is not None and trigger <= stop:
                raise InvalidGrid(
                    f"the trigger price must be above the stop-loss price {stop}, not {trigger}",
                    field="trigger_price",
                )
            if self.take_profit is not None and trigger >= self.take_profit:
                raise InvalidGrid(
                    f"the trigger price must be below the take-profit {self.take_profit}, "
                    f"not {trigger}",
                    field="trigger_price",
                )
        up_limit = self.trailing_up_limit
        if up_limit is not None:
            if not self.trailing_up:
                raise InvalidGrid(
                    "a trailing-up limit needs trailing up turned on (or clear the limit)",
                    field="trailing_up_limit",
                )
            if up_limit <= self.upper:
                raise InvalidGrid(
                    f"the trailing-up limit must be above the upper price {self.upper}, "
                    f"not {up_limit}",
                    field="trailing_up_limit",
                )
            if self.take_profit is not None and self.take_profit <= up_limit:
                raise InvalidGrid(
                    f"the take-profit must be above the trailing-up limit {up_limit}, "
                    f"not {self.take_profit}",
                    field="take_profit",
                )
        down_limit = self.trailing_down_limit
        if self.trailing_down and down_limit is None:
            raise InvalidGrid(
                "trailing down needs a trailing-down limit: the lowest price the grid may reach",
                field="trailing_down_limit",
            )
        if down_limit is not None:
            if not self.trailing_down:
                raise InvalidGrid(
                    "a trailing-down limit needs trailing down turned on (or clear the limit)",
                    field="trailing_down_limit",
                )
            if down_limit >= self.lower:
                raise InvalidGrid(
                    f"the trailing-down limit must be below the lower price {self.lower}, "
                    f"not {down_limit}",
                    field="trailing_down_limit",
                )
            if stop is not None and down_limit <= stop:
                raise InvalidGrid(
                    f"the trailing-down limit must be above the stop-loss price {stop}, "
                    f"not {down_limit}",
                    field="trailing_down_limit",
                )

    @property
    def stop_price(self) -> Decimal | None:
        """``lower * (1 - stop_loss_pct/100)``, exact, not rounded; None when disabled."""
        if not self.stop_loss_pct:
            return None
        with localcontext(EXACT):
            return self.lower * (ONE - self.stop_loss_pct / HUNDRED)

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
        p0 = to_decimal(p0)
        if not p0.is_finite() or p0 <= 0:
            raise InvalidGrid(f"the start price must be above 0, not {p0}")
        states = self.start_states(p0)
        with localcontext(EXACT):
            n_base = states.count(SlotState.BASE)
            per_q = n_base * p0 + sum(
                (p for p, s in zip(self.lines, states, strict=False) if s == SlotState.QUOTE),
                ZERO,
            )
            cost = per_q * (ONE + self.fee)  # capital spent per unit of q
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

    @property
    def extended(self) -> bool:
        """Whether any extension (trigger price, trailing up or down) is on."""
        return bool(self.trigger_price is not None or self.trailing_up or self.trailing_down)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "lines":
                continue
            value = getattr(self, f.name)
            if f.name in EXTENSION_FIELDS and not value:
                continue  # off: written only when on, so older states read the same
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, lines: list[Decimal] | None = None) -> GridConfig:
        """From ``to_dict``; with ``lines`` (a stored engine's, of this very config) the config is
        trusted as it was validated when made, and its lines are not computed again."""
        known = {f.name for f in fields(cls) if f.init}
        kwargs = {k: v for k, v in data.items() if k in known}
        return cls(**kwargs, known_lines=None if lines is None else tuple(lines))
