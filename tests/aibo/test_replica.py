"""Issue 16: an optional read replica for market data (``DATABASE_REPLICA_URL``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers import postgres_available, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from django.db import connections, router, transaction
from bots.models import Bot
from market.models import Candle, LatestPrice
out = {
    "candles": Candle.objects.all().db,
    "prices": LatestPrice.objects.all().db,
    "bots": Bot.objects.all().db,
    "write": router.db_for_write(Candle),
    "migrate_replica": router.allow_migrate("replica", "market"),
}
if "replica" in connections.settings:
    out["replica_name"] = connections["replica"].settings_dict["NAME"]
with transaction.atomic():
    out["candles_in_a_transaction"] = Candle.objects.all().db
print(json.dumps(out))
"""


def _probe(**env: str) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "aibo.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_market_reads_outside_a_transaction_go_to_the_replica() -> None:
    if not postgres_available():
        skip_or_fail("PostgreSQL is not installed: the replica settings need it")
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    primary, replica = f"{server}/postgres", f"{server}/replica_copy"
    seen = _probe(DATABASE_URL=primary, DATABASE_REPLICA_URL=replica)
    assert seen == {
        "candles": "replica",
        "prices": "replica",
        "bots": "default",  # only market data
        "write": "default",
        "migrate_replica": False,
        "replica_name": "replica_copy",
        # a bot's cycle walks its candles inside its transaction: the primary, never a copy
        "candles_in_a_transaction": "default",
    }


def test_without_a_replica_everything_reads_the_primary() -> None:
    if not postgres_available():
        skip_or_fail("PostgreSQL is not installed")
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    seen = _probe(DATABASE_URL=f"{server}/postgres", DATABASE_REPLICA_URL="")
    assert seen["candles"] == seen["candles_in_a_transaction"] == "default"
