"""A bot's cycle lock: cycles, live starts and live stops of one bot never run side by side.

The lock is Huey's own (its storage: Redis when configured, else SQLite), so it holds across
every worker process. The heartbeat says when the bot's chain last ran a cycle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from huey.contrib.djhuey import HUEY
from huey.exceptions import TaskLockedException

from bots.errors import BotError


def lock_name(bot_id: int) -> str:
    return f"bot-cycle-{bot_id}"


def heartbeat_key(bot_id: int) -> str:
    return f"bot-heartbeat-{bot_id}"


class Busy(Exception):
    """Another worker holds the bot's cycle lock right now."""


@contextmanager
def cycle_lock(bot_id: int) -> Iterator[None]:
    """The bot's cycle lock, or ``Busy`` at once when another worker holds it."""
    lock = HUEY.lock_task(lock_name(bot_id))
    try:
        lock.__enter__()
    except TaskLockedException:
        raise Busy(bot_id) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@contextmanager
def bot_lock(bot_id: int, *, wait: float = 10.0) -> Iterator[None]:
    """The bot's cycle lock, waited for: live starts and stops take it so they never run
    beside a cycle of the same bot. BotError when a cycle holds it longer than ``wait``."""
    lock = HUEY.lock_task(lock_name(bot_id))
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.__enter__()
            break
        except TaskLockedException:
            if time.monotonic() > deadline:
                raise BotError(
                    "The bot is busy with its exchange right now; try again in a moment."
                ) from None
            time.sleep(0.05)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
