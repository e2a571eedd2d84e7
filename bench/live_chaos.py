"""Live orders under fire: several live bots on one fake Binance account, random price paths,
and faults at random points, with the books checked after every step (issue 11).

    .venv/bin/python bench/live_chaos.py [--seed S] [--faults N] [--bots B] [--cycles C]

The bots are the real ones (``bots.cycle.run_cycle``, ``bots.services``), through the real
ccxt client and gateway, against the fake exchange of ``tests/fakes`` in simulated time (its
clock, Django's and the gateway's move together, so a 60 s not-found window costs nothing).
The faults: creates accepted and then answered 5xx or dropped, not-found windows of up to
60 s, cancels that race a fill, partial fills, cancels and expiries on the exchange's side,
lost answers and 5xx/429 on any call, trades that reach the trade list late, a stale feed,
and the worker killed between any two exchange calls (a fresh gateway picks up, as a fresh
process would). Stops, stop-losses and restarts happen along the way.

After every step: no client id is on the exchange twice (so no market order ran twice); after
every cycle that met no fault: every open order with our prefix is one database row of its
bot, each bot's books (quote, base and dust) equal the sum of its run's fills on the exchange
exactly, and a stopped bot has nothing resting. At the end, with the faults off, every bot is
stopped and every trade of ours on the exchange is in some bot's books. Prints one line,
``live-chaos: <F> faults, <C> cycles, <D> duplicate orders, <O> orphan orders,
<L> ledger mismatches`` (on one line), and exits non-zero unless D = O = L = 0. Without
DATABASE_URL it runs on a throwaway SQLite.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

P0 = Decimal("100000")
API_KEY, SECRET = "chaos-key-0123456789abcdef", "chaos-secret-0123456789abcdef"
ACCOUNT_USDT = Decimal("100000")
LOST = ("drop", 500, 502, 503)
# Steps a run may take per fault or cycle it is to reach: beyond, it stalled (and says why).
STEPS_PER_GOAL = 20


class WorkerKilled(BaseException):
    """The worker died here, between two exchange calls: nothing after this line ran. A
    BaseException, so no ``except Exception`` in the code under test can swallow it."""


@dataclass
class Result:
    faults: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    duplicates: set[str] = field(default_factory=set)
    orphans: set[str] = field(default_factory=set)
    mismatches: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.orphans or self.mismatches)

    def line(self) -> str:
        return (
            f"live-chaos: {sum(self.faults.values())} faults, {self.cycles} cycles, "
            f"{len(self.duplicates)} duplicate orders, {len(self.orphans)} orphan orders, "
            f"{len(self.mismatches)} ledger mismatches"
        )


class Clock:
    """Simulated time, shared by the fake exchange (ms), Django and the gateway."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.at

    def ms(self) -> int:
        return int(self.at.timestamp() * 1000)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def feed(price: Decimal, now: datetime) -> None:
    """The market feed for BTC/USDT: the minute's candle and the latest price, as the feed
    process writes them."""
    from market.models import Candle, LatestPrice
    from market.services import cache_price

    minute = now.replace(second=0, microsecond=0)
    Candle.objects.update_or_create(
        exchange="binance", symbol="BTC/USDT", timeframe="1m", open_time=minute,
        defaults={"open": price, "high": price, "low": price, "close": price,
                  "volume": Decimal(1)},
    )  # fmt: skip
    cache_price("binance", "BTC/USDT", price, now)
    LatestPrice.objects.update_or_create(
        exchange="binance", symbol="BTC/USDT", defaults={"price": price, "at": now}
    )


def past_paper_first(credential: Any) -> None:
    """A run about live trading, not about going live: its trader is past paper first (an
    operator's waiver, as the admin writes it) and the keys were verified when saved; each
    start still checks them with the exchange."""
    from django.utils import timezone

    from bots.models import LiveGateWaiver

    LiveGateWaiver.objects.get_or_create(
        user=credential.owner, defaults={"reason": "a benchmark's trader"}
    )
    credential.verified_at = timezone.now()
    credential.save(update_fields=["verified_at"])


class Trouble:
    """Faults that act inside one exchange call: every ccxt client the app builds goes
    through ``fetch`` here. ``kill_at``: the worker dies before (or, ``kill_after``, right
    after) its n-th call from now; ``race_cancel``: the next cancel finds its order filled
    a moment before."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.kill_at: int | None = None
        self.kill_after = False
        self.race_cancel = False
        self.failed = 0  # calls that met a fault (an HTTP failure or a kill) in this cycle

    def wrap(self, client: Any) -> Any:
        fetch = client.fetch

        def chaotic(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            self._maybe_kill(after=False)
            if method == "DELETE" and self.race_cancel and urlsplit(url).path.endswith("/order"):
                self.race_cancel = False
                params = dict(parse_qsl(urlsplit(url).query)) | dict(parse_qsl(body or ""))
                self._fill_first(params.get("origClientOrderId", ""))
            try:
                answer = fetch(url, method, headers, body)
            except Exception:
                self.failed += 1
                raise
            self._maybe_kill(after=True)
            return answer

        client.fetch = chaotic
        return client

    def _maybe_kill(self, *, after: bool) -> None:
        if self.kill_at is None or self.kill_after != after:
            return
        if self.kill_at > 0:
            self.kill_at -= 1
            return
        self.kill_at = None
        self.failed += 1
        raise WorkerKilled("killed " + ("after" if after else "before") + " an exchange call")

    def _fill_first(self, client_id: str) -> None:
        order = next((o for o in self.fake.open_orders() if o.client_id == client_id), None)
        if order is not None:
            self.fake.fill_part(client_id, order.qty - order.executed)


def run(
    *, seed: int = 1, faults: int = 1000, bots: int = 4, cycles: int = 300, quiet: bool = True
) -> Result:
    """The run, on the database Django is set up with (migrated); used by the test too."""
    from django.utils import timezone

    from market import exchange
    from tests.fakes.fake_binance import FakeBinance

    rng = random.Random(seed)
    clock = Clock()
    fake = FakeBinance(
        api_key=API_KEY, secret=SECRET, clock=clock.ms, hang_seconds=0.2,
        balances={"USDT": ACCOUNT_USDT, "BNB": "5"},
        prices={"BTCUSDT": P0, "BNBUSDT": "600"}, buyer_pays_base=True,
    )  # fmt: skip
    trouble = Trouble(fake)
    saved = (exchange.CLIENT_FACTORY, timezone.now)
    with fake:
        exchange.CLIENT_FACTORY = lambda name, k, s: trouble.wrap(fake.ccxt_client(k, s))
        timezone.now = clock.now  # type: ignore[assignment]
        try:
            return Run(rng, clock, fake, trouble, quiet=quiet).go(faults, bots, cycles)
        finally:
            exchange.CLIENT_FACTORY, timezone.now = saved


class Run:
    def __init__(self, rng: random.Random, clock: Clock, fake: Any, trouble: Trouble,
                 *, quiet: bool) -> None:  # fmt: skip
        self.rng, self.clock, self.fake, self.trouble = rng, clock, fake, trouble
        self.quiet = quiet
        self.result = Result()
        self.price = P0
        self.installation = ""
        self.last_refusal = ""

    # --- the run ------------------------------------------------------------------------------

    def go(self, faults: int, n_bots: int, cycles: int) -> Result:
        from bots.models import Bot

        self.setup_market()
        bots = [self.make_bot(i) for i in range(n_bots)]
        for bot in bots:
            self.start(bot)
        steps = 0
        while sum(self.result.faults.values()) < faults or self.result.cycles < cycles:
            self.step(bots)
            steps += 1
            if steps > STEPS_PER_GOAL * (faults + cycles):  # a run that cannot go on fails
                self.result.mismatches.append(
                    f"stalled: {self.result.cycles} cycles after {steps} steps (no bot could "
                    f"run; the last refusal: {self.last_refusal or 'none'})"
                )
                break
        self.quiesce(bots)
        for bot in Bot.objects.filter(pk__in=[b.pk for b in bots]):
            self.stop(bot)
        self.check_end(bots)
        return self.result

    def step(self, bots: list[Any]) -> None:
        from bots.models import Bot

        self.clock.advance(self.rng.uniform(1, 30))
        self.move_market()
        for _ in range(self.rng.randint(1, 5)):
            self.inject()
        if self.rng.random() < 0.2:
            self.watchdog()
        bot = Bot.objects.get(pk=self.rng.choice(bots).pk)
        if bot.status != Bot.Status.RUNNING:
            if self.rng.random() < 0.3:
                self.start(bot)
            return
        if self.rng.random() < 0.03:
            self.stop(bot, faults_on=True)
            return
        self.cycle(bot)

    def survive(self, action: Callable[[], Any], what: str) -> None:
        """One thing a worker does. Killed, it ends as a dead process would (the next one
        starts with no gateway and no memory); refused, it says why."""
        from bots import gateways
        from bots.errors import BotError

        try:
            action()
        except BotError as e:
            self.last_refusal = f"{what}: {e}"
            self.say(self.last_refusal)
        except WorkerKilled:
            gateways._local.__dict__.clear()

    def cycle(self, bot: Any) -> None:
        from bots import cycle

        self.trouble.failed = 0
        self.survive(lambda: cycle.run_cycle(bot.pk), f"cycle {bot.pk}")
        self.result.cycles += 1
        self.check_duplicates()
        if not self.trouble.failed:
            self.check_books(bot)

    # --- the world ----------------------------------------------------------------------------

    def setup_market(self) -> None:
        from django.contrib.auth import get_user_model

        from accounts.models import ExchangeCredential
        from bots.models import Installation
        from market import services as market_services

        # The installation's id part from the seed, so a run is the same run every time.
        prefix = "c" + "".join(
            self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in "abc"
        )
        Installation.objects.get_or_create(pk=1, defaults={"order_prefix": prefix})
        user = get_user_model().objects.create_user(email="chaos@example.com", password="x")
        self.credential = ExchangeCredential(owner=user, label="chaos")
        self.credential.set_keys(API_KEY, SECRET)
        self.credential.save()
        self.user = user
        past_paper_first(self.credential)
        market_services.load_market_rules("binance", "BTC/USDT")
        self.feed()

    def make_bot(self, i: int) -> Any:
        from bots.models import Bot

        width = Decimal(self.rng.choice([2, 3, 4, 5]))
        config = {
            "capital": str(self.rng.choice([800, 1000, 1500])),
            "lower_bound": str(P0 * (100 - width) / 100),
            "upper_bound": str(P0 * (100 + width) / 100),
            "grid_levels": str(self.rng.choice([10, 12, 16])),
            "spacing": self.rng.choice(["arithmetic", "geometric"]),
            "stop_loss_pct": str(self.rng.choice([0, 3, 5])),
            "max_daily_loss": "0",
            "take_profit": "",
        }
        return Bot.objects.create(
            owner=self.user, name=f"chaos {i}", symbol="BTC/USDT", config=config,
            mode=Bot.Mode.LIVE, credential=self.credential,
        )  # fmt: skip

    def feed(self, *, stale: bool = False) -> None:
        if not stale:
            feed(self.price, self.clock.now())

    def move_market(self) -> None:
        """A random walk that stays around P0, with now and then a fall through the stops."""
        drift = (P0 - self.price) / P0 / 20
        change = Decimal(str(round(self.rng.gauss(0, 0.004), 6))) + drift
        if self.rng.random() < 0.01:
            change = Decimal("-0.06")
        self.price = max(
            P0 * Decimal("0.85"), (self.price * (1 + change)).quantize(Decimal("0.01"))
        )
        self.fake.set_price("BTCUSDT", self.price)
        stale = self.rng.random() < 0.05
        if stale:
            self.result.faults["stale feed"] += 1
        self.feed(stale=stale)

    def ours(self) -> list[Any]:
        from bots.grid import order_ids

        return [o for o in self.fake.open_orders() if order_ids.key_of(o.client_id)]

    def inject(self) -> None:
        fake, rng = self.fake, self.rng
        kind = rng.choice([
            "accepted then lost", "not-found window", "partial fill", "user cancel", "expiry",
            "lost answer", "5xx or 429", "worker killed", "cancel races a fill", "trades late",
        ])  # fmt: skip
        if kind == "accepted then lost":
            fake.accept_then_fail_response("/order", rng.choice(LOST), method="POST")
        elif kind == "not-found window":
            fake.not_found_ms = rng.choice([0, rng.randint(1_000, 60_000)])
        elif kind in ("partial fill", "user cancel", "expiry"):
            orders = self.ours()
            if not orders:
                return
            order = rng.choice(orders)
            if kind == "partial fill":
                step = Decimal("0.00001")
                left = order.qty - order.executed
                part = (left * Decimal(rng.uniform(0.1, 0.9)) / step).to_integral_value() * step
                if not 0 < part < left:
                    return
                fake.fill_part(order.client_id, part)
            elif kind == "user cancel":
                fake.user_cancel(order.client_id)
            else:
                fake.expire(order.client_id, rng.choice(["EXPIRED", "EXPIRED_IN_MATCH"]))
        elif kind == "lost answer":
            path, method = rng.choice([("/order", "DELETE"), ("/order", "GET"),
                                       ("/openOrders", "GET"), ("/myTrades", "GET")])  # fmt: skip
            fake.accept_then_fail_response(path, rng.choice(LOST), method=method)
        elif kind == "5xx or 429":
            path = rng.choice(["/order", "/openOrders", "/myTrades", "/account", "/allOrders"])
            status = rng.choice([429, 500, 503, "drop"])
            fake.fail_next(path, status, code=-1003 if status == 429 else None,
                           msg="Too many requests." if status == 429 else None)  # fmt: skip
        elif kind == "worker killed":
            self.trouble.kill_at = rng.randint(0, 10)
            self.trouble.kill_after = rng.random() < 0.5
        elif kind == "cancel races a fill":
            self.trouble.race_cancel = True
        elif kind == "trades late":
            fake.trade_delay_ms = rng.choice([0, rng.randint(1_000, 30_000)])
        self.result.faults[kind] += 1

    def watchdog(self) -> None:
        """The periodic task that finishes starts whose buy went out but did not finish."""
        from bots import starting

        self.trouble.failed = 0
        self.survive(starting.finish_unfinished, "finish starts")

    def start(self, bot: Any) -> None:
        from bots import services

        self.survive(lambda: services.start_bot(bot), f"start {bot.pk}")

    def stop(self, bot: Any, *, faults_on: bool = False) -> None:
        """A Stop from the page; with the faults off, it is retried cycle by cycle until done."""
        from bots import services
        from bots.models import Bot

        for _ in range(1 if faults_on else 20):
            self.survive(lambda: services.stop_bot(bot), f"stop {bot.pk}")
            bot.refresh_from_db()
            if bot.status != Bot.Status.RUNNING:
                return
            self.clock.advance(100)
            self.cycle(bot)
            bot.refresh_from_db()
            if bot.status != Bot.Status.RUNNING:
                return
        if not faults_on:
            self.result.mismatches.append(f"bot {bot.pk} did not stop: {bot.stopping_reason}")

    def quiesce(self, bots: list[Any]) -> None:
        """The faults end; time passes; every bot catches up with the exchange."""
        from bots.models import Bot

        fake = self.fake
        fake.not_found_ms = fake.trade_delay_ms = 0
        fake._failures.clear()
        self.trouble.kill_at, self.trouble.race_cancel = None, False
        for _ in range(3):
            self.clock.advance(100)
            self.feed()
            self.watchdog()
            for bot in Bot.objects.filter(pk__in=[b.pk for b in bots], status="running"):
                self.cycle(bot)

    # --- the invariants -----------------------------------------------------------------------

    def check_duplicates(self) -> None:
        from bots.grid import order_ids

        counts = Counter(o.client_id for o in self.fake.orders() if order_ids.key_of(o.client_id))
        for client_id, n in counts.items():
            if n > 1 and client_id not in self.result.duplicates:
                self.result.duplicates.add(client_id)
                self.say(f"DUPLICATE {client_id} x{n}")

    def check_books(self, bot: Any) -> None:
        from bots.grid import order_ids
        from bots.models import Bot, Order

        bot = Bot.objects.get(pk=bot.pk)
        mine = [o for o in self.fake.open_orders() if order_ids.belongs_to(o.client_id, bot.key)]
        if bot.status != Bot.Status.RUNNING and not bot.stopping_reason:
            for o in mine:
                self._orphan(o.client_id, f"bot {bot.pk} is {bot.status} with {o.client_id} open")
        else:
            booked = Counter(
                Order.objects.resting()
                .filter(client_order_id__in=[o.client_id for o in mine])
                .values_list("client_order_id", flat=True)
            )
            for o in mine:
                if booked[o.client_id] != 1:
                    self._orphan(o.client_id, f"{o.client_id} open, {booked[o.client_id]} rows")
        self.check_ledger(bot)

    def _orphan(self, client_id: str, why: str) -> None:
        if client_id not in self.result.orphans:
            self.result.orphans.add(client_id)
            self.say(f"ORPHAN {why}")

    def check_ledger(self, bot: Any) -> None:
        """The run's books against its fills on the exchange (the fake's own trades)."""
        from bots.grid import order_ids

        if bot.engine_state is None:
            return
        engine = bot.engine()
        by_order = {o.order_id: o for o in self.fake.orders()}
        base, quote = Decimal(0), bot.capital
        for t in self.fake.trades:
            order = by_order[t.order_id]
            if not order_ids.belongs_to(order.client_id, bot.key):
                continue
            recorded = bot.exchange_fills.filter(trade_id=str(t.trade_id)).first()
            if recorded is None:
                continue  # not seen by the bot yet (it was late, or came after its last look)
            sign = 1 if order.side == "BUY" else -1
            base += sign * t.qty
            quote -= sign * t.price * t.qty
            if t.commission_asset == "BTC":
                base -= t.commission
            else:
                quote -= recorded.fee_quote
        if engine.base + engine.dust != base or engine.quote != quote:
            what = (
                f"bot {bot.pk} ({bot.key}): books base {engine.base}+{engine.dust} quote "
                f"{engine.quote}, fills base {base} quote {quote}"
            )
            if what not in self.result.mismatches:
                self.result.mismatches.append(what)
                self.say(f"LEDGER {what}")

    def check_end(self, bots: list[Any]) -> None:
        from bots.grid import order_ids
        from bots.models import Bot, ExchangeFillRecord

        for o in self.ours():
            self._orphan(o.client_id, f"{o.client_id} still open after every bot stopped")
        recorded = set(ExchangeFillRecord.objects.values_list("trade_id", flat=True))
        by_order = {o.order_id: o for o in self.fake.orders()}
        for t in self.fake.trades:
            if order_ids.key_of(by_order[t.order_id].client_id) and str(t.trade_id) not in recorded:
                self.result.mismatches.append(f"trade {t.trade_id} is in no bot's books")
                self.say(f"LEDGER trade {t.trade_id} of {by_order[t.order_id].client_id} lost")
        for bot in Bot.objects.filter(pk__in=[b.pk for b in bots]):
            self.check_ledger(bot)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)


@contextmanager
def django_on_a_throwaway_database() -> Iterator[None]:
    os.environ.setdefault("AIBO_DATA_DIR", tempfile.mkdtemp(prefix="aibo-chaos-"))
    os.environ.setdefault("SECRET_KEY", "chaos-" + "x" * 60)
    os.environ.setdefault("LOG_LEVEL", "CRITICAL")
    os.environ["DJANGO_SETTINGS_MODULE"] = "aibo.settings"
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.MARKET_FEED = "live"  # live bots trade on live prices only
    call_command("migrate", verbosity=0)
    yield


def main(
    argv: list[str] | None = None, *, setup: Callable[[], Any] = django_on_a_throwaway_database
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--bots", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--verbose", action="store_true", help="name each violation on stderr")
    args = parser.parse_args(argv)
    with setup():
        result = run(seed=args.seed, faults=args.faults, bots=args.bots, cycles=args.cycles,
                     quiet=not args.verbose)  # fmt: skip
    if args.verbose:
        print(dict(result.faults), file=sys.stderr)
    print(result.line())
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
