"""``/ws/market/<SYMBOL>/``: a pair's prices as JSON, for any signed-in user.

No database on a tick: the event from ``market.live.publish_price`` is forwarded as it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from market.live import market_group

_SYMBOL = re.compile(r"^[A-Za-z0-9]{2,30}$")


class PriceConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        if user is None or not user.is_authenticated or not _SYMBOL.match(symbol):
            await self.close()
            return
        self.group = market_group(symbol)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def market_price(self, event: dict[str, Any]) -> None:
        await self.send(
            text_data=json.dumps(
                {
                    "type": "price",
                    "exchange": event["exchange"],
                    "symbol": event["symbol"],
                    "price": event["price"],
                    "time_ms": event["time_ms"],
                    "candle": event.get("candle"),
                }
            )
        )
