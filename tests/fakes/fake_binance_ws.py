"""A local fake of Binance's spot websocket streams, fed by a ``FakeBinance`` (the REST fake).

The real ``ccxt.pro.binance`` client can be pointed at it:

    with FakeBinance(prices={"BTCUSDT": "100000"}) as fake, FakeBinanceStreams(fake) as streams:
        client = streams.pro_client()  # or streams.point(ccxt.pro.binance({...}))
        trades = await client.watch_trades("BTC/USDT")

Two kinds of connection, told apart by the path (anything under ``/ws-api`` is the second):

- Market streams (``web-socket-streams.md``): ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``
  answered as Binance does (``{"result": null, "id": N}``), raw events pushed for
  ``<symbol>@trade`` (and ``@aggTrade``, one aggregate per trade), ``@ticker`` (24hrTicker),
  ``@miniTicker``, ``@bookTicker`` and ``@kline_<interval>``. Stream names in the path
  (``/ws/btcusdt@trade``) subscribe too. The spot URL contains ``/stream`` because ccxt.pro tells
  spot from futures connections by that (``is_spot_url``), as ``wss://stream.binance.com``.
- The websocket API (``websocket-api.md``), which ccxt.pro 4.5 uses for the spot user data
  stream instead of a listenKey: ``userDataStream.subscribe.signature`` (HMAC-SHA256 with the
  fake's api key and secret), then ``{"subscriptionId": 0, "event": {...}}`` frames carrying
  ``executionReport`` (order placed, traded, canceled, expired) and ``outboundAccountPosition``
  (balances after a change). ``ping``, ``time`` and ``userDataStream.unsubscribe`` answer too.

Where the events come from: a poller on the server's loop (every ``poll_seconds``, 20 ms) reads
the REST fake under its lock: new entries of ``fake.trades`` become trade events, kline updates
and (for the account's orders) TRADE execution reports; new orders and status changes of
``fake.orders()`` become NEW/CANCELED/EXPIRED execution reports; balance changes become
``outboundAccountPosition``. Price moves are caught exactly, even each step of a ``walk``, by
wrapping ``set_price`` on the fake *instance* (the class and its file stay untouched; ``stop``
unwraps it), and, as a fallback, by comparing ``fake.prices`` each poll.

Simplifications, all deliberate:

- The market is the fake's price: every price move is a tick that moves the current kline's
  high/low/close (with no volume) and pushes a ticker; volume and trade counts come from the
  account's own trades, the only trades the fake makes. Public trade events are those trades.
- Klines follow the fake's clock (``clock=``): once it passes a candle's end the candle is pushed
  closed (``"x": true``) and the next one opened flat at the last close (at most 100 empty
  candles are pushed for a long jump; the rest are skipped). The current candle and the ticker
  are pushed right after a subscription when a price is known; afterwards only on changes
  (Binance pushes every 1-2 s).
- The 24hr ticker's window is "since the streams started" (open/high/low/volume).
- No order book streams (``@depth``), no combined-stream wrapper (``/stream?streams=``).

REST candles: the REST fake's ``/klines`` answers the same 1-minute candles the kline streams
push (on Binance they are one series), kept in ``fake.candles`` as the price moves and the clock
turns, the candle still open last, as Binance lists it. So a client that lost its stream can
fetch what it missed, also while the streams are paused or dropped. Gaps of the clock are filled
with empty candles (at most ``MAX_HISTORY_GAP`` of them; the rest are skipped).

Test hooks: ``drop()`` aborts every connection (no close frame, like a lost network) so the
client must reconnect; ``offline()`` drops them and refuses new ones (each is aborted on
arrival, as when the network is down) until ``online()``, while the REST fake and the market
go on; ``pause(seconds)`` stalls the server: no events are pushed and incoming
requests are left unanswered until it resumes (``resume()`` ends it early); what happened in the
meantime is pushed afterwards.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.server import Server, ServerConnection, serve

from tests.fakes.fake_binance import INTERVAL_MS, FakeBinance, Order, Trade, fmt

SPOT_PATH = "/stream/ws"  # "/stream" in it: ccxt.pro's is_spot_url looks for it
WS_API_PATH = "/ws-api/v3"
MAX_EMPTY_CANDLES = 100
MAX_HISTORY_GAP = 1440  # empty 1-minute candles written to the REST history for one jump
MINUTE = INTERVAL_MS["1m"]
ZERO = Decimal(0)


@dataclass
class _Kline:
    symbol: str
    interval: str
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    quote: Decimal = ZERO
    taker_base: Decimal = ZERO
    taker_quote: Decimal = ZERO
    trades: int = 0
    first_id: int = -1
    last_id: int = -1

    @property
    def end(self) -> int:
        return self.start + INTERVAL_MS[self.interval]

    def tick(self, price: Decimal) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price

    def event(self, now: int, closed: bool) -> dict[str, Any]:
        return {
            "e": "kline",
            "E": now,
            "s": self.symbol,
            "k": {
                "t": self.start,
                "T": self.end - 1,
                "s": self.symbol,
                "i": self.interval,
                "f": self.first_id,
                "L": self.last_id,
                "o": fmt(self.open),
                "c": fmt(self.close),
                "h": fmt(self.high),
                "l": fmt(self.low),
                "v": fmt(self.volume),
                "n": self.trades,
                "x": closed,
                "q": fmt(self.quote),
                "V": fmt(self.taker_base),
                "Q": fmt(self.taker_quote),
                "B": "0",
            },
        }


@dataclass
class _Day:
    """What the 24hr ticker says: since the streams started."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    open_time: int
    last_qty: Decimal = ZERO
    volume: Decimal = ZERO
    quote: Decimal = ZERO
    first_id: int = -1
    last_id: int = -1
    count: int = 0


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    api: bool  # the websocket API (user data) rather than market streams
    streams: set[str] = field(default_factory=set)
    user_data: bool = False


class FakeBinanceStreams:
    """Binance spot market streams and the spot user data stream, on ``127.0.0.1:<free port>``,
    served by an asyncio loop in a background thread. See the module docstring."""

    def __init__(self, fake: FakeBinance, *, poll_seconds: float = 0.02) -> None:
        self.fake = fake
        self.poll_seconds = poll_seconds
        self.connections_total = 0  # every connection ever accepted (reconnects show here)
        self.received: list[dict[str, Any]] = []  # every request a client sent, in order
        self.pushed: list[dict[str, Any]] = []  # every user data event sent to a listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port = 0
        self._conns: set[_Conn] = set()
        # (symbol, price, len(fake.trades) after it, the fake's time) from the wrapped set_price
        self._ticks: deque[tuple[str, Decimal, int, int]] = deque()
        self._paused_until = 0.0
        self._resumed: asyncio.Event | None = None
        self._offline = False
        # What the poller has seen of the REST fake.
        self._seen_trades = 0
        self._prices: dict[str, Decimal] = {}
        self._orders: dict[int, tuple[str, Decimal, Decimal]] = {}  # id -> (status, qty, quote)
        self._balances: dict[str, tuple[Decimal, Decimal]] = {}
        self._klines: dict[tuple[str, str], _Kline] = {}
        self._days: dict[str, _Day] = {}
        self._poller: asyncio.Task[None] | None = None
        # The REST history: each priced symbol's 1-minute candle now open, and how many of the
        # REST fake's trades it has taken in (see the module docstring, "REST candles").
        self._history: dict[str, _Kline] = {}
        self._history_trades = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBinanceStreams:
        with self.fake.lock:
            self._seen_trades = len(self.fake.trades)
            self._prices = dict(self.fake.prices)
            self._orders = {o.order_id: _order_state(o) for o in self.fake.orders()}
            self._balances = {a: (f, lk) for a, (f, lk) in self.fake.balances.items()}
            now = self.fake.now_ms()
            for symbol, price in self._prices.items():
                self._days[symbol] = _Day(price, price, price, price, now)
            self._history_trades = len(self.fake.trades)
            self._sync_history(now)
        self._wrap_set_price()
        self._wrap_klines()
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-binance-ws", daemon=True
        )
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fake websocket server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
        self._loop = None
        self._thread = None
        self._unwrap_set_price()
        with contextlib.suppress(AttributeError):
            del self.fake._klines

    def __enter__(self) -> FakeBinanceStreams:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port, "start() the streams first"
        return self._port

    @property
    def url(self) -> str:
        """The spot market-streams base URL, what ccxt.pro has as ``urls['api']['ws']['spot']``
        (it appends ``/<stream index>``)."""
        return f"ws://127.0.0.1:{self.port}{SPOT_PATH}"

    @property
    def api_url(self) -> str:
        """The websocket API URL (``urls['api']['ws']['ws-api']['spot']``)."""
        return f"ws://127.0.0.1:{self.port}{WS_API_PATH}"

    def point(self, client: Any) -> Any:
        """Point a ``ccxt.pro.binance`` client's spot websocket URLs (market streams and the
        websocket API) here, and its REST URLs at the REST fake; returns the client."""
        ws = dict(client.urls["api"]["ws"])
        ws["spot"] = self.url
        ws["margin"] = self.url
        ws["ws-api"] = {**ws.get("ws-api", {}), "spot": self.api_url}
        client.urls["api"]["ws"] = ws
        rest = f"http://127.0.0.1:{self.fake.port}"
        client.urls["api"]["public"] = self.fake.base_url
        client.urls["api"]["private"] = self.fake.base_url
        client.urls["api"]["sapi"] = f"{rest}/sapi/v1"
        return client

    def pro_client(self, *, timeout_ms: int = 3000, **options: Any) -> Any:
        """A real ``ccxt.pro.binance``, configured like ``FakeBinance.ccxt_client`` (spot only),
        pointed here. Create it inside the event loop that uses it, and ``await
        client.close()``."""
        import ccxt.pro

        client = ccxt.pro.binance(
            {
                "apiKey": self.fake.api_key,
                "secret": self.fake.secret,
                "timeout": timeout_ms,
                "enableRateLimit": False,
                "options": {
                    "defaultType": "spot",
                    "fetchMarkets": {"types": ["spot"]},
                    "fetchCurrencies": False,
                    "fetchMargins": False,
                    "adjustForTimeDifference": False,
                    **options,
                },
            }
        )
        return self.point(client)

    # ------------------------------------------------------------------ test hooks

    def drop(self) -> None:
        """Abort every open connection, with no close frame, like a lost network."""
        self._call(self._drop)

    def offline(self) -> None:
        """Drop every connection and refuse new ones until ``online()`` (the network is down;
        the REST fake, the market and the clock go on)."""
        self._call(self._go_offline, True)

    def online(self) -> None:
        """Accept connections again after ``offline()``."""
        self._call(self._go_offline, False)

    def pause(self, seconds: float) -> None:
        """Stall the server for ``seconds``: push nothing, answer nothing. Returns at once."""
        self._call(self._pause, seconds)

    def resume(self) -> None:
        """End a ``pause`` early."""
        self._call(self._pause, 0)

    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._conns)

    def subscriptions(self) -> set[str]:
        """Every stream some open connection is subscribed to."""
        return {s for c in list(self._conns) for s in c.streams}

    def user_data_listeners(self) -> int:
        """How many open websocket-API connections have subscribed to the user data stream."""
        return sum(1 for c in list(self._conns) if c.api and c.user_data)

    def wait_for(self, predicate: Any, timeout: float = 3.0) -> None:
        """Block (a test thread) until ``predicate()`` holds; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(0.01)

    # ------------------------------------------------------------------ server thread

    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None, "start() the streams first"

        async def run() -> None:
            fn(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)

        async def boot() -> None:
            self._resumed = asyncio.Event()
            self._resumed.set()
            self._server = await serve(self._serve, "127.0.0.1", 0, ping_interval=None)
            self._port = self._server.sockets[0].getsockname()[1]  # type: ignore[index]
            self._poller = asyncio.create_task(self._poll_forever())

        self._loop.run_until_complete(boot())
        ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._drop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _drop(self) -> None:
        for conn in list(self._conns):
            transport = conn.ws.transport
            if transport is not None:
                transport.abort()
        self._conns.clear()

    def _go_offline(self, offline: bool) -> None:
        self._offline = offline
        if offline:
            self._drop()

    def _pause(self, seconds: float) -> None:
        assert self._resumed is not None
        if seconds <= 0:
            self._paused_until = 0.0
            self._resumed.set()
            return
        self._paused_until = time.monotonic() + seconds
        self._resumed.clear()
        assert self._loop is not None
        self._loop.call_later(seconds, self._end_pause)

    def _end_pause(self) -> None:
        assert self._resumed is not None
        if time.monotonic() >= self._paused_until - 0.001:
            self._paused_until = 0.0
            self._resumed.set()

    async def _serve(self, ws: ServerConnection) -> None:
        if self._offline:
            if ws.transport is not None:
                ws.transport.abort()
            return
        path = ws.request.path if ws.request is not None else "/"
        conn = _Conn(ws, api=path.startswith("/ws-api"))
        self.connections_total += 1
        self._conns.add(conn)
        if not conn.api:
            # /ws/<stream>/<stream>: the path subscribes too, as on Binance
            named = [p for p in path.split("?")[0].split("/") if "@" in p]
            if named:
                await self._subscribe(conn, named)
        try:
            async for raw in ws:
                assert self._resumed is not None
                await self._resumed.wait()
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = None
                if not isinstance(request, dict):
                    await self._send(conn, _invalid(None, "Invalid JSON"))
                    continue
                self.received.append(request)
                if conn.api:
                    await self._api_request(conn, request)
                else:
                    await self._stream_request(conn, request)
        except Exception:  # noqa: BLE001 - a dropped connection ends here
            pass
        finally:
            self._conns.discard(conn)

    async def _send(self, conn: _Conn, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.send(json.dumps(payload))

    # ------------------------------------------------------------------ market streams

    async def _stream_request(self, conn: _Conn, request: dict[str, Any]) -> None:
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                await self._send(conn, _invalid(rid, "Invalid request: params"))
                return
            if method == "UNSUBSCRIBE":
                conn.streams.difference_update(params)
                await self._send(conn, {"result": None, "id": rid})
                return
            await self._send(conn, {"result": None, "id": rid})
            await self._subscribe(conn, params)
        elif method == "LIST_SUBSCRIPTIONS":
            await self._send(conn, {"result": sorted(conn.streams), "id": rid})
        elif method == "SET_PROPERTY" or method == "GET_PROPERTY":
            await self._send(conn, {"result": None, "id": rid})
        else:
            await self._send(conn, _invalid(rid, f"Invalid request: unknown variant `{method}`"))

    async def _subscribe(self, conn: _Conn, streams: list[str]) -> None:
        """Add the streams and push what Binance would soon push anyway: the ticker and the
        current kline (when the symbol has a price)."""
        conn.streams.update(streams)
        now = self.fake.now_ms()
        for stream in streams:
            name, _, kind = stream.partition("@")
            symbol = name.upper()
            if symbol not in self._prices:
                continue
            if kind.startswith("kline_"):
                kline = self._kline(symbol, kind[len("kline_") :], now)
                if kline is not None:
                    await self._send(conn, kline.event(now, closed=False))
            elif kind in ("ticker", "miniTicker", "bookTicker"):
                await self._send(conn, self._ticker_event(symbol, kind, now))

    def _kline(self, symbol: str, interval: str, now: int) -> _Kline | None:
        if interval not in INTERVAL_MS:
            return None
        key = (symbol, interval)
        if key not in self._klines:
            price = self._prices[symbol]
            step = INTERVAL_MS[interval]
            self._klines[key] = _Kline(
                symbol, interval, now - now % step, price, price, price, price
            )
        return self._klines[key]

    async def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        for conn in list(self._conns):
            if not conn.api and stream in conn.streams:
                await self._send(conn, payload)

    def _ticker_event(self, symbol: str, kind: str, now: int) -> dict[str, Any]:
        price = self._prices[symbol]
        day = self._days.setdefault(symbol, _Day(price, price, price, price, now))
        if kind == "bookTicker":
            tick = self._tick_size(symbol)
            return {
                "u": self._seen_trades,
                "s": symbol,
                "b": fmt(price - tick),
                "B": fmt(Decimal(1)),
                "a": fmt(price + tick),
                "A": fmt(Decimal(1)),
            }
        mini = {
            "e": "24hrMiniTicker" if kind == "miniTicker" else "24hrTicker",
            "E": now,
            "s": symbol,
            "c": fmt(day.close),
            "o": fmt(day.open),
            "h": fmt(day.high),
            "l": fmt(day.low),
            "v": fmt(day.volume),
            "q": fmt(day.quote),
        }
        if kind == "miniTicker":
            return mini
        change = day.close - day.open
        percent = change / day.open * 100 if day.open else ZERO
        tick = self._tick_size(symbol)
        return {
            **mini,
            "p": fmt(change),
            "P": f"{percent.quantize(Decimal('0.001')):f}",
            "w": fmt(day.quote / day.volume if day.volume else day.close),
            "x": fmt(day.open),
            "Q": fmt(day.last_qty),
            "b": fmt(day.close - tick),
            "B": fmt(Decimal(1)),
            "a": fmt(day.close + tick),
            "A": fmt(Decimal(1)),
            "O": day.open_time,
            "C": now,
            "F": day.first_id,
            "L": day.last_id,
            "n": day.count,
        }

    def _tick_size(self, symbol: str) -> Decimal:
        sym = self.fake.symbols.get(symbol)
        if sym is None or "PRICE_FILTER" not in sym.filters:
            return Decimal("0.01")
        return Decimal(sym.filters["PRICE_FILTER"]["tickSize"])

    # ------------------------------------------------------------------ the poller

    def _wrap_set_price(self) -> None:
        fake = self.fake
        original = type(fake).set_price

        def set_price(symbol: str, price: str | Decimal) -> list[Trade]:
            with fake.lock:
                trades = original(fake, symbol, price)
                # the fills happen on the way to the new price: they come first
                self._ticks.append((symbol, Decimal(price), len(fake.trades), fake.now_ms()))
                self._sync_history(fake.now_ms(), tick=(symbol, Decimal(price)))
                return trades

        fake.set_price = set_price  # type: ignore[method-assign]

    def _unwrap_set_price(self) -> None:
        with contextlib.suppress(AttributeError):
            del self.fake.set_price

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            assert self._resumed is not None
            await self._resumed.wait()
            try:
                await self._poll()
            except Exception:  # noqa: BLE001 - never let one bad poll end the streams
                import traceback

                traceback.print_exc()

    # ------------------------------------------------------------------ the REST history

    def _wrap_klines(self) -> None:
        fake = self.fake
        original = fake._klines

        def klines(p: dict[str, str]) -> list[list[Any]]:
            with fake.lock:
                self._sync_history(fake.now_ms())
                return original(p)

        fake._klines = klines  # type: ignore[method-assign]

    def _sync_history(self, now: int, tick: tuple[str, Decimal] | None = None) -> None:
        """Bring the REST history up to ``now`` (under the fake's lock): the trades made since
        the last call, then ``tick`` (a price set), then the clock's turn for every symbol."""
        fake = self.fake
        for trade in fake.trades[self._history_trades :]:
            kline = self._history_kline(trade.symbol, max(now, trade.time))
            if kline is None:
                continue
            kline.tick(trade.price)
            kline.volume += trade.qty
            kline.quote += trade.qty * trade.price
            if trade.is_buyer != trade.is_maker:  # the taker bought
                kline.taker_base += trade.qty
                kline.taker_quote += trade.qty * trade.price
            kline.trades += 1
            kline.first_id = trade.trade_id if kline.first_id < 0 else kline.first_id
            kline.last_id = trade.trade_id
            self._write_history(kline)
        self._history_trades = len(fake.trades)
        if tick is not None:
            kline = self._history_kline(tick[0], now)
            if kline is not None:
                kline.tick(tick[1])
                self._write_history(kline)
        for symbol in list(fake.prices):
            self._history_kline(symbol, now)

    def _history_kline(self, symbol: str, now: int) -> _Kline | None:
        """The symbol's REST candle open at ``now``, the ones before it closed and written."""
        kline = self._history.get(symbol)
        if kline is None:
            price = self.fake.prices.get(symbol)
            if price is None:
                return None
            kline = _Kline(symbol, "1m", now - now % MINUTE, price, price, price, price)
            self._history[symbol] = kline
            self._write_history(kline)
            return kline
        empty = 0
        while now >= kline.end:
            close = kline.close
            kline.start = kline.end if empty < MAX_HISTORY_GAP else now - now % MINUTE
            kline.open = kline.high = kline.low = close
            kline.volume = kline.quote = kline.taker_base = kline.taker_quote = ZERO
            kline.trades, kline.first_id, kline.last_id = 0, -1, -1
            self._write_history(kline)
            empty += 1
        return kline

    def _write_history(self, kline: _Kline) -> None:
        """Put the candle's state now in ``fake.candles``, as ``/klines`` lists it."""
        row = [
            kline.start, fmt(kline.open), fmt(kline.high), fmt(kline.low), fmt(kline.close),
            fmt(kline.volume), kline.end - 1, fmt(kline.quote), kline.trades,
            fmt(kline.taker_base), fmt(kline.taker_quote), "0",
        ]  # fmt: skip
        rows = self.fake.candles.setdefault((kline.symbol, "1m"), [])
        if not rows or rows[-1][0] < kline.start:
            rows.append(row)
            return
        i = bisect.bisect_left([r[0] for r in rows], kline.start)
        if i < len(rows) and rows[i][0] == kline.start:
            rows[i] = row
        else:
            rows.insert(i, row)

    # ------------------------------------------------------------------ the poller (market)

    async def _poll(self) -> None:
        fake = self.fake
        with fake.lock:
            now = fake.now_ms()
            self._sync_history(now)
            ticks = []
            while self._ticks:
                ticks.append(self._ticks.popleft())
            first = self._seen_trades
            new_trades = list(fake.trades[first:])
            self._seen_trades = len(fake.trades)
            prices = dict(fake.prices)
            # An order told of in its final state never changes again: not copied every poll.
            order_copies = {
                o.order_id: _copy_order(o)
                for o in fake.orders()
                if o.status not in FINAL
                or o.order_id not in self._orders
                or self._orders[o.order_id][0] != o.status
            }
            balances = {a: (f, lk) for a, (f, lk) in fake.balances.items()}
        # Price moves made without set_price (fake.prices written directly).
        for symbol, price in prices.items():
            last = next((t[1] for t in reversed(ticks) if t[0] == symbol), self._prices.get(symbol))
            if last != price:
                ticks.append((symbol, price, first + len(new_trades), now))
        # In the order they happened, each at its own time (the candle it belongs to): each
        # set_price's fills, then its price.
        done = first
        for symbol, price, trades_end, at in ticks:
            for trade in new_trades[done - first : max(done, trades_end) - first]:
                await self._on_trade(trade, min(now, trade.time))
            done = max(done, trades_end)
            await self._on_tick(symbol, price, at)
        for trade in new_trades[done - first :]:
            await self._on_trade(trade, min(now, trade.time))
        await self._roll_klines(now)
        await self._user_events(order_copies, new_trades, balances, now)

    def _ensure_klines(self, symbol: str, now: int) -> None:
        """Start the candles of streams subscribed before the symbol had a price."""
        prefix = f"{symbol.lower()}@kline_"
        for stream in self.subscriptions():
            if stream.startswith(prefix):
                self._kline(symbol, stream[len(prefix) :], now)

    async def _on_tick(self, symbol: str, price: Decimal, now: int) -> None:
        self._prices[symbol] = price
        self._ensure_klines(symbol, now)
        day = self._days.setdefault(symbol, _Day(price, price, price, price, now))
        day.high, day.low, day.close = max(day.high, price), min(day.low, price), price
        for (sym, _), kline in list(self._klines.items()):
            if sym == symbol:
                await self._roll(kline, now)
                kline.tick(price)
                await self._publish(_kline_stream(kline), kline.event(now, closed=False))
        await self._push_tickers(symbol, now)

    async def _push_tickers(self, symbol: str, now: int) -> None:
        lower = symbol.lower()
        for kind in ("ticker", "miniTicker", "bookTicker"):
            stream = f"{lower}@{kind}"
            if any(stream in c.streams for c in self._conns):
                await self._publish(stream, self._ticker_event(symbol, kind, now))

    async def _on_trade(self, trade: Trade, now: int) -> None:
        symbol = trade.symbol
        lower = symbol.lower()
        buyer_is_maker = trade.is_buyer == trade.is_maker
        await self._publish(
            f"{lower}@trade",
            {
                "e": "trade",
                "E": now,
                "s": symbol,
                "t": trade.trade_id,
                "p": fmt(trade.price),
                "q": fmt(trade.qty),
                "T": trade.time,
                "m": buyer_is_maker,
                "M": True,
            },
        )
        await self._publish(
            f"{lower}@aggTrade",
            {
                "e": "aggTrade",
                "E": now,
                "s": symbol,
                "a": trade.trade_id,
                "p": fmt(trade.price),
                "q": fmt(trade.qty),
                "f": trade.trade_id,
                "l": trade.trade_id,
                "T": trade.time,
                "m": buyer_is_maker,
                "M": True,
            },
        )
        price = self._prices.get(symbol, trade.price)
        self._prices.setdefault(symbol, price)
        self._ensure_klines(symbol, now)
        day = self._days.setdefault(symbol, _Day(price, price, price, price, now))
        day.high, day.low = max(day.high, trade.price), min(day.low, trade.price)
        day.close = trade.price
        day.last_qty = trade.qty
        day.volume += trade.qty
        day.quote += trade.qty * trade.price
        day.first_id = trade.trade_id if day.first_id < 0 else day.first_id
        day.last_id = trade.trade_id
        day.count += 1
        taker_buys = not buyer_is_maker
        for (sym, _), kline in list(self._klines.items()):
            if sym != symbol:
                continue
            await self._roll(kline, now)
            kline.tick(trade.price)
            kline.volume += trade.qty
            kline.quote += trade.qty * trade.price
            if taker_buys:
                kline.taker_base += trade.qty
                kline.taker_quote += trade.qty * trade.price
            kline.trades += 1
            kline.first_id = trade.trade_id if kline.first_id < 0 else kline.first_id
            kline.last_id = trade.trade_id
            await self._publish(_kline_stream(kline), kline.event(now, closed=False))
        await self._push_tickers(symbol, now)

    async def _roll_klines(self, now: int) -> None:
        for kline in list(self._klines.values()):
            if await self._roll(kline, now):
                await self._publish(_kline_stream(kline), kline.event(now, closed=False))

    async def _roll(self, kline: _Kline, now: int) -> bool:
        """Close the candle (and empty ones after it) once ``now`` is past its end; True when
        a new candle was opened."""
        if now < kline.end:
            return False
        stream = _kline_stream(kline)
        step = INTERVAL_MS[kline.interval]
        for _ in range(MAX_EMPTY_CANDLES):
            if now < kline.end:
                break
            await self._publish(stream, kline.event(now, closed=True))
            close = kline.close
            kline.start, kline.open, kline.high, kline.low = kline.end, close, close, close
            kline.volume = kline.quote = kline.taker_base = kline.taker_quote = ZERO
            kline.trades, kline.first_id, kline.last_id = 0, -1, -1
        if now >= kline.end:
            kline.start = now - now % step
        return True

    # ------------------------------------------------------------------ user data stream

    async def _api_request(self, conn: _Conn, request: dict[str, Any]) -> None:
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if method == "ping":
            await self._send(conn, _ok(rid, {}))
        elif method == "time":
            await self._send(conn, _ok(rid, {"serverTime": self.fake.now_ms()}))
        elif method == "userDataStream.subscribe.signature":
            error = self._check_signature(params)
            if error is not None:
                status, code, msg = error
                await self._send(
                    conn, {"id": rid, "status": status, "error": {"code": code, "msg": msg}}
                )
                return
            conn.user_data = True
            await self._send(conn, _ok(rid, {"subscriptionId": 0}))
        elif method == "userDataStream.unsubscribe":
            conn.user_data = False
            await self._send(conn, _ok(rid, {}))
        elif method == "session.subscriptions":
            await self._send(conn, _ok(rid, [{"subscriptionId": 0}] if conn.user_data else []))
        else:
            await self._send(
                conn,
                {
                    "id": rid,
                    "status": 400,
                    "error": {"code": -1020, "msg": "Unsupported operation."},
                },
            )

    def _check_signature(self, params: dict[str, Any]) -> tuple[int, int, str] | None:
        if not isinstance(params, dict):
            return 400, -1102, "Mandatory parameter 'apiKey' was not sent."
        for name in ("apiKey", "timestamp", "signature"):
            if name not in params:
                return 400, -1102, f"Mandatory parameter '{name}' was not sent."
        if params["apiKey"] != self.fake.api_key:
            return 401, -2015, "Invalid API-key, IP, or permissions for action."
        unsigned = {k: v for k, v in sorted(params.items()) if k != "signature"}
        payload = urlencode({k: str(v) for k, v in unsigned.items()}, safe="")
        expected = hmac.new(self.fake.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        # ccxt signs the unquoted form; accept either
        raw = "&".join(f"{k}={v}" for k, v in unsigned.items())
        raw_expected = hmac.new(self.fake.secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
        if params["signature"] not in (expected, raw_expected):
            return 400, -1022, "Signature for this request is not valid."
        recv_window = int(params.get("recvWindow", 5000))
        now = int(time.time() * 1000) + self.fake.clock_skew_ms
        if int(params["timestamp"]) > now + 1000 or now - int(params["timestamp"]) > recv_window:
            return 400, -1021, "Timestamp for this request is outside of the recvWindow."
        return None

    async def _user_events(
        self,
        orders: dict[int, Order],
        new_trades: list[Trade],
        balances: dict[str, tuple[Decimal, Decimal]],
        now: int,
    ) -> None:
        events: list[dict[str, Any]] = []
        trades_by_order: dict[int, list[Trade]] = {}
        for trade in new_trades:
            trades_by_order.setdefault(trade.order_id, []).append(trade)
        # New orders first (NEW), then fills in order (TRADE), then ends (CANCELED/EXPIRED).
        for order_id, order in orders.items():
            if order_id in self._orders:
                continue
            done = trades_by_order.get(order_id, [])
            executed = order.executed - sum((t.qty for t in done), ZERO)
            quote = order.quote - sum((t.qty * t.price for t in done), ZERO)
            self._orders[order_id] = ("NEW", executed, quote)
            events.append(_execution_report(order, "NEW", "NEW", executed, quote, now))
        for trade in new_trades:
            order = orders.get(trade.order_id)
            if order is None:
                continue
            _, executed, quote = self._orders[order.order_id]
            executed += trade.qty
            quote += trade.qty * trade.price
            status = "FILLED" if executed >= order.qty else "PARTIALLY_FILLED"
            self._orders[order.order_id] = (status, executed, quote)
            events.append(
                _execution_report(order, "TRADE", status, executed, quote, now, trade=trade)
            )
        for order_id, order in orders.items():
            status, executed, quote = self._orders[order_id]
            if order.status != status and order.status not in ("NEW", "PARTIALLY_FILLED", "FILLED"):
                kind = "EXPIRED" if order.status.startswith("EXPIRED") else order.status
                self._orders[order_id] = (order.status, executed, quote)
                events.append(_execution_report(order, kind, order.status, executed, quote, now))
        changed = [
            {"a": a, "f": fmt(f), "l": fmt(lk)}
            for a, (f, lk) in sorted(balances.items())
            if self._balances.get(a) != (f, lk)
        ]
        self._balances = balances
        if changed:
            events.append({"e": "outboundAccountPosition", "E": now, "u": now, "B": changed})
        if not events:
            return
        listeners = [c for c in self._conns if c.api and c.user_data]
        for event in events:
            if listeners:
                self.pushed.append(event)
            for conn in listeners:
                await self._send(conn, {"subscriptionId": 0, "event": event})


# The states an order never leaves.
FINAL = {"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"}


def _order_state(order: Order) -> tuple[str, Decimal, Decimal]:
    return order.status, order.executed, order.quote


def _copy_order(order: Order) -> Order:
    return Order(**{k: getattr(order, k) for k in Order.__dataclass_fields__})


def _kline_stream(kline: _Kline) -> str:
    return f"{kline.symbol.lower()}@kline_{kline.interval}"


def _ok(rid: Any, result: Any) -> dict[str, Any]:
    return {"id": rid, "status": 200, "result": result, "rateLimits": []}


def _invalid(rid: Any, msg: str) -> dict[str, Any]:
    return {"error": {"code": 2, "msg": msg}, "id": rid}


def _execution_report(
    order: Order,
    kind: str,
    status: str,
    executed: Decimal,
    quote: Decimal,
    now: int,
    *,
    trade: Trade | None = None,
) -> dict[str, Any]:
    """Binance's spot ``executionReport`` (user-data-stream.md, "Order Update")."""
    canceled = kind == "CANCELED"
    return {
        "e": "executionReport",
        "E": now,
        "s": order.symbol,
        # a cancel carries the cancel request's id in c and the order's own in C
        "c": f"cancel{order.order_id}" if canceled else order.client_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": fmt(order.qty),
        "p": fmt(order.price),
        "P": fmt(ZERO),
        "F": fmt(ZERO),
        "g": -1,
        "C": order.client_id if canceled else "",
        "x": kind,
        "X": status,
        "r": "NONE",
        "i": order.order_id,
        "l": fmt(trade.qty if trade else ZERO),
        "z": fmt(executed),
        "L": fmt(trade.price if trade else ZERO),
        "n": fmt(trade.commission) if trade else "0",
        "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else (order.update_time or order.time),
        "t": trade.trade_id if trade else -1,
        "I": 0,
        "w": status in ("NEW", "PARTIALLY_FILLED"),
        "m": trade.is_maker if trade else False,
        "M": False,
        "O": order.time,
        "Z": fmt(quote),
        "Y": fmt(trade.qty * trade.price) if trade else fmt(ZERO),
        "Q": fmt(ZERO),
        "W": order.time,
        "V": "NONE",
    }
