"""Live accounts' user data streams: a fill wakes its bot at once, and the bot asks nothing.

One asyncio loop (a thread of the market feed's process, ``market.feed.companions``) keeps a
ccxt.pro user data stream open for every account with a running live bot: on Binance the
websocket API's ``userDataStream.subscribe.signature`` (the listen-key stream is being
retired). Each fill of an order of ours is written down (``StreamedFill``) and its bot's cycle
runs at once (``Waker``: in this process, or with ``USER_STREAM_WAKE_PROCESSES`` in as many
processes of its own, several cycles in each, so that the cycles of one price move's fills run
side by side, not under one interpreter lock nor one after another), so the counter-order goes
out within milliseconds. An order of ours cancelled or expired on the exchange's side asks the
bot for a REST reconciliation.

The stream is trusted only while it is known to be up: its state (connected since, last beat)
is in the cache, shared with every worker. A bot whose last REST reconciliation began after the
stream came up has missed nothing, and its cycles take fills from the stream alone; otherwise
(no stream, a gap, a beat missed, or ``LIVE_RECONCILE_SECONDS`` gone by) the cycle reconciles
over REST as before: the account's trades from the trade-id cursor and the open orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection, connections
from django.utils import timezone

from bots import bulk, reads
from bots.gateways.base import ExchangeFill
from bots.grid import order_ids
from bots.models import Bot, StreamedFill

logger = logging.getLogger(__name__)

# Order states on the exchange's side that only a REST reconciliation sorts out (the rest of
# a partly filled order is sent again, an order that vanished is looked up).
ENDED = {"CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"}
MAX_BACKOFF_SECONDS = 60.0
# Processes that run woken cycles by default on PostgreSQL (``wake_processes``).
WAKE_PROCESSES = 2


# --- the stream's state, shared through the cache -------------------------------------------


def cache_key(credential_id: int | None) -> str:
    return f"user-stream-{credential_id}"


def _now() -> float:
    return timezone.now().timestamp()


def mark_up(credential_id: int, since: float) -> None:
    cache.set(cache_key(credential_id), (since, _now()), timeout=None)


def beat(credential_id: int) -> None:
    state = cache.get(cache_key(credential_id))
    if state is not None:
        cache.set(cache_key(credential_id), (state[0], _now()), timeout=None)


def mark_down(credential_id: int) -> None:
    cache.delete(cache_key(credential_id))


def up_since(credential_id: int | None, *, known: dict[str, Any] | None = None) -> float | None:
    """When the account's stream came up, while it is up (its beat is fresh); else None.
    ``known``: the cache's answer to a read of several keys, this one's among them."""
    if credential_id is None:
        return None
    key = cache_key(credential_id)
    state = cache.get(key) if known is None else known.get(key)
    if state is None or _now() - state[1] > 3 * settings.USER_STREAM_BEAT_SECONDS:
        return None
    return state[0]


def rest_due(bot: Bot, now: datetime | None = None, *, known: dict[str, Any] | None = None) -> bool:
    """Whether this cycle reconciles over REST: no stream, a gap in it since the last REST
    reconciliation, something only REST sorts out, or the safety net's period is over
    (``known``: as ``up_since``)."""
    synced = bot.rest_synced_at
    since = up_since(bot.credential_id, known=known)
    if synced is None or since is None or synced.timestamp() < since:
        return True
    if bot.rest_due_at is not None and bot.rest_due_at >= synced:
        return True
    now = now or timezone.now()
    return now - synced >= reconcile_period(bot.pk)


def reconcile_period(bot_id: int) -> timedelta:
    """``LIVE_RECONCILE_SECONDS``, give or take a tenth, the same for a bot every time: the
    bots of an account that came up together do not all ask REST in the same second."""
    spread = (bot_id * 2654435761 % 1000) / 1000 - 0.5  # -0.5 .. 0.5, fixed per bot
    return timedelta(seconds=settings.LIVE_RECONCILE_SECONDS * (1 + spread / 5))


# --- what the stream says, written down ------------------------------------------------------


def fill_of(report: dict[str, Any]) -> ExchangeFill | None:
    """The fill in a Binance ``executionReport`` (``x`` TRADE), exact from its strings."""
    if report.get("x") != "TRADE" or not report.get("c"):
        return None
    return ExchangeFill(
        trade_id=str(report["t"]),
        client_id=str(report["c"]),
        exchange_order_id=str(report.get("i") or ""),
        side=str(report["S"]).lower(),  # type: ignore[arg-type]
        price=Decimal(str(report["L"])),
        amount=Decimal(str(report["l"])),
        fee=Decimal(str(report.get("n") or "0")),
        fee_asset=str(report.get("N") or ""),
        at_ms=int(report.get("T") or report.get("E") or 0),
    )


_KEY_FIELDS = {"id", "order_key", "generation"}  # what ``Bot.key`` reads


def _bots_of(credential_id: int, client_ids: Iterable[str]) -> dict[str, int]:
    """Which running live bot of this account sent each of these orders (this run of it)."""
    by_id = {c: key[1] for c in client_ids if (key := order_ids.key_of(c)) is not None}
    if not by_id:
        return {}
    ids = sorted(set(by_id.values()))
    # Written out (``bots.reads``): every fill heard passes here before its bot is woken.
    # The columns in the model's order, as ``from_db`` takes them.
    names = [f.attname for f in Bot._meta.concrete_fields if f.attname in _KEY_FIELDS]
    table = connection.ops.quote_name(Bot._meta.db_table)
    running = reads.execute(
        f"SELECT {', '.join(names)} FROM {table} WHERE id IN {reads.in_list(ids)}"
        " AND credential_id = %s AND mode = %s AND status = %s",
        [*ids, credential_id, Bot.Mode.LIVE, Bot.Status.RUNNING],
    )
    bots = [Bot.from_db(connection.alias, names, row) for row in running]
    keys = {b.pk: b.key for b in bots}
    return {
        c: bot_id
        for c, bot_id in by_id.items()
        if bot_id in keys and order_ids.belongs_to(c, keys[bot_id])
    }


def take_in_fills(credential_id: int, fills: list[ExchangeFill]) -> list[int]:
    """Write down the fills of our running bots' orders; returns the bots to wake."""
    owners = _bots_of(credential_id, {f.client_id for f in fills})
    rows = [
        StreamedFill(
            bot_id=owners[f.client_id], trade_id=f.trade_id, client_order_id=f.client_id,
            exchange_order_id=f.exchange_order_id, side=f.side, price=f.price, amount=f.amount,
            fee=f.fee, fee_asset=f.fee_asset, at_ms=f.at_ms,
        )
        for f in fills
        if f.client_id in owners
    ]  # fmt: skip
    bulk.insert_rows(StreamedFill, rows, ignore_conflicts=True)
    return sorted({r.bot_id for r in rows})


def take_in_order_ends(credential_id: int, reports: list[dict[str, Any]]) -> list[int]:
    """Orders of ours that ended on the exchange's side: their bots reconcile over REST."""
    ended = {str(r.get("c")) for r in reports if r.get("X") in ENDED and r.get("c")}
    ended |= {str(r.get("C")) for r in reports if r.get("X") in ENDED and r.get("C")}
    owners = sorted(set(_bots_of(credential_id, ended).values()))
    if owners:
        Bot.objects.filter(pk__in=owners).update(rest_due_at=timezone.now())
    return owners


def streamed_fills(rows: Iterable[StreamedFill]) -> list[ExchangeFill]:
    return [
        ExchangeFill(
            trade_id=r.trade_id, client_id=r.client_order_id,
            exchange_order_id=r.exchange_order_id, side=r.side,  # type: ignore[arg-type]
            price=r.price, amount=r.amount, fee=r.fee, fee_asset=r.fee_asset, at_ms=r.at_ms,
        )
        for r in rows
    ]  # fmt: skip


# --- waking bots -----------------------------------------------------------------------------


class Waker:
    """Runs a bot's cycle at once, in a small pool of threads: one cycle of a bot at a time,
    and one more after it when it was woken again meanwhile (a fill heard of while its cycle
    ran). A bot whose lease another worker holds is tried again shortly (that cycle may have
    read its fills before this one was written)."""

    def __init__(
        self,
        run: Callable[[int], Any],
        *,
        workers: int | None = None,
        busy_retry_seconds: float = 0.005,
        busy_tries: int = 1000,
    ) -> None:
        self.run = run
        # A thread per cycle that may run at once: as many as the processes run side by side
        # (each thread waits there for its cycle), else four in this process.
        workers = workers or getattr(run, "capacity", 4)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="fill-wake")
        self.busy_retry_seconds = busy_retry_seconds
        self.busy_tries = busy_tries
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._again: set[int] = set()

    def wake(self, bot_id: int) -> None:
        with self._lock:
            if bot_id in self._running:
                self._again.add(bot_id)
                return
            self._running.add(bot_id)
        self._submit(bot_id, 0)

    def idle(self) -> bool:
        with self._lock:
            return not self._running

    def shutdown(self) -> None:
        """Stop, and close each worker thread's database connection (kept between wake-ups)."""
        workers = self.pool._max_workers
        barrier = threading.Barrier(workers, timeout=2)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # one on each thread: none is idle until all have come
            connections.close_all()

        for _ in range(workers):
            self.pool.submit(close)
        self.pool.shutdown(wait=True)

    def _cycles(self, bot_id: int, tries: int = 0) -> None:
        # The pool's threads keep their database connections: a wake-up is not a request.
        try:
            ran = self.run(bot_id) is not None
        except Exception:
            logger.exception("bot %s: the cycle a fill woke failed", bot_id)
            close_old_connections()  # a broken connection is not kept
            ran = True
        if not ran and tries < self.busy_tries:
            # Another worker holds the bot: try again shortly, without holding this thread
            # (the next bot of a burst should not wait behind a busy one).
            retry = threading.Timer(self.busy_retry_seconds, self._submit, (bot_id, tries + 1))
            retry.daemon = True
            retry.start()
            return
        with self._lock:
            if bot_id not in self._again:
                self._running.discard(bot_id)
                return
            self._again.discard(bot_id)
        self._submit(bot_id, 0)

    def _submit(self, bot_id: int, tries: int) -> None:
        try:
            self.pool.submit(self._cycles, bot_id, tries)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._running.discard(bot_id)


def wake_processes() -> int:
    """How many processes run the cycles fills wake (``USER_STREAM_WAKE_PROCESSES``; by default
    2 on PostgreSQL, each running ``bots.processes.THREADS`` cycles side by side; none on
    SQLite, whose one writer they would queue for)."""
    configured = settings.USER_STREAM_WAKE_PROCESSES
    if configured is not None:
        return configured
    return 0 if connections["default"].vendor == "sqlite" else WAKE_PROCESSES


# --- the streams -----------------------------------------------------------------------------


def _accounts() -> dict[int, Any]:
    """The credentials of running live bots, by id."""
    from accounts.models import ExchangeCredential

    ids = Bot.objects.running().filter(mode=Bot.Mode.LIVE).values_list("credential_id")
    return {c.pk: c for c in ExchangeCredential.objects.filter(pk__in=ids)}


def _account_bots(credential_id: int) -> list[int]:
    return list(
        Bot.objects.running()
        .filter(mode=Bot.Mode.LIVE, credential_id=credential_id)
        .values_list("pk", flat=True)
    )


class UserStreams:
    """Every live account's user data stream, in one asyncio loop; ``run(stop)`` is the
    feed's companion (a thread) and returns when ``stop`` is set."""

    def __init__(
        self,
        *,
        waker: Waker,
        rescan_seconds: float = 5.0,
        beat_seconds: float | None = None,
        client_for: Callable[[Any], Any] | None = None,
    ) -> None:
        from accounts.key_check import stream_client_for

        self.waker = waker
        self.rescan_seconds = rescan_seconds
        self.beat_seconds = beat_seconds or settings.USER_STREAM_BEAT_SECONDS
        self.client_for = client_for or stream_client_for
        self._markets: dict[str, Any] = {}  # per exchange: loaded once, not per reconnect
        self._db = ThreadPoolExecutor(1, thread_name_prefix="user-streams-db")

    def run(self, stop: threading.Event) -> None:
        try:
            asyncio.run(self._main(stop))
        finally:
            self._db.submit(connections.close_all).result()
            self._db.shutdown()

    async def _in_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Database work off the loop, on the streams' own thread (one connection)."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _main(self, stop: threading.Event) -> None:
        tasks: dict[int, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                wanted = await self._in_db(_accounts)
                for cid, credential in wanted.items():
                    if cid not in tasks or tasks[cid].done():
                        tasks[cid] = asyncio.create_task(self._account(credential))
                for cid in [c for c in tasks if c not in wanted]:
                    tasks.pop(cid).cancel()
                    mark_down(cid)
                for _ in range(max(1, int(self.rescan_seconds / 0.1))):
                    if stop.is_set():
                        break
                    await asyncio.sleep(0.1)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for cid in tasks:
                mark_down(cid)

    async def _account(self, credential: Any) -> None:
        """Keep one account's stream up: reconnect with a growing, jittered delay."""
        delay = 1.0
        while True:
            client = self.client_for(credential)
            began = time.monotonic()
            try:
                await self._markets_of(client)
                await self._listen(credential, client)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("user data stream of %s (%s) lost: %s: %s; reconnecting",
                               credential, credential.exchange, type(e).__name__, e)  # fmt: skip
            finally:
                mark_down(credential.pk)
                with contextlib.suppress(Exception):
                    await client.close()
            if time.monotonic() - began > 2 * MAX_BACKOFF_SECONDS:
                delay = 1.0  # it was up for a good while: this is a new trouble
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _markets_of(self, client: Any) -> None:
        known = self._markets.get(client.id)
        if known is not None:
            client.set_markets(known)
        else:
            await client.load_markets()
            self._markets[client.id] = list(client.markets.values())

    async def _listen(self, credential: Any, client: Any) -> None:
        await client.authenticate({"type": "spot"})  # subscribed when it returns
        mark_up(credential.pk, since=_now())
        # Everything before now is REST's to find: each bot of the account reconciles now.
        for bot_id in await self._in_db(_account_bots, credential.pk):
            self.waker.wake(bot_id)
        watchers = {
            asyncio.create_task(self._fills(credential, client)),
            asyncio.create_task(self._order_ends(credential, client)),
        }
        try:
            while True:
                done, _ = await asyncio.wait(
                    watchers, timeout=self.beat_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()  # a watcher only ends by failing
                if done or not self._connected(client):
                    raise ConnectionError("the user data stream closed")
                beat(credential.pk)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    @staticmethod
    def _connected(client: Any) -> bool:
        url = client.urls["api"]["ws"]["ws-api"]["spot"]
        ws = client.clients.get(url)
        return ws is not None and not ws.closed()

    async def _fills(self, credential: Any, client: Any) -> None:
        async def take_in(trades: list[dict[str, Any]]) -> None:
            fills = [f for t in trades if (f := fill_of(t.get("info") or {})) is not None]
            if fills:
                for bot_id in await self._in_db(take_in_fills, credential.pk, fills):
                    self.waker.wake(bot_id)

        await _every_update(client.watch_my_trades, lambda: client.myTrades, _trade_key, take_in)

    async def _order_ends(self, credential: Any, client: Any) -> None:
        async def take_in(orders: list[dict[str, Any]]) -> None:
            reports = [o.get("info") or {} for o in orders]
            if any(r.get("X") in ENDED for r in reports):
                for bot_id in await self._in_db(take_in_order_ends, credential.pk, reports):
                    self.waker.wake(bot_id)

        await _every_update(client.watch_orders, lambda: client.orders, _order_key, take_in)


async def _every_update(
    watch: Callable[[], Awaitable[Any]],
    cached: Callable[[], Any],
    key: Callable[[dict[str, Any]], Hashable],
    take_in: Callable[[list[dict[str, Any]]], Awaitable[None]],
) -> None:
    """Hand every update a ccxt.pro watch receives to ``take_in``, once, as it comes.

    ccxt.pro resolves a watch only while one waits: an update that arrives while the last ones
    are being taken in (a database write) lands in the client's cache but wakes nobody, and
    the watch would return it only with the next update, minutes later on a quiet market. So
    after each wake-up the whole cache (``cached``: this connection's updates) is read, and
    read again until nothing in it is new, before the next watch."""
    taken: set[Hashable] = set()
    while True:
        await watch()
        while True:
            held = list(cached() or [])
            fresh = [u for u in held if key(u) not in taken]
            if not fresh:
                break
            await take_in(fresh)
            taken = {key(u) for u in held}  # what the cache no longer holds is let go


def _trade_key(trade: dict[str, Any]) -> Hashable:
    return trade.get("id")


def _order_key(order: dict[str, Any]) -> Hashable:
    """An order's update: its id and state (the cache updates an order in place)."""
    info = order.get("info") or {}
    return order.get("id"), info.get("X"), info.get("z")
