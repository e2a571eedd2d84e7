"""Request bodies are capped before Django reads them (issue 10, finding 8)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from django.core.signals import request_started

from aibo.asgi import application

MiB = 1024 * 1024


def http_scope(headers: list[tuple[bytes, bytes]], path: str = "/accounts/login/") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Client:
    """The other end of one ASGI request: sends ``chunks``, keeps count, collects the answer."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0  # body messages the app took from us
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        if self.pulled >= len(self.chunks):
            await asyncio.sleep(3600)  # a client that keeps the connection open
        self.pulled += 1
        more = self.pulled < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.pulled - 1], "more_body": more}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")


@pytest.fixture
def django_started():
    """Requests Django began to handle (its body read in full, the view about to run)."""
    started: list[dict] = []

    def note(sender, scope=None, **kwargs):
        started.append(scope)

    request_started.connect(note)
    yield started
    request_started.disconnect(note)


async def test_oversized_body_is_refused_before_it_is_read(django_started):
    client = Client([b"x" * MiB] * 300)  # 300 MB, anonymous
    scope = http_scope([(b"content-length", str(300 * MiB).encode())])
    await asyncio.wait_for(application(scope, client.receive, client.send), timeout=5)
    assert client.status == 413
    assert client.pulled == 0  # not a byte of the body was read
    assert django_started == []


async def test_streamed_body_without_length_is_capped(settings, django_started):
    settings.MAX_REQUEST_BODY_BYTES = 256 * 1024
    client = Client([b"x" * 64 * 1024] * 4800)  # 300 MB, chunked: no Content-Length
    await asyncio.wait_for(application(http_scope([]), client.receive, client.send), timeout=5)
    assert client.status == 413
    assert client.pulled == 5  # 4 chunks make the cap; the 5th goes over and ends it
    assert django_started == []


async def test_bodies_within_the_cap_reach_django(django_started):
    body = b"username=a%40example.com&password=x"
    client = Client([body])
    scope = http_scope([(b"content-length", str(len(body)).encode())])
    await asyncio.wait_for(application(scope, client.receive, client.send), timeout=5)
    assert client.status == 403  # Django's CSRF check: the request got through to Django
    assert len(django_started) == 1


async def test_a_malformed_content_length_is_refused():
    client = Client([b"x"])
    scope = http_scope([(b"content-length", b"-1")])
    await application(scope, client.receive, client.send)
    assert client.status == 400 and client.pulled == 0


def test_django_refuses_the_same_sizes(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.MAX_REQUEST_BODY_BYTES


def test_the_server_answers_413_while_the_body_is_still_coming(served):
    host, port = served.split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: " + served.encode() + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 314572800\r\n\r\n" + b"x" * 65536
        )
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - started < 2  # not after 300 MB
