"""Waking the dispatch from a bot's publish and a finished advisor run, the Huey tasks, and
the rule that a bot's cycle never sends anything itself."""

from __future__ import annotations

import ast
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from ai_advisor.models import AdvisorRun
from bots.push import publish_bot
from notifications import tasks, wake
from notifications.models import Delivery, Kind

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch) -> None:
    """Each test starts as a process that has not asked for a dispatch this second."""
    monkeypatch.setattr(wake, "_asked_until", 0.0)


@pytest.fixture
def dispatches(monkeypatch) -> list[float]:
    """Each dispatch task enqueued, as it would go to the queue (nothing runs)."""
    calls: list[float] = []
    monkeypatch.setattr(tasks, "dispatch_notifications_task", lambda: calls.append(time.time()))
    return calls


def test_a_busy_bot_enqueues_at_most_one_dispatch_a_second(
    worked_bot, dispatches, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(20):
            publish_bot(worked_bot.pk)
    assert len(dispatches) == 1
    cache.delete(wake.WAKE_KEY)  # a second later
    wake._asked_until = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        publish_bot(worked_bot.pk)
    assert len(dispatches) == 2


def test_the_wake_waits_for_the_commit(worked_bot, dispatches, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        publish_bot(worked_bot.pk)
    assert dispatches == []  # not before the events it should read are visible
    assert len(callbacks) == 1


def test_a_queue_that_cannot_be_reached_never_reaches_the_publisher(
    worked_bot, monkeypatch, django_capture_on_commit_callbacks
):
    def down() -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks, "dispatch_notifications_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        publish_bot(worked_bot.pk)  # no exception


def test_a_finished_advisor_run_wakes_the_dispatch(
    user, dispatches, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = AdvisorRun.objects.create(owner=user, symbol="BTC/USDT", capital=Decimal(1000))
    assert dispatches == []  # queued: nothing to tell yet
    run.status, run.finished_at = AdvisorRun.Status.DONE, timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        run.save(update_fields=["status", "finished_at"])
    assert len(dispatches) == 1


def test_a_cycle_only_enqueues_it_never_sends(
    trade, make_channel, fake_notify, dispatches, django_capture_on_commit_callbacks
):
    fake_notify.delay("hook", 5)  # a channel this slow would show in the cycle's time
    make_channel("webhook", label="hook", kinds=[k.value for k in Kind])
    began = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        trade()
    assert time.monotonic() - began < 5
    assert fake_notify.received() == []
    assert Delivery.objects.count() == 0
    assert dispatches  # woken: the worker does the rest


def test_the_dispatch_task_writes_and_sends(trade, make_channel, fake_notify):
    make_channel("webhook", label="hook", kinds=[Kind.FILL, Kind.ROUND_TRIP])
    trade()
    tasks.dispatch_notifications_task.call_local()
    kinds = sorted(r.json["kind"] for r in fake_notify.webhook_requests("hook"))
    assert kinds == ["fill", "round_trip"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    tasks.notifications_minute_task.call_local()  # the floor finds nothing new
    assert len(fake_notify.webhook_requests("hook")) == 2


def test_a_failed_send_schedules_its_retry(make_channel, fake_notify, monkeypatch):
    from notifications import services

    scheduled = []
    monkeypatch.setattr(
        tasks.deliver_task, "schedule", lambda args, delay: scheduled.append((args, delay))
    )
    channel = make_channel("webhook", label="hook")
    fake_notify.fail_next("hook", status=500)
    delivery = services.send_test(channel)
    tasks.deliver_task.call_local(delivery.pk)
    ((args, delay),) = scheduled
    assert args == (delivery.pk,) and 27 <= delay <= 33


def test_the_daily_task_summarises_yesterday(trade, make_channel, fake_notify, monkeypatch):
    make_channel("webhook", label="hook", kinds=[Kind.DAILY])
    trade()
    tomorrow = timezone.now() + timezone.timedelta(days=1)
    monkeypatch.setattr(tasks.timezone, "now", lambda: tomorrow)
    tasks.daily_summary_task.call_local()
    (request,) = fake_notify.webhook_requests("hook")
    assert request.json["kind"] == "daily"
    assert request.json["data"]["round_trips"] == 2


def test_no_app_below_imports_notifications():
    """Bots, accounts, market and the advisor wake it by signals; none of them knows it."""
    for app in ("accounts", "bots", "market", "ai_advisor", "aibo"):
        for path in (ROOT / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                assert not any(n.split(".")[0] == "notifications" for n in names), path


def test_the_periodic_tasks_are_registered_in_every_process():
    """``manage.py serve`` starts its consumer without looking for tasks modules: a fresh
    process that only sets Django up has them."""
    import os
    import subprocess
    import sys

    code = (
        "import django; django.setup()\n"
        "from huey.contrib.djhuey import HUEY\n"
        "print(sorted(t.name for t in HUEY._registry.periodic_tasks))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "aibo.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "notifications_minute_task" in out and "daily_summary_task" in out
