"""The market feed: store closed candles, record and publish the price, wake crossed bots."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from market.exchange import TemporaryExchangeError
from market.feed import Feed, companions, feed_from_settings, record_candles
from market.services import record_feed_status

logger = logging.getLogger(__name__)

# The feed's state (streaming, on REST, replaying) is written this often for the pages.
STATUS_SECONDS = 5


class Command(BaseCommand):
    help = (
        "Run the market feed: the exchange's websocket streams (ccxt.pro), or a replay of "
        "stored real candles (MARKET_FEED)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--symbol",
            action="append",
            dest="symbols",
            help="feed this symbol too (besides those of running bots and the bundled ones)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        self.stop_event = stop
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run(stop, extra_symbols=options.get("symbols") or [])

    def run(self, stop: threading.Event, *, extra_symbols: list[str] | None = None) -> None:
        """Pump until `stop` is set (the serve command runs this in a thread)."""
        self.stop_event = stop
        feed = feed_from_settings(extra_symbols=extra_symbols or [])
        self.stdout.write(f"market feed: {feed.describe()}")
        workers = [
            threading.Thread(target=run, args=(stop,), name=getattr(run, "__name__", "companion"),
                             daemon=True)
            for run in companions
        ]  # fmt: skip
        for worker in workers:
            worker.start()
        try:
            while not stop.is_set():
                self.pump(feed)
        finally:
            feed.close()
        for worker in workers:
            worker.join(timeout=5)

    def pump(self, feed: Feed) -> int:
        """Record one batch of candles and, every few seconds, the feed's state; on exchange
        trouble, log and back off."""
        try:
            candles = feed.next_batch(timeout=1)
        except TemporaryExchangeError as e:
            logger.warning("market feed: exchange unavailable (%s), retrying in 5 s", e)
            self.stop_event.wait(5)
            return 0
        finally:
            self.report(feed)
        if candles:
            record_candles(candles, replayed=feed.replayed, prices=not feed.ticks)
        return len(candles)

    def report(self, feed: Feed) -> None:
        """Write the feed's state for the pages when it changed or every STATUS_SECONDS."""
        status = feed.status()
        now = time.monotonic()
        if status != getattr(self, "reported", None) or now >= getattr(self, "report_at", 0):
            record_feed_status(status)
            self.reported, self.report_at = status, now + STATUS_SECONDS

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_event.set()
