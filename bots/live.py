"""Live push for bots: publishers say what changed; consumers decide how to show it."""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def bot_group(bot_id: int) -> str:
    return f"bot.{bot_id}"


def publish_bot(
    bot_id: int, *, changes: Iterable[str] = ("status", "orders", "trades", "stats")
) -> None:
    """Tell everyone watching bot `bot_id` that it changed (after the change is committed)."""
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": "bot.changed", "bot_id": bot_id, "changes": sorted(set(changes))}
    async_to_sync(layer.group_send)(bot_group(bot_id), event)
