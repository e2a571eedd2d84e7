"""Websocket routes; each app owns its consumers."""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.urls import URLPattern, path, re_path

from bots.api_sockets import BotOrdersSocket, BotStatusSocket
from bots.consumers import BotPageConsumer, DashboardConsumer
from market.consumers import PriceConsumer, PriceUpdateConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/bots/<int:bot_id>/", BotPageConsumer.as_asgi()),
    path("ws/market/<str:symbol>/", PriceConsumer.as_asgi()),
    # The published API's (README, "API"): signed in by the session or a token.
    path("ws/bot/<int:bot_id>", BotStatusSocket.as_asgi()),
    path("ws/bot/<int:bot_id>/orders", BotOrdersSocket.as_asgi()),
    path("ws/market/<str:symbol>", PriceUpdateConsumer.as_asgi()),
    # Any other path: the handshake is refused (403), not a "No route found" error and a 500.
    re_path(r"", WebsocketDenier.as_asgi()),
]
