"""The operator's page in the admin (``/admin/operations/``): is everything alive, and who is
in trouble.

One page, read fresh on each load: the Huey consumer processes heard from (``aibo.tasks``'s
beats), the market feed's state and each pair's price age, the queue's depth, the bots in error
or whose cycles went quiet (with their reason and their last cycle), and what is left of each
exchange limit, for this server's IP and each account that live bots trade. Staff with the
permission to change bots may stop one bot, or all of a user's bots, from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from aibo import tasks
from bots import services
from bots.errors import BotError
from bots.locks import heartbeat_key
from bots.models import Bot
from market import services as market_services
from market.exchange import Budget
from market.models import LatestPrice

logger = logging.getLogger(__name__)


@dataclass
class Trouble:
    bot: Bot
    why: str
    last_cycle: datetime | None


@dataclass
class BudgetRow:
    who: str
    usage: list[tuple[str, int, int]]  # (what, used, limit) per limit

    @property
    def limits(self) -> list[dict[str, Any]]:
        return [
            {"what": what, "used": used, "limit": limit, "left": max(0, limit - used)}
            for what, used, limit in self.usage
        ]


@dataclass
class Operations:
    workers: list[dict[str, Any]]
    feed: Any
    prices: list[dict[str, Any]]
    queue: dict[str, int | None]
    troubled: list[Trouble]
    running: int
    budgets: list[BudgetRow] = field(default_factory=list)


def quiet_after() -> float:
    """A running bot whose chain has not beaten this long is stale (the watchdog's measure)."""
    return max(3 * settings.BOT_CYCLE_SECONDS, 60)


def _last_cycles(bots: list[Bot]) -> dict[int, datetime]:
    beats = cache.get_many([heartbeat_key(b.pk) for b in bots])
    out = {}
    for bot in bots:
        beat = beats.get(heartbeat_key(bot.pk))
        if beat is not None:
            out[bot.pk] = datetime.fromtimestamp(beat, tz=timezone.get_current_timezone())
    return out


def snapshot() -> Operations:
    now = timezone.now()
    candidates = list(
        Bot.objects.filter(Q(status=Bot.Status.ERROR) | Q(status=Bot.Status.RUNNING))
        .select_related("owner", "credential")
        .order_by("pk")
    )
    last = _last_cycles([b for b in candidates if b.is_running])
    troubled, running = [], 0
    for bot in candidates:
        if bot.status == Bot.Status.ERROR:
            troubled.append(Trouble(bot, bot.status_reason or "in error", None))
            continue
        running += 1
        seen = last.get(bot.pk) or bot.started_at
        if seen is not None and (now - seen).total_seconds() > quiet_after():
            troubled.append(Trouble(bot, "no cycle for a while: the watchdog revives it",
                                    last.get(bot.pk)))  # fmt: skip
    prices = [
        {"exchange": p.exchange, "symbol": p.symbol, "at": p.at, "replayed": p.replayed,
         "age": (now - p.at).total_seconds()}
        for p in LatestPrice.objects.order_by("exchange", "symbol")
    ]  # fmt: skip
    exchanges = sorted({b.exchange for b in candidates} | {p["exchange"] for p in prices})
    budgets = [BudgetRow(f"{ex} (this server's IP)", Budget(ex).usage()) for ex in exchanges]
    accounts = {b.credential_id: b.credential for b in candidates if b.credential is not None}
    for credential in accounts.values():
        try:
            api_key, _secret = credential.keys()
        except Exception:  # keys that cannot be read: the dashboard and /readyz say so
            continue
        usage = Budget(credential.exchange, api_key).usage()
        budgets.append(
            BudgetRow(f"{credential.exchange}: {credential} ({credential.owner})", usage)
        )
    return Operations(
        workers=tasks.workers_alive(),
        feed=market_services.feed_status(),
        prices=prices,
        queue=tasks.queue_depth() or {"pending": None, "scheduled": None},
        troubled=troubled,
        running=running,
        budgets=budgets,
    )


@require_http_methods(["GET", "POST"])
def operations_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("bots.change_bot"):
            raise PermissionDenied
        _act(request)
        return redirect("admin_operations")
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "ops": snapshot(),
        "quiet_after": quiet_after(),
        "can_stop": request.user.has_perm("bots.change_bot"),
    }
    return render(request, "admin/operations.html", context)


def _act(request: HttpRequest) -> None:
    reason = f"stopped by an operator ({request.user})"
    if bot_id := request.POST.get("stop_bot", ""):
        bot = Bot.objects.select_related("credential").filter(pk=_int(bot_id)).first()
        if bot is None:
            messages.error(request, "No such bot.")
            return
        try:
            services.stop_bot(bot, reason=reason)
        except BotError as e:
            messages.error(request, str(e))
            return
        logger.warning("operator %s stopped bot %s", request.user, bot.pk)
        messages.success(request, f"{bot} stopped.")
    elif user_id := request.POST.get("stop_user", ""):
        owner = get_user_model().objects.filter(pk=_int(user_id)).first()
        if owner is None:
            messages.error(request, "No such user.")
            return
        try:
            stopped = services.emergency_stop(owner, reason=reason)
        except BotError as e:
            messages.error(request, str(e))
            return
        logger.warning("operator %s stopped all bots of user %s", request.user, owner.pk)
        messages.success(request, f"Stopped {stopped} bot(s) of {owner}.")


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0
