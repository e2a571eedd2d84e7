"""Issue 15: Schemathesis over the published OpenAPI document, signed in, with a bot, a market
and bounded examples: no 5xx, and every answer matches its documented status, content type and
schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts import tokens
from aibo.api import api
from bots import services
from tests.api.conftest import CONFIG

EXAMPLES = 15  # per operation: about 200 requests in all, a few seconds


@pytest.fixture(autouse=True)
def _in_process(db: None, market: Any, settings: Any) -> Iterator[None]:
    settings.API_REQUESTS_PER_USER_PER_MINUTE = 100_000
    settings.API_REQUESTS_PER_CLIENT_PER_MINUTE = 100_000
    # As Django's test client does: a request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# The document the app serves at /api/openapi.json, called through the app in process.
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(api.get_openapi_schema(), cls=DjangoJSONEncoder))
)
schema.app = get_wsgi_application()


@pytest.fixture
def signed_in(user: Any) -> dict[str, str]:
    # A bot of the user's with id 1..3 lies where the generated ids often fall.
    for _ in range(3):
        services.create_bot(user, symbol="BTC/USDT", config=dict(CONFIG))
    return {"Authorization": f"Bearer {tokens.issue(user)}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_every_answer_as_documented(case: Any, signed_in: dict[str, str]) -> None:
    # Valid-looking configs may still be refused (422): a grid's rules (upper above lower, the
    # market's minimum order) go beyond what a JSON schema can say; 422 is documented.
    case.call_and_validate(headers=signed_in, excluded_checks=[positive_data_acceptance])
