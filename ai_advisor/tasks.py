"""Huey tasks for the advisor: a task is an interface, like a view."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from ai_advisor import services


@db_task()
def advise_task(run_id: int) -> None:
    """Ask Claude (or run the baseline) and backtest, for a run created from the page."""
    services.execute_run(run_id)
