"""Noisy neighbours (issue 10, finding 2): one user's 150 queued backtests must not delay another
user's running bot. A real consumer process on a real Redis and PostgreSQL; the queue holds the
backtests first, then the bot's chain joins it, as when a busy user fills the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey.contrib.djhuey import HUEY
from huey.storage import PriorityRedisStorage

from bots import services
from bots.models import BacktestRun
from bots.tasks import backtest_task, bot_cycle_task
from tests.bots.conftest import WORKER_CONFIG as CONFIG
from tests.bots.conftest import add_candles, at, database_url, make_rules

ROOT = Path(__file__).resolve().parents[2]
BACKTESTS = 150
CADENCE = 1  # BOT_CYCLE_SECONDS for the consumer


@pytest.mark.django_db(transaction=True)
def test_150_queued_backtests_do_not_delay_another_users_bot(
    postgres, redis_url, user, other_user, tmp_path
):
    make_rules(step="0.001")
    # Two days of minutes for the backtests to walk, ending where the bot starts.
    minutes = 2 * 1440
    add_candles([(60_000 * i, "104", "106", "102", "104") for i in range(minutes)])
    bot = services.create_bot(other_user, symbol="BTC/USDT", config=CONFIG)
    services.start_bot(bot)
    bot.refresh_from_db()
    runs = BacktestRun.objects.bulk_create(
        BacktestRun(owner=user, symbol="BTC/USDT", start=at(0), end=at(60_000 * minutes),
                    config=CONFIG)
        for _ in range(BACKTESTS)
    )  # fmt: skip

    queue = PriorityRedisStorage("aibo", url=redis_url)
    queue.flush_all()
    for run in runs:  # the noisy user's backtests first ...
        task = backtest_task.s(run.pk)
        queue.enqueue(HUEY.serialize_task(task), task.priority)
    chain = bot_cycle_task.s(bot.pk, bot.chain_token)  # ... then the other user's bot
    queue.enqueue(HUEY.serialize_task(chain), chain.priority)

    log = tmp_path / "worker.log"
    env = {
        **os.environ, "DATABASE_URL": database_url(), "REDIS_URL": redis_url,
        "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json", "BOT_CYCLE_SECONDS": str(CADENCE),
        "HUEY_WORKERS": "2",
    }  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_huey", "--no-periodic", "--workers", "2"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        active = (BacktestRun.Status.QUEUED, BacktestRun.Status.RUNNING)
        while time.monotonic() < deadline:
            if not BacktestRun.objects.filter(status__in=active).exists():
                break
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
        queue.flush_all()  # the bot's chain must not outlive this test

    assert not BacktestRun.objects.filter(status__in=active).exists(), "backtests were stuck"
    assert BacktestRun.objects.filter(status=BacktestRun.Status.DONE).count() == BACKTESTS
    done = BacktestRun.objects.order_by("finished_at").values_list("finished_at", flat=True)
    first_done, last_done = done.first(), done.last()
    cycles = []
    for line in log.read_text().splitlines():
        message = json.loads(line)["message"] if line.startswith("{") else ""
        if ": cycle began at " in message and int(message.split()[1].rstrip(":")) == bot.pk:
            cycles.append(float(message.split(" at ")[1].split()[0]))
    assert cycles, "the bot never cycled"
    # The bot's first cycle did not wait for the queue ahead of it to drain ...
    assert datetime.fromtimestamp(cycles[0], tz=UTC) < last_done
    # ... and while the backtests ran, it kept its cadence: no gap over three periods.
    busy = [t for t in cycles if first_done.timestamp() <= t <= last_done.timestamp()]
    assert len(busy) >= 2, (len(cycles), first_done, last_done)
    gaps = [b - a for a, b in zip(busy, busy[1:], strict=False)]
    assert max(gaps) <= 3 * CADENCE, gaps
    assert (last_done - first_done) > timedelta(seconds=3 * CADENCE), "too quick to prove it"
