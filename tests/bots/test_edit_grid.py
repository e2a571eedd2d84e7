"""Editing a running grid (issue 17): the change shown as a plan of orders, then applied as
shown, or not at all.

Paper: the worked example (GRID_SPEC.md) started at 104 holds 490.202712 USDT and 4.897 BTC
(slot 1's sell at 110), a buy resting at 100. Live: a bot on the fake Binance, its book the
truth after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ExchangeCredential
from bots import cycle, regrid, services
from bots.errors import BotError, ConfigError
from bots.models import Bot, BotEvent, Order, PaperBalance, SendAttempt
from market.models import LatestPrice
from tests.bots.conftest import WORKED_CONFIG, add_candles, make_rules
from tests.fakes.fake_binance import FakeBinance

pytestmark = pytest.mark.django_db

WIDER = {"lower_bound": "95", "upper_bound": "115", "grid_levels": "5"}


def open_orders(bot: Bot) -> list[tuple[int | None, str, Decimal, Decimal]]:
    return sorted(
        (o.slot, o.side, o.price, o.amount) for o in bot.orders.filter(status=Order.Status.OPEN)
    )


def shown(plan: regrid.Plan) -> regrid.Shown:
    return regrid.Shown(plan.digest, plan.price)


@pytest.fixture
def running(worked_bot: Bot) -> Bot:
    services.start_bot(worked_bot)
    worked_bot.refresh_from_db()
    return worked_bot


# --- the plan ---------------------------------------------------------------------------------


def test_the_plan_lists_cancels_places_the_market_buy_and_its_fee_and_changes_nothing(running):
    before, state = open_orders(running), running.engine_state

    plan = services.plan_grid_edit(running, WIDER)

    assert [(o.side, o.price, o.amount) for o in plan.cancels] == [
        ("buy", Decimal(100), Decimal("4.897")), ("sell", Decimal(110), Decimal("4.897")),
    ]  # fmt: skip
    q = Decimal("2.478")  # 1000 at 104 on 95..115, 5 lines
    assert [(o.slot, o.side, o.price, o.amount) for o in plan.places] == [
        (0, "buy", Decimal(95), q), (1, "buy", Decimal(100), q),
        (2, "sell", Decimal(110), q), (3, "sell", Decimal(115), q),
    ]  # fmt: skip
    # 4.956 BTC needed, 4.897 held: 0.059 bought at 104, fee 0.001 * 104 * 0.059.
    assert (plan.market.side, plan.market.amount, plan.market.price) == (
        "buy", Decimal("0.059"), Decimal(104),
    )  # fmt: skip
    assert plan.fee == Decimal("0.006136") and plan.market_quote == Decimal("6.136")
    assert plan.transfer == Decimal("0.509288")  # the start fee the old grid lost, made whole
    assert "range 100–110 changed to 95–115" in plan.notes
    assert "bought 0.059 BTC at 104 at market for the difference; fee 0.00613600 USDT" in (
        plan.notes
    )
    running.refresh_from_db()
    assert open_orders(running) == before and running.engine_state == state
    assert not running.events.filter(kind=BotEvent.Kind.REGRID).exists()


def test_what_is_applied_is_what_the_plan_showed(running):
    plan = services.plan_grid_edit(running, {"capital": "500"})

    done = services.apply_grid_edit(running, {"capital": "500"}, shown=shown(plan))

    running.refresh_from_db()
    assert done.digest == plan.digest
    assert open_orders(running) == sorted((o.slot, o.side, o.price, o.amount) for o in plan.places)
    sale = running.orders.get(kind=Order.Kind.MARKET, client_order_id__endswith="-regrid")
    assert (sale.side, sale.amount, sale.price, sale.fee) == (
        plan.market.side, plan.market.amount, plan.market.price, plan.fee,
    )  # fmt: skip
    assert (sale.side, sale.amount) == ("sell", Decimal("2.449"))
    cancelled = running.orders.filter(status="cancelled", reason="replaced by a new grid")
    assert sorted(o.client_order_id for o in cancelled) == sorted(o.client_id for o in plan.cancels)
    logged = list(
        running.events.filter(kind=BotEvent.Kind.REGRID)
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert logged[0] == plan.headline()
    assert "Sold 2.449 BTC at 104 at market for the difference; fee 0.25469600 USDT." in logged


def test_a_plan_overtaken_by_a_fill_is_refused_with_the_new_one(running):
    plan = services.plan_grid_edit(running, WIDER)
    add_candles([(60_000, "104", "104", "99", "101")])  # the buy at 100 fills
    cycle.run_cycle(running.pk)
    running.refresh_from_db()
    orders = open_orders(running)

    with pytest.raises(regrid.PlanChanged, match="changed since the preview") as refused:
        services.apply_grid_edit(running, WIDER, shown=shown(plan))

    assert refused.value.plan.digest != plan.digest
    running.refresh_from_db()
    assert open_orders(running) == orders and running.config["upper_bound"] == "110"


def test_a_price_moved_beyond_the_drift_since_the_preview_asks_again(running):
    plan = services.plan_grid_edit(running, {"capital": "900"})
    moved = regrid.Shown(plan.digest, plan.price * Decimal("1.02"))

    with pytest.raises(regrid.PlanChanged, match="price moved"):
        services.apply_grid_edit(running, {"capital": "900"}, shown=moved)

    running.refresh_from_db()
    assert running.capital == Decimal(1000)


def test_bad_input_is_refused_in_words_and_changes_nothing(running):
    with pytest.raises(ConfigError, match="upper price"):
        services.plan_grid_edit(running, {"lower_bound": "120"})
    with pytest.raises(BotError, match="paper wallet"):
        PaperBalance.objects.filter(owner=running.owner, asset="USDT").update(free=Decimal(5))
        services.plan_grid_edit(running, {"capital": "3000"})
    running.refresh_from_db()
    assert running.capital == Decimal(1000) and running.generation == 1


# --- live -------------------------------------------------------------------------------------

API_KEY = "live-key-Qw3rTy7890abcd"
SECRET = "live-secret-ZxCvBn123456"
P0 = "100000"
CONFIG = {
    "capital": "1000", "lower_bound": "95000", "upper_bound": "105000", "grid_levels": "10",
    "spacing": "arithmetic", "stop_loss_pct": "0", "max_daily_loss": "0", "take_profit": "",
}  # fmt: skip
SHIFTED = {"lower_bound": "97000", "upper_bound": "107000"}


@pytest.fixture
def fake(fake_binance: Callable[..., FakeBinance]) -> FakeBinance:
    return fake_binance(
        api_key=API_KEY, secret=SECRET, balances={"USDT": "5000"}, prices={"BTCUSDT": P0},
        hang_seconds=1, as_exchange=True, timeout_ms=500,
    )  # fmt: skip


@pytest.fixture
def live_bot(
    db: None, settings: Any, user: Any, live_gate_open: Any, make_bot: Callable[..., Bot],
    fake: FakeBinance, django_capture_on_commit_callbacks: Any,
) -> Bot:  # fmt: skip
    settings.MARKET_FEED = "live"
    make_rules()
    add_candles([(0, P0, P0, P0, P0)])
    LatestPrice.objects.create(exchange="binance", symbol="BTC/USDT", price=Decimal(P0),
                               at=timezone.now())  # fmt: skip
    cred = ExchangeCredential(owner=user, label="main", verified_at=timezone.now())
    cred.set_keys(API_KEY, SECRET)
    cred.save()
    bot = make_bot(CONFIG, mode=Bot.Mode.LIVE, credential=cred)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_bot(bot)
    bot.refresh_from_db()
    return bot


def resting(fake: FakeBinance) -> set[tuple[str, str, Decimal]]:
    return {(o.client_id, o.side.lower(), o.price) for o in fake.orders("BTCUSDT", "NEW")}


def db_resting(bot: Bot) -> set[tuple[str, str, Decimal]]:
    return {
        (o.client_order_id, o.side, o.price)
        for o in bot.orders.filter(status__in=["pending", "open"])
    }


def coins(fake: FakeBinance, asset: str = "BTC") -> Decimal:
    free, locked = fake.balance(asset)
    return free + locked


def test_a_live_change_waits_for_the_pair_typed_and_changes_nothing_before(live_bot, fake):
    book = resting(fake)
    plan = services.plan_grid_edit(live_bot, SHIFTED)

    with pytest.raises(regrid.ConfirmationNeeded) as asked:
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan))
    with pytest.raises(regrid.ConfirmationNeeded, match="You typed “ETH/USDT”"):
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="ETH/USDT")

    assert asked.value.plan.digest == plan.digest
    assert resting(fake) == book
    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "95000"


def test_a_live_change_cancels_on_the_exchange_trades_the_difference_and_rests_the_new_grid(
    live_bot, fake
):
    old_key = live_bot.key
    plan = services.plan_grid_edit(live_bot, SHIFTED)
    assert plan.market is not None and plan.market.side == "buy"  # the range moved up

    done = services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="btcusdt")

    live_bot.refresh_from_db()
    assert live_bot.is_running and live_bot.config["lower_bound"] == "97000"
    assert live_bot.key != old_key
    # The exchange's book is the database's: the new grid only, nothing of the old one.
    assert resting(fake) == db_resting(live_bot)
    assert {price for _cid, _side, price in resting(fake)} == {o.price for o in plan.places}
    assert not any(cid.startswith(f"{old_key}-") for cid, _s, _p in resting(fake))
    # One market buy for the difference, under the new run's id, booked as it filled.
    buys = [o for o in fake.orders("BTCUSDT") if o.type == "MARKET"]
    assert [o.client_id for o in buys][-1] == f"{live_bot.key}-regrid"
    row = live_bot.orders.get(client_order_id=f"{live_bot.key}-regrid")
    assert row.status == "filled" and row.amount == done.market.amount == plan.market.amount
    # The grid's books are the account's coins (the account held none before the start).
    engine = live_bot.engine()
    assert engine.base + engine.dust == coins(fake)
    assert live_bot.events.filter(kind=BotEvent.Kind.REGRID).exists()

    cycle.run_cycle(live_bot.pk)  # the next cycle finds nothing to mend
    live_bot.refresh_from_db()
    assert live_bot.is_running and resting(fake) == db_resting(live_bot)


def test_a_market_order_the_exchange_refuses_leaves_the_old_grid_running(live_bot, fake):
    old_key, config = live_bot.key, dict(live_bot.config)
    plan = services.plan_grid_edit(live_bot, SHIFTED)
    fake.fail_next("/api/v3/order", code=-2010, msg="Account has insufficient balance.",
                   method="POST", client_id=f"{regrid_key(live_bot)}-regrid")  # fmt: skip

    with pytest.raises(BotError, match="did not take the change") as refused:
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="BTC/USDT")

    assert "nothing was traded" in str(refused.value)
    live_bot.refresh_from_db()
    assert live_bot.key == old_key and live_bot.config == config
    assert live_bot.events.filter(
        kind=BotEvent.Kind.REGRID, message__startswith="The new grid was not laid"
    ).exists()
    # The old grid's orders were cancelled on the exchange: the next cycle places them again.
    cycle.run_cycle(live_bot.pk)
    live_bot.refresh_from_db()
    assert live_bot.is_running
    assert resting(fake) == db_resting(live_bot)
    assert len(resting(fake)) == len(live_bot.engine().slots)


def regrid_key(bot: Bot) -> str:
    from bots import ledger

    return ledger.run_key(bot, bot.generation + 1)


def test_a_market_order_of_unknown_outcome_is_never_sent_twice_and_the_old_grid_goes_on(
    live_bot, fake
):
    plan = services.plan_grid_edit(live_bot, SHIFTED)
    cid = f"{regrid_key(live_bot)}-regrid"
    fake.fail_next("/api/v3/order", 503, method="GET", client_id=cid)  # its look-up fails

    with pytest.raises(BotError, match="was not confirmed"):
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="BTC/USDT")

    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "95000"  # the old grid is still the bot's
    cycle.run_cycle(live_bot.pk)  # and the next cycle rests it on the exchange again
    live_bot.refresh_from_db()
    assert resting(fake) == db_resting(live_bot) and len(resting(fake)) == 9
    # Tried again at once, the exchange cannot prove yet that the order never went out.
    with pytest.raises(BotError, match="was not confirmed"):
        again = services.plan_grid_edit(live_bot, SHIFTED)
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(again), typed_pair="BTC/USDT")
    assert not [o for o in fake.orders("BTCUSDT") if o.client_id == cid]
    # Once it can (no trace after the window), the change is made with one order under the id.
    SendAttempt.objects.filter(client_order_id=cid).update(
        first_sent_at=timezone.now() - timedelta(minutes=10)
    )
    again = services.plan_grid_edit(live_bot, SHIFTED)
    services.apply_grid_edit(live_bot, SHIFTED, shown=shown(again), typed_pair="BTC/USDT")

    live_bot.refresh_from_db()
    assert [o.client_id for o in fake.orders("BTCUSDT") if o.client_id == cid] == [cid]
    assert live_bot.config["lower_bound"] == "97000"
    assert resting(fake) == db_resting(live_bot)
    engine = live_bot.engine()
    assert engine.base + engine.dust == coins(fake)


# --- the page ---------------------------------------------------------------------------------

FIELDS = {
    "capital": "1000", "lower_bound": "95", "upper_bound": "115", "grid_levels": "5",
    "spacing": "arithmetic", "stop_loss_pct": "0", "take_profit": "", "max_daily_loss": "0",
}  # fmt: skip


def test_another_users_running_bot_is_a_404_on_every_edit_view(client, other_user, running):
    client.force_login(other_user)
    assert client.get(f"/bots/{running.pk}/grid/").status_code == 404
    assert client.post(f"/bots/{running.pk}/grid/preview/", FIELDS).status_code == 404
    assert client.post(f"/bots/{running.pk}/grid/", FIELDS).status_code == 404
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"


def test_the_bot_page_of_a_running_bot_links_to_edit_grid(client, running):
    client.force_login(running.owner)
    page = client.get(f"/bots/{running.pk}/")
    assert f'href="/bots/{running.pk}/grid/"' in page.text


def test_a_stopped_bot_is_edited_on_the_ordinary_edit_page(client, worked_bot):
    client.force_login(worked_bot.owner)
    response = client.get(f"/bots/{worked_bot.pk}/grid/")
    assert response.status_code == 302 and response.url == f"/bots/{worked_bot.pk}/edit/"


def test_the_preview_shows_the_change_as_orders_and_changes_nothing(client, running):
    client.force_login(running.owner)
    page = client.get(f"/bots/{running.pk}/grid/")
    assert page.status_code == 200 and 'data-testid="diff-none"' in page.text

    diff = client.post(f"/bots/{running.pk}/grid/preview/", FIELDS, headers={"HX-Request": "1"})

    assert diff.status_code == 200
    text = diff.text
    assert f'id="bot-{running.pk}-diff"' in text
    assert '<dd class="num" data-testid="diff-cancels">2</dd>' in text
    assert '4: <span class="buy">2 buys</span>' in text
    assert "0.059 BTC at about 104.00 (6.14 USDT)" in text
    assert '<dd class="num" data-testid="diff-fee">0.006136 USDT</dd>' in text
    assert "Range 100–110 changed to 95–115." in text
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"


def test_bad_input_in_the_preview_says_why_and_offers_no_apply(client, running):
    client.force_login(running.owner)
    diff = client.post(
        f"/bots/{running.pk}/grid/preview/", FIELDS | {"upper_bound": "90"},
        headers={"HX-Request": "1"},
    )  # fmt: skip
    assert "Fix the fields marked above" in diff.text
    assert 'id="id_upper_bound-errors" hx-swap-oob="true"><p class="error"' in diff.text
    assert '<button type="submit" disabled' in diff.text


def test_applying_the_shown_change_lays_the_new_grid_and_logs_it(client, running):
    client.force_login(running.owner)
    plan = services.plan_grid_edit(running, FIELDS)

    response = client.post(
        f"/bots/{running.pk}/grid/", FIELDS | {"plan": plan.digest, "plan_price": plan.price}
    )

    assert response.status_code == 302 and response.url == f"/bots/{running.pk}/"
    running.refresh_from_db()
    assert running.is_running and running.config["upper_bound"] == "115"
    assert open_orders(running) == sorted((o.slot, o.side, o.price, o.amount) for o in plan.places)
    assert running.events.filter(kind=BotEvent.Kind.REGRID, message=plan.headline()).exists()


def test_an_apply_without_the_shown_plan_shows_the_plan_and_changes_nothing(client, running):
    client.force_login(running.owner)

    response = client.post(f"/bots/{running.pk}/grid/", FIELDS | {"plan": "stale"})

    assert response.status_code == 409
    assert "changed since the preview: nothing was changed" in response.text
    assert 'data-testid="diff-cancels">2<' in response.text
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"


def test_an_apply_with_bad_input_changes_nothing(client, running):
    client.force_login(running.owner)
    response = client.post(f"/bots/{running.pk}/grid/", FIELDS | {"capital": "abc"})
    assert response.status_code == 422
    assert "Enter a number" in response.text
    running.refresh_from_db()
    assert running.capital == Decimal(1000)


def test_a_running_live_bot_opens_for_editing_and_its_apply_asks_for_the_pair(
    client, live_bot, fake
):
    client.force_login(live_bot.owner)
    page = client.get(f"/bots/{live_bot.pk}/grid/")
    assert page.status_code == 200 and "Apply on Binance…" in page.text
    fields = dict(FIELDS, lower_bound="97000", upper_bound="107000", grid_levels="10")
    plan = services.plan_grid_edit(live_bot, fields)
    book = resting(fake)

    asked = client.post(
        f"/bots/{live_bot.pk}/grid/", fields | {"plan": plan.digest, "plan_price": plan.price}
    )

    assert asked.status_code == 200 and "data-show-modal" in asked.text
    assert "Type <strong>BTC/USDT</strong> to apply the change" in asked.text
    assert resting(fake) == book  # nothing sent yet

    done = client.post(
        f"/bots/{live_bot.pk}/grid/",
        fields | {"plan": plan.digest, "plan_price": plan.price, "confirm_pair": "BTC/USDT"},
    )

    assert done.status_code == 302
    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "97000"
    assert resting(fake) == db_resting(live_bot)


def test_a_fill_while_the_old_grid_is_cancelled_leaves_the_old_grid_and_shows_the_new_plan(
    live_bot, fake
):
    plan = services.plan_grid_edit(live_bot, SHIFTED)
    top_buy = max(o.price for o in live_bot.orders.filter(side="buy", status="open"))
    fake.set_price("BTCUSDT", str(top_buy - 1))  # fills on the exchange; the bot has not looked

    with pytest.raises(regrid.PlanChanged, match="A fill came in") as refused:
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="BTC/USDT")

    assert refused.value.plan.digest != plan.digest
    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "95000"
    filled = live_bot.orders.get(price=top_buy, side="buy")
    assert filled.status == "filled"  # booked once, by the old grid
    fake.set_price("BTCUSDT", P0)
    cycle.run_cycle(live_bot.pk)  # the old grid rests again, with the fill's counter-order
    live_bot.refresh_from_db()
    assert live_bot.is_running and resting(fake) == db_resting(live_bot)
    assert ("sell", live_bot.engine().lines[filled.slot + 1]) in {
        (side, price) for _cid, side, price in resting(fake)
    }
    engine = live_bot.engine()
    assert engine.base + engine.dust == coins(fake)


def test_a_shown_price_that_is_no_number_shows_the_plan_again_and_changes_nothing(client, running):
    client.force_login(running.owner)
    plan = services.plan_grid_edit(running, FIELDS)
    response = client.post(
        f"/bots/{running.pk}/grid/", FIELDS | {"plan": plan.digest, "plan_price": "NaN"}
    )
    assert response.status_code == 409 and "price of the preview was not sent back" in (
        response.text
    )
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"


# --- the API ----------------------------------------------------------------------------------


def bearer(user: Any) -> dict[str, str]:
    from accounts import tokens

    return {"Authorization": f"Bearer {tokens.issue(user)}"}


def api_post(client: Any, path: str, body: dict[str, Any], user: Any) -> Any:
    return client.post(path, body, content_type="application/json", headers=bearer(user))


def test_the_api_previews_and_applies_a_running_bots_grid_change(client, running):
    body = {"config": FIELDS | {"take_profit": None}}
    preview = api_post(client, f"/api/bots/{running.pk}/grid/preview", body, running.owner)
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["changed"] and len(plan["cancels"]) == 2 and len(plan["places"]) == 4
    assert plan["market"] == {"side": "buy", "price": "104", "amount": "0.059", "fee": "0.006136"}
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"

    path = f"/api/bots/{running.pk}/grid"
    stale = api_post(client, path, body | {"plan": "x", "price": "104"}, running.owner)
    assert stale.status_code == 409 and "changed since the preview" in stale.json()["detail"]
    done = api_post(client, path, body | {"plan": plan["plan"], "price": plan["price"]},
                    running.owner)  # fmt: skip

    assert done.status_code == 200, done.text
    assert done.json()["places"] == plan["places"]
    running.refresh_from_db()
    assert running.config["upper_bound"] == "115"


def test_the_api_grid_change_is_a_404_for_another_user_and_a_409_for_a_stopped_bot(
    client, running, other_user, worked_market, make_bot
):
    body = {"config": FIELDS | {"take_profit": None}}
    other = api_post(client, f"/api/bots/{running.pk}/grid/preview", body, other_user)
    assert other.status_code == 404
    stopped = make_bot(dict(FIELDS))
    answer = api_post(client, f"/api/bots/{stopped.pk}/grid/preview", body, stopped.owner)
    assert answer.status_code == 409 and "not running" in answer.json()["detail"]


# --- the extensions (trigger price, trailing) on a running grid -------------------------------


def test_the_page_keeps_a_running_grids_trailing_and_drops_a_used_trigger(
    client, worked_market, make_bot
):
    bot = make_bot(WORKED_CONFIG | {"trailing_up": "true", "trigger_price": "104"})
    services.start_bot(bot)  # the price is at the trigger: the grid starts at once
    bot.refresh_from_db()
    client.force_login(bot.owner)
    plan = services.plan_grid_edit(bot, FIELDS)

    response = client.post(
        f"/bots/{bot.pk}/grid/", FIELDS | {"plan": plan.digest, "plan_price": plan.price}
    )

    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.config.get("trailing_up") == "true" and "trigger_price" not in bot.config
    assert "trailing up on kept" in plan.notes
    assert "trigger price 104 dropped: the new grid starts at the price now" in plan.notes
    assert bot.engine().desired_orders()  # trading now, not waiting for a trigger


def test_a_grid_still_waiting_for_its_trigger_is_changed_by_stopping_it(worked_market, make_bot):
    bot = make_bot(WORKED_CONFIG | {"trigger_price": "100"})
    services.start_bot(bot)
    bot.refresh_from_db()

    with pytest.raises(BotError, match="waits for its trigger price"):
        services.plan_grid_edit(bot, WIDER)


def test_a_live_change_the_request_budget_cannot_carry_is_refused_before_any_cancel(live_bot, fake):
    from market.exchange import Budget

    budget = Budget("binance", API_KEY)
    weight = next(limit for limit in budget.limits() if limit.kind == "REQUEST_WEIGHT")
    # The exchange says the IP has 50 weight left in this minute.
    budget.after(200, "https://api.binance.com/api/v3/time", {weight.header: weight.limit - 50}, "")
    book, plan = resting(fake), services.plan_grid_edit(live_bot, SHIFTED)

    with pytest.raises(BotError, match="request budget is too busy for this change"):
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="BTC/USDT")

    assert resting(fake) == book
    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "95000"


def test_a_booking_that_fails_after_the_trade_keeps_the_old_grid_and_books_the_trade_once_later(
    live_bot, fake, monkeypatch
):
    plan = services.plan_grid_edit(live_bot, SHIFTED)
    cid = f"{regrid_key(live_bot)}-regrid"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError):
        patched.setattr(regrid.live_trading, "record_start", broken)
        services.apply_grid_edit(live_bot, SHIFTED, shown=shown(plan), typed_pair="BTC/USDT")

    live_bot.refresh_from_db()
    assert live_bot.config["lower_bound"] == "95000"
    assert live_bot.events.filter(message__contains="was not confirmed").exists()
    again = services.plan_grid_edit(live_bot, SHIFTED)
    services.apply_grid_edit(live_bot, SHIFTED, shown=shown(again), typed_pair="BTC/USDT")

    live_bot.refresh_from_db()
    assert [o.client_id for o in fake.orders("BTCUSDT") if o.client_id == cid] == [cid]
    assert resting(fake) == db_resting(live_bot)
    engine = live_bot.engine()
    assert engine.base + engine.dust == coins(fake)


def test_a_link_fills_in_the_new_values_and_shows_their_change(client, running):
    client.force_login(running.owner)
    page = client.get(f"/bots/{running.pk}/grid/?lower_bound=95&upper_bound=115&grid_levels=5")
    assert page.status_code == 200
    assert 'value="115"' in page.text
    assert '<dd class="num" data-testid="diff-cancels">2</dd>' in page.text
    running.refresh_from_db()
    assert running.config["upper_bound"] == "110"
