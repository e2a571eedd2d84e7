"""Bot-cycle throughput: N paper bots cycled by one worker process on PostgreSQL and Redis.

Runs the real task body (`bots.tasks.cycle_once`: the probe, and for work the bot's lease and
`bots.cycle.run_cycle`) for every bot, round after round: idle rounds (no new candle) and active
rounds (a new real candle that crosses some bots' lines). Prints cycles/s, p50/p99 latency and
queries per cycle.

Then the batched round (issue 16): `--batch-bots` (10,000) paper bots on the same pair, each
with its own grid, two `manage.py run_huey` worker processes (`--batch-workers`), and one
candle stored through the feed's own path (`market.feed.record_candles`) that falls to the
lowest of the bots' highest buys, so it crosses every bot: its wake-up queues the batch tasks
(`bots.batch`), and the round ends when every bot's cursor is on the candle. Prints `cycles: N
bots all-active applied in T s (R cycles/s per process)`, then the fills, the orders placed and
that no slot holds two resting orders.

    .venv/bin/python bench/bench_cycles.py [--bots 200] [--rounds 20] [--batch-bots 10000]

Without DATABASE_URL / REDIS_URL it starts throwaway servers from the installed binaries.
Goals: idle cycles >= 1,500/s with <= 1 query; the batched round R >= 500 per process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINUTE = timedelta(minutes=1)
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20, help="idle and active rounds each")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="worker threads in the one process, as HUEY_WORKERS runs them (4 gave no more "
        "throughput than 1 here: the cycle is Python, under one GIL)",
    )  # fmt: skip
    parser.add_argument("--batch-bots", type=int, default=10_000, help="0 skips the round")
    parser.add_argument("--batch-workers", type=int, default=2)
    args = parser.parse_args()

    from tests.servers import start_postgres, start_redis

    os.environ.setdefault("AIBO_DATA_DIR", tempfile.mkdtemp(prefix="aibo-bench-"))
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres() or sys.exit("PostgreSQL is not installed")
        os.environ["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = start_redis() or sys.exit("Redis is not installed")
    os.environ["DJANGO_SETTINGS_MODULE"] = "aibo.settings"

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from bots import services
    from bots.models import Bot
    from bots.tasks import cycle_once
    from market.services import SAMPLES, import_candle_rows, load_market_rules, read_csv_rows

    call_command("migrate", verbosity=0)
    exchange, symbol, path = SAMPLES[0]
    load_market_rules(exchange, symbol)
    rows = list(read_csv_rows(path))
    Bot.objects.all().delete()
    from market.models import Candle

    Candle.objects.all().delete()
    import_candle_rows(rows[:1], exchange=exchange, symbol=symbol)
    user, _ = get_user_model().objects.get_or_create(email="bench@example.com")
    user.paper_balances.update_or_create(
        asset="USDT", defaults={"free": Decimal(args.bots * 2000), "locked": 0}
    )
    price = rows[0][4]
    for i in range(args.bots):
        width = Decimal(300 + 20 * (i % 40))  # narrow to wide grids: some cross every minute
        bot = services.create_bot(
            user,
            symbol=symbol,
            config={
                "capital": "2000", "lower_bound": str(price - width),
                "upper_bound": str(price + width), "grid_levels": str(10 + i % 41),
                "spacing": "arithmetic" if i % 2 else "geometric",
            },
        )  # fmt: skip
        services.start_bot(bot)
    ids = list(Bot.objects.running().values_list("pk", flat=True))
    print(f"{len(ids)} running paper bots on {connection.vendor}, leases in the database, "
          f"{args.threads} worker thread(s) in one process")  # fmt: skip

    executed = [0]
    counting = threading.Lock()

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        with counting:  # a counter, not Django's debug cursor: it costs nothing to time
            executed[0] += 1
        return execute(sql, params, many, context)

    def one(bot_id: int) -> tuple[float, int]:
        with connection.execute_wrapper(count):  # each thread has its own connection
            began = time.perf_counter()
            result = cycle_once(bot_id)
            return (time.perf_counter() - began) * 1000, result.fills if result else 0

    pool = ThreadPoolExecutor(args.threads) if args.threads > 1 else None

    def round_of_cycles() -> tuple[list[float], int, int, float]:
        before = executed[0]
        began = time.perf_counter()
        done = list(pool.map(one, ids)) if pool else [one(bot_id) for bot_id in ids]
        wall = time.perf_counter() - began
        return [d[0] for d in done], executed[0] - before, sum(d[1] for d in done), wall

    per_cycle: dict[str, float] = {}
    for kind in ("idle", "active"):
        all_lat: list[float] = []
        total_queries = total_fills = 0
        elapsed = 0.0  # the worker's time: the feed's inserts between rounds are not in it
        for r in range(args.rounds):
            if kind == "active":
                import_candle_rows([rows[1 + r]], exchange=exchange, symbol=symbol)
            lat, q, f, wall = round_of_cycles()
            all_lat += lat
            total_queries += q
            total_fills += f
            elapsed += wall
        n = len(all_lat)
        per_cycle[kind] = elapsed / n
        print(
            f"{kind:>6}: {n:6d} cycles in {elapsed:6.2f} s = {n / elapsed:7.0f} cycles/s | "
            f"latency p50 {statistics.median(all_lat):5.2f} ms p99 {percentile(all_lat, 99):6.2f}"
            f" ms max {max(all_lat):6.2f} ms | {total_queries / n:4.1f} queries/cycle | "
            f"{total_fills} fills | load {os.getloadavg()[0]:.1f}"
        )
    # A running bot's chain cycles every BOT_CYCLE_SECONDS (5 s) and a 1-minute candle closes
    # once a minute, so in steady state 11 of its 12 cycles a minute are idle.
    mixed = 12 / (11 * per_cycle["idle"] + per_cycle["active"])
    print(f" mixed: {mixed:7.0f} cycles/s at 11 idle : 1 active (5 s cycles, 1-minute candles)")
    print("goal: idle >= 1,500 cycles/s at <= 1 query; mixed >= 500 cycles/s per process")
    if args.batch_bots:
        batched_round(args.batch_bots, args.batch_workers)


def batched_round(n: int, workers: int) -> None:
    """N bots on one pair, one candle that crosses every one, ``workers`` Huey processes."""
    import subprocess

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count, Min
    from huey.contrib.djhuey import HUEY

    from bots import services
    from bots.models import Bot, Order
    from bots.tasks import apply_candles_task
    from market.feed import ClosedCandle, record_candles
    from market.models import Candle
    from market.services import SAMPLES

    exchange, symbol, _ = SAMPLES[0]
    Bot.objects.all().delete()
    last = Candle.objects.order_by("-open_time").first()
    assert last is not None
    price = last.close
    user = get_user_model().objects.get(email="bench@example.com")
    user.paper_balances.update_or_create(
        asset="USDT", defaults={"free": Decimal(n * 2000), "locked": 0}
    )
    began = time.perf_counter()
    for i in range(n):
        # Lines 0.3 % to 1 % apart, 10 to 30 of them.
        levels = 10 + i % 21
        step = Decimal("0.003") + Decimal("0.007") * ((i * 7) % 40) / 39
        half = price * step * (levels - 1) / 2
        # Every grid its own, as ten thousand traders' would be: shifted by i cents.
        mid = price + Decimal(i - n // 2) / 100
        bot = services.create_bot(
            user,
            symbol=symbol,
            config={
                "capital": "2000", "lower_bound": str(round(mid - half, 2)),
                "upper_bound": str(round(mid + half, 2)), "grid_levels": str(levels),
                "spacing": "arithmetic" if i % 2 else "geometric",
            },
        )  # fmt: skip
        services.start_bot(bot)
    made = time.perf_counter() - began
    print(f"\nbatched round: {n} running paper bots on {symbol} (made in {made:.0f} s), "
          f"{workers} worker processes (run_huey)")  # fmt: skip
    HUEY.storage.flush_all()  # the chains the starts queued: this round times the batches

    env = {**os.environ, "LOG_LEVEL": "WARNING", "HUEY_WORKERS": "1"}
    logs = [tempfile.TemporaryFile("w+") for _ in range(workers)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_huey", "--no-periodic", "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for log in logs
    ]
    try:
        for _ in range(4 * workers):  # each process loads Django and the cycle's modules
            apply_candles_task([])
        while HUEY.pending_count():
            time.sleep(0.05)
        time.sleep(0.5)
        at = last.open_time + MINUTE
        # Down to the lowest of the bots' highest buys (the price the feed wakes each on):
        # the candle crosses every bot, and the feed wakes them all.
        low = Bot.objects.running().aggregate(low=Min("next_buy_price"))["low"]
        candle = ClosedCandle(exchange, symbol, at, price, price, low, low, Decimal(1))
        before = Order.objects.count()
        with connection.cursor() as cursor:  # start from a quiet database
            cursor.execute("CHECKPOINT")
        load = os.getloadavg()[0]
        began = time.perf_counter()
        record_candles([candle], replayed=True)
        behind = Bot.objects.running().exclude(cursor=at)
        while behind.exists() and time.perf_counter() - began < 600:
            time.sleep(0.02)
        took = time.perf_counter() - began
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    for log in logs:
        log.seek(0)
        if "Traceback" in (text := log.read()):
            print(text[-3000:])
    walked = Bot.objects.filter(cursor=at).count()
    fills = Order.objects.filter(status=Order.Status.FILLED, filled_at=at).count()
    doubled = (
        Order.objects.filter(status__in=Order.RESTING, slot__isnull=False)
        .values("bot_id", "slot").annotate(n=Count("id")).filter(n__gt=1).count()
    )  # fmt: skip
    print(f"cycles: {walked} bots all-active applied in {took:.2f} s "
          f"({walked / took / workers:.0f} cycles/s per process)")  # fmt: skip
    placed = Order.objects.count() - before
    fall = (1 - low / price) * 100
    print(f"        a fall of {fall:.2f} %: {fills} fills, {placed} orders placed, {doubled} "
          f"slots with two resting orders; load {load:.2f} at the start")  # fmt: skip


if __name__ == "__main__":
    main()
