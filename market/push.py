"""Price push: the market feed publishes each price to ``market.<SYMBOL>``; consumers render it.

The event carries everything a chart needs (the price, its time and the candle it belongs to),
so no consumer touches the database on a tick: a price reaches a thousand sockets as fast as
the channel layer can fan it out.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from channels.layers import get_channel_layer

from aibo import push

_NOT_GROUP_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
PRICE_KEYS = ("exchange", "symbol", "price", "time_ms", "candle")


def market_group(symbol: str) -> str:
    """``BTC/USDT`` → ``market.BTCUSDT`` (Channels group names allow only letters, digits, -_.)."""
    return "market." + _NOT_GROUP_SAFE.sub("", symbol.upper())


def _ms(at: datetime | int | float) -> int:
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(at)


def price_event(
    exchange: str,
    symbol: str,
    price: Decimal,
    at: datetime | int | float,
    candle: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``market.price`` event: strings for prices (exact), epoch milliseconds for times."""
    event: dict[str, Any] = {
        "type": "market.price",
        "exchange": exchange,
        "symbol": symbol,
        "price": str(price),
        "time_ms": _ms(at),
        "candle": None,
    }
    if candle:
        event["candle"] = {
            "time_ms": _ms(candle.get("time_ms", candle.get("open_time", at))),
            **{k: str(candle[k]) for k in ("open", "high", "low", "close") if k in candle},
        }
    # The JSON every price socket sends, serialised once here instead of once per socket: the
    # pages' (``json``) and the published API's (``api_json``, ``/ws/market/{symbol}``).
    event["json"] = json.dumps({"type": "price", **{k: event[k] for k in PRICE_KEYS}})
    event["api_json"] = price_update_json(symbol, event["price"], event["time_ms"])
    return event


def price_update_json(symbol: str, price: str, time_ms: int) -> str:
    """The API's ``price_update`` message: the price as an exact string, the time ISO 8601 UTC."""
    at = datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")
    data = {"symbol": symbol, "price": price, "timestamp": at.replace("+00:00", "Z")}
    return json.dumps({"type": "price_update", "data": data})


def publish_price(
    exchange: str,
    symbol: str,
    price: Decimal,
    at: datetime | int | float,
    candle: dict[str, Any] | None = None,
) -> None:
    """Tell everyone watching ``symbol`` its new price (and the candle forming, when known).

    ``candle`` holds ``open``, ``high``, ``low``, ``close`` and its open time as ``time_ms``
    (epoch milliseconds) or ``open_time`` (a datetime).
    """
    push.group_send(market_group(symbol), price_event(exchange, symbol, price, at, candle))


async def apublish_price(
    exchange: str,
    symbol: str,
    price: Decimal,
    at: datetime | int | float,
    candle: dict[str, Any] | None = None,
) -> None:
    """``publish_price`` for async callers (a feed running in an event loop)."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(market_group(symbol), price_event(exchange, symbol, price, at, candle))
