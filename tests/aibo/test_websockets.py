"""The websocket boundary (issue 10, finding 7), through the real ASGI application."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aibo import ws
from aibo.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def headers(client: Client | None, origin: str | None = "http://testserver", host="testserver"):
    out = [(b"host", host.encode())]
    if origin is not None:
        out.append((b"origin", origin.encode()))
    if client is not None:
        out.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return out


async def open_socket(client, path="/ws/dashboard/", **kwargs):
    communicator = WebsocketCommunicator(application, path, headers=headers(client, **kwargs))
    connected, _ = await communicator.connect()
    return communicator, connected


async def closed_with(communicator, timeout=2.0) -> int | None:
    """The close code the server sends next (None: it sent something else)."""
    message = await communicator.receive_output(timeout=timeout)
    return message.get("code") if message["type"] == "websocket.close" else None


def another_session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_websockets_per_user_are_capped(settings, user, other_user, signed_in):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    a, ok_a = await open_socket(signed_in)
    b, ok_b = await open_socket(signed_in, path="/ws/market/BTCUSDT/")
    c, ok_c = await open_socket(signed_in)
    theirs, ok_theirs = await open_socket(await sync_to_async(another_session)(other_user))
    try:
        assert ok_a and ok_b and ok_theirs  # the cap is per user
        assert ok_c and await closed_with(c) == ws.CLOSE_TOO_MANY_SOCKETS  # told why, then shut
        await a.disconnect()  # its slot is free again at once
        d, ok_d = await open_socket(signed_in)
        assert ok_d and await d.receive_nothing(timeout=0.2)
        await d.disconnect()
    finally:
        for communicator in (b, c, theirs):
            await communicator.disconnect()


async def test_slots_of_a_dead_process_free_themselves(settings, monkeypatch, user, signed_in):
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    monkeypatch.setattr(ws, "SLOT_SECONDS", 1)
    # A server process took the only slot and died: it never releases nor renews it.
    assert await sync_to_async(ws.acquire_slot)(user.pk, "process-that-died", 1)
    refused, _ = await open_socket(signed_in)
    assert await closed_with(refused) == ws.CLOSE_TOO_MANY_SOCKETS
    await refused.disconnect()
    await asyncio.sleep(1.1)
    accepted, connected = await open_socket(signed_in)
    try:
        assert connected and await accepted.receive_nothing(timeout=0.2)
    finally:
        await accepted.disconnect()


async def test_slots_are_renewed_while_the_socket_lives(settings, monkeypatch, user, signed_in):
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    monkeypatch.setattr(ws, "SLOT_SECONDS", 1)
    monkeypatch.setattr(ws, "RENEW_SECONDS", 0.3)
    held, _ = await open_socket(signed_in)
    try:
        await asyncio.sleep(1.5)  # past the lease: only renewal keeps the slot
        second, _ = await open_socket(signed_in)
        assert await closed_with(second) == ws.CLOSE_TOO_MANY_SOCKETS
        await second.disconnect()
        assert await held.receive_nothing(timeout=0.1)
    finally:
        await held.disconnect()


def test_slots_work_on_the_redis_cache(settings, redis_url, user):
    settings.CACHES = {"default": {"BACKEND": "aibo.cache.RedisCache", "LOCATION": redis_url}}
    first = ws.acquire_slot(user.pk, "one", 2)
    second = ws.acquire_slot(user.pk, "two", 2)
    try:
        assert first and second and first != second
        assert ws.acquire_slot(user.pk, "three", 2) is None
        assert ws.renew_slot(first, "one", user.pk, 2) == first
        ws.release_slot(second, "one")  # not its holder: nothing happens
        assert ws.acquire_slot(user.pk, "three", 2) is None
        ws.release_slot(second, "two")
        assert ws.acquire_slot(user.pk, "three", 2) == second
    finally:
        from django.core.cache import cache

        cache.delete_many([first, second])


async def test_large_client_frames_close_the_socket(served, signed_in):
    cookie = signed_in.cookies["sessionid"].value
    async with ws_connect(
        f"ws://{served}/ws/dashboard/",
        origin=f"http://{served}",
        additional_headers={"Cookie": f"sessionid={cookie}"},
    ) as socket:
        await socket.send("x" * (ws.MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


async def test_client_messages_close_the_socket(signed_in):
    communicator, connected = await open_socket(signed_in)
    try:
        assert connected
        await communicator.send_to(text_data='{"hello": "server"}')
        assert await closed_with(communicator) == ws.CLOSE_UNEXPECTED_MESSAGE
    finally:
        await communicator.disconnect()


def test_the_server_command_and_compose_cap_frames_alike():
    from pathlib import Path

    import yaml

    from aibo.management.commands.serve import UVICORN_OPTIONS

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose.yaml").read_text())
    command = compose["services"]["web"]["command"]
    assert UVICORN_OPTIONS["ws_max_size"] == ws.MAX_FRAME_BYTES
    assert command[command.index("--ws-max-size") + 1] == str(ws.MAX_FRAME_BYTES)


async def test_logout_closes_the_users_sockets(user, signed_in):
    elsewhere = await sync_to_async(another_session)(user)  # the same user on another device
    mine, _ = await open_socket(signed_in)
    theirs, _ = await open_socket(elsewhere)
    try:
        response = await sync_to_async(signed_in.post)("/accounts/logout/")
        assert response.status_code == 302
        assert await closed_with(mine) == ws.CLOSE_SESSION_ENDED
        assert await theirs.receive_nothing(timeout=0.3)  # that session did not end
    finally:
        await mine.disconnect()
        await theirs.disconnect()


async def test_password_change_closes_the_users_sockets(user, signed_in):
    elsewhere = await sync_to_async(another_session)(user)
    mine, _ = await open_socket(signed_in)
    theirs, _ = await open_socket(elsewhere)
    try:
        new = "a-New-pw-5678!"
        response = await sync_to_async(signed_in.post)(
            "/accounts/password/",
            {"old_password": "pw-Tr4der!x", "new_password1": new, "new_password2": new},
        )
        assert response.status_code == 302
        # Every session signed in with the old password ends; this browser's page reloads
        # with its new session and opens new sockets.
        assert await closed_with(theirs) == ws.CLOSE_SESSION_ENDED
        assert await closed_with(mine) == ws.CLOSE_SESSION_ENDED
        after, connected = await open_socket(signed_in)
        assert connected and await after.receive_nothing(timeout=0.3)
        await after.disconnect()
    finally:
        await mine.disconnect()
        await theirs.disconnect()


async def test_a_socket_closes_when_its_session_expires(monkeypatch, signed_in):
    monkeypatch.setattr(ws, "RENEW_SECONDS", 0.1)
    communicator, _ = await open_socket(signed_in)
    try:
        assert await communicator.receive_nothing(timeout=0.3)  # re-checked, still signed in
        # Expired or removed by `clearsessions`, an admin, another process: no signal at all.
        await sync_to_async(Session.objects.all().delete)()
        assert await closed_with(communicator) == ws.CLOSE_SESSION_ENDED
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "allowed"),
    [
        ("ws", "testserver", "http://testserver", True),
        ("ws", "testserver", "http://testserver:80", True),  # the default port, spelled out
        ("ws", "testserver", "HTTP://TESTSERVER", True),
        ("ws", "testserver", "https://testserver", False),  # another scheme
        ("ws", "testserver", "http://testserver:8080", False),  # another port
        ("ws", "testserver:8000", "http://testserver:8000", True),
        ("ws", "testserver:8000", "http://testserver", False),
        ("ws", "testserver", "http://sub.testserver", False),
        ("ws", "testserver", "http://evil.example", False),
        ("ws", "testserver", "null", False),
        ("ws", "testserver", "http://testserver/path", False),
        ("ws", "testserver", None, False),
        ("ws", "evil.example", "http://evil.example", False),  # not in ALLOWED_HOSTS
        ("wss", "testserver", "https://testserver", True),
        ("wss", "testserver", "http://testserver", False),  # a plain-http page
        ("ws", "testserver", "https://app.example.com", True),  # CSRF_TRUSTED_ORIGINS
        ("ws", "testserver", "http://app.example.com", False),
        ("ws", "testserver", "https://a.trusted.example", True),  # https://*.trusted.example
        ("ws", "testserver", "https://a.trusted.example:444", False),
    ],
)
async def test_origin_check_compares_scheme_and_port(
    settings, signed_in, scheme, host, origin, allowed
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.trusted.example"]
    communicator = WebsocketCommunicator(
        application, "/ws/dashboard/", headers=headers(signed_in, origin=origin, host=host)
    )
    communicator.scope["scheme"] = scheme
    try:
        connected, _ = await communicator.connect()
        assert connected is allowed
    finally:
        await communicator.disconnect()


async def test_origin_check_trusts_the_proxys_scheme_only_when_told(settings, signed_in):
    forwarded = [(b"x-forwarded-proto", b"https")]
    for trusted, allowed in ((None, False), (("HTTP_X_FORWARDED_PROTO", "https"), True)):
        settings.SECURE_PROXY_SSL_HEADER = trusted
        communicator = WebsocketCommunicator(
            application,
            "/ws/dashboard/",
            headers=headers(signed_in, origin="https://testserver") + forwarded,
        )
        try:
            connected, _ = await communicator.connect()
            assert connected is allowed
        finally:
            await communicator.disconnect()


async def test_unknown_websocket_path_is_refused_without_error(served, caplog):
    caplog.set_level(logging.INFO)
    for path in ("/ws/nothing-here/", "/ws/bots/not-a-number/", "/"):
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(f"ws://{served}{path}", origin=f"http://{served}", open_timeout=5)
        assert refused.value.response.status_code == 403
    await asyncio.sleep(0.1)  # the server thread logs after it answers
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
