"""What live bots cost the exchange account: REST weight with the user data stream and without
it, and how fast a fill's counter-order goes out (issue 12).

    .venv/bin/python bench/bench_exchange_weight.py [--bots 20] [--minutes 60] [--rest-minutes 10]

Twenty live bots (the real ones: ``bots.tasks.cycle_once``, the real ccxt and ccxt.pro clients)
on one fake Binance account, BTC/USDT, the market walking through their grids, in simulated
time: each step moves the exchange's clock and Django's by ``BOT_CYCLE_SECONDS`` and runs
every bot's chain cycle, as Huey would.

- stream: the user data stream runs as in the feed process (``bots.user_streams``): fills
  arrive over the fake's websocket API and wake their bot at once; the chain's cycles ask REST
  only for the safety net (``LIVE_RECONCILE_SECONDS``) and after a gap. Weight is everything
  the account spent in the run, the bots' starts included, per bot and simulated hour.
- rest-only: no stream; every cycle reconciles over REST, as before this issue. It runs
  ``--rest-minutes`` of simulated time; the weight of its cycles after the starts is scaled to
  the hour (its cost per cycle is flat: the trade-id cursor keeps each fetch one request).
- 429s: answers 429 or 418 the fake gave in either run.
- fill-to-order: from the moment the stream hands a fill that completed its order to aibo
  (ccxt.pro returns it) to the moment the fake receives its counter-order (the bot's next
  order on the same grid slot), local time, for every such fill whose counter-order went out
  within a second (one that did not is counted apart: sent before, by a REST reconciliation
  that found the fill first, or post-only and waiting while the price is past its line; so
  are the parts of orders: no counter-order until the order is done).

Prints one line:
``exchange-weight: stream <S> per bot-hour, rest-only <R> per bot-hour, 429s <N>,
fill-to-order p50 <a> ms p99 <b> ms`` (on one line). Goal: S <= 600, N = 0, p99 <= 50 ms.
It runs on PostgreSQL and Redis, as live money should (README): without DATABASE_URL / REDIS_URL
it starts throwaway servers from the installed binaries. (On SQLite the wake-ups queue for its
one writer: ``--sqlite`` shows it.)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.live_chaos import Clock, feed, past_paper_first  # noqa: E402

P0 = Decimal("100000")
# The standard deviation of a 5-second move: 0.06 %, about three times BTC/USDT's on an ordinary day
# (2-3 % a day is 0.015-0.02 % per 5 s), so the grids fill often.
VOLATILITY = 0.0006
API_KEY, SECRET = "weight-key-0123456789abcdef", "weight-secret-0123456789abcdef"


class Latency:
    """A fill that completed its order, heard (ccxt.pro handed it over) → its counter-order on
    the wire: the next order of the same bot and grid slot, if it went out within a second
    (one that did not is counted apart: sent before the stream's word came, by a REST
    reconciliation that found the fill first, or post-only and waiting while the price is past
    its line). A part of an order has no counter-order until the order is done."""

    def __init__(self) -> None:
        # (time.monotonic(), a client id): the system-wide clock, the same in both processes
        self.heard: list[tuple[float, str]] = []  # the filled order's, when the fill ended it
        self.parts = 0  # fills heard that left the rest of their order on the book
        self.sent: list[tuple[float, str]] = []  # a new order's, as the exchange received it
        self.lock = threading.Lock()
        self.waited = 0  # fills whose counter-order did not go out within a second

    def millis(self) -> list[float]:
        from bots.grid import order_ids

        def slot_of(client_id: str) -> tuple[int, int] | None:
            key, slot = order_ids.key_of(client_id), order_ids.slot_of(client_id)
            return None if key is None or slot is None else (key[1], slot)

        with self.lock:
            sent = sorted((t, slot_of(c)) for t, c in self.sent)
            heard = sorted((t, slot_of(c)) for t, c in self.heard)
        out = []
        self.waited = 0
        for at, slot in heard:
            if slot is None:
                continue
            nxt = next((t for t, s in sent if s == slot and t >= at), None)
            if nxt is not None and nxt - at <= 1.0:
                out.append((nxt - at) * 1000)
            else:
                self.waited += 1
        return out


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


class RemoteFake:
    """The fake Binance (REST and websocket streams) in a process of its own, as the real one
    is: its work does not share aibo's interpreter and skew the timings. Clients are pointed
    at its ports with the fakes' own code; commands go over a pipe."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.api_key, self.secret = options["api_key"], options["secret"]

    def __enter__(self) -> RemoteFake:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve_fake, args=(child, self.options), daemon=True)
        self.process.start()
        self.ports = self.conn.recv()
        self.attach(*self.ports)
        return self

    def attach(self, port: int, ws_port: int) -> RemoteFake:
        """Point at the fake's ports (from another process too: ``attached``)."""
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/api/v3"
        self.url = f"ws://127.0.0.1:{ws_port}/stream/ws"
        self.api_url = f"ws://127.0.0.1:{ws_port}/ws-api/v3"
        self.fake = self  # what FakeBinanceStreams' pointing code reads
        return self

    @classmethod
    def attached(cls, ports: tuple[int, int]) -> RemoteFake:
        return cls(api_key=API_KEY, secret=SECRET).attach(*ports)

    def __exit__(self, *exc: object) -> None:
        self.call("stop")
        self.process.join(timeout=10)

    def call(self, command: str, *args: Any) -> Any:
        self.conn.send((command, args))
        return self.conn.recv()

    def stats(self) -> tuple[int, int, list[tuple[float, str]]]:
        return self.call("stats")

    def ccxt_client(self, api_key: str, secret: str) -> Any:
        from tests.fakes.fake_binance import FakeBinance

        client = FakeBinance.ccxt_client(self, api_key, secret)  # type: ignore[arg-type]
        # ccxt's own rate limiter on, as market.exchange makes the real clients: its sleeps
        # between one client's requests count in the fill-to-order time.
        client.enableRateLimit = True
        return client

    def pro_client(self) -> Any:
        from tests.fakes.fake_binance_ws import FakeBinanceStreams

        self.point = lambda client: FakeBinanceStreams.point(self, client)  # type: ignore
        return FakeBinanceStreams.pro_client(self)  # type: ignore[arg-type]


def serve_fake(conn: Any, options: dict[str, Any]) -> None:
    """The fake exchange's process: serve until told to stop; a new order's arrival time is
    noted (time.monotonic()) with its client id."""
    from urllib.parse import parse_qsl

    from tests.fakes.fake_binance import FakeBinance
    from tests.fakes.fake_binance_ws import FakeBinanceStreams

    now = {"ms": options.pop("start_ms")}
    fake = FakeBinance(clock=lambda: now["ms"], **options)
    sent: list[tuple[float, str]] = []
    handle = fake.handle

    def noted(method: str, raw_path: str, body: str, headers: dict[str, str]) -> Any:
        if method == "POST" and raw_path.split("?")[0].endswith("/order"):
            at = time.monotonic()
            params = dict(parse_qsl(raw_path.partition("?")[2])) | dict(parse_qsl(body))
            if params.get("newClientOrderId"):
                sent.append((at, params["newClientOrderId"]))
        return handle(method, raw_path, body, headers)

    fake.handle = noted  # type: ignore[method-assign]
    with fake, FakeBinanceStreams(fake) as streams:
        conn.send((fake.port, streams.port))
        while True:
            command, args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "clock":
                now["ms"] = args[0]
                conn.send(None)
            elif command == "set_price":
                fake.set_price(args[0], args[1])
                conn.send(None)
            elif command == "cpu":  # this process's CPU seconds so far
                conn.send(time.process_time())
            elif command == "stats":
                refused = sum(1 for r in fake.requests if r.status in (418, 429))
                conn.send((fake.weight_total, refused, list(sent)))


class ChainWorker:
    """The Huey worker's part in a process of its own, as in the deployment on PostgreSQL and
    Redis (``run_huey`` beside ``run_market_feed``, whose user data stream wakes bots): every
    bot's chain cycle, each step. Each cycle is followed by as long again idle: in real time
    the cycles of a step are spread over BOT_CYCLE_SECONDS, not run back to back."""

    def __init__(self, ports: tuple[int, int], clock: Any) -> None:
        self.ports, self.clock = ports, clock

    def __enter__(self) -> ChainWorker:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=serve_chains, args=(child, self.ports, self.clock), daemon=True
        )
        self.process.start()
        self.conn.recv()  # ready
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.send(None)
        self.process.join(timeout=10)

    def step(self, bot_ids: list[int]) -> None:
        self.conn.send(bot_ids)
        self.conn.recv()


def serve_chains(conn: Any, ports: tuple[int, int], clock: Any) -> None:
    """The worker process: Django on the same servers (the environment is inherited)."""
    import django

    django.setup()
    from bots.tasks import cycle_once

    in_the_bench(ports, clock)
    conn.send(None)
    while (bot_ids := conn.recv()) is not None:
        for bot_id in bot_ids:
            began = time.perf_counter()
            cycle_once(bot_id)
            time.sleep(time.perf_counter() - began)
        conn.send(None)


def in_the_bench(ports: tuple[int, int], clock: Any) -> None:
    """Another process of the bench's (the chains' worker, a wake-up process): the exchange
    client pointed at the fake, Django's clock the run's simulated one (``clock``: shared ms)."""
    from datetime import UTC, datetime

    from django.conf import settings
    from django.utils import timezone

    from market import exchange

    settings.MARKET_FEED = "live"
    settings.USER_STREAM_BEAT_SECONDS = 5
    fake = RemoteFake.attached(ports)
    exchange.CLIENT_FACTORY = lambda n, k, s: fake.ccxt_client(k, s)
    timezone.now = lambda: datetime.fromtimestamp(clock.value / 1000, UTC)


class Streams:
    """The user data streams in a thread, as in the feed process; ``waker`` runs the cycles."""

    def __init__(self, waker: Any) -> None:
        from bots import user_streams

        self.waker = waker
        self.halt = threading.Event()
        # Simulated time runs about ten times faster than the wall clock here: a beat every
        # 0.1 s (about one simulated second; the deployment's is USER_STREAM_BEAT_SECONDS, 5)
        # keeps the stream fresh for it. Every 10 ms, the beats' cache writes took CPU from
        # the very cycles timed here. The accounts are all known before the stream starts.
        streams = user_streams.UserStreams(waker=waker, rescan_seconds=1.0, beat_seconds=0.1)
        self.thread = threading.Thread(target=streams.run, args=(self.halt,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        from bots.processes import InProcesses

        self.halt.set()
        self.thread.join(timeout=10)
        self.waker.shutdown()
        if isinstance(self.waker.run, InProcesses):
            self.waker.run.shutdown()


class Run:
    def __init__(self, *, bots: int, seed: int, stream: bool, worker: bool) -> None:
        self.n_bots, self.stream, self.worker = bots, stream, worker
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.shared_clock: Any = None  # the clock's ms for the other processes
        self.price = P0
        self.latency = Latency()
        self.chains: ChainWorker | None = None
        self.fake_share = 0.0

    def go(self, minutes: float) -> tuple[float, int]:
        """(weight per bot-hour, 429s) of ``minutes`` of simulated time."""
        from django.conf import settings
        from django.utils import timezone

        from bots import user_streams
        from market import exchange

        fake = RemoteFake(
            api_key=API_KEY, secret=SECRET, start_ms=self.clock.ms(),
            balances={"USDT": str(30_000 * self.n_bots)}, prices={"BTCUSDT": str(P0)},
        )  # fmt: skip
        self.fake = fake
        if self.worker:
            import multiprocessing

            self.shared_clock = multiprocessing.get_context("spawn").Value("q", self.clock.ms())
        with fake, \
                patched(exchange, "CLIENT_FACTORY", lambda n, k, s: fake.ccxt_client(k, s)), \
                patched(exchange, "PRO_CLIENT_FACTORY", lambda n, k, s: fake.pro_client()), \
                patched(timezone, "now", self.clock.now), \
                patched(user_streams, "fill_of", self._heard(user_streams.fill_of)):  # fmt: skip
            self.setup()
            bots = []
            for i in range(self.n_bots):  # a trader starting them one after another
                bots.append(self.make_bot(i))
                self.advance(3)
            started_weight = fake.stats()[0]
            running = self.start_streams() if self.stream else None
            try:
                chains = ChainWorker(fake.ports, self.shared_clock) if self.worker else None
                with chains or nullcontext() as worker:
                    self.chains = worker
                    steps = max(
                        1, int((minutes * 60 - 3 * self.n_bots) / settings.BOT_CYCLE_SECONDS)
                    )
                    cpu, wall = fake.call("cpu"), time.monotonic()
                    for _ in range(steps):
                        self.step(bots, settings.BOT_CYCLE_SECONDS)
                    # the share of one core the fake exchange took (a real one is remote)
                    self.fake_share = (fake.call("cpu") - cpu) / (time.monotonic() - wall)
            finally:
                if running is not None:
                    running.stop()
            weight, refused, sent = fake.stats()
            self.latency.sent = sent
            if not self.stream:  # the steady state only, scaled to the hour
                hours = steps * settings.BOT_CYCLE_SECONDS / 3600
                return (weight - started_weight) / self.n_bots / hours, refused
            return weight / self.n_bots * 60 / minutes, refused

    def _heard(self, fill_of: Any) -> Any:
        def heard(report: dict[str, Any]) -> Any:
            fill = fill_of(report)
            if fill is not None:
                with self.latency.lock:
                    if report.get("X") == "FILLED":
                        self.latency.heard.append((time.monotonic(), fill.client_id))
                    else:
                        self.latency.parts += 1
            return fill

        return heard

    def setup(self) -> None:
        from django.contrib.auth import get_user_model

        from accounts.models import ExchangeCredential
        from market import services as market_services

        user = get_user_model().objects.create_user(
            email=f"weight-{self.stream}@example.com", password="x"
        )
        self.user = user
        self.credential = ExchangeCredential(owner=user, label="weight")
        self.credential.set_keys(API_KEY, SECRET)
        self.credential.save()
        past_paper_first(self.credential)
        market_services.load_market_rules("binance", "BTC/USDT")
        self.feed()

    def start_streams(self) -> Streams:
        from bots import user_streams
        from bots.processes import InProcesses
        from bots.tasks import fill_cycle

        run: Any = fill_cycle
        processes = user_streams.wake_processes() if self.worker else 0
        if processes:  # as run_user_streams does on PostgreSQL
            here = (self.fake.ports, self.shared_clock)
            run = InProcesses(
                fill_cycle,
                processes,
                setup="bench.bench_exchange_weight.in_the_bench",
                setup_args=here,
            )
            run.ready()  # each process up before the first fill
        return Streams(user_streams.Waker(run))

    def make_bot(self, i: int) -> Any:
        from django.db import transaction

        from bots import services
        from bots.errors import BotError
        from bots.models import Bot

        # Each bot its own range, so their lines (and fills) fall apart, as twenty traders' do.
        low = P0 * (1 - Decimal(self.rng.uniform(0.02, 0.04)))
        high = P0 * (1 + Decimal(self.rng.uniform(0.02, 0.04)))
        config = {
            "capital": "1000",
            "lower_bound": str(low.quantize(Decimal("0.01"))),
            "upper_bound": str(high.quantize(Decimal("0.01"))),
            "grid_levels": "10",
            "spacing": "arithmetic",
            "stop_loss_pct": "0",
            "max_daily_loss": "0",
            "take_profit": "",
        }
        bot = Bot.objects.create(
            owner=self.user, name=f"weight {i}", symbol="BTC/USDT", config=config,
            mode=Bot.Mode.LIVE, credential=self.credential,
        )  # fmt: skip
        for _ in range(10):  # a start the request budget holds back is finished a bit later
            try:
                with transaction.atomic():
                    services.start_bot(bot)
                return bot
            except BotError:
                self.advance(10)
                self.feed()
        raise SystemExit(f"bot {bot.pk} did not start")

    def advance(self, seconds: float) -> None:
        """Simulated time goes on, for the exchange and for every process of the run (the
        other processes' clock stood still while the bots were started, before: the grids
        that the stream's first wake-ups placed then dated from before their bots' starts,
        and their fills were booked as not the running grid's, with no counter-order)."""
        self.clock.advance(seconds)
        self.fake.call("clock", self.clock.ms())
        if self.shared_clock is not None:
            self.shared_clock.value = self.clock.ms()

    def feed(self) -> None:
        feed(self.price, self.clock.now())

    def step(self, bots: list[Any], seconds: int) -> None:
        """BOT_CYCLE_SECONDS of simulated time: every bot's chain cycle, then the market moves
        (the exchange fills what it crosses, and the stream wakes those bots)."""
        from bots.tasks import cycle_once

        self.advance(seconds)
        if self.chains is not None:  # the chain's cycles, as Huey runs them
            self.chains.step([bot.pk for bot in bots])
        else:  # the embedded default (``serve``): the chains in the feed's own process
            for bot in bots:
                began = time.perf_counter()
                cycle_once(bot.pk)
                if self.stream:  # spread over the step, as ChainWorker's are
                    time.sleep(time.perf_counter() - began)
        drift = (P0 - self.price) / P0 / 200  # a gentle pull back into the grids
        change = Decimal(str(round(self.rng.gauss(0, VOLATILITY), 6))) + drift
        self.price = (self.price * (1 + change)).quantize(Decimal("0.01"))
        self.fake.call("set_price", "BTCUSDT", str(self.price))
        self.feed()
        if self.stream:
            time.sleep(0.1)  # the fills' wake-ups run on the wall clock


@contextmanager
def django_on_real_servers(*, sqlite: bool = False) -> Iterator[None]:
    import os
    import tempfile

    os.environ.setdefault("AIBO_DATA_DIR", tempfile.mkdtemp(prefix="aibo-weight-"))
    os.environ.setdefault("SECRET_KEY", "weight-" + "x" * 60)
    os.environ.setdefault("LOG_LEVEL", "CRITICAL")
    if not sqlite:
        from tests.servers import start_postgres, start_redis

        if not os.environ.get("DATABASE_URL"):
            url = start_postgres() or sys.exit("PostgreSQL is not installed (or use --sqlite)")
            os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/postgres"
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = start_redis() or sys.exit("Redis is not installed")
    os.environ["DJANGO_SETTINGS_MODULE"] = "aibo.settings"
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.MARKET_FEED = "live"  # live bots trade on live prices only
    call_command("migrate", verbosity=0)
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bots", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rest-minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true", help="a throwaway SQLite instead")
    args = parser.parse_args(argv)
    with django_on_real_servers(sqlite=args.sqlite):
        from django.conf import settings

        settings.USER_STREAM_BEAT_SECONDS = 5
        # On PostgreSQL and Redis the chains run in a worker process, as deployed; on SQLite
        # in the feed's process, as ``serve`` runs them (its cache is the process's own).
        worker = not args.sqlite
        stream_run = Run(bots=args.bots, seed=args.seed, stream=True, worker=worker)
        stream, refused = stream_run.go(args.minutes)
        rest_only, refused_rest = Run(
            bots=args.bots, seed=args.seed, stream=False, worker=worker
        ).go(args.rest_minutes)
    millis = sorted(stream_run.latency.millis())
    p50 = statistics.median(millis) if millis else float("nan")
    p99 = millis[min(len(millis) - 1, int(len(millis) * 0.99))] if millis else float("nan")
    print(
        f"exchange-weight: stream {stream:.0f} per bot-hour, rest-only {rest_only:.0f} per "
        f"bot-hour, 429s {refused + refused_rest}, fill-to-order p50 {p50:.1f} ms "
        f"p99 {p99:.1f} ms"
    )
    print(
        f"  ({len(millis)} fills timed; {stream_run.latency.parts} parts of orders, which have "
        f"no counter-order yet; {stream_run.latency.waited} whose counter-order did not go out "
        "within a second after it: sent before, by a REST reconciliation that found the fill "
        "first, or post-only and waiting while the price is past its line; the fake exchange "
        f"took {stream_run.fake_share:.0%} of one core of this machine meanwhile)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
