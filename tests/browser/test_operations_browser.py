"""Issue 16: the operator's page in the admin, driven in the real browser."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from aibo import tasks
from bots import services
from bots.models import Bot
from tests.bots.conftest import CONFIG, set_price
from tests.browser.conftest import screenshot
from tests.browser.test_desk import in_thread


def test_an_operator_sees_workers_feed_and_troubled_bots_and_stops_them(
    page: Any, live_url: str, django_user_model: Any
) -> None:
    from tests.bots.conftest import make_rules

    make_rules()
    set_price("BTC/USDT", Decimal("65000"), at=timezone.now() - timedelta(seconds=3))
    trader = django_user_model.objects.create_user(
        email="trader@example.com", password="x-Long-pw-1"
    )
    quiet = services.create_bot(trader, symbol="BTC/USDT", config=dict(CONFIG), name="Quiet grid")
    in_thread(lambda: services.start_bot(quiet))  # its push needs a thread without a loop
    Bot.objects.filter(pk=quiet.pk).update(started_at=timezone.now() - timedelta(minutes=10))
    other = services.create_bot(trader, symbol="BTC/USDT", config=dict(CONFIG), name="Also running")
    in_thread(lambda: services.start_bot(other))
    broken = services.create_bot(trader, symbol="BTC/USDT", config=dict(CONFIG), name="Broken grid")
    Bot.objects.filter(pk=broken.pk).update(
        status=Bot.Status.ERROR, status_reason="the exchange refused the keys"
    )
    tasks.beat()  # this process, as a Huey consumer would say it is alive
    django_user_model.objects.create_superuser(email="ops@example.com", password="ops-Long-pw-1")

    page.goto(f"{live_url}/admin/login/")
    page.fill("#id_username", "ops@example.com")
    page.fill("#id_password", "ops-Long-pw-1")
    page.click("input[type=submit]")
    page.get_by_role(
        "link", name="Operations: workers, feed, queue, bots in trouble, exchange limits"
    ).click()
    page.wait_for_url(f"{live_url}/admin/operations/")
    text = page.locator("#content-main").inner_text()
    assert tasks.worker_id() in text
    assert "BTC/USDT" in text and "s ago" in text
    assert "Quiet grid" in text and "no cycle for a while" in text
    assert "Broken grid" in text and "the exchange refused the keys" in text
    assert "Also running" not in text  # running and beating (it just started)
    screenshot(page, "admin-operations")

    row = page.locator("#troubled tr", has_text="Quiet grid")
    row.get_by_role("button", name="Stop this bot").click()
    page.wait_for_url(f"{live_url}/admin/operations/")
    assert "Quiet grid stopped." in page.locator(".messagelist").inner_text()
    assert Bot.objects.get(pk=quiet.pk).status == Bot.Status.STOPPED

    row = page.locator("#troubled tr", has_text="Broken grid")
    row.get_by_role("button", name="Stop all of trader@example.com's bots").click()
    page.wait_for_url(f"{live_url}/admin/operations/")
    assert Bot.objects.get(pk=other.pk).status == Bot.Status.STOPPED
