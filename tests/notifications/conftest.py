from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifications.models import Channel
from tests.bots.conftest import WORKED_CONFIG, worked_market  # noqa: F401 (a fixture)
from tests.fakes.fake_notify import FakeNotify

TOKEN = "123456789:AAE-fakeTOKENfakeTOKENfakeTOKEN_xyz9"
CHAT = "424242"
SECRET = "whsec_test-secret-0123456789"


@pytest.fixture
def fake_notify(settings: Any) -> Iterator[FakeNotify]:
    """The fake webhook receiver and Telegram Bot API, with the settings pointed at it."""
    with FakeNotify() as fake:
        settings.TELEGRAM_API_URL = fake.telegram_api_url
        settings.NOTIFY_WEBHOOK_ALLOW_HTTP = True
        settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
        settings.NOTIFY_HTTP_TIMEOUT_SECONDS = 2
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        fake.add_telegram_bot(TOKEN, chats={CHAT})
        yield fake


@pytest.fixture
def make_channel(user: Any, fake_notify: FakeNotify) -> Callable[..., Channel]:
    """``make(type, owner=None, kinds=None, **fields)``: a saved channel; a webhook posts to
    the fake's hook named after its label, a Telegram channel uses the fake's bot."""

    def make(type: str = "webhook", *, owner: Any = None, kinds: list[str] | None = None,
             label: str | None = None, **fields: Any) -> Channel:  # fmt: skip
        label = label or type
        channel = Channel(owner=owner or user, type=type, label=label, **fields)
        if kinds is not None:
            channel.kinds = kinds
        if type == Channel.Type.WEBHOOK:
            channel.url = channel.url or fake_notify.webhook_url(label)
            channel.set_secret(SECRET)
        elif type == Channel.Type.TELEGRAM:
            channel.chat_id = channel.chat_id or CHAT
            channel.set_secret(TOKEN)
        channel.save()
        return channel

    return make


@pytest.fixture
def worked_bot(worked_market: None, make_bot: Callable[..., Any]) -> Any:  # noqa: F811
    return make_bot(WORKED_CONFIG)


@pytest.fixture
def trade(worked_bot: Any) -> Callable[[], Any]:
    """``trade()``: the worked example's bot, named "Worked grid", started and cycled: 5 grid
    fills and 2 round trips (profits 23.481115 and 28.334042 USDT). Channels made before the
    call are told of them."""
    from bots import cycle, services
    from tests.bots.conftest import WORKED_CANDLES, add_candles

    def run() -> Any:
        worked_bot.name = "Worked grid"
        worked_bot.save(update_fields=["name"])
        services.start_bot(worked_bot)
        add_candles(WORKED_CANDLES[1:])
        cycle.run_cycle(worked_bot.pk)
        worked_bot.refresh_from_db()
        return worked_bot

    return run
