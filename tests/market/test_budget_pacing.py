"""ccxt's own rate limiter and the request budget (market/exchange.py): ccxt spaces one
client's requests (50 ms apart on Binance) whatever the exchange's counters say, so a fill's
counter-order waited behind the request before it. The budget knows the exchange's counters:
ccxt's pacing now waits only while the budget is crowded or knows no limits (issue 12)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from market.exchange import Budget
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

LIMITS = {
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10},
    ]
}


def paced_client(fake: FakeBinance, budget: Budget) -> tuple[Any, list[Any]]:
    """The fake's real ccxt client with ccxt's rate limiter on, as the app makes them, its
    waits counted instead of slept, watched by ``budget``."""
    client = fake.ccxt_client()
    client.enableRateLimit = True
    waits: list[Any] = []
    client.throttle = lambda cost=None: waits.append(cost)
    return budget.watch(client), waits


def test_ccxt_paces_a_client_only_while_its_budget_is_crowded(
    fake_binance: Callable[..., FakeBinance],
) -> None:
    fake = fake_binance()
    budget = Budget("binance", fake.api_key)
    client, waits = paced_client(fake, budget)

    client.fetch_time()
    assert len(waits) == 1  # no limits known: ccxt paces, as it always did

    budget.after(200, f"{fake.base_url}/exchangeInfo", {}, json.dumps(LIMITS))
    client.fetch_time()  # the budget looks (a little weight used of 100) before it goes out
    client.fetch_time()
    client.fetch_time()
    assert len(waits) == 2  # room: the requests after that one went out without waiting

    # The exchange says 45 of 100 used: from 40 (half of what the 20 % headroom leaves) ccxt
    # spaces the requests again.
    budget.after(200, f"{fake.base_url}/time", {"X-MBX-USED-WEIGHT-1M": "45"}, "{}")
    client.fetch_time()
    assert len(waits) == 3


def test_an_async_client_is_paced_the_same_way(fake_binance: Callable[..., FakeBinance]) -> None:
    import asyncio

    class Client:  # the shape of a ccxt.pro client's pacing: a coroutine
        def __init__(self) -> None:
            self.waits = 0
            self.options: dict[str, Any] = {}

        async def throttle(self, cost: Any = None) -> None:
            self.waits += 1

        async def fetch(self, *args: Any) -> None:
            return None

        def on_rest_response(self, *args: Any) -> None:
            return None

    budget = Budget("binance", "key")
    client = budget.watch(Client())
    asyncio.run(client.throttle(1))
    assert client.waits == 1  # nothing known: paced
    budget.after(200, "https://api.binance.com/api/v3/exchangeInfo", {}, json.dumps(LIMITS))
    budget.before("GET", "https://api.binance.com/api/v3/time")
    asyncio.run(client.throttle(1))
    assert client.waits == 1  # room: no wait, and still awaitable


def test_an_order_reads_the_budget_in_two_cache_round_trips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.cache import cache

    budget = Budget("binance", "key")
    budget.after(200, "https://api.binance.com/api/v3/exchangeInfo", {}, json.dumps(LIMITS))
    reads: list[str] = []
    inside = [False]  # a local cache's get_many asks get for each key: not a round trip

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def read(*args: Any, **kwargs: Any) -> Any:
            if inside[0]:
                return real(*args, **kwargs)
            reads.append(name)
            inside[0] = True
            try:
                return real(*args, **kwargs)
            finally:
                inside[0] = False

        return read

    for name in ("get", "get_many"):
        monkeypatch.setattr(cache, name, counted(name, getattr(cache, name)))
    budget.before("POST", "https://api.binance.com/api/v3/order")
    assert reads == ["get_many", "get_many"]  # limits and pause; then the counters they name
