"""Issue 17 on the desk: the event log names every grid move and why trailing stopped, the
chart's data carries the grid's moves (its range over time), and a backtest's result says how
often its grid moved and when its trigger was reached."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots import pages
from bots.models import BacktestRun, Bot, BotEvent
from tests.bots.conftest import CONFIG

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=dt.UTC)


def _trailing(bot: Bot) -> Bot:
    Bot.objects.filter(pk=bot.pk).update(
        config=bot.config | {"trailing_up": "true", "trailing_down": "true",
                             "trailing_down_limit": "50000"}
    )  # fmt: skip
    bot.refresh_from_db()
    return bot


def _event(bot: Bot, grid_event: str, text: str, minutes: int, lines: list[str] | None) -> None:
    data: dict[str, object] = {"grid_event": grid_event}
    if lines is not None:
        data["lines"] = lines
    BotEvent.objects.create(
        bot=bot, kind=BotEvent.Kind.PLACED, message=text, data=data,
        market_time=T0 + dt.timedelta(minutes=minutes),
    )  # fmt: skip


@pytest.fixture
def moved_bot(bot: Bot) -> Bot:
    bot = _trailing(bot)
    _event(bot, "shift_up", "Grid moved up: a buy at 70000.", 1, ["60526.32", "70526.32"])
    _event(bot, "shift_up", "Grid moved up: a buy at 70526.32.", 5, ["61052.63", "71052.63"])
    _event(bot, "trailing_up_stopped", "Trailing up stopped: below the minimum order.", 6, None)
    _event(bot, "shift_down", "Grid moved down: a sell at 61052.63.", 9, ["60526.32", "70526.32"])
    return bot


def test_the_log_names_every_grid_move_and_why_trailing_stopped(client, user, moved_bot):
    client.force_login(user)
    page = client.get(f"/bots/{moved_bot.pk}/").text
    log = re.search(r'id="bot-\d+-events".*?</section>', page, re.S)
    assert log is not None
    items = re.findall(r'<li class="event ([^"]*)">.*?<span class="kind">([^<]*)</span>([^<]*)',
                       log.group(0), re.S)  # fmt: skip
    named = [(kind, text.strip()) for _, kind, text in items]
    assert named[:4] == [
        ("Grid moved down", "Grid moved down: a sell at 61052.63."),
        ("Trailing up stopped", "Trailing up stopped: below the minimum order."),
        ("Grid moved up", "Grid moved up: a buy at 70526.32."),
        ("Grid moved up", "Grid moved up: a buy at 70000."),
    ]
    assert "grid-event shift_down" in items[0][0]


def test_the_chart_data_carries_the_grids_moves_oldest_first(client, user, moved_bot):
    client.force_login(user)
    data = client.get(f"/bots/{moved_bot.pk}/candles.json").json()
    assert data["start_lines"] == ["60000", "70000"]
    t = int(T0.timestamp() * 1000)
    assert data["moves"] == [
        [t + 60_000, "up", "60526.32", "70526.32"],
        [t + 300_000, "up", "61052.63", "71052.63"],
        [t + 540_000, "down", "60526.32", "70526.32"],
    ]


def test_a_grid_that_cannot_move_asks_nothing_about_moves(client, user, bot):
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        data = client.get(f"/bots/{bot.pk}/candles.json").json()
    assert data["moves"] == [] and data["start_lines"] == ["60000", "70000"]
    assert not [q for q in queries.captured_queries if "botevent" in q["sql"]]


def test_another_users_moves_stay_hidden(client, other_user, moved_bot):
    client.force_login(other_user)
    assert client.get(f"/bots/{moved_bot.pk}/candles.json").status_code == 404
    assert pages.grid_moves(moved_bot)  # they exist: the 404 is the owner check


def _run(user, config, result) -> BacktestRun:
    return BacktestRun.objects.create(
        owner=user, symbol="BTC/USDT", config=config, status=BacktestRun.Status.DONE,
        progress=100, start=dt.datetime(2025, 6, 2, tzinfo=dt.UTC),
        end=dt.datetime(2025, 6, 3, tzinfo=dt.UTC),
        result={"total_profit": "12.5", "grid_profit": "10", "final_equity": "1012.5",
                "total_trades": 7, "fills": 15, "win_rate": "1", "max_drawdown": "0.01",
                "fees_paid": "2", "order_amount": "0.0008", "time_in_range": "0.9",
                "candles": 1440, **result},
    )  # fmt: skip


def test_the_backtest_result_shows_its_shifts_and_when_it_triggered(client, user, rules):
    config = CONFIG | {"trigger_price": "64000", "trailing_up": "true"}
    ms = int(dt.datetime(2025, 6, 2, 3, 17, tzinfo=dt.UTC).timestamp() * 1000)
    moves = [[ms + 60_000, "up", "60526.32", "70526.32"]]
    run = _run(user, config, {"shifts_up": 4, "shifts_down": 0, "triggered_at": ms,
                              "levels": ["62105.26", "72105.26"],
                              "start_levels": ["60000", "70000"], "grid_moves": moves})  # fmt: skip
    client.force_login(user)
    page = client.get(f"/backtests/{run.pk}/").text
    assert re.search(r'data-testid="shifts-up">4 up<', page)
    assert re.search(r'data-testid="shifts-down">0 down<', page)
    assert "2025-06-02 03:17 UTC, at 64,000.00" in page
    data = client.get(f"/backtests/{run.pk}/data.json").json()
    assert data["start_lines"] == ["60000", "70000"]
    assert data["moves"] == [[ms + 60_000, "up", "60526.32", "70526.32"]]


def test_a_backtest_whose_trigger_was_never_reached_says_so(client, user, rules):
    run = _run(user, CONFIG | {"trigger_price": "50000"},
               {"shifts_up": 0, "shifts_down": 0, "triggered_at": None})  # fmt: skip
    client.force_login(user)
    page = client.get(f"/backtests/{run.pk}/").text
    assert "never: the price did not reach 50,000.00" in page
    assert 'data-testid="grid-shifts"' not in page  # no trailing: no moves to count


def test_a_plain_backtest_shows_neither(client, user, rules):
    run = _run(user, CONFIG, {"shifts_up": 0, "shifts_down": 0, "triggered_at": None})
    client.force_login(user)
    page = client.get(f"/backtests/{run.pk}/").text
    assert 'data-testid="triggered-at"' not in page and 'data-testid="grid-shifts"' not in page
    assert Decimal(run.result["total_profit"]) == Decimal("12.5")


def test_a_bot_waiting_for_its_trigger_says_so_and_places_nothing(client, user, make_bot, price):
    from bots import services

    bot = make_bot(CONFIG | {"trigger_price": "64000"})
    services.start_bot(bot)
    bot.refresh_from_db()
    assert bot.is_running and bot.engine().waiting
    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/").text
    assert "nothing is placed until the price falls to 64,000.00 USDT" in page
    assert 'class="order-status open"' not in page


def test_after_a_shift_up_the_ladder_shows_each_slots_own_order(client, user, make_bot, rules):
    """Slots keep their ids when the grid moves: the ladder's rows are the new lines, each
    with the order its slot rests (the new top slot's buy at the old top)."""
    from bots import services
    from tests.bots.conftest import set_price

    set_price("BTC/USDT", Decimal("71000"))  # above the range: every slot holds quote
    bot = make_bot(CONFIG | {"trailing_up": "true"})
    services.start_bot(bot)
    bot.refresh_from_db()
    engine = bot.engine()
    engine.trail(Decimal("70500"), Decimal("70600"))  # up past the next line, 70,526.32
    assert engine.shifts_up == 1
    bot.keep_engine(engine)
    bot.save(update_fields=["engine_state", "next_buy_price", "next_sell_price"])
    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/").text
    assert "The grid has moved 1 line up and 0 down" in page
    top = re.search(r'id="bot-\d+-slot-(\d+)">(.*?)</tr>', page, re.S)
    assert top is not None and top.group(1) == "19"  # the new slot's id, at the top
    assert "70,526.32" in top.group(2) and "70,000.00" in top.group(2)  # its buy at the old top
    assert f'id="bot-{bot.pk}-slot-0"' not in page  # the bottom slot is gone


def test_a_trailing_backtest_from_the_form_shows_its_grid_following_the_price(
    client, user, rules, monkeypatch, django_capture_on_commit_callbacks
):
    """End to end: the backtest form with a trigger and trailing up, the run, its page."""
    from bots.backtest_runs import run_backtest_job
    from tests.bots.conftest import FORM, add_candles

    start = int(dt.datetime(2025, 6, 2, tzinfo=dt.UTC).timestamp() * 1000)
    # down to the 64,000 trigger, then a steady rise to 74,000: the grid must follow it up
    path = [65000 - 100 * i for i in range(11)] + [64000 + 20 * i for i in range(1, 501)]
    add_candles(
        [(start + i * 60_000, str(p), str(p + 10), str(p - 10), str(p)) for i, p in enumerate(path)]
    )
    monkeypatch.setattr("bots.tasks.backtest_task", lambda pk: None)
    client.force_login(user)
    data = FORM | {"start": "2025-06-02", "end": "2025-06-02", "trigger_price": "64000",
                   "trailing_up": "on", "trailing_up_limit": "73000"}  # fmt: skip
    for name in ("name", "mode", "max_daily_loss"):
        data.pop(name)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/backtests/new/", data).status_code == 302
    run = BacktestRun.objects.get(owner=user)
    assert run.config["trailing_up"] == "true" and run.config["trigger_price"] == "64000"
    run_backtest_job(run.pk)
    run.refresh_from_db()
    assert run.status == BacktestRun.Status.DONE, run.error
    assert run.result["shifts_up"] > 0 and run.result["triggered_at"] is not None
    page = client.get(f"/backtests/{run.pk}/").text
    shifts = re.search(r'data-testid="shifts-up">(\d+) up<', page)
    assert shifts is not None and int(shifts.group(1)) == run.result["shifts_up"]
    assert "2025-06-02 00:10 UTC, at 64,000.00" in page
    assert "trailing up to 73,000.00" in page
    chart = client.get(f"/backtests/{run.pk}/data.json").json()
    assert chart["start_lines"] == ["60000", "70000"]
    assert len(chart["moves"]) == run.result["shifts_up"]
    assert Decimal(chart["moves"][-1][3]) <= Decimal("73000")  # never above the limit


def test_a_paper_bot_that_trailed_shows_its_moves_in_the_log_chart_and_ladder(client, user):
    """End to end with the engine and paper trading: a replayed rise past the trigger; the
    page then names each move, the chart's data traces them, the ladder is the moved grid."""
    from bots import config as schema
    from bots import cycle, services
    from bots.models import Order
    from market.feed import ReplayFeed, ReplayTrack
    from market.management.commands.run_market_feed import Command as FeedCommand
    from market.services import SAMPLES, load_market_rules, read_csv_rows
    from tests.bots.conftest import add_candles

    exchange, symbol, path = SAMPLES[0]
    rules = load_market_rules(exchange, symbol)
    first, history, replayed_n = 9_705, 100, 1_500  # BTC rising on 2025-06-08/09
    rows = list(read_csv_rows(path))[first : first + history + replayed_n]
    add_candles(rows[:history])
    replayed = rows[history:]
    p0 = Decimal(replayed[0][1])
    config = schema.normalise({
        "capital": "10000", "lower_bound": str(p0 - 1200), "upper_bound": str(p0 + 1500),
        "grid_levels": "10", "spacing": "geometric", "stop_loss_pct": "0",
        "max_daily_loss": "0", "take_profit": "", "trigger_price": str(p0 - 100),
        "trailing_up": True,
    })  # fmt: skip
    bot = services.create_bot(user, symbol=symbol, config=config)
    services.start_bot(bot)
    track = ReplayTrack.after(
        exchange, symbol, replayed, rules.tick, int(rows[history - 1][0]), rows[history - 1][4]
    )
    feed = ReplayFeed([track], candles_per_second=Decimal(0))
    command = FeedCommand()
    for _ in range(replayed_n):
        command.pump(feed)
    cycle.run_cycle(bot.pk)
    bot.refresh_from_db()
    engine = bot.engine()
    assert engine.shifts_up >= 1

    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/").text
    log = re.search(r'id="bot-\d+-events".*?</section>', page, re.S)
    assert log is not None
    shown = list(BotEvent.objects.filter(bot=bot).order_by("-id")[: pages.EVENTS_SHOWN])
    labels = {"shift_up": "Grid moved up", "triggered": "Triggered"}
    for grid_event, label in labels.items():
        expected = sum(1 for e in shown if e.data.get("grid_event") == grid_event)
        assert log.group(0).count(f'<span class="kind">{label}</span>') == expected, label
    assert any(e.data.get("grid_event") == "shift_up" for e in shown)  # a move is in sight
    assert f"The grid has moved {engine.shifts_up} line" in page
    data = client.get(f"/bots/{bot.pk}/candles.json").json()
    ups = [m for m in data["moves"] if m[1] == "up"]
    assert len(ups) == engine.shifts_up
    assert [Decimal(p) for p in ups[-1][2:]] == [engine.lines[0], engine.lines[-1]]
    assert [Decimal(p) for p in data["lines"]] == engine.lines
    # each ladder row is a slot of the moved grid, showing its own open order
    for o in Order.objects.filter(bot=bot, status=Order.Status.OPEN):
        row = re.search(rf'id="bot-{bot.pk}-slot-{o.slot}">(.*?)</tr>', page, re.S)
        assert row is not None, o.slot
        assert f"{o.price:,.2f}" in row.group(1)


def test_the_status_card_lists_the_trigger_and_trailing_settings(client, user, make_bot, price):
    bot = make_bot(CONFIG | {"trigger_price": "64000", "trailing_up": "true",
                             "trailing_down": "true", "trailing_down_limit": "55000"})  # fmt: skip
    client.force_login(user)
    page = client.get(f"/bots/{bot.pk}/").text
    assert re.search(r'data-testid="trigger-setting">64,000.00 USDT<', page)
    assert re.search(r'data-testid="trailing-up-setting">on, no limit<', page)
    assert re.search(r'data-testid="trailing-down-setting">to 55,000.00 USDT<', page)
    plain = make_bot(CONFIG)
    assert "trailing-up-setting" not in client.get(f"/bots/{plain.pk}/").text
