from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from huey.contrib.djhuey import HUEY

from tests.servers import postgres_available, skip_or_fail

LOOPBACK = {"localhost", "127.0.0.1", "::1", "testserver"}
_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in LOOPBACK and not name.startswith("127."):
        raise OSError(f"tests must not touch the internet (tried to resolve {name})")
    return _getaddrinfo(host, *args, **kwargs)


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
