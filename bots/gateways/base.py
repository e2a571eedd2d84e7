"""The gateway protocol: what the bot cycle needs from an exchange, and nothing more.

The live bots' gateway speaks these types, so services never know which
one they hold. Amounts and prices are always ``Decimal``; times are UTC epoch milliseconds.
This module imports nothing from Django.

Errors are the exchange layer's own (``market.exchange``): ``TemporaryExchangeError`` (retry
next cycle; an order may or may not have reached the exchange, which is why ``place`` is
idempotent), ``OrderRejected`` (this order fails the same way again), ``ExchangeError`` (a
person may need to look).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

Side = Literal["buy", "sell"]
OrderStatus = Literal["open", "closed", "canceled"]


@dataclass(frozen=True)
class OrderRequest:
    """A limit order the engine wants on the book; ``client_id`` makes resends idempotent."""

    client_id: str
    side: Side
    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class OpenOrder:
    """An order as the exchange knows it.

    ``open_orders()`` only returns ``status == "open"``; ``place()`` may return a ``closed``
    order when an earlier send with the same client id already filled.
    """

    client_id: str
    exchange_id: str
    side: Side
    price: Decimal
    amount: Decimal
    filled: Decimal
    status: OrderStatus = "open"

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True)
class ExchangeFill:
    """One trade against one of our orders; ``trade_id`` is unique per symbol, use it to dedupe.

    ``fee`` is in ``fee_asset``: on Binance a buyer pays in the base asset it receives and a
    seller in the quote asset, unless the account pays fees in BNB.
    """

    trade_id: str
    client_id: str
    exchange_order_id: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_asset: str
    at_ms: int


def in_order(fills: Iterable[ExchangeFill]) -> list[ExchangeFill]:
    """Fills by time, then by trade id (as a number: Binance's ids count up)."""

    def key(f: ExchangeFill) -> tuple[int, int, str]:
        numeric = f.trade_id.isdigit()
        return f.at_ms, int(f.trade_id) if numeric else 0, "" if numeric else f.trade_id

    return sorted(fills, key=key)


@dataclass(frozen=True)
class Balance:
    """One asset of the account: ``locked`` is held by open orders."""

    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


class Gateway(Protocol):
    """One symbol on one account. Every method may raise ``market.exchange.ExchangeError``."""

    def place(
        self, order: OrderRequest, *, sent_before: datetime | None = None, new: bool = False
    ) -> OpenOrder:
        """Put a limit order on the book, idempotently by ``order.client_id``.

        If an order with this client id already exists (in any state), it is returned instead
        of placing a second one. ``sent_before``: when this id first went out, if it did; then
        it is not sent again until the exchange proves the first never arrived. ``new``: the
        caller's own write-down proves the id never went out, so nothing can exist under it
        and it is sent without a look first (a request less when a fill wants its counter).
        """
        ...

    def cancel(self, client_id: str) -> None:
        """Cancel by client id; an unknown or already closed order is not an error."""
        ...

    def open_orders(self) -> list[OpenOrder]:
        """Every order of this symbol resting on the book now."""
        ...

    def fetch_fills(
        self, since_ms: int | None, *, from_id: int | None = None
    ) -> list[ExchangeFill]:
        """Our trades at or after ``since_ms`` (all of them when ``None``), oldest first; with
        ``from_id``, those with a trade id of at least that instead."""
        ...

    def market_buy(
        self, client_id: str, amount: Decimal, *, sent_before: datetime | None = None
    ) -> list[ExchangeFill]:
        """Buy ``amount`` of the base asset now (the start buy); idempotent by client id.
        ``sent_before``: when this client id first went out, if it did (then it is never
        sent again until the exchange proves the first did not execute)."""
        ...

    def market_sell(
        self, client_id: str, amount: Decimal, *, sent_before: datetime | None = None
    ) -> list[ExchangeFill]:
        """Sell ``amount`` of the base asset now (stop-loss, take-profit); idempotent too."""
        ...

    def market_fills(self, client_id: str, *, sent_before: datetime) -> list[ExchangeFill]:
        """The fills of a market order sent before (none when it never executed); sends
        nothing."""
        ...

    def order_status(self, client_id: str) -> tuple[OrderStatus, Decimal] | None:
        """An order's status and filled amount by client id, or None when the exchange shows
        no such order (which, for a fresh one, proves nothing yet)."""
        ...

    def last_trade_price(self, symbol: str | None = None) -> Decimal:
        """The exchange's own last trade price of this symbol (or of ``symbol``, e.g. the
        BNB/USDT that converts fees paid in BNB), asked for now."""
        ...

    def commission_rates(self) -> tuple[Decimal, Decimal] | None:
        """The account's own (maker, taker) commission rates, or None when not stated."""
        ...

    def balances(self) -> dict[str, Balance]:
        """Free and locked amounts per asset (assets with nothing may be left out)."""
        ...
