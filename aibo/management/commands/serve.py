"""Serve the whole system from one process: ASGI server, Huey consumer and the market feed.

This is the embedded default's single process; the scaled deployment runs the same pieces as
separate processes (`uvicorn`/`daphne`, `manage.py run_huey`, `manage.py run_market_feed`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from huey.consumer import Consumer
from huey.contrib.djhuey import HUEY

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve aibo in one process: web + websockets, an in-process Huey consumer, the feed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not consume Huey tasks")
        parser.add_argument("--no-feed", action="store_true", help="do not run the market feed")

    def handle(self, *args: Any, **options: Any) -> None:
        consumer = None if options["no_worker"] else self.start_consumer()
        feed_stop = threading.Event()
        feed_thread = None if options["no_feed"] else self.start_feed(feed_stop)
        self.stdout.write(f"aibo is serving on http://{options['host']}:{options['port']}/")
        try:
            # uvicorn handles SIGINT/SIGTERM itself and returns after a graceful shutdown.
            uvicorn.run(
                "aibo.asgi:application",
                host=options["host"],
                port=options["port"],
                log_config=None,  # keep the logging configured in settings
                lifespan="off",
                # Frames are small JSON and fragments: compressing each one for each socket
                # costs more server time than it saves (bench/bench_ws.py measures both).
                ws_per_message_deflate=False,
            )
        finally:
            feed_stop.set()
            if feed_thread:
                feed_thread.join(timeout=5)
            if consumer:
                consumer.stop(graceful=True)
            self.stdout.write("aibo stopped.")

    def start_consumer(self) -> Consumer:
        cfg = settings.HUEY.get("consumer", {})
        consumer = HUEY.create_consumer(
            workers=cfg.get("workers", 2), worker_type="thread", periodic=True
        )
        # start() runs the workers and scheduler in threads without taking over signals.
        consumer.start()
        logger.info("in-process Huey consumer started (%s workers)", cfg.get("workers", 2))
        return consumer

    def start_feed(self, stop: threading.Event) -> threading.Thread:
        from market.management.commands.run_market_feed import Command as FeedCommand

        feed = FeedCommand(stdout=self.stdout, stderr=self.stderr)
        thread = threading.Thread(target=feed.run, args=(stop,), name="market-feed", daemon=True)
        thread.start()
        return thread
