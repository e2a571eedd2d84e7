"""A failing request shows a page with its request id and nothing else (issue 10, finding 4);
the log line of the failure carries that id and the traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.test import Client

from aibo.logging import RequestIdFilter
from tests.aibo.error_urls import SECRET_DETAIL

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.aibo.error_urls")]


@pytest.fixture
def browser(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING) writes during the test."""
    (console,) = [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RequestIdFilter) for f in h.filters)
    ]
    out = io.StringIO()
    previous = console.setStream(out)
    yield out
    console.setStream(previous)


def test_a_server_error_shows_only_the_request_id(browser, user, settings):
    assert settings.DEBUG is False
    response = browser.get("/boom/", headers={"X-Request-ID": "req-500-abc"})
    assert response.status_code == 500
    assert response["X-Request-ID"] == "req-500-abc"
    assert "req-500-abc" in response.text
    for leak in (SECRET_DETAIL, user.email, "Traceback", "RuntimeError", "boom", "SECRET_KEY"):
        assert leak not in response.text, leak


def test_a_missing_page_shows_the_request_id_and_nothing_else(browser):
    response = browser.get("/bots/999999/", headers={"X-Request-ID": "req-404-abc"})
    assert response.status_code == 404
    assert "req-404-abc" in response.text
    assert "No Bot matches" not in response.text  # Http404's words stay in the log


def test_errors_are_logged_with_their_request_id(browser, log):
    browser.get("/boom/", headers={"X-Request-ID": "req-500-log"})
    browser.get("/no-such-page/", headers={"X-Request-ID": "req-404-log"})
    text = log.getvalue()
    (error,) = [line for line in text.splitlines() if "Internal Server Error: /boom/" in line]
    assert "req-500-log" in error
    assert f"RuntimeError: {SECRET_DETAIL}" in text  # the traceback goes to the log
    (missing,) = [line for line in text.splitlines() if "Not Found: /no-such-page/" in line]
    assert "req-404-log" in missing
