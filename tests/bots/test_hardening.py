"""Issue 10's findings about bots, one test each: typed numbers are bounded by the one config
schema, and no stored row, whatever it holds, stops the emergency stop, a page or the admin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from bots import services
from bots.errors import ConfigError
from bots.models import BacktestRun, Bot, Order
from tests.bots.conftest import CONFIG, FORM

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("upper_bound", "1e20", "can be at most 1000000"),
        ("upper_bound", "1e308", "can be at most 1000000"),
        ("lower_bound", "1e-18", "must be at least 0.01"),
        ("lower_bound", "1e-308", "Too small"),
        ("capital", "1000001", "at most 1,000,000"),
        ("capital", "1e19", "at most 1,000,000"),
        ("take_profit", "1e20", "can be at most 1000000"),
        ("max_daily_loss", "1e20", "at most the capital"),
    ],
)
def test_a_typed_number_cannot_break_a_users_bots(
    signed_in: Client, price: Any, field: str, value: str, says: str
) -> None:
    response = signed_in.post("/bots/new/", FORM | {field: value})

    assert response.status_code == 200
    assert says in " ".join(response.context["form"].errors.get(field, [])), response.context[
        "form"
    ].errors
    assert not Bot.objects.exists()
    # The preview says the same next to the field, and the service refuses it too.
    preview = signed_in.post("/bots/preview/", FORM | {field: value})
    assert preview.status_code == 200 and says.lower() in preview.text.lower()
    with pytest.raises(ConfigError) as refused:
        services.create_bot(response.context["user"], symbol="BTC/USDT",
                            config=CONFIG | {field: value})  # fmt: skip
    assert refused.value.field == field


@pytest.fixture
def two_running(make_bot: Callable[..., Bot], price: Any) -> tuple[Bot, Bot]:
    healthy, broken = make_bot(dict(CONFIG), name="healthy"), make_bot(dict(CONFIG), name="odd")
    for bot in (healthy, broken):
        services.start_bot(bot)
    return healthy, broken


def _corrupt(bot: Bot) -> None:
    """What an old release let through: a number the decimal column cannot give back (SQLite
    keeps it as a float; Django's decimal converter refuses it), and an absurd config."""
    config = CONFIG | {"upper_bound": "1e308", "capital": "1e308", "lower_bound": "1e-308"}
    Bot.objects.filter(pk=bot.pk).update(config=config)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE bots_bot SET next_sell_price = 1e20, last_equity = 1e308 WHERE id = %s",
                [bot.pk],
            )


def test_an_unreadable_row_does_not_stop_the_emergency_stop(
    signed_in: Client, two_running: tuple[Bot, Bot]
) -> None:
    healthy, broken = two_running
    _corrupt(broken)

    response = signed_in.post("/bots/emergency-stop/", headers=HX)

    assert response.status_code == 200
    healthy.refresh_from_db()
    assert healthy.status == Bot.Status.STOPPED
    assert not Order.objects.filter(bot=healthy).resting().exists()
    # The odd one is halted too: no more cycles, its paper orders cancelled.
    assert Bot.objects.filter(pk=broken.pk).values_list("status", flat=True)[0] != "running"
    assert not Order.objects.filter(bot_id=broken.pk).resting().exists()


def test_an_unreadable_row_does_not_stop_the_command_line(
    user: Any, two_running: tuple[Bot, Bot]
) -> None:
    healthy, broken = two_running
    _corrupt(broken)
    out = StringIO()

    call_command("bots", "list", stdout=out)
    listed = [line.split()[0] for line in out.getvalue().splitlines()[1:]]
    assert str(healthy.pk) in listed and str(broken.pk) in listed
    call_command("emergency_stop", "--user", user.email, stdout=StringIO(), stderr=StringIO())

    assert not Bot.objects.filter(status=Bot.Status.RUNNING).exists()


def test_an_unreadable_row_does_not_stop_the_pages(
    signed_in: Client, two_running: tuple[Bot, Bot]
) -> None:
    healthy, broken = two_running
    _corrupt(broken)

    assert signed_in.get("/").status_code == 200
    assert signed_in.get(f"/bots/{healthy.pk}/").status_code == 200
    assert signed_in.get(f"/bots/{broken.pk}/").status_code == 200
    assert signed_in.post(f"/bots/{healthy.pk}/stop/", headers=HX).status_code in (200, 302)
    assert signed_in.post(f"/bots/{broken.pk}/stop/", headers=HX).status_code in (200, 302)


def test_an_unreadable_row_does_not_stop_the_admin(
    admin_client: Client, two_running: tuple[Bot, Bot]
) -> None:
    healthy, broken = two_running
    _corrupt(broken)

    for page in ("/admin/bots/bot/", "/admin/bots/bot/?status__exact=running",
                 f"/admin/bots/bot/{healthy.pk}/change/", "/admin/bots/order/",
                 "/admin/bots/equitysnapshot/"):  # fmt: skip
        assert admin_client.get(page).status_code == 200, page


def test_previews_candle_data_and_advisor_runs_are_limited_per_client(
    client: Client, user: Any, other_user: Any, bot: Bot, settings: Any
) -> None:
    """Many accounts from one address share one budget (finding 6)."""
    settings.PREVIEWS_PER_CLIENT_PER_MINUTE = 2
    settings.CANDLE_REQUESTS_PER_CLIENT_PER_MINUTE = 2
    settings.ADVISOR_RUNS_PER_CLIENT_PER_HOUR = 1
    client.force_login(user)
    assert client.post("/bots/preview/", FORM).status_code == 200
    assert client.get(f"/bots/{bot.pk}/candles.json").status_code == 200
    assert client.post("/ai/runs/", {"symbol": "BTC/USDT", "capital": "x"}).status_code == 400
    client.force_login(other_user)  # another account, the same address
    assert client.post("/bots/preview/", FORM).status_code == 200
    assert client.get(f"/bots/{bot.pk}/candles.json").status_code == 404  # not theirs

    for response in (
        client.post("/bots/preview/", FORM),
        client.get(f"/bots/{bot.pk}/candles.json"),
        client.post("/ai/runs/", {"symbol": "BTC/USDT", "capital": "1000"}),
        client.post("/api/ai/optimize", "{}", content_type="application/json"),
    ):
        assert response.status_code == 429
        assert int(response["Retry-After"]) > 0


def test_a_bot_whose_state_cannot_be_read_is_still_halted_by_the_emergency_stop(
    signed_in: Client, two_running: tuple[Bot, Bot]
) -> None:
    healthy, broken = two_running
    Bot.objects.filter(pk=broken.pk).update(engine_state={"not": "an engine"})

    response = signed_in.post("/bots/emergency-stop/", headers=HX)

    assert response.status_code == 200
    assert "could not be read" in response.text
    assert Bot.objects.get(pk=healthy.pk).status == Bot.Status.STOPPED
    assert Bot.objects.get(pk=broken.pk).status == Bot.Status.ERROR  # no more cycles
    assert not Order.objects.filter(bot_id=broken.pk).resting().exists()
    assert "an operator must check it" in broken.events.latest("pk").message


# The day the ``price`` fixture stores its candle on: the form refuses days not stored.
BACKTEST = {k: v for k, v in FORM.items() if k not in ("name", "mode", "max_daily_loss")} | {
    "start": "2025-06-01", "end": "2025-06-01",
}  # fmt: skip


def test_backtests_are_limited_per_user_at_once_and_per_hour(
    client: Client, user: Any, other_user: Any, price: Any, settings: Any
) -> None:
    """Finding 2: one user cannot fill the queue; another user is not affected."""
    settings.BACKTESTS_AT_ONCE, settings.BACKTESTS_PER_HOUR = 2, 3
    client.force_login(user)
    assert [client.post("/backtests/new/", BACKTEST).status_code for _ in range(2)] == [302] * 2

    refused = client.post("/backtests/new/", BACKTEST)  # two are still queued

    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "2 backtests queued or running" in refused.text
    assert BacktestRun.objects.filter(owner=user).count() == 2
    # Finished ones free a place; a run a dead worker left queued stops counting after a while.
    BacktestRun.objects.filter(owner=user).update(status=BacktestRun.Status.DONE)
    assert client.post("/backtests/new/", BACKTEST).status_code == 302
    BacktestRun.objects.filter(owner=user).update(status=BacktestRun.Status.DONE)
    per_hour = client.post("/backtests/new/", BACKTEST)
    assert per_hour.status_code == 429 and "3 backtests in the last hour" in per_hour.text
    client.force_login(other_user)
    assert client.post("/backtests/new/", BACKTEST).status_code == 302


def test_a_stale_queued_backtest_does_not_block_its_owner(
    client: Client, user: Any, price: Any, settings: Any
) -> None:
    settings.BACKTESTS_AT_ONCE = 1
    client.force_login(user)
    assert client.post("/backtests/new/", BACKTEST).status_code == 302
    assert client.post("/backtests/new/", BACKTEST).status_code == 429
    BacktestRun.objects.update(created_at=timezone.now() - timedelta(hours=1))  # worker died
    assert client.post("/backtests/new/", BACKTEST).status_code == 302


def test_advisor_runs_are_limited_per_user_at_once(user: Any, price: Any, settings: Any) -> None:
    from ai_advisor import services as advisor
    from ai_advisor.models import AdvisorRun

    settings.ADVISOR_RUNS_AT_ONCE = 2
    for _ in range(2):
        advisor.create_run(user, symbol="BTC/USDT", capital="1000")  # queued, not answered

    with pytest.raises(advisor.Throttled) as refused:
        advisor.create_run(user, symbol="BTC/USDT", capital="1000")

    assert "2 advisor runs under way" in str(refused.value) and refused.value.retry_after > 0
    assert AdvisorRun.objects.count() == 2
    AdvisorRun.objects.update(created_at=timezone.now() - timedelta(hours=1))  # a dead worker's
    advisor.create_run(user, symbol="BTC/USDT", capital="1000")
