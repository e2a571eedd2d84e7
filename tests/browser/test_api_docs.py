"""Issue 15: the API's docs page works in a browser, offline, under the site's CSP."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot


def test_api_docs_render_every_endpoint_offline_under_the_csp(page: Any, live_url: str) -> None:
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(live_url) or r.url.startswith("data:")
            else outside.append(r.url)
        ),
    )
    page.goto(f"{live_url}/api/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "aibo API" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_text("/api/bots/{bot_id}/orders").first.wait_for()
    screenshot(page, "api-docs")
    assert not outside, outside
