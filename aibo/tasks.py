"""What every task shares: queue priorities, job slots, and log lines tagged with the task id.

Priorities (higher runs first; PriorityRedisHuey and SqliteHuey order their queue by them): a
bot's cycle, where its stop-loss runs, comes before everything; the watchdog next; backtests and
advisor runs (jobs) last. A job also holds one of ``HUEY_JOB_SLOTS`` slots while it runs, so
that however many jobs are queued, some worker is always free for the next due cycle. A job
that finds no slot free goes back to the queue for a moment (``RetryTask``), it is not lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from huey.contrib.djhuey import HUEY
from huey.exceptions import RetryTask

logger = logging.getLogger(__name__)

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


def queue_depth() -> dict[str, int] | None:
    """Huey's tasks waiting (``pending``) and scheduled for later; None when the queue's
    storage cannot be read right now (the metrics and the operator's page say so)."""
    try:
        return {"pending": HUEY.pending_count(), "scheduled": HUEY.scheduled_count()}
    except Exception as e:
        logger.warning("the queue's depth could not be read: %s", e)
        return None


# --- workers alive ---------------------------------------------------------------------------
#
# Each process that runs a Huey consumer (``run_huey``, the embedded ``serve``) says it is alive
# every WORKER_BEAT_SECONDS in the cache (Redis when set, so the operator's page sees every
# host's): one index entry per process, dropped by readers once it is WORKER_GONE_SECONDS old.

WORKER_BEAT_SECONDS = 15
WORKER_GONE_SECONDS = 60
WORKERS_KEY = "huey-workers"
_beating = threading.Lock()
_beat_started = False


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat() -> None:
    """Note this process as alive now (and forget processes long silent)."""
    now = time.time()
    workers = cache.get(WORKERS_KEY) or {}
    workers = {k: v for k, v in workers.items() if now - v["at"] < WORKER_GONE_SECONDS}
    entry = workers.get(worker_id()) or {"started": now}
    workers[worker_id()] = {**entry, "at": now, "workers": _consumer_workers()}
    cache.set(WORKERS_KEY, workers, timeout=None)


def workers_alive(now: float | None = None) -> list[dict[str, object]]:
    """The consumer processes heard from in the last WORKER_GONE_SECONDS, newest first."""
    now = time.time() if now is None else now
    workers = cache.get(WORKERS_KEY) or {}
    alive = [
        {"id": k, "age": now - v["at"], "up": now - v["started"], "workers": v.get("workers")}
        for k, v in workers.items()
        if now - v["at"] < WORKER_GONE_SECONDS
    ]
    return sorted(alive, key=lambda w: w["age"])  # type: ignore[arg-type,return-value]


def _consumer_workers() -> int:
    return int(settings.HUEY.get("consumer", {}).get("workers", 1))


@HUEY.on_startup()
def _start_beating() -> None:
    """Every worker thread of a consumer calls this; the first starts the process's beat."""
    global _beat_started
    with _beating:
        if _beat_started:
            return
        _beat_started = True

    def loop() -> None:
        while True:
            # The cache away for a moment: the next beat says it again.
            with contextlib.suppress(Exception):
                beat()
            time.sleep(WORKER_BEAT_SECONDS)

    threading.Thread(target=loop, name="worker-beat", daemon=True).start()
