"""What every task shares: queue priorities, job slots, and log lines tagged with the task id.

Priorities (higher runs first; PriorityRedisHuey and SqliteHuey order their queue by them): a
bot's cycle, where its stop-loss runs, comes before everything; the watchdog next; backtests and
advisor runs (jobs) last. A job also holds one of ``HUEY_JOB_SLOTS`` slots while it runs, so
that however many jobs are queued, some worker is always free for the next due cycle. A job
that finds no slot free goes back to the queue for a moment (``RetryTask``), it is not lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from huey.exceptions import RetryTask

CYCLE_PRIORITY = 100
WATCHDOG_PRIORITY = 90
JOB_PRIORITY = 0
# A slot is freed when its job ends; one left by a worker that died frees itself after this.
JOB_SLOT_SECONDS = 15 * 60
JOB_WAIT_SECONDS = 0.5  # short enough that a cycle arriving meanwhile barely waits
JOB_RETRY_SECONDS = 1


@contextmanager
def job_slot() -> Iterator[None]:
    """Hold one of the job slots while a backtest or an advisor run works. None free: wait a
    moment (a slot frees as soon as a short job ends), then go back to the queue for a while."""
    slots = [f"huey-job-slot:{slot}" for slot in range(max(1, settings.HUEY_JOB_SLOTS))]
    deadline = time.monotonic() + JOB_WAIT_SECONDS
    while True:
        key = next((k for k in slots if cache.add(k, 1, timeout=JOB_SLOT_SECONDS)), None)
        if key is not None:
            break
        if time.monotonic() >= deadline:
            raise RetryTask("every job slot is busy", delay=JOB_RETRY_SECONDS)
        time.sleep(0.05)
    try:
        yield
    finally:
        cache.delete(key)
