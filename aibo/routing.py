"""Websocket routes; each app owns its consumers."""

from __future__ import annotations

from django.urls import URLPattern, path

from bots.consumers import BotApiConsumer, BotPageConsumer, DashboardConsumer
from market.consumers import PriceConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/bots/<int:bot_id>/", BotPageConsumer.as_asgi()),
    path("ws/api/bots/<int:bot_id>/", BotApiConsumer.as_asgi()),
    path("ws/market/<str:symbol>/", PriceConsumer.as_asgi()),
]
