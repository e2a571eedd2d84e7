"""Real-browser tests: Playwright driving Debian's Chromium against an in-process ASGI server.

The server runs in a thread of the test process, so it shares the test database, the in-memory
channel layer and the in-line Huey with the test, and serves websockets like `make run` does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.servers import free_port, skip_or_fail

CHROMIUM = os.environ.get("AIBO_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# around it are ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


_server: dict[str, Any] = {}


def _start_server() -> str:
    if "url" not in _server:
        port = free_port()
        config = uvicorn.Config(
            "aibo.asgi:application",
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            log_config=None,
        )
        server = _ThreadServer(config)
        thread = threading.Thread(target=server.run, name="test-asgi", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        _server.update(url=f"http://127.0.0.1:{port}", server=server, thread=thread)
    return _server["url"]


@pytest.fixture
def live_url(transactional_db: None, settings: Any) -> str:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return _start_server()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM}: the browser tests cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    # Every page of every browser test runs under the site's Content-Security-Policy: anything
    # it refuses (an inline handler, an injected <style>, an eval) fails the test.
    refused: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(f"{message.text} (page {page.url})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: refused.append(f"page error: {e}"))
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not refused, refused


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot as a test artifact (test-artifacts/NAME.png) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # caret="initial": Playwright hides the caret with an injected <style>, which the CSP
    # (rightly) refuses and the page fixture would report.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path


def log_in(page: Any, live_url: str, email: str) -> None:
    """Sign in through the page (the tests' password) and land on the dashboard."""
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("a-Long-pw-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_url}/")


def register(page: Any, live_url: str, email: str) -> None:
    """Sign up through the page, sign in (sign-up leads there, the address filled in) and land
    on the dashboard."""
    page.goto(f"{live_url}/accounts/register/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill("a-Long-pw-123")
    page.get_by_label("Password confirmation").fill("a-Long-pw-123")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(f"{live_url}/accounts/login/")
    page.get_by_label("Password").fill("a-Long-pw-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_url}/")
