"""List, start and stop bots from the command line (operators). A live bot starts only with
``--confirm``: without it the command prints what the start would do and changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots import pages, services, starting
from bots.errors import BotError
from bots.models import Bot


class Command(BaseCommand):
    help = (
        "List, start or stop grid bots: `bots list [--user EMAIL]`, `bots start ID [--confirm]`, "
        "`bots stop ID [--sell]`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="list bots")
        listing.add_argument("--user", help="only this owner's bots (email)")
        listing.add_argument("--status", choices=[s.value for s in Bot.Status])
        for name in ("start", "stop"):
            action = sub.add_parser(name, help=f"{name} a bot")
            action.add_argument("bot_id", type=int)
            if name == "start":
                action.add_argument(
                    "--confirm",
                    action="store_true",
                    help="start a live bot (without it: print what the start would do, no more)",
                )
            else:
                action.add_argument(
                    "--sell",
                    action="store_true",
                    help="sell the bot's coins at market (without it: keep them)",
                )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self.list(options.get("user"), options.get("status"))
            return
        bot = Bot.objects.filter(pk=options["bot_id"]).select_related("owner").first()
        if bot is None:
            raise CommandError(f"There is no bot {options['bot_id']}.")
        try:
            if options["action"] == "start":
                typed = bot.symbol if options["confirm"] else None
                services.start_asked(bot, typed_pair=typed)
            else:
                services.stop_bot(bot, reason="stopped by an operator", sell=options["sell"])
        except starting.ConfirmationNeeded as e:
            self.stdout.write(f"bot {bot.pk} ({bot}) is live: starting it")
            for line in e.summary.text():
                self.stdout.write(f"  {line}")
            raise CommandError(
                f"Nothing was started: run `bots start {bot.pk} --confirm` to start it."
            ) from None
        except BotError as e:
            raise CommandError(str(e)) from None
        bot.refresh_from_db()
        self.stdout.write(f"bot {bot.pk} ({bot}): {bot.get_status_display().lower()}")

    def list(self, email: str | None, status: str | None) -> None:
        bots = Bot.objects.select_related("owner").order_by("pk")
        if email:
            bots = bots.filter(owner__email__iexact=email)
        if status:
            bots = bots.filter(status=status)
        rows = [("ID", "OWNER", "PAIR", "MODE", "STATUS", "PROFIT", "WHY")]
        for bot in bots:
            stats = pages.bot_statistics(bot)
            rows.append((str(bot.pk), bot.owner.email, bot.symbol, bot.mode, bot.status,
                         f"{bot.total_profit(stats.equity):,.2f}", bot.status_reason))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
