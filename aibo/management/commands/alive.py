"""``manage.py alive worker|feed``: the healthcheck of a worker or feed container.

Exits 0 when the process it names is alive on this host (so a container's healthcheck asks
about its own process): a Huey consumer here has said so in the last minute
(``aibo.tasks``'s beats), or the market feed has written its state in the last
``FEED_STATUS_SECONDS``. Exits 1 with the reason otherwise. Both are read from the cache, so the
worker and feed containers need ``REDIS_URL`` (as the scaled deployment has).
"""

from __future__ import annotations

import socket
from typing import Any

from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aibo import tasks
from market import services as market_services


class Command(BaseCommand):
    help = "Exit 0 when this host's worker or market feed is alive (a container healthcheck)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=["worker", "feed"])

    def handle(self, *args: Any, what: str, **options: Any) -> None:
        if what == "worker":
            host = socket.gethostname()
            here = [w for w in tasks.workers_alive() if str(w["id"]).startswith(f"{host}:")]
            if not here:
                raise CommandError(f"no Huey consumer on {host} has beaten in the last minute")
            self.stdout.write(f"{len(here)} consumer process(es) alive on {host}")
            return
        status = cache.get(market_services.FEED_STATUS_KEY)
        if not isinstance(status, market_services.FeedStatus):
            raise CommandError("the market feed has not said where its prices come from lately")
        self.stdout.write(f"feed alive: {status.words()}")
