"""Show a market's rules, or refresh them from the exchange through ccxt `load_markets`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from market import exchange as exchange_api
from market import services
from market.precision import canonical


class Command(BaseCommand):
    help = (
        "Print the tick, step, minimum order and fee aibo uses for a pair; --refresh fetches "
        "them from the exchange (otherwise the cached rules, else the bundled snapshot)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbols", nargs="+", metavar="SYMBOL", help="e.g. BTC/USDT")
        parser.add_argument("--exchange", default="binance")
        parser.add_argument(
            "--refresh", action="store_true", help="load the markets from the exchange now"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        exchange = options["exchange"]
        try:
            client = exchange_api.public_client(exchange) if options["refresh"] else None
            for i, symbol in enumerate(options["symbols"]):
                # The exchange's markets are loaded once for all the symbols asked for.
                rules = services.load_market_rules(exchange, symbol, client=client, reload=i == 0)
                source = rules.get_source_display().lower()
                self.stdout.write(
                    f"{exchange} {rules.symbol}: tick {canonical(rules.tick)} {rules.quote}, "
                    f"step {canonical(rules.step)} {rules.base}, "
                    f"min order {canonical(rules.min_notional)} {rules.quote}, "
                    f"fee {canonical(rules.fee * 100)} % (from the {source})"
                )
        except (services.MarketDataError, exchange_api.ExchangeError) as e:
            raise CommandError(str(e)) from None
