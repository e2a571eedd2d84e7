"""TimescaleDB's compression and retention for candles, where the extension is installed.

Candles are a hypertable there (migration 0002). After every ``migrate`` the policies are set
from the settings, so changing them takes a migrate (or ``manage.py migrate`` again), not a new
migration: chunks older than ``CANDLE_COMPRESS_AFTER_DAYS`` are compressed (segmented by pair,
ordered by time: a backtest still reads them, much smaller), and with
``CANDLE_RETENTION_DAYS`` above 0 older chunks are dropped (0 keeps every candle: backtests and
the advisor read history). Without TimescaleDB (plain PostgreSQL, SQLite) nothing happens.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

TABLE = "market_candle"


def statements(compress_after_days: int, retention_days: int) -> list[tuple[str, list[Any]]]:
    """The SQL that sets the candle policies (each replaces the one before)."""
    out: list[tuple[str, list[Any]]] = [
        (f"SELECT remove_compression_policy('{TABLE}', if_exists => true)", []),
        (f"SELECT remove_retention_policy('{TABLE}', if_exists => true)", []),
    ]
    if compress_after_days > 0:
        out += [
            (
                f"ALTER TABLE {TABLE} SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'exchange, symbol, timeframe', "
                "timescaledb.compress_orderby = 'open_time')",
                [],
            ),
            (
                f"SELECT add_compression_policy('{TABLE}', make_interval(days => %s))",
                [compress_after_days],
            ),
        ]
    if retention_days > 0:
        out.append(
            (
                f"SELECT add_retention_policy('{TABLE}', make_interval(days => %s))",
                [retention_days],
            )
        )
    return out


def hypertable(using: str = "default") -> bool:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cursor.fetchone() is None:
            return False
        cursor.execute(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
            [TABLE],
        )
        return cursor.fetchone() is not None


def apply_policies(using: str = "default", **kwargs: Any) -> bool:
    """Set the candle policies from the settings; False (and nothing done) without Timescale."""
    if not hypertable(using):
        return False
    with connections[using].cursor() as cursor:
        for sql, params in statements(
            settings.CANDLE_COMPRESS_AFTER_DAYS, settings.CANDLE_RETENTION_DAYS
        ):
            cursor.execute(sql, params)
    logger.info(
        "candle policies: compress after %s days, keep %s",
        settings.CANDLE_COMPRESS_AFTER_DAYS,
        f"{settings.CANDLE_RETENTION_DAYS} days" if settings.CANDLE_RETENTION_DAYS else "all",
    )
    return True
