"""Publishing to the channel layer from synchronous code (services, tasks, the feed).

`async_to_sync(layer.group_send)` starts an event loop per call, and channels-redis binds its
connections to the loop: every publish would open a Redis connection. With a Redis layer we
keep one event loop in a background thread for the process, so publishes reuse connections
and do not hold up the caller. The in-memory layer (embedded default, tests) lives on the
loop of whoever consumes it, so there the call stays synchronous.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from redis import asyncio as aioredis

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="channel-push", daemon=True).start()
        return _loop


def _report(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("publish failed: %s", future.exception())


def group_send(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group`; never raises for a missing or unreachable layer."""
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        async_to_sync(layer.group_send)(group, event)
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, event), _background_loop())
    future.add_done_callback(_report)


def group_send_many(events: Mapping[str, dict[str, Any]]) -> None:
    """Send each group its event, as ``group_send`` does, for many groups at once (a batch of
    bot cycles). With the Redis pub/sub layer on one server, the groups someone listens to are
    found with one ``PUBSUB NUMSUB`` and only those are published to, instead of a publish for
    every group, most of which nobody watches."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    hosts = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts", [])
    if (
        not isinstance(layer, RedisPubSubChannelLayer)
        or len(hosts) != 1
        or not isinstance(hosts[0], str)
    ):
        for group, event in events.items():
            group_send(group, event)
        return
    future = asyncio.run_coroutine_threadsafe(
        _send_watched(layer, hosts[0], events), _background_loop()
    )
    future.add_done_callback(_report)


_numsub_client: aioredis.Redis | None = None


async def _send_watched(
    layer: RedisPubSubChannelLayer, url: str, events: Mapping[str, dict[str, Any]]
) -> None:
    global _numsub_client
    if _numsub_client is None:  # bound to the background loop, which lives as long as we do
        _numsub_client = aioredis.Redis.from_url(url)
    # A group is the pub/sub channel "<prefix>__group__<group>" (channels-redis's naming; the
    # tests send through a real Redis and would see it change). The prefix is the layer's own.
    prefix = layer.prefix
    names = {group: f"{prefix}__group__{group}" for group in events}
    counts = dict(await _numsub_client.pubsub_numsub(*names.values()))
    for group, name in names.items():
        if counts.get(name.encode()):
            await layer.group_send(group, events[group])
