"""A new pair's history, imported in the background: the last ``HISTORY_IMPORT_DAYS`` days of
1-minute candles from the exchange, page by page, with its progress kept on a ``HistoryImport``.

One import per market (a row, unique per exchange, symbol and timeframe), run by at most one
worker at a time: a worker takes it with one conditional UPDATE and a token, beats after each
page, and a worker that died (no beat for ``STALE_AFTER``) can be replaced. Each page is stored
as it arrives and the row's ``cursor`` moves past it, so an import that stopped (a worker died,
the exchange did not answer) goes on from its cursor when it runs again. The pages themselves
are ``services.import_candles_from_exchange`` (ccxt ``fetch_ohlcv``), which skips what is stored.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from market import exchange as exchange_api
from market import services
from market.models import Candle, HistoryImport

logger = logging.getLogger(__name__)

PAGE = 1000  # candles per request (Binance's most for klines)
STALE_AFTER = timedelta(minutes=5)  # a page takes seconds: a worker this quiet is gone
RETRY_AFTER = timedelta(seconds=60)  # a failed import is tried again when chosen after this
REFRESH_AFTER = timedelta(days=1)  # a finished import this old is brought up to date


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until): the last ``HISTORY_IMPORT_DAYS`` days, to the minute."""
    until = _minute(now or timezone.now())
    return until - timedelta(days=settings.HISTORY_IMPORT_DAYS), until


def _expected(since: datetime, until: datetime, timeframe: str) -> int:
    return int((until - since).total_seconds() * 1000) // services.timeframe_ms(timeframe)


def _stored(job: HistoryImport) -> int:
    return (
        Candle.objects.for_series(job.exchange, job.symbol, job.timeframe)
        .between(job.since, job.until)
        .count()
    )


def import_for(exchange: str, symbol: str, timeframe: str = "1m") -> HistoryImport | None:
    return HistoryImport.objects.filter(
        exchange=exchange, symbol=symbol, timeframe=timeframe
    ).first()


def ensure_history(
    exchange: str, symbol: str, *, enqueue: Callable[[int], Any]
) -> HistoryImport | None:
    """The market's history import, started when it has no stored history yet (and resumed
    when it failed a while ago or its worker died, brought up to date when it finished long
    ago). None when candles are stored without one (the bundled pairs, ``import_candles``).
    ``enqueue(import_id)`` runs it once the transaction commits."""
    now = timezone.now()
    job = import_for(exchange, symbol)
    if job is None:
        if Candle.objects.for_series(exchange, symbol).exists():
            return None
        since, until = window(now)
        try:
            with transaction.atomic():
                job = HistoryImport.objects.create(
                    exchange=exchange, symbol=symbol, since=since, until=until, cursor=since,
                    expected=_expected(since, until, "1m"),
                )  # fmt: skip
        except IntegrityError:  # another request started it just now
            return import_for(exchange, symbol)
    elif job.status == HistoryImport.Status.DONE and job.until < now - REFRESH_AFTER:
        since, until = window(now)
        job.cursor = max(job.until, since)
        job.since, job.until = since, until
        job.expected = _expected(since, until, job.timeframe)
        job.stored = _stored(job)
        job.status, job.error, job.finished_at = HistoryImport.Status.QUEUED, "", None
        job.beat_at = now  # queued at
        job.save()
    elif (
        (job.status == HistoryImport.Status.FAILED and _failed_a_while_ago(job, now))
        or (job.status == HistoryImport.Status.RUNNING and _stale(job, now))
        # Queued long ago and never taken: its task was lost (a queue flushed, a process
        # killed before it ran). A second task for it is harmless: one takes it.
        or (job.status == HistoryImport.Status.QUEUED and _stale(job, now))
    ):
        job.status, job.finished_at, job.beat_at = HistoryImport.Status.QUEUED, None, now
        job.save(update_fields=["status", "finished_at", "beat_at"])
    else:
        return job
    job_id = job.pk
    transaction.on_commit(lambda: enqueue(job_id))
    return job


def resume(job: HistoryImport, *, enqueue: Callable[[int], Any]) -> bool:
    """Queue an unfinished import again now (the admin's action); False when it is done or a
    live worker has it."""
    if job.status == HistoryImport.Status.DONE or (
        job.status == HistoryImport.Status.RUNNING and not _stale(job, timezone.now())
    ):
        return False
    HistoryImport.objects.filter(pk=job.pk).update(
        status=HistoryImport.Status.QUEUED, beat_at=timezone.now()
    )
    job_id = job.pk
    transaction.on_commit(lambda: enqueue(job_id))
    return True


def _failed_a_while_ago(job: HistoryImport, now: datetime) -> bool:
    return job.finished_at is None or job.finished_at < now - RETRY_AFTER


def _stale(job: HistoryImport, now: datetime) -> bool:
    """No beat (a page stored, or being queued) for ``STALE_AFTER``."""
    return (job.beat_at or job.created_at) < now - STALE_AFTER


def _take(import_id: int) -> str | None:
    """The import for this worker (a token), or None: done, or another worker has it."""
    token = secrets.token_hex(16)
    now = timezone.now()
    taken = (
        HistoryImport.objects.filter(pk=import_id)
        .filter(
            Q(status=HistoryImport.Status.QUEUED)
            | Q(status=HistoryImport.Status.RUNNING, beat_at__lt=now - STALE_AFTER)
            | Q(status=HistoryImport.Status.RUNNING, beat_at__isnull=True)
        )
        .update(status=HistoryImport.Status.RUNNING, worker=token, beat_at=now, error="")
    )
    return token if taken else None


def run_import(import_id: int, *, client: Any = None) -> None:
    """Import the rest of the window, page by page; the row says how far it got and how it
    ended (the reason in words). Returns at once when another worker has it, or it is done."""
    token = _take(import_id)
    if token is None:
        return
    job = HistoryImport.objects.get(pk=import_id)
    mine = HistoryImport.objects.filter(pk=import_id, worker=token)
    try:
        client = client or exchange_api.public_client(job.exchange)
        page = timedelta(milliseconds=PAGE * services.timeframe_ms(job.timeframe))
        while job.cursor < job.until:
            end = min(job.cursor + page, job.until)
            services.import_candles_from_exchange(
                client, exchange=job.exchange, symbol=job.symbol, timeframe=job.timeframe,
                since=job.cursor, until=end, page_size=PAGE,
            )  # fmt: skip
            job.cursor, job.stored = end, _stored(job)
            if not mine.update(cursor=job.cursor, stored=job.stored, beat_at=timezone.now()):
                return  # taken over by another worker (this one was thought dead)
    except (services.MarketDataError, exchange_api.ExchangeError) as e:
        # The page's own advice ("run the import again to resume") is the row's to give.
        reason = str(e).partition("; ")[0] if "run the import again" in str(e) else str(e)
        _finish(mine, HistoryImport.Status.FAILED, error=reason)
        return
    except Exception:
        logger.exception("history import %s failed", import_id)
        _finish(mine, HistoryImport.Status.FAILED, error="it stopped unexpectedly (see the log)")
        return
    _finish(mine, HistoryImport.Status.DONE)


def _finish(mine: Any, status: str, *, error: str = "") -> None:
    if error and not error.endswith("."):
        error += "."
    mine.update(status=status, error=error[:500], finished_at=timezone.now(), worker="")
