"""Many rows updated, each with its own values, in one statement: a batch of cycles' write.

Django's ``bulk_update`` writes ``CASE WHEN id = … THEN …`` for every row and field; building
that for a batch's 500 bots and 15 fields took longer than walking the bots. On PostgreSQL the
rows go in as a ``VALUES`` list joined on the primary key instead; elsewhere (SQLite: the
embedded default, with few bots) Django's ``bulk_update`` does it.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def update_rows(model: type[Model], rows: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every row (saved rows of ``model``) in one statement."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(rows, fields)
        return
    q = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [pk] + [meta.get_field(name) for name in fields]
    # Values arrive untyped (client-side binding): each is cast to its column's type.
    sets = ", ".join(
        f"{q(f.column)} = CAST(v.{q(f.column)} AS {f.db_type(connection)})" for f in columns[1:]
    )
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    params = [
        f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in rows for f in columns
    ]
    sql = (
        f"UPDATE {q(meta.db_table)} AS t SET {sets} "
        f"FROM (VALUES {', '.join([row] * len(rows))}) "
        f"AS v({', '.join(q(f.column) for f in columns)}) "
        f"WHERE t.{q(pk.column)} = CAST(v.{q(pk.column)} AS {pk.db_type(connection)})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
