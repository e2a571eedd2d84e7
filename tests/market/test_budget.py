"""The request budget (market/exchange.py): the exchange's own counters and limits, its 429s
and 418s, shared through the cache by every client of one exchange (issue 12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from market.exchange import (
    Budget,
    Limit,
    RequestsPaused,
    ban_notice,
    limits_from,
    spending_reserve,
)

RATE_LIMITS = {
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 1000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ]
}
BASE = "https://api.binance.com/api/v3"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_800_000_000.0]  # on a minute's start
    monkeypatch.setattr(timezone, "now", lambda: datetime.fromtimestamp(now[0], UTC))
    return now


def loaded(api_key: str = "key-1") -> Budget:
    budget = Budget("binance", api_key)
    budget.after(200, f"{BASE}/exchangeInfo", {}, json.dumps(RATE_LIMITS))
    return budget


def test_the_limits_are_the_exchanges_own():
    assert limits_from(RATE_LIMITS) == [
        Limit("REQUEST_WEIGHT", 60, 100), Limit("ORDERS", 10, 10), Limit("ORDERS", 86400, 1000)
    ]  # fmt: skip
    assert [limit.header for limit in limits_from(RATE_LIMITS)] == [
        "x-mbx-used-weight-1m", "x-mbx-order-count-10s", "x-mbx-order-count-1d"
    ]  # fmt: skip
    assert Budget("binance", "k").limits() == []  # none known yet: the exchange paces us


def test_a_fifth_of_the_weight_is_kept_spare_and_the_next_minute_frees_it(clock):
    budget = loaded()
    budget.after(200, f"{BASE}/openOrders", {"X-MBX-USED-WEIGHT-1M": "79"}, "[]")
    budget.before("GET", f"{BASE}/openOrders")  # 79 of 100: still 21 % spare

    budget.after(200, f"{BASE}/openOrders", {"X-MBX-USED-WEIGHT-1M": "80"}, "[]")
    with pytest.raises(RequestsPaused, match="80 of 100 request weight") as paused:
        Budget("binance", "another-account").before("GET", f"{BASE}/ticker/price")  # the IP's
    assert paused.value.until == clock[0] + 60

    clock[0] += 60
    budget.before("GET", f"{BASE}/openOrders")


def test_new_orders_are_counted_per_account(clock):
    budget = loaded("key-1")
    budget.after(200, f"{BASE}/order", {"X-MBX-ORDER-COUNT-10S": "8"}, "{}")
    with pytest.raises(RequestsPaused, match="new orders"):
        budget.before("POST", f"{BASE}/order")
    budget.before("DELETE", f"{BASE}/order")  # cancels are not new orders
    loaded("key-2").before("POST", f"{BASE}/order")  # another account has its own


def test_a_429_pauses_every_client_on_the_ip_for_its_retry_after(clock):
    budget = loaded()
    budget.after(429, f"{BASE}/order", {"Retry-After": "30"}, '{"code":-1003}')

    with pytest.raises(RequestsPaused, match="slow down"):
        Budget("binance", "other").before("DELETE", f"{BASE}/order")
    clock[0] += 31
    budget.before("DELETE", f"{BASE}/order")


def test_a_418_stops_everything_until_the_ban_ends_and_the_dashboard_says_so(clock):
    until_ms = int((clock[0] + 3 * 3600) * 1000)
    body = json.dumps({"code": -1003, "msg": f"Way too many requests; IP banned until {until_ms}."})
    loaded().after(418, f"{BASE}/myTrades", {"Retry-After": "120"}, body)

    with pytest.raises(RequestsPaused, match="banned") as paused:
        Budget("binance").before("GET", f"{BASE}/ticker/price")
    assert paused.value.until == until_ms / 1000  # the ban's own end, not Retry-After
    notice = ban_notice("binance")
    assert notice is not None and "banned" in notice and "about 180 min" in notice
    clock[0] += 3 * 3600 + 1
    assert ban_notice("binance") is None


def test_too_many_new_orders_holds_that_accounts_orders_not_the_ip(clock):
    budget = loaded("key-1")
    body = '{"code":-1015,"msg":"Too many new orders; current limit is 10 orders per 10 SECOND."}'
    budget.after(429, f"{BASE}/order", {}, body)

    with pytest.raises(RequestsPaused, match="new orders"):
        budget.before("POST", f"{BASE}/order")
    budget.before("DELETE", f"{BASE}/order")  # cancels still go out
    Budget("binance", "key-2").before("POST", f"{BASE}/order")
    clock[0] += 10
    budget.before("POST", f"{BASE}/order")


def test_cancels_and_stops_may_spend_the_spare_share(clock):
    """A cancel, and anything a stop sends (inside ``spending_reserve``), takes risk off: they
    go out in the spare fifth; the window's limit is still the exchange's."""
    budget = loaded()
    budget.after(200, f"{BASE}/openOrders", {"X-MBX-USED-WEIGHT-1M": "90"}, "[]")
    with pytest.raises(RequestsPaused):
        budget.before("POST", f"{BASE}/order")  # a new grid order keeps the spare share
    budget.before("DELETE", f"{BASE}/order?symbol=BTCUSDT&origClientOrderId=x")
    with spending_reserve():
        budget.before("GET", f"{BASE}/myTrades")
        budget.before("POST", f"{BASE}/order")  # a stop's sale

    budget.after(200, f"{BASE}/order", {"X-MBX-USED-WEIGHT-1M": "100"}, "{}")
    with pytest.raises(RequestsPaused), spending_reserve():
        budget.before("DELETE", f"{BASE}/order?symbol=BTCUSDT&origClientOrderId=x")


def test_an_order_on_its_way_costs_one_cache_read_and_each_answer_one_write(clock, monkeypatch):
    from django.core.cache import cache

    budget = loaded()
    budget.before("POST", f"{BASE}/order")  # the limits, as the last request saw them
    calls: list[str] = []
    inside: list[str] = []  # (a backend's get_many may be its get, key by key)

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not inside:
                calls.append(name)
            inside.append(name)
            try:
                return real(*args, **kwargs)
            finally:
                inside.pop()

        return call

    for name in ("get", "get_many", "set", "set_many"):
        monkeypatch.setattr(cache, name, counted(name, getattr(cache, name)))
    budget.before("POST", f"{BASE}/order")
    assert calls == ["get_many"]
    budget.after(200, f"{BASE}/order", {"X-MBX-USED-WEIGHT-1M": "3",
                                        "X-MBX-ORDER-COUNT-10S": "10"}, "{}")  # fmt: skip
    assert calls == ["get_many", "set_many"]
    with pytest.raises(RequestsPaused, match="10 of 10 new orders"):  # read in that one read
        budget.before("POST", f"{BASE}/order")
    assert budget.usage()[:2] == [
        ("request weight (this IP) per 60 s", 3, 100), ("new orders per 10 s", 10, 10)
    ]  # fmt: skip
