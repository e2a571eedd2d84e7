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
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

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
