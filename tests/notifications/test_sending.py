"""Sending on each channel, against the local fake webhook receiver and Telegram Bot API
(real HTTP on 127.0.0.1) and Django's locmem mail: signatures, retries with back-off, the
errors a person sees, and secrets that never show."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts import crypto
from notifications import channels, services
from notifications.channels import verify
from notifications.models import Channel, Delivery
from tests.notifications.conftest import CHAT, SECRET, TOKEN

pytestmark = pytest.mark.django_db


def due_now(delivery: Delivery) -> None:
    """Time passes: the delivery's next attempt is due."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_a_webhook_is_signed_over_timestamp_and_body_with_the_channels_secret(
    make_channel, fake_notify
):
    channel = make_channel("webhook", label="hook")
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) is None
    (request,) = fake_notify.webhook_requests("hook")
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Aibo-Event"] == "test"
    assert headers["X-Aibo-Delivery"] == str(delivery.pk)
    assert abs(int(headers["X-Aibo-Timestamp"]) - time.time()) < 5
    assert verify(SECRET, headers["X-Aibo-Timestamp"], request.body, headers["X-Aibo-Signature"])
    assert not verify("another-secret-xx", headers["X-Aibo-Timestamp"], request.body,
                      headers["X-Aibo-Signature"])  # fmt: skip
    body = request.json
    assert (body["id"], body["kind"], body["test"]) == (delivery.pk, "test", True)
    assert "If you can read it, this channel works." in body["text"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")


def test_a_replayed_or_altered_webhook_fails_verification():
    body = json.dumps({"kind": "round_trip"}).encode()
    now = str(int(time.time()))
    signature = channels.sign(SECRET, now, body)
    assert verify(SECRET, now, body, signature)
    assert not verify(SECRET, now, body.replace(b"round", b"ROUND"), signature)
    old = str(int(time.time()) - 600)
    assert not verify(SECRET, old, body, channels.sign(SECRET, old, body))  # a replay
    assert not verify(SECRET, "soon", body, signature)


def test_a_failing_webhook_is_retried_with_back_off_then_sent(make_channel, fake_notify):
    channel = make_channel("webhook", label="flaky")
    fake_notify.fail_next("flaky", status=503, count=2)
    delivery = services.send_test(channel)
    first = services.deliver(delivery.pk)
    assert 27 <= first <= 33  # 30 s, give or take the jitter
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_error == "the webhook answered HTTP 503: receiver trouble"
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert services.deliver(delivery.pk) is None  # not due yet: nothing sent
    assert len(fake_notify.webhook_requests("flaky")) == 1
    due_now(delivery)
    assert 108 <= services.deliver(delivery.pk) <= 132  # then 2 minutes
    due_now(delivery)
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(fake_notify.webhook_requests("flaky")) == 3
    # Every attempt of one message carries the same delivery id: a receiver drops repeats.
    assert {r.headers["X-Aibo-Delivery"] for r in fake_notify.webhook_requests("flaky")} == {
        str(delivery.pk)
    }


def test_a_receivers_retry_after_is_respected(make_channel, fake_notify):
    channel = make_channel("webhook", label="busy")
    fake_notify.fail_next("busy", status=429, retry_after=900)
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) == 900


def test_a_delivery_gives_up_after_the_last_attempt(make_channel, fake_notify, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 2
    channel = make_channel("webhook", label="down")
    fake_notify.fail_next("down", status=500, count=5)
    delivery = services.send_test(channel)
    services.deliver(delivery.pk)
    due_now(delivery)
    assert services.deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("gave up after 2 attempts: the webhook answered HTTP 500")
    assert delivery.next_attempt_at is None


def test_a_webhook_that_is_gone_is_not_retried(make_channel, fake_notify):
    channel = make_channel("webhook", label="gone")
    fake_notify.fail_next("gone", status=410)
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "failed"


def test_an_unreachable_webhook_is_a_temporary_error_naming_the_host(make_channel, fake_notify):
    from tests.servers import free_port

    channel = make_channel("webhook", label="nobody", url=f"http://127.0.0.1:{free_port()}/x")
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) is not None
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.last_error.startswith("could not reach 127.0.0.1:")


def test_a_slow_webhook_times_out_and_is_retried(make_channel, fake_notify, settings):
    settings.NOTIFY_HTTP_TIMEOUT_SECONDS = 0.3
    channel = make_channel("webhook", label="slow")
    fake_notify.delay("slow", 1.5)
    delivery = services.send_test(channel)
    began = time.monotonic()
    assert services.deliver(delivery.pk) is not None
    assert time.monotonic() - began < 1.2
    delivery.refresh_from_db()
    assert "timed out" in delivery.last_error


def test_webhooks_to_this_network_or_plain_http_are_refused_unless_allowed(settings):
    settings.NOTIFY_WEBHOOK_ALLOW_HTTP = False
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    assert "https://" in channels.webhook_url_problem("http://127.0.0.1:8000/hook")
    assert "inside this network" in channels.webhook_url_problem("https://127.0.0.1/hook")
    assert "inside this network" in channels.webhook_url_problem("https://localhost/hook")
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    assert channels.webhook_url_problem("https://127.0.0.1/hook") == ""


def test_telegram_gets_the_message_in_the_chat_by_send_message(make_channel, fake_notify):
    channel = make_channel("telegram")
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) is None
    (sent,) = fake_notify.telegram_messages(TOKEN)
    assert sent["chat_id"] == CHAT
    assert sent["text"].startswith("Test message\n\nThis is a test from aibo")
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_a_bad_telegram_token_fails_at_once_and_the_error_never_shows_it(
    make_channel, fake_notify, caplog
):
    wrong = "987654321:AAE-wrongTOKENwrongTOKENwrongTOKEN_1"
    channel = make_channel("telegram")
    channel.set_secret(wrong)
    channel.save()
    delivery = services.send_test(channel)
    with caplog.at_level(logging.DEBUG):
        assert services.deliver(delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_error == "Telegram answered 401: Unauthorized"
    assert wrong not in caplog.text


def test_a_telegram_chat_the_bot_cannot_reach_fails_with_telegrams_words(make_channel, fake_notify):
    channel = make_channel("telegram", chat_id="111")
    delivery = services.send_test(channel)
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (
        "failed",
        "Telegram answered 400: Bad Request: chat not found",
    )


def test_telegrams_rate_limit_waits_as_long_as_it_asks(make_channel, fake_notify):
    channel = make_channel("telegram")
    fake_notify.fail_next(TOKEN, status=429, retry_after=45)
    delivery = services.send_test(channel)
    assert services.deliver(delivery.pk) == 45
    delivery.refresh_from_db()
    assert delivery.last_error == "Telegram answered 429: Too Many Requests: retry after 45"


def test_an_unreachable_telegram_api_error_holds_no_token(make_channel, settings, caplog):
    from tests.servers import free_port

    settings.TELEGRAM_API_URL = f"http://127.0.0.1:{free_port()}"
    channel = make_channel("telegram")
    delivery = services.send_test(channel)
    with caplog.at_level(logging.DEBUG):
        services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.last_error
    assert TOKEN not in delivery.last_error and TOKEN not in caplog.text


def test_the_telegram_token_is_encrypted_at_rest_like_exchange_keys(make_channel):
    channel = make_channel("telegram")
    stored = Channel.objects.get(pk=channel.pk)
    assert stored.secret_encrypted.startswith(f"v2:{crypto.keyring().primary}:")
    assert TOKEN not in stored.secret_encrypted
    assert stored.secret_hint == "••••xyz9"
    assert stored.secret() == TOKEN
    assert TOKEN not in repr(stored)
    # Bound to its row: the same ciphertext in another channel does not decrypt.
    other = make_channel("telegram", label="other")
    other.secret_encrypted = stored.secret_encrypted
    with pytest.raises(crypto.UndecryptableSecret):
        other.secret()
    assert not other.readable()


def test_a_secret_that_no_longer_decrypts_fails_the_delivery_with_a_clear_error(make_channel):
    channel = make_channel("telegram")
    other = make_channel("telegram", label="other")
    Channel.objects.filter(pk=channel.pk).update(secret_encrypted=other.secret_encrypted)
    delivery = services.send_test(channel)
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert "cannot decrypt" in delivery.last_error


def test_email_goes_to_the_accounts_address_through_djangos_mail(make_channel, user):
    channel = make_channel("email")
    delivery = services.send_test(channel)
    services.deliver(delivery.pk)
    (message,) = mail.outbox
    assert message.to == [user.email]
    assert message.subject == "[aibo] Test message"
    assert "this channel works" in message.body


def test_one_delivery_is_never_sent_twice(make_channel, fake_notify):
    channel = make_channel("webhook", label="once")
    delivery = services.send_test(channel)
    # Another worker holds it (its lease runs): this one leaves it alone.
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", lease_until=timezone.now() + timedelta(minutes=1)
    )
    services.deliver(delivery.pk)
    assert fake_notify.webhook_requests("once") == []
    # That worker died: once its lease ran out the delivery is sent, once.
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now())
    services.deliver(delivery.pk)
    services.deliver(delivery.pk)
    assert len(fake_notify.webhook_requests("once")) == 1


def test_a_turned_off_channel_sends_nothing(make_channel, fake_notify):
    channel = make_channel("webhook", label="quiet")
    delivery = services.send_test(channel)
    Channel.objects.filter(pk=channel.pk).update(enabled=False)
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "the channel is turned off")
    assert fake_notify.webhook_requests("quiet") == []


def test_a_round_trip_reaches_telegram_in_words_with_money_and_a_link(
    trade, make_channel, fake_notify, settings
):
    settings.NOTIFY_SITE_URL = "https://aibo.example.com/"
    make_channel("telegram", kinds=["round_trip"])
    bot = trade()
    services.dispatch()
    for delivery_id in services.due_ids():
        services.deliver(delivery_id)
    (sent,) = fake_notify.telegram_messages(TOKEN)
    lines = sent["text"].splitlines()
    assert lines[0] == "Worked grid · BTC/USDT · paper: 2 round trips, +51.82 USDT"
    assert lines[2].startswith("Bought ") and lines[2].endswith(": +23.48 USDT.")
    assert lines[-1] == f"https://aibo.example.com/bots/{bot.pk}/"


def test_a_webhook_body_carries_the_bot_and_exact_amounts(trade, make_channel, fake_notify):
    make_channel("webhook", label="hook", kinds=["round_trip"])
    bot = trade()
    services.dispatch()
    for delivery_id in services.due_ids():
        services.deliver(delivery_id)
    (request,) = fake_notify.webhook_requests("hook")
    body = request.json
    assert body["kind"] == "round_trip"
    assert body["bot"] == {"id": bot.pk, "name": "Worked grid", "symbol": "BTC/USDT",
                           "exchange": "binance", "mode": "paper", "url": None}  # fmt: skip
    assert body["data"]["profit"] == "51.815157"
    assert body["data"]["quote"] == "USDT"
