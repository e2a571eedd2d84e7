"""The processes that run woken cycles (bots.processes.InProcesses): several cycles side by side
in each (a cycle mostly waits for the database and the exchange), a failure told to the
waiting caller, and a process that dies never leaves a caller waiting for ever."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bots.processes import InProcesses


def waits(bot_id: int) -> tuple[int, int]:
    """A cycle that only waits (as one waiting for its database and its exchange)."""
    time.sleep(0.3)
    return bot_id, os.getpid()


def fails(bot_id: int) -> None:
    raise ValueError(f"bot {bot_id} broke")


def dies(bot_id: int) -> None:
    os._exit(3)


def test_the_cycles_of_one_price_move_run_side_by_side_not_in_a_queue() -> None:
    pool = InProcesses(waits, 2, threads=4)
    try:
        assert pool.ready(timeout=120)
        began = time.monotonic()
        with ThreadPoolExecutor(8) as callers:  # eight fills heard at once
            answers = list(callers.map(pool, range(8)))
        took = time.monotonic() - began
    finally:
        pool.shutdown()
    assert [bot for bot, _pid in answers] == list(range(8))
    assert len({pid for _bot, pid in answers}) == 2  # both processes took their share
    assert os.getpid() not in {pid for _bot, pid in answers}
    # One after another they take 2.4 s, one per process 1.2 s; side by side one wait's worth.
    assert took < 1.0


def test_a_cycle_that_fails_tells_its_caller() -> None:
    pool = InProcesses(fails, 1, threads=2)
    try:
        with pytest.raises(RuntimeError, match="ValueError: bot 7 broke"):
            pool(7)
    finally:
        pool.shutdown()


def test_a_process_that_dies_fails_the_waiting_cycle_instead_of_hanging() -> None:
    pool = InProcesses(dies, 1, threads=2)
    try:
        future = pool.submit(5)
        with pytest.raises(RuntimeError, match="died"):
            future.result(timeout=120)
        with pytest.raises(RuntimeError, match="died"):
            pool(6)  # and every later one, as a broken process pool
    finally:
        pool.shutdown()
