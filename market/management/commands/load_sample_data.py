"""Load the bundled real Binance candles and market rules (what `make run` does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from market.services import load_bundled_sample


class Command(BaseCommand):
    help = "Load the bundled Binance BTC/USDT and ETH/USDT history and market rules (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for line in load_bundled_sample():
            self.stdout.write(f"sample data: {line}")
