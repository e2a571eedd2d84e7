"""Issue 15: the API's three websockets, through a real websocket client (``websockets``)
against the served app: the current state at once, then every change; signed in by a token
(``?token=`` or the header) or the session; anyone else is refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bots.models import Order
from market.push import publish_price
from tests.api.conftest import CONFIG, Client

pytestmark = pytest.mark.django_db(transaction=True)


def _ws(client: Client, path: str, **headers: str) -> ClientConnection:
    url = client.base_url.replace("http://", "ws://") + path
    return connect(url, additional_headers=headers or None, open_timeout=10)


def _next(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=10))


def _running_bot(client: Client, auth: dict[str, str]) -> int:
    body = {"strategy": "grid", "pair": "BTC/USDT", "config": CONFIG}
    bot_id = client.post("/api/bots", json=body, headers=auth).json()["id"]
    assert client.post(f"/api/bots/{bot_id}/start", headers=auth).status_code == 200
    return bot_id


def _token(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


def test_bot_status_sends_the_state_at_once_then_each_change(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _running_bot(client, auth)
    with _ws(client, f"/ws/bot/{bot_id}?token={_token(auth)}") as ws:
        first = _next(ws)
        assert first["type"] == "status_update"
        assert set(first["data"]) == {"status", "open_orders", "realized_pnl", "unrealized_pnl"}
        assert first["data"]["status"] == "running"
        assert (
            first["data"]["open_orders"]
            == Order.objects.filter(bot_id=bot_id, status="open").count()
            > 0
        )
        Decimal(first["data"]["realized_pnl"]), Decimal(first["data"]["unrealized_pnl"])
        assert client.post(f"/api/bots/{bot_id}/stop", headers=auth).status_code == 200
        while (update := _next(ws))["data"]["status"] != "stopped":
            pass
        assert update["data"]["open_orders"] == 0


def test_bot_orders_sends_resting_orders_then_their_changes(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _running_bot(client, auth)
    resting = set(Order.objects.filter(bot_id=bot_id, status="open").values_list("pk", flat=True))
    with _ws(client, f"/ws/bot/{bot_id}/orders", Authorization=auth["Authorization"]) as ws:
        first = [_next(ws) for _ in range(Order.objects.filter(bot_id=bot_id).count())]
        assert {m["type"] for m in first} == {"order_update"}
        assert set(first[0]["data"]) == {"order_id", "status", "filled_price", "filled_amount"}
        # the start's market buy (done), then the grid's resting orders
        start = first[0]["data"]
        assert start["status"] == "filled" and Decimal(start["filled_price"]) == 65000
        assert {m["data"]["order_id"] for m in first[1:]} == resting
        assert client.post(f"/api/bots/{bot_id}/stop", headers=auth).status_code == 200
        cancelled = set()
        while cancelled != resting:
            message = _next(ws)["data"]
            assert message["status"] == "cancelled" and message["filled_amount"] == "0"
            cancelled.add(message["order_id"])


def test_market_sends_the_price_at_once_then_every_tick(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    with _ws(client, f"/ws/market/BTC-USDT?token={_token(auth)}") as ws:
        assert _next(ws) == {
            "type": "price_update",
            "data": {
                "symbol": "BTC/USDT",
                "price": "65000",
                "timestamp": "2025-06-01T00:00:00.000Z",
            },
        }
        publish_price("binance", "BTC/USDT", Decimal("65001.5"), 1748736060000)
        assert _next(ws) == {
            "type": "price_update",
            "data": {
                "symbol": "BTC/USDT",
                "price": "65001.5",
                "timestamp": "2025-06-01T00:01:00.000Z",
            },
        }


def test_the_session_signs_a_socket_in_too(client: Client, user: Any, market: Decimal) -> None:
    page = client.get("/accounts/login/")
    csrf = page.cookies["csrftoken"]
    signed_in = client.post(
        "/accounts/login/",
        data={"username": user.email, "password": "pw-Tr4der!x", "csrfmiddlewaretoken": csrf},
        headers={"Referer": client.base_url + "/accounts/login/"},
    )
    assert signed_in.status_code == 302, signed_in.text[:500]
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    with _ws(client, "/ws/market/BTCUSDT", Cookie=cookie, Origin=client.base_url) as ws:
        assert _next(ws)["data"]["symbol"] == "BTC/USDT"
    # the session's cookie from another site's page is refused
    with pytest.raises(InvalidStatus):
        _ws(client, "/ws/market/BTCUSDT", Cookie=cookie, Origin="http://evil.example")


def _refused(client: Client, path: str, **headers: str) -> bool:
    try:
        with _ws(client, path, **headers) as ws:
            ws.recv(timeout=5)
    except (InvalidStatus, ConnectionClosed):
        return True
    return False


def test_another_users_bot_or_no_credentials_closes_the_socket(
    client: Client, auth: dict[str, str], other_auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _running_bot(client, auth)
    for path in (f"/ws/bot/{bot_id}", f"/ws/bot/{bot_id}/orders"):
        assert _refused(client, f"{path}?token={_token(other_auth)}")
        assert _refused(client, path, Authorization=other_auth["Authorization"])
        assert _refused(client, path)
        assert _refused(client, f"{path}?token=forged.token.here")
    assert _refused(client, "/ws/market/BTCUSDT")
    assert _refused(client, f"/ws/market/NOPEUSDT?token={_token(auth)}")


def test_sockets_beyond_the_users_cap_are_closed_with_4429(
    client: Client, auth: dict[str, str], market: Decimal, settings: Any
) -> None:
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    with _ws(client, f"/ws/market/BTCUSDT?token={_token(auth)}") as first:
        assert _next(first)["type"] == "price_update"
        with _ws(client, f"/ws/market/BTCUSDT?token={_token(auth)}") as second:
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
