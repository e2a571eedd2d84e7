"""Publishing a batch's changes: only the groups someone listens to are sent to (real Redis)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import channel_layers
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis import asyncio as aioredis

from aibo import push


@pytest.fixture
def pubsub_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


def test_a_batch_publishes_to_the_watched_groups_only(pubsub_layer):
    async def scenario() -> tuple[dict, list[bytes]]:
        page = RedisPubSubChannelLayer(hosts=[pubsub_layer])  # a bot page in another process
        channel = await page.new_channel()
        await page.group_add("bot.1", channel)
        # Sees every publish to any group, without counting as a listener of any.
        spy = aioredis.Redis.from_url(pubsub_layer).pubsub()
        await spy.psubscribe("asgi__group__bot.*")
        await spy.get_message(timeout=1)  # the psubscribe confirmation
        events = {f"bot.{i}": {"type": "bot.changed", "bot_id": i} for i in range(1, 6)}
        await asyncio.to_thread(push.group_send_many, events)
        received = await asyncio.wait_for(page.receive(channel), timeout=5)
        published = []
        while (message := await spy.get_message(timeout=0.5)) is not None:
            published.append(message["channel"])
        await spy.aclose()
        await page.flush()
        return received, published

    received, published = asyncio.run(scenario())
    assert received == {"type": "bot.changed", "bot_id": 1}
    assert published == [b"asgi__group__bot.1"]  # bots 2 to 5 have no page open: not sent


def test_without_redis_every_group_is_sent_to(settings):
    sent = []
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    layer = channel_layers["default"]

    async def listen() -> None:
        channel = await layer.new_channel()
        await layer.group_add("bot.7", channel)
        await asyncio.to_thread(
            push.group_send_many, {"bot.7": {"type": "x"}, "bot.8": {"type": "y"}}
        )
        sent.append(await asyncio.wait_for(layer.receive(channel), timeout=5))

    asyncio.run(listen())
    channel_layers.backends.clear()
    assert sent == [{"type": "x"}]
