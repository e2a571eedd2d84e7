"""Exchange gateways: the protocol (base) and the real exchange through ccxt, kept per
thread for each user's keys and pair."""

from __future__ import annotations

import threading
from typing import Any

from accounts import key_check
from market import exchange

_local = threading.local()


def gateway_for(credential: Any, symbol: str) -> Any:
    """The gateway for these keys and this pair, kept per thread: its ccxt client loads the
    markets once, and it remembers which client id each exchange order id carries."""
    from bots.gateways.ccxt_gateway import CcxtGateway

    cache = _local.__dict__.setdefault("gateways", {})
    key = (exchange.CLIENT_FACTORY, credential.pk, credential.api_key_encrypted, symbol)
    if key not in cache:
        cache[key] = CcxtGateway(
            key_check.client_for(credential), symbol,
            known_client_id=lambda order_id: _sent_order(credential, symbol, order_id),
        )  # fmt: skip
    return cache[key]


def _sent_order(credential: Any, symbol: str, exchange_order_id: str) -> str | None:
    """The client id of an order our bots sent with these keys (from our books): a trade of
    it needs no request to tell whose it is."""
    from bots.models import Order

    return (
        Order.objects.filter(
            exchange_order_id=exchange_order_id, bot__credential=credential, bot__symbol=symbol
        )
        .values_list("client_order_id", flat=True)
        .first()
    )
