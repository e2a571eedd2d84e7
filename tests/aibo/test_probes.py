"""The probes answer whatever the Host header and before the HTTPS redirect: a container's
healthcheck asks http://127.0.0.1:8000 while ALLOWED_HOSTS names the public host."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_probes_answer_a_foreign_host_over_plain_http(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["aibo.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    client = Client(HTTP_HOST="127.0.0.1:8000")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["checks"]["database"] == "ok"
    assert client.get("/accounts/login/").status_code == 400  # any other page: the host check
