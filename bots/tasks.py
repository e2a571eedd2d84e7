"""Huey tasks for bots: each running bot has a chain of cycle tasks; a watchdog revives chains.

A task is an interface, like a view: it locks, loads by id and calls a service. Module path
and task names stay as they are: queued tasks name them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from aibo import metrics
from aibo.tasks import CYCLE_PRIORITY, JOB_PRIORITY, WATCHDOG_PRIORITY, job_slot
from bots import backtest_runs, batch, cycle, ledger, live_trading, push, starting, user_streams
from bots.locks import Busy, cycle_lock, heartbeat_key
from bots.models import Bot
from bots.processes import InProcesses

logger = logging.getLogger(__name__)


def cycle_once(bot_id: int) -> cycle.CycleResult | None:
    """One cycle; None when another worker holds the bot's lease right now.

    The probe (one query) comes first and takes no lease: a cycle with nothing to do (a paper
    bot with no new candle, a bot no longer running) writes nothing, so it needs none, and
    most cycles are such. The lease is taken only for work, and the work then locks the bot's
    row too, so a batch or cycle that got there between the probe and the lease is seen."""
    began = time.time()
    logger.debug("bot %s: cycle began at %.6f", bot_id, began)  # idle ones too: the cadence
    probed = cycle.probe(bot_id)
    if probed is not None and probed.held:
        return _busy(bot_id)
    if probed is None or not probed.has_work:
        return _timed(bot_id, began, probed=probed)
    return _leased(bot_id, began, probed=probed)


def fill_cycle(bot_id: int) -> cycle.CycleResult | None:
    """The cycle of a bot a fill on its account's user data stream woke (``run_user_streams``),
    as ``cycle_once`` but with no probe: such a bot is live, and a live bot always has work.
    Its lease, the bot and the fills the stream wrote down are one round trip
    (``live_trading.first_reads``): the fill's counter-order waits on every one."""
    began = time.time()
    logger.debug("bot %s: cycle began at %.6f", bot_id, began)
    read: dict[str, Any] = {}
    return _leased(bot_id, began, read=read,
                   also=lambda: live_trading.first_reads(bot_id, read))  # fmt: skip


def _leased(
    bot_id: int, began: float, *, also: Callable[[], None] | None = None, **given: Any
) -> cycle.CycleResult | None:
    try:
        with cycle_lock(bot_id, also=also):  # never two cycles of one bot at once
            result = _timed(bot_id, began, **given)
            logger.debug("bot %s: cycle ended at %.6f after %.6f (%s candles, %s fills)",
                         bot_id, time.time(), began, result.candles, result.fills)  # fmt: skip
            return result
    except Busy:
        return _busy(bot_id)


def _timed(bot_id: int, began: float, **given: Any) -> cycle.CycleResult:
    try:
        result = cycle.run_cycle(bot_id, **given)
    except Exception:
        metrics.CYCLES.labels("failed").inc()
        raise
    metrics.cycle_done(result, time.time() - began)
    return result


def _busy(bot_id: int) -> None:
    logger.debug("bot %s: another worker is cycling it; skipped", bot_id)
    metrics.CYCLES.labels("busy").inc()
    return None


@db_task(priority=CYCLE_PRIORITY)
def bot_cycle_task(bot_id: int, token: str | None = None) -> None:
    """A cycle. With a token it is a link of the bot's chain and schedules the next link;
    without one it was a wake-up from the market feed and ends after its cycle.

    A cycle that fails unexpectedly is logged and the chain goes on: its work was one
    transaction (or, for a live bot, written before it was sent), so the next cycle redoes it.
    """
    try:
        result = cycle_once(bot_id)
    except Exception:
        logger.exception("bot %s: the cycle failed; the next one retries", bot_id)
        result = None
    if token is None:
        return
    if result is not None and (not result.running or result.chain_token != token):
        return  # the bot stopped, or a newer chain (the watchdog's) owns it
    if result is not None:  # the heartbeat means a cycle really ran, not that the chain did
        cache.set(heartbeat_key(bot_id), timezone.now().timestamp(), timeout=None)
    delay = 0 if result is not None and result.behind else settings.BOT_CYCLE_SECONDS
    bot_cycle_task.schedule((bot_id, token), delay=delay)


def run_user_streams(stop: threading.Event) -> None:
    """The market feed's companion: every live account's user data stream; a fill heard there
    runs its bot's cycle there and then (``fill_cycle``, under the bot's lease), in
    ``wake_processes()`` processes of the feed's own, or in its threads when that is 0."""
    processes = user_streams.wake_processes()
    run = InProcesses(fill_cycle, processes) if processes else fill_cycle
    streams = user_streams.UserStreams(waker=user_streams.Waker(run))
    try:
        streams.run(stop)
    finally:
        streams.waker.shutdown()
        if isinstance(run, InProcesses):
            run.shutdown()


@db_task(priority=JOB_PRIORITY)
def backtest_task(run_id: int) -> None:
    """A backtest asked for from the page (progress and result kept on its BacktestRun)."""
    with job_slot():
        backtest_runs.run_backtest_job(run_id)


def wake_bots(bot_ids: list[int]) -> None:
    """The feed stored a candle that crossed these bots' grids (one pair): their cycles run
    now, in batches (``bots.batch``: one task per ``BATCH_BOTS`` bots)."""
    for ids in batch.batches(bot_ids):
        apply_candles_task(ids)


@db_task(priority=CYCLE_PRIORITY)
def apply_candles_task(bot_ids: list[int]) -> None:
    """A batch of cycles (``bots.batch``): the paper bots among ``bot_ids`` walk their new
    candles together; a live one gets a cycle of its own (its exchange is asked). A batch that
    fails is logged and changed nothing: each bot's chain walks the candles on its own."""
    try:
        done = batch.apply_candles(bot_ids)
    except Exception:
        logger.exception("a batch of %s bot cycles failed; their chains retry", len(bot_ids))
        metrics.CYCLES.labels("failed").inc(len(bot_ids))
        return
    for bot_id in done.live:
        bot_cycle_task(bot_id)


def begin_chain(bot_id: int, token: str) -> None:
    """A bot just started: its page hears of it, and its chain of cycles begins (a live
    bot's first link at once: it sends the grid)."""
    push.publish_bot(bot_id)
    if Bot.objects.filter(pk=bot_id, mode=Bot.Mode.LIVE).exists():
        bot_cycle_task(bot_id, token)
    else:
        bot_cycle_task.schedule((bot_id, token), delay=settings.BOT_CYCLE_SECONDS)


@db_periodic_task(crontab(minute="*"), priority=WATCHDOG_PRIORITY)
def finish_unfinished_starts() -> int:
    """Live starts whose buy went out but did not finish are finished (never buying twice)."""
    started = starting.finish_unfinished()
    for bot_id, token in started:
        begin_chain(bot_id, token)
    return len(started)


@db_periodic_task(crontab(minute="*"), priority=WATCHDOG_PRIORITY)
def revive_quiet_chains() -> int:
    """Give a new chain to every running bot whose chain has not beaten for a while."""
    quiet_after = max(3 * settings.BOT_CYCLE_SECONDS, 60)
    now = timezone.now().timestamp()
    revived = 0
    for bot_id, started in Bot.objects.running().values_list("pk", "started_at"):
        beat = cache.get(heartbeat_key(bot_id))
        last = beat if beat is not None else (started.timestamp() if started else 0)
        if now - last < quiet_after:
            continue
        token = uuid.uuid4().hex
        updated = Bot.objects.running().filter(pk=bot_id).update(chain_token=token)
        if updated:
            logger.warning("bot %s: its cycle chain went quiet; starting a new one", bot_id)
            cache.set(heartbeat_key(bot_id), now, timeout=None)
            bot_cycle_task(bot_id, token)
            revived += 1
    return revived


@db_periodic_task(crontab(minute="23"), priority=JOB_PRIORITY)
def downsample_equity() -> int:
    """Thin the stored equity series as it ages (``bots.ledger.downsample_equity``)."""
    return ledger.downsample_equity()
