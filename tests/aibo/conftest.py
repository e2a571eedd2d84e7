from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from django.test import Client

from tests.servers import free_port


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@pytest.fixture(scope="module")
def _server() -> Iterator[str]:
    from aibo.management.commands.serve import UVICORN_OPTIONS

    port = free_port()
    options = {**UVICORN_OPTIONS, "log_level": "info"}
    server = _ThreadServer(uvicorn.Config("aibo.asgi:application", "127.0.0.1", port, **options))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def served(_server: str, transactional_db: None, settings: Any) -> str:
    """``host:port`` of the real ASGI app under uvicorn, run as ``manage.py serve`` runs it,
    in a thread of this process (so it shares the test database)."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
    return _server


@pytest.fixture
def signed_in(user: Any) -> Client:
    """A browser session of ``user`` (its cookie: ``signed_in.cookies["sessionid"]``)."""
    client = Client()
    client.force_login(user)
    return client
