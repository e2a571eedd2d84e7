"""Soak: many paper bots traded for minutes by the deployed processes, then checked.

The market feed (``manage.py run_market_feed``, replaying the bundled real candles at
``--speed`` candles a second) and ``--workers`` Huey consumers (``manage.py run_huey``) run as
their own processes on PostgreSQL and Redis, as in the scaled deployment, while ``--bots``
paper bots trade. Every ten seconds each process's memory (RSS) is read. At the end:

- errors: ERROR lines and tracebacks in the processes' logs;
- duplicate orders: a grid slot with more than one resting order, or an order id twice;
- bots in error, and bots the watchdog had to revive;
- memory: each process's growth from the end of the first quarter (warm) to the end;
- the database's growth per bot-hour (wall time) and per bot per replayed market hour.

    .venv/bin/python bench/soak.py [--bots 200] [--workers 2] [--minutes 5] [--speed 20]

Without DATABASE_URL / REDIS_URL it starts throwaway servers from the installed binaries (a
fresh database either way). Exits 1 when any error or duplicate is found.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_SECONDS = 10


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="run_huey processes")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--speed", type=int, default=20, help="replayed candles a second")
    args = parser.parse_args()

    from tests.servers import start_postgres, start_redis

    data_dir = tempfile.mkdtemp(prefix="aibo-soak-")
    server = os.environ.get("DATABASE_URL") or start_postgres() or sys.exit("no PostgreSQL")
    redis_url = os.environ.get("REDIS_URL") or start_redis() or sys.exit("no Redis")
    database = f"soak_{secrets.token_hex(4)}"
    import psycopg

    admin = server.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    env = {
        **os.environ,
        "DATABASE_URL": server.rsplit("/", 1)[0] + f"/{database}",
        "REDIS_URL": redis_url,
        "AIBO_DATA_DIR": data_dir,
        "SECRET_KEY": "soak-" + secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "localhost",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "MARKET_FEED": "replay",
        "REPLAY_CANDLES_PER_SECOND": str(args.speed),
        "DJANGO_SETTINGS_MODULE": "aibo.settings",
    }
    os.environ.update(env)
    try:
        return soak(args, env, admin, database, Path(data_dir))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def soak(args: argparse.Namespace, env: dict[str, str], admin: str, database: str,
         data_dir: Path) -> int:  # fmt: skip
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from bots import services
    from bots.models import Bot, Order, Trade
    from market.models import Candle
    from market.services import last_candle

    call_command("migrate", verbosity=0)
    call_command("load_sample_data", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(email="soak@example.com")
    user.paper_balances.update_or_create(
        asset="USDT", defaults={"free": Decimal(args.bots * 2000), "locked": 0}
    )
    _, price = last_candle("binance", "BTC/USDT")  # type: ignore[misc]
    for i in range(args.bots):
        width = price * Decimal(3 + i % 8) / 100  # 3 % to 10 % each side: most cross often
        bot = services.create_bot(
            user, symbol="BTC/USDT", name=f"soak {i}",
            config={"capital": "2000", "lower_bound": str(round(price - width, 2)),
                    "upper_bound": str(round(price + width, 2)), "grid_levels": str(10 + i % 21),
                    "spacing": "arithmetic" if i % 2 else "geometric"},
        )  # fmt: skip
        services.start_bot(bot)
    btc = Candle.objects.for_series("binance", "BTC/USDT")
    candles_before = btc.count()

    def size() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])

    size_before = size()
    connection.close()
    manage = [sys.executable, str(ROOT / "manage.py")]
    logs: dict[str, Path] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in [("feed", "run_market_feed")] + [
        (f"worker{n + 1}", "run_huey") for n in range(args.workers)
    ]:
        logs[name] = data_dir / f"{name}.log"
        procs[name] = subprocess.Popen(
            [*manage, command], cwd=ROOT, env=env, stdout=logs[name].open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    print(f"soak: {args.bots} paper bots, {args.workers} worker process(es), the feed replaying "
          f"{args.speed} candles/s, for {args.minutes:g} min on PostgreSQL and Redis")  # fmt: skip

    samples: dict[str, list[float]] = {name: [] for name in procs}
    began = time.monotonic()
    end = began + args.minutes * 60
    warm_at = began + args.minutes * 60 / 4
    warm: dict[str, float] = {}
    try:
        while time.monotonic() < end:
            time.sleep(min(SAMPLE_SECONDS, max(0.0, end - time.monotonic())))
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise SystemExit(f"{name} ended early ({proc.returncode}): see {logs[name]}")
                mb = rss_mb(proc.pid)
                if mb is not None:
                    samples[name].append(mb)
                    if time.monotonic() >= warm_at and name not in warm:
                        warm[name] = mb
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    wall_hours = (time.monotonic() - began) / 3600

    errors = []
    for name, path in logs.items():
        for line in path.read_text(errors="replace").splitlines():
            if " ERROR " in line or line.startswith("Traceback"):
                errors.append(f"{name}: {line[:200]}")
    duplicate_slots = (
        Order.objects.filter(status__in=Order.RESTING, slot__isnull=False)
        .values("bot_id", "slot")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    duplicate_ids = (
        Order.objects.values("client_order_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    )
    in_error = Bot.objects.filter(status=Bot.Status.ERROR).count()
    revived = sum(
        path.read_text(errors="replace").count("cycle chain went quiet") for path in logs.values()
    )
    market_hours = (btc.count() - candles_before) / 60  # the bots' pair
    growth = size() - size_before
    fills = Order.objects.filter(status=Order.Status.FILLED).count()
    trips = Trade.objects.count()

    print(f"replayed {market_hours:.1f} market hours; {fills} orders filled, {trips} round trips")
    for name, values in samples.items():
        if values:
            start = warm.get(name, values[0])
            print(f"memory {name:>8}: {start:6.1f} MB warm -> {values[-1]:6.1f} MB at the end "
                  f"({values[-1] - start:+.1f} MB), peak {max(values):.1f} MB")  # fmt: skip
    per_bot_hour = growth / 1024 / max(args.bots * wall_hours, 1e-9)
    per_market_hour = growth / 1024 / max(args.bots * market_hours, 1e-9)
    print(f"database growth: {growth / 1024 / 1024:.1f} MB = {per_bot_hour:.0f} KB per bot-hour "
          f"(wall), {per_market_hour:.1f} KB per bot per replayed market hour")  # fmt: skip
    print(f"soak: errors {len(errors)}, duplicate orders {duplicate_slots + duplicate_ids}, "
          f"bots in error {in_error}, chains revived {revived}")  # fmt: skip
    for line in errors[:20]:
        print("  " + line)
    return 1 if errors or duplicate_slots or duplicate_ids or in_error else 0


if __name__ == "__main__":
    sys.exit(main())
