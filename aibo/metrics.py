"""Prometheus metrics: what every process counts, and ``/metrics`` to read them.

Counted where the work is committed (a rolled-back cycle counts nothing): bot cycles (latency
and outcome), fills, orders placed, cancelled and rejected, exchange errors by kind, exchange
requests per account and the request weight the exchange reports, feed lag per pair, open
websockets, advisor calls and their cost; the Huey queue's depth is read when scraped.

Several processes (uvicorn workers, Huey consumers, the feed) each count their own; with
``PROMETHEUS_MULTIPROC_DIR`` set (one directory per host, emptied at start: the compose file
does it) ``/metrics`` adds them up (prometheus-client's multiprocess mode). Without it, as in
the embedded default's single process, the process's own registry is read.

``/metrics`` is read with ``Authorization: Bearer <METRICS_TOKEN>``; without a token set, only
from this machine (a loopback address).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

CYCLE_SECONDS = Histogram(
    "aibo_bot_cycle_duration_seconds",
    "Time one bot cycle took, lock held",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CYCLES = Counter(
    "aibo_bot_cycles_total", "Bot cycles by outcome (ran, busy: another worker had it, failed)",
    ["outcome"],
)  # fmt: skip
FILLS = Counter("aibo_fills_total", "Orders filled, booked", ["mode"])
ROUND_TRIPS = Counter("aibo_round_trips_total", "Round trips closed", ["mode"])
ORDERS = Counter(
    "aibo_orders_total",
    "Orders placed, cancelled or rejected (reason: why the exchange refused)",
    ["mode", "event", "reason"],
)
EXCHANGE_ERRORS = Counter(
    "aibo_exchange_errors_total", "Exchange errors by kind", ["exchange", "kind"]
)
EXCHANGE_REQUESTS = Counter(
    "aibo_exchange_requests_total",
    "REST requests sent to an exchange, per account (public: no keys)",
    ["exchange", "account"],
)
EXCHANGE_WEIGHT = Gauge(
    "aibo_exchange_request_weight_used",
    "The request weight the exchange says this IP used in its window",
    ["exchange", "window"],
    multiprocess_mode="mostrecent",
)
FEED_LAG = Gauge(
    "aibo_feed_lag_seconds",
    "Age of a pair's latest price when the feed took it in",
    ["pair"],
    multiprocess_mode="mostrecent",
)
WEBSOCKETS = Gauge(
    "aibo_websocket_clients", "Open websockets", ["kind"], multiprocess_mode="livesum"
)
ADVISOR_CALLS = Counter("aibo_advisor_calls_total", "Advisor runs finished", ["source", "outcome"])
ADVISOR_COST = Counter("aibo_advisor_cost_usd_total", "What Claude's calls cost, in USD")


def after_commit(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Count once the surrounding transaction commits (at once outside one); never raise."""

    def count() -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # a metric must never break trading
            logger.exception("metrics: counting failed")

    transaction.on_commit(count)


def cycle_done(result: Any, seconds: float) -> None:
    """A committed cycle (``bots.cycle.CycleResult``): its time, its fills and round trips."""
    CYCLES.labels("ran").inc()
    CYCLE_SECONDS.labels(result.mode).observe(seconds)
    if result.fills:
        FILLS.labels(result.mode).inc(result.fills)
    if result.round_trips:
        ROUND_TRIPS.labels(result.mode).inc(result.round_trips)


def orders(mode: str, event: str, n: int = 1, reason: str = "") -> None:
    if n:
        after_commit(ORDERS.labels(mode, event, reason).inc, n)


def watch_exchanges() -> None:
    """Hear every exchange request, weight report and error (``market.exchange.observers``)."""
    from market.exchange import observers

    observers.on_request.append(lambda ex, account: EXCHANGE_REQUESTS.labels(ex, account).inc())
    observers.on_weight.append(
        lambda ex, window, used: EXCHANGE_WEIGHT.labels(ex, window).set(used)
    )
    observers.on_error.append(lambda ex, kind: EXCHANGE_ERRORS.labels(ex, kind).inc())


# --- reading them ----------------------------------------------------------------------------


class QueueDepth:
    """The Huey queue's depth, read at each scrape (tasks waiting, and scheduled for later)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from aibo.tasks import queue_depth

        family = GaugeMetricFamily(
            "aibo_huey_queue_depth", "Huey tasks waiting (pending) or scheduled", labels=["queue"]
        )
        # The queue's storage away: no figure rather than no page.
        for queue, depth in (queue_depth() or {}).items():
            family.add_metric([queue], depth)
        yield family


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry()
        MultiProcessCollector(combined)
        combined.register(QueueDepth())
        return combined
    return REGISTRY


_queue_registered = False


def _own_registry() -> CollectorRegistry:
    global _queue_registered
    reg = registry()
    if reg is REGISTRY and not _queue_registered:
        REGISTRY.register(QueueDepth())
        _queue_registered = True
    return reg


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        return constant_time_compare(sent, f"Bearer {token}")
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("Not found", status=404, content_type="text/plain")
    return HttpResponse(generate_latest(_own_registry()), content_type=CONTENT_TYPE_LATEST)
