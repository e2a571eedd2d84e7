"""The exchange's own system status (Binance ``GET /sapi/v1/system/status``), asked once a
minute by the feed's process for every exchange a running bot or an open page trades on, and
kept in the cache for every worker: live bots send nothing while it says maintenance, and say
so on their log and page; they carry on by themselves when it is over."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

POLL_SECONDS = 60
KEPT_SECONDS = 3 * POLL_SECONDS  # a status nobody refreshed is no longer believed


def cache_key(exchange: str) -> str:
    """Where the exchange's status is kept (read with others: ``maintenance``'s ``known``)."""
    return f"exchange-status-{exchange}"


def maintenance(exchange: str, *, known: dict[str, Any] | None = None) -> str | None:
    """In words, when the exchange says it is under maintenance now; else None. ``known``:
    the cache's answer to a read of several keys, this one's among them."""
    key = cache_key(exchange)
    state = cache.get(key) if known is None else known.get(key)
    if not state or state[0] != "maintenance":
        return None
    since = datetime.fromtimestamp(state[1], tz=UTC)
    return (
        f"{exchange.capitalize()} says it is under system maintenance (since "
        f"{since:%H:%M} UTC): nothing is sent until it is over."
    )


def check(exchange: str, *, client: Any = None) -> str:
    """Ask the exchange for its status and keep it; returns it ("ok", "maintenance", or
    "unknown" when the exchange did not answer: then the last status stands until it ages)."""
    from market.exchange import public_client

    try:
        status = str((client or public_client(exchange)).fetch_status().get("status") or "ok")
    except Exception as e:  # the exchange not answering is not maintenance by itself
        logger.info("status of %s: no answer (%s: %s)", exchange, type(e).__name__, e)
        return "unknown"
    before = cache.get(cache_key(exchange))
    since = before[1] if before and before[0] == status else timezone.now().timestamp()
    cache.set(cache_key(exchange), (status, since), timeout=KEPT_SECONDS)
    if status != "ok" and (before is None or before[0] != status):
        logger.warning("%s reports system status %r", exchange, status)
    return status


def poll_system_status(stop: threading.Event) -> None:
    """The feed's companion: each exchange in use, once a minute."""
    from market.feed import wanted_symbols

    while not stop.is_set():
        for exchange in sorted({e for e, _symbol in wanted_symbols()}):
            check(exchange)
        stop.wait(POLL_SECONDS)
