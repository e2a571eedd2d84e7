"""The real exchange, through ccxt: one symbol on one account.

ccxt's exceptions stop here: ``market.exchange.translated`` turns them into the exchange
layer's errors, which are all callers see. Orders
carry the caller's client id (Binance ``newClientOrderId``), which makes every send safe to
repeat: before placing, and whenever the outcome of a send is unknown (timeout, 5xx, dropped
connection, duplicate id), the order is looked up by that id and returned if it exists.

Amounts go to ccxt as decimal strings (ccxt truncates them to the step and rounds prices to the
tick, so callers should hand in values already on the market's grid); everything coming back
is turned into ``Decimal`` through ``str()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Any

import ccxt
from django.utils import timezone

from bots.gateways.base import (
    Balance,
    ExchangeFill,
    OpenOrder,
    OrderRequest,
    OrderStatus,
    Side,
    in_order,
)
from market.exchange import (
    NOT_VISIBLE_FOR,
    NotSent,
    OrderNotVisibleYet,
    RequestsPaused,
    TemporaryExchangeError,
    translated,
)

logger = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000
TRADES_PAGE = 1000  # Binance's maximum for myTrades
WALK_DAYS = 14  # fetch_fills further back than this pages by trade id instead of by day
STATUSES: dict[str, OrderStatus] = {
    "open": "open",
    "closed": "closed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
    "rejected": "canceled",
}


def _decimal(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


class CcxtGateway:
    """The ``Gateway`` protocol on a ccxt exchange client, for one unified symbol (``BTC/USDT``)."""

    def __init__(
        self,
        client: ccxt.Exchange,
        symbol: str,
        *,
        known_client_id: Callable[[str], str | None] | None = None,
    ) -> None:
        self.client = client
        self.symbol = symbol
        self._client_ids: dict[str, str] = {}  # exchange order id -> client order id
        # Where the caller keeps the client ids of orders it sent (asked before the exchange).
        self._known_client_id = known_client_id or (lambda _order_id: None)

    def __repr__(self) -> str:
        # Never the client's repr: whatever it holds (keys, secrets) stays out of logs.
        return f"CcxtGateway({getattr(self.client, 'id', '?')!r}, {self.symbol!r})"

    # ------------------------------------------------------------------ protocol

    def place(
        self, order: OrderRequest, *, sent_before: datetime | None = None, new: bool = False
    ) -> OpenOrder:
        # Binance only refuses a client id that an *open* order carries; one that already
        # filled, or was cancelled, would be accepted again and double the position. So look
        # first (unless the caller proves the id never went out), and give back whatever the
        # exchange has under this id, in any state.
        existing = None if new and sent_before is None else self._find(order.client_id)
        if existing is None and sent_before is not None:
            existing = self._after_the_window(order.client_id, f"{order.side}", sent_before)
        if existing is not None:
            found = _open_order(existing)
            if (found.side, found.price, found.amount) != (order.side, order.price, order.amount):
                logger.warning(
                    "place %s: the exchange already has this client id as %s %s @ %s",
                    order.client_id,
                    found.side,
                    found.amount,
                    found.price,
                )
            return found
        raw = self._create(
            order.client_id, "limit", order.side, order.amount, order.price, action="place",
            post_only=True,
        )  # fmt: skip
        return _open_order(raw)

    def cancel(self, client_id: str) -> None:
        with self._errors(f"cancel {client_id}"):
            try:
                self.client.cancel_order("", self.symbol, {"origClientOrderId": client_id})
            except ccxt.OrderNotFound:
                # Unknown, filled or already canceled, or too fresh to be found by id yet:
                # only the book itself tells which.
                resting = self.client.fetch_open_orders(self.symbol)
                if any(o.get("clientOrderId") == client_id for o in resting):
                    raise OrderNotVisibleYet(
                        f"{client_id} rests on the book but cannot be cancelled yet"
                    ) from None

    def open_orders(self) -> list[OpenOrder]:
        with self._errors("open orders"):
            raws = self.client.fetch_open_orders(self.symbol)
        return [self._remember(_open_order(raw)) for raw in raws]

    def fetch_fills(
        self, since_ms: int | None, *, from_id: int | None = None
    ) -> list[ExchangeFill]:
        with self._errors("fetch fills"):
            if from_id is not None:
                trades = self._trades_from_id(from_id)
            else:
                trades = self._trades_since(since_ms)
            fills = [self._fill(t, None) for t in trades]
        unique = {f.trade_id: f for f in fills}
        return in_order(unique.values())

    def market_buy(
        self, client_id: str, amount: Decimal, *, sent_before: datetime | None = None
    ) -> list[ExchangeFill]:
        return self._market(client_id, "buy", amount, sent_before)

    def market_sell(
        self, client_id: str, amount: Decimal, *, sent_before: datetime | None = None
    ) -> list[ExchangeFill]:
        return self._market(client_id, "sell", amount, sent_before)

    def market_fills(self, client_id: str, *, sent_before: datetime) -> list[ExchangeFill]:
        """The fills of a market order sent before under ``client_id``; none when the exchange
        proves it never executed. Sends nothing."""
        existing = self._find(client_id)
        if existing is None:
            existing = self._after_the_window(client_id, "market order", sent_before)
        if existing is None or _replaceable(existing):
            return []
        with self._errors(f"market order {client_id} fills"):
            return self._order_fills(existing)

    def order_status(self, client_id: str) -> tuple[OrderStatus, Decimal] | None:
        raw = self._find(client_id)
        if raw is None:
            return None
        return STATUSES.get(str(raw.get("status")), "open"), _decimal(raw.get("filled"))

    def last_trade_price(self, symbol: str | None = None) -> Decimal:
        symbol = symbol or self.symbol
        with self._errors(f"last trade price of {symbol}"):
            ticker = self.client.fetch_ticker(symbol)
        price = _decimal(ticker.get("last"))
        if price <= 0:
            raise TemporaryExchangeError(f"{self.client.id} gave no last trade price of {symbol}")
        return price

    def commission_rates(self) -> tuple[Decimal, Decimal] | None:
        # Binance's GET /api/v3/account: "commissionRates": {"maker": "0.00100000", ...}.
        with self._errors("commission rates"):
            info = self.client.fetch_balance().get("info") or {}
        rates = info.get("commissionRates") if isinstance(info, dict) else None
        if not isinstance(rates, dict) or rates.get("maker") is None:
            return None
        return _decimal(rates["maker"]), _decimal(rates.get("taker", rates["maker"]))

    def balances(self) -> dict[str, Balance]:
        with self._errors("balances"):
            raw = self.client.fetch_balance()
        skip = {"info", "free", "used", "total", "timestamp", "datetime"}
        result = {}
        for asset, entry in raw.items():
            if asset in skip or not isinstance(entry, dict):
                continue
            balance = Balance(free=_decimal(entry.get("free")), locked=_decimal(entry.get("used")))
            if balance.total:
                result[asset] = balance
        return result

    # ------------------------------------------------------------------ orders

    def _create(
        self,
        client_id: str,
        type_: str,
        side: Side,
        amount: Decimal,
        price: Decimal | None,
        *,
        action: str,
        post_only: bool = False,
    ) -> dict[str, Any]:
        """Send one order; if the outcome is unknown or the id is taken, find it by client id.
        ``post_only``: a grid order rests as a maker (Binance LIMIT_MAKER) or is not placed
        (``OrderWouldCross``)."""
        params: dict[str, Any] = {"clientOrderId": client_id}
        if post_only:
            params["postOnly"] = True
        try:
            with self._errors(f"{action} {client_id}"):
                try:
                    raw = self.client.create_order(
                        self.symbol,
                        type_,
                        side,
                        str(amount),
                        None if price is None else str(price),
                        params,
                    )
                except (ccxt.InvalidOrder, ccxt.DuplicateOrderId) as e:
                    if "Duplicate order sent" not in str(e) and not isinstance(
                        e, ccxt.DuplicateOrderId
                    ):
                        raise
                    logger.info(
                        "%s %s: client id already open, using that order", action, client_id
                    )
                    found = self._find(client_id)
                    if found is None:  # open on the book, but too fresh to be looked up
                        raise OrderNotVisibleYet(
                            f"{client_id} is open on {self.client.id} but not visible yet"
                        ) from None
                    return found
        except NotSent:
            raise  # held back by the request budget, or a closed market: nothing was placed
        except TemporaryExchangeError as e:
            if isinstance(e.__cause__, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
                # HTTP 429 or 418: the exchange turned the request away before acting on it.
                raise NotSent(str(e)) from e
            # The exchange may have accepted it before the answer got lost.
            logger.warning("%s %s: outcome unknown, looking it up by client id", action, client_id)
            try:
                found = self._find(client_id)
            except RequestsPaused as e:  # it may have gone out: not "nothing was sent"
                raise TemporaryExchangeError(str(e)) from e
            if found is None:
                raise
            return found
        self._remember_raw(raw)
        return raw

    def _find(self, client_id: str) -> dict[str, Any] | None:
        """The exchange's order with this client id, or None if it has none."""
        with self._errors(f"look up {client_id}"):
            try:
                raw = self.client.fetch_order("", self.symbol, {"origClientOrderId": client_id})
            except ccxt.OrderNotFound:
                return None
        self._remember_raw(raw)
        return raw

    def _market(
        self, client_id: str, side: Side, amount: Decimal, sent_before: datetime | None
    ) -> list[ExchangeFill]:
        """A market order is never sent again without proof that the first did not execute:
        when it was sent before (``sent_before``) and cannot be found, wait until
        ``NOT_VISIBLE_FOR`` has passed, then look for it in the order history too."""
        existing = self._find(client_id)
        if existing is None and sent_before is not None:
            existing = self._after_the_window(client_id, f"market {side}", sent_before)
        if existing is None or _replaceable(existing):
            raw = self._create(client_id, "market", side, amount, None, action=f"market {side}")
        else:
            raw = existing
        try:
            with self._errors(f"market {side} {client_id} fills"):
                return self._order_fills(raw)
        except NotSent as e:  # the order went out; only asking for its fills was held back
            raise TemporaryExchangeError(str(e)) from e

    def _after_the_window(
        self, client_id: str, what: str, sent_before: datetime
    ) -> dict[str, Any] | None:
        """An order sent before that cannot be found by id: nothing is proven until
        ``NOT_VISIBLE_FOR`` has passed (OrderNotVisibleYet); then the order history tells."""
        until = sent_before + NOT_VISIBLE_FOR
        if timezone.now() < until:
            raise OrderNotVisibleYet(
                f"the {what} {client_id} went out at {sent_before:%H:%M:%S} UTC and "
                f"{self.client.id} does not show it yet: it is not sent again before "
                f"{until:%H:%M:%S} UTC, and then only if the order history has no trace of it"
            )
        return self._in_history(client_id, sent_before)

    def _in_history(self, client_id: str, since: datetime) -> dict[str, Any] | None:
        """The order with this client id among those sent since ``since`` (allOrders)."""
        start = int(since.timestamp() * 1000) - 60_000
        with self._errors(f"order history for {client_id}"):
            raws = self.client.fetch_orders(self.symbol, start, 1000)
        found = [r for r in raws if r.get("clientOrderId") == client_id]
        if found:
            self._remember_raw(found[-1])
        return found[-1] if found else None

    def _order_fills(self, raw: dict[str, Any]) -> list[ExchangeFill]:
        """The trades of one order: from the FULL response when it has them, else asked for."""
        trades = [t for t in raw.get("trades") or [] if t.get("id")]
        if trades and _decimal(raw.get("filled")) == sum(_decimal(t["amount"]) for t in trades):
            return [self._fill(t, raw) for t in trades]
        if not _decimal(raw.get("filled")):
            return []
        mine = self.client.fetch_my_trades(
            self.symbol, None, TRADES_PAGE, {"orderId": str(raw["id"])}
        )
        if sum(_decimal(t["amount"]) for t in mine) < _decimal(raw.get("filled")):
            # Filled, but its trades reach the trade list a little later: not "filled 0".
            raise OrderNotVisibleYet(
                f"the order {raw.get('clientOrderId')} filled, but {self.client.id} does not "
                "list all its trades yet"
            )
        return [self._fill(t, raw) for t in mine]

    # ------------------------------------------------------------------ fills

    def _trades_since(self, since_ms: int | None) -> list[dict[str, Any]]:
        now = int(timezone.now().timestamp() * 1000)
        if since_ms is None or now - since_ms > WALK_DAYS * DAY_MS:
            # Long ago: paging the whole history by id beats one request per day.
            trades = self._trades_from_id(0)
            return [t for t in trades if since_ms is None or (t["timestamp"] or 0) >= since_ms]
        # Binance allows at most 24 hours between startTime and endTime: walk day by day.
        trades = []
        start = since_ms
        while start <= now:
            end = min(start + DAY_MS - 1, now)
            batch = self.client.fetch_my_trades(self.symbol, start, TRADES_PAGE, {"until": end})
            trades.extend(batch)
            if len(batch) >= TRADES_PAGE:
                # A busy day: page on by trade id from here to the present.
                trades.extend(self._trades_from_id(int(batch[-1]["id"]) + 1))
                break
            start = end + 1
        return trades

    def _trades_from_id(self, from_id: int) -> list[dict[str, Any]]:
        trades: list[dict[str, Any]] = []
        while True:
            batch = self.client.fetch_my_trades(self.symbol, None, TRADES_PAGE, {"fromId": from_id})
            trades.extend(batch)
            if len(batch) < TRADES_PAGE:
                return trades
            from_id = int(batch[-1]["id"]) + 1

    def _fill(self, trade: dict[str, Any], order: dict[str, Any] | None) -> ExchangeFill:
        order_id = str(trade.get("order") or (order or {}).get("id") or "")
        at_ms = trade.get("timestamp") or (order or {}).get("lastTradeTimestamp")
        at_ms = at_ms or (order or {}).get("timestamp") or 0
        if order is not None and order.get("clientOrderId"):
            client_id = str(order["clientOrderId"])
        else:
            client_id = self._client_id_of(order_id, int(at_ms))
        fee = trade.get("fee") or {}
        return ExchangeFill(
            trade_id=str(trade["id"]),
            client_id=client_id,
            exchange_order_id=order_id,
            side=trade.get("side") or (order or {})["side"],
            price=_decimal(trade["price"]),
            amount=_decimal(trade["amount"]),
            fee=_decimal(fee.get("cost")),
            fee_asset=str(fee.get("currency") or ""),
            at_ms=int(at_ms),
        )

    def _client_id_of(self, order_id: str, at_ms: int) -> str:
        """Trades name their order by exchange id only; ask the exchange once per order. A
        fresh order may not be found by id yet: then the order history since the trade tells,
        and if it does not either, the fill waits for the next cycle (never an error)."""
        if order_id not in self._client_ids and (known := self._known_client_id(order_id)):
            self._client_ids[order_id] = known
        if order_id not in self._client_ids:
            try:
                raw: dict[str, Any] | None = self.client.fetch_order(order_id, self.symbol)
            except ccxt.OrderNotFound:
                since = max(at_ms - 60_000, 0)
                history = self.client.fetch_orders(self.symbol, since, 1000)
                raw = next((r for r in history if str(r.get("id")) == order_id), None)
                if raw is None:
                    raise OrderNotVisibleYet(
                        f"the order {order_id} of a new trade is not visible yet"
                    ) from None
            self._client_ids[order_id] = str(raw.get("clientOrderId") or "")
        return self._client_ids[order_id]

    def _remember(self, order: OpenOrder) -> OpenOrder:
        self._client_ids[order.exchange_id] = order.client_id
        return order

    def _remember_raw(self, raw: dict[str, Any]) -> None:
        if raw.get("id") and raw.get("clientOrderId"):
            self._client_ids[str(raw["id"])] = str(raw["clientOrderId"])

    # ------------------------------------------------------------------ errors

    def _errors(self, action: str) -> AbstractContextManager[None]:
        """ccxt's exceptions as the exchange layer's; none of ccxt's get out."""
        return translated(action, exchange_id=getattr(self.client, "id", ""))


def _replaceable(raw: dict[str, Any]) -> bool:
    """A closed-without-fills order under this client id may be sent again."""
    status = STATUSES.get(str(raw.get("status")), "open")
    return status == "canceled" and not _decimal(raw.get("filled"))


def _open_order(raw: dict[str, Any]) -> OpenOrder:
    price = raw.get("price") or raw.get("average")
    return OpenOrder(
        client_id=str(raw.get("clientOrderId") or ""),
        exchange_id=str(raw["id"]),
        side=raw["side"],
        price=_decimal(price),
        amount=_decimal(raw.get("amount")),
        filled=_decimal(raw.get("filled")),
        status=STATUSES.get(str(raw.get("status")), "open"),
    )
