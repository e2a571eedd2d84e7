"""A new candle applied to many paper bots at once: the batched cycle.

When the feed stores a candle that crosses many bots of one pair, their cycles are run here in
batches (``bots.tasks.wake_bots``: one task per pair and ``BATCH_BOTS`` bots) instead of one
task each: the batch's bots are read and locked in one query, the candles in one, the open
orders of the bots the candles cross in one; each bot walks through the same two steps as its
own cycle (``paper_trading.walk_candles``), and ``paper_trading.write`` writes them all back
with one statement per table. A batch is one transaction: a crash leaves every bot of it as it
was, and the next cycle of each redoes the same work from its cursor, deterministically.

A bot someone else holds (its row locked by a transaction, or its lease taken by a cycle,
start or stop) is skipped: its own chain of cycles catches it up. The chains stay the safety
net; a bot a batch walked is idle for its chain (its cursor passed the candle).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from aibo import metrics
from bots import locks, paper_trading, push
from bots.cycle import CycleResult, changes
from bots.models import Bot

logger = logging.getLogger(__name__)

# Bots per batch task: large enough that a statement per table is cheap per bot, small enough
# that one transaction stays short and several workers share a big wake-up.
BATCH_BOTS = 500


@dataclass
class BatchResult:
    bots: int = 0  # walked
    skipped: int = 0  # held by someone else, stopped, live, or nothing new
    fills: int = 0
    live: tuple[int, ...] = ()  # live bots among them: their own cycle serves them


def apply_candles(bot_ids: list[int]) -> BatchResult:
    """Walk the new candles of these bots (paper, running, not held) in one transaction."""
    began = time.time()
    running = Bot.objects.filter(pk__in=bot_ids, status=Bot.Status.RUNNING)
    # Live bots are not locked here (a fill they book must not wait for a batch of others).
    live = tuple(running.filter(mode=Bot.Mode.LIVE).values_list("pk", flat=True))
    with transaction.atomic():
        bots = list(
            running.filter(mode=Bot.Mode.PAPER, cursor__isnull=False)
            .exclude(locks.held())
            .select_for_update(skip_locked=True)
            .order_by("pk")
        )
        walks = _walk(bots)
        if walks:
            paper_trading.write(walks)
            transaction.on_commit(lambda: _committed(walks, time.time() - began))
    done = BatchResult(bots=len(walks), skipped=len(bot_ids) - len(walks) - len(live),
                       fills=sum(w.result.fills for w in walks), live=live)  # fmt: skip
    logger.debug("batch of %s bots: %s walked, %s skipped, %s fills in %.3f s", len(bot_ids),
                 done.bots, done.skipped, done.fills, time.time() - began)  # fmt: skip
    return done


def _committed(walks: list[paper_trading.Walk], seconds: float) -> None:
    """Counted and told once the batch is committed; each bot's cycle took its share."""
    told = {}
    for w in walks:
        paper = w.result
        result = CycleResult(candles=paper.candles, fills=paper.fills,
                             round_trips=paper.round_trips, running=paper.running)  # fmt: skip
        metrics.cycle_done(result, seconds / len(walks))
        told[w.bot.pk] = changes(result)
    push.publish_bots(told)


def _walk(bots: list[Bot]) -> list[paper_trading.Walk]:
    """Each bot walked through the candles after its cursor (one query per pair for them, one
    for the open orders of the bots they cross); bots with nothing new are left out."""
    by_pair: dict[tuple[str, str], list[Bot]] = defaultdict(list)
    for bot in bots:
        by_pair[(bot.exchange, bot.symbol)].append(bot)
    todo: list[tuple[Bot, list[paper_trading.CandleRow]]] = []
    crossed: list[int] = []
    for (exchange, symbol), group in by_pair.items():
        candles = paper_trading.candles_after(exchange, symbol, min(b.cursor for b in group))
        times = [c[0] for c in candles]
        # The lowest low and highest high from each candle on: whether a bot's walk can fill.
        lows, highs = _suffix(candles, 3, min), _suffix(candles, 2, max)
        for bot in group:
            i = bisect.bisect_right(times, bot.cursor)
            if i == len(candles):
                continue
            todo.append((bot, candles[i:]))
            # Whatever a walk does starts at the prices the feed wakes the bot on (its highest
            # buy and lowest sell, or a stop or trailing line before them): its book is read
            # only when the candles reach one.
            buy, sell = bot.next_buy_price, bot.next_sell_price
            if (buy is not None and lows[i] <= buy) or (sell is not None and highs[i] >= sell):
                crossed.append(bot.pk)
    books = paper_trading.Book.of_bots(crossed) if crossed else {}
    # A bot not crossed reads its own book in the rare case a fill needs it after all.
    return [
        paper_trading.walk_candles(bot, candles, book=books.get(bot.pk)) for bot, candles in todo
    ]


def _suffix(
    candles: list[paper_trading.CandleRow], column: int, pick: Callable[[Decimal, Decimal], Decimal]
) -> list[Decimal]:
    out: list[Decimal] = [c[column] for c in candles]  # type: ignore[misc]
    for i in range(len(out) - 2, -1, -1):
        out[i] = pick(out[i], out[i + 1])
    return out


def batches(bot_ids: list[int]) -> list[list[int]]:
    """The bots a candle woke, in batches of ``BATCH_BOTS`` (by id: neighbours lock together)."""
    ordered = sorted(bot_ids)
    return [ordered[i : i + BATCH_BOTS] for i in range(0, len(ordered), BATCH_BOTS)]
