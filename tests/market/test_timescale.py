"""Issue 16: candle compression and retention where TimescaleDB is installed."""

from __future__ import annotations

from typing import Any

import pytest

from market import timescale


def test_the_policies_follow_the_settings() -> None:
    sql = timescale.statements(30, 0)
    assert [s for s, _ in sql[:2]] == [
        "SELECT remove_compression_policy('market_candle', if_exists => true)",
        "SELECT remove_retention_policy('market_candle', if_exists => true)",
    ]
    assert "timescaledb.compress_segmentby = 'exchange, symbol, timeframe'" in sql[2][0]
    assert sql[3] == (
        "SELECT add_compression_policy('market_candle', make_interval(days => %s))",
        [30],
    )
    assert len(sql) == 4  # retention 0: every candle kept
    retained = timescale.statements(0, 400)
    assert retained[-1] == (
        "SELECT add_retention_policy('market_candle', make_interval(days => %s))",
        [400],
    )
    assert not any("compress" in s and "remove" not in s for s, _ in retained)


@pytest.mark.django_db
def test_without_timescaledb_nothing_is_done(settings: Any) -> None:
    # The suite's PostgreSQL (Debian's) and SQLite have no TimescaleDB: migrate leaves candles
    # a plain table and sets no policy.
    assert timescale.hypertable() is False
    assert timescale.apply_policies() is False
