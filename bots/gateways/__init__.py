"""Exchange gateways: the protocol (base), the real exchange through ccxt, and the client
that carries a user's decrypted keys."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def _ccxt_client(exchange: str, api_key: str, secret: str) -> Any:
    import ccxt

    return getattr(ccxt, exchange)(
        {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": True,
            "timeout": 10_000,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                # Spot grids need neither: without these ccxt also calls the signed /sapi
                # currency and margin endpoints whenever it loads the markets.
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )


# (exchange, api_key, secret) -> a ccxt client. Tests point it at the local fake exchange.
CLIENT_FACTORY: Callable[[str, str, str], Any] = _ccxt_client


def client_for(credential: Any) -> Any:
    """A ccxt client signed with this ExchangeCredential's keys (decrypted only here)."""
    api_key, secret = credential.keys()
    return CLIENT_FACTORY(credential.exchange, api_key, secret)


_local = threading.local()


def gateway_for(credential: Any, symbol: str) -> Any:
    """The gateway for these keys and this pair, kept per thread: its ccxt client loads the
    markets once, and it remembers which client id each exchange order id carries."""
    from bots.gateways.ccxt_gateway import CcxtGateway

    cache = _local.__dict__.setdefault("gateways", {})
    key = (CLIENT_FACTORY, credential.pk, credential.api_key_encrypted, symbol)
    if key not in cache:
        cache[key] = CcxtGateway(client_for(credential), symbol)
    return cache[key]
