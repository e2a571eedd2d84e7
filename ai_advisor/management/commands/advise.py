"""Ask the advisor from the shell and print the comparison the page shows (the run is stored)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_advisor import services
from ai_advisor.api import payload
from ai_advisor.models import AdvisorRun
from ai_advisor.profiles import ALIASES, profile_for
from bots.models import Bot


class Command(BaseCommand):
    help = "Ask the AI advisor for a grid: advise BTC/USDT --capital 1000 [--bot ID] [--risk]."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol", help="the pair, e.g. BTC/USDT")
        parser.add_argument("--capital", required=True, help="quote currency for the grid")
        parser.add_argument("--bot", type=int, help="advise on this bot (compared with its grid)")
        parser.add_argument(
            "--risk",
            choices=[*services.RISKS, *ALIASES],
            default="medium",
            help="conservative (low), moderate (medium) or aggressive (high)",
        )
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--user", help="store the run as this user's (email)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **o: Any) -> None:
        bot = None
        owner = None
        if o["bot"] is not None:
            bot = Bot.objects.filter(pk=o["bot"]).select_related("owner").first()
            if bot is None:
                raise CommandError(f"No bot {o['bot']}.")
            if bot.symbol != o["symbol"]:
                raise CommandError(f"Bot {bot.pk} trades {bot.symbol}, not {o['symbol']}.")
            owner = bot.owner
        elif o["user"]:
            owner = get_user_model().objects.filter(email=o["user"].lower()).first()
            if owner is None:
                raise CommandError(f"No user {o['user']}.")
        try:
            run = services.create_run(
                owner, symbol=o["symbol"], capital=o["capital"], risk=o["risk"], bot=bot,
                exchange=o["exchange"], throttle=False,
            )  # fmt: skip
        except services.AdviceError as e:
            raise CommandError(str(e)) from None
        services.execute_run(run)
        if run.status != AdvisorRun.Status.DONE:
            raise CommandError(f"Advice #{run.pk} failed: {run.error}")
        if o["json"]:
            self.stdout.write(json.dumps(payload(run), indent=2))
            return
        self.stdout.write(format_run(run))


def _money(value: Any) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01')):+,}"


def _pct(value: Any, places: int = 2) -> str:
    return f"{(Decimal(value) * 100).quantize(Decimal(1).scaleb(-places))} %"


def format_run(run: AdvisorRun) -> str:
    s = run.suggestion or {}
    quote = run.quote_asset
    who = "Claude" if run.source == AdvisorRun.Source.CLAUDE else "Quantitative baseline"
    lines = [f"Advice #{run.pk} for {run.symbol}: {who}"]
    if run.source == AdvisorRun.Source.BASELINE:
        lines.append("(no ANTHROPIC_API_KEY is configured: this is the baseline, not Claude)")
    lines += [
        f"  range {s['grid_lower']} .. {s['grid_upper']}, {s['num_levels']} {s['spacing']} "
        f"lines, stop-loss {s['stop_loss_pct']} %, take-profit {s['take_profit'] or 'none'}",
        f"  risk choice: {profile_for(run.risk_preference).label.lower()}",
        f"  confidence {s['confidence']} / 100, from the held-out backtest:",
        *(f"    - {why}" for why in s.get("confidence_reasons", [])),
        f"  {s['reasoning']}",
    ]
    if run.source == AdvisorRun.Source.CLAUDE:
        lines.append(
            f"  {run.model}: {run.input_tokens} + {run.output_tokens} tokens, "
            f"cost ${run.cost_usd if run.cost_usd is not None else '?'}, {run.latency_ms} ms"
        )
    backtests = run.backtests or {}
    header = (
        f"{'grid':<36} {'days':>4} {'profit':>14} {'grid profit':>12} {'trips':>6} "
        f"{'drawdown':>9} {'in range':>9}"
    )
    lines += ["", header, "-" * len(header)]
    for cand in backtests.get("candidates", []):
        for window in backtests.get("windows", []):
            r = cand["results"].get(str(window["days"]), {})
            label = f"{cand['label']}"[:36]
            if "error" in r:
                lines.append(f"{label:<36} {window['days']:>4}  {r['error']}")
                continue
            lines.append(
                f"{label:<36} {window['days']:>4} {_money(r['total_profit']) + ' ' + quote:>14} "
                f"{_money(r['grid_profit']):>12} {r['total_trades']:>6} "
                f"{_pct(r['max_drawdown']):>9} {_pct(r['time_in_range'], 0):>9}"
            )
    for window in backtests.get("windows", []):
        if window["note"]:
            lines.append(f"Note ({window['days']} days): {window['note']}.")
    return "\n".join(lines)
