"""The JSON API through a real HTTP client (requests) against the served ASGI app (uvicorn), with
BTC/USDT's rules and a price stored as the market feed leaves them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.bots.conftest import price, rules  # noqa: F401  (fixtures: BTC/USDT at 65,000)
from tests.browser.conftest import live_url  # noqa: F401  (the served app)

CONFIG = {
    "capital": "1000",
    "lower_bound": "60000",
    "upper_bound": "70000",
    "grid_levels": 20,
}


class Client(requests.Session):
    """A session whose paths are the served app's."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, f"{self.base_url}{url!s}", *args, **kwargs)


@pytest.fixture
def client(live_url: str) -> Iterator[Client]:  # noqa: F811
    with Client(live_url) as c:
        yield c


def token_for(client: Client, email: str, password: str) -> str:
    answer = client.post("/api/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


@pytest.fixture
def auth(client: Client, user: Any) -> dict[str, str]:
    """The ``user`` fixture's bearer header."""
    return {"Authorization": f"Bearer {token_for(client, user.email, 'pw-Tr4der!x')}"}


@pytest.fixture
def other_auth(client: Client, other_user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(client, other_user.email, 'pw-0ther!xx')}"}


@pytest.fixture
def market(price: Decimal) -> Decimal:  # noqa: F811
    return price
