"""Argument types shared by the management commands: a bad value is a CommandError in words."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError


def parse_date(value: str) -> datetime:
    """YYYY-MM-DD or an ISO time; UTC unless it says otherwise."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (use YYYY-MM-DD or an ISO time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_decimal(value: str) -> Decimal:
    """An exact decimal number (prices, amounts, money): never a float."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise CommandError(f"{value!r} is not a finite number")
    return number
