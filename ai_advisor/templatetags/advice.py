"""Numbers on the advisor's dialog, run page and reasoning: prices to the market's tick.

Money and percentages use the desk's filters (``money``, ``money_signed``, ``pct`` in
bots/templatetags/money.py); a price here is shown to the tick of the market it is for:
``{{ "108584.160000000000"|at_tick:"0.01" }}`` → ``108,584.16``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from ai_advisor.profiles import PROFILES, RiskProfile
from market.precision import canonical, round_price

register = template.Library()


def price_at_tick(value: Any, tick: Any) -> str:
    """A price rounded half-up to the tick, with as many decimals as the tick has and
    thousands separators; an empty value is an em dash."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
        t = canonical(tick if isinstance(tick, Decimal) else Decimal(str(tick)))
    except (InvalidOperation, ValueError, TypeError):
        return "—"
    if not d.is_finite() or not t.is_finite() or t <= 0:
        return "—"
    # canonical() never leaves a positive exponent, so this keeps the tick's decimals.
    return f"{round_price(d, t).quantize(t):,f}"


@register.filter
def at_tick(value: Any, tick: Any) -> str:
    return price_at_tick(value, tick)


@register.simple_tag
def risk_profiles() -> list[RiskProfile]:
    """The risk choices, conservative first, for the advisor's select."""
    return list(PROFILES.values())
