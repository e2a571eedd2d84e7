"""The notification settings page: owners only, secrets shown once then masked, failures and
retries visible, a test message sent from the page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.models import BotMute, Channel, Delivery, Kind
from tests.notifications.conftest import CHAT, TOKEN

pytestmark = pytest.mark.django_db
PAGE = "/notifications/"


def add(client, type: str, **fields: str):
    data = {"type": type, **{f"{type}-{k}": v for k, v in fields.items()}}
    return client.post(PAGE, data)


def test_the_page_needs_a_signed_in_user(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_the_page_is_in_the_navigation(client, user):
    client.force_login(user)
    assert f'href="{PAGE}"' in client.get("/").text


def test_a_webhook_added_without_a_secret_gets_one_shown_once(client, user, fake_notify):
    client.force_login(user)
    response = add(client, "webhook", label="Home", url=fake_notify.webhook_url("home"),
                   kinds="round_trip")  # fmt: skip
    assert response.status_code == 200
    channel = Channel.objects.get(owner=user)
    secret = channel.secret()
    assert secret.startswith("whsec_")
    assert secret in response.text  # shown this once
    assert channel.kinds == ["round_trip"]
    page = client.get(PAGE).text
    assert secret not in page
    assert channel.secret_hint in page


def test_a_telegram_token_is_never_on_a_page(client, user, fake_notify):
    client.force_login(user)
    response = add(client, "telegram", label="Phone", token=TOKEN, chat_id=CHAT,
                   kinds="stopped")  # fmt: skip
    assert response.status_code == 302
    page = client.get(PAGE).text
    assert TOKEN not in page
    assert "••••xyz9" in page
    # A refused form does not echo the token back either.
    response = add(client, "telegram", label="Phone", token=TOKEN, chat_id=CHAT)
    assert response.status_code == 422
    assert "You already have a channel labelled" in response.text
    assert TOKEN not in response.text


def test_a_malformed_token_or_chat_is_refused_with_the_reason(client, user):
    client.force_login(user)
    response = add(client, "telegram", label="Phone", token="nope", chat_id="me")
    assert response.status_code == 422
    assert "This does not look like a bot token" in response.text
    assert "A chat id is a number" in response.text
    assert not Channel.objects.exists()


def test_a_webhook_into_this_network_is_refused_where_not_allowed(client, user, settings):
    settings.NOTIFY_WEBHOOK_ALLOW_HTTP = True
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(user)
    response = add(client, "webhook", label="Redis", url="http://127.0.0.1:6379/")
    assert response.status_code == 422
    assert "aibo will not send to this URL" in response.text
    assert not Channel.objects.exists()


def test_send_test_delivers_and_the_page_shows_it_sent(
    client, user, make_channel, fake_notify, django_capture_on_commit_callbacks
):
    channel = make_channel("webhook", label="hook")
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/notifications/channels/{channel.pk}/test/")
    assert response.status_code == 302
    assert len(fake_notify.webhook_requests("hook")) == 1
    delivery = Delivery.objects.get(channel=channel)
    page = client.get(PAGE).text
    assert f'id="delivery-{delivery.pk}-row" class="delivery-sent"' in page


def test_a_failure_shows_its_error_attempts_and_next_try_and_can_be_retried(
    client, user, make_channel, fake_notify, django_capture_on_commit_callbacks
):
    channel = make_channel("webhook", label="hook")
    fake_notify.fail_next("hook", status=502)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/notifications/channels/{channel.pk}/test/")
    delivery = Delivery.objects.get(channel=channel)
    page = client.get(PAGE).text
    assert "the webhook answered HTTP 502: receiver trouble" in page
    assert "Retrying" in page and "next try" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/notifications/deliveries/{delivery.pk}/retry/")
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert len(fake_notify.webhook_requests("hook")) == 2


def test_the_recent_messages_poll_while_one_is_on_its_way(client, user, make_channel):
    from notifications import services

    channel = make_channel("email")
    client.force_login(user)
    assert 'hx-trigger="every 3s"' not in client.get("/notifications/deliveries/").text
    services.send_test(channel)
    assert 'hx-trigger="every 3s"' in client.get("/notifications/deliveries/").text


def test_a_channels_kinds_and_switch_are_saved(client, user, make_channel):
    channel = make_channel("email")
    client.force_login(user)
    client.post(f"/notifications/channels/{channel.pk}/", {"kinds": ["fill", "daily"]})
    channel.refresh_from_db()
    assert (channel.enabled, channel.kinds) == (False, ["fill", "daily"])


def test_another_users_channel_or_message_is_a_404(client, other_user, make_channel):
    channel = make_channel("webhook", label="Their hook")
    delivery = Delivery.objects.create(
        channel=channel, key="k", kind="test", subject="Their secret plans", text="t"
    )
    client.force_login(other_user)
    for url in (
        f"/notifications/channels/{channel.pk}/",
        f"/notifications/channels/{channel.pk}/test/",
        f"/notifications/channels/{channel.pk}/delete/",
        f"/notifications/channels/{channel.pk}/secret/",
        f"/notifications/deliveries/{delivery.pk}/retry/",
    ):
        assert client.post(url).status_code == 404, url
    assert Channel.objects.filter(pk=channel.pk).exists()
    page = client.get(PAGE).text
    assert "Their hook" not in page and "Their secret plans" not in page


def test_a_new_webhook_secret_replaces_the_old_one_and_is_shown_once(client, user, make_channel):
    channel = make_channel("webhook", label="hook")
    before = channel.secret()
    client.force_login(user)
    response = client.post(f"/notifications/channels/{channel.pk}/secret/")
    channel.refresh_from_db()
    assert channel.secret() != before
    assert channel.secret() in response.text


def test_deleting_a_channel(client, user, make_channel):
    channel = make_channel("email")
    client.force_login(user)
    response = client.post(
        f"/notifications/channels/{channel.pk}/delete/", headers={"HX-Request": "true"}
    )
    assert response.headers["HX-Redirect"] == PAGE
    assert not Channel.objects.exists()


def test_the_per_bot_table_mutes_only_the_users_own_bots(
    client, user, worked_bot, make_bot, other_user
):
    from tests.bots.conftest import WORKED_CONFIG

    theirs = make_bot(WORKED_CONFIG, owner=other_user)
    client.force_login(user)
    page = client.get(PAGE).text
    assert f'id="bot-{worked_bot.pk}-mutes"' in page
    assert f'id="bot-{theirs.pk}-mutes"' not in page
    ticked = {f"b{worked_bot.pk}-{k}": "on" for k in ("round_trip", "stopped", "error", "advisor")}
    client.post("/notifications/bots/", {**ticked, f"b{theirs.pk}-round_trip": ""})
    assert set(BotMute.objects.values_list("bot_id", "kind")) == {(worked_bot.pk, Kind.FILL)}
    client.post("/notifications/bots/", {**ticked, f"b{worked_bot.pk}-fill": "on"})
    assert not BotMute.objects.exists()


def test_send_test_is_limited_to_a_few_a_minute(client, user, make_channel, fake_notify):
    channel = make_channel("webhook", label="hook")
    client.force_login(user)
    for _ in range(5):
        client.post(f"/notifications/channels/{channel.pk}/test/")
    response = client.post(f"/notifications/channels/{channel.pk}/test/", follow=True)
    assert "That is enough tests for a minute" in response.text
    assert Delivery.objects.filter(channel=channel).count() == 5
