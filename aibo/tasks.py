"""Huey hooks shared by every task: each task's log lines carry its task id."""

from __future__ import annotations

from typing import Any

from huey.contrib.djhuey import HUEY

from aibo.logging import current_request_id


@HUEY.pre_execute()
def tag_logs_with_task_id(task: Any) -> None:
    current_request_id.set(f"task-{task.id}")


@HUEY.post_execute()
def untag_logs(task: Any, task_value: Any, exc: BaseException | None) -> None:
    current_request_id.set("-")
