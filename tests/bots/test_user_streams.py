"""Fills over the user data stream: the real ccxt.pro client against the fake Binance's
websocket API, the real ccxt client for REST, real bots.

A fill heard on the stream wakes its bot at once (no Huey, no REST) and its counter-order goes
out; while the stream is up, the bots' cycles ask the exchange nothing; a gap in the stream
sends every bot of the account back to REST, which finds every fill made meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from bots import ledger, tasks, user_streams
from bots.gateways.ccxt_gateway import CcxtGateway
from bots.models import Bot, ExchangeFillRecord, Order, SendAttempt, StreamedFill
from bots.processes import InProcesses
from market import exchange
from tests.bots import test_live_trading
from tests.bots.test_live_trading import (
    API_KEY,
    CONFIG,
    P0,
    SECRET,
    db_resting,
    resting,
    set_price,
)
from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_binance_ws import FakeBinanceStreams

pytestmark = pytest.mark.django_db(transaction=True)

REST_READS = ("/api/v3/myTrades", "/api/v3/openOrders", "/api/v3/order", "/api/v3/allOrders")


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    return fake_binance(
        api_key=API_KEY, secret=SECRET, balances={"USDT": "5000"}, prices={"BTCUSDT": P0},
        as_exchange=True, timeout_ms=2000,
    )  # fmt: skip


@pytest.fixture
def streams(fake: FakeBinance, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBinanceStreams]:
    """The fake's websocket streams, and the app's ccxt.pro clients pointed at them."""
    with FakeBinanceStreams(fake) as running:
        monkeypatch.setattr(
            exchange, "PRO_CLIENT_FACTORY", lambda name, k, s: running.pro_client(timeout_ms=2000)
        )
        yield running


# The live-trading tests' market (rules, a candle, a fresh price), keys and committed start.
market = test_live_trading.market
keys = test_live_trading.keys
start_live = test_live_trading.start_live


@pytest.fixture
def stream_settings(settings: Any) -> None:
    settings.USER_STREAM_BEAT_SECONDS = 2
    settings.LIVE_RECONCILE_SECONDS = 300


@pytest.fixture
def live_bot(stream_settings: None, market: None, make_bot: Callable[..., Bot], keys: Any,
             fake: FakeBinance, start_live: Callable[[Bot], None]) -> Bot:  # fmt: skip
    """A live bot started on the fake (``market``, ``keys`` and ``start_live`` are
    test_live_trading's), its grid resting there."""
    bot = make_bot(CONFIG, mode=Bot.Mode.LIVE, credential=keys)
    start_live(bot)
    bot.refresh_from_db()
    assert bot.is_running and len(resting(fake)) == 9
    return bot


class Running:
    """The user streams in a thread, as the feed process runs them; cycles it wakes are
    counted (and run by ``cycles``, when given)."""

    def __init__(self, cycles: Callable[[int], Any] = tasks.fill_cycle) -> None:
        self.stop = threading.Event()
        self.woken: list[int] = []

        def run(bot_id: int) -> Any:
            self.woken.append(bot_id)
            return cycles(bot_id)

        self.waker = user_streams.Waker(run, workers=2)
        self.streams = user_streams.UserStreams(waker=self.waker, rescan_seconds=0.2)
        self.thread = threading.Thread(target=self.streams.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.waker.shutdown()


def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def settled(running: Running, bot: Bot) -> Callable[[], bool]:
    return lambda: running.waker.idle() and not StreamedFill.objects.filter(bot=bot).exists()


def came_up(running: Running, bot: Bot) -> None:
    """The stream is up, and the REST reconciliation its coming up asks for (a gap is REST's)
    is done."""
    until(stream_up(bot))
    until(lambda: rest_synced_since_up(bot))
    until(settled(running, bot))


def rest_synced_since_up(bot: Bot) -> bool:
    """A REST reconciliation began after the stream came up (one that began before, a chain
    cycle's, leaves the next cycle due for another)."""
    synced, since = (
        Bot.objects.get(pk=bot.pk).rest_synced_at,
        user_streams.up_since(bot.credential_id),
    )
    return synced is not None and since is not None and synced.timestamp() >= since


def reads(fake: FakeBinance) -> int:
    return sum(fake.calls("GET", path) for path in REST_READS)


def stream_up(bot: Bot) -> Callable[[], bool]:
    return lambda: user_streams.up_since(bot.credential_id) is not None


def test_a_fill_on_the_stream_sends_its_counter_order_without_asking_rest(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    bot = live_bot
    with Running() as running:
        came_up(running, bot)
        before = reads(fake)
        since = user_streams.up_since(bot.credential_id)
        top_buy = max(o.price for o in bot.orders.filter(side="buy", status="open"))
        placed_at = bot.orders.get(side="buy", price=top_buy).updated_at
        fake.set_price("BTCUSDT", str(top_buy - 1))  # the market dips through the top buy
        # No chain cycle runs here: the stream alone wakes the bot, and the sell goes out.
        until(lambda: bot.orders.filter(side="sell", price__gt=top_buy, status="open").count()
              > 4)  # fmt: skip
        until(settled(running, bot))
        if user_streams.up_since(bot.credential_id) == since:  # (no reconnect on a busy box)
            assert reads(fake) == before  # no REST read for the fill
    bought = bot.orders.get(side="buy", price=top_buy)
    assert bought.status == Order.Status.FILLED
    assert bought.updated_at > placed_at  # the orders socket sends what changed since
    assert ExchangeFillRecord.objects.filter(order=bought).count() == 1
    assert resting(fake) == db_resting(bot)
    assert bot.pk in running.woken


def test_a_streamed_fills_counter_order_is_written_down_with_its_booking_before_it_goes_out(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sell's row and its send write-down are committed in the booking's transaction, so
    a crash before the send leaves an id looked for, never sent twice; no write-down of its
    own is made on the way out (a round trip the counter-order would wait on)."""
    bot = live_bot
    sending: list[tuple[str, str, bool, bool, Any]] = []
    alone: list[str] = []
    real_place, real_attempt = CcxtGateway.place, ledger.send_attempt

    def place(gw: CcxtGateway, order: Any, **kwargs: Any) -> Any:
        row = Order.objects.get(client_order_id=order.client_id)
        written = SendAttempt.objects.filter(pk=order.client_id).exists()
        sending.append((order.client_id, row.status, written, connection.in_atomic_block,
                        kwargs["sent_before"]))  # fmt: skip
        return real_place(gw, order, **kwargs)

    def send_attempt(client_id: str) -> Any:
        alone.append(client_id)
        return real_attempt(client_id)

    monkeypatch.setattr(CcxtGateway, "place", place)
    monkeypatch.setattr(ledger, "send_attempt", send_attempt)
    with Running() as running:
        came_up(running, bot)
        sending.clear()
        top_buy = max(o.price for o in bot.orders.filter(side="buy", status="open"))
        fake.set_price("BTCUSDT", str(top_buy - 1))
        until(lambda: bot.orders.filter(side="sell", price__gt=top_buy, status="open").count()
              > 4)  # fmt: skip
        until(settled(running, bot))
    sell = bot.orders.get(side="sell", slot=bot.orders.get(side="buy", price=top_buy).slot)
    assert (sell.client_order_id, Order.Status.PENDING, True, False, None) in sending
    assert sell.client_order_id not in alone
    assert resting(fake) == db_resting(bot)


def test_a_fill_that_comes_while_the_last_is_taken_in_is_heard_at_once(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ccxt.pro wakes a watcher only when one is waiting: a trade that arrives while the stream
    writes down the one before resolves no watch, and would wait for the next trade (minutes,
    on a quiet market). It is heard at once all the same; so is an order that ends meanwhile."""
    bot = live_bot
    taking_in, go_on = threading.Event(), threading.Event()
    real = user_streams.take_in_fills

    def slow_first(credential_id: int, fills: list[Any]) -> list[int]:
        if not taking_in.is_set():
            taking_in.set()
            go_on.wait(10)
        return real(credential_id, fills)

    monkeypatch.setattr(user_streams, "take_in_fills", slow_first)
    first, second, third = bot.orders.filter(side="buy", status="open").order_by("-price")[:3]
    with Running() as running:
        came_up(running, bot)
        running.waker.run = lambda bot_id: True  # no cycle books the rows: they stay to count
        fake.fill_part(first.client_order_id, first.amount)
        assert taking_in.wait(10)
        fake.fill_part(second.client_order_id, second.amount)  # while the first is taken in
        fake.user_cancel(third.client_order_id)
        due = Bot.objects.get(pk=bot.pk).rest_due_at
        until(
            lambda: (
                {(e.get("C") or e.get("c"), e.get("X")) for e in streams.pushed}
                >= {(second.client_order_id, "FILLED"), (third.client_order_id, "CANCELED")}
            )
        )
        time.sleep(0.3)  # the client has them: its loop runs while the first is taken in
        go_on.set()
        until(lambda: StreamedFill.objects.filter(bot=bot).count() == 2, timeout=5)
        until(lambda: Bot.objects.get(pk=bot.pk).rest_due_at != due, timeout=5)
    assert sorted(StreamedFill.objects.filter(bot=bot).values_list("client_order_id", flat=True)
                  ) == sorted([first.client_order_id, second.client_order_id])  # fmt: skip


def test_a_streamed_fill_goes_out_before_a_due_rest_reconciliation(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    """A bot due for REST (here: an order of its ended on the exchange's side) that hears of a
    fill sends the fill's counter-order first, then asks REST."""
    bot = live_bot
    with Running() as running:
        came_up(running, bot)
        Bot.objects.filter(pk=bot.pk).update(rest_due_at=timezone.now())
        first = len(fake.requests)
        top_buy = max(o.price for o in bot.orders.filter(side="buy", status="open"))
        fake.set_price("BTCUSDT", str(top_buy - 1))
        until(lambda: bot.orders.filter(side="sell", price__gt=top_buy, status="open").count()
              > 4)  # fmt: skip
        until(lambda: rest_synced_since_up(bot) and Bot.objects.get(pk=bot.pk).rest_synced_at
              > Bot.objects.get(pk=bot.pk).rest_due_at)  # fmt: skip
        until(settled(running, bot))
    asked = [(r.method, r.path) for r in fake.requests[first:]]
    sent = asked.index(("POST", "/api/v3/order"))
    assert ("GET", "/api/v3/myTrades") in asked[sent:]  # the reconciliation came after it
    assert ("GET", "/api/v3/myTrades") not in asked[:sent]
    assert ExchangeFillRecord.objects.filter(order__price=top_buy, bot=bot).count() == 1
    assert resting(fake) == db_resting(bot)


def point_at(port: int) -> None:
    """A wake-up process's setup: the app's ccxt clients built against the test's fake."""
    fake = SimpleNamespace(
        api_key=API_KEY, secret=SECRET, port=port, base_url=f"http://127.0.0.1:{port}/api/v3"
    )
    exchange.CLIENT_FACTORY = lambda name, k, s: FakeBinance.ccxt_client(fake, k, s)  # type: ignore


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="the test database is in this process's memory"
)
def test_cycles_woken_in_processes_of_their_own_send_the_counter_order(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    """As run_user_streams runs them on PostgreSQL: the feed's process hears the fill, a
    process of its own (Django set up on the same database) books it and sends the sell."""
    bot = live_bot
    cycles = InProcesses(tasks.fill_cycle, 2, setup=f"{__name__}.point_at", setup_args=(fake.port,))
    try:
        with Running(cycles) as running:
            came_up(running, bot)
            top_buy = max(o.price for o in bot.orders.filter(side="buy", status="open"))
            set_price(fake, str(top_buy - 1))
            # No cycle runs in this process: the sell went out from a wake-up process.
            until(lambda: bot.orders.filter(side="sell", price__gt=top_buy, status="open")
                  .count() > 4, timeout=30)  # fmt: skip
            until(settled(running, bot))
    finally:
        cycles.shutdown()
    bought = bot.orders.get(side="buy", price=top_buy)
    assert bought.status == Order.Status.FILLED
    assert ExchangeFillRecord.objects.filter(order=bought).count() == 1
    assert resting(fake) == db_resting(bot)


def test_idle_cycles_with_the_stream_up_ask_the_exchange_nothing(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    bot = live_bot
    with Running() as running:
        came_up(running, bot)
        running.waker.run = lambda bot_id: running.woken.append(bot_id) or True  # chain only
        before = reads(fake)
        since = user_streams.up_since(bot.credential_id)
        for _ in range(10):
            tasks.cycle_once(bot.pk)  # the chain's cycles, as Huey runs them
        if user_streams.up_since(bot.credential_id) == since:  # (no reconnect on a busy machine)
            assert reads(fake) == before  # ten cycles over REST would read twenty times
        # The safety net: once LIVE_RECONCILE_SECONDS (±10 %) have gone by, a cycle asks REST.
        Bot.objects.filter(pk=bot.pk).update(
            rest_synced_at=timezone.now() - timezone.timedelta(seconds=331)
        )
        asked = fake.calls("GET", "/api/v3/openOrders")
        tasks.cycle_once(bot.pk)
        assert fake.calls("GET", "/api/v3/openOrders") == asked + 1


def test_an_order_cancelled_on_the_exchange_sends_the_bot_to_rest(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    bot = live_bot
    with Running() as running:
        came_up(running, bot)
        victim = bot.orders.filter(side="buy", status="open").order_by("price").first()
        fake.user_cancel(victim.client_order_id)
        # The stream's CANCELED report wakes the bot, which looks the order up over REST and
        # sends its line again under a new id.
        until(lambda: bot.orders.filter(slot=victim.slot, status="open").exclude(
            pk=victim.pk).exists())  # fmt: skip
        until(settled(running, bot))
    assert resting(fake) == db_resting(bot)
    assert len(resting(fake)) == 9


def test_a_stream_gap_loses_no_fill(
    live_bot: Bot, fake: FakeBinance, streams: FakeBinanceStreams
) -> None:
    """The user stream is down for 30 s of the exchange's time while the market runs through
    the grid: nothing is missed, each fill is booked once, and the grid is whole again."""
    bot = live_bot
    clock = {"ms": fake.now_ms()}
    fake.clock = lambda: clock["ms"]
    with Running() as running:
        came_up(running, bot)
        streams.offline()  # the network is down: connections dropped, new ones refused
        until(lambda: user_streams.up_since(bot.credential_id) is None)
        lines = sorted(o.price for o in bot.orders.filter(status="open"))
        already = len(fake.trades)
        start_fills = set(
            ExchangeFillRecord.objects.filter(bot=bot).values_list("trade_id", flat=True)
        )
        for step in range(30):  # 30 s of the exchange's time, the price swinging
            clock["ms"] += 1000
            price = lines[0] - 1 if step % 2 == 0 else lines[-1] + 1
            set_price(fake, str(price))
        grid = {o.order_id for o in fake.orders("BTCUSDT") if o.type != "MARKET"}
        ours = [t for t in fake.trades[already:] if t.order_id in grid]
        assert len(ours) >= 9, "the market crossed the whole grid while the stream was down"
        assert ExchangeFillRecord.objects.filter(bot=bot).count() == len(start_fills)
        streams.online()
        until(stream_up(bot), timeout=20)
        until(lambda: ExchangeFillRecord.objects.filter(bot=bot).exclude(
            trade_id__in=start_fills).count() >= len(ours), 20)  # fmt: skip
        until(settled(running, bot))
    booked = list(
        ExchangeFillRecord.objects.filter(bot=bot)
        .exclude(trade_id__in=start_fills)
        .values_list("trade_id", flat=True)
    )
    assert sorted(booked) == sorted(str(t.trade_id) for t in ours)
    assert len(booked) == len(set(booked))
    # The grid is whole again: what rests on the exchange is what the books say is open (the
    # lines the price has passed wait as pending, post-only orders that would cross).
    assert resting(fake) == {
        (o.client_order_id, o.side, o.price) for o in bot.orders.filter(status="open")
    }
    assert resting(fake)


def test_exchange_maintenance_pauses_live_bots_and_they_carry_on_after(
    live_bot: Bot, fake: FakeBinance
) -> None:
    from market import status

    bot = live_bot
    tasks.cycle_once(bot.pk)
    fake.maintenance = True
    assert status.check("binance", client=fake.ccxt_client()) == "maintenance"
    before = len(fake.requests)
    top_buy = max(o.price for o in bot.orders.filter(side="buy", status="open"))
    set_price(fake, str(top_buy - 1))  # a fill during maintenance waits for it to end
    tasks.cycle_once(bot.pk)
    assert len(fake.requests) == before, "nothing is asked or sent during maintenance"
    assert "system maintenance" in bot.events.order_by("-id").first().message
    fake.maintenance = False
    assert status.check("binance", client=fake.ccxt_client()) == "ok"
    tasks.cycle_once(bot.pk)
    assert bot.orders.get(side="buy", price=top_buy).status == Order.Status.FILLED
    assert resting(fake) == db_resting(bot)
