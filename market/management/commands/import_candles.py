"""Import 1-minute candles from a CSV / CSV.gz file or from an exchange through ccxt."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aibo.cli import parse_date
from market import exchange as exchange_api
from market import services


class Command(BaseCommand):
    help = "Import candles: --csv FILE, or --exchange binance [--since DATE] [--until DATE]."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True, help="e.g. BTC/USDT")
        parser.add_argument("--csv", help="timestamp_ms,open,high,low,close,volume (.csv or .gz)")
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--timeframe", default="1m")
        parser.add_argument("--since", type=parse_date, help="exchange import: first candle time")
        parser.add_argument(
            "--until", type=parse_date, help="exchange import: stop before this time"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        symbol, exchange = options["symbol"], options["exchange"]
        if "/" not in symbol:
            raise CommandError(f"{symbol!r} is not a pair; write it as BASE/QUOTE, e.g. BTC/USDT")

        def progress(done: int) -> None:
            sys.stderr.write(f"\r{done:,} candles read")
            sys.stderr.flush()

        try:
            if options["csv"]:
                report = services.import_candles_from_csv(
                    options["csv"], exchange=exchange, symbol=symbol,
                    timeframe=options["timeframe"], progress=progress,
                )  # fmt: skip
            else:
                client = exchange_api.public_client(exchange)
                report = services.import_candles_from_exchange(
                    client, exchange=exchange, symbol=symbol, timeframe=options["timeframe"],
                    since=options["since"], until=options["until"], progress=progress,
                )  # fmt: skip
        except (services.MarketDataError, exchange_api.ExchangeError) as e:
            raise CommandError(str(e)) from None
        sys.stderr.write("\n")
        self.stdout.write(
            f"{symbol}: read {report.read:,}, inserted {report.inserted:,}, "
            f"already stored {report.skipped:,}, gaps {len(report.gaps)}"
        )
        for start, end, missing in report.gaps[:20]:
            self.stdout.write(
                f"  gap: {missing} candle(s) missing, {start:%Y-%m-%d %H:%M} to "
                f"{end:%Y-%m-%d %H:%M}"
            )
        if len(report.gaps) > 20:
            self.stdout.write(f"  ... and {len(report.gaps) - 20} more gap(s)")
