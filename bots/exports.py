"""A bot's books as CSV, for a spreadsheet or a tax report: its trades (every filled order:
the grid's, the start buy, a stop sale) and its round trips.

Exact figures as plain Decimal strings (``61578.95``, never a float or an exponent), times in
UTC ISO 8601 (market time: a candle's for paper bots, the exchange's for live ones), a header
row, rows oldest first, read from the database in chunks so a long history streams.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils.text import slugify

from bots.models import Bot, Order, Trade
from market.precision import plain

FILL_HEADER = [
    "time_utc", "side", "type", "price", "amount", "value", "fee", "fee_asset", "grid",
    "client_order_id", "exchange_order_id", "note",
]  # fmt: skip
ROUND_TRIP_HEADER = [
    "closed_utc", "grid", "amount", "buy_price", "sell_price", "fees", "profit", "quote_asset",
]  # fmt: skip


class _Echo:
    """csv.writer's file: each row comes back as the line to stream."""

    def write(self, value: str) -> str:
        return value


def iso(at: datetime | None) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at is not None else ""


def number(value: Decimal | None) -> str:
    return "" if value is None else plain(value)


def fill_rows(bot: Bot) -> Iterator[list[str]]:
    """Every order of the bot that filled (in whole or part), oldest first."""
    orders = (
        Order.objects.filter(bot=bot)
        .filter(Q(status=Order.Status.FILLED) | Q(filled__gt=0))
        .order_by("filled_at", "id")
    )
    quote = bot.quote_asset
    for o in orders.iterator(chunk_size=2000):
        amount = o.filled or o.amount
        yield [
            iso(o.filled_at or o.updated_at), o.side, o.kind, number(o.price), number(amount),
            number(o.price * amount), number(o.fee), quote,
            "" if o.slot is None else str(o.slot), o.client_order_id, o.exchange_order_id,
            o.reason,
        ]  # fmt: skip


def round_trip_rows(bot: Bot) -> Iterator[list[str]]:
    """Every round trip of the bot (a grid's buy and the sell one line up), oldest first."""
    quote = bot.quote_asset
    for t in Trade.objects.filter(bot=bot).order_by("closed_at", "id").iterator(chunk_size=2000):
        yield [
            iso(t.closed_at), str(t.slot), number(t.amount), number(t.buy_price),
            number(t.sell_price), number(t.fees), number(t.profit), quote,
        ]  # fmt: skip


def csv_lines(header: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def filename(bot: Bot, what: str) -> str:
    """``btc-usdt-grid-7-round-trips.csv``: the pair, the bot's id and what is in it."""
    return f"{slugify(bot.symbol.replace('/', '-'))}-grid-{bot.pk}-{what}.csv"


EXPORTS: dict[str, tuple[list[str], Any]] = {
    "trades": (FILL_HEADER, fill_rows),
    "round-trips": (ROUND_TRIP_HEADER, round_trip_rows),
}
