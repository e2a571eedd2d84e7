from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from aibo.routing import websocket_urlpatterns
from bots import consumers, push, services
from bots.consumers import Coalescer
from market.push import apublish_price, market_group
from tests.bots.conftest import CONFIG

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app():
    return URLRouter(websocket_urlpatterns)


@pytest.fixture
def fast(monkeypatch):
    """Coalesce over 50 ms instead of 250 ms: the tests wait less, the behaviour is the same."""
    monkeypatch.setattr(consumers, "BOT_INTERVAL", 0.05)
    monkeypatch.setattr(consumers, "PRICE_INTERVAL", 0.05)


def session_of(user):
    """A signed-in session of ``user``, as the auth middleware puts it in the scope."""
    client = Client()
    client.force_login(user)
    return client.session


async def connect(app, path, user):
    communicator = WebsocketCommunicator(app, path)
    communicator.scope["user"] = user
    if user.is_authenticated:
        communicator.scope["session"] = await sync_to_async(session_of)(user)
    connected, _ = await communicator.connect()
    return communicator, connected


async def receive_all(communicator, timeout=0.5, first=0.0) -> list[str]:
    """Everything sent until the socket stays quiet for ``timeout`` seconds (after waiting up
    to ``first`` seconds for a first message: a connect's first render of the whole page is
    slower than a push on a busy machine)."""
    out = []
    if first and not await communicator.receive_nothing(timeout=first):
        out.append(await communicator.receive_from())
    # receive_from's own timeout would cancel the consumer; receive_nothing only waits.
    while not await communicator.receive_nothing(timeout=timeout):
        out.append(await communicator.receive_from())
    return out


async def test_owner_gets_fresh_fragments_on_connect(app, user, bot, fast):
    communicator, connected = await connect(app, f"/ws/bots/{bot.pk}/", user)
    try:
        assert connected
        messages = await receive_all(communicator, first=5)
        html = "".join(m for m in messages if m.startswith("<") or m.startswith("\n"))
        for part in ("status", "stats", "ladder", "trades", "events"):
            assert f'id="bot-{bot.pk}-{part}"' in html
        grid = [json.loads(m) for m in messages if m.startswith("{")]
        assert grid and grid[0]["type"] == "grid" and len(grid[0]["lines"]) == 20
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/bots/{pk}/", "/ws/bot/{pk}", "/ws/bot/{pk}/orders"])
async def test_another_user_is_refused(app, other_user, bot, path):
    communicator, connected = await connect(app, path.format(pk=bot.pk), other_user)
    try:
        assert not connected
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/bots/{pk}/", "/ws/dashboard/", "/ws/market/BTCUSDT/"])
async def test_anonymous_is_refused(app, bot, path):
    from django.contrib.auth.models import AnonymousUser

    communicator, connected = await connect(app, path.format(pk=bot.pk), AnonymousUser())
    try:
        assert not connected
    finally:
        await communicator.disconnect()


async def test_a_start_is_pushed_to_the_bot_page(app, user, bot, fast):
    communicator, _ = await connect(app, f"/ws/bots/{bot.pk}/", user)
    try:
        await receive_all(communicator, timeout=0.3, first=5)  # the fresh state
        await sync_to_async(services.start_bot)(bot)  # publishes bot.changed after commit
        messages = await receive_all(communicator)
        html = "".join(m for m in messages if not m.startswith("{"))
        assert f'id="bot-{bot.pk}-status"' in html and "Running" in html
        assert html.count('class="order-status open"') == 19
        grid = [json.loads(m) for m in messages if m.startswith("{")]
        assert grid[-1]["type"] == "grid" and len(grid[-1]["orders"]) == 19
    finally:
        await communicator.disconnect()


async def test_a_stop_made_elsewhere_refreshes_every_card_of_an_open_bot_page(app, user, bot, fast):
    await sync_to_async(services.start_bot)(bot)
    communicator, _ = await connect(app, f"/ws/bots/{bot.pk}/", user)
    try:
        await receive_all(communicator, timeout=0.3, first=5)  # the fresh state
        # The emergency stop on the dashboard, another tab: the log says the orders went.
        await sync_to_async(services.emergency_stop)(user)
        html = "".join(m for m in await receive_all(communicator) if not m.startswith("{"))
        for part in ("status", "stats", "ladder", "trades", "events"):
            assert f'id="bot-{bot.pk}-{part}"' in html, part
        assert f'id="bot-{bot.pk}-open-orders">0</dd>' in html
        assert "Cancelled 19 resting order(s)" in html and "Stopped: no orders rest" in html
    finally:
        await communicator.disconnect()


async def test_a_burst_of_changes_is_coalesced(app, user, bot, monkeypatch):
    monkeypatch.setattr(consumers, "BOT_INTERVAL", 0.3)
    communicator, _ = await connect(app, f"/ws/bots/{bot.pk}/", user)
    try:
        await receive_all(communicator, timeout=0.4, first=5)
        for _ in range(20):
            await sync_to_async(push.publish_bot)(bot.pk, changes=["stats"])
        messages = await receive_all(communicator, timeout=0.6)
        stats = [m for m in messages if f'id="bot-{bot.pk}-stats"' in m]
        assert 1 <= len(stats) <= 2  # the first at once, the other 19 together
    finally:
        await communicator.disconnect()


async def test_prices_reach_the_page_as_json_and_html(app, user, bot, fast):
    communicator, _ = await connect(app, f"/ws/bots/{bot.pk}/", user)
    try:
        await receive_all(communicator, timeout=0.3, first=5)
        candle = {"time_ms": 1748822400000, "open": "1", "high": "2", "low": "1", "close": "2"}
        await apublish_price("binance", "BTC/USDT", D("65123.45"), 1748822430000, candle)
        messages = await receive_all(communicator, timeout=0.3)
        ticks = [json.loads(m) for m in messages if m.startswith("{")]
        assert ticks == [
            {
                "type": "price",
                "symbol": "BTC/USDT",
                "price": "65123.45",
                "time_ms": 1748822430000,
                "candle": candle,
            }
        ]
        assert any(f'id="bot-{bot.pk}-price"' in m and "65,123.45" in m for m in messages)
    finally:
        await communicator.disconnect()


async def test_dashboard_gets_cards_and_prices_of_my_bots_only(
    app, user, other_user, bot, fast, django_user_model
):
    theirs = await sync_to_async(services.create_bot)(
        other_user, symbol="BTC/USDT", config=dict(CONFIG)
    )
    communicator, connected = await connect(app, "/ws/dashboard/", user)
    try:
        assert connected
        first = "".join(await receive_all(communicator, timeout=0.3, first=5))
        assert f'id="bot-{bot.pk}-card"' in first and f"bot-{theirs.pk}-card" not in first
        await sync_to_async(push.publish_bot)(theirs.pk, changes=["status"])
        await sync_to_async(push.publish_bot)(bot.pk, changes=["status"])
        await apublish_price("binance", "BTC/USDT", D("64000"), 1748822430000)
        pushed = "".join(await receive_all(communicator, timeout=0.3))
        assert f'id="bot-{bot.pk}-card"' in pushed and f"bot-{theirs.pk}" not in pushed
        assert f'id="bot-{bot.pk}-price"' in pushed and "64,000.00" in pushed
    finally:
        await communicator.disconnect()


async def test_dashboard_pushes_nothing_for_an_archived_bot_it_shows_no_card_of(
    app, user, bot, fast
):
    put_away = await sync_to_async(services.create_bot)(
        user, symbol="BTC/USDT", config=dict(CONFIG), name="Put away"
    )
    await sync_to_async(services.archive_bot)(put_away)
    communicator, connected = await connect(app, "/ws/dashboard/", user)
    try:
        assert connected
        first = "".join(await receive_all(communicator, timeout=0.3, first=5))
        assert f'id="bot-{bot.pk}-card"' in first and f"bot-{put_away.pk}-" not in first
        assert 'id="bot-totals" aria-labelledby="totals-title" hx-swap-oob="true"' in first
        await sync_to_async(push.publish_bot)(put_away.pk, changes=["status"])
        await apublish_price("binance", "BTC/USDT", D("64000"), 1748822430000)
        pushed = "".join(await receive_all(communicator, timeout=0.3))
        # No fragment without a target on the page (htmx:oobErrorNoTarget).
        assert f"bot-{put_away.pk}-" not in pushed and f'id="bot-{bot.pk}-price"' in pushed
    finally:
        await communicator.disconnect()


async def test_market_socket_forwards_prices(app, user):
    communicator, connected = await connect(app, "/ws/market/BTCUSDT/", user)
    try:
        assert connected
        await apublish_price("binance", "BTC/USDT", D("1.5"), 1000)
        assert await communicator.receive_json_from(timeout=2) == {
            "type": "price",
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "price": "1.5",
            "time_ms": 1000,
            "candle": None,
        }
    finally:
        await communicator.disconnect()


def test_market_group_names_are_channels_safe():
    assert market_group("BTC/USDT") == "market.BTCUSDT"
    assert market_group("eth/usdt:x") == "market.ETHUSDTX"


async def test_coalescer_sends_the_first_at_once_and_the_rest_together():
    batches = []

    async def flush(batch):
        batches.append(dict(batch))

    c = Coalescer(0.1, flush)
    c.add("a", {1}, lambda x, y: x | y)
    await asyncio.sleep(0.01)
    for i in range(5):
        c.add("a", {i}, lambda x, y: x | y)
    c.add("b", {9})
    await asyncio.sleep(0.2)
    assert batches == [{"a": {1}}, {"a": {0, 1, 2, 3, 4}, "b": {9}}]
    c.cancel()


async def test_one_subscription_per_pair_feeds_every_socket_until_the_last_leaves(app, user):
    from market.consumers import PriceHub

    a, _ = await connect(app, "/ws/market/BTCUSDT/", user)
    b, _ = await connect(app, "/ws/market/BTCUSDT/", user)
    try:
        hub = PriceHub.current()
        assert len(hub.sockets["market.BTCUSDT"]) == 2 and len(hub.pumps) == 1
        await apublish_price("binance", "BTC/USDT", D("2"), 2000)
        assert (await a.receive_json_from(timeout=2))["price"] == "2"
        assert (await b.receive_json_from(timeout=2))["price"] == "2"
        await a.disconnect()
        await apublish_price("binance", "BTC/USDT", D("3"), 3000)
        assert (await b.receive_json_from(timeout=2))["price"] == "3"
    finally:
        await b.disconnect()
    assert "market.BTCUSDT" not in hub.sockets and not hub.pumps
