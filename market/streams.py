"""Market data over the exchange's websocket streams (ccxt.pro), for the market feed.

``StreamFeed`` runs an asyncio loop in a thread with one ccxt.pro client
(``market.exchange.stream_client``): for each pair it watches the 1-minute klines
(``watch_ohlcv``) and the ticker (``watch_ticker``, the price between candles), every stream on
one connection. The loop only listens: what it hears goes through a queue to ``next_batch``,
which the feed command calls in its own thread, and there happens everything that touches the
database, the cache, the channel layer or REST:

- a candle is closed once a later one has begun; closed candles go back to the command (stored,
  bots woken) once each and in order;
- a hole before them (a reconnect, a start after a stop) is filled over REST first
  (``fetch_ohlcv``, which spends the request budget), so no closed candle is lost;
- the latest price goes to the cache at once (``market.services.cache_price``), to the
  browsers at most twice a second per pair and to the LatestPrice row at most once a second;
- a pair whose streams have said nothing for ``STREAM_STALE_SECONDS`` is polled over REST every
  ``MARKET_FEED_POLL_SECONDS`` until they speak again, and the feed's status says so;
- the pairs of bots started later, and of pages opened later, are picked up every few seconds.

A dropped connection is dialled again after a capped exponential back-off with jitter; streams
silent for twice STREAM_STALE_SECONDS are dialled again from scratch (a half-open connection
never says it is dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from market.candles import MINUTE_MS, ClosedCandle, candle_ms, fetch_candles
from market.exchange import ExchangeError, exchange_says
from market.services import FeedStatus

logger = logging.getLogger(__name__)

BACKOFF = (1.0, 60.0)  # seconds: the first wait after a drop, and the longest
RECHECK_SECONDS = 5.0  # new pairs (bots started, pages opened) are looked for this often
SAVE_SECONDS = 1.0  # a pair's LatestPrice row is written at most this often
# A pair's price between candles reaches browsers at most this often: Binance's ticker speaks
# about once a second, and a limit at the same pace would hold a tick that comes a little early
# until the next second (up to a second late); at half that, each one goes at once.
PUSH_SECONDS = 0.5
MAX_FILL_MINUTES = 1000  # a hole is filled this far back at most (one REST page)


class Throttle:
    """At most one value per key every ``seconds``: the first at once, then the newest of those
    offered meanwhile when its time comes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last: dict[str, float] = {}
        self.waiting: dict[str, Any] = {}

    def offer(self, key: str, value: Any) -> None:
        self.waiting[key] = value

    def due(self, now: float) -> list[tuple[str, Any]]:
        out = []
        for key, value in list(self.waiting.items()):
            if now - self.last.get(key, float("-inf")) >= self.seconds:
                out.append((key, value))
                self.last[key] = now
                del self.waiting[key]
        return out

    def next_at(self) -> float | None:
        """When the next waiting value is due (monotonic), if any waits."""
        times = [self.last.get(k, float("-inf")) + self.seconds for k in self.waiting]
        return min(times) if times else None


@dataclass
class _Pair:
    # monotonic time of the last message of each of its streams (or of its subscription)
    heard: dict[str, float]
    problem: str = ""  # the stream's last error, in words
    down_since: datetime | None = None  # on REST since then
    reason: str = ""
    forming: list[Any] | None = None  # the candle still open: [time_ms, o, h, l, c, v]


class StreamFeed:
    """Closed candles and the price between them from the exchange's websocket streams, with
    REST for the holes and for pairs whose stream is down. See the module docstring."""

    replayed = False
    ticks = True

    def __init__(
        self,
        exchange: str,
        symbols: list[str],
        *,
        stale_seconds: float | None = None,
        poll_seconds: float | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
        backoff: tuple[float, float] = BACKOFF,
        max_fill_minutes: int = MAX_FILL_MINUTES,
        push_seconds: float = PUSH_SECONDS,
        wanted: Callable[[], Iterable[tuple[str, str]]] = list,
    ) -> None:
        self.exchange = exchange
        self.wanted = wanted  # the markets someone needs now (market.feed.wanted_symbols)
        stale = settings.STREAM_STALE_SECONDS if stale_seconds is None else stale_seconds
        poll = settings.MARKET_FEED_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.stale_seconds = float(stale)
        self.poll_seconds = float(poll)
        self.recheck_seconds = recheck_seconds
        self.backoff = backoff
        self.max_fill_minutes = max_fill_minutes
        self._first = list(dict.fromkeys(symbols))
        self.symbols: list[str] = []  # streamed; only ever appended to (the loop reads it)
        self._pairs: dict[str, _Pair] = {}
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._last: dict[str, int] = {}  # per pair, the newest closed candle handed over (ms)
        self._pending: dict[str, dict[int, ClosedCandle]] = {}
        self._retry_at: dict[str, float] = {}  # a failed fill is tried again then (monotonic)
        self._tick_ms: dict[str, int] = {}  # per pair, the time of its latest price (ms)
        self._saves = Throttle(SAVE_SECONDS)
        self._pushes = Throttle(push_seconds)
        self._rest: Any = None
        self._next_poll = 0.0
        self._next_recheck = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the feed's face ---------------------------------------------------------------------

    def describe(self) -> str:
        return f"streaming {self.exchange} over websockets ({', '.join(self._first) or 'nothing'})"

    def start(self) -> StreamFeed:
        if self._thread is None:
            self._add(self._first)
            self._thread = threading.Thread(target=self._run, name="market-streams", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> StreamFeed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_batch(self, timeout: float) -> list[ClosedCandle]:
        """The candles closed since the last call (after waiting up to ``timeout`` for news);
        records and pushes the latest prices on the way."""
        self.start()
        now = time.monotonic()
        if now >= self._next_recheck:
            self._next_recheck = now + self.recheck_seconds
            self._add([s for e, s in self.wanted() if e == self.exchange])
        self._watchdog()
        wait = timeout
        for due in (self._saves.next_at(), self._pushes.next_at(), self._next_poll_at()):
            if due is not None:
                wait = min(wait, max(0.0, due - now))
        self._take(wait)
        out = self._flush()
        out += self._poll()
        self._record_prices()
        return out

    def status(self) -> FeedStatus:
        down = sorted((s, p) for s, p in self._pairs.items() if p.down_since is not None)
        if not down:
            return FeedStatus("stream", self.exchange)
        return FeedStatus(
            "rest",
            self.exchange,
            since=min(p.down_since for _, p in down if p.down_since is not None),
            reason=down[0][1].reason,
            symbols=tuple(s for s, _ in down),
            poll_seconds=self.poll_seconds,
        )

    # --- pairs -------------------------------------------------------------------------------

    def _add(self, symbols: list[str]) -> None:
        """Stream these pairs too; each continues after its newest stored candle."""
        from market.models import Candle

        for symbol in symbols:
            if symbol in self._pairs:
                continue
            newest = (
                Candle.objects.for_series(self.exchange, symbol)
                .order_by("-open_time")
                .values_list("open_time", flat=True)
                .first()
            )
            if newest is not None:
                self._last[symbol] = int(newest.timestamp() * 1000)
            now = time.monotonic()
            self._pairs[symbol] = _Pair(heard={"candles": now, "prices": now})
            self.symbols.append(symbol)
            logger.info("market feed: streaming %s %s", self.exchange, symbol)

    def _watchdog(self) -> None:
        """Pairs silent for ``stale_seconds`` go over to REST; back when their stream speaks."""
        now = time.monotonic()
        for symbol, pair in self._pairs.items():
            quiet = now - min(pair.heard.values()) > self.stale_seconds
            if quiet and pair.down_since is None:
                pair.down_since = timezone.now()
                pair.reason = pair.problem or f"no message for {self.stale_seconds:g} s"
                self._next_poll = 0.0
                logger.warning(
                    "market feed: the %s stream is down (%s): polling REST every %g s",
                    symbol, pair.reason, self.poll_seconds,
                )  # fmt: skip
            elif not quiet and pair.down_since is not None:
                pair.down_since, pair.reason = None, ""
                logger.info("market feed: the %s stream is back", symbol)

    # --- what the loop heard -------------------------------------------------------------------

    def _take(self, wait: float) -> None:
        """Handle what the loop has put in the queue, waiting up to ``wait`` for the first."""
        try:
            event = self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind, symbol, *rest = event
        pair = self._pairs[symbol]
        if kind == "price":
            price, at_ms = rest
            self._tick(symbol, price, at_ms)
            return
        closed, forming = rest
        pair.forming = forming
        last = self._last.get(symbol)
        pending = self._pending.setdefault(symbol, {})
        for row in closed:
            if last is None or row[0] > last:
                pending[row[0]] = self._candle(symbol, row)
        if not pending:
            del self._pending[symbol]

    def _candle(self, symbol: str, row: list[Any]) -> ClosedCandle:
        ts, o, h, low, c, v = row[:6]
        return ClosedCandle(
            self.exchange, symbol, datetime.fromtimestamp(ts / 1000, UTC),
            *(Decimal(str(x)) for x in (o, h, low, c, v or 0)),
        )  # fmt: skip

    # --- candles -------------------------------------------------------------------------------

    def _flush(self) -> list[ClosedCandle]:
        """The stream's closed candles, each hole before them filled over REST first. When REST
        fails they wait (and are tried again after ``poll_seconds``): none is skipped."""
        out: list[ClosedCandle] = []
        now = time.monotonic()
        for symbol in list(self._pending):
            if now < self._retry_at.get(symbol, 0.0):
                continue
            candles = sorted(self._pending[symbol].values(), key=candle_ms)
            try:
                out += self._emit(symbol, candles, fill=True)
            except ExchangeError as e:
                self._retry_at[symbol] = now + self.poll_seconds
                logger.warning(
                    "market feed: the candles of %s missed by the stream could not be fetched "
                    "(%s); trying again in %g s", symbol, e, self.poll_seconds,
                )  # fmt: skip
                continue
            del self._pending[symbol]
            self._retry_at.pop(symbol, None)
        return out

    def _emit(self, symbol: str, candles: list[ClosedCandle], *, fill: bool) -> list[ClosedCandle]:
        """The candles after the newest handed over, in order, with every hole before one of
        them filled over REST (``fill``)."""
        prev = self._last.get(symbol)
        out: list[ClosedCandle] = []
        for candle in candles:
            t = candle_ms(candle)
            if prev is not None and t <= prev:
                continue
            if fill and (prev is None or t > prev + MINUTE_MS):
                since = t - self.max_fill_minutes * MINUTE_MS
                if prev is not None:
                    since = max(prev + MINUTE_MS, since)
                out += self._fill(symbol, since, t)
            out.append(candle)
            prev = t
        if out:
            self._last[symbol] = candle_ms(out[-1])
        return out

    def _fill(self, symbol: str, since: int, until: int) -> list[ClosedCandle]:
        """The closed candles in [since, until) over REST."""
        out: list[ClosedCandle] = []
        while since < until:
            closed, _ = fetch_candles(
                self._client(), self.exchange, symbol, since, until_ms=until, limit=1000
            )
            if not closed:
                break
            out += closed
            since = candle_ms(closed[-1]) + MINUTE_MS
        if out:
            logger.info("market feed: %d candles of %s filled over REST", len(out), symbol)
        return out

    def _next_poll_at(self) -> float | None:
        down = any(p.down_since is not None for p in self._pairs.values())
        return self._next_poll if down else None

    def _poll(self) -> list[ClosedCandle]:
        """Pairs whose stream is down: their closed candles and price over REST."""
        down = [s for s, p in self._pairs.items() if p.down_since is not None]
        if not down or time.monotonic() < self._next_poll:
            return []
        self._next_poll = time.monotonic() + self.poll_seconds
        out: list[ClosedCandle] = []
        for symbol in down:
            last = self._last.get(symbol)
            since = last + MINUTE_MS if last is not None else None
            try:
                closed, forming = fetch_candles(self._client(), self.exchange, symbol, since)
            except ExchangeError as e:
                logger.warning("market feed: %s over REST: %s", symbol, e)
                continue
            out += self._emit(symbol, closed, fill=False)
            if forming is not None:
                t = candle_ms(forming)
                self._pairs[symbol].forming = [
                    t,
                    forming.open,
                    forming.high,
                    forming.low,
                    forming.close,
                    forming.volume,
                ]
                # The exchange does not say when the open candle last traded: no earlier than
                # it opened, nor than the price before (a saved price never goes back in time).
                self._tick(symbol, forming.close, max(t, self._tick_ms.get(symbol, t)))
        return out

    def _client(self) -> Any:
        if self._rest is None:
            from market import exchange

            self._rest = exchange.public_client(self.exchange)
        return self._rest

    # --- prices --------------------------------------------------------------------------------

    def _tick(self, symbol: str, price: Decimal, at_ms: int) -> None:
        from market.services import cache_price

        self._tick_ms[symbol] = at_ms
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
        cache_price(self.exchange, symbol, price, at)
        self._saves.offer(symbol, (price, at))
        self._pushes.offer(symbol, (price, at))

    def _record_prices(self) -> None:
        from market.push import publish_price
        from market.services import record_price

        now = time.monotonic()
        # Browsers first: the row is for a cold cache and can wait a few milliseconds.
        for symbol, (price, at) in self._pushes.due(now):
            publish_price(self.exchange, symbol, price, at, candle=self._forming(symbol, price, at))
        for symbol, (price, at) in self._saves.due(now):
            record_price(self.exchange, symbol, price, at)

    def _forming(self, symbol: str, price: Decimal, at: datetime) -> dict[str, Any] | None:
        """The candle still open, with this price in it, for the chart (None when the stream's
        candle is older than the price: the chart starts the next one itself)."""
        row = self._pairs[symbol].forming
        at_ms = int(at.timestamp() * 1000)
        if row is None or not row[0] <= at_ms < row[0] + MINUTE_MS:
            return None
        o, h, low = (Decimal(str(x)) for x in row[1:4])
        return {"time_ms": row[0], "open": o, "high": max(h, price), "low": min(low, price),
                "close": price}  # fmt: skip

    # --- the loop (its own thread) -------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            logger.exception("market feed: the stream loop stopped")

    async def _main(self) -> None:
        redial_after = 2 * self.stale_seconds
        while not self._stop.is_set():
            client = self._stream_client()
            tasks: list[asyncio.Task[None]] = []
            watched = 0
            dialled = time.monotonic()
            try:
                while not self._stop.is_set():
                    while watched < len(self.symbols):
                        symbol = self.symbols[watched]
                        watched += 1
                        tasks.append(asyncio.create_task(self._candles(client, symbol)))
                        tasks.append(asyncio.create_task(self._prices(client, symbol)))
                    await asyncio.sleep(0.1)
                    now = time.monotonic()
                    if now - dialled > redial_after and self._silence(now) > redial_after:
                        logger.warning("market feed: the streams are silent; dialling again")
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 5)

    def _stream_client(self) -> Any:
        from market import exchange

        client = exchange.stream_client(self.exchange)
        # Every market stream on one connection (Binance takes up to 1,024 streams on one), so
        # a drop is one reconnect; ccxt.pro would open a connection per subscription otherwise.
        client.options["streamLimits"] = {**(client.options.get("streamLimits") or {}), "spot": 1}
        client.options["subscriptionLimitByStream"] = {
            **(client.options.get("subscriptionLimitByStream") or {}),
            "spot": 1024,
        }
        return client

    def _silence(self, now: float) -> float:
        """How long the most silent stream of any pair has said nothing (seconds)."""
        return max((now - min(p.heard.values()) for p in self._pairs.values()), default=0.0)

    async def _candles(self, client: Any, symbol: str) -> None:
        failures = 0
        handed = 0  # the newest candle handed over as closed (ms)
        while True:
            try:
                await client.watch_ohlcv(symbol, "1m")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a drop, a refusal: wait, dial again
                self._lost(client, symbol, e, failures)
                # What came before the break may lack its candle's end: only what comes after
                # it is trusted, and REST fills the hole.
                (client.ohlcvs.get(symbol) or {}).pop("1m", None)
                await asyncio.sleep(self._backoff(failures))
                failures += 1
                continue
            failures = 0
            self._heard(symbol, "candles")
            rows = [list(r) for r in client.ohlcvs[symbol]["1m"]]
            # A candle is closed once a later one has begun.
            closed = [r for r in rows[:-1] if r[0] > handed]
            if closed:
                handed = closed[-1][0]
            self._events.put(("candles", symbol, closed, rows[-1]))

    async def _prices(self, client: Any, symbol: str) -> None:
        failures = 0
        while True:
            try:
                ticker = await client.watch_ticker(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a drop, a refusal: wait, dial again
                self._lost(client, symbol, e, failures)
                await asyncio.sleep(self._backoff(failures))
                failures += 1
                continue
            failures = 0
            self._heard(symbol, "prices")
            last = ticker.get("last") or ticker.get("close")
            if last:
                at = ticker.get("timestamp") or client.milliseconds()
                self._events.put(("price", symbol, Decimal(str(last)), int(at)))

    def _heard(self, symbol: str, stream: str) -> None:
        pair = self._pairs[symbol]
        pair.heard[stream] = time.monotonic()
        pair.problem = ""

    def _lost(self, client: Any, symbol: str, error: BaseException, failures: int) -> None:
        words = exchange_says(error, exchange_id=self.exchange) or type(error).__name__
        self._pairs[symbol].problem = f"stream lost: {words}"[:200]
        if failures == 0:
            logger.info("market feed: the %s stream broke (%s); dialling again", symbol, words)
        # ccxt.pro forgets a broken connection only on some paths: one left behind keeps its
        # subscriptions, and a watch on it would wait forever instead of dialling again.
        for url, connection in list((getattr(client, "clients", None) or {}).items()):
            socket = getattr(connection, "connection", None)
            if getattr(connection, "error", None) or (socket is not None and socket.closed):
                del client.clients[url]

    def _backoff(self, failures: int) -> float:
        """Capped exponential, with jitter so that many clients do not dial in step."""
        first, cap = self.backoff
        return min(cap, first * 2**failures) * random.uniform(0.5, 1.0)
