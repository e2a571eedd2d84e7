"""The one rounding helper (prices to the market's tick, amounts to its step) and the one way a
Decimal is written out for people and for storage. Stdlib only."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal


def round_price(price: Decimal, tick: Decimal) -> Decimal:
    """Half-up to the nearest multiple of `tick` (GRID_SPEC.md: lines are rounded this way)."""
    return (price / tick).to_integral_value(rounding=ROUND_HALF_UP) * tick


def floor_amount(amount: Decimal, step: Decimal) -> Decimal:
    """Down to a multiple of `step`: never order more than the capital pays for."""
    return (amount / step).to_integral_value(rounding=ROUND_FLOOR) * step


def canonical(value: Decimal) -> Decimal:
    """The same number without trailing zeros (a database column pads to its scale), never in
    exponent form: Decimal('0.001000000000') → Decimal('0.001'), Decimal('10.00') → 10."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


def plain(value: Decimal) -> str:
    """A Decimal as a person would write it, exact: Decimal('61578.950000000000') → '61578.95',
    Decimal('1E+3') → '1000' (the database's padding dropped, never exponent form)."""
    return f"{value.normalize():f}"
