"""``bots.bulk``: rows written as arrays give what Django's bulk methods give (on SQLite they
are Django's): new rows get their keys, and a row that clashes on its unique fields is
either skipped or written over, as asked. Written ``reads.together`` (one round trip), they get
their keys when the block ends, and a failure is Django's error."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from bots import bulk, reads
from bots.models import Bot, EquitySnapshot

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)


@pytest.fixture
def bot(django_user_model) -> Bot:  # type: ignore[no-untyped-def]
    owner = django_user_model.objects.create_user(email="bulk@example.com", password="x")
    return Bot.objects.create(owner=owner, name="bulk", symbol="BTC/USDT", config={})


def point(bot: Bot, equity: str) -> EquitySnapshot:
    value = Decimal(equity)
    return EquitySnapshot(bot=bot, at=AT, price=Decimal("100000.01"), quote=value, base=0,
                          equity=value)  # fmt: skip


def test_a_clash_on_the_unique_fields_writes_the_newer_values_over_the_row(bot: Bot) -> None:
    first = point(bot, "1000.00000001")
    bulk.insert_rows(EquitySnapshot, [first])
    assert first.pk is not None
    later = point(bot, "1012.5")
    bulk.insert_rows(EquitySnapshot, [later], unique=["bot", "at"],
                     update=["price", "quote", "base", "equity"])  # fmt: skip
    row = EquitySnapshot.objects.get(bot=bot)
    assert (row.pk, row.equity, row.quote) == (first.pk, Decimal("1012.5"), Decimal("1012.5"))


def test_a_clash_skipped_keeps_the_row_as_it_was(bot: Bot) -> None:
    bulk.insert_rows(EquitySnapshot, [point(bot, "1000")])
    bulk.insert_rows(EquitySnapshot, [point(bot, "999")], ignore_conflicts=True)
    assert EquitySnapshot.objects.get(bot=bot).equity == Decimal("1000")


def test_rows_written_together_get_their_keys_when_the_block_ends(bot: Bot) -> None:
    first, second = point(bot, "1000"), point(bot, "1001")
    second.at = AT.replace(minute=1)
    with reads.together():
        bulk.insert_rows(EquitySnapshot, [first])
        bulk.insert_rows(EquitySnapshot, [second])
        if connection.vendor == "postgresql":  # sent, not answered yet: one round trip later
            assert first.pk is None
            with pytest.raises(RuntimeError, match="then="):
                list(reads.execute("SELECT 1", []))
    assert first.pk is not None and second.pk is not None
    assert sorted(EquitySnapshot.objects.values_list("pk", flat=True)) == sorted(
        [first.pk, second.pk]
    )


def test_a_write_together_that_fails_raises_djangos_error_and_writes_nothing(bot: Bot) -> None:
    with pytest.raises(IntegrityError), transaction.atomic(), reads.together():
        bulk.insert_rows(EquitySnapshot, [point(bot, "1000")])
        bulk.insert_rows(EquitySnapshot, [point(bot, "1001")])  # the same minute again
    assert not EquitySnapshot.objects.exists()
