"""Going live safely (issue 13, the bots' side): paper first, keys checked at every start, the
pair typed to confirm, no edits of a running live bot, and capital no account can overcommit.

Live bots trade on the local fake Binance through the real ccxt client (test_live_trading's
market, exchange and committed start)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.models import ExchangeCredential
from bots import config as schema
from bots import cycle, live_trading, services, starting
from bots.errors import BotError, LiveError
from bots.grid.engine import GridEngine
from bots.models import Bot, BotEvent, LiveGateWaiver, Order, Trade
from market.precision import floor_amount, round_price
from tests.bots import test_live_trading
from tests.bots.conftest import open_live_gate
from tests.bots.test_live_trading import API_KEY, CONFIG, P0, SECRET
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
# The live-trading tests' market (rules, a candle, a fresh price), exchange and committed start.
market = test_live_trading.market
fake = test_live_trading.fake
start_live = test_live_trading.start_live


def credential(owner: Any, *, label: str = "main", verified: bool = True, **fields: Any) -> Any:
    cred = ExchangeCredential(
        owner=owner, label=label, verified_at=timezone.now() if verified else None, **fields
    )
    cred.set_keys(API_KEY, SECRET)
    cred.save()
    return cred


@pytest.fixture
def real_keys(user: Any) -> ExchangeCredential:
    """Verified keys for real money; the user is NOT past paper first."""
    return credential(user)


@pytest.fixture
def live_bot(market: None, make_bot: Callable[..., Bot], real_keys: Any, fake: FakeBinance) -> Bot:
    return make_bot(CONFIG, name="Live grid", mode=Bot.Mode.LIVE, credential=real_keys)


def ran(bot: Bot, *spans: tuple[datetime, datetime | None]) -> None:
    """Write the bot's runs as its start and stop events; a span ending in None runs now."""
    for start, stop in spans:
        event = BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.STARTED, message="Started")
        BotEvent.objects.filter(pk=event.pk).update(at=start)
        if stop is None:
            Bot.objects.filter(pk=bot.pk).update(status=Bot.Status.RUNNING, started_at=start)
        else:
            event = BotEvent.objects.create(bot=bot, kind=BotEvent.Kind.STOPPED, message="Stop")
            BotEvent.objects.filter(pk=event.pk).update(at=stop)


def round_trip(bot: Bot) -> Trade:
    sell = Order.objects.create(
        bot=bot, slot=0, side="sell", price=Decimal(101000), amount=Decimal("0.001"),
        status=Order.Status.FILLED, client_order_id=f"trip-{bot.pk}",
    )  # fmt: skip
    return Trade.objects.create(
        bot=bot, slot=0, sell_order=sell, amount=Decimal("0.001"), buy_price=Decimal(100000),
        sell_price=Decimal(101000), profit=Decimal("0.8"), fees=Decimal("0.2"),
        closed_at=timezone.now(),
    )  # fmt: skip


def paper(make_bot: Callable[..., Bot], name: str = "Practice") -> Bot:
    return make_bot(CONFIG, name=name)


# --- paper first -----------------------------------------------------------------------------


def test_a_new_user_cannot_start_a_live_bot_and_the_form_and_page_say_what_is_missing(
    client, user, live_bot, fake, start_live
):
    with pytest.raises(LiveError, match="Paper first: run a paper bot for 24 hours and complete"):
        start_live(live_bot)
    live_bot.refresh_from_db()
    assert live_bot.status == Bot.Status.STOPPED and fake.orders() == []

    client.force_login(user)
    page = client.get(f"/bots/{live_bot.pk}/").text
    assert f'id="bot-{live_bot.pk}-going-live"' in page
    assert "Paper first: run a paper bot for 24 hours and complete one round trip" in page
    assert f'disabled aria-describedby="bot-{live_bot.pk}-going-live"' in page
    form = client.get("/bots/new/").text
    assert 'id="live-gate"' in form
    assert "run a paper bot for 24 hours and complete one round trip" in form

    # Pressed anyway: the server says the same and asks for no confirmation.
    answer = client.post(f"/bots/{live_bot.pk}/start/", headers=HX).text
    assert "did not start: Paper first" in answer and "<dialog" not in answer
    assert fake.orders() == []


def test_hours_are_the_runs_summed_not_the_first_start_to_now(user, make_bot, market):
    practice = paper(make_bot)
    now = timezone.now()
    day = timedelta(days=1)
    ran(
        practice,
        (now - 10 * day, now - 10 * day + timedelta(hours=4)),
        (now - 2 * day, now - 2 * day + timedelta(hours=3)),
    )
    gate = starting.live_gate(user.pk, now=now)
    assert gate.ran == timedelta(hours=7) and not gate.open
    assert gate.missing == "run a paper bot 17 more hours and complete one round trip"

    ran(practice, (now - timedelta(hours=16, minutes=30), None))  # running now
    round_trip(practice)
    gate = starting.live_gate(user.pk, now=now)
    assert gate.ran == timedelta(hours=23, minutes=30)
    assert gate.missing == "keep Practice running 1 more hour"


def test_a_paper_bot_past_the_hours_with_a_round_trip_opens_the_gate(
    user, make_bot, live_bot, fake, start_live
):
    practice = paper(make_bot)
    now = timezone.now()
    ran(practice, (now - timedelta(hours=30), now - timedelta(hours=5)))
    assert starting.live_gate(user.pk).missing == (
        "complete one round trip with Practice (it has run the 24 hours)"
    )
    round_trip(practice)
    assert starting.live_gate(user.pk).open

    start_live(live_bot)
    live_bot.refresh_from_db()
    assert live_bot.is_running


def test_live_gate_hours_is_a_setting(user, make_bot, market, settings):
    practice = paper(make_bot)
    now = timezone.now()
    ran(practice, (now - timedelta(hours=2), now))
    round_trip(practice)
    assert not starting.live_gate(user.pk).open
    settings.LIVE_GATE_HOURS = 2
    assert starting.live_gate(user.pk).open


def test_another_users_paper_bot_does_not_open_the_gate(user, other_user, make_bot, market):
    theirs = make_bot(CONFIG, owner=other_user)
    ran(theirs, (timezone.now() - timedelta(hours=48), timezone.now()))
    round_trip(theirs)
    assert not starting.live_gate(user.pk).open
    assert starting.live_gate(other_user.pk).open


def test_a_testnet_bot_needs_no_gate_and_counts_as_paper(user, make_bot, market, real_keys):
    testnet = credential(user, label="testnet", testnet=True)
    practice = make_bot(CONFIG, name="On testnet", mode=Bot.Mode.LIVE, credential=testnet)
    real = make_bot(CONFIG, name="Real", mode=Bot.Mode.LIVE, credential=real_keys)
    assert starting.going_live_problem(practice) == ""  # no gate on testnet keys
    assert starting.going_live_problem(real).startswith("Paper first")

    ran(practice, (timezone.now() - timedelta(hours=25), timezone.now()))
    round_trip(practice)
    assert starting.live_gate(user.pk).open
    assert starting.going_live_problem(real) == ""


def test_an_admin_waiver_opens_the_gate_and_is_recorded(admin_client, admin_user, user, live_bot):
    assert not starting.live_gate(user.pk).open
    before = timezone.now()
    response = admin_client.post(
        "/admin/bots/livegatewaiver/add/",
        {"user": user.pk, "reason": "Ran grids on another bot for a year", "granted_by": ""},
    )
    assert response.status_code == 302
    waiver = LiveGateWaiver.objects.get(user=user)
    assert waiver.granted_by == admin_user and waiver.granted_at >= before
    assert waiver.reason == "Ran grids on another bot for a year"
    assert starting.live_gate(user.pk).open and starting.going_live_problem(live_bot) == ""
    # A record, not a form: who and when are never typed, and it is not edited afterwards.
    page = admin_client.get(f"/admin/bots/livegatewaiver/{waiver.pk}/change/").text
    assert 'name="reason"' not in page and str(admin_user) in page
    listing = admin_client.get("/admin/bots/livegatewaiver/").text
    assert user.email in listing and "Ran grids on another bot" in listing


def test_deleting_the_waiver_closes_the_gate_again(user, live_bot):
    open_live_gate(user)
    assert starting.live_gate(user.pk).open
    LiveGateWaiver.objects.filter(user=user).delete()
    assert not starting.live_gate(user.pk).open


# --- keys checked at every start ---------------------------------------------------------------


def test_keys_never_verified_cannot_start_a_live_bot(user, live_bot, real_keys, fake, start_live):
    open_live_gate(user)
    ExchangeCredential.objects.filter(pk=real_keys.pk).update(verified_at=None)
    live_bot.refresh_from_db()
    with pytest.raises(LiveError, match="“main” were never verified"):
        start_live(live_bot)
    assert fake.orders() == [] and not Bot.objects.running().exists()


def test_keys_the_exchange_refuses_at_start_refuse_the_start(
    user, market, make_bot, fake_binance, start_live
):
    fake = fake_binance(
        api_key="another-key-entirely", secret="x", balances={"USDT": "5000"},
        prices={"BTCUSDT": P0}, as_exchange=True, timeout_ms=500,
    )  # fmt: skip
    open_live_gate(user)
    bot = make_bot(CONFIG, mode=Bot.Mode.LIVE, credential=credential(user))
    with pytest.raises(LiveError, match="“main” were refused"):
        start_live(bot)
    assert fake.orders() == [] and not Bot.objects.running().exists()


def test_a_key_found_able_to_withdraw_at_start_is_refused_and_unverified(
    user, live_bot, real_keys, fake, start_live
):
    open_live_gate(user)
    fake.api_restrictions["enableWithdrawals"] = True  # changed on Binance since it was saved
    with pytest.raises(LiveError, match="“main” were refused: this key can withdraw funds"):
        start_live(live_bot)
    assert fake.orders() == [] and not Bot.objects.running().exists()
    real_keys.refresh_from_db()
    assert real_keys.verified_at is None
    assert "never verified" in starting.going_live_problem(live_bot)


def test_keys_that_cannot_be_checked_now_refuse_the_start(user, live_bot, fake, start_live):
    open_live_gate(user)
    fake.fail_next("/account", 503, times=3)
    with pytest.raises(LiveError, match="could not be checked now"):
        start_live(live_bot)
    assert fake.orders() == [] and not Bot.objects.running().exists()


def test_every_start_checks_the_keys_again_and_saves_when_they_passed(
    user, live_bot, real_keys, fake, start_live
):
    open_live_gate(user)
    long_ago = timezone.now() - timedelta(days=90)
    ExchangeCredential.objects.filter(pk=real_keys.pk).update(verified_at=long_ago)
    live_bot.refresh_from_db()
    start_live(live_bot)
    real_keys.refresh_from_db()
    assert real_keys.verified_at > long_ago
    assert fake.calls("GET", "/account") >= 1


# --- the confirmation --------------------------------------------------------------------------


def expected_summary(bot: Bot) -> tuple[Decimal, Decimal, int]:
    """The start buy (amount to the step, its quote to the tick) and the grid's order count."""
    grid = schema.grid_config_for(bot.config, exchange=bot.exchange, symbol=bot.symbol)
    engine = GridEngine.start(grid, Decimal(P0))
    assert engine.start_buy is not None
    amount = floor_amount(engine.start_buy.amount, grid.step)
    return amount, round_price(amount * Decimal(P0), grid.tick), len(engine.desired_orders())


def test_start_on_the_page_shows_what_will_happen_and_starts_nothing(client, user, live_bot, fake):
    open_live_gate(user)
    client.force_login(user)
    answer = client.post(f"/bots/{live_bot.pk}/start/", headers=HX)

    text = answer.text
    assert answer.status_code == 200 and f'id="bot-{live_bot.pk}-status"' in text
    assert f'<dialog id="bot-{live_bot.pk}-confirm"' in text and "data-show-modal" in text
    amount, quote, orders = expected_summary(live_bot)
    assert orders == 9
    assert "Binance (real money), keys “main”" in text
    assert "BTC/USDT at 100,000.00 USDT" in text and "1,000.00 USDT" in text
    assert f"{amount.normalize():f} BTC for about {quote:,.2f} USDT" in text
    assert "9 limit orders on 10 price lines" in text
    assert 'name="confirm_pair"' in text and "Type <strong>BTC/USDT</strong>" in text
    live_bot.refresh_from_db()
    assert live_bot.status == Bot.Status.STOPPED and fake.orders() == []


def test_the_server_checks_the_typed_pair(
    client, user, live_bot, fake, django_capture_on_commit_callbacks
):
    open_live_gate(user)
    client.force_login(user)
    url = f"/bots/{live_bot.pk}/start/"
    for typed, says in (("ETH/USDT", "You typed “ETH/USDT”, not BTC/USDT"),
                        ("", "Type BTC/USDT to start it")):  # fmt: skip
        text = client.post(url, {"confirm_pair": typed}, headers=HX).text
        assert says in text and "<dialog" in text
        live_bot.refresh_from_db()
        assert live_bot.status == Bot.Status.STOPPED and fake.orders() == []

    with django_capture_on_commit_callbacks(execute=True):
        text = client.post(url, {"confirm_pair": "btc/usdt"}, headers=HX).text
    assert "Live grid started." in text and "<dialog" not in text
    live_bot.refresh_from_db()
    assert live_bot.is_running and len(fake.open_orders("BTCUSDT")) == 9


def test_start_from_the_dashboard_asks_in_the_card(client, user, live_bot, fake):
    open_live_gate(user)
    client.force_login(user)
    card = f"bot-{live_bot.pk}-card"
    text = client.post(f"/bots/{live_bot.pk}/start/", headers=HX | {"HX-Target": card}).text
    assert f'id="{card}"' in text and f'<dialog id="bot-{live_bot.pk}-confirm"' in text
    assert f'hx-target="#{card}"' in text and "9 limit orders" in text
    assert fake.orders() == []


def test_start_without_htmx_shows_the_page_with_the_dialog(client, user, live_bot, fake):
    open_live_gate(user)
    client.force_login(user)
    response = client.post(f"/bots/{live_bot.pk}/start/")
    assert response.status_code == 200 and "<dialog" in response.text and "<html" in response.text
    assert fake.orders() == []


def test_no_one_confirms_another_users_bot(client, other_user, user, live_bot, fake):
    open_live_gate(user)
    client.force_login(other_user)
    response = client.post(f"/bots/{live_bot.pk}/start/", {"confirm_pair": "BTC/USDT"})
    assert response.status_code == 404
    assert not Bot.objects.running().exists() and fake.orders() == []


def test_paper_bots_start_as_before_without_a_confirmation(client, user, make_bot, market):
    bot = paper(make_bot)
    client.force_login(user)
    text = client.post(f"/bots/{bot.pk}/start/", headers=HX).text
    assert "<dialog" not in text
    bot.refresh_from_db()
    assert bot.is_running


def test_the_command_prints_the_summary_and_starts_only_with_confirm(
    user, live_bot, fake, django_capture_on_commit_callbacks
):
    open_live_gate(user)
    out = StringIO()
    with pytest.raises(CommandError, match=f"bots start {live_bot.pk} --confirm"):
        call_command("bots", "start", str(live_bot.pk), stdout=out)
    printed = out.getvalue()
    amount, quote, _ = expected_summary(live_bot)
    assert "Exchange: Binance (real money), keys “main”" in printed
    assert "Pair: BTC/USDT at 100,000 USDT now" in printed and "Capital: 1,000 USDT" in printed
    assert f"buys {amount.normalize():f} BTC at market for about {quote.normalize():,f}" in printed
    assert "Grid: 9 limit orders on 10 price lines" in printed
    live_bot.refresh_from_db()
    assert live_bot.status == Bot.Status.STOPPED and fake.orders() == []

    with django_capture_on_commit_callbacks(execute=True):
        call_command("bots", "start", str(live_bot.pk), "--confirm", stdout=StringIO())
    live_bot.refresh_from_db()
    assert live_bot.is_running


def test_the_command_says_paper_first_before_any_summary(live_bot, fake):
    out = StringIO()
    with pytest.raises(CommandError, match="Paper first"):
        call_command("bots", "start", str(live_bot.pk), "--confirm", stdout=out)
    assert "Exchange:" not in out.getvalue() and fake.orders() == []


# --- a running live bot is not edited ------------------------------------------------------------


def test_editing_a_running_live_bot_answers_409_and_changes_nothing(
    client, user, live_bot, fake, start_live
):
    open_live_gate(user)
    start_live(live_bot)
    client.force_login(user)
    url = f"/bots/{live_bot.pk}/edit/"

    page = client.get(url)
    assert page.status_code == 409 and "is trading live with real money" in page.text
    changed = CONFIG | {"name": "renamed", "capital": "2000", "symbol": "BTC/USDT",
                        "mode": "live", "credential": live_bot.credential_id}  # fmt: skip
    answer = client.post(url, changed)
    assert answer.status_code == 409 and "Nothing was changed" in answer.text
    live_bot.refresh_from_db()
    assert live_bot.config == CONFIG and live_bot.name == "Live grid" and live_bot.is_running


# --- capital reserved per account ----------------------------------------------------------------


def test_two_bots_cannot_overcommit_one_account(
    user, market, make_bot, real_keys, fake, start_live
):
    open_live_gate(user)
    first = make_bot(CONFIG | {"capital": "3000"}, name="First", mode=Bot.Mode.LIVE,
                     credential=real_keys)  # fmt: skip
    second = make_bot(CONFIG | {"capital": "2500"}, name="Second", mode=Bot.Mode.LIVE,
                      credential=real_keys)  # fmt: skip
    services.start_bot(first)  # committed; its first cycle has not sent the grid yet
    free = fake.balance("USDT")[0]
    assert free >= Decimal(2500)  # the exchange alone would let the second start

    with pytest.raises(LiveError) as refused:
        start_live(second)

    first.refresh_from_db()
    engine = first.engine()
    on_book = sum(
        (o.price * o.amount for o in first.orders.filter(status="open", side="buy")), Decimal(0)
    )
    kept = engine.quote - on_book  # the first bot's quote not in an order: free on the exchange
    spare = free - kept
    assert str(refused.value) == (
        f"Your binance account has {starting.figure(free)} USDT free, and "
        f"{starting.figure(kept)} USDT of it is kept for the orders of your 1 other live "
        f"bot(s) on these keys: {starting.figure(spare)} USDT is left, and this grid needs "
        "2,500 USDT. Lower the capital or stop another bot."
    )
    second.refresh_from_db()
    assert second.status == Bot.Status.STOPPED and not second.orders.exists()
    assert [o.type for o in fake.orders("BTCUSDT") if o.type == "MARKET"] == ["MARKET"]

    cycle.run_cycle(first.pk)  # the first grid's buys go on the book: still no room
    with pytest.raises(LiveError, match="Lower the capital or stop another bot"):
        start_live(second)
    assert [o.type for o in fake.orders("BTCUSDT") if o.type == "MARKET"] == ["MARKET"]


def test_running_bots_at_a_loss_leave_less_to_commit(user, market, make_bot, real_keys, fake):
    """Their capital counts in full against what they hold now: a bot that lost cannot lend
    its loss to the next one."""
    open_live_gate(user)
    first = make_bot(CONFIG, name="First", mode=Bot.Mode.LIVE, credential=real_keys)
    grid = schema.grid_config_for(first.config, exchange="binance", symbol="BTC/USDT")
    engine = GridEngine.start(grid, Decimal(P0))
    first.keep_engine(engine)
    first.status = Bot.Status.RUNNING
    first.last_price = Decimal(P0)
    first.save()
    # The first bot's start buy spent its part; its quote waits for its grid (free), and the
    # coins it bought are worth half what they cost now.
    fake.set_balance("USDT", str(Decimal(5000) - (Decimal(1000) - engine.quote)))
    from market.models import LatestPrice

    LatestPrice.objects.filter(symbol="BTC/USDT").update(price=Decimal(50000))
    second = make_bot(CONFIG | {"capital": "4000"}, name="Second", mode=Bot.Mode.LIVE,
                      credential=real_keys)  # fmt: skip
    gw = live_trading.gateway(second)
    with pytest.raises(LiveError, match="too much. Lower the capital"):
        starting.check_funds(second, gw)
    third = make_bot(CONFIG | {"capital": "3500"}, name="Third", mode=Bot.Mode.LIVE,
                     credential=real_keys)  # fmt: skip
    held = engine.quote + engine.base * Decimal(50000)
    assert Decimal(4000) + held >= Decimal(1000) + Decimal(3500)
    starting.check_funds(third, gw)  # fits: nothing raised


@pytest.mark.django_db(transaction=True)
def test_two_starts_at_once_on_one_account_one_is_refused(
    user, market, make_bot, fake, django_capture_on_commit_callbacks
):
    keys = credential(user)
    open_live_gate(user)
    bots = [
        make_bot(
            CONFIG | {"capital": "3000"}, name=f"Racer {i}", mode=Bot.Mode.LIVE, credential=keys
        )  # fmt: skip
        for i in range(2)
    ]
    ready = threading.Barrier(2)
    outcome: dict[int, str] = {}

    def start(bot: Bot) -> None:
        try:
            ready.wait(timeout=10)
            services.start_bot(bot)
            outcome[bot.pk] = "started"
        except BotError as e:
            outcome[bot.pk] = str(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(v == "started" for v in outcome.values()) == [False, True], outcome
    (refusal,) = (v for v in outcome.values() if v != "started")
    assert "Lower the capital or stop another bot." in refusal
    assert Bot.objects.running().count() == 1
    assert sum(1 for o in fake.orders("BTCUSDT") if o.type == "MARKET") == 1
