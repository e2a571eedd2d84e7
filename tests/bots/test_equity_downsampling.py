"""Issue 16: the stored equity series is thinned with age, per bot: every point for
EQUITY_FULL_DAYS, then the last of each hour, from EQUITY_HOURLY_DAYS the last of each day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bots import ledger
from bots.models import Bot, EquitySnapshot

NOW = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)


def _points(bot: Bot, start: datetime, minutes: int, every: int = 15) -> None:
    EquitySnapshot.objects.bulk_create(
        EquitySnapshot(bot=bot, at=start + timedelta(minutes=m), price=Decimal(1), quote=Decimal(1),
                       base=Decimal(0), equity=Decimal(m))
        for m in range(0, minutes, every)
    )  # fmt: skip


def test_old_points_keep_the_last_of_each_hour_then_of_each_day(bot: Bot, make_bot: Any) -> None:
    other = make_bot(dict(bot.config), name="Other")
    recent = NOW - timedelta(hours=10)  # within EQUITY_FULL_DAYS (2): all kept
    aged = NOW - timedelta(days=3)  # past 2 days: one an hour
    old = NOW - timedelta(days=31, hours=12)  # past 30 days: one a day
    for b in (bot, other):
        _points(b, recent, 120)  # 8 points
        _points(b, aged.replace(minute=0), 180)  # 12 points over three hours
        _points(b, old.replace(hour=0, minute=0), 24 * 60, every=60)  # 24 points in one day

    deleted = ledger.downsample_equity(NOW)

    for b in (bot, other):
        points = list(EquitySnapshot.objects.filter(bot=b).values_list("at", flat=True))
        assert len([p for p in points if p >= recent]) == 8
        hourly = [p for p in points if aged - timedelta(hours=1) <= p < recent]
        assert [p.minute for p in hourly] == [45, 45, 45]  # the last point of each hour
        daily = [p for p in points if p < aged - timedelta(days=1)]
        assert [(p.hour, p.minute) for p in daily] == [(23, 0)]  # the day's last
    assert deleted == 2 * ((12 - 3) + (24 - 1))
    assert ledger.downsample_equity(NOW) == 0  # done: a second run changes nothing
