"""Two Huey consumer processes on a real Redis and PostgreSQL cycle 50 paper bots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from huey.contrib.djhuey import HUEY
from huey.storage import PriorityRedisStorage

from bots import services
from bots.models import Bot
from bots.tasks import bot_cycle_task
from market.models import Candle
from tests.bots.conftest import WORKER_CONFIG as CONFIG
from tests.bots.conftest import add_candles, database_url, make_rules

ROOT = Path(__file__).resolve().parents[2]
BOTS = 50


@pytest.mark.django_db(transaction=True)
def test_two_consumers_advance_every_bot_and_never_cycle_one_bot_twice_at_once(
    postgres, redis_url, user, tmp_path
):
    make_rules(step="0.001")
    add_candles([(0, "104", "104", "104", "104")])
    bots = [services.create_bot(user, symbol="BTC/USDT", config=CONFIG) for _ in range(BOTS)]
    user.paper_balances.update_or_create(asset="USDT", defaults={"free": Decimal(BOTS * 1000)})
    for bot in bots:
        services.start_bot(bot)
    # Ten minutes of market that cross the grid both ways.
    add_candles([(60_000 * i, "104", "113", "97", "99" if i % 2 else "110") for i in range(1, 11)])

    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "HUEY_WORKERS": "4",
        "BOT_CYCLE_SECONDS": "1",
    }
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_huey", "--no-periodic", "--workers", "4"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for log in logs
    ]
    try:
        # The consumers' queue: messages made by this process's Huey (same tasks, same
        # serializer), pushed into the Redis the consumers read.
        queue = PriorityRedisStorage("aibo", url=redis_url)
        queue.flush_all()  # nothing left over from another test
        for bot in Bot.objects.all():
            # Each bot's chain, plus two wake-ups racing it: the lock must keep them apart.
            for args in ((bot.pk, bot.chain_token), (bot.pk,), (bot.pk,)):
                queue.enqueue(HUEY.serialize_task(bot_cycle_task.s(*args)))
        last = Candle.objects.order_by("-open_time").values_list("open_time", flat=True).first()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not Bot.objects.exclude(cursor=last).exists():
                break
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            w.wait(timeout=30)

    assert not Bot.objects.exclude(cursor=last).exists(), "some bots did not advance"
    assert all(b.engine().fills > 0 for b in Bot.objects.all())

    spans: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
    processes = set()
    for log in logs:
        for line in log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            message = record["message"]
            if ": cycle ended at " in message:
                bot_id = int(message.split()[1].rstrip(":"))
                ended = float(message.split(" at ")[1].split()[0])
                began = float(message.rsplit(" after ", 1)[1].split()[0])
                spans[bot_id].append((began, ended, record["process"]))
                processes.add(record["process"])
    assert len(processes) == 2, "both consumers should have cycled bots"
    assert set(spans) == {b.pk for b in bots}
    for bot_id, intervals in spans.items():
        intervals.sort()
        for (_, end, _), (begin, _, _) in zip(intervals, intervals[1:], strict=False):
            assert begin >= end, f"bot {bot_id} was cycled by two workers at once"
