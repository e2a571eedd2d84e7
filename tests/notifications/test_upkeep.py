"""Keeping secrets secret over time: key rotation, masked URLs, the admin; and old messages
forgotten."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts import crypto
from notifications import services
from notifications.models import Channel, Delivery
from tests.notifications.conftest import SECRET, TOKEN

pytestmark = pytest.mark.django_db
NEW_KEY = "k2:" + "A" * 43


def test_rotation_re_encrypts_tokens_and_secrets_under_the_new_first_key(make_channel, settings):
    telegram = make_channel("telegram")
    hook = make_channel("webhook")
    old = crypto.keyring().primary
    settings.CREDENTIALS_KEYS = NEW_KEY
    out = StringIO()
    call_command("rotate_notification_secrets", stdout=out)
    assert "2 rotated, 0 already current, 0 unreadable" in out.getvalue()
    for channel, plain in ((telegram, TOKEN), (hook, SECRET)):
        stored = Channel.objects.get(pk=channel.pk)
        assert crypto.key_id(stored.secret_encrypted) == "k2" != old
        assert stored.secret() == plain
    out = StringIO()
    call_command("rotate_notification_secrets", stdout=out)
    assert "0 rotated, 2 already current" in out.getvalue()


def test_rotation_lists_secrets_it_cannot_read_and_fails(make_channel, settings):
    make_channel("telegram")
    settings.CREDENTIALS_KEYS = NEW_KEY
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"  # the old key is gone
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_notification_secrets", stdout=StringIO(), stderr=err)
    assert "unreadable: channel" in err.getvalue()
    assert TOKEN not in err.getvalue()


def test_a_webhook_url_is_shown_without_the_token_in_its_path(make_channel, client, user):
    url = "https://discord.com/api/webhooks/1234567890/abcdefSECRETtokenXYZ9"
    channel = make_channel("webhook", url=url)
    assert channel.url_hint == "https://discord.com/api/web••••XYZ9"
    client.force_login(user)
    page = client.get("/notifications/").text
    assert "SECRETtoken" not in page
    assert channel.url_hint in page


def test_the_admin_shows_no_secret(admin_client, make_channel):
    channel = make_channel("telegram")
    page = admin_client.get(f"/admin/notifications/channel/{channel.pk}/change/").text
    assert TOKEN not in page and channel.secret_encrypted not in page
    assert channel.secret_hint in page


def test_old_sent_and_failed_messages_are_forgotten(make_channel):
    channel = make_channel("email")
    old = timezone.now() - timedelta(days=31)
    for status in ("sent", "failed", "pending"):
        Delivery.objects.create(channel=channel, key=status, kind="test", subject="s", text="t",
                                status=status)  # fmt: skip
    Delivery.objects.update(created_at=old)
    Delivery.objects.create(channel=channel, key="new", kind="test", subject="s", text="t",
                            status="sent")  # fmt: skip
    assert services.prune(days=30) == 2
    assert set(Delivery.objects.values_list("key", flat=True)) == {"pending", "new"}
