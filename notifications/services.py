"""Who hears what, in which words, and the sending of it.

``dispatch`` reads what is new in the outboxes (the bots' event log, their round trips, the
advisor's finished runs), turns it into notices (a burst of fills or round trips of one bot is
one notice), and writes one ``Delivery`` per channel that wants it, in one transaction with the
outbox cursors: run twice, it writes nothing twice (and a delivery's key is unique per channel
besides). ``deliver`` sends one delivery, retrying with back-off; ``daily_summary`` writes each
user's summary of a UTC day. All of it runs in Huey (``notifications.tasks``), never in a cycle.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.urls import reverse
from django.utils import timezone

from accounts import crypto
from ai_advisor.models import AdvisorRun
from bots.models import Bot, BotEvent, Trade
from bots.pages import bot_statistics
from bots.templatetags.money import format_amount, format_money, format_price
from market.precision import plain
from notifications import channels
from notifications.channels import Message, PermanentSendError, TemporarySendError
from notifications.models import TEST, BotMute, Channel, Delivery, Kind, OutboxCursor

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
READ_LIMIT = 2000  # outbox rows read per table and dispatch; the rest next time
HOLE_SECONDS = 300  # an id missing this long was rolled back, not committed late
MAX_HOLES = 500
ADVISOR_OVERLAP = timedelta(minutes=10)  # runs re-read by finish time (deduplicated by key)
FILL_LINES = 10  # fill lines in one message; the rest are counted
# Seconds before attempt 2, 3, ...: quick at first, then patient (about a day in all).
BACKOFF = (30, 120, 600, 1800, 7200, 21600)
EVENT_KINDS = {
    BotEvent.Kind.FILLED: Kind.FILL,
    BotEvent.Kind.STOPPED: Kind.STOPPED,
    BotEvent.Kind.ERROR: Kind.ERROR,
}


@dataclass
class Notice:
    """Something to tell one user, before it is addressed to their channels."""

    kind: str
    key: str
    owner_id: int
    bot: Bot | None
    subject: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    # When it happened (wall clock): a channel added later is not told of it.
    at: datetime = field(default_factory=timezone.now)


# --- words ------------------------------------------------------------------------------------


def bot_label(bot: Bot) -> str:
    """How a message names a bot: its name, pair and mode ("BTC grid · BTC/USDT · paper")."""
    name = bot.name or f"Grid #{bot.pk}"
    return f"{name} · {bot.symbol} · {bot.get_mode_display().lower()}"


def link(path: str) -> str:
    """An absolute link to a page, when NOTIFY_SITE_URL says where the site is; else ""."""
    base = settings.NOTIFY_SITE_URL.rstrip("/")
    return f"{base}{path}" if base else ""


def _with_link(lines: list[str], path: str) -> str:
    if url := link(path):
        lines = [*lines, "", url]
    return "\n".join(lines)


def bot_json(bot: Bot | None) -> dict[str, Any] | None:
    if bot is None:
        return None
    return {
        "id": bot.pk,
        "name": str(bot),
        "symbol": bot.symbol,
        "exchange": bot.exchange,
        "mode": bot.mode,
        "url": link(reverse("bots:detail", args=[bot.pk])) or None,
    }


def _total_profit(bot: Bot) -> Decimal | None:
    try:
        return bot_statistics(bot, open_orders=0).total_profit if bot.engine_state else None
    except Exception:  # a bot whose state cannot be read still gets its message
        logger.exception("notifications: statistics of bot %s could not be computed", bot.pk)
        return None


def fills_notice(bot: Bot, events: list[BotEvent]) -> Notice:
    count = len(events)
    subject = f"{bot_label(bot)}: {count} fill{'s' if count != 1 else ''}"
    lines = [e.message for e in events[:FILL_LINES]]
    if count > FILL_LINES:
        lines.append(f"… and {count - FILL_LINES} more.")
    return Notice(
        kind=Kind.FILL, key=f"fills:{bot.pk}:{events[0].pk}-{events[-1].pk}",
        owner_id=bot.owner_id, bot=bot, subject=subject,
        text=_with_link(lines, reverse("bots:detail", args=[bot.pk])),
        data={"fills": [{"event_id": e.pk, "message": e.message,
                         "market_time": e.market_time.isoformat() if e.market_time else None}
                        for e in events]},
        at=events[0].at,
    )  # fmt: skip


def trips_notice(bot: Bot, trades: list[Trade]) -> Notice:
    quote, base = bot.quote_asset, bot.base_asset
    profit = sum((t.profit for t in trades), ZERO)
    count = len(trades)
    plural = "s" if count != 1 else ""
    made = format_money(profit, quote, signed=True)
    subject = f"{bot_label(bot)}: {count} round trip{plural}, {made}"
    lines = [
        f"Bought {format_amount(t.amount, base)} at {format_price(t.buy_price, quote)}, sold at "
        f"{format_price(t.sell_price, quote)}: {format_money(t.profit, quote, signed=True)}."
        for t in trades[:FILL_LINES]
    ]
    if count > FILL_LINES:
        lines.append(f"… and {count - FILL_LINES} more.")
    if (total := _total_profit(bot)) is not None:
        lines.append(f"The bot's total profit is now {format_money(total, quote, signed=True)}.")
    return Notice(
        kind=Kind.ROUND_TRIP, key=f"trips:{bot.pk}:{trades[0].pk}-{trades[-1].pk}",
        owner_id=bot.owner_id, bot=bot, subject=subject,
        text=_with_link(lines, reverse("bots:detail", args=[bot.pk])),
        data={"quote": quote, "profit": plain(profit),
              "total_profit": plain(total) if total is not None else None,
              "round_trips": [{"id": t.pk, "slot": t.slot, "amount": plain(t.amount),
                               "buy_price": plain(t.buy_price), "sell_price": plain(t.sell_price),
                               "profit": plain(t.profit), "fees": plain(t.fees),
                               "closed_at": t.closed_at.isoformat()} for t in trades]},
    )  # fmt: skip


def stop_notice(bot: Bot, event: BotEvent) -> Notice:
    kind = EVENT_KINDS[event.kind]
    what = "stopped" if kind == Kind.STOPPED else "stopped on an error"
    lines = [event.message]
    total = _total_profit(bot)
    if total is not None:
        lines.append(f"Total profit: {format_money(total, bot.quote_asset, signed=True)}.")
    return Notice(
        kind=kind, key=f"event:{event.pk}", owner_id=bot.owner_id, bot=bot,
        subject=f"{bot_label(bot)} {what}",
        text=_with_link(lines, reverse("bots:detail", args=[bot.pk])),
        data={"event_id": event.pk, "message": event.message, "status": bot.status,
              "reason": bot.status_reason,
              "total_profit": plain(total) if total is not None else None},
        at=event.at,
    )  # fmt: skip


def advisor_notice(run: AdvisorRun) -> Notice:
    suggestion = run.suggestion or {}
    confidence = suggestion.get("confidence")
    where = bot_label(run.bot) if run.bot is not None else run.symbol
    lines = [f"The advisor's suggestion for {where} is ready."]
    if confidence is not None:
        lines.append(f"Confidence: {confidence} / 100.")
    lines.append("Nothing changes until you accept it.")
    return Notice(
        kind=Kind.ADVISOR, key=f"advisor:{run.pk}", owner_id=run.owner_id or 0, bot=run.bot,
        subject=f"Advisor suggestion ready: {where}",
        text=_with_link(lines, reverse("ai_advisor:run", args=[run.pk])),
        data={"run_id": run.pk, "symbol": run.symbol, "confidence": confidence,
              "config": suggestion.get("config"),
              "url": link(reverse("ai_advisor:run", args=[run.pk])) or None},
        at=run.finished_at or timezone.now(),
    )  # fmt: skip


# --- reading the outboxes ---------------------------------------------------------------------


def _locked_cursor(name: str, model: type[Any]) -> OutboxCursor | None:
    """The cursor, locked for this transaction; None while another dispatch holds it. A new
    cursor starts at the table's end: history from before notifications is never sent."""
    if not OutboxCursor.objects.filter(name=name).exists():
        last = model.objects.aggregate(m=Max("id"))["m"] or 0
        OutboxCursor.objects.bulk_create(
            [OutboxCursor(name=name, last_id=last, since=timezone.now())], ignore_conflicts=True
        )
    return OutboxCursor.objects.select_for_update(skip_locked=True).filter(name=name).first()


def read_new_ids(cursor: OutboxCursor, model: type[Any]) -> list[int]:
    """Ids of rows committed since the cursor last read (its holes included); the cursor moves
    on (not saved)."""
    now = time.time()
    holes = {int(i): float(t) for i, t in cursor.holes}
    found = sorted(model.objects.filter(id__in=list(holes)).values_list("id", flat=True))
    for i in found:
        del holes[i]
    ids = list(
        model.objects.filter(id__gt=cursor.last_id)
        .order_by("id")
        .values_list("id", flat=True)[:READ_LIMIT]
    )
    if ids:
        # Ids skipped below the newest: taken by transactions not committed yet (or rolled
        # back). The newest ones are kept when a jump in the sequence leaves very many.
        previous, missing = cursor.last_id, []
        for i in ids:
            missing.extend(range(max(previous + 1, i - MAX_HOLES), i))
            previous = i
        for i in missing[-MAX_HOLES:]:
            holes.setdefault(i, now)
        cursor.last_id = ids[-1]
    kept = sorted((i, t) for i, t in holes.items() if now - t < HOLE_SECONDS)[-MAX_HOLES:]
    cursor.holes = [[i, t] for i, t in kept]
    return found + ids


def dispatch() -> int:
    """Turn what is new in the outboxes into deliveries; how many were written. Another
    dispatch running meanwhile makes this one return 0 at once."""
    now = timezone.now()
    with transaction.atomic():
        events_cursor = _locked_cursor("bot_events", BotEvent)
        trades_cursor = _locked_cursor("trades", Trade)
        advisor_cursor = _locked_cursor("advisor_runs", AdvisorRun)
        if events_cursor is None or trades_cursor is None or advisor_cursor is None:
            return 0
        # Only owners with a channel on are worth the words (a round trip's words cost a
        # statistics pass over its bot).
        listening = set(Channel.objects.filter(enabled=True).values_list("owner_id", flat=True))
        notices = _event_notices(read_new_ids(events_cursor, BotEvent), listening)
        notices += _trip_notices(read_new_ids(trades_cursor, Trade), listening)
        since = (advisor_cursor.since or now) - ADVISOR_OVERLAP
        runs = (
            AdvisorRun.objects.filter(
                status=AdvisorRun.Status.DONE, owner__in=listening, finished_at__gt=since
            )
            .select_related("bot")
            .order_by("finished_at", "id")
        )
        notices += [advisor_notice(run) for run in runs]
        advisor_cursor.since = now
        written = address(notices, now=now)
        for cursor in (events_cursor, trades_cursor, advisor_cursor):
            cursor.save()
    return written


def _event_notices(ids: list[int], listening: set[int]) -> list[Notice]:
    if not ids or not listening:
        return []
    events = list(
        BotEvent.objects.filter(id__in=ids, kind__in=list(EVENT_KINDS), bot__owner__in=listening)
        .select_related("bot")
        .order_by("id")
    )
    notices = []
    fills: dict[int, list[BotEvent]] = defaultdict(list)
    for event in events:
        if event.kind == BotEvent.Kind.FILLED:
            fills[event.bot_id].append(event)
        else:
            notices.append(stop_notice(event.bot, event))
    notices += [fills_notice(group[0].bot, group) for group in fills.values()]
    return notices


def _trip_notices(ids: list[int], listening: set[int]) -> list[Notice]:
    if not ids or not listening:
        return []
    trips: dict[int, list[Trade]] = defaultdict(list)
    rows = Trade.objects.filter(id__in=ids, bot__owner__in=listening)
    for trade in rows.select_related("bot").order_by("id"):
        trips[trade.bot_id].append(trade)
    return [trips_notice(group[0].bot, group) for group in trips.values()]


def address(notices: list[Notice], *, now: datetime) -> int:
    """One delivery per notice and channel that wants it (its kind on, the bot not muted for
    it, the channel older than the news); existing keys are left alone."""
    if not notices:
        return 0
    by_owner: dict[int, list[Channel]] = defaultdict(list)
    owners = {n.owner_id for n in notices}
    for channel in Channel.objects.filter(owner_id__in=owners, enabled=True):
        by_owner[channel.owner_id].append(channel)
    bot_ids = {n.bot.pk for n in notices if n.bot is not None}
    muted = set(BotMute.objects.filter(bot_id__in=bot_ids).values_list("bot_id", "kind"))
    rows = [
        Delivery(channel=channel, key=n.key, kind=n.kind, bot=n.bot, subject=n.subject[:200],
                 text=n.text, data=n.data, next_attempt_at=now)
        for n in notices
        if not (n.bot is not None and (n.bot.pk, n.kind) in muted)
        for channel in by_owner.get(n.owner_id, [])
        if channel.wants(n.kind) and channel.created_at <= n.at
    ]  # fmt: skip
    if not rows:
        return 0
    existing = set(
        Delivery.objects.filter(
            channel__in={r.channel_id for r in rows}, key__in={r.key for r in rows}
        ).values_list("channel_id", "key")
    )
    rows = [r for r in rows if (r.channel_id, r.key) not in existing]
    # A dispatch racing this one (SQLite takes no row locks) trips the unique key: skipped.
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# --- the daily summary ------------------------------------------------------------------------


def daily_summary(day: date) -> int:
    """Each user's summary of the UTC day ``day`` (round trips booked that day and their
    profit, bots running, bots in error, each bot's total), for every channel that wants it;
    how many deliveries were written. Run twice, it writes nothing twice."""
    start = datetime.combine(day, day_time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    owners = set(Channel.objects.filter(enabled=True).values_list("owner_id", flat=True).distinct())
    notices = []
    for owner_id in sorted(owners):
        bots = list(Bot.objects.filter(owner_id=owner_id).active().order_by("pk"))
        if bots:
            notices.append(_summary_notice(owner_id, bots, day, start, end))
    return address(notices, now=timezone.now())


def _summary_notice(
    owner_id: int, bots: list[Bot], day: date, start: datetime, end: datetime
) -> Notice:
    # Round trips booked that day by the wall clock (a paper bot's trades carry market time,
    # which a replay sets in the past): the events say when, the trades say how much.
    trip_times: dict[int, list[datetime]] = defaultdict(list)
    for bot_id, at in BotEvent.objects.filter(
        bot__in=bots, kind=BotEvent.Kind.ROUND_TRIP, at__gte=start, at__lt=end
    ).values_list("bot_id", "market_time"):
        trip_times[bot_id].append(at)
    profit_by_quote: dict[str, Decimal] = defaultdict(lambda: ZERO)
    total_by_quote: dict[str, Decimal] = defaultdict(lambda: ZERO)
    trips_total = 0
    lines_bots, data_bots = [], []
    for bot in bots:
        times = trip_times.get(bot.pk, [])
        trips = len(times)
        profit = ZERO
        if trips:
            profit = sum(
                Trade.objects.filter(bot=bot, closed_at__in=[t for t in times if t]).values_list(
                    "profit", flat=True
                ),
                ZERO,
            )
        trips_total += trips
        profit_by_quote[bot.quote_asset] += profit
        total = _total_profit(bot)
        if total is not None:
            total_by_quote[bot.quote_asset] += total
        state = bot.get_status_display().lower()
        if bot.status == Bot.Status.ERROR and bot.status_reason:
            state = f"in error: {bot.status_reason}"
        quote = bot.quote_asset
        lines_bots.append(
            f"- {bot_label(bot)}: {trips} round trip{'s' if trips != 1 else ''}, "
            f"{format_money(profit, quote, signed=True)}; total "
            f"{format_money(total, quote, signed=True) if total is not None else '—'}; {state}"
        )
        data_bots.append({**(bot_json(bot) or {}), "status": bot.status,
                          "round_trips": trips, "profit": plain(profit),
                          "total_profit": plain(total) if total is not None else None})  # fmt: skip
    running = sum(1 for b in bots if b.status == Bot.Status.RUNNING)
    in_error = [b for b in bots if b.status == Bot.Status.ERROR]

    def money_list(sums: dict[str, Decimal]) -> str:
        return ", ".join(format_money(v, q, signed=True) for q, v in sorted(sums.items())) or "—"

    lines = [
        f"Your bots on {day.isoformat()} (UTC):",
        f"Round trips: {trips_total}, profit {money_list(profit_by_quote)}",
        f"Running: {running} of {len(bots)} bot{'s' if len(bots) != 1 else ''}",
        f"In error: {len(in_error)}",
        f"Total profit of your bots: {money_list(total_by_quote)}",
        "",
        *lines_bots,
    ]
    return Notice(
        kind=Kind.DAILY, key=f"daily:{day.isoformat()}", owner_id=owner_id, bot=None,
        subject=f"Daily summary {day.isoformat()}: {trips_total} round trips, "
        f"{money_list(profit_by_quote)}",
        text=_with_link(lines, reverse("bots:dashboard")),
        data={"day": day.isoformat(), "round_trips": trips_total,
              "profit": {q: plain(v) for q, v in profit_by_quote.items()},
              "total_profit": {q: plain(v) for q, v in total_by_quote.items()},
              "running": running, "in_error": len(in_error), "bots": data_bots},
    )  # fmt: skip


# --- sending ----------------------------------------------------------------------------------


def due_ids(*, limit: int = 200) -> list[int]:
    """Deliveries waiting to be sent now, and those whose sender died mid-way."""
    now = timezone.now()
    return list(
        Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.SENDING, lease_until__lt=now)
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """How long to wait after attempt ``attempts`` failed: the schedule, or longer when the
    other side asked for it, with a little jitter so retries of many deliveries spread out."""
    base = BACKOFF[min(attempts, len(BACKOFF)) - 1]
    wait = max(base * random.uniform(0.9, 1.1), retry_after or 0)
    return min(wait, BACKOFF[-1])


def deliver(delivery_id: int) -> float | None:
    """Send one delivery if it is due and no other worker is sending it. Returns the seconds
    until its next attempt after a temporary failure, else None."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.NOTIFY_HTTP_TIMEOUT_SECONDS * 3 + 30)
    claimed = Delivery.objects.filter(
        Q(pk=delivery_id)
        & (
            Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            | Q(status=Delivery.Status.SENDING, lease_until__lt=now)
        )
    ).update(
        status=Delivery.Status.SENDING, lease_until=lease, attempts=F("attempts") + 1,
        last_attempt_at=now,
    )  # fmt: skip
    if not claimed:
        return None
    delivery = Delivery.objects.select_related("channel__owner", "bot").get(pk=delivery_id)
    retry_in: float | None = None
    try:
        send(delivery)
    except PermanentSendError as e:
        _failed(delivery, str(e))
    except crypto.UndecryptableSecret:
        _failed(delivery, "this server cannot decrypt the channel's secret: enter it again")
    except TemporarySendError as e:
        retry_in = _retry(delivery, str(e), e.retry_after)
    except Exception as e:  # a bug must not leave it "sending" until the lease runs out
        logger.exception("notifications: delivery %s failed unexpectedly", delivery_id)
        retry_in = _retry(delivery, f"unexpected error: {type(e).__name__}", None)
    else:
        delivery.status, delivery.sent_at, delivery.last_error = (
            Delivery.Status.SENT,
            timezone.now(),
            "",
        )
        delivery.next_attempt_at = None
    delivery.lease_until = None
    delivery.save(update_fields=["status", "sent_at", "last_error", "next_attempt_at",
                                 "lease_until"])  # fmt: skip
    return retry_in


def _failed(delivery: Delivery, error: str) -> None:
    delivery.status, delivery.last_error, delivery.next_attempt_at = (
        Delivery.Status.FAILED,
        error[:500],
        None,
    )


def _retry(delivery: Delivery, error: str, retry_after: float | None) -> float | None:
    if delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        _failed(delivery, f"gave up after {delivery.attempts} attempts: {error}")
        return None
    wait = backoff_seconds(delivery.attempts, retry_after)
    delivery.status, delivery.last_error = Delivery.Status.PENDING, error[:500]
    delivery.next_attempt_at = timezone.now() + timedelta(seconds=wait)
    return wait


def message_of(delivery: Delivery) -> Message:
    payload = {
        "id": delivery.pk,
        "kind": delivery.kind,
        "key": delivery.key,
        "created_at": delivery.created_at.isoformat(),
        "subject": delivery.subject,
        "text": delivery.text,
        "bot": bot_json(delivery.bot),
        "data": delivery.data,
        "test": delivery.kind == TEST,
    }
    return Message(delivery.pk, delivery.kind, delivery.subject, delivery.text, payload)


def send(delivery: Delivery) -> None:
    channel = delivery.channel
    if not channel.enabled:
        raise PermanentSendError("the channel is turned off")
    message = message_of(delivery)
    if channel.type == Channel.Type.EMAIL:
        channels.send_email(channel.owner.email, message)
    elif channel.type == Channel.Type.WEBHOOK:
        channels.send_webhook(channel.url, channel.secret(), message)
    else:
        channels.send_telegram(channel.secret(), channel.chat_id, message)


def send_test(channel: Channel) -> Delivery:
    """A test message for ``channel``, written to be sent now (by a task)."""
    return Delivery.objects.create(
        channel=channel, key=f"test:{uuid.uuid4().hex}", kind=TEST,
        subject="Test message",
        text=f"This is a test from aibo to your channel “{channel.label}”. If you can read "
        "it, this channel works.",
        data={"channel": channel.label}, next_attempt_at=timezone.now(),
    )  # fmt: skip


def retry_now(delivery: Delivery) -> bool:
    """Put a failed or waiting delivery back to be sent now; False if it is not waiting."""
    return bool(
        Delivery.objects.filter(
            pk=delivery.pk, status__in=[Delivery.Status.PENDING, Delivery.Status.FAILED]
        ).update(status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0)
    )


# --- upkeep -----------------------------------------------------------------------------------


def rotate_secrets() -> tuple[int, int, list[Channel]]:
    """Re-encrypt every channel secret under the keyring's first key, one row at a time
    (locked while it is rewritten): (rotated, already current, unreadable channels)."""
    rotated, current, unreadable = 0, 0, []
    ids = Channel.objects.exclude(secret_encrypted="").order_by("pk").values_list("pk", flat=True)
    for pk in ids:
        with transaction.atomic():
            channel = (
                Channel.objects.select_for_update().select_related("owner").filter(pk=pk).first()
            )
            if channel is None:  # deleted meanwhile
                continue
            was_current = crypto.is_current(channel.secret_encrypted)
            try:
                channel.secret()  # re-encrypts under the first key when it was not (and saves)
            except crypto.UndecryptableSecret:
                unreadable.append(channel)
                continue
            if was_current:
                current += 1
            else:
                rotated += 1
    return rotated, current, unreadable


def prune(*, days: int) -> int:
    """Forget messages sent or given up on more than ``days`` ago; how many."""
    before = timezone.now() - timedelta(days=days)
    deleted, _ = Delivery.objects.filter(
        status__in=[Delivery.Status.SENT, Delivery.Status.FAILED], created_at__lt=before
    ).delete()
    return deleted
