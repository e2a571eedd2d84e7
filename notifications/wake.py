"""Waking the dispatch when something may be new: after a bot published a change, and when an
advisor run is done. Cheap by design, since a cycle calls it: no query, one cache key, and at
most one dispatch enqueued a second however busy the bots are (the minute task is the floor).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache
from django.db import transaction

WAKE_KEY = "notifications:wake"
# This process asks the cache at most once a second: a batch of 500 bot cycles publishes 500
# times, and a cache round trip each cost as much as walking the bot.
_asked_until = 0.0


def request_dispatch() -> None:
    global _asked_until
    now = time.monotonic()
    if now < _asked_until:
        return
    _asked_until = now + 1
    if cache.add(WAKE_KEY, 1, timeout=1):
        # Robust: a queue that cannot be reached is logged, never raised into the committer.
        transaction.on_commit(_enqueue, robust=True)


def _enqueue() -> None:
    from notifications.tasks import dispatch_notifications_task

    dispatch_notifications_task()


def on_bot_published(sender: Any, *, bot_id: int, **kwargs: Any) -> None:
    request_dispatch()


def on_advisor_run_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.status == "done" and instance.owner_id is not None:
        request_dispatch()
