"""Candle import speed: `market.services.import_candle_rows` into PostgreSQL (COPY) or SQLite.

Builds N one-minute rows (default a year, 525,600) from the bundled real BTC/USDT fortnight,
repeated on consecutive minutes with each pass rescaled to open where the last one closed, and
imports them into an empty table, then again (idempotent: nothing added). For scale it also
times Django's own `bulk_create(ignore_conflicts=True)` of the same rows into an empty table.

    .venv/bin/python bench/bench_import.py [--rows 525600] [--sqlite]

Without DATABASE_URL it starts a throwaway PostgreSQL from the installed binaries; --sqlite
uses a temporary SQLite file (the embedded default) instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = Decimal("0.01")


def stitched(base: list[tuple], n: int) -> list[tuple]:
    """``n`` rows on consecutive minutes: passes over ``base``, each rescaled to continue."""
    from market.precision import round_price

    out: list[tuple] = []
    t0, scale = base[0][0], Decimal(1)
    while len(out) < n:
        offset = len(out) * 60_000
        for ts, o, h, low, c, v in base:
            if len(out) == n:
                break
            o, h, low, c = (round_price(x * scale, TICK) for x in (o, h, low, c))
            out.append((t0 + offset + (ts - t0), o, h, low, c, v))  # rounding keeps the order
        scale = out[-1][4] / base[0][1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=525_600)
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite default")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="aibo-bench-")
    os.environ.setdefault("AIBO_DATA_DIR", data_dir)
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if args.sqlite:
        os.environ.pop("DATABASE_URL", None)
    elif not os.environ.get("DATABASE_URL"):
        from tests.servers import start_postgres

        url = start_postgres() or sys.exit("PostgreSQL is not installed (or use --sqlite)")
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/postgres"
    os.environ["DJANGO_SETTINGS_MODULE"] = "aibo.settings"

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from market.models import Candle
    from market.services import SAMPLES, import_candle_rows, read_csv_rows

    call_command("migrate", verbosity=0)
    exchange, symbol, path = SAMPLES[0]
    rows = stitched(list(read_csv_rows(path)), args.rows)
    print(f"database: {connection.vendor}; {len(rows):,} rows built from {path.name}")

    Candle.objects.all().delete()
    start = time.perf_counter()
    report = import_candle_rows(rows, exchange=exchange, symbol=symbol)
    first = time.perf_counter() - start
    assert report.inserted == len(rows), report
    start = time.perf_counter()
    again = import_candle_rows(rows, exchange=exchange, symbol=symbol)
    second = time.perf_counter() - start
    assert again.inserted == 0

    Candle.objects.all().delete()
    start = time.perf_counter()
    Candle.objects.bulk_create(
        (
            Candle(exchange=exchange, symbol=symbol, timeframe="1m",
                   open_time=datetime.fromtimestamp(ts / 1000, UTC), open=o, high=h, low=low,
                   close=c, volume=v)
            for ts, o, h, low, c, v in rows
        ),
        batch_size=2_000,
        ignore_conflicts=True,
    )  # fmt: skip
    plain = time.perf_counter() - start

    n = len(rows)
    print(f"import_candle_rows, empty table: {first:6.2f} s  {n / first:>10,.0f} rows/s")
    print(f"re-import (all already stored): {second:6.2f} s  {n / second:>10,.0f} rows/s")
    print(f"Django bulk_create for scale:    {plain:6.2f} s  {n / plain:>10,.0f} rows/s")
    print(f"import_candle_rows vs bulk_create: {plain / first:.1f}x")


if __name__ == "__main__":
    main()
