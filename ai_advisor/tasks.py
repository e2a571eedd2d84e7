"""Huey tasks for the advisor: a task is an interface, like a view."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from ai_advisor import services
from aibo.tasks import JOB_PRIORITY, job_slot


@db_task(priority=JOB_PRIORITY)
def advise_task(run_id: int) -> None:
    """Ask Claude (or run the baseline) and backtest, for a run created from the page or the
    JSON API: never in a web process."""
    with job_slot():
        services.execute_run(run_id)
