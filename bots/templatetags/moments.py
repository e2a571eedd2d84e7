"""Times kept as epoch milliseconds (a backtest's ``triggered_at``) as datetimes for ``date``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template

register = template.Library()


@register.filter
def from_ms(value: Any) -> dt.datetime | None:
    """Epoch milliseconds (UTC) as an aware datetime; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None
