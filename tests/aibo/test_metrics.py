"""Issue 16: /metrics in Prometheus text format, counted where the work is committed, read
with the token (or from this machine when none is set)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from bots import services, tasks
from bots.models import Bot
from tests.bots.conftest import WORKED_CANDLES, add_candles, worked_bot, worked_market  # noqa: F401

pytestmark = pytest.mark.django_db


def scrape(client: Client, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (labels in any order), 0 when it is not there yet."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def test_metrics_count_a_paper_bots_cycle_fills_and_orders(
    worked_bot: Bot,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = Client()
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):  # as if each step committed
        services.start_bot(worked_bot)  # the start buy and two resting orders: three placed
        add_candles(WORKED_CANDLES[1:])
        result = tasks.cycle_once(worked_bot.pk)
        assert result is not None and (result.fills, result.round_trips) == (5, 2)
        services.stop_bot(worked_bot)  # the two sells left resting are cancelled
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("aibo_bot_cycle_duration_seconds_count", mode="paper") == 1
    assert delta("aibo_bot_cycles_total", outcome="ran") == 1
    assert delta("aibo_fills_total", mode="paper") == 5
    assert delta("aibo_round_trips_total", mode="paper") == 2
    placed = 3 + 5  # the start's three, and each fill's counter-order
    assert delta("aibo_orders_total", mode="paper", event="placed") == placed
    assert delta("aibo_orders_total", mode="paper", event="cancelled") == 2
    assert "aibo_huey_queue_depth" in after
    assert "# TYPE aibo_bot_cycle_duration_seconds histogram" in after


def test_a_rolled_back_start_counts_no_order(
    worked_bot: Bot,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.db import transaction

    client = Client()
    before = value(scrape(client), "aibo_orders_total", mode="paper", event="placed")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.start_bot(worked_bot)
        raise RuntimeError("the start's transaction fails after the orders were written")
    assert value(scrape(client), "aibo_orders_total", mode="paper", event="placed") == before


def test_metrics_need_the_token_when_one_is_set(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-metrics"
    client = Client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    scrape(client, Authorization="Bearer s3cret-metrics")


def test_without_a_token_only_this_machine_reads_them(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 404
    scrape(Client(REMOTE_ADDR="127.0.0.1"))
