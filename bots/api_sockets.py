"""The published API's bot websockets: ``/ws/bot/{id}`` and ``/ws/bot/{id}/orders``.

Signed in by the session or an API token (``aibo.ws``); a bot that is not the user's closes the
socket. Each sends the current state at once on connect, then every change:

- ``/ws/bot/{id}``: ``{type: "status_update", data: {status, open_orders, realized_pnl,
  unrealized_pnl}}`` on every change of the bot and, coalesced to one a second, as its price
  moves (unrealized profit moves with it). ``realized_pnl + unrealized_pnl`` is the bot's
  total profit.
- ``/ws/bot/{id}/orders``: ``{type: "order_update", data: {order_id, status, filled_price,
  filled_amount}}`` for each order that is new or changed: on connect its resting orders and
  its last ``RECENT_ORDERS`` done ones, oldest first.

Amounts are exact strings, as in the REST API.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import Q
from django.utils import timezone

from bots import pages, push
from bots.consumers import BOT_INTERVAL, Coalescer, _LiveConsumer
from bots.models import Bot, Order
from market.precision import plain
from market.push import market_group

STATUS_PRICE_INTERVAL = 1.0  # seconds between two price-driven status updates on one socket
RECENT_ORDERS = 20
# Orders are read again from a little before the last read: another process may commit a change
# stamped a moment earlier than this one's clock.
SKEW = timedelta(seconds=5)


def status_update(bot_id: int) -> str | None:
    bot = Bot.objects.filter(pk=bot_id).first()
    if bot is None:
        return None
    stats = pages.bot_statistics(bot)
    data = {
        "status": bot.status,
        "open_orders": stats.open_orders,  # the bot's resting orders, counted by the stats
        "realized_pnl": plain(stats.total_profit - stats.unrealized_pnl),
        "unrealized_pnl": plain(stats.unrealized_pnl),
    }
    return json.dumps({"type": "status_update", "data": data})


def order_update(order: Order) -> str:
    data = {
        "order_id": order.pk,
        "status": order.status,
        "filled_price": plain(order.price) if order.filled else None,
        "filled_amount": plain(order.filled),
    }
    return json.dumps({"type": "order_update", "data": data})


class BotStatusSocket(_LiveConsumer):
    async def connect(self) -> None:
        symbol = await self.owned_bot()
        if symbol is None:
            return
        self.bots = Coalescer(BOT_INTERVAL, self.send_status)
        self.prices = Coalescer(STATUS_PRICE_INTERVAL, self.send_status)
        await self.join([push.bot_group(self.bot_id), market_group(symbol)])
        await self.accept()
        await self.send_status({})

    async def send_status(self, batch: dict[Hashable, Any]) -> None:
        text = await database_sync_to_async(status_update)(self.bot_id)
        if text is None:
            await self.close()
        else:
            await self.send(text_data=text)


class BotOrdersSocket(_LiveConsumer):
    async def connect(self) -> None:
        if await self.owned_bot() is None:
            return
        self.seen: dict[int, tuple[str, str]] = {}
        self.since: datetime | None = None
        self.bots = Coalescer(BOT_INTERVAL, self.send_orders)
        await self.join([push.bot_group(self.bot_id)])
        await self.accept()
        await self.send_orders({})

    async def market_price(self, event: dict[str, Any]) -> None:
        pass  # no market group is joined; nothing here moves with the price

    async def send_orders(self, batch: dict[Hashable, Any]) -> None:
        for text in await database_sync_to_async(self._changed)():
            await self.send(text_data=text)

    def _changed(self) -> list[str]:
        """The orders new or changed since the last read, oldest change first."""
        rows = Order.objects.filter(bot_id=self.bot_id)
        if self.since is None:
            recent = list(
                rows.exclude(status__in=Order.RESTING)
                .order_by("-updated_at", "-pk")
                .values_list("pk", flat=True)[:RECENT_ORDERS]
            )
            rows = rows.filter(Q(status__in=Order.RESTING) | Q(pk__in=recent))
        else:
            rows = rows.filter(updated_at__gte=self.since - SKEW)
        out, read = [], set()
        for order in rows.order_by("updated_at", "pk"):
            read.add(order.pk)
            state = (order.status, str(order.filled))
            if self.seen.get(order.pk) != state:
                self.seen[order.pk] = state
                out.append(order_update(order))
            if self.since is None or order.updated_at > self.since:
                self.since = order.updated_at
        if self.since is None:
            self.since = timezone.now()
        # A done order outside the window read is never read again: forget it.
        self.seen = {
            pk: state for pk, state in self.seen.items() if pk in read or state[0] in Order.RESTING
        }
        return out
