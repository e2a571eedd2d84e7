"""An optional read replica for market data (``DATABASE_REPLICA_URL``).

Reads of candles and latest prices outside a transaction (pages, the API, charts, backtests,
the advisor's indicators) go to the replica; everything else, every write, and every read
inside a transaction on the primary (a bot's cycle walks its new candles inside its own
transaction) stays on the primary, so a trading decision never reads a lagging copy. Without
the setting there is one database and this router says nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections

REPLICA = "replica"
MARKET_MODELS = {("market", "candle"), ("market", "latestprice")}


class MarketReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        if REPLICA not in settings.DATABASES:
            return None
        if (model._meta.app_label, model._meta.model_name) not in MARKET_MODELS:
            return None
        if connections["default"].in_atomic_block:
            return "default"  # inside a transaction: read what it reads and writes
        return REPLICA

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # one database, copied: rows relate across the aliases

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return db != REPLICA  # the replica is a copy of the primary, migrated with it
