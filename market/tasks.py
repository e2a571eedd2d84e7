"""Huey tasks for market data: a new pair's history, imported in the background."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from aibo.tasks import JOB_PRIORITY, job_slot
from market import history
from market.models import HistoryImport


@db_task(priority=JOB_PRIORITY)
def import_history_task(import_id: int) -> None:
    """Import a market's recent candles (progress kept on its HistoryImport); a second task
    for the same import while one runs returns at once."""
    with job_slot():
        history.run_import(import_id)


def start_history(exchange: str, symbol: str) -> HistoryImport | None:
    """``history.ensure_history``, queued on this task: what views call."""
    return history.ensure_history(exchange, symbol, enqueue=import_history_task)
