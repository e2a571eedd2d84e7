"""Many rows written in one statement each: a batch of cycles' writes.

Django's ``bulk_update`` writes ``CASE WHEN id = … THEN …`` for every row and field, and its
``bulk_create`` one placeholder per value; building and sending those for a batch's 500 bots
cost more than walking the bots. On PostgreSQL each column goes instead as one array parameter
(``unnest``), bound by the server: a statement of a few lines whatever the number of rows.
Elsewhere (SQLite: the embedded default, with few bots) Django's own bulk methods do it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, connections
from django.db.models import Field, Model

from bots import reads


def update_rows(
    model: type[Model], rows: Sequence[Model], fields: Sequence[str], *, many: bool = True
) -> None:
    """Write ``fields`` of every row (saved rows of ``model``) in one statement; with ``many``
    off (a few rows: one bot's cycle) as Django's ``bulk_update`` does."""
    if not rows:
        return
    if not many or connection.vendor != "postgresql":
        model._default_manager.bulk_update(rows, fields)
        return
    q = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [pk] + [meta.get_field(name) for name in fields]
    sets = ", ".join(f"{q(f.column)} = v.{q(f.column)}" for f in columns[1:])
    sql = (
        f"UPDATE {q(meta.db_table)} AS t SET {sets} FROM {_unnest(columns)} "
        f"WHERE t.{q(pk.column)} = v.{q(pk.column)}"
    )
    reads.execute(sql, _arrays(columns, rows, add=False))


def insert_rows(
    model: type[Model],
    rows: Sequence[Model],
    *,
    ignore_conflicts: bool = False,
    many: bool = True,
    unique: Sequence[str] = (),
    update: Sequence[str] = (),
) -> None:
    """Insert new rows of ``model`` in one statement; each gets its primary key (not with
    ``ignore_conflicts``: rows that clashed are not inserted and have none, as in Django).
    A row that clashes with one already there on the fields ``unique`` writes its ``update``
    fields into it instead (Django's ``update_conflicts``). With ``many`` off (one bot's
    cycle) as Django's ``bulk_create`` does."""
    if not rows:
        return
    manager = model._default_manager
    if not many or connection.vendor != "postgresql" or any(o.pk is not None for o in rows):
        if update:
            manager.bulk_create(
                rows, update_conflicts=True, unique_fields=unique, update_fields=update
            )
        else:
            manager.bulk_create(rows, ignore_conflicts=ignore_conflicts)
        return
    for obj in rows:  # an order saved just before: its id goes into the trade that names it
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    q = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [f for f in meta.concrete_fields if f is not pk]
    names = ", ".join(f"v.{q(f.column)}" for f in columns)
    sql = (
        f"INSERT INTO {q(meta.db_table)} ({', '.join(q(f.column) for f in columns)}) "
        f"SELECT {names} FROM {_unnest(columns, ordered=True)} ORDER BY v.ord"
    )
    if ignore_conflicts:
        reads.execute(sql + " ON CONFLICT DO NOTHING", _arrays(columns, rows, add=True))
        return
    if update:
        clash = ", ".join(q(meta.get_field(name).column) for name in unique)
        sets = ", ".join(
            f"{q(c)} = EXCLUDED.{q(c)}" for c in (meta.get_field(name).column for name in update)
        )
        sql += f" ON CONFLICT ({clash}) DO UPDATE SET {sets}"
    alias = connection.alias

    def saved(ids: reads.Rows) -> None:
        for obj, (key,) in zip(rows, ids, strict=True):
            obj.pk = key
            obj._state.adding, obj._state.db = False, alias

    reads.execute(f"{sql} RETURNING {q(pk.column)}", _arrays(columns, rows, add=True), then=saved)


def _unnest(columns: list[Field], *, ordered: bool = False) -> str:  # type: ignore[type-arg]
    """The columns' arrays as rows ``v`` (with ``v.ord``, their position, when ``ordered``);
    bound in binary: a text array would escape every quote of every JSON value. Made once per
    table and columns (asking each field its type costs more than a live fill's statement)."""
    key = (connection.alias, tuple(columns), ordered)
    sql = _UNNESTS.get(key)
    if sql is None:
        q = connection.ops.quote_name
        arrays = ", ".join(f"%b::{f.db_type(connection)}[]" for f in columns)
        names = ", ".join(q(f.column) for f in columns)
        if ordered:
            sql = f"unnest({arrays}) WITH ORDINALITY AS v({names}, ord)"
        else:
            sql = f"unnest({arrays}) AS v({names})"
        _UNNESTS[key] = sql
    return sql


_UNNESTS: dict[tuple[object, ...], str] = {}


# Columns whose Python values psycopg sends as they are (Django's preparation of them on
# PostgreSQL returns them unchanged); the others (JSON) go through ``get_db_prep_save``.
_AS_IS = {
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateField",
    "DateTimeField", "DecimalField", "ForeignKey", "IntegerField", "PositiveIntegerField",
    "PositiveSmallIntegerField", "SmallIntegerField", "TextField",
}  # fmt: skip


def _arrays(columns: list[Field], rows: Sequence[Model], *, add: bool) -> list[list[Any]]:  # type: ignore[type-arg]
    """Each column's values for the database, as Django's own save prepares them."""
    db = connections[connection.alias]  # the wrapper itself, not the per-thread proxy
    out = []
    for f in columns:
        if add:  # auto_now_add and the like
            values = [f.pre_save(obj, True) for obj in rows]
        else:
            values = [getattr(obj, f.attname) for obj in rows]
        if f.get_internal_type() not in _AS_IS:
            values = [f.get_db_prep_save(v, db) for v in values]
        out.append(values)
    return out


def delete_rows(model: type[Model], ids: Sequence[Any]) -> None:
    """Delete the rows of ``model`` with these ids, in one statement without the ORM's
    collector (for rows nothing refers to)."""
    if not ids:
        return
    q = connection.ops.quote_name
    table, pk = q(model._meta.db_table), q(model._meta.pk.column)  # type: ignore[union-attr]
    reads.execute(f"DELETE FROM {table} WHERE {pk} IN {reads.in_list(ids)}", ids)
