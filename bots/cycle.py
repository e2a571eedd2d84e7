"""The per-bot cycle: one level-triggered pass, dispatched by the bot's mode.

``bots.tasks`` runs it under the bot's cycle lock; ``paper_trading`` and ``live_trading`` do
the work. The result says whether the chain goes on, and at once (a bot behind on candles).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.db import connection, transaction

from bots import live_trading, paper_trading, push
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


def run_cycle(bot_id: int) -> CycleResult:
    """One level-triggered pass of a bot, paper or live (the caller holds its cycle lock).

    A paper bot walks the new candles and persists what happened in one transaction; an idle
    paper cycle (no new candle) costs one query: the bot, with whether a candle is new.
    """
    row = _probe(bot_id)
    if row is None or row[0] != Bot.Status.RUNNING:
        return CycleResult(running=False)
    if row[3] == Bot.Mode.LIVE:
        return _live_cycle(bot_id, row[1])
    if not row[2]:
        return CycleResult(chain_token=row[1])
    with transaction.atomic():
        bot = Bot.objects.select_for_update().get(pk=bot_id)
        if not bot.is_running:
            return CycleResult(running=False)
        candles = paper_trading.new_candles(bot)
        if not candles:
            return CycleResult(chain_token=bot.chain_token)
        paper = paper_trading.walk(bot, candles)
        result = CycleResult(**dataclasses.asdict(paper), chain_token=bot.chain_token)
    transaction.on_commit(lambda: push.publish_bot(bot_id, changes=_changes(result)))
    return result


def _probe(bot_id: int) -> tuple[str, str, bool, str] | None:
    """(status, chain_token, has a new candle, mode) in one query.

    The query is written out because idle cycles are most cycles: building it through the ORM
    (an annotated Exists subquery) cost more than running it.
    """
    q = connection.ops.quote_name
    sql = (
        f"SELECT b.{q('status')}, b.{q('chain_token')}, EXISTS (SELECT 1 FROM "
        f"{q(Candle._meta.db_table)} c WHERE c.{q('exchange')} = b.{q('exchange')} AND "
        f"c.{q('symbol')} = b.{q('symbol')} AND c.{q('timeframe')} = %s AND "
        f"c.{q('open_time')} > b.{q('cursor')}), b.{q('mode')} "
        f"FROM {q(Bot._meta.db_table)} b WHERE b.{q('id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [paper_trading.TIMEFRAME, bot_id])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1], bool(row[2]), row[3])


def _live_cycle(bot_id: int, token: str) -> CycleResult:
    cycle = live_trading.run_cycle(bot_id)
    if cycle is None:
        return CycleResult(running=False)
    running = Bot.objects.filter(pk=bot_id, status=Bot.Status.RUNNING).exists()
    result = CycleResult(fills=cycle.fills, round_trips=cycle.round_trips, running=running,
                         chain_token=token, mode=Bot.Mode.LIVE)  # fmt: skip
    if cycle.fills or cycle.placed or not running:
        transaction.on_commit(lambda: push.publish_bot(bot_id, changes=_changes(result)))
    return result


def _changes(result: CycleResult) -> list[str]:
    changes = ["stats"]
    if result.fills:
        changes += ["orders", "events"]
    if result.round_trips:
        changes.append("trades")
    if not result.running:
        changes += ["status", "orders", "events"]
    return changes
