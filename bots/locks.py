"""A bot's lease: cycles, live starts and live stops of one bot never run side by side.

The lease is a row (``BotLease``: a token and when it runs out) taken with one conditional
UPDATE, so it holds across every worker process on SQLite and PostgreSQL alike. While its
holder works, the process's keeper thread renews it every third of ``BOT_LEASE_SECONDS``; a
worker that is killed stops renewing, and after at most ``BOT_LEASE_SECONDS`` any worker may
take the bot again. (A flag with no expiry, as before, left a killed worker's bot locked for
good: no cycle, no stop-loss, and Stop failing.) The heartbeat says when a cycle of the bot's
chain last ran.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from bots import reads
from bots.errors import BotError
from bots.models import BotLease


def heartbeat_key(bot_id: int) -> str:
    return f"bot-heartbeat-{bot_id}"


class Busy(Exception):
    """Another worker holds the bot's lease right now."""


def _ttl() -> timedelta:
    return timedelta(seconds=settings.BOT_LEASE_SECONDS)


def _sql(query: str, *params: object) -> int:
    """One statement on the lease table, written out: a cycle takes and gives back its lease
    every time, and the ORM's query building would cost more than the statement itself."""
    table = connection.ops.quote_name(BotLease._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    values = [adapt(p) if isinstance(p, datetime) else p for p in params]
    with connection.cursor() as cursor:
        cursor.execute(query.format(table=table), values)
        return cursor.rowcount


# Takes the lease (its token, until when) of a bot (``{table}``: the lease table) when nobody's
# has not run out: ``take``'s rule, in both of its ways.
_TAKE = (
    "UPDATE {table} SET token = %s, until = %s WHERE bot_id = %s AND (until IS NULL OR until < %s)"
)


def take(bot_id: int, *, also: Callable[[], None] | None = None) -> str | None:
    """The bot's lease for a new token, or None when someone else's has not run out.

    ``also``: statements (``bots.reads``, their rows handed to ``then=``) sent right after
    the lease's, in the same round trip on PostgreSQL. Their answers count only when the lease
    was taken, as they were read under it; when the bot's first lease had to be made instead,
    ``also`` is called again once it is held."""
    if also is not None and connection.vendor == "postgresql":
        token = secrets.token_hex(16)
        now = timezone.now()
        table = connection.ops.quote_name(BotLease._meta.db_table)
        taken: list[Any] = []
        made: list[Any] = []
        with reads.together():
            reads.execute(_TAKE.format(table=table) + " RETURNING bot_id",
                          [token, now + _ttl(), bot_id, now], then=taken.extend)  # fmt: skip
            reads.execute(f"SELECT 1 FROM {table} WHERE bot_id = %s", [bot_id], then=made.extend)
            also()
        if taken:
            _keeper.hold(bot_id, token)
            return token
        if made:  # held by someone else
            return None
    token = _take(bot_id)
    if token is not None and also is not None:
        also()
    return token


def _take(bot_id: int) -> str | None:
    token = secrets.token_hex(16)
    now = timezone.now()
    if _sql(_TAKE, token, now + _ttl(), bot_id, now):
        _keeper.hold(bot_id, token)
        return token
    try:  # the bot's first lease: its row does not exist yet
        with transaction.atomic():  # a savepoint: a caller's transaction survives a clash
            BotLease.objects.create(bot_id=bot_id, token=token, until=now + _ttl())
    except IntegrityError:  # it does (held), or another worker made it just now
        return None
    _keeper.hold(bot_id, token)
    return token


def held() -> Exists:
    """True for a bot row (of the outer query) whose lease someone holds now: the rule ``take``
    applies, as a filter. A batch of cycles skips those bots (their holder works on them)."""
    return Exists(BotLease.objects.filter(bot_id=OuterRef("pk"), until__gte=timezone.now()))


def held_sql(bot_column: str) -> tuple[str, list[object]]:
    """The same rule written out (SQL and its parameters) for the bot id in ``bot_column``: the
    idle cycle's one query asks it beside everything else."""
    table = connection.ops.quote_name(BotLease._meta.db_table)
    sql = f"EXISTS (SELECT 1 FROM {table} l WHERE l.bot_id = {bot_column} AND l.until >= %s)"
    return sql, [connection.ops.adapt_datetimefield_value(timezone.now())]


def renew(bot_id: int, token: str) -> bool:
    """Push the lease's end out again; False if it is no longer ours (it ran out and was
    taken: whoever holds it now is the one working on the bot)."""
    until = timezone.now() + _ttl()
    return bool(
        _sql("UPDATE {table} SET until = %s WHERE bot_id = %s AND token = %s", until, bot_id, token)
    )


def give_back(bot_id: int, token: str) -> None:
    _keeper.release(bot_id, token)
    _sql("UPDATE {table} SET token = '', until = NULL WHERE bot_id = %s AND token = %s",
         bot_id, token)  # fmt: skip


class _Keeper:
    """One thread per process renews every lease this process holds, every third of
    ``BOT_LEASE_SECONDS``; it dies with the process, and so do its renewals."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], float] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, bot_id: int, token: str) -> None:
        with self._guard:
            self._held[(bot_id, token)] = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bot-leases", daemon=True)
                self._thread.start()

    def release(self, bot_id: int, token: str) -> None:
        with self._guard:
            self._held.pop((bot_id, token), None)

    def _run(self) -> None:
        try:
            while True:
                period = settings.BOT_LEASE_SECONDS / 3
                time.sleep(min(period, 1.0))  # a shorter lease set meanwhile is seen soon
                with self._guard:
                    due = [key for key, since in self._held.items()
                           if time.monotonic() - since >= period]  # fmt: skip
                for bot_id, token in due:
                    if renew(bot_id, token):
                        with self._guard:
                            if (bot_id, token) in self._held:
                                self._held[(bot_id, token)] = time.monotonic()
                    else:
                        self.release(bot_id, token)
                close_old_connections()
        finally:
            connection.close()


_keeper = _Keeper()


@contextmanager
def _held(bot_id: int, token: str) -> Iterator[None]:
    try:
        yield
    finally:
        give_back(bot_id, token)


@contextmanager
def cycle_lock(bot_id: int, *, also: Callable[[], None] | None = None) -> Iterator[None]:
    """The bot's lease, or ``Busy`` at once when another worker holds it (``also``: see
    ``take``)."""
    token = take(bot_id, also=also)
    if token is None:
        raise Busy(bot_id)
    with _held(bot_id, token):
        yield


@contextmanager
def bot_lock(bot_id: int, *, wait: float = 10.0) -> Iterator[None]:
    """The bot's lease, waited for: live starts and stops take it so they never run beside a
    cycle of the same bot. BotError when a cycle holds it longer than ``wait``."""
    deadline = time.monotonic() + wait
    while (token := take(bot_id)) is None:
        if time.monotonic() > deadline:
            raise BotError("The bot is busy with its exchange right now; try again in a moment.")
        time.sleep(0.05)
    with _held(bot_id, token):
        yield
