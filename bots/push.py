"""Live push for bots: publishers say what changed; consumers decide how to show it.

Services and cycles call ``publish_bot`` after a change is committed; ``bots.consumers``
renders the page fragments (``bots.pages``) for whoever watches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.dispatch import Signal

from aibo import push

# Sent with ``bot_id`` after every publish: listeners (the notifications' dispatch) wake up
# without this app knowing them. Sent robustly: a listener's failure never reaches a cycle.
bot_published = Signal()

# The parts of a bot page that a change can touch.
CHANGES = ("status", "orders", "trades", "stats", "events")


def bot_group(bot_id: int) -> str:
    return f"bot.{bot_id}"


def publish_bot(bot_id: int, *, changes: Iterable[str] = CHANGES) -> None:
    """Tell everyone watching bot `bot_id` that it changed (after the change is committed).

    By default every part changed: a start, a stop or a new grid also writes the log, and a
    page whose log still shows the old orders contradicts its ladder. Cycles say what moved."""
    push.group_send(bot_group(bot_id), _changed(bot_id, changes))
    bot_published.send_robust(sender=None, bot_id=bot_id)


def publish_bots(changes: Mapping[int, Iterable[str]]) -> None:
    """``publish_bot`` for a batch of bots: only the pages someone has open are sent to."""
    push.group_send_many({bot_group(pk): _changed(pk, parts) for pk, parts in changes.items()})
    for pk in changes:
        bot_published.send_robust(sender=None, bot_id=pk)


def _changed(bot_id: int, changes: Iterable[str]) -> dict[str, object]:
    return {"type": "bot.changed", "bot_id": bot_id, "changes": sorted(set(changes))}
