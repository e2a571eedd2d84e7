"""Price-to-browser latency with many websocket clients on one server process, over Redis.

    python bench/bench_ws.py [--clients 1000] [--prices 40] [--rate 1] [--procs 4] [--sqlite]
                             [--direct]

Starts a throwaway redis-server and PostgreSQL (tests/servers.py; ``--sqlite`` for a SQLite
file instead), migrates, signs a user in, and runs the real ASGI app in one uvicorn process
with ``REDIS_URL`` set (channels-redis's RedisPubSubChannelLayer). ``--clients`` websockets,
spread over ``--procs`` client processes, connect to ``/ws/market/BTCUSDT/`` with the session
cookie. Every client notes when each price arrives.

By default the prices come the way they come in production, from the exchange's websocket:
the fake Binance (tests/fakes/) moves its price ``--prices`` times at ``--rate`` per second,
its streams push the ticker, and the market feed (``market.streams.StreamFeed``, pumped by the
``run_market_feed`` command's own loop in a thread of this process, as the ``feed`` service
runs) hears it through the real ccxt.pro client, records it and publishes it (at most two
prices a second per pair; Binance's ticker speaks about once a second, so the rate is 1).
Latency is arrival minus the moment the fake's price moved: the fake's own push (it polls its
state every 5 ms here), ccxt.pro, the feed, Redis, the server and the socket. ``--direct``
publishes through ``market.push``'s async ``apublish_price`` instead (the path from the feed
on), at ``--rate`` (4 is the old default). Wall clock, one machine, over every (client, price)
pair. Goal: p99 under 100 ms with 1,000 clients, every price delivered. Everything listens on
loopback; every wait has a deadline.

Measured on the 2-core dev machine (1,000 clients in 4 processes on the same 2 cores, 40 prices
at 4/s, PostgreSQL): with Python's default GC thresholds p50 55 ms, p99 230 ms (full
collections of the server, 150-200 ms each, on a few ticks); with the GC tuning aibo.asgi now
applies p50 52-59 ms, p99 68-94 ms (the range is other work on the machine). On a slower day
(2026-11-30, the backtest bench 1.6-2.5x slower than before) p99 was 105 ms with
permessage-deflate and 91 ms without; aibo serves without it (``--deflate`` measures it on).
Before ``market.consumers.PriceHub`` (one Channels consumer queue per
socket, with Channels' per-message database hop) p50 was 800 ms. bench/README.md has the
figures with prices from the websocket feed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE_PRICE = 60000
SYMBOL_PATH = "/ws/market/BTCUSDT/"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


# --- clients (separate processes, so the server's CPU is not shared with their parsing) --------


def client_main(
    port: int, cookie: str, n: int, expected: int, ready: mp.Queue, out: mp.Queue
) -> None:
    asyncio.run(_clients(port, cookie, n, expected, ready, out))


async def _clients(
    port: int, cookie: str, n: int, expected: int, ready: mp.Queue, out: mp.Queue
) -> None:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}{SYMBOL_PATH}"
    headers = {"Cookie": f"sessionid={cookie}"}
    origin = f"http://127.0.0.1:{port}"
    received: list[tuple[int, float]] = []
    sockets = []
    gate = asyncio.Semaphore(25)  # connect in small waves: a handshake costs the server a query

    async def open_one() -> None:
        async with gate:
            for attempt in range(5):
                try:
                    ws = await connect(
                        url,
                        additional_headers=headers,
                        origin=origin,  # type: ignore[arg-type]
                        ping_interval=None,
                        open_timeout=30,
                    )
                    sockets.append(ws)
                    return
                except (OSError, TimeoutError):
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(open_one() for _ in range(n)))
    # The clients stand in for browsers on other machines: their own garbage collections (in
    # step, as every client process does the same work) must not show up as server latency.
    gc.collect()
    gc.freeze()
    gc.disable()
    ready.put(len(sockets))

    async def listen(ws) -> None:
        got = 0
        try:
            while got < expected:
                text = await asyncio.wait_for(ws.recv(), timeout=30)
                now = time.time()
                msg = json.loads(text)
                seq = int(Decimal(msg["price"])) - BASE_PRICE
                if seq < 0:
                    continue  # the price before the run (the feed's first)
                received.append((seq, now))
                got += 1
        except (TimeoutError, Exception):
            return

    await asyncio.gather(*(listen(ws) for ws in sockets))
    for ws in sockets:
        await ws.close()
    out.put(received)


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--prices", type=int, default=40)
    parser.add_argument("--rate", type=float, default=None, help="prices per second (1; 4 direct)")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="publish into the channel layer directly instead of through the websocket feed",
    )
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="serve with permessage-deflate (aibo turns it off: tiny frames gain nothing)",
    )
    parser.add_argument("--verbose", action="store_true", help="latency of each price")
    parser.add_argument("--profile", help="write a cProfile of the server to this file")
    args = parser.parse_args()
    if args.rate is None:
        args.rate = 4.0 if args.direct else 1.0
    limit = raise_fd_limit()
    if limit < args.clients * 2 + 100:
        raise SystemExit(f"open-file limit {limit} is too low for {args.clients} clients")

    from tests.servers import free_port, start_postgres, start_redis

    redis_url = start_redis()
    if not redis_url:
        raise SystemExit("redis-server is not installed")
    data_dir = tempfile.mkdtemp(prefix="aibo-bench-ws-")
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        AIBO_DATA_DIR=data_dir,
        SECRET_KEY="bench-" + "x" * 60,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="aibo.settings",
        # One signed-in session opens every client: lift the per-user socket cap.
        WS_MAX_CONNECTIONS_PER_USER="0",
    )
    env.pop("DATABASE_URL", None)
    database = "SQLite"
    if not args.sqlite:
        url = start_postgres()
        if url:
            import psycopg

            # The throwaway server has only its maintenance database: make the app's.
            with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
                conn.execute("CREATE DATABASE aibo")
            env["DATABASE_URL"] = url
            database = "PostgreSQL"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    if "DATABASE_URL" not in env:
        os.environ.pop("DATABASE_URL", None)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(email="bench@example.com", password="x-Bench-123")
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value

    port = free_port()
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    server_args = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                   "--no-access-log",
                   *([] if args.deflate else ["--ws-per-message-deflate", "false"])]  # fmt: skip
    launch = [*profile, "-m", "uvicorn", "aibo.asgi:application", *server_args]
    server = subprocess.Popen([sys.executable, *launch], cwd=ROOT, env=env)
    ctx = mp.get_context("spawn")
    procs: list = []
    feed_stop = threading.Event()
    fake = None if args.direct else start_stream_feed(feed_stop)
    try:
        wait_for_port(port, time.monotonic() + 30)
        ready, out = ctx.Queue(), ctx.Queue()
        share = [
            args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
        ]
        procs = [
            ctx.Process(target=client_main, args=(port, cookie, n, args.prices, ready, out))
            for n in share
        ]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        connected = sum(ready.get(timeout=180) for _ in procs)
        connect_s = time.monotonic() - t0
        print(f"{connected} of {args.clients} clients connected in {connect_s:.1f} s "
              f"(one uvicorn process, {database}, RedisPubSubChannelLayer)")  # fmt: skip
        time.sleep(1.0)  # let the last group_add subscriptions settle
        if fake is None:
            sent = asyncio.run(publish(args.prices, args.rate))
        else:
            sent = move_the_market(fake, args.prices, args.rate)
        results: list[tuple[int, float]] = []
        for _ in procs:
            results += out.get(timeout=args.prices / args.rate + 90)
    finally:
        feed_stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        server.send_signal(signal.SIGINT)  # a clean exit: the profile gets written
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    latencies = sorted((at - sent[seq]) * 1000 for seq, at in results if seq in sent)
    expected = connected * args.prices
    if not latencies:
        raise SystemExit("no price arrived")

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    print(
        f"{args.prices} prices at {args.rate:g}/s to {connected} clients: "
        f"{len(latencies)} of {expected} deliveries"
    )
    print(
        f"latency ms: p50 {q(0.50):.1f}  p90 {q(0.90):.1f}  p99 {q(0.99):.1f}  "
        f"max {latencies[-1]:.1f}  mean {statistics.fmean(latencies):.1f}"
    )
    if args.verbose:
        by_seq: dict[int, list[float]] = {}
        for seq, at in results:
            by_seq.setdefault(seq, []).append((at - sent[seq]) * 1000)
        for seq in sorted(by_seq):
            lat = sorted(by_seq[seq])
            mid = lat[len(lat) // 2]
            print(
                f"  price {seq:3}: first {lat[0]:6.1f}  median {mid:6.1f}  last {lat[-1]:6.1f} ms"
            )
    print("server: the app as deployed (aibo.asgi tunes its GC), "
          f"permessage-deflate {'on' if args.deflate else 'off'}")  # fmt: skip
    source = (
        f"published directly at {args.rate:g}/s"
        if args.direct
        else f"from the fake exchange's websocket through the market feed at {args.rate:g}/s"
    )
    print(f"prices: {source}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    verdict = "meets" if q(0.99) < 100 and len(latencies) == expected else "MISSES"
    print(f"{verdict} the goal (p99 < 100 ms, every price delivered)")


def start_stream_feed(stop: threading.Event):
    """The fake Binance (REST and streams) and the market feed streaming BTC/USDT from it,
    pumped in a thread as ``run_market_feed`` pumps it; returns the fake once prices flow."""
    from market import exchange
    from market.management.commands.run_market_feed import Command
    from market.services import price_now
    from market.streams import StreamFeed
    from tests.fakes.fake_binance import FakeBinance
    from tests.fakes.fake_binance_ws import FakeBinanceStreams

    fake = FakeBinance(prices={"BTCUSDT": str(BASE_PRICE - 1)}).start()
    streams = FakeBinanceStreams(fake, poll_seconds=0.005).start()
    exchange.CLIENT_FACTORY = lambda name, k, s: fake.ccxt_client(k, s)
    exchange.PRO_CLIENT_FACTORY = lambda name, k, s: streams.pro_client()
    feed = StreamFeed("binance", ["BTC/USDT"])
    command = Command()
    command.stop_event = stop

    def pump() -> None:
        try:
            while not stop.is_set():
                command.pump(feed)
        finally:
            feed.close()
            streams.stop()
            fake.stop()

    threading.Thread(target=pump, name="market-feed", daemon=True).start()
    deadline = time.monotonic() + 30
    while price_now("binance", "BTC/USDT") is None:
        if time.monotonic() > deadline:
            raise SystemExit("the market feed did not start streaming")
        time.sleep(0.05)
    return fake


def move_the_market(fake, n: int, rate: float) -> dict[int, float]:
    """Move the fake exchange's price to BASE_PRICE + i, n times; return when each moved."""
    sent: dict[int, float] = {}
    interval = 1 / rate
    for i in range(n):
        t = time.time()
        sent[i] = t
        fake.set_price("BTCUSDT", str(BASE_PRICE + i))
        time.sleep(max(0.0, interval - (time.time() - t)))
    time.sleep(1.0)  # the last one's push
    return sent


async def publish(n: int, rate: float) -> dict[int, float]:
    """Publish n prices BASE_PRICE + i through the channel layer; return their send times."""
    from market.push import apublish_price

    sent: dict[int, float] = {}
    interval = 1 / rate
    for i in range(n):
        t = time.time()
        sent[i] = t
        await apublish_price("binance", "BTC/USDT", Decimal(BASE_PRICE + i), int(t * 1000))
        await asyncio.sleep(max(0.0, interval - (time.time() - t)))
    return sent


if __name__ == "__main__":
    main()
