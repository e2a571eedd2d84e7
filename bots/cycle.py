"""The per-bot cycle: one level-triggered pass, dispatched by the bot's mode.

``bots.tasks`` probes the bot first (one query), then takes its lease only when there is work
(a paper bot with a new candle, any live cycle) and runs it here; a cycle a streamed fill woke
(``tasks.fill_cycle``) skips the probe, and its lease comes with the live cycle's first reads.
``paper_trading`` and ``live_trading`` do the work. The result says whether the chain goes on,
and at once (a bot behind on candles).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from bots import live_trading, locks, paper_trading, push
from bots.models import Bot
from market.models import Candle


@dataclass
class CycleResult:
    candles: int = 0
    fills: int = 0
    round_trips: int = 0
    behind: bool = False  # more candles wait: run again at once
    running: bool = True
    chain_token: str = ""
    mode: str = Bot.Mode.PAPER


@dataclass(frozen=True)
class Probe:
    """What one query says of a bot before its cycle: whether there is anything to do."""

    status: str
    chain_token: str
    new_candle: bool  # a candle after the bot's cursor is stored
    mode: str
    held: bool  # someone holds the bot's lease right now

    @property
    def has_work(self) -> bool:
        """A running live bot always (its exchange is asked); a paper bot with a new candle."""
        return self.status == Bot.Status.RUNNING and (self.mode == Bot.Mode.LIVE or self.new_candle)


def run_cycle(
    bot_id: int, *, probed: Probe | None = None, read: dict[str, Any] | None = None
) -> CycleResult:
    """One level-triggered pass of a bot, paper or live (the caller holds its lease when
    ``probe`` says there is work; an idle cycle writes nothing and needs none).

    A paper bot walks the new candles and persists what happened in one transaction, under
    its row lock; an idle paper cycle (no new candle) costs one query, the probe (none when
    the caller passes its own ``probed``). ``read``: ``live_trading.first_reads``'s, read
    under the lease, in place of the probe when the bot is live (a streamed fill woke it)."""
    if read is not None and (read["bot"] is None or read["bot"].mode == Bot.Mode.LIVE):
        return _live_cycle(bot_id, read)
    if probed is None:
        probed = probe(bot_id)
    if probed is None or probed.status != Bot.Status.RUNNING:
        return CycleResult(running=False)
    if probed.mode == Bot.Mode.LIVE:  # it reads the bot, its chain token too, under the lease
        return _live_cycle(bot_id)
    if not probed.new_candle:
        return CycleResult(chain_token=probed.chain_token)
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot_id)
        if not bot.is_running:
            return CycleResult(running=False)
        candles = paper_trading.new_candles(bot)
        if not candles:  # a batch (or another cycle) walked them meanwhile
            return CycleResult(chain_token=bot.chain_token)
        paper = paper_trading.walk(bot, candles)
        result = CycleResult(**dataclasses.asdict(paper), chain_token=bot.chain_token)
    transaction.on_commit(lambda: push.publish_bot(bot_id, changes=changes(result)))
    return result


def probe(bot_id: int) -> Probe | None:
    """The bot's status, chain token, mode, whether a candle is new and whether its lease is
    held, in one query (None: no such bot).

    The query is written out because idle cycles are most cycles: building it through the ORM
    (an annotated Exists subquery) cost more than running it.
    """
    q = connection.ops.quote_name
    held, held_params = locks.held_sql(f"b.{q('id')}")
    sql = (
        f"SELECT b.{q('status')}, b.{q('chain_token')}, EXISTS (SELECT 1 FROM "
        f"{q(Candle._meta.db_table)} c WHERE c.{q('exchange')} = b.{q('exchange')} AND "
        f"c.{q('symbol')} = b.{q('symbol')} AND c.{q('timeframe')} = %s AND "
        f"c.{q('open_time')} > b.{q('cursor')}), b.{q('mode')}, {held} "
        f"FROM {q(Bot._meta.db_table)} b WHERE b.{q('id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [paper_trading.TIMEFRAME, *held_params, bot_id])
        row = cursor.fetchone()
    return None if row is None else Probe(row[0], row[1], bool(row[2]), row[3], bool(row[4]))


def _live_cycle(bot_id: int, read: dict[str, Any] | None = None) -> CycleResult:
    cycle = live_trading.run_cycle(bot_id, read)
    if cycle is None:
        return CycleResult(running=False)
    running = Bot.objects.filter(pk=bot_id, status=Bot.Status.RUNNING).exists()
    result = CycleResult(fills=cycle.fills, round_trips=cycle.round_trips, running=running,
                         chain_token=cycle.chain_token, mode=Bot.Mode.LIVE)  # fmt: skip
    if cycle.fills or cycle.placed or not running:
        transaction.on_commit(lambda: push.publish_bot(bot_id, changes=changes(result)))
    return result


def changes(result: CycleResult) -> list[str]:
    """The parts of the bot's page a cycle changed (``bots.push.CHANGES``)."""
    parts = ["stats"]
    if result.fills:
        parts += ["orders", "events"]
    if result.round_trips:
        parts.append("trades")
    if not result.running:
        parts += ["status", "orders", "events"]
    return parts
