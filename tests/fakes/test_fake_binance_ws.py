"""The websocket fake driven by the real ccxt.pro binance client, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import ccxt
import pytest

from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_binance_ws import FakeBinanceStreams

T = TypeVar("T")
START = 1_700_000_040_000  # a minute boundary (epoch ms)
TIMEOUT = 3.0


class Clock:
    def __init__(self, ms: int = START) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeBinance]:
    with FakeBinance(
        balances={"USDT": "10000", "BTC": "1"}, prices={"BTCUSDT": "100000"}, clock=clock
    ) as f:
        yield f


@pytest.fixture
def streams(fake: FakeBinance) -> Iterator[FakeBinanceStreams]:
    with FakeBinanceStreams(fake) as s:
        yield s


async def within(aw: Awaitable[T], seconds: float = TIMEOUT) -> T:
    return await asyncio.wait_for(aw, seconds)


async def until(predicate: Callable[[], bool], seconds: float = TIMEOUT) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await within(wait(), seconds)


async def subscribed(streams: FakeBinanceStreams, stream: str) -> None:
    await until(lambda: stream in streams.subscriptions())


async def test_watch_trades_sees_a_fill_made_by_set_price(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        order = await within(client.create_order("BTC/USDT", "limit", "buy", 0.001, 99000))
        watching = asyncio.ensure_future(client.watch_trades("BTC/USDT"))
        await subscribed(streams, "btcusdt@trade")
        fake.walk("BTCUSDT", ["99500", "98900"])
        trades = await within(watching)
        assert len(trades) == 1
        trade = trades[0]
        assert trade["symbol"] == "BTC/USDT"
        assert trade["price"] == 99000
        assert trade["amount"] == 0.001
        assert trade["id"] == str(fake.trades[0].trade_id)
        assert trade["timestamp"] == fake.trades[0].time
        assert trade["side"] == "sell"  # the taker's side: the buyer was the maker, "m": true
        assert fake.orders()[0].order_id == int(order["id"])
    finally:
        await client.close()


async def test_watch_ticker_follows_the_price(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        # ccxt.pro 4.5's watch_ticker subscribes to the mini ticker unless told "ticker"
        ticker = await within(client.watch_ticker("BTC/USDT"))  # pushed on subscription
        assert "btcusdt@miniTicker" in streams.subscriptions()
        assert ticker["last"] == 100000
        full = await within(client.watch_ticker("BTC/USDT", {"name": "ticker"}))
        assert "btcusdt@ticker" in streams.subscriptions()
        assert full["bid"] < 100000 < full["ask"]
        fake.set_price("BTCUSDT", "101000")
        await until(lambda: client.tickers["BTC/USDT"]["last"] == 101000)
        ticker = client.tickers["BTC/USDT"]
        assert ticker["symbol"] == "BTC/USDT"
        assert ticker["open"] == 100000
        assert ticker["high"] == 101000
        assert ticker["percentage"] == 1.0
    finally:
        await client.close()


async def test_watch_ohlcv_sees_a_closed_candle_once_the_clock_passes_the_minute(
    fake: FakeBinance, streams: FakeBinanceStreams, clock: Clock
) -> None:
    client = streams.pro_client()
    try:
        closed: list[dict[str, Any]] = []
        original = client.handle_message

        def on_message(client_: Any, message: Any) -> None:
            if isinstance(message, dict) and message.get("e") == "kline" and message["k"]["x"]:
                closed.append(message["k"])
            original(client_, message)

        client.handle_message = on_message  # before the connection binds it
        await within(client.create_order("BTC/USDT", "limit", "sell", 0.002, 100500))
        candles = await within(client.watch_ohlcv("BTC/USDT", "1m"))  # the open candle
        assert candles[-1] == [START, 100000, 100000, 100000, 100000, 0]
        clock.ms += 10_000
        fake.walk("BTCUSDT", ["100600", "99800"])  # the sell fills at 100500
        await until(lambda: client.ohlcvs["BTC/USDT"]["1m"][-1][5] > 0)
        clock.ms = START + 60_000 + 5  # past the minute
        await until(lambda: closed)
        assert closed[0]["t"] == START and closed[0]["T"] == START + 59_999
        assert closed[0]["n"] == 1 and closed[0]["v"] == "0.00200000"
        await until(lambda: client.ohlcvs["BTC/USDT"]["1m"][-1][0] == START + 60_000)
        candles = client.ohlcvs["BTC/USDT"]["1m"]
        first = next(c for c in candles if c[0] == START)
        assert first == [START, 100000, 100600, 99800, 99800, 0.002]
        assert candles[-1] == [START + 60_000, 99800, 99800, 99800, 99800, 0]
    finally:
        await client.close()


async def test_client_reconnects_after_drop_and_keeps_receiving(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        for price in ("99000", "98000"):
            await within(client.create_order("BTC/USDT", "limit", "buy", 0.001, float(price)))
        watching = asyncio.ensure_future(client.watch_trades("BTC/USDT"))
        await subscribed(streams, "btcusdt@trade")
        fake.set_price("BTCUSDT", "99000")
        assert [t["price"] for t in await within(watching)] == [99000]
        assert streams.connections_total == 1

        pending = asyncio.ensure_future(client.watch_trades("BTC/USDT"))
        await asyncio.sleep(0.05)
        streams.drop()
        with pytest.raises(ccxt.NetworkError):
            await within(pending)

        watching = asyncio.ensure_future(client.watch_trades("BTC/USDT"))  # dials again
        await subscribed(streams, "btcusdt@trade")
        assert streams.connections_total == 2
        fake.set_price("BTCUSDT", "98000")
        trades = await within(watching)
        assert trades[-1]["price"] == 98000
    finally:
        await client.close()


async def test_pause_holds_events_back_until_it_ends(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        await within(client.watch_ticker("BTC/USDT"))
        streams.pause(0.3)
        fake.set_price("BTCUSDT", "100100")
        watching = asyncio.ensure_future(client.watch_ticker("BTC/USDT"))
        await asyncio.sleep(0.15)
        assert not watching.done()
        ticker = await within(watching)
        assert ticker["last"] == 100100
    finally:
        await client.close()


async def test_user_data_stream_reports_orders_and_fills(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        orders_task = asyncio.ensure_future(client.watch_orders("BTC/USDT"))
        await until(lambda: streams.user_data_listeners() == 1)
        assert streams.received[0]["method"] == "userDataStream.subscribe.signature"
        placed = await within(client.create_order("BTC/USDT", "limit", "buy", 0.001, 99000))
        orders = await within(orders_task)
        assert orders[-1]["id"] == placed["id"]
        assert orders[-1]["status"] == "open"
        assert orders[-1]["clientOrderId"] == placed["clientOrderId"]

        trades_task = asyncio.ensure_future(client.watch_my_trades("BTC/USDT"))
        orders_task = asyncio.ensure_future(client.watch_orders("BTC/USDT"))
        await asyncio.sleep(0.05)
        fake.set_price("BTCUSDT", "98000")
        trades = await within(trades_task)
        assert trades[-1]["order"] == placed["id"]
        assert trades[-1]["price"] == 99000 and trades[-1]["amount"] == 0.001
        assert trades[-1]["takerOrMaker"] == "maker"
        assert trades[-1]["fee"]["currency"] == "USDT"
        orders = await within(orders_task)
        assert orders[-1]["status"] == "closed"
        assert orders[-1]["filled"] == 0.001

        cancel_me = await within(client.create_order("BTC/USDT", "limit", "sell", 0.001, 99500))
        await within(client.cancel_order(cancel_me["id"], "BTC/USDT"))
        await until(
            lambda: any(
                o["id"] == cancel_me["id"] and o["status"] == "canceled" for o in client.orders
            )
        )
        canceled = next(o for o in client.orders if o["id"] == cancel_me["id"])
        assert canceled["clientOrderId"] == cancel_me["clientOrderId"]
    finally:
        await client.close()


async def test_user_data_stream_refuses_a_bad_signature(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    client.secret = "wrong"
    try:
        # ccxt.pro 4.5 itself trips over Binance's error reply (a KeyError in
        # ensure_user_data_stream_ws_subscribe_signature), so any error will do
        with pytest.raises((ccxt.ExchangeError, KeyError)):
            await within(client.watch_orders("BTC/USDT"))
        assert streams.received[-1]["method"] == "userDataStream.subscribe.signature"
    finally:
        await client.close()


async def test_subscribe_replies_as_binance_does(streams: FakeBinanceStreams) -> None:
    from websockets.asyncio.client import connect

    async with connect(streams.url + "/0") as ws:
        await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}')
        assert await within(ws.recv()) == '{"result": null, "id": 7}'
        await ws.send('{"method": "LIST_SUBSCRIPTIONS", "id": 8}')
        assert await within(ws.recv()) == '{"result": ["btcusdt@trade"], "id": 8}'
        await ws.send('{"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 9}')
        assert await within(ws.recv()) == '{"result": null, "id": 9}'
        await ws.send('{"method": "NOPE", "id": 10}')
        assert '"code": 2' in await within(ws.recv())


async def test_rest_klines_list_the_streamed_candles_also_while_the_streams_are_paused(
    fake: FakeBinance, streams: FakeBinanceStreams, clock: Clock
) -> None:
    client = streams.pro_client()
    try:
        await within(client.create_order("BTC/USDT", "limit", "sell", 0.002, 100500))
        await within(client.watch_ohlcv("BTC/USDT", "1m"))
        clock.ms += 10_000
        fake.walk("BTCUSDT", ["100600", "99800"])  # the sell fills at 100500
        # each price is its own kline event: wait for the last one, not just the fill's
        await until(lambda: client.ohlcvs["BTC/USDT"]["1m"][-1][4] == 99800)
        streamed = list(client.ohlcvs["BTC/USDT"]["1m"][-1])
        streams.pause(5)  # REST still answers, as Binance's does when a stream stalls
        clock.ms = START + 3 * 60_000 + 5
        fake.set_price("BTCUSDT", "99900")
        rows = await within(client.fetch_ohlcv("BTC/USDT", "1m", since=START))
        assert rows[0] == streamed == [START, 100000, 100600, 99800, 99800, 0.002]
        assert [r[0] for r in rows] == [START + i * 60_000 for i in range(4)]
        assert rows[1] == [START + 60_000, 99800, 99800, 99800, 99800, 0]  # empty: flat
        assert rows[2] == [START + 120_000, 99800, 99800, 99800, 99800, 0]
        assert rows[3] == [START + 180_000, 99800, 99900, 99800, 99900, 0]  # still open, last
    finally:
        streams.resume()
        await client.close()


async def test_offline_refuses_connections_until_online(
    fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    client = streams.pro_client()
    try:
        await within(client.watch_ticker("BTC/USDT"))
        streams.offline()
        with pytest.raises(ccxt.NetworkError):
            await within(client.watch_ticker("BTC/USDT"))  # the connection is gone
        # A new one is cut at once (the handshake passes, the first send finds it closing).
        with pytest.raises((ccxt.NetworkError, ConnectionError)):
            await within(client.watch_ticker("BTC/USDT"))
        assert streams.connections() == 0
        fake.set_price("BTCUSDT", "100200")
        streams.online()
        await within(client.watch_ticker("BTC/USDT"))  # dials again
        await until(lambda: client.tickers["BTC/USDT"]["last"] == 100200)
    finally:
        await client.close()
