from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def test_register_log_out_log_in_and_see_the_dashboard(page, live_url):
    page.goto(f"{live_url}/accounts/register/")
    page.get_by_label("Email address").fill("browser@example.com")
    page.get_by_label("Password", exact=True).fill("a-Long-pw-123")
    page.get_by_label("Password confirmation").fill("a-Long-pw-123")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(f"{live_url}/")
    assert page.get_by_role("heading", name="Your grid bots").is_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live_url}/accounts/login/")

    page.get_by_label("Email address").fill("browser@example.com")
    page.get_by_label("Password").fill("a-Long-pw-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_url}/")
    assert page.get_by_text("browser@example.com").is_visible()
    screenshot(page, "dashboard-after-login")


def test_wrong_password_shows_an_error_in_words(page, live_url, user):
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_text("Please enter a correct email address and password").is_visible()
