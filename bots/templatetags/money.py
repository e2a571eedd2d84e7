"""Money, price and amount formatting for the bot pages: thousands separators and the unit.

``{{ stats.total_profit|money:bot.quote_asset }}`` → ``1,234.56 USDT``;
``{{ value|money_signed:"USDT" }}`` → ``+1,234.56 USDT`` (a profit or a loss: its sign always
true, ``-0.00032 USDT``, never ``+0.00``); ``{{ line|price }}`` → ``67,012.5``
(at least two decimals, never fewer than the value has); ``{{ q|amount:"BTC" }}`` →
``0.00123 BTC``; ``{{ 0.1234|pct }}`` → ``12.34 %``. Empty values render as an em dash.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import template

register = template.Library()

DASH = "—"
_CENT = Decimal("0.01")


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return d if d.is_finite() else None


def _with_unit(text: str, unit: str) -> str:
    return f"{text} {unit}" if unit else text


def _absurd(d: Decimal, unit: str) -> str | None:
    """A value no market has (a row an older release let through) shows as what it is, in
    exponent form, instead of breaking the page."""
    if d and not -18 <= d.adjusted() <= 18:
        return _with_unit(f"{d:.3E}", unit)
    return None


def format_money(value: Any, unit: str = "", *, signed: bool = False) -> str:
    """Two decimals, half-up, with thousands separators (quote currencies are cents-precise).

    ``signed``: a profit or a loss, shown with its sign, and with as many more decimals as it
    takes to keep that sign true: a loss of 0.000319 is ``-0.00032``, never ``+0.00`` or
    ``-0.00``; only an exact zero is ``0.00``, without a sign."""
    d = _decimal(value)
    if d is None:
        return DASH
    if (odd := _absurd(d, unit)) is not None:
        return odd
    if signed:
        return _with_unit(_signed(d), unit)
    d = d.quantize(_CENT, rounding=ROUND_HALF_UP)
    if d == 0:
        d = abs(d)  # no "-0.00"
    return _with_unit(f"{d:,}", unit)


def _signed(d: Decimal) -> str:
    if d == 0:
        return "0.00"
    cents = d.quantize(_CENT, rounding=ROUND_HALF_UP)
    if cents != 0:
        return f"{cents:+,}"
    # Under a cent: two significant digits (half-up never rounds a non-zero value to zero).
    places = -d.adjusted() + 1
    small = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()
    return f"{small:+,f}"


def format_price(value: Any, unit: str = "") -> str:
    """A price as given (it is on the tick), at least two decimals, with separators."""
    d = _decimal(value)
    if d is None:
        return DASH
    if (odd := _absurd(d, unit)) is not None:
        return odd
    d = d.normalize()
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        d = d.quantize(_CENT)
    return _with_unit(f"{d:,f}", unit)


def format_amount(value: Any, unit: str = "") -> str:
    """A base amount as given (it is on the step), trailing zeros dropped."""
    d = _decimal(value)
    if d is None:
        return DASH
    if (odd := _absurd(d, unit)) is not None:
        return odd
    d = d.normalize()
    if d == 0:
        return _with_unit("0", unit)
    return _with_unit(f"{d:,f}", unit)


@register.filter
def money(value: Any, unit: str = "") -> str:
    return format_money(value, unit)


@register.filter
def money_signed(value: Any, unit: str = "") -> str:
    return format_money(value, unit, signed=True)


@register.filter
def price(value: Any, unit: str = "") -> str:
    return format_price(value, unit)


@register.filter
def amount(value: Any, unit: str = "") -> str:
    return format_amount(value, unit)


CASH_LIKE = frozenset({"USDT", "USDC", "USD", "BUSD", "FDUSD", "DAI", "EUR", "TUSD"})


@register.filter
def holding(value: Any, asset: str) -> str:
    """A wallet balance: cents for quote currencies, the amount as it is for coins."""
    if asset.upper() in CASH_LIKE:
        return format_money(value, asset)
    return format_amount(value, asset)


@register.filter
def pct(value: Any, places: int = 2) -> str:
    """A ratio as a percentage: 0.1234 → ``12.34 %``."""
    d = _decimal(value)
    if d is None:
        return DASH
    if (odd := _absurd(d * 100, "%")) is not None:
        return odd
    q = Decimal(1).scaleb(-int(places))
    return f"{(d * 100).quantize(q, rounding=ROUND_HALF_UP):,} %"


@register.filter
def sign_class(value: Any) -> str:
    """``pos``/``neg``/empty: the CSS class that colours a profit."""
    d = _decimal(value)
    if d is None or d == 0:
        return ""
    return "pos" if d > 0 else "neg"
