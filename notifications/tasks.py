"""Huey tasks for notifications: a dispatch (woken by bots and the advisor, and every minute
as the floor), one task per delivery, and the daily summaries at 00:05 UTC.

Sending waits on the network, so it holds a job slot (``aibo.tasks.job_slot``) like backtests
do: however slow a webhook, a worker stays free for the next bot cycle.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from aibo.tasks import JOB_PRIORITY, WATCHDOG_PRIORITY, job_slot
from notifications import services

logger = logging.getLogger(__name__)

# Above backtests and advisor runs (a fill's news should not wait behind an hour of
# backtesting), below cycles and the watchdog.
NOTIFY_PRIORITY = JOB_PRIORITY + 10


@db_task(priority=NOTIFY_PRIORITY)
def dispatch_notifications_task() -> None:
    written = services.dispatch()
    if written:
        logger.info("notifications: %s deliveries written", written)
    send_due()


def send_due() -> None:
    for delivery_id in services.due_ids():
        deliver_task(delivery_id)


@db_task(priority=NOTIFY_PRIORITY)
def deliver_task(delivery_id: int) -> None:
    with job_slot():
        retry_in = services.deliver(delivery_id)
    if retry_in is not None:
        deliver_task.schedule((delivery_id,), delay=retry_in)


@db_periodic_task(crontab(minute="*"), priority=WATCHDOG_PRIORITY - 1)
def notifications_minute_task() -> None:
    """The floor: what no wake announced (a burst inside the wake's second, a worker that
    died, a retry whose scheduled task was lost) goes out within a minute."""
    dispatch_notifications_task.call_local()


@db_periodic_task(crontab(minute="5", hour="0"), priority=NOTIFY_PRIORITY)
def daily_summary_task() -> None:
    """Yesterday's summary for every user who wants one; then old messages are forgotten."""
    yesterday = (timezone.now() - timedelta(days=1)).date()
    services.daily_summary(yesterday)
    send_due()
    services.prune(days=settings.NOTIFY_KEEP_DAYS)
