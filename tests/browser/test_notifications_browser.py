"""Notifications in a real browser: add a webhook and a Telegram channel, send tests, see
them delivered (in the fake receiver and on the page), and a failure with its next try."""

from __future__ import annotations

import pytest

from notifications import channels
from tests.browser.conftest import log_in, screenshot
from tests.fakes.fake_notify import FakeNotify

pytestmark = pytest.mark.browser

TOKEN = "123456789:AAE-browserTOKENbrowserTOKENbrowser42"


@pytest.fixture
def trader(django_user_model):
    return django_user_model.objects.create_user(
        email="notify@example.com", password="a-Long-pw-123"
    )


@pytest.fixture
def fake(settings):
    with FakeNotify() as fake:
        settings.TELEGRAM_API_URL = fake.telegram_api_url
        settings.NOTIFY_WEBHOOK_ALLOW_HTTP = True
        settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
        fake.add_telegram_bot(TOKEN, chats={"777"})
        yield fake


def test_add_a_webhook_send_a_test_and_see_it_delivered_signed(page, live_url, trader, fake):
    log_in(page, live_url, trader.email)
    page.get_by_role("link", name="Notifications").click()
    page.wait_for_url(f"{live_url}/notifications/")

    form = page.locator("#add-webhook")
    form.get_by_label("Label").fill("My server")
    form.get_by_label("URL").fill(fake.webhook_url("mine"))
    form.get_by_role("button", name="Add webhook").click()
    # The secret aibo made is shown this once.
    secret = page.locator("#new-secret-value").inner_text()
    assert secret.startswith("whsec_")
    row = page.locator("tr", has_text="My server")
    assert row.get_by_text(secret[-4:]).is_visible()

    row.get_by_role("button", name="Send test").click()
    page.wait_for_url(f"{live_url}/notifications/#deliveries")
    sent = page.locator("#deliveries tr.delivery-sent", has_text="Test message")
    sent.wait_for()
    assert sent.get_by_text("Sent").is_visible()
    (request,) = fake.webhook_requests("mine")
    headers = request.headers
    assert channels.verify(
        secret, headers["X-Aibo-Timestamp"], request.body, headers["X-Aibo-Signature"]
    )
    assert page.locator("#new-secret-value").count() == 0  # not shown again
    screenshot(page, "notifications-webhook-sent")


def test_a_telegram_channel_shows_only_the_tokens_last_four_and_failures_with_next_try(
    page, live_url, trader, fake
):
    log_in(page, live_url, trader.email)
    page.goto(f"{live_url}/notifications/")
    form = page.locator("#add-telegram")
    form.get_by_label("Label").fill("Phone")
    form.get_by_label("Bot token").fill(TOKEN)
    form.get_by_label("Chat id").fill("777")
    form.get_by_role("button", name="Add Telegram").click()
    page.wait_for_url(f"{live_url}/notifications/")
    assert TOKEN not in page.content()
    row = page.locator("tr", has_text="Phone")
    assert row.get_by_text("••••er42").is_visible()

    row.get_by_role("button", name="Send test").click()
    page.locator("#deliveries tr.delivery-sent").wait_for()
    assert fake.telegram_messages(TOKEN)[0]["chat_id"] == "777"

    fake.fail_next(TOKEN, status=502)
    page.locator("tr", has_text="Phone").get_by_role("button", name="Send test").click()
    failing = page.locator("#deliveries tr.delivery-pending").first
    failing.wait_for()
    assert failing.get_by_text("Retrying").is_visible()
    assert failing.get_by_text("Telegram answered 502").is_visible()
    assert failing.get_by_text("next try").is_visible()
    screenshot(page, "notifications-telegram-retrying")
