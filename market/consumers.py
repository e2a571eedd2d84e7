"""``/ws/market/<SYMBOL>/``: a pair's prices as JSON, for any signed-in user.

A price goes to many sockets at once, so it does not go through one Channels consumer queue
per socket: each server process keeps one channel-layer subscription per pair (``PriceHub``)
and hands every tick straight to that pair's sockets. The event already carries its JSON
(``market.push.price_event``), so a tick costs each socket one websocket frame and nothing
else: no database, no per-socket task switch through the layer, no per-socket serialising.
A socket whose client reads slower than the feed gets only the newest price when it catches up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from aibo.ws import UserSocket
from market import pairs, services
from market.precision import plain
from market.push import market_group, price_update_json

logger = logging.getLogger(__name__)

_SYMBOL = re.compile(r"^[A-Za-z0-9]{2,30}$")
EXCHANGE = "binance"  # the exchange the API's pairs are of


class PriceHub:
    """Per event loop (one per server process): one subscription per pair, fanned out here."""

    _hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PriceHub] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.sockets: dict[str, set[PriceConsumer]] = {}
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.subscribed: dict[str, asyncio.Event] = {}

    @classmethod
    def current(cls) -> PriceHub:
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls()
        return hub

    async def join(self, group: str, socket: PriceConsumer, layer: BaseChannelLayer) -> None:
        """Add the socket; returns once the pair's subscription is in place."""
        self.sockets.setdefault(group, set()).add(socket)
        if group not in self.pumps:
            self.subscribed[group] = asyncio.Event()
            self.pumps[group] = asyncio.ensure_future(self._pump(group, layer))
        await self.subscribed[group].wait()

    def leave(self, group: str, socket: PriceConsumer) -> None:
        sockets = self.sockets.get(group)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self.sockets[group]
            pump = self.pumps.pop(group, None)
            self.subscribed.pop(group, None)
            if pump is not None:
                pump.cancel()

    async def _pump(self, group: str, layer: BaseChannelLayer) -> None:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        self.subscribed[group].set()
        try:
            while True:
                event = await layer.receive(channel)
                if event.get("type") != "market.price":
                    continue
                for socket in list(self.sockets.get(group, ())):
                    socket.deliver(event[socket.json_key])
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("price hub for %s stopped", group)
        finally:
            await layer.group_discard(group, channel)


class PriceConsumer(UserSocket):
    """Signed-in users only (``UserSocket`` refuses anonymous sockets before ``connect``)."""

    json_key = "json"  # which of the event's serialised forms this socket sends

    async def connect(self) -> None:
        symbol = self.scope["url_route"]["kwargs"]["symbol"]
        if not _SYMBOL.match(symbol):
            await self.close()
            return
        self.sending: asyncio.Task[None] | None = None
        self.newest: str | None = None
        self.group = market_group(symbol)
        await PriceHub.current().join(self.group, self, self.channel_layer)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            PriceHub.current().leave(self.group, self)
        if getattr(self, "sending", None) is not None:
            self.sending.cancel()  # type: ignore[union-attr]

    def deliver(self, text: str) -> None:
        """Send ``text`` soon; while a send waits on a slow client, keep only the newest."""
        if self.sending is not None:
            self.newest = text
            return
        self.sending = asyncio.ensure_future(self._send(text))

    async def _send(self, text: str | None) -> None:
        try:
            while text is not None:
                await self.send(text_data=text)
                text, self.newest = self.newest, None
        except Exception:  # the client went away mid-send: disconnect() cleans up
            pass
        finally:
            self.sending = None


class PriceUpdateConsumer(PriceConsumer):
    """``/ws/market/{symbol}`` of the published API: ``{type: "price_update", data: {symbol,
    price, timestamp}}``, the pair's latest price at once on connect, then every tick. The
    symbol is written ``BTCUSDT`` or ``BTC-USDT``; a pair the exchange does not list closes."""

    json_key = "api_json"

    async def connect(self) -> None:
        symbol = await database_sync_to_async(pairs.listed)(
            EXCHANGE, self.scope["url_route"]["kwargs"]["symbol"]
        )
        if symbol is None:
            await self.close()
            return
        self.scope["url_route"]["kwargs"]["symbol"] = symbol.replace("/", "")
        await super().connect()
        if not self.accepted:
            return
        now = await database_sync_to_async(services.price_now)(EXCHANGE, symbol)
        if now is not None:
            at_ms = int(now.at.timestamp() * 1000)
            self.deliver(price_update_json(symbol, plain(now.price), at_ms))
