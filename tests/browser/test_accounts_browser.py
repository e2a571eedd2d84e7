from __future__ import annotations

import pytest

from tests.browser.conftest import register, screenshot

pytestmark = pytest.mark.browser


def test_register_log_out_log_in_and_see_the_dashboard(page, live_url):
    page.goto(f"{live_url}/accounts/register/")
    page.get_by_label("Email address").fill("browser@example.com")
    page.get_by_label("Password", exact=True).fill("a-Long-pw-123")
    page.get_by_label("Password confirmation").fill("a-Long-pw-123")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(f"{live_url}/accounts/login/")
    assert page.get_by_text("sign in with the password you just chose").is_visible()
    assert page.get_by_label("Email address").input_value() == "browser@example.com"
    page.get_by_label("Password").fill("a-Long-pw-123")
    page.get_by_role("button", name="Log in").click()
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


def test_exchange_keys_are_checked_masked_and_offered_for_live_bots(
    page, live_url, monkeypatch, settings
):
    from market import exchange
    from tests.bots.conftest import make_rules
    from tests.fakes.fake_binance import FakeBinance

    settings.GRID_MIN_LEVELS = 10
    make_rules()
    api_key, secret = "browser-key-Zx81Qw00LmN4", "browser-secret-Pq72Rt55VbC9"
    with FakeBinance(api_key=api_key, secret=secret) as fake:
        monkeypatch.setattr(exchange, "CLIENT_FACTORY", lambda ex, k, s: fake.ccxt_client(k, s))
        register(page, live_url, "keys@example.com")

        page.get_by_role("link", name="Exchange keys").click()
        page.get_by_label("Label").fill("Main")
        page.get_by_label("API key").fill("wrong-key-0000000000")
        page.get_by_label("Secret key").fill(secret)
        page.get_by_role("button", name="Add and verify").click()
        page.get_by_text("The exchange refused these keys").wait_for()
        assert "wrong-key-0000000000" not in page.content()

        page.get_by_label("API key").fill(api_key)
        page.get_by_label("Secret key").fill(secret)
        page.get_by_role("button", name="Add and verify").click()
        page.get_by_text("the exchange accepted them").wait_for()
        assert page.get_by_text("••••LmN4").is_visible()
        html = page.content()
        assert api_key not in html and secret not in html
        screenshot(page, "exchange-keys")

        page.goto(f"{live_url}/bots/new/")
        form = page.locator("#bot-form")
        form.get_by_label("Mode").select_option("live")
        assert form.get_by_label("Exchange keys").locator("option", has_text="••••LmN4").count()


def test_password_errors_appear_under_the_box_they_are_about(page, live_url):
    page.goto(f"{live_url}/accounts/register/")
    page.get_by_label("Email address").fill("boxes@example.com")
    password = page.get_by_label("Password", exact=True)
    confirmation = page.get_by_label("Password confirmation")
    password.fill("Zq7!x")
    confirmation.fill("Zq7!y")
    page.get_by_role("button", name="Register").click()

    too_short = page.get_by_text("This password is too short")
    mismatch = page.get_by_text("The two passwords do not match")
    too_short.wait_for()
    # "Too short" between the password box and the confirmation's label; "do not match"
    # below the confirmation box, and each said once.
    assert too_short.count() == 1 and mismatch.count() == 1
    below_password = password.bounding_box()
    assert below_password["y"] < too_short.bounding_box()["y"]
    assert too_short.bounding_box()["y"] < confirmation.bounding_box()["y"]
    assert confirmation.bounding_box()["y"] < mismatch.bounding_box()["y"]
    screenshot(page, "register-password-errors")
