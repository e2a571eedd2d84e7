"""Websocket consumers for the bot pages (htmx out-of-band HTML); the JSON API's are in
``bots.api_sockets``.

Every socket is a signed-in session's (``aibo.ws.UserSocket``: capped per user, closed when the
session ends, deaf to client messages). It joins only its own user's bots (checked on connect,
closed otherwise) and the market groups of their pairs. Bursts are coalesced: a bot that changes
ten times in 250 ms is rendered once, and a price that ticks faster than ``PRICE_INTERVAL``
reaches the socket as its latest value, so a busy bot costs each socket a few small messages a
second at most. Every connect, first or re-, starts with the full current state: nothing missed
while away stays missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from channels.db import database_sync_to_async

from aibo.ws import UserSocket
from bots import pages, push
from bots.models import Bot
from market import services as market_services
from market.push import market_group

logger = logging.getLogger(__name__)

BOT_INTERVAL = 0.25  # seconds between two renders of one bot's changes on one socket
PRICE_INTERVAL = 0.25  # seconds between two prices of one pair on one socket


class Coalescer:
    """Collects keys and calls ``flush(keys)`` at most once per ``interval``.

    The first key after a quiet spell is flushed at once (no added latency for a lone event);
    what arrives while a flush waits or runs joins the next one.
    """

    def __init__(self, interval: float, flush: Callable[[dict[Hashable, Any]], Awaitable[None]]):
        self.interval = interval
        self.flush = flush
        self.pending: dict[Hashable, Any] = {}
        self.task: asyncio.Task[None] | None = None
        self.last = -interval

    def add(
        self, key: Hashable, value: Any = None, merge: Callable[[Any, Any], Any] | None = None
    ) -> None:
        if merge is not None and key in self.pending:
            value = merge(self.pending[key], value)
        self.pending[key] = value
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                wait = self.last + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                batch, self.pending = self.pending, {}
                self.last = loop.time()
                try:
                    await self.flush(batch)
                except Exception:  # a closed socket, a render error: log, never kill the consumer
                    logger.exception("live push failed")
        finally:
            self.task = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.pending = {}


def _union(a: set[str], b: set[str]) -> set[str]:
    return a | b


@database_sync_to_async
def _owned_bots(user_id: int | None, bot_id: int | None = None) -> list[tuple[int, str]]:
    """(pk, symbol) of the user's bots not archived (or of that one, archived or not); their
    markets are noted as shown on an open page, so the market feed streams them too."""
    if user_id is None:
        return []
    qs = Bot.objects.filter(owner_id=user_id)
    # The dashboard's socket leaves archived bots out: they have no card to update.
    qs = qs.filter(pk=bot_id) if bot_id is not None else qs.active()
    rows = list(qs.values_list("pk", "symbol", "exchange"))
    for pair in {(exchange, symbol) for _, symbol, exchange in rows}:
        market_services.watch_market(*pair)
    return [(pk, symbol) for pk, symbol, _ in rows]


class _LiveConsumer(UserSocket):
    """Group bookkeeping and coalescing shared by the page and API consumers."""

    groups_joined: list[str]

    async def join(self, groups: Iterable[str]) -> None:
        self.groups_joined = sorted(set(groups))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs every handler after a thread hop that closes stale database
        # connections; these two only note what to send (the flush does its own database
        # work in database_sync_to_async), and with many sockets the hops were the latency.
        if message["type"] == "bot.changed":
            await self.bot_changed(message)
        elif message["type"] == "market.price":
            await self.market_price(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        for c in (getattr(self, "bots", None), getattr(self, "prices", None)):
            if c is not None:
                c.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    def user_id(self) -> int | None:
        user = self.scope.get("user")
        return user.pk if user is not None and user.is_authenticated else None

    async def owned_bot(self) -> str | None:
        """The socket's bot (``bot_id`` in the path): its pair when it is the user's, else the
        socket is closed and None."""
        self.bot_id = int(self.scope["url_route"]["kwargs"]["bot_id"])
        owned = await _owned_bots(self.user_id(), self.bot_id)
        if not owned:
            await self.close()
            return None
        return owned[0][1]

    async def bot_changed(self, event: dict[str, Any]) -> None:
        self.bots.add(event["bot_id"], set(event.get("changes") or push.CHANGES), _union)

    async def market_price(self, event: dict[str, Any]) -> None:
        self.prices.add(event["symbol"], event)  # the latest price of a pair wins


class BotPageConsumer(_LiveConsumer):
    """``/ws/bots/<pk>/``: the bot page's fragments, and JSON for its chart."""

    async def connect(self) -> None:
        symbol = await self.owned_bot()
        if symbol is None:
            return
        self.symbol = symbol
        self.bots = Coalescer(BOT_INTERVAL, self.send_changes)
        self.prices = Coalescer(PRICE_INTERVAL, self.send_prices)
        await self.join([push.bot_group(self.bot_id), market_group(self.symbol)])
        await self.accept()
        await self.send_changes({self.bot_id: set(push.CHANGES)})

    async def send_changes(self, batch: dict[Hashable, Any]) -> None:
        changes = batch.get(self.bot_id) or set()
        html, chart = await _render_bot_page(self.bot_id, changes)
        if html:
            await self.send(text_data=html)
        if chart is not None:
            await self.send(text_data=json.dumps(chart))

    async def send_prices(self, batch: dict[Hashable, Any]) -> None:
        for event in batch.values():
            await self.send(text_data=json.dumps(_price_json(event)))
            await self.send(text_data=pages.render_price([self.bot_id], event["price"]))


@database_sync_to_async
def _render_bot_page(bot_id: int, changes: set[str]) -> tuple[str, dict[str, Any] | None]:
    try:
        html = pages.render_bot(bot_id, changes)
        chart = None
        if changes & {"orders", "trades", "status"}:
            chart = pages.chart_state(Bot.objects.get(pk=bot_id))
    except Bot.DoesNotExist:
        return "", None  # deleted meanwhile
    return html, chart


def _price_json(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "price",
        "symbol": event["symbol"],
        "price": event["price"],
        "time_ms": event["time_ms"],
        "candle": event.get("candle"),
    }


class DashboardConsumer(_LiveConsumer):
    """``/ws/dashboard/``: the user's bot cards and their prices."""

    async def connect(self) -> None:
        user_id = self.user_id()
        if user_id is None:
            await self.close()
            return
        self.owner_id = user_id
        owned = await _owned_bots(user_id)
        self.by_symbol: dict[str, list[int]] = {}
        for pk, symbol in owned:
            self.by_symbol.setdefault(symbol, []).append(pk)
        self.bots = Coalescer(BOT_INTERVAL, self.send_cards)
        self.prices = Coalescer(PRICE_INTERVAL, self.send_prices)
        groups = [push.bot_group(pk) for pk, _ in owned] + [market_group(s) for s in self.by_symbol]
        await self.join(groups)
        await self.accept()
        if owned:
            await self.send_cards({pk: set(push.CHANGES) for pk, _ in owned})

    async def send_cards(self, batch: dict[Hashable, Any]) -> None:
        html = await _render_cards(self.owner_id, list(batch))
        if html:
            await self.send(text_data=html)

    async def send_prices(self, batch: dict[Hashable, Any]) -> None:
        html = "".join(
            pages.render_price(self.by_symbol.get(symbol, []), event["price"])
            for symbol, event in batch.items()
        )
        if html:
            await self.send(text_data=html)


@database_sync_to_async
def _render_cards(owner_id: int, bot_ids: list[int]) -> str:
    return (
        pages.render_cards(owner_id, bot_ids)
        + pages.render_totals(owner_id)
        + pages.render_paper_balance(owner_id)
    )
