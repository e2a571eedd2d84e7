"""Serve the whole system from one process: ASGI server, Huey consumer and the market feed.

This is the embedded default's single process; the scaled deployment runs the same pieces as
separate processes (`uvicorn`/`daphne`, `manage.py run_huey`, `manage.py run_market_feed`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from huey.consumer import Consumer
from huey.contrib.djhuey import HUEY

from aibo.ws import MAX_FRAME_BYTES

logger = logging.getLogger(__name__)

# How the ASGI server runs aibo (compose.yaml's `web` command says the same in uvicorn's flags).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,  # keep the logging configured in settings
    "lifespan": "off",
    # Frames are small JSON and fragments: compressing each one for each socket costs more
    # server time than it saves (bench/bench_ws.py measures both).
    "ws_per_message_deflate": False,
    # No consumer reads client messages: a larger frame is refused (1009), never buffered.
    "ws_max_size": MAX_FRAME_BYTES,
    # Client addresses are Django's to judge (TRUSTED_PROXIES, accounts.throttle.client_ip):
    # uvicorn would otherwise trust X-Forwarded-For from anyone on the loopback.
    "proxy_headers": False,
}


class Command(BaseCommand):
    help = "Serve aibo in one process: web + websockets, an in-process Huey consumer, the feed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="do not consume Huey tasks")
        parser.add_argument("--no-feed", action="store_true", help="do not run the market feed")

    def handle(self, *args: Any, **options: Any) -> None:
        self.collect_static()
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
                **UVICORN_OPTIONS,
            )
        finally:
            feed_stop.set()
            if feed_thread:
                feed_thread.join(timeout=5)
            if consumer:
                consumer.stop(graceful=True)
            self.stdout.write("aibo stopped.")

    def collect_static(self) -> None:
        """With DEBUG off WhiteNoise serves only collected files: collect them if `make run`
        has not (``manage.py serve`` run by hand), instead of answering every page with 500."""
        if settings.DEBUG or (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
            return
        self.stdout.write("collecting static files ...")
        call_command("collectstatic", interactive=False, verbosity=0)

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
