"""Rows read on a streamed fill's way to its counter-order, each statement's text made once.

Building a query through the ORM (cloning the queryset, resolving the filters, compiling)
costs about 1 ms of CPU: more than PostgreSQL takes to answer it, and a woken live cycle
makes about ten before its counter-order can go out, while a burst of fills shares the
cores. Its reads are written out here instead, as ``cycle.probe`` is, for both backends
(``%s`` placeholders; ``in_list`` for a list's) and bound by the server on PostgreSQL
(``execute``, which ``bots.bulk`` and the send write-down use too). They give the model rows
Django would: the same columns, its converters applied (SQLite's decimals and datetimes,
JSON), the row's state saved. Statements that need no answer before the next one go to
PostgreSQL together (``together``, their rows handed to ``then=``): a burst of fills waits on
every round trip, each one a turn for the server's process on a shared core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def rows(
    model: type[M], where: str, params: Sequence[Any], *, lock: bool = False,
    then: Callable[[list[M]], None] | None = None,
) -> list[M]:  # fmt: skip
    """The rows of ``model`` ``where`` (SQL, the table's columns by name), locked ``FOR
    UPDATE`` with ``lock`` (where the database can; inside a transaction). With ``then``
    they are handed to it instead of returned (inside ``together``: once the block ends)."""
    sql, names, converters = _select(model, where, lock)
    alias = connection.alias

    def made(found: Rows) -> list[M]:
        return [model.from_db(alias, names, _converted(row, converters)) for row in found]

    if then is not None:
        execute(sql, params, then=lambda found: then(made(found)))
        return None  # type: ignore[return-value]
    return made(execute(sql, params))


def row(model: type[M], where: str, params: Sequence[Any], *, lock: bool = False) -> M | None:
    """The one row ``where``, or None."""
    found = rows(model, where, params, lock=lock)
    return found[0] if found else None


def row_with(
    model: type[M], related: str, where: str, params: Sequence[Any], *,
    then: Callable[[M | None], None] | None = None,
) -> M | None:  # fmt: skip
    """The one row ``where``, with the row its foreign key ``related`` names read in the same
    statement and kept on it (no query when it is asked for). In ``where`` the row's table
    is ``t`` and the related one ``r``: name the columns with them. With ``then``, it is
    handed to it instead (as ``rows`` does)."""
    field = model._meta.get_field(related)
    other: type[Model] = field.related_model  # type: ignore[assignment]
    key = (connection.alias, model, related, where)
    made = _JOINS.get(key)
    if made is None:
        q = connection.ops.quote_name
        mine, names, converters = _columns(model, "t.")
        theirs, their_names, their_converters = _columns(other, "r.", len(names))
        sql = (
            f"SELECT {mine}, {theirs} FROM {q(model._meta.db_table)} t LEFT JOIN "
            f"{q(other._meta.db_table)} r ON r.{q(other._meta.pk.column)} = "  # type: ignore[union-attr]
            f"t.{q(field.column)} WHERE {where}"  # type: ignore[union-attr]
        )
        made = (sql, names, their_names, converters + their_converters)
        _JOINS[key] = made
    sql, names, their_names, converters = made
    alias = connection.alias

    def made_row(found: Rows) -> M | None:
        if not found:
            return None
        values = _converted(found[0], converters)
        obj = model.from_db(alias, names, values[: len(names)])
        theirs = values[len(names) :]
        pk_at = their_names.index(other._meta.pk.attname)  # type: ignore[union-attr]
        their_row = None if theirs[pk_at] is None else other.from_db(alias, their_names, theirs)
        field.set_cached_value(obj, their_row)  # type: ignore[union-attr]
        return obj

    if then is not None:
        execute(sql, params, then=lambda found: then(made_row(found)))
        return None
    return made_row(execute(sql, params))


def column(
    model: type[Model], name: str, where: str, params: Sequence[Any], *,
    then: Callable[[list[Any]], None] | None = None,
) -> list[Any]:  # fmt: skip
    """One column's values (as the database gives them: for ids and text) of the rows
    ``where`` (handed to ``then`` instead when given, as ``rows`` does)."""
    key = (connection.alias, model, name, where)
    sql = _COLUMNS.get(key)
    if sql is None:
        sql = f"SELECT {name} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where}"
        _COLUMNS[key] = sql
    if then is not None:
        execute(sql, params, then=lambda found: then([v for (v,) in found]))
        return None  # type: ignore[return-value]
    return [value for (value,) in execute(sql, params)]


def reload(obj: Model, *, lock: bool = False, then: Callable[[bool], None] | None = None) -> bool:
    """``refresh_from_db``, its row locked with ``lock``: every column read again, a cached
    related row kept only while its key is unchanged. False when the row is gone. With
    ``then``, that is handed to it instead (inside ``together``: ``obj`` is reloaded when the
    block ends)."""
    model = type(obj)
    pk = connection.ops.quote_name(model._meta.pk.column)  # type: ignore[union-attr]

    def into(found: list[Model]) -> bool:
        if not found:
            return False
        fresh = found[0]
        for f in model._meta.concrete_fields:
            value = getattr(fresh, f.attname)
            if f.is_relation and f.is_cached(obj) and obj.__dict__.get(f.attname) != value:
                f.delete_cached_value(obj)
            setattr(obj, f.attname, value)
        obj._state.db, obj._state.adding = fresh._state.db, False
        return True

    if then is not None:
        rows(model, f"{pk} = %s", [obj.pk], lock=lock, then=lambda found: then(into(found)))
        return None  # type: ignore[return-value]
    return into(rows(model, f"{pk} = %s", [obj.pk], lock=lock))


Rows = list[tuple[Any, ...]]


def execute(sql: str, params: Sequence[Any], *, then: Callable[[Rows], None] | None = None) -> Rows:
    """Run a statement written for either backend; its rows (none for a write without
    ``RETURNING``), handed to ``then`` too when given. On PostgreSQL it is bound by the
    server: its parameters travel apart from its text, and a statement run again and again is
    prepared once (psycopg prepares it from its fifth run), so the server stops parsing and
    planning it. It runs through Django's cursor wrapper all the same (query logging, execute
    wrappers, error translation); Django's own cursors bind on the client.

    Inside ``together`` it only goes out: its rows come to ``then`` when the block ends."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchall() if cursor.description else []
    else:
        connection.ensure_connection()
        queued = getattr(_together, "queued", None)
        cursor = connection._prepare_cursor(psycopg.Cursor(connection.connection))
        if queued is not None:
            cursor.execute(sql, params)
            queued.append((cursor, then))
            return _LATER
        with cursor:
            cursor.execute(sql, params)
            result = cursor.pgresult  # (its ``description`` makes an object of every column)
            found = cursor.fetchall() if result is not None and result.nfields else []
    if then is not None:
        then(found)
    return found


@contextmanager
def together() -> Iterator[None]:
    """The statements ``execute`` runs inside go to PostgreSQL together (psycopg's pipeline
    mode): one round trip for all of them when the block ends, not one each; each one's rows
    are handed to its ``then`` then. For writes that need no answer before the next one (a
    burst of fills waits on every round trip). Elsewhere, and nested, each runs at once."""
    if connection.vendor != "postgresql" or getattr(_together, "queued", None) is not None:
        yield
        return
    connection.ensure_connection()
    queued: list[tuple[Any, Callable[[Rows], None] | None]] = []
    _together.queued = queued
    try:
        try:
            with connection.wrap_database_errors, connection.connection.pipeline():
                yield
        finally:
            _together.queued = None
        for cursor, then in queued:
            if then is not None:
                then(cursor.fetchall())
    finally:
        for cursor, _then in queued:
            cursor.close()


class _Later(list):  # type: ignore[type-arg]
    """The rows of a statement sent inside ``together``: not there yet (``then`` gets them)."""

    def _not_yet(self, *args: Any) -> Any:
        raise RuntimeError("inside reads.together() a statement's rows come to its then=")

    __iter__ = __len__ = __bool__ = __getitem__ = _not_yet  # type: ignore[assignment]


_LATER = _Later()
_together = threading.local()


def in_list(values: Sequence[Any]) -> str:
    """The placeholders of a list's values in ``IN (…)`` (an empty one matches nothing)."""
    return f"({', '.join(['%s'] * len(values))})" if values else "(NULL)"


Converter = Callable[[Any, Any, Any], Any]


def _select(
    model: type[Model], where: str, lock: bool
) -> tuple[str, list[str], list[tuple[int, list[Converter], Any]]]:
    key = (connection.alias, model, where, lock)
    made = _SELECTS.get(key)
    if made is None:
        columns, names, converters = _columns(model, "")
        sql = (
            f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where}"
        )
        if lock and connection.features.has_select_for_update:
            sql += " FOR UPDATE"
        made = (sql, names, converters)
        _SELECTS[key] = made
    return made


def _columns(
    model: type[Model], prefix: str, offset: int = 0
) -> tuple[str, list[str], list[tuple[int, list[Converter], Any]]]:
    """The model's columns (each after ``prefix``, a table's alias and a dot), their
    attribute names, and the converters of those that need one (by position, after
    ``offset`` columns before them)."""
    q = connection.ops.quote_name
    meta = model._meta
    fields: list[Field] = list(meta.concrete_fields)  # type: ignore[type-arg]
    converters = []
    for i, f in enumerate(fields):
        col = f.get_col(meta.db_table)
        found = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        if found:
            converters.append((offset + i, found, col))
    columns = ", ".join(prefix + q(f.column) for f in fields)
    return columns, [f.attname for f in fields], converters


def _converted(row: tuple[Any, ...], converters: list[tuple[int, list[Converter], Any]]) -> list:
    values = list(row)
    for i, found, col in converters:
        value = values[i]
        for convert in found:
            value = convert(value, col, connection)
        values[i] = value
    return values


_SELECTS: dict[tuple[object, ...], tuple[str, list[str], list[Any]]] = {}
_COLUMNS: dict[tuple[object, ...], str] = {}
_JOINS: dict[tuple[object, ...], tuple[str, list[str], list[str], list[Any]]] = {}
