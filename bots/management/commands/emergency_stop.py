"""Stop every bot of a user and cancel all their orders, now."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots import services
from bots.errors import BotError


class Command(BaseCommand):
    help = "Emergency stop: stop all of a user's bots and cancel all their resting orders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the owner's email address")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(email__iexact=options["user"]).first()
        if user is None:
            raise CommandError(f"There is no user {options['user']}.")
        try:
            stopped = services.emergency_stop(user, reason="emergency stop by an operator")
        except BotError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"Emergency stop for {user.email}: {stopped} bot(s) stopped.")
