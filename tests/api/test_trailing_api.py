"""Issue 17: the API's config takes a trigger price and trailing up and down, documented in
the OpenAPI schema; a bad setting is a 422 naming its config key, through the one schema."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bots.models import Bot
from tests.api.conftest import CONFIG, Client

pytestmark = pytest.mark.django_db(transaction=True)

TRAILING = {
    "trigger_price": "64000.01",
    "trailing_up": True,
    "trailing_up_limit": 80000,
    "trailing_down": True,
    "trailing_down_limit": "55000",
}
STORED = {
    "trigger_price": "64000.01",
    "trailing_up": "true",
    "trailing_up_limit": "80000",
    "trailing_down": "true",
    "trailing_down_limit": "55000",
}
KEYS = tuple(STORED)


def _post(client: Client, auth: dict[str, str], config: dict[str, Any]) -> Any:
    body = {"strategy": "grid", "pair": "BTC/USDT", "config": config}
    return client.post("/api/bots", json=body, headers=auth)


def test_a_bot_is_created_with_a_trigger_and_trailing_stored_exactly(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    answer = _post(client, auth, CONFIG | TRAILING)
    assert answer.status_code == 201, answer.text
    config = answer.json()["config"]
    assert {k: config[k] for k in KEYS} == STORED
    bot = Bot.objects.get()
    assert {k: bot.config[k] for k in KEYS} == STORED
    # and reads back the same
    again = client.get(f"/api/bots/{bot.pk}", headers=auth).json()["config"]
    assert {k: again[k] for k in KEYS} == STORED


def test_a_config_without_them_leaves_trigger_and_trailing_off(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    answer = _post(client, auth, CONFIG)
    assert answer.status_code == 201, answer.text
    assert not set(KEYS) & set(Bot.objects.get().config)  # stored as before they existed
    config = answer.json()["config"]  # but the answer has one shape for every bot
    assert config["trailing_up"] == config["trailing_down"] == "false"
    assert config["trigger_price"] == config["trailing_up_limit"] == ""
    assert config["trailing_down_limit"] == ""


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"trailing_down": True}, "trailing_down_limit"),  # the floor is required
        ({"trailing_down": True, "trailing_down_limit": "-5"}, "trailing_down_limit"),
        ({"trigger_price": "0"}, "trigger_price"),
        (
            {"stop_loss_pct": "5", "trailing_down": True, "trailing_down_limit": "56000"},
            "trailing_down_limit",  # below the stop-loss price 57,000
        ),
    ],
)
def test_a_bad_trailing_setting_is_422_naming_its_key_and_creates_nothing(
    client: Client, auth: dict[str, str], market: Decimal, changes: dict[str, Any], key: str
) -> None:
    answer = _post(client, auth, CONFIG | changes)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"config.{key}: "), answer.json()
    assert not Bot.objects.exists()


def test_a_flag_that_is_not_a_boolean_is_422_never_500(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    answer = _post(client, auth, CONFIG | {"trailing_up": {"on": 1}})
    assert answer.status_code == 422, answer.text
    assert not Bot.objects.exists()


def test_put_replaces_the_config_trailing_included(
    client: Client, auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _post(client, auth, CONFIG | TRAILING).json()["id"]
    changed = CONFIG | {"trailing_up": True}  # trigger and trailing down dropped
    answer = client.put(f"/api/bots/{bot_id}", json={"config": changed}, headers=auth)
    assert answer.status_code == 200, answer.text
    config = answer.json()["updated_config"]
    assert config["trailing_up"] == "true" and config["trailing_up_limit"] == ""
    assert config["trailing_down"] == "false" and config["trigger_price"] == ""


def test_another_users_bot_cannot_be_given_trailing(
    client: Client, auth: dict[str, str], other_auth: dict[str, str], market: Decimal
) -> None:
    bot_id = _post(client, auth, CONFIG).json()["id"]
    answer = client.put(
        f"/api/bots/{bot_id}", json={"config": CONFIG | TRAILING}, headers=other_auth
    )
    assert answer.status_code == 404
    assert "trailing_up" not in Bot.objects.get().config


def test_the_openapi_schema_documents_trigger_and_trailing(client: Client, db: None) -> None:
    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]
    props = schemas["ConfigIn"]["properties"]
    for key in KEYS:
        assert key in props, key
        assert props[key].get("description"), key
    assert "trailing_down_limit" in props["trailing_down"]["description"]
    assert props["trailing_up"]["default"] is False
