from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from huey.contrib.djhuey import HUEY

from tests.fakes.fake_binance import FakeBinance
from tests.servers import postgres_available, skip_or_fail

if TYPE_CHECKING:
    from bots.models import Bot

LOOPBACK = {"localhost", "127.0.0.1", "::1", "testserver"}
_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in LOOPBACK and not name.startswith("127."):
        raise OSError(f"tests must not touch the internet (tried to resolve {name})")
    return _getaddrinfo(host, *args, **kwargs)


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests last: the session's Playwright keeps an event loop running in this
    thread from its first use to the end, and an asyncio test after it could not start one."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)


@pytest.fixture(autouse=True, scope="session")
def _no_internet() -> Iterator[None]:
    """Every name a test resolves must be this machine: no test touches the internet."""
    socket.getaddrinfo = _loopback_only
    yield
    socket.getaddrinfo = _getaddrinfo


@pytest.fixture(autouse=True)
def _embedded_channels_and_immediate_huey(settings: Any) -> Iterator[None]:
    """Every test gets the in-memory channel layer and runs Huey tasks in-line."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    immediate = HUEY.immediate
    HUEY.immediate = True
    yield
    HUEY.immediate = immediate


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def postgres() -> None:
    """Use in tests that must run on PostgreSQL (skipped, with the reason, without it)."""
    if not postgres_available():
        skip_or_fail("PostgreSQL is not installed here: this test needs a real PostgreSQL")


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(email="trader@example.com", password="pw-Tr4der!x")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(email="other@example.com", password="pw-0ther!xx")


@pytest.fixture
def make_bot(user: Any) -> Callable[..., Bot]:
    """``make(config, owner=None, symbol="BTC/USDT", **options)``: a bot made by
    ``bots.services.create_bot`` for ``owner`` (the ``user`` by default); ``options`` are its
    other keyword arguments (``name``, ``mode``, ``credential``)."""
    from bots import services

    def make(
        config: dict[str, str], owner: Any = None, symbol: str = "BTC/USDT", **options: Any
    ) -> Bot:
        return services.create_bot(owner or user, symbol=symbol, config=config, **options)

    return make


@pytest.fixture
def fake_binance(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeBinance]]:
    """``start(**options)``: a fake Binance (tests/fakes/fake_binance.py) on a free local port,
    stopped after the test; ``options`` are ``FakeBinance``'s (keys, balances, prices, ...).

    With ``as_exchange=True`` the app's own ccxt clients (``market.exchange.CLIENT_FACTORY``) are
    built against it too, with ``timeout_ms`` if given (ccxt_client's default otherwise).
    """
    from market import exchange

    with ExitStack() as running:

        def start(
            *, as_exchange: bool = False, timeout_ms: int | None = None, **options: Any
        ) -> FakeBinance:
            fake = running.enter_context(FakeBinance(**options))
            if as_exchange:
                timeout = {} if timeout_ms is None else {"timeout_ms": timeout_ms}
                monkeypatch.setattr(
                    exchange,
                    "CLIENT_FACTORY",
                    lambda name, k, s: fake.ccxt_client(k, s, **timeout),
                )
            return fake

        yield start
