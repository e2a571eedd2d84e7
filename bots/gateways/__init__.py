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
        cache[key] = CcxtGateway(key_check.client_for(credential), symbol)
    return cache[key]
